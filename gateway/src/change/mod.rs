//! A change to the desired state, as a value. The CLI applies it to the state file when no
//! daemon runs, or sends it to `roamgw run`, which applies it to the state it holds in memory
//! (no re-parse of thousands of forwards). Either way the checks and messages are these.

use std::net::Ipv4Addr;

use crate::dataplane::ForwardChange;
use ipnet::{IpNet, Ipv4Net};
use roamgw_common::state::{
    check_forward_ports, mixed_client_ip_message, Backend, ClientIp, Forward, GatewayState,
    RoamerEntry, EGRESS_NEEDS_NFTABLES,
};
use roamgw_common::{PortSpec, PublicKey, RoamerName};
use serde::{Deserialize, Serialize};

mod gateway;
use gateway::{adopt, set_endpoint6, set_forward6, set_tcp_port};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StateChange {
    /// The roamer's key files are written before this is applied (the PSK is read from them).
    AddRoamer {
        name: RoamerName,
        public_key: PublicKey,
        address: Option<Ipv4Addr>,
    },
    RemoveRoamer {
        name: RoamerName,
        force: bool,
    },
    AddPort {
        spec: PortSpec,
        to: Option<RoamerName>,
        allow_from: Vec<IpNet>,
        /// `None`: the gateway's default.
        #[serde(default)]
        client_ip: Option<ClientIp>,
    },
    RemovePort {
        spec: PortSpec,
    },
    /// A roamer's new public key (its new private key and PSK files are written first).
    RotateRoamerKey {
        name: RoamerName,
        public_key: PublicKey,
    },
    /// The gateway's new public key (its private key file is written first).
    RotateGatewayKey {
        public_key: PublicKey,
    },
    /// Replaces the destinations the roamer may reach through the droplet (empty: none).
    SetEgress {
        name: RoamerName,
        egress: Vec<Ipv4Net>,
    },
    /// The active droplet's gateway, taken by its standby (`roamgw ha`); its key files are
    /// written first. What is each droplet's own stays: see [`adopt`].
    Adopt {
        active: Box<GatewayState>,
    },
    /// WireGuard over TCP on this port of the anchor (`None`: off).
    SetTcpPort {
        port: Option<u16>,
    },
    /// The IPv6 address roamers may dial (`None`: IPv4 only).
    SetEndpoint6 {
        endpoint6: Option<roamgw_common::names::Endpoint>,
    },
    /// The IPv6 address forwards answer on (`None`: forwards over IPv4 only); `subnet6`: the
    /// tunnel's IPv6 prefix for a gateway that has none yet (a random ULA the caller drew).
    SetForward6 {
        forward6: Option<std::net::Ipv6Addr>,
        subnet6: ipnet::Ipv6Net,
    },
}

/// A refused change: the message says what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

fn refused(message: impl Into<String>) -> Refused {
    Refused(message.into())
}

/// What a change did to the state: the line for the user, and the forwards it removed and
/// added.
#[derive(Debug, Clone, Default)]
pub struct Changed {
    pub summary: String,
    pub forwards: ForwardChange,
}

/// Applies `change` to `state`; on a refusal `state` is unchanged.
pub fn apply(state: &mut GatewayState, change: &StateChange) -> Result<Changed, Refused> {
    match change {
        // Forward changes check everything before they touch the state: no copy, which
        // matters with thousands of forwards.
        StateChange::AddPort {
            spec,
            to,
            allow_from,
            client_ip,
        } => add_port(state, spec, to.clone(), allow_from, *client_ip),
        StateChange::RemovePort { spec } => remove_port(state, spec),
        StateChange::AddRoamer {
            name,
            public_key,
            address,
        } => on_copy(state, |next| add_roamer(next, name, *public_key, *address)),
        StateChange::RemoveRoamer { name, force } => {
            on_copy(state, |next| remove_roamer(next, name, *force))
        }
        StateChange::SetEgress { name, egress } => {
            on_copy(state, |next| set_egress(next, name, egress))
        }
        StateChange::RotateRoamerKey { name, public_key } => {
            on_copy(state, |next| rotate_roamer_key(next, name, *public_key))
        }
        StateChange::Adopt { active } => adopt(state, active),
        StateChange::SetTcpPort { port } => on_copy(state, |next| set_tcp_port(next, *port)),
        StateChange::SetEndpoint6 { endpoint6 } => {
            on_copy(state, |next| set_endpoint6(next, endpoint6.clone()))
        }
        StateChange::SetForward6 { forward6, subnet6 } => {
            on_copy(state, |next| set_forward6(next, *forward6, *subnet6))
        }
        StateChange::RotateGatewayKey { public_key } => on_copy(state, |next| {
            next.gateway.public_key = *public_key;
            Ok(Changed {
                summary: format!(
                    "the gateway has a new key (public key {public_key}); the old one no longer works: every roamer needs its new config (`roamgw show-config NAME`)"
                ),
                forwards: ForwardChange::default(),
            })
        }),
    }
}

fn rotate_roamer_key(
    state: &mut GatewayState,
    name: &RoamerName,
    public_key: PublicKey,
) -> Result<Changed, Refused> {
    if let Some(other) = state
        .roamers
        .iter()
        .find(|r| r.public_key == public_key && &r.name != name)
    {
        return Err(refused(format!(
            "roamer '{}' already uses this public key: each roamer needs its own key",
            other.name
        )));
    }
    let roamer = roamer_mut(state, name)?;
    if roamer.public_key == public_key {
        return Err(refused(format!(
            "that is the key '{name}' has now: give a new one (or leave --public-key out for a generated one)"
        )));
    }
    roamer.public_key = public_key;
    Ok(Changed {
        summary: format!(
            "{name} has a new key and preshared key (public key {public_key}); the old ones no longer work: give it its new config (`roamgw show-config {name}`)"
        ),
        forwards: ForwardChange::default(),
    })
}

/// The roamer of that name, to change; refused with the names there are.
fn roamer_mut<'a>(
    state: &'a mut GatewayState,
    name: &RoamerName,
) -> Result<&'a mut RoamerEntry, Refused> {
    let names = roamer_names(state);
    state
        .roamers
        .iter_mut()
        .find(|r| &r.name == name)
        .ok_or_else(|| refused(format!("no roamer '{name}' ({names})")))
}

fn set_egress(
    state: &mut GatewayState,
    name: &RoamerName,
    egress: &[Ipv4Net],
) -> Result<Changed, Refused> {
    if let Some(net) = egress.iter().find(|n| **n != n.trunc()) {
        return Err(refused(format!(
            "{net} has host bits set: write {}",
            net.trunc()
        )));
    }
    if !egress.is_empty() && state.gateway.backend == Backend::Firewalld {
        return Err(refused(EGRESS_NEEDS_NFTABLES));
    }
    let public = public_address_text(state);
    let roamer = roamer_mut(state, name)?;
    let mut egress = egress.to_vec();
    egress.sort();
    egress.dedup();
    roamer.egress = egress;
    let summary = if roamer.egress.is_empty() {
        format!("no egress for {name}: only replies to its forwards leave through the droplet")
    } else {
        let nets: Vec<String> = roamer.egress.iter().map(ToString::to_string).collect();
        format!(
            "{name} may send to {} through the droplet, leaving as {public}; give it its new config (`roamgw show-config {name}`)",
            nets.join(", ")
        )
    };
    Ok(Changed {
        summary,
        forwards: ForwardChange::default(),
    })
}

/// Runs `f` on a copy and keeps it only if it is valid.
fn on_copy(
    state: &mut GatewayState,
    f: impl FnOnce(&mut GatewayState) -> Result<Changed, Refused>,
) -> Result<Changed, Refused> {
    let mut next = state.clone();
    let applied = f(&mut next)?;
    next.validate().map_err(|e| refused(e.to_string()))?;
    *state = next;
    Ok(applied)
}

pub fn roamer_names(state: &GatewayState) -> String {
    if state.roamers.is_empty() {
        return "there are none yet: add one with `roamgw add-roamer NAME`".into();
    }
    let names: Vec<&str> = state.roamers.iter().map(|r| r.name.as_str()).collect();
    format!("roamers: {}", names.join(", "))
}

fn add_roamer(
    state: &mut GatewayState,
    name: &RoamerName,
    public_key: PublicKey,
    address: Option<Ipv4Addr>,
) -> Result<Changed, Refused> {
    if state.roamer(name).is_some() {
        return Err(refused(format!(
            "roamer '{name}' already exists: pick another name, or `roamgw remove-roamer {name}` first"
        )));
    }
    if let Some(other) = state.roamers.iter().find(|r| r.public_key == public_key) {
        return Err(refused(format!(
            "roamer '{}' already uses this public key: each roamer needs its own key",
            other.name
        )));
    }
    let address = match address {
        Some(address) => address,
        None => state.next_free_address().ok_or_else(|| {
            refused(format!(
                "tunnel subnet {} is full: remove a roamer, or start over with a larger --subnet",
                state.gateway.subnet
            ))
        })?,
    };
    state.roamers.push(RoamerEntry {
        name: name.clone(),
        address,
        public_key,
        egress: Vec::new(),
    });
    Ok(Changed {
        summary: format!("added roamer {name}: tunnel address {address}, public key {public_key}"),
        forwards: ForwardChange::default(),
    })
}

fn remove_roamer(
    state: &mut GatewayState,
    name: &RoamerName,
    force: bool,
) -> Result<Changed, Refused> {
    if state.roamer(name).is_none() {
        return Err(refused(format!(
            "no roamer '{name}' ({})",
            roamer_names(state)
        )));
    }
    let forwards: Vec<String> = state
        .forwards
        .iter()
        .filter(|f| &f.to == name)
        .map(Forward::key)
        .collect();
    if !forwards.is_empty() && !force {
        return Err(refused(format!(
            "roamer '{name}' still has forwards ({}): remove them, or pass --force to remove them too",
            forwards.join(", ")
        )));
    }
    let (removed, kept): (Vec<Forward>, Vec<Forward>) = std::mem::take(&mut state.forwards)
        .into_iter()
        .partition(|f| &f.to == name);
    state.forwards = kept;
    state.roamers.retain(|r| &r.name != name);
    let dropped = if forwards.is_empty() {
        String::new()
    } else {
        format!(" and its forwards {}", forwards.join(", "))
    };
    Ok(Changed {
        summary: format!("removed roamer {name}{dropped}"),
        forwards: ForwardChange {
            removed,
            ..ForwardChange::default()
        },
    })
}

fn resolve_roamer(state: &GatewayState, to: Option<RoamerName>) -> Result<RoamerName, Refused> {
    match to {
        Some(name) if state.roamer(&name).is_some() => Ok(name),
        Some(name) => Err(refused(format!(
            "no roamer '{name}' ({})",
            roamer_names(state)
        ))),
        None => match state.roamers.as_slice() {
            [one] => Ok(one.name.clone()),
            [] => Err(refused(
                "no roamer yet: add one with `roamgw add-roamer NAME` first",
            )),
            _ => Err(refused(format!(
                "say which roamer with --to NAME ({})",
                roamer_names(state)
            ))),
        },
    }
}

fn add_port(
    state: &mut GatewayState,
    spec: &PortSpec,
    to: Option<RoamerName>,
    allow_from: &[IpNet],
    client_ip: Option<ClientIp>,
) -> Result<Changed, Refused> {
    let to = resolve_roamer(state, to)?;
    check_forward_ports(spec, &state.gateway).map_err(|e| refused(e.to_string()))?;
    if let Some(existing) = state.forwards.iter().find(|f| f.spec.overlaps(spec)) {
        return Err(if &existing.spec == spec {
            refused(format!(
                "{spec} is already forwarded to {}: remove it first with `roamgw remove-port {}`",
                existing.to, existing.spec
            ))
        } else {
            refused(format!(
                "{spec} overlaps the forward {} -> {}: pick other ports, or `roamgw remove-port {}` first",
                existing.spec, existing.to, existing.spec
            ))
        });
    }
    if let Some(net) = allow_from.iter().find(|n| **n != n.trunc()) {
        return Err(refused(format!(
            "{net} has host bits set: write {}",
            net.trunc()
        )));
    }
    let mut allow_from = allow_from.to_vec();
    allow_from.sort();
    allow_from.dedup();
    let forward = Forward {
        spec: *spec,
        to,
        allow_from,
        client_ip: client_ip.unwrap_or(state.gateway.client_ip),
    };
    // One look at this roamer's forwards (not a sort of all of them, as validation does).
    let shared_modes = state.gateway.backend == Backend::Firewalld;
    if let Some(other) = state.forwards.iter().filter(|_| shared_modes).find(|f| {
        f.to == forward.to
            && f.client_ip != forward.client_ip
            && f.spec.protocols.intersects(spec.protocols)
            && f.spec.local.overlaps(spec.local)
    }) {
        return Err(refused(format!(
            "{}; give this one --client-ip {}, or pick another local port",
            mixed_client_ip_message(other, &forward),
            other.client_ip
        )));
    }
    let summary = describe_forward(state, &forward);
    state.forwards.push(forward.clone());
    Ok(Changed {
        summary,
        forwards: ForwardChange {
            added: vec![forward],
            ..ForwardChange::default()
        },
    })
}

fn remove_port(state: &mut GatewayState, spec: &PortSpec) -> Result<Changed, Refused> {
    let Some(index) = state.forwards.iter().position(|f| &f.spec == spec) else {
        let near: Vec<String> = state
            .forwards
            .iter()
            .filter(|f| f.spec.public.overlaps(spec.public))
            .map(Forward::key)
            .collect();
        return Err(refused(if near.is_empty() {
            format!("no forward {spec}; `roamgw list` shows the forwards")
        } else {
            format!(
                "no forward {spec}; did you mean {}? (give the spec as `roamgw list` shows it)",
                near.join(" or ")
            )
        }));
    };
    let removed = state.forwards.remove(index);
    Ok(Changed {
        summary: format!("removed forward {} -> {}", removed.spec, removed.to),
        forwards: ForwardChange {
            removed: vec![removed],
            ..ForwardChange::default()
        },
    })
}

/// The address the outside dials for the forwards: the floating IP, or the anchor itself when
/// it is a public address (a floating IP configured on the interface); `None` when only a
/// private anchor is known (the provider's floating IP was not given to `init`).
pub fn public_address(state: &GatewayState) -> Option<Ipv4Addr> {
    let g = &state.gateway;
    g.floating_ip.or_else(|| {
        (!roamgw_common::state::is_private_or_shared(g.anchor_ip)).then_some(g.anchor_ip)
    })
}

/// `public_address` for text: the placeholder says what is missing.
pub fn public_address_text(state: &GatewayState) -> String {
    public_address(state).map_or_else(|| "<floating IP>".to_string(), |ip| ip.to_string())
}

pub fn describe_forward(state: &GatewayState, forward: &Forward) -> String {
    let public = public_address_text(state);
    let address = state
        .roamer(&forward.to)
        .map(|r| r.address.to_string())
        .unwrap_or_default();
    let sources = if forward.allow_from.is_empty() {
        String::new()
    } else {
        let nets: Vec<String> = forward.allow_from.iter().map(ToString::to_string).collect();
        format!(", only from {}", nets.join(", "))
    };
    let client = match forward.client_ip {
        ClientIp::Keep => "the roamer sees the client's address (keep)",
        ClientIp::Masquerade => "the roamer sees the gateway's tunnel address (masquerade)",
    };
    let ipv6 = state
        .gateway
        .forward6
        .map(|ip| format!(" (and [{ip}]:{})", forward.spec.public))
        .unwrap_or_default();
    format!(
        "forward {spec}: {public}:{ports}{ipv6} -> {to} {address}:{local}{sources}; {client}",
        spec = forward.spec,
        ports = forward.spec.public,
        to = forward.to,
        local = forward.spec.local,
    )
}

/// A CIDR or a bare address (/32). Host bits must be clear so what is stored is what is meant.
pub fn parse_cidr(text: &str) -> Result<Ipv4Net, String> {
    let net = text
        .parse::<Ipv4Net>()
        .or_else(|_| text.parse::<Ipv4Addr>().map(Ipv4Net::from))
        .map_err(|_| {
            format!("'{text}' is not an IPv4 address or CIDR (e.g. 192.0.2.0/24 or 198.51.100.7)")
        })?;
    if net != net.trunc() {
        return Err(format!("{text} has host bits set: write {}", net.trunc()));
    }
    Ok(net)
}

/// A source of an allow-list (`--allow-from`): an IPv4 or IPv6 CIDR, or one address.
pub fn parse_source(text: &str) -> Result<IpNet, String> {
    let net = roamgw_common::state::parse_source(text).map_err(|_| {
        format!(
            "'{text}' is not an address or CIDR (e.g. 192.0.2.0/24, 198.51.100.7 or 2001:db8::/32)"
        )
    })?;
    if net != net.trunc() {
        return Err(format!("{text} has host bits set: write {}", net.trunc()));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The public key of roamer laptop in the fixture.
    const LAPTOP_KEY: &str = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";

    /// The valid-state fixture (a gateway on 192.168.32.0/24 with roamer laptop and the
    /// forwards 22, 2222:22 from 192.0.2.0/24 and 60000-60100/udp to it), plus `extra_roamers`.
    fn state(extra_roamers: &str) -> GatewayState {
        GatewayState::from_toml(&format!(
            "{}{extra_roamers}",
            include_str!("../../../tests/fixtures/valid-state/gateway.toml")
        ))
        .expect("state")
    }

    const PHONE: &str = r#"
[[roamer]]
name = "phone"
address = "192.168.32.3"
public_key = "m8yF5Tb0Q5bV7v6Yy0l1xqF2Kq1r4Qe1Zk2m3n4o5p4="
"#;

    fn name(n: &str) -> RoamerName {
        n.parse().expect("name")
    }

    #[test]
    fn the_standby_takes_the_active_gateway_but_keeps_its_own_addresses() {
        let mut standby = state("");
        standby.gateway.public_ip = "198.51.100.20".parse().expect("ip");
        standby.gateway.anchor_ip = "10.17.0.9".parse().expect("ip");
        standby.gateway.anchor_gateway = Some("10.17.0.1".parse().expect("ip"));
        standby.gateway.public_ip6 = Some("2001:db8:2::10".parse().expect("ip"));
        let own = standby.gateway.clone();
        let mut active = state(PHONE);
        active.gateway.public_ip6 = Some("2001:db8:1::10".parse().expect("ip"));
        active.gateway.subnet6 = Some("fd12:3456:789a::/64".parse().expect("net"));
        active.gateway.forward6 = Some("2001:db8:9::5".parse().expect("ip"));
        let removed = active.forwards.remove(0);
        let added = apply(
            &mut active,
            &StateChange::AddPort {
                spec: "8080".parse().expect("spec"),
                to: Some(name("phone")),
                allow_from: vec![],
                client_ip: None,
            },
        )
        .expect("adds");
        let changed = apply(
            &mut standby,
            &StateChange::Adopt {
                active: Box::new(active.clone()),
            },
        )
        .expect("adopts");
        assert_eq!(standby.roamers, active.roamers);
        assert_eq!(standby.forwards, active.forwards);
        assert_eq!(
            (standby.gateway.public_ip, standby.gateway.anchor_ip),
            (own.public_ip, own.anchor_ip)
        );
        assert_eq!(standby.gateway.anchor_gateway, own.anchor_gateway);
        assert_eq!(standby.gateway.public_ip6, own.public_ip6, "its own IPv6");
        assert_eq!(
            (standby.gateway.forward6, standby.gateway.subnet6),
            (active.gateway.forward6, active.gateway.subnet6),
            "the pair's forward address and prefix"
        );
        assert_eq!(changed.forwards.removed, vec![removed]);
        assert_eq!(changed.forwards.added, added.forwards.added);
        // Taken twice: nothing to do.
        let again = apply(
            &mut standby,
            &StateChange::Adopt {
                active: Box::new(active),
            },
        )
        .expect("adopts");
        assert!(again.forwards.added.is_empty() && again.forwards.removed.is_empty());
    }

    fn key(k: &str) -> PublicKey {
        k.parse().expect("key")
    }

    fn add_port(spec: &str, to: Option<&str>, allow: &[&str]) -> StateChange {
        StateChange::AddPort {
            spec: spec.parse().expect("spec"),
            to: to.map(name),
            allow_from: allow.iter().map(|a| a.parse().expect("net")).collect(),
            client_ip: None,
        }
    }

    fn add_port_keeping(spec: &str) -> StateChange {
        StateChange::AddPort {
            spec: spec.parse().expect("spec"),
            to: None,
            allow_from: Vec::new(),
            client_ip: Some(ClientIp::Keep),
        }
    }

    /// Every refusal: (what, extra roamers, change, words the message must have). The state
    /// must come out unchanged.
    #[test]
    fn refusals_table() {
        let other_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let cases: Vec<(&str, &str, StateChange, &[&str])> = vec![
            (
                "roamer name taken",
                "",
                StateChange::AddRoamer {
                    name: name("laptop"),
                    public_key: key(other_key),
                    address: None,
                },
                &["already exists", "remove-roamer laptop"],
            ),
            (
                "public key taken",
                "",
                StateChange::AddRoamer {
                    name: name("tablet"),
                    public_key: key(LAPTOP_KEY),
                    address: None,
                },
                &["'laptop' already uses this public key"],
            ),
            (
                "address outside the subnet",
                "",
                StateChange::AddRoamer {
                    name: name("tablet"),
                    public_key: key(other_key),
                    address: Some("10.0.0.9".parse().expect("ip")),
                },
                &["192.168.32.0/24"],
            ),
            (
                "remove an unknown roamer",
                "",
                StateChange::RemoveRoamer {
                    name: name("tablet"),
                    force: false,
                },
                &["no roamer 'tablet'", "roamers: laptop"],
            ),
            (
                "remove a roamer with forwards, no --force",
                "",
                StateChange::RemoveRoamer {
                    name: name("laptop"),
                    force: false,
                },
                &["still has forwards", "22/tcp", "--force"],
            ),
            (
                "forward to an unknown roamer",
                "",
                add_port("80", Some("tablet"), &[]),
                &["no roamer 'tablet'"],
            ),
            (
                "two roamers, no --to",
                PHONE,
                add_port("80", None, &[]),
                &["say which roamer with --to", "laptop, phone"],
            ),
            (
                "the same forward twice",
                "",
                add_port("22", None, &[]),
                &["already forwarded to laptop", "remove-port 22/tcp"],
            ),
            (
                "an overlapping range",
                "",
                add_port("60050-60200/udp", None, &[]),
                &["overlaps the forward 60000-60100/udp"],
            ),
            (
                "the WireGuard port itself",
                "",
                add_port("51820/udp", None, &[]),
                &["51820"],
            ),
            (
                "allow-from with host bits",
                "",
                add_port("80", None, &["192.0.2.1/24"]),
                &["host bits set", "192.0.2.0/24"],
            ),
            (
                "rotate the key of an unknown roamer",
                "",
                StateChange::RotateRoamerKey {
                    name: name("tablet"),
                    public_key: key(other_key),
                },
                &["no roamer 'tablet'"],
            ),
            (
                "rotate to the key a roamer has now",
                "",
                StateChange::RotateRoamerKey {
                    name: name("laptop"),
                    public_key: key(LAPTOP_KEY),
                },
                &["the key 'laptop' has now"],
            ),
            (
                "rotate to another roamer's key",
                PHONE,
                StateChange::RotateRoamerKey {
                    name: name("phone"),
                    public_key: key(LAPTOP_KEY),
                },
                &["'laptop' already uses this public key"],
            ),
            (
                "remove an unknown forward",
                "",
                add_port_removal("443"),
                &["no forward 443/tcp", "roamgw list"],
            ),
            (
                "remove with the wrong protocol",
                "",
                add_port_removal("22/udp"),
                &["did you mean 22/tcp"],
            ),
        ];
        for (what, extra, change, words) in cases {
            let mut state = state(extra);
            let before = state.clone();
            let refusal = apply(&mut state, &change).expect_err(what).0;
            for word in words {
                assert!(refusal.contains(word), "{what}: {refusal:?} lacks {word:?}");
            }
            assert!(!refusal.contains('\n'), "{what}: one line: {refusal:?}");
            assert_eq!(state, before, "{what}: the state changed");
        }
    }

    #[test]
    fn client_ip_modes_are_per_forward_on_nftables_and_per_roamer_port_on_firewalld() {
        // The fixture masquerades 22 and 2222:22 (both to laptop:22).
        let mut nft = state("");
        apply(&mut nft, &add_port_keeping("2200:22")).expect("nftables: its own mode");
        assert_eq!(nft.forwards[3].client_ip, ClientIp::Keep);

        let mut firewalld = state("");
        firewalld.gateway.backend = Backend::Firewalld;
        let before = firewalld.clone();
        let refusal = apply(&mut firewalld, &add_port_keeping("2200:22"))
            .expect_err("firewalld")
            .0;
        for word in [
            "22/tcp (masquerade) and 2200:22/tcp (keep)",
            "firewalld",
            "--client-ip masquerade",
        ] {
            assert!(refusal.contains(word), "{refusal:?} lacks {word:?}");
        }
        assert_eq!(firewalld, before);
    }

    fn add_port_removal(spec: &str) -> StateChange {
        StateChange::RemovePort {
            spec: spec.parse().expect("spec"),
        }
    }

    #[test]
    fn accepted_changes_say_what_they_did() {
        let mut s = state(PHONE);
        let applied = apply(
            &mut s,
            &add_port("3333:22", Some("phone"), &["192.0.2.0/24"]),
        )
        .expect("add-port");
        assert_eq!(
            applied.summary,
            "forward 3333:22/tcp: 203.0.113.50:3333 -> phone 192.168.32.3:22, only from 192.0.2.0/24; the roamer sees the gateway's tunnel address (masquerade)"
        );
        assert_eq!(applied.forwards.added.len(), 1);
        let applied = apply(&mut s, &add_port_keeping("8080")).expect_err("two roamers");
        assert!(applied.0.contains("--to"), "{applied}");
        let mut one = state("");
        let applied = apply(&mut one, &add_port_keeping("8080")).expect("keep");
        assert!(
            applied
                .summary
                .ends_with("the roamer sees the client's address (keep)"),
            "{}",
            applied.summary
        );
        assert_eq!(one.forwards[3].client_ip, ClientIp::Keep);
        let applied = apply(
            &mut s,
            &StateChange::RemoveRoamer {
                name: name("laptop"),
                force: true,
            },
        )
        .expect("remove-roamer --force");
        assert_eq!(applied.forwards.removed.len(), 3, "its three forwards");
        assert_eq!(s.forwards.len(), 1);
    }
}
