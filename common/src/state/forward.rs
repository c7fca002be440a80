//! Forwards: one string each in the state file, and the checks across them (overlaps, mixed
//! client-ip modes, the gateway's own port).

use std::fmt;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::file::{invalid, StateError};
use super::{ClientIp, GatewaySettings};
use crate::names::RoamerName;
use crate::portspec::{PortSpec, Protocol};

/// One forward. In the state file it is one string,
/// `SPEC -> ROAMER [from CIDR[,CIDR...]] [masquerade]`, e.g.
/// `"2222:22/tcp -> laptop from 192.0.2.0/24"`: a gateway may hold thousands, and TOML
/// parses an array of strings about ten times faster than as many tables (measured: 3 ms vs
/// 35-45 ms for 10,000), which matters inside the add-port budget.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Forward {
    pub spec: PortSpec,
    pub to: RoamerName,
    /// IPv4 and IPv6 sources alike: each family's forward admits that family's entries.
    pub allow_from: Vec<IpNet>,
    pub client_ip: ClientIp,
}

impl Forward {
    /// The text that identifies this forward to `remove-port` and in listings.
    pub fn key(&self) -> String {
        self.spec.to_string()
    }
}

impl fmt::Display for Forward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.spec, self.to)?;
        if !self.allow_from.is_empty() {
            let sources: Vec<String> = self.allow_from.iter().map(ToString::to_string).collect();
            write!(f, " from {}", sources.join(","))?;
        }
        if self.client_ip == ClientIp::Masquerade {
            f.write_str(" masquerade")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Forward {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let shape = || {
            format!("forward '{s}' is not of the form 'SPEC -> ROAMER [from CIDR,...] [masquerade]' (e.g. '22/tcp -> laptop')")
        };
        let (spec, rest) = s.split_once("->").ok_or_else(shape)?;
        let spec: PortSpec = spec
            .trim()
            .parse()
            .map_err(|e| format!("forward '{s}': {e}"))?;
        let mut words = rest.split_whitespace().peekable();
        let to: RoamerName = words
            .next()
            .ok_or_else(shape)?
            .parse()
            .map_err(|e| format!("forward '{s}': {e}"))?;
        let allow_from = match words.next_if_eq(&"from") {
            None => Vec::new(),
            Some(_) => words
                .next()
                .ok_or_else(shape)?
                .split(',')
                .map(|cidr| {
                    parse_source(cidr).map_err(|_| {
                        format!("forward '{s}': '{cidr}' is not a CIDR (e.g. 192.0.2.0/24 or 2001:db8::/32)")
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let client_ip = match (words.next(), words.next()) {
            (None, _) => ClientIp::Keep,
            (Some("masquerade"), None) => ClientIp::Masquerade,
            _ => return Err(shape()),
        };
        Ok(Forward {
            spec,
            to,
            allow_from,
            client_ip,
        })
    }
}

/// A source of an allow-list: a CIDR, or one address (a /32 or /128).
pub fn parse_source(text: &str) -> Result<IpNet, ipnet::AddrParseError> {
    text.parse::<IpNet>().or_else(|e| {
        text.parse::<std::net::IpAddr>()
            .map(IpNet::from)
            .map_err(|_| e)
    })
}

impl Serialize for Forward {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Forward {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The first pair of specs that share a (protocol, public port), in O(n log n): the state may
/// hold thousands of forwards and is validated on every command.
pub fn first_overlap<'a>(
    specs: impl Iterator<Item = &'a PortSpec>,
) -> Option<(PortSpec, PortSpec)> {
    let mut by_protocol: Vec<(Protocol, PortSpec)> = specs
        .flat_map(|spec| spec.protocols.iter().map(move |p| (p, *spec)))
        .collect();
    by_protocol.sort_unstable_by_key(|(p, spec)| (*p, spec.public.first(), spec.public.last()));
    // Sorted by start, and with no overlap so far, a range overlaps an earlier one iff it
    // starts at or before the end of the one just before it.
    let mut previous: Option<(Protocol, PortSpec)> = None;
    for (protocol, spec) in by_protocol {
        match previous {
            Some((p, prev)) if p == protocol && spec.public.first() <= prev.public.last() => {
                return Some((prev, spec));
            }
            _ => previous = Some((protocol, spec)),
        }
    }
    None
}

/// Two forwards that reach the same roamer port (protocol and local port) with different
/// client-ip modes. The firewalld backend decides masquerading after DNAT, where only the
/// roamer's port is left to tell forwards apart (its rich rules match no conntrack mark), so
/// there such forwards must share one mode; nftables marks each forward's connections before
/// DNAT.
pub fn first_mixed_client_ip(forwards: &[Forward]) -> Option<(&Forward, &Forward)> {
    // The usual state has one mode throughout: no sort of thousands of forwards for it.
    let first = forwards.first()?.client_ip;
    if forwards.iter().all(|f| f.client_ip == first) {
        return None;
    }
    let mut targets: Vec<(&RoamerName, Protocol, &Forward)> = forwards
        .iter()
        .flat_map(|f| f.spec.protocols.iter().map(move |p| (&f.to, p, f)))
        .collect();
    targets.sort_unstable_by_key(|(to, p, f)| (*to, *p, f.spec.local.first()));
    // Sorted by start: a range meets an earlier one of the other mode iff that mode's
    // furthest-reaching earlier range ends at or after its start.
    let mut reach: [Option<&Forward>; 2] = [None, None];
    let mut group = None;
    for (to, protocol, forward) in targets {
        if group != Some((to, protocol)) {
            group = Some((to, protocol));
            reach = [None, None];
        }
        let mode = forward.client_ip as usize;
        if let Some(other) = reach[1 - mode] {
            if other.spec.local.last() >= forward.spec.local.first() {
                return Some((other, forward));
            }
        }
        if reach[mode].is_none_or(|r| r.spec.local.last() < forward.spec.local.last()) {
            reach[mode] = Some(forward);
        }
    }
    None
}

pub fn mixed_client_ip_message(a: &Forward, b: &Forward) -> String {
    format!(
        "forwards {} ({}) and {} ({}) reach the same port on '{}': on the firewalld backend, forwards to one roamer port share one --client-ip (the nftables backend lets each keep its own)",
        a.spec, a.client_ip, b.spec, b.client_ip, a.to
    )
}

/// A UDP forward must not capture the gateway's own WireGuard port (roamers may dial the
/// floating IP, which arrives on the anchor address).
pub fn check_forward_ports(spec: &PortSpec, gateway: &GatewaySettings) -> Result<(), StateError> {
    let listen_port = gateway.listen_port;
    if spec.protocols.contains(Protocol::Udp) && spec.public.contains(listen_port) {
        return Err(invalid(format!(
            "forward {spec} covers udp port {listen_port}, the gateway's own WireGuard port: \
             pick other ports or move WireGuard with `roamgw init --listen-port`"
        )));
    }
    if let Some(tcp_port) = gateway.tcp_port {
        if spec.protocols.contains(Protocol::Tcp) && spec.public.contains(tcp_port) {
            return Err(invalid(format!(
                "forward {spec} covers tcp port {tcp_port}, the gateway's WireGuard-over-TCP port: \
                 pick other ports or move it with `roamgw tcp-fallback PORT`"
            )));
        }
    }
    Ok(())
}
