//! How a laptop sends the replies of forwarded connections back through the tunnel when the
//! gateway keeps the client's address (`--client-ip keep`): by source address. One rule,
//! `from <tunnel address> lookup <table>`, and one route in that table, `default dev <tunnel>`.
//! The laptop's other traffic never has the tunnel address as its source, so it keeps its own
//! routes; and the reverse-path check (rp_filter, strict on Fedora) passes, because the route
//! back to a client, looked up from the tunnel address, is the tunnel. No mark is involved,
//! so `src_valid_mark` does not matter.
//!
//! The roamer installs both on start and removes them on stop (a start after a kill -9 first
//! removes what the killed one left); the generated wg-quick config does the same in
//! `PostUp`/`PreDown` with `Table = off`.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::Ipv4Net;

use crate::names::InterfaceName;

/// Before the rules of other VPNs (Tailscale's start at 5210, wg-quick's full tunnel uses
/// 32764-32765) and the main table (32766): a reply must not follow another VPN's default route.
pub const RULE_PRIORITY: u32 = 5100;

/// The routing table of the interface's replies: 52000-52999, from the interface name, so two
/// tunnels on one laptop get two tables, and the roamer and the generated wg-quick config agree.
pub fn table(interface: &InterfaceName) -> u32 {
    let hash = interface.as_str().bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    52_000 + hash % 1000
}

/// The mark that sends a UDP reply into the tunnel: the table's number (52000-52999, apart
/// from wg-quick's 51820 and the bits Tailscale uses).
pub fn mark(interface: &InterfaceName) -> u32 {
    table(interface)
}

/// The mark of what the roamer sends the gateway beside the tunnel (the TCP relay's connection,
/// the UDP and portal checks): egress leaves it to the main table, as it leaves the tunnel's
/// own UDP, or egress `0.0.0.0/0` would route the TCP that carries the tunnel into the tunnel,
/// and a UDP check through the tunnel would always be answered. Past the tables' numbers.
pub const BESIDE_TUNNEL_MARK: u32 = 54_000;

/// The laptop's nftables table for UDP replies, one per interface (`inet`: both families).
pub fn nft_table(interface: &InterfaceName) -> String {
    let name: String = interface
        .as_str()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("roamgw_{name}")
}

/// The family of [`nft_table`].
pub const NFT_FAMILY: &str = "inet";

/// A UDP server that replies from a socket bound to 0.0.0.0 (or ::) gets its source address
/// from the route to the client, which is the laptop's own, so the reply would leave directly
/// from the wrong address. This table remembers each UDP flow that came through the tunnel
/// (client . client port . local port, 3 minutes after its last packet), marks the replies to
/// it so the mark rule routes them into the tunnel, and gives them the tunnel address as
/// source; with `address6`, IPv6 flows alike. TCP replies, and UDP replies from sockets bound
/// to the tunnel address, have the right source already. One line, for `nft -f -` and for a
/// wg-quick hook alike; it replaces a table left behind (and the `ip` one of earlier versions).
pub fn udp_reply_ruleset(
    interface: &InterfaceName,
    tunnel_interface: &str,
    (address, address6): (Ipv4Addr, Option<Ipv6Addr>),
) -> String {
    let table = nft_table(interface);
    let mark = mark(interface);
    let (mut sets, mut input, mut output, mut postrouting) = (
        "set udp_flows { type ipv4_addr . inet_service . inet_service; flags dynamic,timeout; timeout 3m; }; ".to_string(),
        format!("iifname \"{tunnel_interface}\" meta nfproto ipv4 meta l4proto udp update @udp_flows {{ ip saddr . udp sport . udp dport }}; "),
        format!("ip saddr != {address} meta l4proto udp ip daddr . udp dport . udp sport @udp_flows meta mark set {mark}; "),
        format!("oifname \"{tunnel_interface}\" ip saddr != {address} meta mark {mark} ip saddr set {address}; "),
    );
    if let Some(address6) = address6 {
        sets += "set udp_flows6 { type ipv6_addr . inet_service . inet_service; flags dynamic,timeout; timeout 3m; }; ";
        input += &format!("iifname \"{tunnel_interface}\" meta nfproto ipv6 meta l4proto udp update @udp_flows6 {{ ip6 saddr . udp sport . udp dport }}; ");
        output += &format!("ip6 saddr != {address6} meta l4proto udp ip6 daddr . udp dport . udp sport @udp_flows6 meta mark set {mark}; ");
        postrouting += &format!("oifname \"{tunnel_interface}\" ip6 saddr != {address6} meta mark {mark} ip6 saddr set {address6}; ");
    }
    format!(
        "table {NFT_FAMILY} {table} {{}}; delete table {NFT_FAMILY} {table}; \
         table ip {table} {{}}; delete table ip {table}; table {NFT_FAMILY} {table} {{ {sets}\
         chain input {{ type filter hook input priority 0; policy accept; {input}}}; \
         chain output {{ type route hook output priority -150; policy accept; {output}}}; \
         chain postrouting {{ type filter hook postrouting priority 300; policy accept; {postrouting}}}; }}"
    )
}

/// Egress (`roamgw egress`): three rules from this priority on — the tunnel's own UDP keeps
/// the main table, so do the laptop's own networks (main without its default route), and
/// everything else looks up [`egress_table`], which holds the egress destinations.
pub const EGRESS_PRIORITY: u32 = RULE_PRIORITY + 1;

/// The table of the interface's egress destinations: [`table`] + 1000 (53000-53999).
pub fn egress_table(interface: &InterfaceName) -> u32 {
    table(interface) + 1000
}

/// The `PostUp` and `PreDown` commands of a stock wg-quick config (`%i` is the interface):
/// the reply routing, and the egress routing when `egress` holds destinations.
pub fn wg_quick_hooks(
    interface: &InterfaceName,
    (address, address6): (Ipv4Addr, Option<Ipv6Addr>),
    egress: &[Ipv4Net],
) -> (Vec<String>, Vec<String>) {
    let table = table(interface);
    let priority = RULE_PRIORITY;
    let mark = mark(interface);
    let mut up = vec![
        format!("ip -4 route replace default dev %i table {table}"),
        format!("ip -4 rule add from {address} lookup {table} priority {priority}"),
        format!("ip -4 rule add fwmark {mark} lookup {table} priority {priority}"),
        format!(
            "nft '{}'",
            udp_reply_ruleset(interface, "%i", (address, address6))
        ),
    ];
    let mut down = vec![
        format!("ip -4 rule del from {address} lookup {table} priority {priority}"),
        format!("ip -4 rule del fwmark {mark} lookup {table} priority {priority}"),
        format!("nft delete table {NFT_FAMILY} {}", nft_table(interface)),
    ];
    if let Some(address6) = address6 {
        up.extend([
            format!("ip -6 route replace default dev %i table {table}"),
            format!("ip -6 rule add from {address6} lookup {table} priority {priority}"),
            format!("ip -6 rule add fwmark {mark} lookup {table} priority {priority}"),
        ]);
        down.extend([
            format!("ip -6 rule del from {address6} lookup {table} priority {priority}"),
            format!("ip -6 rule del fwmark {mark} lookup {table} priority {priority}"),
        ]);
    }
    if !egress.is_empty() {
        let egress_table = egress_table(interface);
        let [tunnel, local, rest] = [0, 1, 2].map(|i| EGRESS_PRIORITY + i);
        up.extend(
            egress
                .iter()
                .map(|net| format!("ip -4 route replace {net} dev %i table {egress_table}")),
        );
        up.extend([
            format!(
                "ip -4 rule add ipproto udp sport $(wg show %i listen-port) lookup main priority {tunnel}"
            ),
            // `roamer tcp-relay` marks its connection.
            format!("ip -4 rule add fwmark {BESIDE_TUNNEL_MARK} lookup main priority {tunnel}"),
            format!("ip -4 rule add lookup main suppress_prefixlength 0 priority {local}"),
            format!("ip -4 rule add lookup {egress_table} priority {rest}"),
        ]);
        down.extend([
            format!("ip -4 rule del lookup main priority {tunnel}"),
            format!("ip -4 rule del lookup main priority {tunnel}"),
            format!("ip -4 rule del lookup main priority {local}"),
            format!("ip -4 rule del lookup {egress_table} priority {rest}"),
        ]);
    }
    (up, down)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_stable_and_in_range() {
        let name = |n: &str| n.parse::<InterfaceName>().expect("name");
        let roamgw0 = table(&name("roamgw0"));
        assert_eq!(roamgw0, table(&name("roamgw0")));
        assert!((52_000..53_000).contains(&roamgw0));
        assert_ne!(roamgw0, table(&name("roamgw1")));
        assert_eq!(roamgw0, 52_354, "docs/roamer.md shows this number");
    }

    #[test]
    fn wg_quick_hooks_route_replies_and_egress() {
        let name = "roamgw0".parse::<InterfaceName>().expect("name");
        let address = Ipv4Addr::new(192, 168, 32, 2);
        let (up, down) = wg_quick_hooks(&name, (address, None), &[]);
        assert_eq!(
            &up[..3],
            [
                "ip -4 route replace default dev %i table 52354",
                "ip -4 rule add from 192.168.32.2 lookup 52354 priority 5100",
                "ip -4 rule add fwmark 52354 lookup 52354 priority 5100",
            ]
        );
        assert!(
            up[3].starts_with("nft 'table inet roamgw_roamgw0 {}; delete table"),
            "{}",
            up[3]
        );
        assert!(up[3].contains("iifname \"%i\""), "{}", up[3]);
        assert_eq!(
            down,
            [
                "ip -4 rule del from 192.168.32.2 lookup 52354 priority 5100",
                "ip -4 rule del fwmark 52354 lookup 52354 priority 5100",
                "nft delete table inet roamgw_roamgw0",
            ]
        );
        let everything = ["0.0.0.0/0".parse().expect("net")];
        let (up, down) = wg_quick_hooks(&name, (address, None), &everything);
        assert_eq!(
            &up[4..],
            [
                "ip -4 route replace 0.0.0.0/0 dev %i table 53354",
                "ip -4 rule add ipproto udp sport $(wg show %i listen-port) lookup main priority 5101",
                "ip -4 rule add fwmark 54000 lookup main priority 5101",
                "ip -4 rule add lookup main suppress_prefixlength 0 priority 5102",
                "ip -4 rule add lookup 53354 priority 5103"
            ]
        );
        assert_eq!(down.len(), 7, "every rule added is deleted: {down:?}");
        let address6 = "fd12:3456:789a::2".parse().expect("v6");
        let (up, down) = wg_quick_hooks(&name, (address, Some(address6)), &[]);
        assert_eq!(
            &up[4..],
            [
                "ip -6 route replace default dev %i table 52354",
                "ip -6 rule add from fd12:3456:789a::2 lookup 52354 priority 5100",
                "ip -6 rule add fwmark 52354 lookup 52354 priority 5100",
            ]
        );
        assert!(
            up[3].contains("ip6 saddr set fd12:3456:789a::2"),
            "{}",
            up[3]
        );
        assert_eq!(
            down[3],
            "ip -6 rule del from fd12:3456:789a::2 lookup 52354 priority 5100"
        );
    }
}
