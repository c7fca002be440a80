//! Watching the machine's network through rtnetlink's multicast groups, so the roamer acts
//! on a change within milliseconds instead of at its next poll.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use rtnetlink::packet_route::route::{RouteAttribute, RouteMessage};

use super::NetlinkError;

/// What changed on the machine's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkChange {
    LinkChanged,
    LinkRemoved,
    AddressAdded,
    AddressRemoved,
    RouteAdded,
    RouteRemoved,
    /// A routing rule went (whose: the rule does not say).
    RuleRemoved,
    /// A route through the interface `watch_network` was told is the tunnel went.
    TunnelRouteRemoved,
    /// That interface went.
    TunnelRemoved,
}

impl NetworkChange {
    /// A few words for the log.
    pub fn describe(&self) -> &'static str {
        match self {
            NetworkChange::LinkChanged => "link changed",
            NetworkChange::LinkRemoved => "link removed",
            NetworkChange::AddressAdded => "address added",
            NetworkChange::AddressRemoved => "address removed",
            NetworkChange::RouteAdded => "route added",
            NetworkChange::RouteRemoved => "route removed",
            NetworkChange::RuleRemoved => "routing rule removed",
            NetworkChange::TunnelRouteRemoved => "route through the tunnel removed",
            NetworkChange::TunnelRemoved => "tunnel interface removed",
        }
    }
}

/// Watches rtnetlink (links, IPv4 and IPv6 addresses and routes, IPv4 rules) on a thread of its own and
/// calls `on_change` for every change. Changes on the interface whose index is in `tunnel`
/// (the roamer's own: its link, address and route changes are its own, not the network's; the
/// index changes when the interface is created again) are left out, except that a route
/// through it or the interface itself went, which only someone else does while the roamer
/// runs.
///
/// Returns once the subscription is in place, so no change after the return is missed.
pub fn watch_network(
    tunnel: Option<Arc<AtomicU32>>,
    mut on_change: impl FnMut(NetworkChange) + Send + 'static,
) -> Result<(), NetlinkError> {
    use rtnetlink::packet_core::NetlinkPayload;
    use rtnetlink::packet_route::RouteNetlinkMessage as M;
    use rtnetlink::MulticastGroup;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(NetlinkError::Connect)?;
    // Created inside the runtime: the socket registers with its reactor.
    let (connection, _handle, mut messages) = runtime
        .block_on(async {
            rtnetlink::new_multicast_connection(&[
                MulticastGroup::Link,
                MulticastGroup::Ipv4Ifaddr,
                MulticastGroup::Ipv4Route,
                MulticastGroup::Ipv4Rule,
                // The tunnel may run over IPv6: a network whose IPv6 comes (or goes) after
                // its IPv4 is a new network to race the gateway's addresses on.
                MulticastGroup::Ipv6Ifaddr,
                MulticastGroup::Ipv6Route,
            ])
        })
        .map_err(NetlinkError::Connect)?;
    std::thread::Builder::new()
        .name("netlink-watch".into())
        .spawn(move || {
            runtime.block_on(async move {
                tokio::spawn(connection);
                while let Some((message, _)) = futures_util::StreamExt::next(&mut messages).await {
                    let NetlinkPayload::InnerMessage(message) = message.payload else {
                        continue;
                    };
                    let (change, index) = match &message {
                        M::NewLink(link) => (NetworkChange::LinkChanged, link.header.index),
                        M::DelLink(link) => (NetworkChange::LinkRemoved, link.header.index),
                        M::NewAddress(a) => (NetworkChange::AddressAdded, a.header.index),
                        M::DelAddress(a) => (NetworkChange::AddressRemoved, a.header.index),
                        M::NewRoute(r) => (NetworkChange::RouteAdded, output_interface(r)),
                        M::DelRoute(r) => (NetworkChange::RouteRemoved, output_interface(r)),
                        M::DelRule(_) => (NetworkChange::RuleRemoved, 0),
                        _ => continue,
                    };
                    let tunnel = tunnel.as_ref().map(|t| t.load(Ordering::Relaxed));
                    match change {
                        _ if tunnel != Some(index) => on_change(change),
                        NetworkChange::RouteRemoved => {
                            on_change(NetworkChange::TunnelRouteRemoved);
                        }
                        NetworkChange::LinkRemoved => on_change(NetworkChange::TunnelRemoved),
                        _ => {}
                    }
                }
            });
        })
        .map_err(NetlinkError::Connect)?;
    Ok(())
}

/// The interface a route leaves by (0 when it names none).
fn output_interface(route: &RouteMessage) -> u32 {
    route
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Oif(index) => Some(*index),
            _ => None,
        })
        .unwrap_or(0)
}
