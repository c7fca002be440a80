//! The roamer's config file: read and validated (`status`, `up`, `down`), or loaded with its
//! private key and the warnings worth printing (`run`, `check`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use roamgw_common::fsutil::{self, FsError};
use roamgw_common::routes::{colliding_routes, Routes};
use roamgw_common::state::{RoamerConfig, StateError};
use roamgw_common::{PrivateKey, PublicKey};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
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

fn load_key(path: &Path) -> Result<(PrivateKey, Option<String>), ConfigError> {
    let text = fsutil::read_to_string(path)?;
    let key = text
        .trim()
        .parse::<PrivateKey>()
        .map_err(|e| ConfigError::Key {
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
pub fn read(path: &Path) -> Result<RoamerConfig, ConfigError> {
    let text = match fsutil::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.is_not_found() => return Err(ConfigError::Missing(path.to_path_buf())),
        Err(e) => return Err(e.into()),
    };
    RoamerConfig::from_toml(&text).map_err(|source| ConfigError::Config {
        path: path.to_path_buf(),
        source,
    })
}

/// One warning per network of the laptop that overlaps the tunnel subnet or the tunnel's IPv6
/// prefix (and so hides it).
pub fn collision_warnings(routes: &Routes, config: &RoamerConfig) -> Vec<String> {
    let interface = config.interface.as_str();
    let subnet = config.address.trunc();
    let v4 = colliding_routes(&routes.v4, subnet, interface)
        .into_iter()
        .map(|route| {
            format!(
                "tunnel subnet {subnet} overlaps {} on {}: this network hides the tunnel; change the gateway's --subnet",
                route.destination, route.interface
            )
        });
    let v6 = config.address6.map(|a| a.trunc()).into_iter().flat_map(|prefix| {
        colliding_routes(&routes.v6, prefix, interface)
            .into_iter()
            .map(move |route| {
                format!(
                    "the tunnel's IPv6 prefix {prefix} overlaps {} on {}: this network hides IPv6 forwards; pick another on the gateway (`roamgw init --subnet6`, or edit gateway.subnet6)",
                    route.destination, route.interface
                )
            })
    });
    v4.chain(v6).collect()
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
pub fn load(path: &Path, routes: &Routes) -> Result<Loaded, ConfigError> {
    let config = read(path)?;
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
        // `validate` refuses this; said again rather than assumed.
        (None, None) => {
            return Err(ConfigError::Config {
                path: path.to_path_buf(),
                source: StateError::Invalid(
                    "the config names no private key: set private_key or private_key_file".into(),
                ),
            })
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use roamgw_common::routes::Route;

    #[test]
    fn networks_that_hide_the_tunnel_are_named() {
        let text = include_str!("../../tests/fixtures/valid-roamer/inline-key.toml").replace(
            "mtu = 1420",
            "address6 = \"fd12:3456:789a::2/64\"\nmtu = 1420",
        );
        let config = RoamerConfig::from_toml(&text).expect("config");
        fn route<N: std::str::FromStr>(interface: &str, destination: &str) -> Route<N> {
            Route {
                interface: interface.into(),
                destination: destination.parse().ok().expect("net"),
            }
        }
        let routes = Routes {
            v4: vec![
                route("wlan0", "192.168.32.0/24"),
                route("wlan0", "0.0.0.0/0"),
                route("roamgw0", "192.168.32.0/24"),
            ],
            v6: vec![
                route("wlan0", "fd12:3456::/32"),
                route("wlan0", "::/0"),
                route("roamgw0", "fd12:3456:789a::/64"),
            ],
        };
        let warnings = collision_warnings(&routes, &config);
        assert_eq!(warnings.len(), 2, "{warnings:#?}");
        assert!(
            warnings[0].contains("192.168.32.0/24 on wlan0"),
            "{}",
            warnings[0]
        );
        assert!(
            warnings[1]
                .contains("IPv6 prefix fd12:3456:789a::/64 overlaps fd12:3456::/32 on wlan0"),
            "{}",
            warnings[1]
        );
        let quiet = Routes {
            v6: vec![route("wlan0", "fd99::/64")],
            ..Routes::default()
        };
        assert!(collision_warnings(&quiet, &config).is_empty());
    }
}
