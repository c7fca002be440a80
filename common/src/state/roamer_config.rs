//! The roamer's config (`roamer.toml`): what `roamgw show-config NAME --format roamer` prints
//! and `roamer run --config` reads.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use super::file::{invalid, parse_versioned, StateError};
use super::{host_in, DEFAULT_KEEPALIVE_SECS, DEFAULT_MTU, ROAMER_CONFIG_VERSION};
use crate::keys::{PresharedKey, PrivateKey, PublicKey};
use crate::names::{Endpoint, InterfaceName, RoamerName};

/// The roamer's side of the tunnel: what `roamgw show-config NAME --format roamer` prints and
/// `roamer run --config` reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoamerConfig {
    pub version: u32,
    pub name: RoamerName,
    pub interface: InterfaceName,
    /// The roamer's tunnel address with the subnet's prefix length.
    pub address: Ipv4Net,
    /// The roamer's tunnel IPv6 address with the tunnel's IPv6 prefix length (a ULA /64),
    /// where forwards of the gateway's IPv6 address arrive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address6: Option<Ipv6Net>,
    /// Inline key; the file is 0600. Exactly one of `private_key` and `private_key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<PrivateKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_file: Option<PathBuf>,
    pub mtu: u16,
    pub gateway: RoamerGateway,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoamerGateway {
    pub endpoint: Endpoint,
    /// The gateway's IPv6 address, raced against `endpoint`'s addresses on every network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint6: Option<Endpoint>,
    /// The gateway's address inside the tunnel, which `roamer run` probes to tell a live path
    /// from a dead one. Default: the subnet's first host (roamgw's own default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Ipv4Addr>,
    pub public_key: PublicKey,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preshared_key: Option<PresharedKey>,
    /// What goes through the tunnel; by default only the tunnel subnet, so updates and
    /// browsing go straight out.
    pub allowed_ips: Vec<Ipv4Net>,
    /// Seconds; 0 turns keepalive off.
    pub persistent_keepalive: u16,
    /// Where the gateway takes WireGuard over TCP, for networks that pass no UDP (the
    /// roamer switches to it when UDP gets no answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_fallback: Option<Endpoint>,
}

impl RoamerConfig {
    pub fn from_toml(text: &str) -> Result<Self, StateError> {
        let config: RoamerConfig = parse_versioned(
            text,
            ROAMER_CONFIG_VERSION..=ROAMER_CONFIG_VERSION,
            |c: &RoamerConfig| c.version,
        )?;
        config.validate()?;
        Ok(config)
    }

    pub fn to_toml(&self) -> Result<String, StateError> {
        super::file::to_text(self)
    }

    /// The destinations beyond the tunnel subnet that go through the tunnel (egress the
    /// gateway allows this roamer).
    pub fn egress(&self) -> Vec<Ipv4Net> {
        let subnet = self.address.trunc();
        self.gateway
            .allowed_ips
            .iter()
            .copied()
            .filter(|net| !subnet.contains(net))
            .collect()
    }

    /// What goes through the tunnel, as WireGuard's allowed IPs (and the tunnel's IPv6 prefix).
    pub fn allowed_ips(&self) -> Vec<ipnet::IpNet> {
        self.gateway
            .allowed_ips
            .iter()
            .copied()
            .map(ipnet::IpNet::V4)
            .chain(self.address6.map(|a| ipnet::IpNet::V6(a.trunc())))
            .collect()
    }

    /// Every source of the tunnel's families, as the gateway peer's allowed IPs where replies
    /// are routed by their source: a forward that keeps the client's address arrives with it.
    pub fn any_source(&self) -> Vec<ipnet::IpNet> {
        let v6 = self
            .address6
            .map(|_| ipnet::IpNet::V6(ipnet::Ipv6Net::default()));
        std::iter::once(ipnet::IpNet::V4(Ipv4Net::default()))
            .chain(v6)
            .collect()
    }

    /// The source addresses replies to forwarded connections leave with, which the laptop
    /// routes into the tunnel: IPv4, and IPv6 when the tunnel has it.
    pub fn reply_sources(&self) -> (std::net::Ipv4Addr, Option<std::net::Ipv6Addr>) {
        (self.address.addr(), self.address6.map(|a| a.addr()))
    }

    /// The interface's addresses: IPv4, and IPv6 when the tunnel has it.
    pub fn tunnel_addresses(&self) -> Vec<ipnet::IpNet> {
        std::iter::once(ipnet::IpNet::V4(self.address))
            .chain(self.address6.map(ipnet::IpNet::V6))
            .collect()
    }

    /// The gateway's tunnel address: configured, or the subnet's first host.
    pub fn gateway_tunnel_address(&self) -> Ipv4Addr {
        let subnet = self.address.trunc();
        self.gateway
            .address
            .or_else(|| subnet.hosts().next())
            .unwrap_or(subnet.network())
    }

    pub fn validate(&self) -> Result<(), StateError> {
        match (&self.private_key, &self.private_key_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "both private_key and private_key_file are set: keep one",
                ))
            }
            (None, None) => {
                return Err(invalid(
                    "no private key: set private_key, or private_key_file to a 0600 file holding `wg genkey` output",
                ))
            }
            _ => {}
        }
        self.gateway
            .endpoint
            .check_dialable()
            .map_err(|e| invalid(format!("gateway.endpoint: {e}")))?;
        if let Some(endpoint6) = &self.gateway.endpoint6 {
            super::check_endpoint6(endpoint6)
                .map_err(|e| invalid(format!("gateway.endpoint6: {e}")))?;
        }
        if !(1280..=9000).contains(&self.mtu) {
            return Err(invalid(format!(
                "mtu {} is out of range: use 1280-9000 (default {DEFAULT_MTU})",
                self.mtu
            )));
        }
        if self.address.prefix_len() > 30 || !host_in(self.address.trunc(), self.address.addr()) {
            return Err(invalid(format!(
                "address {} is not a host address with its subnet's prefix (e.g. 192.168.32.2/24)",
                self.address
            )));
        }
        if let Some(address6) = self.address6 {
            let address = address6.addr();
            if !(address.segments()[0] & 0xfe00 == 0xfc00
                || address.segments()[0] & 0xe000 == 0x2000)
                || address6.prefix_len() > 126
                || address == address6.network()
            {
                return Err(invalid(format!(
                    "address6 {address6} is not a host address of a unique-local or global prefix (e.g. fd12:3456:789a::2/64)"
                )));
            }
        }
        if self.gateway.allowed_ips.is_empty() {
            return Err(invalid(format!(
                "gateway.allowed_ips is empty: nothing would use the tunnel; use [\"{}\"]",
                self.address.trunc()
            )));
        }
        let gateway = self.gateway_tunnel_address();
        if !host_in(self.address.trunc(), gateway) || gateway == self.address.addr() {
            return Err(invalid(format!(
                "gateway.address {gateway} must be another host of the tunnel subnet {}",
                self.address.trunc()
            )));
        }
        if self.gateway.persistent_keepalive > 3600 {
            return Err(invalid(format!(
                "gateway.persistent_keepalive {} is too long: use 0 (off) or 1-3600 seconds (default {DEFAULT_KEEPALIVE_SECS})",
                self.gateway.persistent_keepalive
            )));
        }
        Ok(())
    }
}

/// The valid-roamer fixture (inline key), with a tunnel IPv6 address when `address6`: what the
/// renderers of other laptop stacks are tested with.
#[cfg(test)]
pub(crate) fn fixture(address6: bool) -> RoamerConfig {
    let text = include_str!("../../../tests/fixtures/valid-roamer/inline-key.toml");
    let text = if address6 {
        text.replace(
            "mtu = 1420",
            "address6 = \"fd12:3456:789a::2/64\"\nmtu = 1420",
        )
    } else {
        text.to_string()
    };
    RoamerConfig::from_toml(&text).expect("the valid-roamer fixture")
}
