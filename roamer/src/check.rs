//! `roamer check`: validate a config and say what `roamer run` would do with it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use roamgw_common::fsutil::{self, FsError};
use roamgw_common::routes::{colliding_routes, Route};
use roamgw_common::state::{RoamerConfig, StateError};
use roamgw_common::{PrivateKey, PublicKey};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{0}")]
    Fs(#[from] FsError),
    #[error("no roamer config at {0}: get one on the droplet with `roamgw show-config NAME --format roamer`, store it there (mode 0600), or pass --config FILE")]
    Missing(PathBuf),
    #[error("{path}: {source}")]
    Config {
        path: PathBuf,
        #[source]
        source: StateError,
    },
    #[error("{path}: {message}")]
    Key { path: PathBuf, message: String },
}

/// What `roamer run` would do, as checked.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub config: PathBuf,
    pub name: String,
    pub interface: String,
    pub address: String,
    pub mtu: u16,
    pub public_key: String,
    pub key_source: String,
    pub gateway_endpoint: String,
    pub gateway_endpoint_is_dns_name: bool,
    pub gateway_public_key: String,
    pub preshared_key: bool,
    pub routes: Vec<String>,
    pub persistent_keepalive: u16,
    pub warnings: Vec<String>,
}

fn load_key(path: &Path) -> Result<(PrivateKey, Option<String>), CheckError> {
    let text = fsutil::read_to_string(path)?;
    let key = text
        .trim()
        .parse::<PrivateKey>()
        .map_err(|e| CheckError::Key {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    Ok((key, loose_mode_warning(path)))
}

fn loose_mode_warning(path: &Path) -> Option<String> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "{} holds a private key but is mode {mode:o}: run `chmod 600 {}`",
            path.display(),
            path.display()
        )
    })
}

/// The config alone, validated, without its key (`status`, `up` and `down` need no key).
pub fn read_config(path: &Path) -> Result<RoamerConfig, CheckError> {
    let text = match fsutil::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.is_not_found() => return Err(CheckError::Missing(path.to_path_buf())),
        Err(e) => return Err(e.into()),
    };
    RoamerConfig::from_toml(&text).map_err(|source| CheckError::Config {
        path: path.to_path_buf(),
        source,
    })
}

/// One warning per network of the laptop that overlaps the tunnel subnet (and so hides it).
pub fn collision_warnings(routes: &[Route], config: &RoamerConfig) -> Vec<String> {
    colliding_routes(routes, config.address.trunc(), config.interface.as_str())
        .into_iter()
        .map(|route| {
            format!(
                "tunnel subnet {} overlaps {} on {}: this network hides the tunnel; change the gateway's --subnet",
                config.address.trunc(),
                route.destination,
                route.interface
            )
        })
        .collect()
}

/// A roamer config with its private key, as `roamer run` uses it.
pub struct Loaded {
    pub config: RoamerConfig,
    pub key: PrivateKey,
    pub key_source: String,
    pub warnings: Vec<String>,
}

/// Reads and validates the config and its key. `routes` are the laptop's current routes (for
/// collisions); warnings are things that will work badly, not errors.
pub fn load(path: &Path, routes: &[Route]) -> Result<Loaded, CheckError> {
    let config = read_config(path)?;
    let mut warnings = Vec::new();
    let (key, key_source) = match (&config.private_key, &config.private_key_file) {
        (Some(key), _) => {
            warnings.extend(loose_mode_warning(path));
            (key.clone(), "inline".to_string())
        }
        (None, Some(file)) => {
            let (key, warning) = load_key(file)?;
            warnings.extend(warning);
            (key, file.display().to_string())
        }
        (None, None) => unreachable!("validated: one of the two is set"),
    };
    let public_key: PublicKey = key.public_key();
    if public_key == config.gateway.public_key {
        warnings.push("the roamer's key is the gateway's own key: each side needs its own".into());
    }
    warnings.extend(collision_warnings(routes, &config));
    if config.gateway.persistent_keepalive == 0 {
        warnings.push(
            "persistent_keepalive is 0: behind NAT, connections from the gateway fail once the NAT forgets the idle mapping"
                .into(),
        );
    }
    Ok(Loaded {
        config,
        key,
        key_source,
        warnings,
    })
}

/// Checks the config at `path` and says what `roamer run` would do with it.
pub fn check(path: &Path, routes: &[Route]) -> Result<CheckReport, CheckError> {
    let Loaded {
        config,
        key,
        key_source,
        warnings,
    } = load(path, routes)?;
    let public_key: PublicKey = key.public_key();
    Ok(CheckReport {
        config: path.to_path_buf(),
        name: config.name.to_string(),
        interface: config.interface.to_string(),
        address: config.address.to_string(),
        mtu: config.mtu,
        public_key: public_key.to_string(),
        key_source,
        gateway_endpoint: config.gateway.endpoint.to_string(),
        gateway_endpoint_is_dns_name: config.gateway.endpoint.ip().is_none(),
        gateway_public_key: config.gateway.public_key.to_string(),
        preshared_key: config.gateway.preshared_key.is_some(),
        routes: config
            .gateway
            .allowed_ips
            .iter()
            .map(ToString::to_string)
            .collect(),
        persistent_keepalive: config.gateway.persistent_keepalive,
        warnings,
    })
}

impl CheckReport {
    pub fn render(&self) -> String {
        let mut out = format!(
            "{} is valid: roamer '{}'\n  \
             tunnel {} with address {}, mtu {}\n  \
             private key {} (public key {})\n  \
             gateway {}{} (public key {}), preshared key {}\n  \
             routes through the tunnel: {} (everything else goes straight out)\n  \
             keepalive: {}\n",
            self.config.display(),
            self.name,
            self.interface,
            self.address,
            self.mtu,
            self.key_source,
            self.public_key,
            self.gateway_endpoint,
            if self.gateway_endpoint_is_dns_name {
                " (a DNS name: resolved at start and again on every network change)"
            } else {
                ""
            },
            self.gateway_public_key,
            if self.preshared_key { "set" } else { "not set" },
            self.routes.join(", "),
            match self.persistent_keepalive {
                0 => "off".to_string(),
                s => format!("every {s} s"),
            },
        );
        for w in &self.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        out
    }
}
