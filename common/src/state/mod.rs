//! The gateway's desired state (`gateway.toml`) and the roamer's config (`roamer.toml`).
//!
//! Both are strict TOML (`deny_unknown_fields`, a `version` field) followed by a semantic
//! validation pass that names the offending entry. A file that fails either is an error, never
//! "empty": a crash or a typo must not silently drop forwards.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

mod file;
mod forward;
pub mod ha;
mod ipv6;
mod roamer_config;

pub use file::StateError;
use file::{invalid, parse_versioned};
pub use forward::{
    check_forward_ports, first_mixed_client_ip, first_overlap, mixed_client_ip_message,
    parse_source, Forward,
};
use ipv6::check_ipv6;
pub use ipv6::{check_endpoint6, check_forward6, random_ula};
#[cfg(test)]
pub(crate) use roamer_config::fixture as roamer_fixture;
pub use roamer_config::{RoamerConfig, RoamerGateway};

use crate::keys::PublicKey;
use crate::names::{Endpoint, InterfaceName, RoamerName};

/// 2: forwards keep the client's address unless marked `masquerade`; 1 (read, migrated):
/// every forward masqueraded.
pub const STATE_VERSION: u32 = 2;
const OLDEST_STATE_VERSION: u32 = 1;
pub const ROAMER_CONFIG_VERSION: u32 = 1;

pub const DEFAULT_LISTEN_PORT: u16 = 51820;
pub const DEFAULT_SUBNET: &str = "192.168.32.0/24";
pub const DEFAULT_INTERFACE: &str = "roamgw0";
/// WireGuard over IPv4 costs 60 bytes: 1500 - 60 - 20 (room for an IPv6 outer path).
pub const DEFAULT_MTU: u16 = 1420;
/// A NAT that forgets the laptop's mapping without a word is only healed by the laptop's next
/// packet, so the keepalive bounds that outage: 2 s keeps it under 3 s (docs/roamer.md has the
/// daily cost; `roamer run --keepalive 25` is the low-power choice).
pub const DEFAULT_KEEPALIVE_SECS: u16 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Nftables,
    Firewalld,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Nftables => "nftables",
            Backend::Firewalld => "firewalld",
        })
    }
}

/// The source address a forwarded connection has when it reaches the roamer.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum ClientIp {
    /// The client's own address: the laptop's logs, fail2ban and limits see who connects. The
    /// laptop sends the replies back through the tunnel by source-address routing (roamer, or
    /// the generated wg-quick config).
    #[default]
    Keep,
    /// The gateway's tunnel address, as the manual setup does: works with any laptop config.
    Masquerade,
}

impl fmt::Display for ClientIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientIp::Keep => "keep",
            ClientIp::Masquerade => "masquerade",
        })
    }
}

/// Who runs the WireGuard interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WireguardMode {
    /// Kernel if the kernel can create a `wireguard` link, else userspace.
    #[default]
    Auto,
    Kernel,
    Userspace,
    /// Someone else (e.g. wg-quick) runs the interface; roamgw manages the rules only.
    External,
}

impl fmt::Display for WireguardMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireguardMode::Auto => "auto",
            WireguardMode::Kernel => "kernel",
            WireguardMode::Userspace => "userspace",
            WireguardMode::External => "external",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySettings {
    /// The droplet's own public address: its services there are never touched.
    pub public_ip: Ipv4Addr,
    /// What roamers dial.
    pub endpoint: Endpoint,
    /// The droplet's IPv6 address roamers may dial too (the listener takes both families):
    /// roamers race it against `endpoint` on every network (IPv6 first, RFC 8305).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint6: Option<Endpoint>,
    /// The provider's floating IP (informational: the droplet only sees the anchor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floating_ip: Option<Ipv4Addr>,
    /// The private address the provider 1:1-NATs the floating IP to; forwards match on it.
    pub anchor_ip: Ipv4Addr,
    pub listen_port: u16,
    pub subnet: Ipv4Net,
    /// The gateway's address inside `subnet`.
    pub address: Ipv4Addr,
    pub backend: Backend,
    pub wireguard: WireguardMode,
    pub interface: InterfaceName,
    pub mtu: u16,
    pub public_key: PublicKey,
    /// Let the droplet's own services answer on the anchor address too (default: only forwards do).
    #[serde(default)]
    pub anchor_passthrough: bool,
    /// What `add-port` gives a forward unless told otherwise.
    #[serde(default)]
    pub client_ip: ClientIp,
    /// The next hop for traffic that leaves with the anchor address (roamers' egress), where
    /// the provider needs one (DigitalOcean: the anchor's gateway). `None`: the default route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor_gateway: Option<Ipv4Addr>,
    /// The tunnel's IPv6 prefix (a ULA /64, chosen at `init` or by the first `forward6`): the
    /// gateway and each roamer have the address at the offset their IPv4 address has in
    /// `subnet` (192.168.32.2 is fd..::2), so no address is stored twice. `None`: IPv4 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<Ipv6Net>,
    /// The IPv6 address forwards answer on: one dedicated to them (a reserved IPv6, or one
    /// out of the droplet's range) on the droplet's interface, reached without provider NAT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward6: Option<Ipv6Addr>,
    /// The droplet's own IPv6: its services there are never touched, so it is never a forward
    /// address (as `public_ip` for IPv4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ip6: Option<Ipv6Addr>,
    /// WireGuard over TCP for networks that pass no UDP (`roamgw tcp-fallback`): the port on
    /// the anchor address, so roamers reach it through the floating IP as they reach the
    /// UDP port, and a service on the public IP's port (the mirror's nginx on 443) is not in
    /// the way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_port: Option<u16>,
}

impl GatewaySettings {
    /// Where WireGuard over TCP listens: where the roamers' UDP arrives, so they reach it at
    /// the endpoint's host — the public IP when that is the endpoint, else the anchor (the
    /// floating IP's target).
    pub fn tcp_listen(&self) -> Option<std::net::SocketAddrV4> {
        let address = if self.endpoint.host == self.public_ip.to_string() {
            self.public_ip
        } else {
            self.anchor_ip
        };
        self.tcp_port
            .map(|port| std::net::SocketAddrV4::new(address, port))
    }

    /// The IPv6 tunnel address of the tunnel's IPv4 address `v4`: the same offset in
    /// `subnet6`. `None` without IPv6 in the tunnel.
    pub fn tunnel6(&self, v4: Ipv4Addr) -> Option<Ipv6Addr> {
        let offset = u32::from(v4).wrapping_sub(u32::from(self.subnet.network()));
        self.subnet6
            .map(|net| Ipv6Addr::from(u128::from(net.network()) + u128::from(offset)))
    }

    /// [`GatewaySettings::tunnel6`] with the prefix length of `subnet6`, as an interface
    /// carries it.
    pub fn tunnel6_net(&self, v4: Ipv4Addr) -> Option<Ipv6Net> {
        let prefix = self.subnet6?.prefix_len();
        Ipv6Net::new(self.tunnel6(v4)?, prefix).ok()
    }

    /// The addresses forwards answer on: the anchor, and the forward IPv6 when there is one.
    pub fn forward_addresses(&self) -> Vec<IpAddr> {
        std::iter::once(IpAddr::V4(self.anchor_ip))
            .chain(self.forward6.map(IpAddr::V6))
            .collect()
    }

    /// Per family, where forwards answer and the tunnel address of the roamer at `roamer` (its
    /// IPv4 tunnel address) they lead to: IPv4, and IPv6 with a forward IPv6.
    pub fn forward_sides(&self, roamer: Ipv4Addr) -> Vec<(IpAddr, IpAddr)> {
        let v6 = self
            .forward6
            .zip(self.tunnel6(roamer))
            .map(|(on, to)| (IpAddr::V6(on), IpAddr::V6(to)));
        std::iter::once((IpAddr::V4(self.anchor_ip), IpAddr::V4(roamer)))
            .chain(v6)
            .collect()
    }

    /// The gateway's own settings, each against the others.
    fn validate(&self) -> Result<(), StateError> {
        let g = self;
        if g.tcp_port == Some(0) {
            return Err(invalid(
                "gateway.tcp_port 0 is not a port: use 1-65535 (443 when the anchor's 443 is free), or remove the line",
            ));
        }
        if g.listen_port == 0 {
            return Err(invalid(
                "gateway.listen_port 0 is not a port: use 1-65535 (default 51820)",
            ));
        }
        if !(1280..=9000).contains(&g.mtu) {
            return Err(invalid(format!(
                "gateway.mtu {} is out of range: use 1280-9000 (default {DEFAULT_MTU})",
                g.mtu
            )));
        }
        check_subnet(g.subnet)?;
        check_addresses(g)?;
        g.endpoint
            .check_dialable()
            .map_err(|e| invalid(format!("gateway.endpoint: {e}")))?;
        if let Some(endpoint6) = &g.endpoint6 {
            check_endpoint6(endpoint6).map_err(|e| invalid(format!("gateway.endpoint6: {e}")))?;
        }
        check_ipv6(g)?;
        if !host_in(g.subnet, g.address) {
            return Err(invalid(format!(
                "gateway.address {} is not a host address of gateway.subnet {}",
                g.address, g.subnet
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoamerEntry {
    pub name: RoamerName,
    pub address: Ipv4Addr,
    pub public_key: PublicKey,
    /// Destinations the roamer may reach through the droplet, leaving with the anchor address
    /// (the outside sees the floating IP). Empty: none, the default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Ipv4Net>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayState {
    pub version: u32,
    pub gateway: GatewaySettings,
    #[serde(default, rename = "roamer", skip_serializing_if = "Vec::is_empty")]
    pub roamers: Vec<RoamerEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forwards: Vec<Forward>,
}

/// `address` with the subnet's prefix length (the tunnel address as an interface carries it).
pub fn address_in(subnet: Ipv4Net, address: Ipv4Addr) -> Ipv4Net {
    // A valid subnet's prefix length is valid for any address: the fallback never runs.
    Ipv4Net::new(address, subnet.prefix_len()).unwrap_or_else(|_| Ipv4Net::from(address))
}

impl GatewayState {
    pub fn from_toml(text: &str) -> Result<Self, StateError> {
        let mut state: GatewayState = parse_versioned(
            text,
            OLDEST_STATE_VERSION..=STATE_VERSION,
            |s: &GatewayState| s.version,
        )?;
        state.migrate();
        state.validate()?;
        Ok(state)
    }

    /// An older state, as this version reads it. Version 1 masqueraded every forward: its
    /// forwards, and the ones added later by default, keep doing so (the laptops' configs of
    /// that time route no replies for other sources).
    fn migrate(&mut self) {
        if self.version == 1 {
            self.gateway.client_ip = ClientIp::Masquerade;
            for forward in &mut self.forwards {
                forward.client_ip = ClientIp::Masquerade;
            }
        }
        self.version = STATE_VERSION;
    }

    pub fn to_toml(&self) -> Result<String, StateError> {
        file::to_text(self)
    }

    pub fn roamer(&self, name: &RoamerName) -> Option<&RoamerEntry> {
        self.roamers.iter().find(|r| &r.name == name)
    }

    /// The semantic checks that TOML types cannot express. Each message names the entry.
    pub fn validate(&self) -> Result<(), StateError> {
        self.gateway.validate()?;
        let names = self.check_roamers()?;
        self.check_forwards(&names)
    }

    /// Roamers: unique names, unique host addresses in the subnet, clean egress networks.
    /// Returns their names.
    fn check_roamers(&self) -> Result<BTreeSet<&RoamerName>, StateError> {
        let g = &self.gateway;
        let mut addresses = HashMap::from([(g.address, "the gateway".to_string())]);
        let mut names = BTreeSet::new();
        for roamer in &self.roamers {
            if !names.insert(&roamer.name) {
                return Err(invalid(format!("roamer '{}' appears twice", roamer.name)));
            }
            if !host_in(g.subnet, roamer.address) {
                let what = if roamer.address == g.subnet.broadcast() {
                    "the broadcast address of"
                } else if roamer.address == g.subnet.network() {
                    "the network address of"
                } else {
                    "outside"
                };
                return Err(invalid(format!(
                    "roamer '{}' has address {}, {what} the tunnel subnet {}: pick a host address in it",
                    roamer.name, roamer.address, g.subnet
                )));
            }
            if let Some(owner) =
                addresses.insert(roamer.address, format!("roamer '{}'", roamer.name))
            {
                return Err(invalid(format!(
                    "roamer '{}' has address {}, already used by {owner}",
                    roamer.name, roamer.address
                )));
            }
            if let Some(net) = roamer.egress.iter().find(|n| **n != n.trunc()) {
                return Err(invalid(format!(
                    "roamer '{}' egress {net} has host bits set: write {}",
                    roamer.name,
                    net.trunc()
                )));
            }
        }
        if !self.roamers.iter().all(|r| r.egress.is_empty()) && g.backend == Backend::Firewalld {
            return Err(invalid(EGRESS_NEEDS_NFTABLES));
        }
        Ok(names)
    }

    /// Forwards: to a roamer that exists, not on the gateway's own port, clean allow-lists,
    /// no overlaps, one client-ip mode per roamer port on firewalld.
    fn check_forwards(&self, names: &BTreeSet<&RoamerName>) -> Result<(), StateError> {
        let g = &self.gateway;
        for forward in &self.forwards {
            if !names.contains(&forward.to) {
                return Err(invalid(format!(
                    "forward {} points to roamer '{}', which does not exist",
                    forward.spec, forward.to
                )));
            }
            check_forward_ports(&forward.spec, g)?;
            if let Some(net) = forward.allow_from.iter().find(|n| **n != n.trunc()) {
                return Err(invalid(format!(
                    "forward {} allows {net}, which has host bits set: write {}",
                    forward.spec,
                    net.trunc()
                )));
            }
        }
        if let Some((a, b)) = first_overlap(self.forwards.iter().map(|f| &f.spec)) {
            return Err(invalid(format!("forward {b} overlaps forward {a}")));
        }
        if g.backend == Backend::Firewalld {
            if let Some((a, b)) = first_mixed_client_ip(&self.forwards) {
                return Err(invalid(mixed_client_ip_message(a, b)));
            }
        }
        Ok(())
    }

    /// The lowest host address of the subnet that neither the gateway nor a roamer uses.
    pub fn next_free_address(&self) -> Option<Ipv4Addr> {
        let used: BTreeSet<Ipv4Addr> = self
            .roamers
            .iter()
            .map(|r| r.address)
            .chain([self.gateway.address])
            .collect();
        self.gateway.subnet.hosts().find(|a| !used.contains(a))
    }
}

/// An IPv6 endpoint: an IPv6 address (not a name: a name's AAAA records are found through
/// `endpoint`) that a laptop can reach.
pub const EGRESS_NEEDS_NFTABLES: &str = "egress needs the nftables backend: firewalld can only masquerade, which would leave with the droplet's public IP instead of the floating IP";

/// Refuses subnets that cannot hold a gateway and a roamer.
pub fn check_subnet(subnet: Ipv4Net) -> Result<(), StateError> {
    if subnet.prefix_len() > 30 {
        return Err(invalid(format!(
            "tunnel subnet {subnet} is too small: use a /30 or larger (default {DEFAULT_SUBNET})"
        )));
    }
    if subnet.network() != subnet.addr() {
        return Err(invalid(format!(
            "tunnel subnet {subnet} has host bits set: write it as {}",
            subnet.trunc()
        )));
    }
    Ok(())
}

/// RFC 1918 or shared (CGNAT, 100.64.0.0/10) space: an address the internet does not dial.
pub fn is_private_or_shared(ip: Ipv4Addr) -> bool {
    ip.is_private() || Ipv4Net::new(Ipv4Addr::new(100, 64, 0, 0), 10).is_ok_and(|n| n.contains(&ip))
}

/// The droplet's addresses as `init` was given them, checked against each other: each
/// message says what is wrong and what to give instead.
fn check_addresses(g: &GatewaySettings) -> Result<(), StateError> {
    if is_private_or_shared(g.public_ip) && !is_private_or_shared(g.anchor_ip) {
        return Err(invalid(format!(
            "gateway.public_ip {} is private and gateway.anchor_ip {} is public: swapped? \
             --public-ip is the droplet's own public address, --anchor-ip the private one the \
             floating IP maps to",
            g.public_ip, g.anchor_ip
        )));
    }
    if g.floating_ip == Some(g.public_ip) {
        return Err(invalid(format!(
            "gateway.floating_ip {} is the droplet's own public IP: forwards on it would take \
             the droplet's own services; give the reserved/floating IP (or no --floating-ip)",
            g.public_ip
        )));
    }
    let inside = [
        ("public IP", Some(g.public_ip)),
        ("anchor", Some(g.anchor_ip)),
        ("floating IP", g.floating_ip),
    ];
    for (what, ip) in inside {
        if let Some(ip) = ip.filter(|ip| g.subnet.contains(ip)) {
            return Err(invalid(format!(
                "gateway.subnet {} contains the {what} {ip}: the tunnel needs a subnet of its own; \
                 pick another --subnet (e.g. 192.168.32.0/24)",
                g.subnet
            )));
        }
    }
    Ok(())
}

pub(crate) fn host_in(subnet: Ipv4Net, address: Ipv4Addr) -> bool {
    subnet.contains(&address) && address != subnet.network() && address != subnet.broadcast()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::PrivateKey;

    pub(crate) fn sample_state() -> GatewayState {
        let key = PrivateKey::generate().expect("random");
        GatewayState {
            version: STATE_VERSION,
            gateway: GatewaySettings {
                public_ip: Ipv4Addr::new(203, 0, 113, 10),
                endpoint: "203.0.113.10:51820".parse().expect("endpoint"),
                endpoint6: None,
                floating_ip: Some(Ipv4Addr::new(203, 0, 113, 50)),
                anchor_ip: Ipv4Addr::new(10, 16, 0, 5),
                listen_port: 51820,
                subnet: DEFAULT_SUBNET.parse().expect("subnet"),
                address: Ipv4Addr::new(192, 168, 32, 1),
                backend: Backend::Nftables,
                wireguard: WireguardMode::Auto,
                interface: DEFAULT_INTERFACE.parse().expect("ifname"),
                mtu: DEFAULT_MTU,
                public_key: key.public_key(),
                anchor_passthrough: false,
                client_ip: ClientIp::Keep,
                anchor_gateway: None,
                tcp_port: None,
                subnet6: None,
                forward6: None,
                public_ip6: None,
            },
            roamers: vec![RoamerEntry {
                name: "laptop".parse().expect("name"),
                address: Ipv4Addr::new(192, 168, 32, 2),
                public_key: key.public_key(),
                egress: Vec::new(),
            }],
            forwards: vec![Forward {
                spec: "22".parse().expect("spec"),
                to: "laptop".parse().expect("name"),
                allow_from: vec!["192.0.2.0/24".parse().expect("cidr")],
                client_ip: ClientIp::Keep,
            }],
        }
    }

    #[test]
    fn state_round_trips_through_toml() {
        let state = sample_state();
        let text = state.to_toml().expect("serializes");
        assert_eq!(GatewayState::from_toml(&text).expect("parse"), state);
        assert!(text.starts_with("version = 2\n"), "{text}");
    }

    #[test]
    fn a_version_1_state_keeps_masquerading() {
        let v1 = sample_state()
            .to_toml()
            .expect("serializes")
            .replace("version = 2", "version = 1")
            .replace("client_ip = \"keep\"\n", "");
        assert!(!v1.contains("client_ip"), "{v1}");
        let state = GatewayState::from_toml(&v1).expect("v1 loads");
        assert_eq!(state.version, STATE_VERSION);
        assert_eq!(state.gateway.client_ip, ClientIp::Masquerade);
        assert!(state
            .forwards
            .iter()
            .all(|f| f.client_ip == ClientIp::Masquerade));
        // Saved as version 2, it reads back the same: the forwards say so themselves.
        let saved = state.to_toml().expect("serializes");
        assert!(saved.contains("masquerade\""), "{saved}");
        assert_eq!(GatewayState::from_toml(&saved).expect("v2 loads"), state);
    }

    #[test]
    fn forwards_to_one_roamer_port_share_one_mode() {
        // (forwards, the pair found as "a | b")
        let cases: &[(&[&str], Option<&str>)] = &[
            (&["22 -> laptop", "2222:22 -> laptop"], None),
            (
                &["22 -> laptop", "2222:22 -> laptop masquerade"],
                Some("22/tcp -> laptop | 2222:22/tcp -> laptop masquerade"),
            ),
            (&["22 -> laptop", "2222:22 -> desktop masquerade"], None),
            (
                &["53/udp -> laptop", "5353:53/tcp -> laptop masquerade"],
                None,
            ),
            (
                &[
                    "60000-60100/udp -> laptop masquerade",
                    "7000:60050/udp -> laptop",
                ],
                Some("60000-60100/udp -> laptop masquerade | 7000:60050/udp -> laptop"),
            ),
            (
                &[
                    "1000-1010 -> laptop masquerade",
                    "2000:1020 -> laptop masquerade",
                    "3000:1005 -> laptop",
                ],
                Some("1000-1010/tcp -> laptop masquerade | 3000:1005/tcp -> laptop"),
            ),
            (
                &["1000-1010 -> laptop masquerade", "3000:1011 -> laptop"],
                None,
            ),
        ];
        for (texts, expected) in cases {
            let forwards: Vec<Forward> = texts.iter().map(|t| t.parse().expect(t)).collect();
            let found = first_mixed_client_ip(&forwards).map(|(a, b)| format!("{a} | {b}"));
            assert_eq!(found.as_deref(), *expected, "{texts:?}");
        }
    }

    #[test]
    fn forward_lines_round_trip() {
        for text in [
            "22/tcp -> laptop",
            "2222:22/tcp -> laptop from 192.0.2.0/24,198.51.100.7/32",
            "22/tcp -> laptop masquerade",
            "53/udp -> laptop from 192.0.2.0/24 masquerade",
            "22/tcp -> laptop from 192.0.2.0/24,2001:db8:c::/48",
        ] {
            let forward: Forward = text.parse().expect(text);
            assert_eq!(forward.to_string(), text);
        }
        for (bad, reason) in [
            ("22/tcp laptop", "is not of the form"),
            ("22 -> ", "is not of the form"),
            ("0 -> laptop", "port 0"),
            ("22 -> Laptop", "roamer name"),
            ("22 -> laptop to 192.0.2.0/24", "is not of the form"),
            ("22 -> laptop from 192.0.2.0/33", "not a CIDR"),
            ("22 -> laptop from 2001:db8::/129", "not a CIDR"),
            ("22 -> laptop keep masquerade", "is not of the form"),
            (
                "22 -> laptop masquerade from 192.0.2.0/24",
                "is not of the form",
            ),
            ("22 -> laptop from", "is not of the form"),
        ] {
            let e = bad.parse::<Forward>().expect_err(bad);
            assert!(e.contains(reason), "{bad}: {e}");
        }
    }

    #[test]
    fn unknown_field_is_an_error_with_a_line() {
        let text = sample_state()
            .to_toml()
            .expect("serializes")
            .replace("mtu = ", "mtuu = ");
        let err = GatewayState::from_toml(&text).expect_err("unknown field");
        assert!(err.to_string().contains("unknown field `mtuu`"), "{err}");
        assert!(err.to_string().starts_with("line "), "{err}");
    }

    #[test]
    fn wrong_version_says_so() {
        let text = sample_state()
            .to_toml()
            .expect("serializes")
            .replace("version = 2", "version = 7");
        assert_eq!(
            GatewayState::from_toml(&text),
            Err(StateError::Version {
                found: 7,
                supported: 2
            })
        );
    }

    #[test]
    fn semantic_errors_name_the_entry() {
        let mut s = sample_state();
        s.forwards[0].to = "desktop".parse().expect("name");
        assert!(s
            .validate()
            .expect_err("unknown roamer")
            .to_string()
            .contains("'desktop'"));

        let mut s = sample_state();
        s.forwards.push(s.forwards[0].clone());
        assert!(s
            .validate()
            .expect_err("overlap")
            .to_string()
            .contains("overlaps"));

        let mut s = sample_state();
        s.roamers[0].address = Ipv4Addr::new(192, 168, 32, 1);
        assert!(s
            .validate()
            .expect_err("dup")
            .to_string()
            .contains("already used by the gateway"));

        let mut s = sample_state();
        s.forwards[0].spec = "51800-51900/udp".parse().expect("spec");
        assert!(s
            .validate()
            .expect_err("wg port")
            .to_string()
            .contains("WireGuard port"));
    }

    #[test]
    fn ipv6_settings_are_checked_against_each_other() {
        let with = |subnet6: Option<&str>, forward6: Option<&str>, public_ip6: Option<&str>| {
            let mut s = sample_state();
            s.gateway.subnet6 = subnet6.map(|n| n.parse().expect("net"));
            s.gateway.forward6 = forward6.map(|a| a.parse().expect("v6"));
            s.gateway.public_ip6 = public_ip6.map(|a| a.parse().expect("v6"));
            s.validate().map_err(|e| e.to_string())
        };
        let ula = Some("fd12:3456:789a::/64");
        // subnet6, forward6, public_ip6, and a part of the error (`None`: valid).
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
        );
        let cases: &[Case] = &[
            (None, None, None, None),
            (ula, None, None, None),
            (ula, Some("2001:db8::5"), Some("2001:db8::1"), None),
            (
                None,
                Some("2001:db8::5"),
                None,
                Some("needs gateway.subnet6"),
            ),
            (
                ula,
                Some("2001:db8::1"),
                Some("2001:db8::1"),
                Some("the droplet's own IPv6"),
            ),
            (ula, Some("fe80::5"), None, Some("link-local")),
            (ula, Some("ff02::1"), None, Some("multicast")),
            (ula, Some("::ffff:192.0.2.1"), None, Some("IPv4-mapped")),
            (
                ula,
                Some("fd12:3456:789a::9"),
                None,
                Some("inside the tunnel's prefix"),
            ),
            (Some("fd12:3456:789a::1/64"), None, None, Some("host bits")),
            (Some("fd12:3456:789a::/125"), None, None, Some("too small")),
        ];
        for (subnet6, forward6, public_ip6, error) in cases {
            let got = with(*subnet6, *forward6, *public_ip6);
            match error {
                None => assert_eq!(got, Ok(()), "{subnet6:?} {forward6:?}"),
                Some(part) => assert!(
                    got.as_ref().is_err_and(|e| e.contains(part)),
                    "{subnet6:?} {forward6:?}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn tunnel_ipv6_addresses_follow_the_ipv4_ones() {
        let mut s = sample_state();
        assert_eq!(s.gateway.tunnel6(s.roamers[0].address), None);
        s.gateway.subnet6 = Some("fd12:3456:789a::/64".parse().expect("net"));
        let v6 = |a: Ipv4Addr| s.gateway.tunnel6(a).map(|a| a.to_string());
        assert_eq!(v6(s.gateway.address).as_deref(), Some("fd12:3456:789a::1"));
        assert_eq!(
            v6(s.roamers[0].address).as_deref(),
            Some("fd12:3456:789a::2")
        );
        let ula = random_ula().expect("random");
        assert_eq!((ula.prefix_len(), ula.addr().octets()[0]), (64, 0xfd));
        assert_eq!(ula, ula.trunc());
    }

    #[test]
    fn next_free_address_skips_used() {
        let mut s = sample_state();
        assert_eq!(s.next_free_address(), Some(Ipv4Addr::new(192, 168, 32, 3)));
        s.gateway.subnet = "192.168.32.0/30".parse().expect("net");
        assert_eq!(s.next_free_address(), None);
    }
}
