//! The gateway's WireGuard interface: which device runs it, and what its peers should be.

use ipnet::{IpNet, Ipv4Net};
use roamgw_common::state::{GatewayState, WireguardMode};
use roamgw_wg::PeerConfig;
use roamgw_wg::{Preference, WgDevice};

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(transparent)]
    Create(#[from] roamgw_wg::CreateError),
    #[error("interface {0} already exists: another roamgw or wg-quick runs it (stop it, or use `roamgw init --wireguard external`)")]
    Exists(String),
    #[error(transparent)]
    Netlink(#[from] roamgw_wg::netlink::NetlinkError),
    #[error(transparent)]
    Wg(#[from] roamgw_wg::DeviceError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates the device the state asks for. `External` has no device of ours: `None`.
pub fn open(state: &GatewayState) -> Result<Option<Box<dyn WgDevice>>, DeviceError> {
    let name = state.gateway.interface.as_str();
    let preference = match state.gateway.wireguard {
        WireguardMode::External => return Ok(None),
        WireguardMode::Auto => Preference::Auto,
        WireguardMode::Kernel => Preference::Kernel,
        WireguardMode::Userspace => Preference::Userspace,
    };
    // A kernel interface outlives a killed daemon and is taken over on restart; anything
    // else of that name (a TUN dies with its process) belongs to someone else.
    if !is_kernel_wireguard(name) && roamgw_wg::netlink::Links::connect()?.index(name)?.is_some() {
        return Err(DeviceError::Exists(name.to_string()));
    }
    Ok(Some(roamgw_wg::create_device(
        name,
        preference,
        roamgw_wg::ReplySource::Arrival {
            first: first_source(state),
        },
    )?))
}

/// Where the device's own first datagrams to a roamer leave from: the anchor when roamers dial
/// the floating IP (the provider's NAT makes it the floating IP on the way out, which the
/// laptop's NAT expects), else the route's choice.
fn first_source(state: &GatewayState) -> Option<std::net::IpAddr> {
    let g = &state.gateway;
    let dials_floating =
        g.floating_ip.is_some() && g.endpoint.ip() == g.floating_ip.map(Into::into);
    dials_floating.then_some(std::net::IpAddr::V4(g.anchor_ip))
}

fn is_kernel_wireguard(name: &str) -> bool {
    std::fs::read_to_string(format!("/sys/class/net/{name}/uevent"))
        .is_ok_and(|uevent| uevent.lines().any(|l| l == "DEVTYPE=wireguard"))
}

/// WireGuard's own overhead over IPv4: outer IPv4 20 + UDP 8 + WireGuard 32.
const WIREGUARD_OVERHEAD_V4: u32 = 60;

/// The largest tunnel MTU a path of `path_mtu` carries without fragmenting the outer packets.
pub fn max_tunnel_mtu(path_mtu: u32) -> u32 {
    path_mtu.saturating_sub(WIREGUARD_OVERHEAD_V4)
}

/// Warns when the tunnel MTU does not fit the interface the roamers' packets leave by (the
/// default route's): oversized outer packets get fragmented or dropped, and TCP stalls.
fn check_path_mtu(tunnel_mtu: u16) {
    let routes = roamgw_common::routes::system_routes();
    let Some(default) = routes.iter().find(|r| r.destination.prefix_len() == 0) else {
        return;
    };
    let path_mtu = std::fs::read_to_string(format!("/sys/class/net/{}/mtu", default.interface))
        .ok()
        .and_then(|m| m.trim().parse::<u32>().ok());
    if let Some(path_mtu) = path_mtu {
        let fits = max_tunnel_mtu(path_mtu);
        if u32::from(tunnel_mtu) > fits {
            tracing::warn!(
                tunnel_mtu,
                path_mtu,
                interface = %default.interface,
                "the tunnel MTU does not fit the path: use `roamgw init --mtu {fits}` (or lower)"
            );
        }
    }
}

/// Where roamers' traffic goes when the provider wants anchor-sourced packets sent to its
/// anchor gateway (`init --anchor-gateway`): a table and a rule of ours.
pub const ANCHOR_ROUTE_TABLE: u32 = 52_000 - 1;
pub const ANCHOR_ROUTE_PRIORITY: u32 = roamgw_common::replies::RULE_PRIORITY;

/// Puts address and MTU on the interface and brings it up; with an anchor gateway, what comes
/// in from the roamers (egress, and the replies of forwards, which leave with the anchor
/// address) and what this machine sends from the anchor (the tunnel's own datagrams to roamers
/// that dial the floating IP) are routed by it.
pub fn configure_link(state: &GatewayState) -> Result<(), DeviceError> {
    let g = &state.gateway;
    check_path_mtu(g.mtu);
    let links = roamgw_wg::netlink::Links::connect()?;
    links.configure(g.interface.as_str(), g.mtu, &tunnel_addresses(state))?;
    match g.anchor_gateway {
        Some(next_hop) => links.route_arrivals_via(
            g.interface.as_str(),
            next_hop,
            g.anchor_ip,
            ANCHOR_ROUTE_TABLE,
            ANCHOR_ROUTE_PRIORITY,
        )?,
        None => {
            links.unroute_arrivals(ANCHOR_ROUTE_TABLE, ANCHOR_ROUTE_PRIORITY)?;
        }
    }
    Ok(())
}

/// The gateway's tunnel addresses with their prefixes: IPv4, and IPv6 when the tunnel has it.
pub fn tunnel_addresses(state: &GatewayState) -> Vec<IpNet> {
    let g = &state.gateway;
    let v4 = IpNet::V4(roamgw_common::state::address_in(g.subnet, g.address));
    let v6 = g.tunnel6_net(g.address).map(IpNet::V6);
    std::iter::once(v4).chain(v6).collect()
}

/// Whether the interface has the gateway's tunnel addresses and, with an anchor gateway, the
/// rule and route that send arrivals by it (someone may have flushed them).
pub fn link_configured(state: &GatewayState) -> bool {
    let g = &state.gateway;
    let present = interface_addresses();
    let has_addresses = tunnel_addresses(state).iter().all(|wanted| {
        present
            .iter()
            .any(|(name, address)| name == g.interface.as_str() && *address == wanted.addr())
    });
    has_addresses && (g.anchor_gateway.is_none() || arrivals_routed())
}

/// The rule and route of [`configure_link`]'s anchor gateway are in place. Unreadable counts
/// as in place: a repair would not fix what cannot be read.
fn arrivals_routed() -> bool {
    let routed = roamgw_wg::netlink::Links::connect().and_then(|links| {
        Ok(
            links.count_rules(&[(ANCHOR_ROUTE_PRIORITY, ANCHOR_ROUTE_TABLE)])? == 2
                && links.count_routes(ANCHOR_ROUTE_TABLE)? > 0,
        )
    });
    routed.unwrap_or(true)
}

/// Whether `address` is on any interface of this machine (namespace).
pub fn address_present(address: std::net::IpAddr) -> bool {
    interface_addresses().iter().any(|(_, a)| *a == address)
}

fn interface_addresses() -> Vec<(String, std::net::IpAddr)> {
    let Ok(addresses) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addresses
        .filter_map(|a| {
            let address = a.address.as_ref()?;
            let ip = match (address.as_sockaddr_in(), address.as_sockaddr_in6()) {
                (Some(v4), _) => std::net::IpAddr::V4(v4.ip()),
                (_, Some(v6)) => std::net::IpAddr::V6(v6.ip()),
                _ => return None,
            };
            Some((a.interface_name, ip))
        })
        .collect()
}

/// The discard port: a datagram to it starts a handshake and is then dropped by the laptop.
const POKE_PORT: u16 = 9;

/// One datagram into the tunnel to each of `roamers` (tunnel addresses): a peer without a
/// session that has an endpoint starts a handshake to it at once (kernel and userspace alike).
pub fn poke(roamers: &[std::net::Ipv4Addr]) -> std::io::Result<()> {
    let socket = std::net::UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, 0))?;
    for roamer in roamers {
        socket.send_to(b"roamgw", (*roamer, POKE_PORT))?;
    }
    Ok(())
}

/// A roamer's tunnel addresses, as the gateway's allowed IPs of its peer.
pub fn roamer_allowed_ips(
    state: &GatewayState,
    roamer: &roamgw_common::state::RoamerEntry,
) -> Vec<IpNet> {
    let v6 = state.gateway.tunnel6(roamer.address);
    std::iter::once(IpNet::V4(Ipv4Net::from(roamer.address)))
        .chain(v6.map(|a| IpNet::V6(a.into())))
        .collect()
}

/// Each roamer's preshared key as read from its key file.
pub type Psks = std::collections::BTreeMap<roamgw_common::RoamerName, roamgw_common::PresharedKey>;

/// The peers the state asks for: one per roamer, its tunnel address only, its PSK (from
/// `psks`, which the engine keeps); no endpoint (WireGuard learns it; the daemon gives a fresh
/// device the remembered ones) and no keepalive (the roamer keeps the NAT open).
pub fn desired_peers(state: &GatewayState, psks: &Psks) -> Vec<PeerConfig> {
    state
        .roamers
        .iter()
        .map(|roamer| PeerConfig {
            public_key: roamer.public_key,
            preshared_key: psks.get(&roamer.name).cloned(),
            endpoint: None,
            allowed_ips: roamer_allowed_ips(state, roamer),
            persistent_keepalive: 0,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn tunnel_mtu_leaves_room_for_wireguard() {
        assert_eq!(super::max_tunnel_mtu(1500), 1440);
        assert_eq!(super::max_tunnel_mtu(1492), 1432); // PPPoE
        assert_eq!(super::max_tunnel_mtu(40), 0);
    }
}
