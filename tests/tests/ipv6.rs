//! The tunnel over IPv6 (issue 29): on the dual-stack namespace internet the roamer dials the
//! gateway's IPv6 where the laptop's network has working IPv6, keeps the forward on an
//! IPv6-only network, and falls back to IPv4 where IPv6 is configured but broken; a stock
//! wg-quick laptop runs with the IPv6 endpoint `show-config --endpoint-family ipv6` gives it.

use std::time::{Duration, Instant};

use roamgw_e2e::dualstack::{GATEWAY6, LAPTOP6};
use roamgw_e2e::{GatewayMode, Laptop, Scenario, FLOATING_IP};

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

fn dual_stack() -> Scenario {
    let s = Scenario::gateway_only(GatewayMode::Daemon, &["--endpoint6", GATEWAY6], false);
    s.bed.add_ipv6();
    s
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
}
