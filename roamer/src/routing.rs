//! What roamer puts on the laptop besides the interface: the routing that sends replies into
//! the tunnel (rules by source and by mark, and the table they look up), the nft table that
//! marks UDP replies sent from 0.0.0.0, and the egress rules and routes. Installed at start,
//! read back while running ([`Installed::read`], which `roamer doctor` reads too), put back
//! when someone else removed part of it ([`repairs`] is the pure diff), removed on the way
//! out.
//!
//! Why put back: systemd-networkd removes routing rules it did not make whenever it
//! configures a link (`ManageForeignRoutingPolicyRules=yes`, its default), and so do VPN
//! clients and an admin's `ip rule flush`. Without the rules, clients of forwards that keep
//! their address get no answer, and nothing else would say so.

use roamgw_common::replies;
use roamgw_common::state::RoamerConfig;
use roamgw_wg::netlink::{self, Links, NetlinkError};

/// Rules that route replies into the tunnel: by source, by mark (of each family the tunnel
/// has, [`Wanted::reply_rules`]).
pub const REPLY_RULES: usize = 2;
/// Egress rules: the tunnel's own UDP, the laptop's own networks, the rest.
pub const EGRESS_RULES: usize = netlink::egress_rules(0, 0).len();

/// What is in place on the laptop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Installed {
    pub reply_rules: usize,
    /// Routes in the reply table (its `default dev`, 1 when complete).
    pub reply_routes: usize,
    pub udp_reply_table: bool,
    pub egress_rules: usize,
    /// Routes in the egress table, one per destination.
    pub egress_routes: usize,
}

/// What roamer keeps in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Wanted {
    /// Loaded at start; a laptop without nft is told so once, not every check.
    pub udp_reply_table: bool,
    pub egress_destinations: usize,
    /// The tunnel has an IPv6 address, whose replies have a rule and a route of their own.
    pub ipv6_replies: bool,
}

impl Wanted {
    /// What `config` installs; `udp_reply_table`: whether nft is there to load it.
    pub fn of(config: &RoamerConfig, udp_reply_table: bool) -> Self {
        // One route per distinct network: a repeated one replaces its twin.
        let mut networks: Vec<_> = config.egress().iter().map(|n| n.trunc()).collect();
        networks.sort();
        networks.dedup();
        Wanted {
            udp_reply_table,
            egress_destinations: networks.len(),
            ipv6_replies: config.address6.is_some(),
        }
    }

    /// IPv6 has the same two: by source, by mark.
    pub fn reply_rules(&self) -> usize {
        REPLY_RULES * (1 + usize::from(self.ipv6_replies))
    }

    /// The reply table's `default dev` of each family.
    pub fn reply_routes(&self) -> usize {
        1 + usize::from(self.ipv6_replies)
    }
}

/// A part to put back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    Replies,
    UdpReplies,
    Egress,
}

impl Repair {
    pub fn describe(self) -> &'static str {
        match self {
            Repair::Replies => "the rules and route that send replies into the tunnel",
            Repair::UdpReplies => "the nft table that marks UDP replies",
            Repair::Egress => "the egress rules and routes",
        }
    }
}

/// What differs from `wanted`. A part is put back whole: a count other than the expected
/// one (missing, or doubled by someone's copy) replaces all of it.
pub fn repairs(found: &Installed, wanted: &Wanted) -> Vec<Repair> {
    let mut out = Vec::new();
    if found.reply_rules != wanted.reply_rules() || found.reply_routes < wanted.reply_routes() {
        out.push(Repair::Replies);
    }
    if wanted.udp_reply_table && !found.udp_reply_table {
        out.push(Repair::UdpReplies);
    }
    if wanted.egress_destinations > 0
        && (found.egress_rules != EGRESS_RULES || found.egress_routes < wanted.egress_destinations)
    {
        out.push(Repair::Egress);
    }
    out
}

impl Installed {
    pub fn read(links: &Links, config: &RoamerConfig) -> Result<Self, NetlinkError> {
        let table = replies::table(&config.interface);
        let egress_table = replies::egress_table(&config.interface);
        let egress_rules = netlink::egress_rules(egress_table, replies::EGRESS_PRIORITY);
        Ok(Installed {
            reply_rules: links.count_rules(&[(replies::RULE_PRIORITY, table)])?,
            reply_routes: links.count_routes(table)?,
            udp_reply_table: nft(
                &[
                    "list",
                    "table",
                    replies::NFT_FAMILY,
                    &replies::nft_table(&config.interface),
                ],
                None,
            )
            .is_ok(),
            egress_rules: links.count_rules(&egress_rules)?,
            egress_routes: links.count_routes(egress_table)?,
        })
    }
}

/// Replies from the tunnel address, and packets with the tunnel's mark, leave through the
/// interface `index` (replacing rules of ours left by an earlier run).
pub fn install_replies(
    links: &Links,
    index: u32,
    config: &RoamerConfig,
) -> Result<(), NetlinkError> {
    links.route_replies(
        index,
        config.reply_sources(),
        replies::mark(&config.interface),
        replies::table(&config.interface),
        replies::RULE_PRIORITY,
    )
}

/// The nft table that gives UDP replies sent from 0.0.0.0 the tunnel's mark.
pub fn install_udp_replies(config: &RoamerConfig) -> Result<(), String> {
    let ruleset = replies::udp_reply_ruleset(
        &config.interface,
        config.interface.as_str(),
        config.reply_sources(),
    );
    nft(&["-f", "-"], Some(&ruleset))
}

/// The configured egress destinations leave through the interface `index`; the tunnel's own
/// UDP (from `listen_port`) does not.
pub fn install_egress(
    links: &Links,
    index: u32,
    config: &RoamerConfig,
    listen_port: u16,
) -> Result<(), NetlinkError> {
    links.route_egress(
        index,
        &config.egress(),
        replies::egress_table(&config.interface),
        replies::EGRESS_PRIORITY,
        listen_port,
    )
}

/// The rules and the UDP reply table outlive the interface (its routes go with it): removed
/// on every way out of `run`.
pub fn remove(config: &RoamerConfig) -> Result<(), String> {
    let _ = nft(
        &[
            "delete",
            "table",
            replies::NFT_FAMILY,
            &replies::nft_table(&config.interface),
        ],
        None,
    );
    let table = replies::table(&config.interface);
    let egress_table = replies::egress_table(&config.interface);
    Links::connect()
        .and_then(|l| {
            l.unroute_replies(table, replies::RULE_PRIORITY)?;
            l.unroute_egress(egress_table, replies::EGRESS_PRIORITY)
        })
        .map(drop)
        .map_err(|e| {
            format!("cannot remove the routing rules (tables {table}, {egress_table}): {e}")
        })
}

/// Runs `nft ARGS` with `input` on stdin; the error says what nft said.
pub fn nft(args: &[&str], input: Option<&str>) -> Result<(), String> {
    let ran = roamgw_common::tool::run("nft", args, input)
        .map_err(|e| format!("cannot run nft ({e}): install nftables"))?;
    if ran.success {
        Ok(())
    } else {
        Err(format!("nft: {}", ran.stderr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPLETE: Installed = Installed {
        reply_rules: REPLY_RULES,
        reply_routes: 1,
        udp_reply_table: true,
        egress_rules: EGRESS_RULES,
        egress_routes: 2,
    };
    const WANTED: Wanted = Wanted {
        udp_reply_table: true,
        egress_destinations: 2,
        ipv6_replies: false,
    };

    #[test]
    fn what_is_put_back() {
        use Repair::*;
        let with = |change: fn(&mut Installed)| {
            let mut found = COMPLETE;
            change(&mut found);
            found
        };
        let cases: &[(&str, Installed, Wanted, &[Repair])] = &[
            ("all in place", COMPLETE, WANTED, &[]),
            (
                "one reply rule gone",
                with(|f| f.reply_rules = 1),
                WANTED,
                &[Replies],
            ),
            (
                "reply rules doubled",
                with(|f| f.reply_rules = 4),
                WANTED,
                &[Replies],
            ),
            (
                "reply table flushed",
                with(|f| f.reply_routes = 0),
                WANTED,
                &[Replies],
            ),
            (
                "the IPv6 rule gone",
                COMPLETE,
                Wanted {
                    ipv6_replies: true,
                    ..WANTED
                },
                &[Replies],
            ),
            (
                "the IPv6 rule and route in place",
                with(|f| (f.reply_rules, f.reply_routes) = (2 * REPLY_RULES, 2)),
                Wanted {
                    ipv6_replies: true,
                    ..WANTED
                },
                &[],
            ),
            (
                "nft table deleted",
                with(|f| f.udp_reply_table = false),
                WANTED,
                &[UdpReplies],
            ),
            (
                "no nft at start: not retried",
                with(|f| f.udp_reply_table = false),
                Wanted {
                    udp_reply_table: false,
                    ..WANTED
                },
                &[],
            ),
            (
                "an egress rule gone",
                with(|f| f.egress_rules = 2),
                WANTED,
                &[Egress],
            ),
            (
                "an egress route gone",
                with(|f| f.egress_routes = 1),
                WANTED,
                &[Egress],
            ),
            (
                "no egress configured",
                with(|f| (f.egress_rules, f.egress_routes) = (0, 0)),
                Wanted {
                    egress_destinations: 0,
                    ..WANTED
                },
                &[],
            ),
            (
                "every rule and the ruleset flushed",
                Installed {
                    reply_routes: 1,
                    egress_routes: 2,
                    ..Installed::default()
                },
                WANTED,
                &[Replies, UdpReplies, Egress],
            ),
        ];
        for (name, found, wanted, expected) in cases {
            assert_eq!(repairs(found, wanted), *expected, "{name}");
        }
    }
}
