//! What roamgw wants in firewalld, from the state: one zone and three policies, all named after
//! roamgw and nothing else touched. Pure, so every rule shape is a table test.
//!
//! - zone `roamgw`: the WireGuard interface, so traffic toward the roamers has a zone;
//! - policy `roamgw-host` (ANY → HOST): the WireGuard port open; the anchor closed except
//!   forwards (or, with --anchor-passthrough, closed only for the allow-listed ports, so a
//!   refused source never falls through to the droplet's own service);
//! - policy `roamgw-dnat` (ANY → ANY): per roamer, two rules (tcp, udp) that DNAT what its
//!   ipset `roamgw-A-B-C-D` (its tunnel address) holds — `anchor,protocol:port[-port]` entries,
//!   one per plain forward — so add-port is one ipset entry, not a rewrite of every rule;
//!   remapped and allow-listed forwards get rich rules of their own, each matching the anchor
//!   as destination (a forward-port without one would also capture outbound traffic);
//! - policy `roamgw-masq` (ANY → zone roamgw): masquerade toward the tunnel (the manual
//!   setup's return path) for the forwards with `--client-ip masquerade`, one rich rule per
//!   roamer over its ipset `roamgw-masq-A-B-C-D` of targets (`address,protocol:local-port`:
//!   after DNAT the target is what is left of a forward). Other forwards keep the client's
//!   address.
//!
//! With a forward IPv6 (`roamgw forward6`) every ipset and rule has an IPv6 twin: ipsets
//! `roamgw-v6-A-B-C-D` and `roamgw-masq-v6-A-B-C-D` (family inet6, still named after the
//! roamer's IPv4 address: ipset names have 32 characters), `family="ipv6"` rules to the
//! roamer's tunnel IPv6, and the forward IPv6 closed as the anchor is.
//!
//! firewalld has no maps: its ipsets are the nearest thing. A remapped range is expanded port
//! by port (a range `to-port` does not keep the offset).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use roamgw_common::state::{ClientIp, Forward, GatewayState};
use roamgw_common::{PortRange, Protocol, Protocols};

pub const ZONE: &str = "roamgw";
pub const HOST_POLICY: &str = "roamgw-host";
pub const DNAT_POLICY: &str = "roamgw-dnat";
pub const MASQ_POLICY: &str = "roamgw-masq";
pub const POLICIES: [&str; 3] = [HOST_POLICY, DNAT_POLICY, MASQ_POLICY];
/// Before the zones (which firewalld runs at priority 0): our drops and forwards first.
pub const PRIORITY: i32 = -100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneSpec {
    pub interfaces: Vec<String>,
}

/// The parts of a policy roamgw sets; all else stays firewalld's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySpec {
    pub name: &'static str,
    pub ingress_zones: Vec<String>,
    pub egress_zones: Vec<String>,
    /// (port, protocol)
    pub ports: Vec<(String, String)>,
    pub masquerade: bool,
    pub rich_rules: BTreeSet<String>,
}

/// A `hash:ip,port` ipset of plain forwards to one roamer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpsetSpec {
    pub name: String,
    pub entries: BTreeSet<String>,
    /// Of IPv6 entries (firewalld's `family=inet6`).
    pub ipv6: bool,
}

pub const IPSET_PREFIX: &str = "roamgw-";
pub const IPSET_TYPE: &str = "hash:ip,port";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// `None` for the nftables backend's allowance, which needs no zone.
    pub zone: Option<ZoneSpec>,
    pub ipsets: Vec<IpsetSpec>,
    pub policies: Vec<PolicySpec>,
}

/// The ipset of forwards to the roamer at `address` (its IPv4 tunnel address; `ipv6`: of the
/// forwards over IPv6). Ipset names have 32 characters at most, so even an IPv6 set is named
/// after the roamer's IPv4 address.
pub fn ipset_name(address: Ipv4Addr, ipv6: bool) -> String {
    let family = if ipv6 { "v6-" } else { "" };
    format!(
        "{IPSET_PREFIX}{family}{}",
        address.to_string().replace('.', "-")
    )
}

/// The ipset of the targets (`roamer,protocol:local ports`) of masqueraded forwards.
pub fn masq_ipset_name(address: Ipv4Addr, ipv6: bool) -> String {
    ipset_name(address, ipv6).replacen(IPSET_PREFIX, &format!("{IPSET_PREFIX}masq-"), 1)
}

/// The masquerade ipset entries of a forward to `to`.
pub fn masq_entries(forward: &Forward, to: IpAddr) -> Vec<String> {
    hash_ip_port_entries(to, forward.spec.protocols, forward.spec.local)
}

/// `family="…"` of a rich rule about `address`.
fn family(address: IpAddr) -> &'static str {
    if address.is_ipv6() {
        "ipv6"
    } else {
        "ipv4"
    }
}

/// `hash:ip,port` entries: `address,protocol:port[-port]` per protocol.
fn hash_ip_port_entries(address: IpAddr, protocols: Protocols, ports: PortRange) -> Vec<String> {
    protocols
        .iter()
        .map(|protocol| {
            format!(
                "{address},{}:{}",
                protocol.as_str(),
                range_text(ports.first(), ports.last())
            )
        })
        .collect()
}

/// Plain forwards (same ports, open to all) go into the roamer's ipset.
fn is_plain(forward: &Forward) -> bool {
    !forward.spec.is_remap() && forward.allow_from.is_empty()
}

/// The ipset entries of a plain forward.
pub fn ipset_entries(anchor: IpAddr, forward: &Forward) -> Vec<String> {
    hash_ip_port_entries(anchor, forward.spec.protocols, forward.spec.public)
}

fn any() -> Vec<String> {
    vec!["ANY".to_string()]
}

/// The droplet's own rules: with forwards closing the anchor (and the forward IPv6), they drop
/// all but WireGuard (and ICMPv6, which neighbour discovery needs); with
/// `--anchor-passthrough`, only allow-listed forwards drop other sources.
fn host_rules(state: &GatewayState) -> BTreeSet<String> {
    let g = &state.gateway;
    let closed = g.forward_addresses();
    let mut host_rules = BTreeSet::new();
    if g.anchor_passthrough {
        for forward in state.forwards.iter().filter(|f| !f.allow_from.is_empty()) {
            for protocol in forward.spec.protocols.iter() {
                for address in &closed {
                    host_rules.insert(anchor_port_drop(*address, forward, protocol));
                }
            }
        }
        return host_rules;
    }
    for address in closed {
        let family = family(address);
        // Roamers may dial the floating IP, which arrives on the anchor: its WireGuard port
        // stays open (priority -1 runs before the drop).
        let open = std::iter::once((g.listen_port, "udp")).chain(g.tcp_port.map(|p| (p, "tcp")));
        for (port, protocol) in open {
            host_rules.insert(format!(
                "rule priority=\"-1\" family=\"{family}\" destination address=\"{address}\" port port=\"{port}\" protocol=\"{protocol}\" accept"
            ));
        }
        if address.is_ipv6() {
            host_rules.insert(format!(
                "rule priority=\"-1\" family=\"ipv6\" destination address=\"{address}\" protocol value=\"ipv6-icmp\" accept"
            ));
        }
        host_rules.insert(format!(
            "rule family=\"{family}\" destination address=\"{address}\" drop"
        ));
    }
    host_rules
}

/// Per roamer and family: its two ipsets (plain forwards, masqueraded ones) and the rules that
/// use them.
fn per_roamer(state: &GatewayState) -> (Vec<IpsetSpec>, BTreeSet<String>, BTreeSet<String>) {
    let mut ipsets = Vec::new();
    let (mut masq_rules, mut dnat_rules) = (BTreeSet::new(), BTreeSet::new());
    for roamer in &state.roamers {
        for (on, to) in state.gateway.forward_sides(roamer.address) {
            let (ipv6, family) = (on.is_ipv6(), family(on));
            let (plain, masq) = (
                ipset_name(roamer.address, ipv6),
                masq_ipset_name(roamer.address, ipv6),
            );
            masq_rules.insert(format!(
                "rule family=\"{family}\" destination ipset=\"{masq}\" masquerade"
            ));
            for protocol in [Protocol::Tcp, Protocol::Udp] {
                dnat_rules.insert(format!(
                    "rule family=\"{family}\" destination ipset=\"{plain}\" forward-port port=\"1-65535\" protocol=\"{}\" to-addr=\"{to}\"",
                    protocol.as_str()
                ));
            }
            ipsets.extend([plain, masq].map(|name| IpsetSpec {
                name,
                entries: BTreeSet::new(),
                ipv6,
            }));
        }
    }
    (ipsets, masq_rules, dnat_rules)
}

pub fn desired(state: &GatewayState) -> Desired {
    let g = &state.gateway;
    let host_rules = host_rules(state);
    let (mut ipsets, masq_rules, mut dnat_rules) = per_roamer(state);
    for forward in &state.forwards {
        let Some(roamer) = state.roamer(&forward.to) else {
            continue;
        };
        for (on, to) in state.gateway.forward_sides(roamer.address) {
            let ipv6 = on.is_ipv6();
            let mut add_to = |name: String, entries: Vec<String>| {
                if let Some(set) = ipsets.iter_mut().find(|s| s.name == name) {
                    set.entries.extend(entries);
                }
            };
            if is_plain(forward) {
                add_to(ipset_name(roamer.address, ipv6), ipset_entries(on, forward));
            } else {
                dnat_rules.extend(forward_rules(on, forward, to));
            }
            if forward.client_ip == ClientIp::Masquerade {
                add_to(
                    masq_ipset_name(roamer.address, ipv6),
                    masq_entries(forward, to),
                );
            }
        }
    }
    Desired {
        zone: Some(ZoneSpec {
            interfaces: vec![g.interface.to_string()],
        }),
        ipsets,
        policies: vec![
            host_policy(state, host_rules),
            PolicySpec {
                name: DNAT_POLICY,
                ingress_zones: any(),
                egress_zones: any(),
                ports: Vec::new(),
                masquerade: false,
                rich_rules: dnat_rules,
            },
            PolicySpec {
                name: MASQ_POLICY,
                ingress_zones: any(),
                egress_zones: vec![ZONE.into()],
                ports: Vec::new(),
                masquerade: false,
                rich_rules: masq_rules,
            },
        ],
    }
}

fn host_policy(state: &GatewayState, rich_rules: BTreeSet<String>) -> PolicySpec {
    PolicySpec {
        name: HOST_POLICY,
        ingress_zones: any(),
        egress_zones: vec!["HOST".into()],
        ports: std::iter::once((state.gateway.listen_port, "udp"))
            .chain(state.gateway.tcp_port.map(|port| (port, "tcp")))
            .map(|(port, protocol)| (port.to_string(), protocol.into()))
            .collect(),
        masquerade: false,
        rich_rules,
    }
}

/// With the nftables backend next to a running firewalld: only the WireGuard port, opened
/// through firewalld (an `accept` in our own table does not get past firewalld's input
/// chain). Forwarded traffic needs nothing: firewalld accepts DNATed flows early.
pub fn nftables_allowance(state: &GatewayState) -> Desired {
    Desired {
        zone: None,
        ipsets: Vec::new(),
        policies: vec![host_policy(state, BTreeSet::new())],
    }
}

fn anchor_port_drop(anchor: IpAddr, forward: &Forward, protocol: Protocol) -> String {
    format!(
        "rule family=\"{}\" destination address=\"{anchor}\" port port=\"{}\" protocol=\"{}\" drop",
        family(anchor),
        range_text(forward.spec.public.first(), forward.spec.public.last()),
        protocol.as_str()
    )
}

fn range_text(first: u16, last: u16) -> String {
    if first == last {
        first.to_string()
    } else {
        format!("{first}-{last}")
    }
}

/// The forward-port rich rules of one forward on `anchor` (the anchor, or the forward IPv6)
/// to the roamer's tunnel address `to` of the same family. Only the allow-list's sources of
/// that family admit: a list of IPv4 CIDRs leaves no rule, and so no forward, on IPv6.
pub fn forward_rules(anchor: IpAddr, forward: &Forward, to: IpAddr) -> Vec<String> {
    let family = family(anchor);
    let spec = &forward.spec;
    // (public ports, to-port or None to keep the port)
    let ports: Vec<(String, Option<u16>)> = if !spec.is_remap() {
        vec![(range_text(spec.public.first(), spec.public.last()), None)]
    } else if spec.public.is_single() {
        vec![(spec.public.first().to_string(), Some(spec.local.first()))]
    } else {
        (spec.public.first()..=spec.public.last())
            .filter_map(|p| spec.local_port_for(p).map(|l| (p.to_string(), Some(l))))
            .collect()
    };
    let sources: Vec<String> = if forward.allow_from.is_empty() {
        vec![String::new()]
    } else {
        forward
            .allow_from
            .iter()
            .filter(|net| net.addr().is_ipv6() == anchor.is_ipv6())
            .map(|net| format!(" source address=\"{net}\""))
            .collect()
    };
    let mut rules = Vec::new();
    for protocol in spec.protocols.iter() {
        for source in &sources {
            for (port, to_port) in &ports {
                let to_port = to_port
                    .map(|p| format!(" to-port=\"{p}\""))
                    .unwrap_or_default();
                rules.push(format!(
                    "rule family=\"{family}\"{source} destination address=\"{anchor}\" forward-port port=\"{port}\" protocol=\"{}\"{to_port} to-addr=\"{to}\"",
                    protocol.as_str()
                ));
            }
        }
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANCHOR: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 16, 0, 5));
    const TO: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 32, 2));

    fn forward(spec: &str, allow: &[&str]) -> Forward {
        Forward {
            spec: spec.parse().expect("spec"),
            to: "laptop".parse().expect("name"),
            allow_from: allow.iter().map(|a| a.parse().expect("cidr")).collect(),
            client_ip: ClientIp::Keep,
        }
    }

    #[test]
    fn forward_rules_by_shape() {
        let table: &[(&str, &[&str], &[&str])] = &[
            (
                "22",
                &[],
                &[
                    r#"rule family="ipv4" destination address="10.16.0.5" forward-port port="22" protocol="tcp" to-addr="192.168.32.2""#,
                ],
            ),
            (
                "2222:22",
                &[],
                &[
                    r#"rule family="ipv4" destination address="10.16.0.5" forward-port port="2222" protocol="tcp" to-port="22" to-addr="192.168.32.2""#,
                ],
            ),
            (
                "60000-60002/udp",
                &[],
                &[
                    r#"rule family="ipv4" destination address="10.16.0.5" forward-port port="60000-60002" protocol="udp" to-addr="192.168.32.2""#,
                ],
            ),
            (
                "8000-8001:9000-9001",
                &[],
                &[
                    r#"rule family="ipv4" destination address="10.16.0.5" forward-port port="8000" protocol="tcp" to-port="9000" to-addr="192.168.32.2""#,
                    r#"rule family="ipv4" destination address="10.16.0.5" forward-port port="8001" protocol="tcp" to-port="9001" to-addr="192.168.32.2""#,
                ],
            ),
            (
                "53/tcp+udp",
                &["192.0.2.0/24"],
                &[
                    r#"rule family="ipv4" source address="192.0.2.0/24" destination address="10.16.0.5" forward-port port="53" protocol="tcp" to-addr="192.168.32.2""#,
                    r#"rule family="ipv4" source address="192.0.2.0/24" destination address="10.16.0.5" forward-port port="53" protocol="udp" to-addr="192.168.32.2""#,
                ],
            ),
        ];
        for (spec, allow, want) in table {
            assert_eq!(
                forward_rules(ANCHOR, &forward(spec, allow), TO),
                want.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "{spec}"
            );
        }
    }

    #[test]
    fn plain_forwards_are_ipset_entries() {
        let laptop = Ipv4Addr::new(192, 168, 32, 2);
        assert_eq!(ipset_name(laptop, false), "roamgw-192-168-32-2");
        assert_eq!(masq_ipset_name(laptop, true), "roamgw-masq-v6-192-168-32-2");
        let longest = masq_ipset_name(Ipv4Addr::new(192, 168, 132, 255), true);
        assert!(longest.len() <= 32, "{longest}");
        assert!(is_plain(&forward("22", &[])));
        assert!(is_plain(&forward("60000-60100/udp", &[])));
        assert!(!is_plain(&forward("2222:22", &[])));
        assert!(!is_plain(&forward("22", &["192.0.2.0/24"])));
        assert_eq!(
            ipset_entries(ANCHOR, &forward("53/tcp+udp", &[])),
            vec!["10.16.0.5,tcp:53", "10.16.0.5,udp:53"]
        );
        assert_eq!(
            ipset_entries(ANCHOR, &forward("60000-60100/udp", &[])),
            vec!["10.16.0.5,udp:60000-60100"]
        );
    }

    fn state(forwards: &[&str], passthrough: bool) -> GatewayState {
        let text = format!(
            r#"version = 1
forwards = [{}]

[gateway]
public_ip = "203.0.113.10"
endpoint = "203.0.113.10:51820"
anchor_ip = "10.16.0.5"
listen_port = 51820
subnet = "192.168.32.0/24"
address = "192.168.32.1"
backend = "firewalld"
wireguard = "userspace"
interface = "roamgw0"
mtu = 1420
public_key = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
anchor_passthrough = {passthrough}

[[roamer]]
name = "laptop"
address = "192.168.32.2"
public_key = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
"#,
            forwards
                .iter()
                .map(|f| format!("\"{f} -> laptop\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        GatewayState::from_toml(&text).expect("state")
    }

    #[test]
    fn desired_objects_by_state() {
        let d = desired(&state(&["22", "53/tcp+udp", "2222:22"], false));
        assert_eq!(
            d.zone,
            Some(ZoneSpec {
                interfaces: vec!["roamgw0".into()]
            })
        );
        let entries = |set: &IpsetSpec| set.entries.iter().cloned().collect::<Vec<_>>();
        let names: Vec<&str> = d.ipsets.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["roamgw-192-168-32-2", "roamgw-masq-192-168-32-2"]);
        assert_eq!(
            entries(&d.ipsets[0]),
            ["10.16.0.5,tcp:22", "10.16.0.5,tcp:53", "10.16.0.5,udp:53"]
        );
        // A version 1 state masquerades all: 22 and 2222:22 share one target.
        assert_eq!(
            entries(&d.ipsets[1]),
            [
                "192.168.32.2,tcp:22",
                "192.168.32.2,tcp:53",
                "192.168.32.2,udp:53"
            ]
        );
        let names: Vec<&str> = d.policies.iter().map(|p| p.name).collect();
        assert_eq!(names, POLICIES);
        let dnat = &d.policies[1];
        // Two ipset rules for the roamer, one rich rule for the remap.
        assert_eq!(dnat.rich_rules.len(), 3, "{:?}", dnat.rich_rules);
        let host = &d.policies[0];
        assert_eq!(host.ports, vec![("51820".to_string(), "udp".to_string())]);
        assert!(host.rich_rules.iter().any(|r| r.ends_with("drop")));
        assert!(!d.policies[2].masquerade, "per forward, not per policy");
        assert_eq!(
            d.policies[2].rich_rules.iter().collect::<Vec<_>>(),
            [r#"rule family="ipv4" destination ipset="roamgw-masq-192-168-32-2" masquerade"#]
        );
        // Adding a plain forward changes only the ipset: add-port is one entry.
        let more = desired(&state(&["22", "53/tcp+udp", "2222:22", "8080"], false));
        assert_eq!(more.policies, d.policies);
        assert_ne!(more.ipsets, d.ipsets);
    }

    #[test]
    fn a_forward_address_adds_the_ipv6_side_of_every_forward() {
        let mut s = state(&["22", "2222:22"], false);
        s.gateway.subnet6 = Some("fd12:3456:789a::/64".parse().expect("net"));
        s.gateway.forward6 = Some("2001:db8::5".parse().expect("v6"));
        s.forwards.push(forward("8080", &["192.0.2.0/24"]));
        s.forwards.push(forward("8443", &["2001:db8:c::/48"]));
        let d = desired(&s);
        let names: Vec<&str> = d.ipsets.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "roamgw-192-168-32-2",
                "roamgw-masq-192-168-32-2",
                "roamgw-v6-192-168-32-2",
                "roamgw-masq-v6-192-168-32-2"
            ]
        );
        assert!(d.ipsets[2].ipv6 && !d.ipsets[0].ipv6);
        assert_eq!(
            d.ipsets[2].entries.iter().collect::<Vec<_>>(),
            ["2001:db8::5,tcp:22"]
        );
        // Version 1: masqueraded, by the roamer's tunnel IPv6.
        assert!(d.ipsets[3].entries.contains("fd12:3456:789a::2,tcp:22"));
        let dnat = &d.policies[1].rich_rules;
        for want in [
            r#"rule family="ipv6" destination ipset="roamgw-v6-192-168-32-2" forward-port port="1-65535" protocol="tcp" to-addr="fd12:3456:789a::2""#,
            r#"rule family="ipv6" destination address="2001:db8::5" forward-port port="2222" protocol="tcp" to-port="22" to-addr="fd12:3456:789a::2""#,
            r#"rule family="ipv6" source address="2001:db8:c::/48" destination address="2001:db8::5" forward-port port="8443" protocol="tcp" to-addr="fd12:3456:789a::2""#,
            r#"rule family="ipv4" source address="192.0.2.0/24" destination address="10.16.0.5" forward-port port="8080" protocol="tcp" to-addr="192.168.32.2""#,
        ] {
            assert!(dnat.contains(want), "missing {want}: {dnat:#?}");
        }
        // Each family's forward admits its own family's sources: 8080 is shut on IPv6, 8443
        // on IPv4.
        assert!(!dnat
            .iter()
            .any(|r| r.contains("port=\"8080\"") && r.contains("ipv6")));
        assert!(!dnat
            .iter()
            .any(|r| r.contains("port=\"8443\"") && r.contains("ipv4")));
        let host = &d.policies[0].rich_rules;
        for want in [
            r#"rule family="ipv6" destination address="2001:db8::5" drop"#,
            r#"rule priority="-1" family="ipv6" destination address="2001:db8::5" protocol value="ipv6-icmp" accept"#,
            r#"rule priority="-1" family="ipv6" destination address="2001:db8::5" port port="51820" protocol="udp" accept"#,
        ] {
            assert!(host.contains(want), "missing {want}: {host:#?}");
        }
        assert!(d.policies[2].rich_rules.contains(
            r#"rule family="ipv6" destination ipset="roamgw-masq-v6-192-168-32-2" masquerade"#
        ));
    }

    #[test]
    fn kept_client_addresses_are_not_masqueraded() {
        let mut keep = state(&["22", "60000-60100/udp"], false);
        for forward in &mut keep.forwards {
            forward.client_ip = ClientIp::Keep;
        }
        let d = desired(&keep);
        assert!(d.ipsets[1].entries.is_empty(), "{:?}", d.ipsets[1]);
        keep.forwards[1].client_ip = ClientIp::Masquerade;
        let d = desired(&keep);
        assert_eq!(
            d.ipsets[1].entries.iter().collect::<Vec<_>>(),
            ["192.168.32.2,udp:60000-60100"]
        );
    }

    #[test]
    fn passthrough_closes_nothing_but_refused_sources() {
        let d = desired(&state(&["22"], true));
        assert!(d.policies[0].rich_rules.is_empty());
        let nftables = nftables_allowance(&state(&["22"], false));
        assert_eq!(nftables.zone, None);
        assert!(nftables.ipsets.is_empty());
        assert_eq!(nftables.policies.len(), 1);
    }

    #[test]
    fn passthrough_drops_only_what_allow_lists_refuse() {
        let f = forward("22", &["192.0.2.2/32"]);
        assert_eq!(
            anchor_port_drop(ANCHOR, &f, Protocol::Tcp),
            r#"rule family="ipv4" destination address="10.16.0.5" port port="22" protocol="tcp" drop"#
        );
    }
}
