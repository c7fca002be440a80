//! Changes to what is the gateway's as a whole: the state taken from the active droplet of a
//! pair, WireGuard over TCP, and the IPv6 endpoint.

use roamgw_common::names::Endpoint;
use roamgw_common::state::{check_forward_ports, GatewayState};

use super::{refused, Changed, Refused};
use crate::dataplane::ForwardChange;

/// `active`'s keys, roamers and forwards, with this droplet's own addresses (public IP and
/// IPv6, anchor and its gateway), backend, WireGuard mode and interface kept: each droplet of
/// a pair has its own, and the forwards match on the local anchor. The forward IPv6 and the
/// tunnel's prefix are the pair's (a reserved IPv6 moves with the floating IP).
pub(super) fn adopt(state: &mut GatewayState, active: &GatewayState) -> Result<Changed, Refused> {
    let mut next = active.clone();
    let own = &state.gateway;
    next.gateway.public_ip = own.public_ip;
    next.gateway.public_ip6 = own.public_ip6;
    next.gateway.anchor_ip = own.anchor_ip;
    next.gateway.anchor_gateway = own.anchor_gateway;
    next.gateway.backend = own.backend;
    next.gateway.wireguard = own.wireguard;
    next.gateway.interface = own.interface.clone();
    next.validate().map_err(|e| {
        refused(format!(
            "the active droplet's state does not fit this droplet ({e}); nothing was taken"
        ))
    })?;
    let forwards = ForwardChange::between(&state.forwards, &next.forwards);
    let summary = format!(
        "in step with the active droplet: {} roamers, {} forwards ({} added, {} removed)",
        next.roamers.len(),
        next.forwards.len(),
        forwards.added.len(),
        forwards.removed.len()
    );
    *state = next;
    Ok(Changed { summary, forwards })
}

pub(super) fn set_tcp_port(
    state: &mut GatewayState,
    port: Option<u16>,
) -> Result<Changed, Refused> {
    if state.gateway.tcp_port == port {
        return Err(refused(match port {
            Some(port) => format!("WireGuard over TCP is already on port {port}"),
            None => "WireGuard over TCP is already off".to_string(),
        }));
    }
    state.gateway.tcp_port = port;
    if let Some(forward) = state
        .forwards
        .iter()
        .find(|f| check_forward_ports(&f.spec, &state.gateway).is_err())
    {
        return Err(refused(format!(
            "tcp port {} is forwarded to {} ({}): pick another port, or `roamgw remove-port {}` first",
            port.unwrap_or_default(),
            forward.to,
            forward.spec,
            forward.spec
        )));
    }
    let summary = match state.gateway.tcp_listen() {
        Some(listen) => format!(
            "WireGuard over TCP on {listen} (roamers dial {}:{}); each roamer learns it from its new config (`roamgw show-config NAME`)",
            state.gateway.endpoint.host,
            listen.port()
        ),
        None => "WireGuard over TCP is off; roamers that used it go back to UDP".to_string(),
    };
    Ok(Changed {
        summary,
        forwards: ForwardChange::default(),
    })
}

/// The droplet's IPv6 address roamers may dial (`None`: IPv4 only). The listener takes both
/// families already, so only the roamers' configs change.
pub(super) fn set_endpoint6(
    state: &mut GatewayState,
    endpoint6: Option<Endpoint>,
) -> Result<Changed, Refused> {
    if state.gateway.endpoint6 == endpoint6 {
        return Err(refused(match &endpoint6 {
            Some(endpoint) => format!("roamers already dial {endpoint} over IPv6"),
            None => "there is no IPv6 endpoint already".to_string(),
        }));
    }
    let summary = match &endpoint6 {
        Some(endpoint) => format!(
            "roamers dial {endpoint} over IPv6 too (IPv6 first where the network has it); each roamer learns it from its new config (`roamgw show-config NAME`)"
        ),
        None => "roamers dial over IPv4 only; each learns it from its new config".to_string(),
    };
    state.gateway.endpoint6 = endpoint6;
    Ok(Changed {
        summary,
        forwards: ForwardChange::default(),
    })
}

/// The IPv6 address forwards answer on. Every forward answers there too (and stops when it
/// goes); the first one gives the tunnel its IPv6 prefix, so every roamer needs its new
/// config to take the forwarded connections.
pub(super) fn set_forward6(
    state: &mut GatewayState,
    forward6: Option<std::net::Ipv6Addr>,
    subnet6: ipnet::Ipv6Net,
) -> Result<Changed, Refused> {
    if state.gateway.forward6 == forward6 {
        return Err(refused(match forward6 {
            Some(address) => format!("forwards already answer on {address}"),
            None => "forwards answer on IPv4 only already".to_string(),
        }));
    }
    let new_prefix = forward6.is_some() && state.gateway.subnet6.is_none();
    if new_prefix {
        state.gateway.subnet6 = Some(subnet6);
    }
    let retired = std::mem::replace(&mut state.gateway.forward6, forward6);
    let forwards = state.forwards.len();
    let summary = match (forward6, state.gateway.subnet6) {
        (Some(address), Some(prefix)) if new_prefix => format!(
            "forwards answer on {address} too ({forwards} now); the tunnel has the IPv6 prefix {prefix}: every roamer needs its new config (`roamgw show-config NAME`) before IPv6 forwards reach it"
        ),
        (Some(address), _) => format!("forwards answer on {address} too ({forwards} now)"),
        (None, _) => "forwards answer on IPv4 only".to_string(),
    };
    Ok(Changed {
        summary,
        forwards: ForwardChange {
            retired: retired.map(Into::into),
            ..ForwardChange::default()
        },
    })
}
