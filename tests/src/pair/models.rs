//! The provider's floating-IP NAT in the router, in the three models of issue 26.

use super::*;

/// How the provider's floating-IP NAT treats the droplets (issue 26).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// 1:1, client addresses kept, anchor-sourced packets accepted on any next hop.
    A,
    /// The same, but anchor-sourced packets are dropped unless sent to the anchor gateway
    /// (DigitalOcean's documented rule): a macvlan of the router with its own MAC plays the
    /// gateway, and the droplets are set up with `--anchor-gateway`.
    B,
    /// (a), and the NAT also rewrites each client's source to a provider address (the
    /// anchor's gateway, with a NAT port): the droplet sees every roamer and every forwarded
    /// client as that address. Its flows are the NAT's own, so a remembered endpoint means
    /// nothing once the IP has moved.
    C,
}

/// The provider's NAT, pointed at `anchor`, with the old flows forgotten.
pub(super) fn point_nat(wan: &Ns, model: Model, anchor: &str) {
    let rewrite_clients = if model == Model::C {
        format!(
            "ct original ip daddr {FLOATING_IP} ip daddr {anchor} snat to {};",
            anchor_gateway_of(anchor)
        )
    } else {
        String::new()
    };
    wan.run_checked_stdin(
        &["nft", "-f", "-"],
        &format!(
            "add table ip provider\ndelete table ip provider\ntable ip provider {{\n\
             chain pre {{ type nat hook prerouting priority dstnat; ip daddr {FLOATING_IP} dnat to {anchor}; }}\n\
             chain post {{ type nat hook postrouting priority srcnat; ip saddr {anchor} snat to {FLOATING_IP}; {rewrite_clients} }}\n\
             }}\n"
        ),
    );
    let _ = wan.output(&["conntrack", "-F"]);
}

/// The router's side of each droplet's link, with the droplet's anchor.
const DROPLET_LINKS: [(&str, &str); 2] = [("to-gw", ANCHOR_IP), ("to-b", B_ANCHOR)];

/// The router answers for `anchor`'s gateway on `dev`.
fn add_anchor_gateway(wan: &Ns, anchor: &str, dev: &str) {
    let address = format!("{}/32", anchor_gateway_of(anchor));
    wan.run(&["ip", "addr", "add", &address, "dev", dev]);
}

/// The anchor's gateway: the first address of its /16 (DigitalOcean's shape).
pub(super) fn anchor_gateway_of(anchor: &str) -> String {
    let mut octets: Vec<&str> = anchor.split('.').collect();
    octets.truncate(2);
    format!("{}.0.1", octets.join("."))
}

/// Model (b) in the router: each droplet's anchor gateway is a macvlan with a MAC of its own
/// on the droplet's link (the link itself no longer answers ARP for it), and anchor-sourced
/// packets that arrive on the link itself, not sent to the gateway, are dropped.
pub(super) fn anchor_gateways(wan: &Ns) {
    for ((link, anchor), gateway_if) in DROPLET_LINKS.into_iter().zip(["agw-a", "agw-b"]) {
        wan.run(&[
            "sysctl",
            "-qw",
            &format!("net.ipv4.conf.{link}.arp_ignore=1"),
        ]);
        wan.run(&[
            "ip", "link", "add", gateway_if, "link", link, "type", "macvlan", "mode", "bridge",
        ]);
        add_anchor_gateway(wan, anchor, gateway_if);
        wan.run(&["ip", "link", "set", gateway_if, "up"]);
        wan.run(&[
            "sysctl",
            "-qw",
            &format!("net.ipv4.conf.{gateway_if}.rp_filter=0"),
        ]);
    }
    wan.run(&["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"]);
    wan.run_checked_stdin(
        &["nft", "-f", "-"],
        &format!(
            "table ip provider_model_b {{\n\
             chain pre {{ type filter hook prerouting priority raw; \
             iifname {{ \"to-gw\", \"to-b\" }} ip saddr {{ {ANCHOR_IP}, {B_ANCHOR} }} counter drop; }}\n\
             }}\n"
        ),
    );
}

/// Model (c)'s provider addresses: the router answers for each anchor's gateway on the
/// droplet's link (replies to a rewritten client go there, on-link from the anchor).
pub(super) fn provider_addresses(wan: &Ns) {
    for (link, anchor) in DROPLET_LINKS {
        add_anchor_gateway(wan, anchor, link);
    }
}
