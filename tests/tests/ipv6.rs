//! IPv6 end to end (issue 29). The tunnel over IPv6: on the dual-stack namespace internet the
//! roamer dials the gateway's IPv6 where the laptop's network has working IPv6, keeps the
//! forward on an IPv6-only network, and falls back to IPv4 where IPv6 is configured but broken;
//! a stock wg-quick laptop runs with the IPv6 endpoint `show-config --endpoint-family ipv6`
//! gives it. Forwards over IPv6: the address `roamgw forward6` dedicates answers with the
//! client's own IPv6 on the laptop (or the gateway's, masqueraded), allow-lists hold on IPv6
//! sources, the droplet's own IPv6 stays its own, on the roamer and on stock wg-quick.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use roamgw_e2e::dualstack::{peer_ip, CLIENT6, FORWARD6, GATEWAY6, LAPTOP6};
use roamgw_e2e::{Backend, GatewayMode, Laptop, Scenario, CLIENT, FLOATING_IP};

/// Ports of the laptop's peer-address servers: kept, masqueraded, allowed, shut out.
const KEEP: u16 = 7000;
const MASQ: u16 = 7001;
const ALLOWED: u16 = 7002;
const SHUT: u16 = 7003;

/// The gateway family `roamer status --json` reports.
fn family(s: &Scenario) -> String {
    let out = s.roamer(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("roamer status");
    status["gateway_family"]
        .as_str()
        .unwrap_or("none")
        .to_string()
}

/// Time until the forward answers again after `since`, 10 s at most.
fn forward_back(s: &Scenario, since: Instant) -> Option<Duration> {
    s.bed.time_until_banner(
        &format!("{FLOATING_IP}:22"),
        "roamer",
        since,
        Duration::from_secs(10),
    )
}

/// `init` flags of a droplet with IPv6: its own address, dialled by roamers, and one for
/// forwards.
const DUAL_STACK: [&str; 6] = [
    "--endpoint6",
    GATEWAY6,
    "--forward6",
    FORWARD6,
    "--public-ip6",
    GATEWAY6,
];

fn dual_stack() -> Scenario {
    let s = Scenario::gateway_only(GatewayMode::Daemon, &DUAL_STACK, false);
    s.bed.add_ipv6();
    s
}

/// The first `Some` of `f` within 5 s (a server just spawned may not listen yet).
fn within_5s<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let mut got = None;
    roamgw_e2e::wait_until(Duration::from_secs(5), || {
        got = f();
        got.is_some()
    });
    got
}

/// Who the laptop's servers saw of a TCP connection and a UDP datagram from the client to
/// `host:port`.
fn seen(s: &Scenario, host: &str, port: u16) -> (Option<IpAddr>, Option<IpAddr>) {
    let addr = match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
        _ => format!("{host}:{port}"),
    };
    (
        s.bed.cli.tcp_banner(&addr).as_deref().and_then(peer_ip),
        within_5s(|| s.bed.cli.udp_exchange(&addr, "who am i"))
            .as_deref()
            .and_then(peer_ip),
    )
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an address")
}

/// The gateway's tunnel IPv6 (what a masqueraded forward shows): the first host of the
/// tunnel's prefix, which the laptop's config carries.
fn gateway_tunnel6(s: &Scenario) -> IpAddr {
    let config = roamgw_common::state::RoamerConfig::from_toml(&s.ok(&["show-config", "laptop"]))
        .expect("the laptop's config");
    let prefix = config.address6.expect("an IPv6 tunnel address").trunc();
    IpAddr::V6((u128::from(prefix.network()) + 1).into())
}

/// Peer-address servers of both families on the laptop, and a forward for each port.
fn forwards_of_both_families(s: &Scenario) {
    for port in [KEEP, MASQ, ALLOWED, SHUT] {
        s.bed.peer_address_server(&s.bed.roam, port);
        s.bed.peer_address_server6(&s.bed.roam, port);
    }
    s.ok(&["add-port", &format!("{KEEP}/tcp+udp")]);
    s.ok(&[
        "add-port",
        &format!("{MASQ}/tcp+udp"),
        "--client-ip",
        "masquerade",
    ]);
    s.ok(&[
        "add-port",
        &format!("{ALLOWED}/tcp+udp"),
        "--allow-from",
        "2001:db8:c::/64",
    ]);
    s.ok(&[
        "add-port",
        &format!("{SHUT}/tcp+udp"),
        "--allow-from",
        "2001:db8:9::/48",
        "--allow-from",
        "192.0.2.99",
    ]);
}

#[test]
fn the_roamer_dials_ipv6_where_it_works_and_ipv4_where_it_does_not() {
    let s = dual_stack().connect_laptop(Laptop::Roamer);
    s.forward_22_works();
    assert_eq!(family(&s), "ipv6");
    let status = s.ok(&["status"]);
    assert!(
        status.contains(LAPTOP6),
        "the gateway sees the laptop's IPv6:\n{status}"
    );

    // An IPv6-only network (a mobile carrier's): the forward stays.
    let moved = Instant::now();
    s.bed.laptop_ipv6_only();
    let took = forward_back(&s, moved);
    eprintln!("IPv6-only network: forward after {took:?}");
    assert!(took.is_some_and(|t| t < Duration::from_secs(2)), "{took:?}");
    assert_eq!(family(&s), "ipv6");

    // A network whose IPv6 is configured but drops everything: IPv4, after the race.
    s.bed.break_ipv6();
    let moved = Instant::now();
    s.bed.move_laptop("100.64.0.3");
    s.bed.give_laptop_ipv6();
    let took = forward_back(&s, moved);
    eprintln!("broken IPv6: forward over IPv4 after {took:?}");
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(5)),
        "{took:?}\n{}",
        s.bed.log("roamer.log")
    );
    assert_eq!(family(&s), "ipv4");

    // IPv6 works again on the next network: back to it.
    s.bed.repair_ipv6();
    let moved = Instant::now();
    s.bed.move_laptop("100.64.0.4");
    s.bed.give_laptop_ipv6();
    let took = forward_back(&s, moved);
    eprintln!("IPv6 repaired: forward after {took:?}");
    assert!(took.is_some_and(|t| t < Duration::from_secs(2)), "{took:?}");
    let back = roamgw_e2e::wait_until(Duration::from_secs(3), || family(&s) == "ipv6");
    assert!(back, "{}", s.bed.log("roamer.log"));
}

#[test]
fn stock_wg_quick_runs_over_the_ipv6_endpoint() {
    let s = dual_stack();
    s.wg_quick_up_from_show_config(
        &s.bed.roam,
        &s.bed.roam_wg,
        &["laptop", "--endpoint-family", "ipv6"],
        "laptop",
    );
    s.await_tunnel(Laptop::WgQuick);
    s.bed.tcp_banner_server(&s.bed.roam, 22, "roamer");
    s.bed.tcp_banner_server(&s.bed.gw, 22, "droplet");
    s.forward_22_works();
    let endpoints = s.bed.roam.run(&["wg", "show", &s.bed.roam_wg, "endpoints"]);
    assert!(
        endpoints.contains(&format!("[{GATEWAY6}]:51820")),
        "{endpoints}"
    );
    let status = s.ok(&["status"]);
    assert!(status.contains(LAPTOP6), "{status}");
    // The generated config's hooks route the IPv6 replies by their source too.
    forwards_of_both_families(&s);
    let client6 = Some(ip(CLIENT6));
    assert_eq!(seen(&s, FORWARD6, KEEP), (client6, client6), "keep, IPv6");
    let tunnel6 = Some(gateway_tunnel6(&s));
    assert_eq!(
        seen(&s, FORWARD6, MASQ),
        (tunnel6, tunnel6),
        "masquerade, IPv6"
    );
}

/// What both backends do with IPv6 forwards: the client's own IPv6 (keep) or the gateway's
/// tunnel IPv6 (masquerade) on the laptop over TCP and UDP, IPv4 as before, allow-lists per
/// family, the droplet's own IPv6 untouched.
fn assert_ipv6_forwards(s: &Scenario) {
    forwards_of_both_families(s);
    let (client6, client) = (Some(ip(CLIENT6)), Some(ip(CLIENT)));
    assert_eq!(seen(s, FORWARD6, KEEP), (client6, client6), "keep, IPv6");
    let tunnel6 = Some(gateway_tunnel6(s));
    assert_eq!(
        seen(s, FORWARD6, MASQ),
        (tunnel6, tunnel6),
        "masquerade, IPv6"
    );
    assert_eq!(
        seen(s, FLOATING_IP, KEEP),
        (client, client),
        "IPv4 as before"
    );
    // Allow-lists: each family's forward admits its own family's sources only.
    assert_eq!(seen(s, FORWARD6, ALLOWED), (client6, client6), "allowed");
    assert_eq!(seen(s, FORWARD6, SHUT).0, None, "an IPv6 source not listed");
    assert_eq!(
        seen(s, FLOATING_IP, SHUT).0,
        None,
        "an IPv4 source not listed"
    );
    assert_eq!(
        seen(s, FLOATING_IP, ALLOWED).0,
        None,
        "an IPv4 source, where only IPv6 ones are listed"
    );

    // The droplet's own IPv6 is its own; the forward address answers for forwards only.
    s.bed.spawn(
        &s.bed.gw,
        &[
            "socat",
            "TCP6-LISTEN:22,fork,reuseaddr,ipv6only=1",
            "SYSTEM:echo droplet",
        ],
    );
    let own = within_5s(|| s.bed.cli.tcp_banner(&format!("[{GATEWAY6}]:22")));
    assert_eq!(own.as_deref(), Some("droplet"));
    assert_eq!(s.bed.cli.tcp_banner(&format!("[{FORWARD6}]:22")), None);
}

/// `forward6 --off`: the IPv6 side of every forward goes, IPv4 stays.
fn assert_off_leaves_ipv4(s: &Scenario) {
    s.ok(&["forward6", "--off"]);
    assert_eq!(s.bed.cli.tcp_banner(&format!("[{FORWARD6}]:{KEEP}")), None);
    let client = Some(ip(CLIENT));
    assert_eq!(seen(s, FLOATING_IP, KEEP).0, client);
}

#[test]
fn forwards_answer_on_the_ipv6_address_with_the_clients_own() {
    let s = dual_stack().connect_laptop(Laptop::Roamer);
    assert_ipv6_forwards(&s);
    let client6 = Some(ip(CLIENT6));

    // Hairpin: the droplet's own connection to the forward address reaches the laptop.
    let hairpin = s.bed.gw.tcp_banner(&format!("[{FORWARD6}]:{KEEP}"));
    assert!(
        hairpin.as_deref().and_then(peer_ip).is_some(),
        "{hairpin:?}"
    );

    // Hairpin from the laptop itself, out over its own IPv6 and back in through the tunnel:
    // with its own global address as the client's, a kept-address reply would be delivered
    // locally (no NAT in between, unlike IPv4's CGNAT), so it is a masqueraded forward.
    let own = s.bed.roam.tcp_banner(&format!("[{FORWARD6}]:{MASQ}"));
    assert_eq!(own.as_deref().and_then(peer_ip), Some(gateway_tunnel6(&s)));

    // An IPv6-only laptop network: the tunnel and the IPv6 forward both go over IPv6.
    s.bed.laptop_ipv6_only();
    let back = roamgw_e2e::wait_until(Duration::from_secs(5), || {
        s.bed
            .cli
            .tcp_banner(&format!("[{FORWARD6}]:{KEEP}"))
            .as_deref()
            .and_then(peer_ip)
            == client6
    });
    assert!(back, "{}", s.bed.log("roamer.log"));
    assert_eq!(family(&s), "ipv6");

    assert_off_leaves_ipv4(&s);
}

#[test]
fn firewalld_forwards_over_ipv6_too() {
    let s = Scenario::gateway_on(GatewayMode::Daemon, Backend::Firewalld, &DUAL_STACK, false);
    s.bed.add_ipv6();
    let s = s.connect_laptop(Laptop::Roamer);
    assert_ipv6_forwards(&s);
    assert_off_leaves_ipv4(&s);
}

/// A gateway set up without IPv6 takes a forward address while it runs: the tunnel gets its
/// IPv6 prefix on the link and in every peer's allowed IPs at once, and IPv6 forwarding goes
/// on (the laptops take their new configs).
#[test]
fn a_gateway_without_ipv6_takes_a_forward_address_while_it_runs() {
    let s = Scenario::gateway_only(GatewayMode::Daemon, &[], false);
    let wg = s.bed.gw_wg.clone();
    let global = ["ip", "-6", "addr", "show", "dev", &wg, "scope", "global"];
    assert!(s.bed.gw.run(&global).trim().is_empty());
    s.bed.add_ipv6();
    s.ok(&["forward6", FORWARD6]);
    let config = roamgw_common::state::RoamerConfig::from_toml(&s.ok(&["show-config", "laptop"]))
        .expect("the laptop's config");
    let laptop6 = config.address6.expect("an IPv6 tunnel address").addr();
    let link = s.bed.gw.run(&["ip", "-6", "addr", "show", "dev", &wg]);
    assert!(
        link.contains(&format!("{}/64", gateway_tunnel6(&s))),
        "{link}"
    );
    let allowed = s.bed.gw.run(&["wg", "show", &wg, "allowed-ips"]);
    assert!(allowed.contains(&format!("{laptop6}/128")), "{allowed}");
    let forwarding = s
        .bed
        .gw
        .run(&["sysctl", "-n", "net.ipv6.conf.all.forwarding"]);
    assert_eq!(forwarding.trim(), "1");
    let rules = s.ok(&["rules"]);
    assert!(
        rules.contains(&format!("forward_addrs6 {{ {FORWARD6} }}")),
        "{rules}"
    );
}
