//! The gateway under attack and under accident. A handshake flood from one outside host
//! (bounded: seconds, from the client namespace to the gateway's WireGuard port only): junk, then
//! initiations that pass mac1; a connected roamer's forward keeps answering, a roamer that has
//! to handshake anew gets in, and `roamgw status` says what is going on. A second userspace
//! device of the gateway's interface name (in another namespace of the same host) is refused.

use std::time::{Duration, Instant};

use roamgw_e2e::flood::{flood, gateway_key, round_trips, route_spoofed_sources, Flood};
use roamgw_e2e::{GatewayMode, Laptop, Scenario, FLOATING_IP, PUBLIC_IP};

const ECHO: u16 = 7;

#[test]
fn a_handshake_flood_leaves_roamers_working_and_is_said() {
    let s = Scenario::gateway_only(GatewayMode::Daemon, &[], false);
    let s = s.connect_laptop(Laptop::Roamer);
    s.bed.tcp_echo_server(&s.bed.roam, ECHO);
    s.ok(&["add-port", &ECHO.to_string()]);
    s.ok(&["add-port", "22"]);
    let key = gateway_key(&s.ok(&["show-config", "laptop", "--format", "wg-quick"]));
    let target = format!("{PUBLIC_IP}:51820");
    let idle = round_trips(
        &s.bed.cli,
        &format!("{FLOATING_IP}:{ECHO}"),
        Duration::from_secs(1),
        Duration::from_millis(20),
    );
    assert_eq!(idle.lost, 0, "the forward answers before any flood");

    route_spoofed_sources(&s.bed);
    for kind in [Flood::Junk, Flood::Initiations, Flood::Spoofed] {
        let flooding = flood(&s.bed.cli, &target, key, kind, Duration::from_secs(3));
        std::thread::sleep(Duration::from_millis(300));
        let trips = round_trips(
            &s.bed.cli,
            &format!("{FLOATING_IP}:{ECHO}"),
            Duration::from_secs(2),
            Duration::from_millis(20),
        );
        let (answered, lost) = (trips.times.len(), trips.lost);
        let slowest = trips.times.iter().max().copied().unwrap_or_default();
        let sent = flooding.join().expect("flood thread");
        eprintln!("{kind:?}: {sent} datagrams in 3 s; {answered} round trips, slowest {slowest:?}");
        assert_eq!(
            lost, 0,
            "{kind:?}: a round trip through the forward was lost"
        );
        assert!(sent > 10_000, "{kind:?}: the flood sent only {sent}");
    }
    let status = s.ok(&["status"]);
    assert!(status.contains("handshake flood:"), "{status}");
    let json: serde_json::Value =
        serde_json::from_str(&s.ok(&["status", "--json"])).expect("status --json");
    // Most of one host's initiations are dropped by the kernel (nftables), the rest by the
    // device; cookies answer the spoofed ones.
    let dropped = json["kernel_handshakes_dropped"].as_u64().unwrap_or(0)
        + json["handshake_flood"]["initiations_dropped"]
            .as_u64()
            .unwrap_or(0);
    assert!(dropped > 10_000, "{json}");
    assert!(
        json["handshake_flood"]["cookie_replies"].as_u64() > Some(0),
        "{json}"
    );

    // A roamer that must handshake anew while a flood goes on gets in.
    for kind in [Flood::Initiations, Flood::Spoofed] {
        let flooding = flood(&s.bed.cli, &target, key, kind, Duration::from_secs(8));
        std::thread::sleep(Duration::from_millis(300));
        s.roamer_down();
        let since = Instant::now();
        s.start_roamer();
        let back = s.bed.time_until_banner(
            &format!("{FLOATING_IP}:22"),
            "roamer",
            since,
            Duration::from_secs(6),
        );
        flooding.join().expect("flood thread");
        eprintln!("{kind:?}: a new handshake during the flood, forward back after {back:?}");
        assert!(back.is_some(), "{kind:?}: no handshake through the flood");
    }
}

#[test]
fn a_second_device_of_the_same_name_is_refused() {
    let s = Scenario::gateway_only(GatewayMode::Daemon, &[], false);
    let s = s.connect_laptop(Laptop::Roamer);
    s.ok(&["add-port", "22"]);
    // A roamer in the laptop's namespace whose interface has the gateway's name: both would
    // serve /var/run/wireguard/NAME.sock.
    let config = s.ok(&["show-config", "laptop", "--format", "roamer"]);
    let pid = s
        .bed
        .spawn_roamer_in(&s.bed.roam, &s.bed.gw_wg, &config, &[]);
    let exited = roamgw_e2e::wait_until(Duration::from_secs(10), || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|stat| stat.contains(") Z "))
    });
    let log = s.bed.log(&format!("roamer-{}.log", s.bed.gw_wg));
    assert!(exited, "the second device runs:\n{log}");
    assert!(
        log.contains(&format!("another WireGuard device named {}", s.bed.gw_wg)),
        "{log}"
    );
    // The gateway's own device is untouched: its socket answers for it, and the forward works.
    let shown = s.bed.gw.run(&["wg", "show", &s.bed.gw_wg, "listen-port"]);
    assert_eq!(shown.trim(), "51820");
    assert_eq!(
        s.banner(&format!("{FLOATING_IP}:22")).as_deref(),
        Some("roamer")
    );
}
