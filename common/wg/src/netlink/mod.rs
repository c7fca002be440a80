//! Interfaces through rtnetlink: look up, MTU, up, address. A small
//! current-thread runtime drives the async rtnetlink crate, so callers stay synchronous.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures_util::TryStreamExt;
use ipnet::{IpNet, Ipv4Net};
use rtnetlink::packet_route::route::{RouteAttribute, RouteMessage};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleMessage, RulePortRange};
use rtnetlink::packet_route::{AddressFamily, IpProtocol};
use rtnetlink::{Handle, IpVersion, LinkUnspec, RouteMessageBuilder};

mod watch;

pub use watch::{watch_network, NetworkChange};

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot open a netlink socket: {0}")]
    Connect(std::io::Error),
    #[error("no interface {0}")]
    NoSuchInterface(String),
    #[error("{action} {interface}: {message}")]
    Request {
        action: &'static str,
        interface: String,
        message: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CreateLinkError {
    #[error("the kernel does not support this link kind")]
    Unsupported,
    #[error(transparent)]
    Other(NetlinkError),
}

const EEXIST: i32 = 17;
const EOPNOTSUPP: i32 = 95;

pub struct Links {
    runtime: tokio::runtime::Runtime,
    handle: Handle,
}

fn request_error(action: &'static str, interface: &str, e: rtnetlink::Error) -> NetlinkError {
    NetlinkError::Request {
        action,
        interface: interface.to_string(),
        message: e.to_string(),
    }
}

impl Links {
    pub fn connect() -> Result<Self, NetlinkError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(NetlinkError::Connect)?;
        let handle = runtime.block_on(async {
            let (connection, handle, _) =
                rtnetlink::new_connection().map_err(NetlinkError::Connect)?;
            // Runs whenever one of our block_on calls does.
            tokio::spawn(connection);
            Ok::<_, NetlinkError>(handle)
        })?;
        Ok(Links { runtime, handle })
    }

    /// The interface's index, `None` when it does not exist.
    pub fn index(&self, name: &str) -> Result<Option<u32>, NetlinkError> {
        self.runtime.block_on(async {
            let mut links = self
                .handle
                .link()
                .get()
                .match_name(name.to_string())
                .execute();
            match links.try_next().await {
                Ok(Some(link)) => Ok(Some(link.header.index)),
                Ok(None) => Ok(None),
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc_enodev() => {
                    Ok(None)
                }
                Err(e) => Err(request_error("look up", name, e)),
            }
        })
    }

    /// Creates a kernel `wireguard` link. `Ok(false)` when one of that name exists already.
    pub fn create_wireguard(&self, name: &str) -> Result<bool, CreateLinkError> {
        self.runtime.block_on(async {
            match self
                .handle
                .link()
                .add(rtnetlink::LinkWireguard::new(name).build())
                .execute()
                .await
            {
                Ok(()) => Ok(true),
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -EEXIST => Ok(false),
                // No `wireguard` link kind: the kernel has no WireGuard module.
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -EOPNOTSUPP => {
                    Err(CreateLinkError::Unsupported)
                }
                Err(e) => Err(CreateLinkError::Other(request_error("create", name, e))),
            }
        })
    }

    /// Deletes the link `name`; `false` when there was none.
    pub fn delete(&self, name: &str) -> Result<bool, NetlinkError> {
        let Some(index) = self.index(name)? else {
            return Ok(false);
        };
        self.runtime.block_on(async {
            self.handle
                .link()
                .del(index)
                .execute()
                .await
                .map_err(|e| request_error("delete", name, e))
        })?;
        Ok(true)
    }

    /// Sets the MTU, brings the link up, and puts `addresses` on it (idempotent: replaces).
    /// A WireGuard or TUN link has no neighbours (NOARP), so an IPv6 address there skips
    /// duplicate address detection and is usable at once.
    pub fn configure(&self, name: &str, mtu: u16, addresses: &[IpNet]) -> Result<(), NetlinkError> {
        let index = self
            .index(name)?
            .ok_or_else(|| NetlinkError::NoSuchInterface(name.to_string()))?;
        self.runtime.block_on(async {
            self.handle
                .link()
                .set(
                    LinkUnspec::new_with_index(index)
                        .mtu(u32::from(mtu))
                        .up()
                        .build(),
                )
                .execute()
                .await
                .map_err(|e| request_error("set mtu/up on", name, e))?;
            for address in addresses {
                self.handle
                    .address()
                    .add(index, address.addr(), address.prefix_len())
                    .replace()
                    .execute()
                    .await
                    .map_err(|e| request_error("add address to", name, e))?;
            }
            Ok(())
        })
    }
}

/// Routing rules and tables of ours (roamgw_common::replies on the laptop, the anchor gateway
/// on the droplet): each rule is told apart by its priority and the table it looks up.
impl Links {
    /// Adds `route`, replacing one with the same key.
    fn replace_route(
        &self,
        route: RouteMessage,
        what: &'static str,
        on: &str,
    ) -> Result<(), NetlinkError> {
        self.runtime.block_on(async {
            self.handle
                .route()
                .add(route)
                .replace()
                .execute()
                .await
                .map_err(|e| request_error(what, on, e))
        })
    }

    /// Adds the rule `lookup table` at `priority`, with the selectors `select` puts on it.
    fn add_rule(
        &self,
        priority: u32,
        table: u32,
        select: impl FnOnce(&mut RuleMessage),
        what: &'static str,
        on: &str,
    ) -> Result<(), NetlinkError> {
        let mut rule = self
            .handle
            .rule()
            .add()
            .v4()
            .table_id(table)
            .priority(priority)
            // rtnetlink leaves the action unset, which the kernel takes as an error route
            // for everything the rule matches.
            .action(RuleAction::ToTable);
        select(rule.message_mut());
        self.runtime
            .block_on(rule.execute())
            .map_err(|e| request_error(what, on, e))
    }

    /// Replies from `source` (and `source6`), and packets marked `mark`, leave through the
    /// interface `index`: the route `default dev` in `table` and the rules `from source
    /// lookup table` and `fwmark mark lookup table` at `priority` (IPv6: the route and the
    /// rule by source). Rules of ours left by an earlier run (any source) are replaced.
    pub fn route_replies(
        &self,
        index: u32,
        (source, source6): (Ipv4Addr, Option<Ipv6Addr>),
        mark: u32,
        table: u32,
        priority: u32,
    ) -> Result<(), NetlinkError> {
        let (what, on) = ("route replies through", format!("interface {index}"));
        self.unroute_replies(table, priority)?;
        let sources = std::iter::once(IpAddr::V4(source)).chain(source6.map(IpAddr::V6));
        for source in sources {
            let (family, host_len, route) = match source {
                IpAddr::V4(_) => (
                    AddressFamily::Inet,
                    32,
                    RouteMessageBuilder::<Ipv4Addr>::new()
                        .output_interface(index)
                        .table_id(table)
                        .build(),
                ),
                IpAddr::V6(_) => (
                    AddressFamily::Inet6,
                    128,
                    RouteMessageBuilder::<Ipv6Addr>::new()
                        .output_interface(index)
                        .table_id(table)
                        .build(),
                ),
            };
            self.replace_route(route, what, &on)?;
            let by_source = |rule: &mut RuleMessage| {
                rule.header.family = family;
                rule.header.src_len = host_len;
                rule.attributes.push(RuleAttribute::Source(source));
            };
            self.add_rule(priority, table, by_source, what, &on)?;
            let marked = |rule: &mut RuleMessage| {
                rule.header.family = family;
                rule.attributes.push(RuleAttribute::FwMark(mark));
            };
            self.add_rule(priority, table, marked, what, &on)?;
        }
        Ok(())
    }

    /// Removes our rules (the route goes with the interface). The number removed.
    pub fn unroute_replies(&self, table: u32, priority: u32) -> Result<usize, NetlinkError> {
        self.delete_rules(&[(priority, table)])
    }

    /// Egress: `destinations` leave through the interface `index`, by three rules from
    /// `priority` on (roamgw_common::replies): the tunnel's own UDP (source port
    /// `listen_port`) keeps the main table; so do the laptop's own networks (main without its
    /// default route); everything else looks up `table`, which routes `destinations` into
    /// the tunnel. Rules of ours left by an earlier run are replaced.
    pub fn route_egress(
        &self,
        index: u32,
        destinations: &[Ipv4Net],
        table: u32,
        priority: u32,
        listen_port: u16,
    ) -> Result<(), NetlinkError> {
        self.unroute_egress(table, priority)?;
        let (what, on) = ("route egress through", format!("interface {index}"));
        for net in destinations {
            let route = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(net.network(), net.prefix_len())
                .output_interface(index)
                .table_id(table)
                .build();
            self.replace_route(route, what, &on)?;
        }
        let tunnel = |rule: &mut RuleMessage| {
            rule.attributes.extend([
                RuleAttribute::IpProtocol(IpProtocol::Udp),
                RuleAttribute::SourcePortRange(RulePortRange {
                    start: listen_port,
                    end: listen_port,
                }),
            ])
        };
        self.add_rule(priority, MAIN_TABLE, tunnel, what, &on)?;
        let beside = |rule: &mut RuleMessage| {
            rule.attributes.push(RuleAttribute::FwMark(
                roamgw_common::replies::BESIDE_TUNNEL_MARK,
            ))
        };
        self.add_rule(priority, MAIN_TABLE, beside, what, &on)?;
        let local =
            |rule: &mut RuleMessage| rule.attributes.push(RuleAttribute::SuppressPrefixLen(0));
        self.add_rule(priority + 1, MAIN_TABLE, local, what, &on)?;
        self.add_rule(priority + 2, table, |_| {}, what, &on)
    }

    /// Packets that come in on `interface` leave by `next_hop`: the route `default via
    /// next_hop` in `table` and the rule `iif interface lookup table` at `priority` (replacing
    /// ours from an earlier run).
    pub fn route_arrivals_via(
        &self,
        interface: &str,
        next_hop: Ipv4Addr,
        anchor: Ipv4Addr,
        table: u32,
        priority: u32,
    ) -> Result<(), NetlinkError> {
        let what = "route arrivals by the provider's gateway from";
        self.delete_rules(&[(priority, table)])?;
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(next_hop)
            .table_id(table)
            .build();
        self.replace_route(route, what, interface)?;
        let incoming = |rule: &mut RuleMessage| {
            rule.attributes
                .push(RuleAttribute::Iifname(interface.to_string()))
        };
        self.add_rule(priority, table, incoming, what, interface)?;
        // What this machine itself sends from the anchor: the WireGuard device's datagrams to
        // roamers that dial the floating IP, the droplet's own services on the anchor.
        let from_anchor = |rule: &mut RuleMessage| {
            rule.header.src_len = 32;
            rule.attributes.push(RuleAttribute::Source(anchor.into()));
        };
        self.add_rule(priority, table, from_anchor, what, interface)
    }

    /// Removes the rule of [`Links::route_arrivals_via`]. The number removed.
    pub fn unroute_arrivals(&self, table: u32, priority: u32) -> Result<usize, NetlinkError> {
        self.delete_rules(&[(priority, table)])
    }

    /// Removes the egress rules (the routes go with the interface). The number removed.
    pub fn unroute_egress(&self, table: u32, priority: u32) -> Result<usize, NetlinkError> {
        self.delete_rules(&egress_rules(table, priority))
    }

    /// The rules (IPv4 and IPv6) at these (priority, table) pairs.
    fn find_rules(&self, ours: &[(u32, u32)]) -> Result<Vec<RuleMessage>, NetlinkError> {
        self.runtime.block_on(async {
            let what = "list the routing rules of";
            let mut found = Vec::new();
            for family in [IpVersion::V4, IpVersion::V6] {
                let mut rules = self.handle.rule().get(family).execute();
                while let Some(rule) = rules
                    .try_next()
                    .await
                    .map_err(|e| request_error(what, "this machine", e))?
                {
                    let has = |wanted: &RuleAttribute| rule.attributes.contains(wanted);
                    if ours.iter().any(|(priority, table)| {
                        has(&RuleAttribute::Priority(*priority))
                            && has(&RuleAttribute::Table(*table))
                    }) {
                        found.push(rule);
                    }
                }
            }
            Ok(found)
        })
    }

    /// How many routes (IPv4 and IPv6) `table` holds.
    pub fn count_routes(&self, table: u32) -> Result<usize, NetlinkError> {
        self.runtime.block_on(async {
            let what = "list the routes of";
            let dumps = [
                RouteMessageBuilder::<Ipv4Addr>::new().build(),
                RouteMessageBuilder::<Ipv6Addr>::new().build(),
            ];
            let mut count = 0;
            for all in dumps {
                let mut routes = self.handle.route().get(all).execute();
                while let Some(route) = routes
                    .try_next()
                    .await
                    .map_err(|e| request_error(what, "this machine", e))?
                {
                    // Tables above 255 are only in the attribute; the header then says 252.
                    let in_table = route.attributes.contains(&RouteAttribute::Table(table))
                        || u32::from(route.header.table) == table;
                    count += usize::from(in_table);
                }
            }
            Ok(count)
        })
    }

    /// How many rules there are at these (priority, table) pairs (one dump for all).
    pub fn count_rules(&self, ours: &[(u32, u32)]) -> Result<usize, NetlinkError> {
        Ok(self.find_rules(ours)?.len())
    }

    /// Deletes the rules at these (priority, table) pairs.
    fn delete_rules(&self, ours: &[(u32, u32)]) -> Result<usize, NetlinkError> {
        let found = self.find_rules(ours)?;
        self.runtime.block_on(async {
            let removed = found.len();
            for rule in found {
                self.handle
                    .rule()
                    .del(rule)
                    .execute()
                    .await
                    .map_err(|e| request_error("delete a routing rule of", "this machine", e))?;
            }
            Ok(removed)
        })
    }
}

/// RT_TABLE_MAIN.
pub const MAIN_TABLE: u32 = 254;

/// The (priority, table) of each rule [`Links::route_egress`] adds from `priority` on.
pub const fn egress_rules(table: u32, priority: u32) -> [(u32, u32); 3] {
    [
        (priority, MAIN_TABLE),
        (priority + 1, MAIN_TABLE),
        (priority + 2, table),
    ]
}

/// ENODEV, as netlink reports a missing interface.
const fn libc_enodev() -> i32 {
    19
}
