//! `roamer check`: validate a config and say what `roamer run` would do with it.

use std::path::{Path, PathBuf};

use roamgw_common::routes::Routes;
use roamgw_common::PublicKey;
use serde::Serialize;

use crate::config::{self, ConfigError, Loaded};

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
    /// The tunnel's IPv6 address, where forwards of the gateway's IPv6 arrive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address6: Option<String>,
    pub gateway_endpoint: String,
    pub gateway_endpoint_is_dns_name: bool,
    /// The gateway's IPv6 address, raced against `gateway_endpoint` on every network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_endpoint6: Option<String>,
    pub gateway_public_key: String,
    pub preshared_key: bool,
    pub routes: Vec<String>,
    pub persistent_keepalive: u16,
    pub warnings: Vec<String>,
}

/// Checks the config at `path` and says what `roamer run` would do with it.
pub fn check(path: &Path, routes: &Routes) -> Result<CheckReport, ConfigError> {
    let Loaded {
        config,
        key,
        key_source,
        warnings,
    } = config::load(path, routes)?;
    let public_key: PublicKey = key.public_key();
    Ok(CheckReport {
        config: path.to_path_buf(),
        name: config.name.to_string(),
        interface: config.interface.to_string(),
        address: config.address.to_string(),
        address6: config.address6.map(|a| a.to_string()),
        mtu: config.mtu,
        public_key: public_key.to_string(),
        key_source,
        gateway_endpoint: config.gateway.endpoint.to_string(),
        gateway_endpoint_is_dns_name: config.gateway.endpoint.ip().is_none(),
        gateway_endpoint6: config.gateway.endpoint6.as_ref().map(ToString::to_string),
        gateway_public_key: config.gateway.public_key.to_string(),
        preshared_key: config.gateway.preshared_key.is_some(),
        routes: config
            .allowed_ips()
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
             tunnel {} with address {}{}, mtu {}\n  \
             private key {} (public key {})\n  \
             gateway {}{}{} (public key {}), preshared key {}\n  \
             routes through the tunnel: {} (everything else goes straight out)\n  \
             keepalive: {}\n",
            self.config.display(),
            self.name,
            self.interface,
            self.address,
            self.address6
                .as_ref()
                .map(|a| format!(" and {a} (IPv6 forwards arrive there)"))
                .unwrap_or_default(),
            self.mtu,
            self.key_source,
            self.public_key,
            self.gateway_endpoint,
            if self.gateway_endpoint_is_dns_name {
                " (a DNS name: resolved at start and again on every network change)"
            } else {
                ""
            },
            self.gateway_endpoint6
                .as_ref()
                .map(|v6| format!(
                    " or {v6} (IPv6: the one that answers first on each network, IPv6 first)"
                ))
                .unwrap_or_default(),
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
