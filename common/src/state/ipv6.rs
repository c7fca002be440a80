//! The gateway's IPv6: the endpoint roamers may dial, the address forwards answer on, and the
//! tunnel's prefix, each checked against the others.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use super::file::{invalid, StateError};
use super::GatewaySettings;
use crate::names::Endpoint;

pub fn check_endpoint6(endpoint: &Endpoint) -> Result<(), String> {
    if !matches!(endpoint.ip(), Some(std::net::IpAddr::V6(_))) {
        return Err(format!(
            "'{endpoint}' is not an IPv6 address: write it as [2001:db8::10]:51820 (a DNS name's AAAA records are used through the endpoint already)"
        ));
    }
    endpoint.check_dialable().map_err(|e| e.to_string())
}

/// The tunnel's IPv6 prefix holds every IPv4 tunnel address at its offset; the forward
/// address is a global one of the droplet's, neither its own IPv6 nor inside the tunnel.
pub(super) fn check_ipv6(g: &GatewaySettings) -> Result<(), StateError> {
    if let Some(net) = g.subnet6 {
        let room = 128 - (32 - u32::from(g.subnet.prefix_len()));
        if net != net.trunc() {
            return Err(invalid(format!(
                "gateway.subnet6 {net} has host bits set: write it as {}",
                net.trunc()
            )));
        }
        if u32::from(net.prefix_len()) > room {
            return Err(invalid(format!(
                "gateway.subnet6 {net} is too small for the tunnel subnet {}: use a /{room} or larger (default: a ULA /64)",
                g.subnet
            )));
        }
    }
    let Some(forward6) = g.forward6 else {
        return Ok(());
    };
    check_forward6(forward6).map_err(|e| invalid(format!("gateway.forward6: {e}")))?;
    let Some(subnet6) = g.subnet6 else {
        return Err(invalid(
            "gateway.forward6 needs gateway.subnet6, the tunnel's IPv6 prefix: `roamgw forward6 ADDRESS` picks one",
        ));
    };
    if g.public_ip6 == Some(forward6) {
        return Err(invalid(format!(
            "gateway.forward6 {forward6} is the droplet's own IPv6: forwards on it would take the droplet's own services; dedicate another address to forwards (a reserved IPv6, or one of the droplet's range)"
        )));
    }
    if subnet6.contains(&forward6) {
        return Err(invalid(format!(
            "gateway.forward6 {forward6} is inside the tunnel's prefix {subnet6}: give an address of the droplet's interface"
        )));
    }
    Ok(())
}

/// An address the internet can reach: what a forward answers on.
pub fn check_forward6(address: Ipv6Addr) -> Result<(), String> {
    let why = if address.is_unspecified() || address.is_loopback() {
        "not an address of the internet"
    } else if address.is_multicast() {
        "a multicast address"
    } else if address.is_unicast_link_local() {
        "link-local"
    } else if address.to_ipv4_mapped().is_some() {
        "an IPv4-mapped address"
    } else {
        return Ok(());
    };
    Err(format!(
        "{address} is {why}: give the global IPv6 address dedicated to forwards (e.g. 2001:db8::5)"
    ))
}

/// A random ULA /64 (RFC 4193: fd00::/8 and a 40-bit random global ID), so two gateways'
/// tunnels, and a laptop's other networks, are unlikely to collide.
pub fn random_ula() -> Result<Ipv6Net, getrandom::Error> {
    let mut id = [0u8; 5];
    getrandom::fill(&mut id)?;
    let mut octets = [0u8; 16];
    octets[0] = 0xfd;
    octets[1..6].copy_from_slice(&id);
    Ok(Ipv6Net::new(Ipv6Addr::from(octets), 64).unwrap_or_default())
}
