//! The content of the `roamgw` table as data: the settings the rules are rendered with, and
//! the elements of its maps and sets. Desired and observed states are both values of these
//! types, so the diff between them is a pure function.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use roamgw_common::state::{ClientIp, Forward, GatewayState};
use roamgw_common::{InterfaceName, PortRange, PortSpec, Protocol};

pub const TABLE: &str = "roamgw";
/// One table for both families: the chains that drop (forward, input) then hold IPv6 by
/// construction, and a change to either family is one transaction (docs/decisions.md).
pub const FAMILY: &str = "inet";
/// Where the table lived before it held IPv6: replaced by the `inet` one on the first apply.
pub const LEGACY_FAMILY: &str = "ip";
/// The rules' shape: bump when `nft-templates/roamgw.nft` changes in a way that needs a replace
/// (the marker also hashes the template text, so this is belt and braces).
pub const RULES_VERSION: u32 = 1;
pub const TEMPLATE: &str = include_str!("../../../../nft-templates/roamgw.nft");
/// The conntrack mark bit of a connection to a masqueraded forward, set before DNAT (the
/// template's MASQ_MARK). One bit, OR-ed in, so other users of the mark keep theirs.
pub const MASQ_MARK: u32 = 0x0010_0000;
/// The firewalld backend's table of counters (crate::dataplane::nftables::counting).
pub const COUNT_TABLE: &str = "roamgw_count";
pub const COUNT_FAMILY: &str = FAMILY;
pub const COUNT_TEMPLATE: &str = include_str!("../../../../nft-templates/roamgw-count.nft");

/// What the rules themselves are rendered with. A change here means a table replace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSettings {
    pub anchor: Ipv4Addr,
    pub interface: InterfaceName,
    pub listen_port: u16,
    /// WireGuard over TCP's port on the anchor; 0 when off (no packet has port 0).
    pub tcp_port: u16,
}

impl TableSettings {
    pub fn of(state: &GatewayState) -> Self {
        let g = &state.gateway;
        TableSettings {
            anchor: g.anchor_ip,
            interface: g.interface.clone(),
            listen_port: g.listen_port,
            tcp_port: g.tcp_port.unwrap_or(0),
        }
    }

    /// The version marker kept as the one element of set `marker`: a stable hash of the rules
    /// version, the template and the settings. A different marker means a table replace.
    pub fn marker(&self) -> u32 {
        let text = format!(
            "{RULES_VERSION}\0{TEMPLATE}\0{}\0{}\0{}\0{}",
            self.anchor, self.interface, self.listen_port, self.tcp_port
        );
        let hash = roamgw_common::hash::fnv1a64(text.as_bytes());
        // Folded to the 32 bits of nft's `mark` type.
        (hash ^ (hash >> 32)) as u32
    }
}

/// One element of one map or set of the table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Element {
    DnatAddr {
        anchor: IpAddr,
        protocol: Protocol,
        port: u16,
        to: IpAddr,
    },
    DnatPort {
        anchor: IpAddr,
        protocol: Protocol,
        port: u16,
        to_port: u16,
    },
    DnatRange {
        anchor: IpAddr,
        protocol: Protocol,
        ports: PortRange,
        to: IpAddr,
    },
    /// Counted traffic of a single public port (each element has its own counter).
    CountSingle {
        anchor: IpAddr,
        protocol: Protocol,
        port: u16,
    },
    CountRange {
        anchor: IpAddr,
        protocol: Protocol,
        ports: PortRange,
    },
    /// Counted replies of a single public port (its way back).
    ReplySingle {
        anchor: IpAddr,
        protocol: Protocol,
        port: u16,
    },
    ReplyRange {
        anchor: IpAddr,
        protocol: Protocol,
        ports: PortRange,
    },
    Restricted {
        anchor: IpAddr,
        protocol: Protocol,
        ports: PortRange,
    },
    Allowed {
        anchor: IpAddr,
        protocol: Protocol,
        ports: PortRange,
        source: IpNet,
    },
    ClosedAnchor(IpAddr),
    /// A destination a roamer (by its tunnel address) may reach through the droplet.
    Egress {
        from: Ipv4Addr,
        to: ipnet::Ipv4Net,
    },
    /// An address forwards answer on (the anchor; the floating IP for the droplet's own
    /// connections; the forward IPv6).
    ForwardAddr(IpAddr),
    /// A masqueraded forward by its public tuple: anchor, protocol and public port(s).
    MasqueradeSingle {
        anchor: IpAddr,
        protocol: Protocol,
        port: u16,
    },
    MasqueradeRange {
        anchor: IpAddr,
        protocol: Protocol,
        ports: PortRange,
    },
}

impl Element {
    /// The map or set the element lives in: IPv6 elements live in the `6` twin of each.
    pub fn container(&self) -> &'static str {
        let (v4, v6) = match self {
            Element::DnatAddr { .. } => ("dnat_addr", "dnat_addr6"),
            Element::DnatPort { .. } => ("dnat_port", "dnat_port6"),
            Element::DnatRange { .. } => ("dnat_range", "dnat_range6"),
            Element::CountSingle { .. } => ("count_single", "count_single6"),
            Element::CountRange { .. } => ("count_range", "count_range6"),
            Element::ReplySingle { .. } => ("reply_single", "reply_single6"),
            Element::ReplyRange { .. } => ("reply_range", "reply_range6"),
            Element::Restricted { .. } => ("restricted", "restricted6"),
            Element::Allowed { .. } => ("allowed", "allowed6"),
            Element::ClosedAnchor(_) => ("closed_anchors", "closed_anchors6"),
            Element::ForwardAddr(_) => ("forward_addrs", "forward_addrs6"),
            Element::Egress { .. } => ("egress", "egress"),
            Element::MasqueradeSingle { .. } => ("masquerade_single", "masquerade_single6"),
            Element::MasqueradeRange { .. } => ("masquerade_range", "masquerade_range6"),
        };
        if self.is_ipv6() {
            v6
        } else {
            v4
        }
    }

    /// Whether the element is of an IPv6 forward (by the address it answers on).
    pub fn is_ipv6(&self) -> bool {
        match self {
            Element::DnatAddr { anchor, .. }
            | Element::DnatPort { anchor, .. }
            | Element::DnatRange { anchor, .. }
            | Element::CountSingle { anchor, .. }
            | Element::CountRange { anchor, .. }
            | Element::ReplySingle { anchor, .. }
            | Element::ReplyRange { anchor, .. }
            | Element::Restricted { anchor, .. }
            | Element::Allowed { anchor, .. }
            | Element::MasqueradeSingle { anchor, .. }
            | Element::MasqueradeRange { anchor, .. }
            | Element::ClosedAnchor(anchor)
            | Element::ForwardAddr(anchor) => anchor.is_ipv6(),
            Element::Egress { .. } => false,
        }
    }
}

/// Element text as nft writes it inside `{ }`.
impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Element::DnatAddr {
                anchor,
                protocol,
                port,
                to,
            } => write!(f, "{anchor} . {protocol} . {port} : {to}"),
            Element::DnatPort {
                anchor,
                protocol,
                port,
                to_port,
            } => {
                write!(f, "{anchor} . {protocol} . {port} : {to_port}")
            }
            Element::DnatRange {
                anchor,
                protocol,
                ports,
                to,
            } => write!(f, "{anchor} . {protocol} . {ports} : {to}"),
            Element::CountSingle {
                anchor,
                protocol,
                port,
            }
            | Element::ReplySingle {
                anchor,
                protocol,
                port,
            } => write!(f, "{anchor} . {protocol} . {port}"),
            Element::CountRange {
                anchor,
                protocol,
                ports,
            }
            | Element::ReplyRange {
                anchor,
                protocol,
                ports,
            } => write!(f, "{anchor} . {protocol} . {ports}"),
            Element::Restricted {
                anchor,
                protocol,
                ports,
            } => write!(f, "{anchor} . {protocol} . {ports}"),
            Element::Allowed {
                anchor,
                protocol,
                ports,
                source,
            } => {
                write!(f, "{anchor} . {protocol} . {ports} . {source}")
            }
            Element::ClosedAnchor(a) | Element::ForwardAddr(a) => write!(f, "{a}"),
            Element::Egress { from, to } => write!(f, "{from} . {to}"),
            Element::MasqueradeSingle {
                anchor,
                protocol,
                port,
            } => write!(f, "{anchor} . {protocol} . {port}"),
            Element::MasqueradeRange {
                anchor,
                protocol,
                ports,
            } => write!(f, "{anchor} . {protocol} . {ports}"),
        }
    }
}

/// The whole desired content of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub settings: TableSettings,
    pub elements: BTreeSet<Element>,
}

/// The elements that count a forward's traffic (their counters add up to the forward's).
pub fn is_count(element: &Element) -> bool {
    is_reply_count(element)
        || matches!(
            element,
            Element::CountSingle { .. } | Element::CountRange { .. }
        )
}

/// The counting elements of the way back.
pub fn is_reply_count(element: &Element) -> bool {
    matches!(
        element,
        Element::ReplySingle { .. } | Element::ReplyRange { .. }
    )
}

/// The elements one forward contributes on the address `anchor` (the anchor, or the forward
/// IPv6) toward the roamer's tunnel address `to` of the same family. Only the allow-list's
/// sources of that family admit: a list of IPv4 CIDRs shuts the IPv6 forward.
pub fn forward_elements(
    anchor: IpAddr,
    spec: &PortSpec,
    to: IpAddr,
    allow_from: &[IpNet],
) -> Vec<Element> {
    let mut out = Vec::new();
    for protocol in spec.protocols.iter() {
        if spec.public.is_single() || spec.is_remap() {
            // A remapped range has no offset DNAT in nft: expand it port by port into hash maps.
            for port in spec.public.first()..=spec.public.last() {
                let to_port = spec.local_port_for(port).unwrap_or(port);
                out.push(Element::DnatAddr {
                    anchor,
                    protocol,
                    port,
                    to,
                });
                out.push(Element::DnatPort {
                    anchor,
                    protocol,
                    port,
                    to_port,
                });
                out.push(Element::CountSingle {
                    anchor,
                    protocol,
                    port,
                });
                out.push(Element::ReplySingle {
                    anchor,
                    protocol,
                    port,
                });
            }
        } else {
            out.push(Element::DnatRange {
                anchor,
                protocol,
                ports: spec.public,
                to,
            });
            out.push(Element::CountRange {
                anchor,
                protocol,
                ports: spec.public,
            });
            out.push(Element::ReplyRange {
                anchor,
                protocol,
                ports: spec.public,
            });
        }
        if !allow_from.is_empty() {
            out.push(Element::Restricted {
                anchor,
                protocol,
                ports: spec.public,
            });
            let same_family = |net: &&IpNet| net.addr().is_ipv6() == anchor.is_ipv6();
            for source in allow_from.iter().filter(same_family) {
                out.push(Element::Allowed {
                    anchor,
                    protocol,
                    ports: spec.public,
                    source: *source,
                });
            }
        }
    }
    out
}

/// The elements that masquerade a forward toward the tunnel: its public tuple, so each
/// forward has its own and keeps its own mode.
pub fn masquerade_elements(spec: &PortSpec, anchor: IpAddr) -> Vec<Element> {
    spec.protocols
        .iter()
        .map(|protocol| {
            if spec.public.is_single() {
                Element::MasqueradeSingle {
                    anchor,
                    protocol,
                    port: spec.public.first(),
                }
            } else {
                Element::MasqueradeRange {
                    anchor,
                    protocol,
                    ports: spec.public,
                }
            }
        })
        .collect()
}

/// Everything one forward of `state` contributes.
pub fn elements_of(state: &GatewayState, forward: &Forward) -> Vec<Element> {
    let Some(roamer) = state.roamer(&forward.to) else {
        return Vec::new(); // validated states never get here
    };
    let mut out = Vec::new();
    for (on, to) in state.gateway.forward_sides(roamer.address) {
        out.extend(forward_elements(on, &forward.spec, to, &forward.allow_from));
        if forward.client_ip == ClientIp::Masquerade {
            out.extend(masquerade_elements(&forward.spec, on));
        }
    }
    out
}

/// What the roamers may reach through the droplet.
pub fn egress_elements(state: &GatewayState) -> impl Iterator<Item = Element> + '_ {
    state.roamers.iter().flat_map(|r| {
        r.egress.iter().map(|to| Element::Egress {
            from: r.address,
            to: *to,
        })
    })
}

/// The desired table for a state.
pub fn desired(state: &GatewayState) -> Desired {
    let g = &state.gateway;
    let forward6 = g.forward6.map(IpAddr::V6);
    let mut elements = BTreeSet::new();
    if !g.anchor_passthrough {
        let closed = g.forward_addresses().into_iter();
        elements.extend(closed.map(Element::ClosedAnchor));
    }
    elements.extend(
        std::iter::once(g.anchor_ip)
            .chain(g.floating_ip)
            .map(IpAddr::V4)
            .chain(forward6)
            .map(Element::ForwardAddr),
    );
    for forward in &state.forwards {
        elements.extend(elements_of(state, forward));
    }
    elements.extend(egress_elements(state));
    Desired {
        settings: TableSettings::of(state),
        elements,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor() -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 16, 0, 5))
    }
    fn laptop() -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 168, 32, 2))
    }

    fn texts(spec: &str, allow: &[&str]) -> Vec<String> {
        let allow: Vec<IpNet> = allow.iter().map(|a| a.parse().expect("net")).collect();
        let spec: PortSpec = spec.parse().expect("spec");
        forward_elements(anchor(), &spec, laptop(), &allow)
            .iter()
            .map(|e| format!("{} {e}", e.container()))
            .collect()
    }

    #[test]
    fn forwards_become_elements() {
        assert_eq!(
            texts("22", &[]),
            [
                "dnat_addr 10.16.0.5 . tcp . 22 : 192.168.32.2",
                "dnat_port 10.16.0.5 . tcp . 22 : 22",
                "count_single 10.16.0.5 . tcp . 22",
                "reply_single 10.16.0.5 . tcp . 22",
            ]
        );
        assert_eq!(
            texts("60000-60100/udp", &[]),
            [
                "dnat_range 10.16.0.5 . udp . 60000-60100 : 192.168.32.2",
                "count_range 10.16.0.5 . udp . 60000-60100",
                "reply_range 10.16.0.5 . udp . 60000-60100",
            ]
        );
        let remap = texts("8000-8001:9000-9001", &[]);
        assert!(
            remap.contains(&"dnat_port 10.16.0.5 . tcp . 8001 : 9001".to_string()),
            "{remap:?}"
        );
        assert_eq!(remap.len(), 2 * 4);
        let both = texts("53/tcp+udp", &["192.0.2.0/24"]);
        assert!(
            both.contains(&"restricted 10.16.0.5 . udp . 53".to_string()),
            "{both:?}"
        );
        assert!(
            both.contains(&"allowed 10.16.0.5 . tcp . 53 . 192.0.2.0/24".to_string()),
            "{both:?}"
        );
    }

    #[test]
    fn masqueraded_forwards_add_their_public_tuples() {
        let masq = |spec: &str| -> Vec<String> {
            masquerade_elements(&spec.parse().expect("spec"), anchor())
                .iter()
                .map(|e| format!("{} {e}", e.container()))
                .collect()
        };
        assert_eq!(masq("22"), ["masquerade_single 10.16.0.5 . tcp . 22"]);
        assert_eq!(
            masq("2222:22/tcp+udp"),
            [
                "masquerade_single 10.16.0.5 . tcp . 2222",
                "masquerade_single 10.16.0.5 . udp . 2222"
            ]
        );
        assert_eq!(
            masq("60000-60100/udp"),
            ["masquerade_range 10.16.0.5 . udp . 60000-60100"]
        );
        assert_eq!(
            masq("8000-8001:9000-9001"),
            ["masquerade_range 10.16.0.5 . tcp . 8000-8001"],
            "remapped: by the public range, which DNAT's lookup also uses"
        );

        let mut state = GatewayState::from_toml(include_str!(
            "../../../../tests/fixtures/valid-state/gateway.toml"
        ))
        .expect("state");
        let masquerading = |state: &GatewayState| {
            desired(state)
                .elements
                .iter()
                .filter(|e| e.container().starts_with("masquerade"))
                .count()
        };
        // Version 1: all three forwards masquerade, each by its own public tuple.
        assert_eq!(masquerading(&state), 3);
        for forward in &mut state.forwards {
            forward.client_ip = ClientIp::Keep;
        }
        assert_eq!(masquerading(&state), 0);
    }

    #[test]
    fn marker_changes_with_the_settings() {
        let settings = TableSettings {
            anchor: Ipv4Addr::new(10, 16, 0, 5),
            interface: "roamgw0".parse().expect("if"),
            listen_port: 51820,
            tcp_port: 0,
        };
        let mut other = settings.clone();
        other.listen_port = 51821;
        assert_ne!(settings.marker(), other.marker());
        assert_eq!(settings.marker(), settings.clone().marker());
    }
}
