//! IPv6 beside the testbed's IPv4 (documentation prefix 2001:db8::/32 only): the client, the
//! droplet's own IPv6, and a laptop network routed by the CGNAT box with a stateful firewall in
//! front (what the laptop sends gets out, and its answers back in; nothing new comes in), as
//! a mobile carrier's or a home router's IPv6 is. No NAT on the IPv6 path.

use crate::Testbed;

/// The client's IPv6.
pub const CLIENT6: &str = "2001:db8:c::2";
/// The droplet's own (main) IPv6: what roamers dial over IPv6.
pub const GATEWAY6: &str = "2001:db8:d::10";
/// The IPv6 the droplet dedicates to forwards (`roamgw forward6`), on its interface beside
/// its own.
pub const FORWARD6: &str = "2001:db8:d::50";
/// The laptop's global IPv6 on its network.
pub const LAPTOP6: &str = "2001:db8:f::2";
/// The CGNAT box's firewall for the laptop's IPv6 network.
const FIREWALL: &str = "rg_v6_firewall";
/// The table that breaks IPv6 (addresses stay, packets go nowhere).
const BROKEN: &str = "rg_v6_broken";

/// `ip -6 addr add` without duplicate address detection, so the address is usable at once.
fn address(ns: &crate::Ns, cidr: &str, dev: &str) {
    ns.run(&["ip", "-6", "addr", "add", cidr, "dev", dev, "nodad"]);
}

fn route(ns: &crate::Ns, to: &str, via: &str) {
    ns.run(&["ip", "-6", "route", "replace", to, "via", via]);
}

impl Testbed {
    /// Gives the namespace internet IPv6: client 2001:db8:c::/64, droplet 2001:db8:d::/64,
    /// the CGNAT box's uplink 2001:db8:e::/64 and the laptop's network 2001:db8:f::/64 behind
    /// it.
    pub fn add_ipv6(&self) {
        for ns in [&self.wan, &self.cgn] {
            ns.run(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
        }
        address(&self.wan, "2001:db8:c::1/64", "to-cli");
        address(&self.wan, "2001:db8:d::1/64", "to-gw");
        address(&self.wan, "2001:db8:e::1/64", "to-cgn");
        route(&self.wan, "2001:db8:f::/64", "2001:db8:e::2");
        address(&self.cli, &format!("{CLIENT6}/64"), "eth0");
        route(&self.cli, "default", "2001:db8:c::1");
        address(&self.gw, &format!("{GATEWAY6}/64"), "eth0");
        address(&self.gw, &format!("{FORWARD6}/128"), "eth0");
        route(&self.gw, "default", "2001:db8:d::1");
        address(&self.cgn, "2001:db8:e::2/64", "eth0");
        route(&self.cgn, "default", "2001:db8:e::1");
        address(&self.cgn, "2001:db8:f::1/64", "to-roam");
        self.cgn.run_checked_stdin(
            &["nft", "-f", "-"],
            &format!(
                "table ip6 {FIREWALL} {{\n chain forward {{ type filter hook forward priority 0; \
                 ct state established,related accept; iifname \"eth0\" oifname \"to-roam\" drop; }}\n}}\n"
            ),
        );
        self.give_laptop_ipv6();
        // The links' own (link-local) addresses come up tentative, and neighbour discovery
        // waits for them: until then a first IPv6 packet takes a second or more, and the
        // roamer's race rightly picks IPv4.
        let namespaces = [&self.cli, &self.wan, &self.gw, &self.cgn, &self.roam];
        let settled = crate::wait_until(std::time::Duration::from_secs(10), || {
            namespaces.iter().all(|ns| {
                ns.run(&["ip", "-6", "addr", "show", "tentative"])
                    .trim()
                    .is_empty()
            })
        });
        assert!(settled, "IPv6 addresses still tentative after 10 s");
    }

    /// The laptop's IPv6 address and default route (again, after [`Testbed::move_laptop`]
    /// flushed eth0).
    pub fn give_laptop_ipv6(&self) {
        address(&self.roam, &format!("{LAPTOP6}/64"), "eth0");
        route(&self.roam, "default", "2001:db8:f::1");
    }

    /// The laptop's network becomes IPv6-only: its IPv4 address and route go.
    pub fn laptop_ipv6_only(&self) {
        self.roam.run(&["ip", "-4", "addr", "flush", "dev", "eth0"]);
    }

    /// The laptop's IPv6 keeps its address and route, but the CGNAT box forwards none of it.
    pub fn break_ipv6(&self) {
        self.cgn.run_checked_stdin(
            &["nft", "-f", "-"],
            &format!(
                "table ip6 {BROKEN} {{\n chain forward {{ type filter hook forward priority -10; drop; }}\n}}\n"
            ),
        );
    }

    pub fn repair_ipv6(&self) {
        self.cgn.run(&["nft", "delete", "table", "ip6", BROKEN]);
    }
}

/// The address a peer-address server reported (socat writes IPv6 in full, in brackets).
pub fn peer_ip(text: &str) -> Option<std::net::IpAddr> {
    text.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}
