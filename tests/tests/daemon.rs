//! `roamgw run` with its embedded userspace WireGuard against a stock wg-quick + wireguard-go
//! laptop, in the namespace internet.

use std::time::Duration;

use roamgw_e2e::{wait_until, GatewayMode, Laptop, Scenario, FLOATING_IP, PUBLIC_IP};

/// `roamgw run` up with roamer `laptop` on wg-quick and the forward 22.
fn start() -> Scenario {
    let s = Scenario::new(GatewayMode::Daemon, &[]);
    s.ok(&["add-port", "22"]);
    s
}

fn daemon_alive(s: &Scenario) -> bool {
    s.daemon.is_some_and(|pid| {
        s.bed
            .gw
            .output(&["kill", "-0", &pid.to_string()])
            .status
            .success()
    })
}

#[test]
fn full_scenario_through_our_own_device() {
    let gw = start();
    let b = &gw.bed;
    assert_eq!(
        b.cli.tcp_banner(&format!("{FLOATING_IP}:22")).as_deref(),
        Some("roamer")
    );
    assert_eq!(
        b.cli.tcp_banner(&format!("{PUBLIC_IP}:22")).as_deref(),
        Some("droplet")
    );

    // A change while the daemon runs is live when the command returns.
    b.tcp_banner_server(&b.roam, 8080, "roamer-8080");
    let out = gw.ok(&["add-port", "8080"]);
    assert!(out.contains("live"), "{out}");
    assert_eq!(
        b.cli.tcp_banner(&format!("{FLOATING_IP}:8080")).as_deref(),
        Some("roamer-8080")
    );

    // `wg show` works on the userspace device, and status has the roamer's endpoint.
    let wg = b.gw.run(&["wg", "show", &b.gw_wg]);
    assert!(
        wg.contains("public key:")
            && wg.contains("peer:")
            && wg.contains("endpoint: 198.51.100.2")
            && wg.contains("latest handshake:")
            && wg.contains("preshared key: (hidden)"),
        "{wg}"
    );
    assert!(
        !wg.contains("years ago"),
        "the handshake time is an instant, not an age: {wg}"
    );
    let status: serde_json::Value =
        serde_json::from_str(&gw.ok(&["status", "--json"])).expect("json");
    assert_eq!(status["daemon_running"], true);
    assert_eq!(status["interface_kind"], "userspace", "{status}");
    assert!(
        status["roamers"][0]["endpoint"]
            .as_str()
            .unwrap_or("")
            .starts_with("198.51.100.2:"),
        "{status}"
    );
}

/// Laptops that dial the floating IP, as a pair of droplets needs (the address moves, the
/// laptops follow without DNS). The device answers from the anchor the initiation arrived on
/// (sticky source; its unit tests in roamgw-wg show it). This testbed's provider NAT (1:1, any
/// next hop) carried the answers in these tests even without it: they keep the path working,
/// the provider models that drop other answers belong to the HA testbed (issue 26).
fn dial_the_floating_ip(laptop: Laptop) {
    let endpoint = format!("{FLOATING_IP}:51820");
    let s = Scenario::build_with(
        GatewayMode::Daemon,
        laptop,
        &["--endpoint", &endpoint],
        false,
    );
    s.forward_22_works();
}

#[test]
fn a_wg_quick_laptop_that_dials_the_floating_ip_is_answered_from_the_anchor() {
    dial_the_floating_ip(Laptop::WgQuick);
}

#[test]
fn a_roamer_that_dials_the_floating_ip_is_answered_from_the_anchor() {
    dial_the_floating_ip(Laptop::Roamer);
}

#[test]
fn peer_changes_while_traffic_flows_keep_the_device_alive() {
    let gw = start();
    let b = &gw.bed;
    // Traffic flowing through the tunnel the whole time.
    let mut stream = b
        .cli
        .connect(&format!("{FLOATING_IP}:22"), Duration::from_secs(2))
        .expect("connect");
    let _ = std::io::Read::read(&mut stream, &mut [0u8; 64]);
    // A second roamer, then the first one changed (removed and re-added by sync) via its
    // forwards' owner: remove-roamer --force and add it back is a peer change too.
    gw.ok(&["add-roamer", "phone"]);
    gw.ok(&["add-port", "2222:22", "--to", "phone"]);
    assert_eq!(
        b.cli.tcp_banner(&format!("{FLOATING_IP}:22")).as_deref(),
        Some("roamer"),
        "laptop lost after adding phone"
    );
    gw.ok(&["remove-roamer", "phone", "--force"]);
    assert_eq!(
        b.cli.tcp_banner(&format!("{FLOATING_IP}:22")).as_deref(),
        Some("roamer"),
        "laptop lost after removing phone"
    );
    assert!(
        daemon_alive(&gw),
        "the daemon died:\n{}",
        b.log("daemon.log")
    );
    assert!(
        !b.log("daemon.log").contains("panicked"),
        "{}",
        b.log("daemon.log")
    );
}

#[test]
fn sigterm_takes_everything_down_and_a_restart_after_kill_9_comes_back() {
    let mut gw = start();
    let pid = gw.daemon.take().expect("daemon pid");
    gw.bed.gw.run(&["kill", "-9", &pid.to_string()]);
    let b = &gw.bed;
    let interface_gone = wait_until(Duration::from_secs(5), || {
        !b.gw
            .output(&["ip", "link", "show", &b.gw_wg])
            .status
            .success()
    });
    assert!(
        interface_gone,
        "the TUN interface outlived the killed daemon"
    );
    // Dead once it is a zombie (the test process is its parent).
    let dead = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_or(true, |stat| stat.contains(") Z "))
    });
    assert!(dead, "the daemon did not die");

    // Restart with the leftover table and socket file in place; the laptop reconnects.
    gw.up();
    assert_eq!(
        gw.banner(&format!("{FLOATING_IP}:22")).as_deref(),
        Some("roamer"),
        "no forward after the restart:\n{}",
        gw.bed.log("daemon.log")
    );

    // SIGTERM: table, interface and socket gone (stop_daemon waits for the first and last).
    gw.stop_daemon();
    let b = &gw.bed;
    assert!(
        !b.gw
            .output(&["ip", "link", "show", &b.gw_wg])
            .status
            .success(),
        "SIGTERM left the interface:\n{}",
        b.log("daemon.log")
    );
}

#[test]
fn sighup_rereads_the_state_and_the_daemon_stays_up() {
    let gw = start();
    let b = &gw.bed;
    b.tcp_banner_server(&b.roam, 9090, "roamer-9090");
    // A change written to the file by hand (as a config-management tool would)...
    let path = b.config_dir().join("gateway.toml");
    roamgw_e2e::add_forward_by_hand(&path, "9090/tcp -> laptop");
    // ...goes live on SIGHUP.
    let pid = gw.daemon.expect("daemon");
    b.gw.run(&["kill", "-HUP", &pid.to_string()]);
    let live = wait_until(Duration::from_secs(10), || {
        b.cli.tcp_banner(&format!("{FLOATING_IP}:9090")).as_deref() == Some("roamer-9090")
    });
    assert!(
        live,
        "SIGHUP did not apply the edited state:\n{}",
        b.log("daemon.log")
    );
    assert!(daemon_alive(&gw), "the daemon exited on SIGHUP");
    assert_eq!(
        gw.banner(&format!("{FLOATING_IP}:22")).as_deref(),
        Some("roamer")
    );
}

/// A handshake counts once both sides completed it. Here the provider's router lets only the
/// gateway's handshake initiations through: its answers to the laptop's initiations are lost,
/// and so is its confirmation after the laptop answers one of its own (which boringtun counts
/// as a handshake at once). The laptop never gets a session: `roamgw status` says "never", and
/// a forward that clients try blames the tunnel, not the laptop's config. Once the gateway's
/// packets get through, the handshake counts.
#[test]
fn a_handshake_the_laptop_did_not_complete_does_not_count() {
    let s = Scenario::gateway_only(GatewayMode::Daemon, &[], false);
    let wan = s.bed.wan.clone();
    wan.run(&["nft", "add", "table", "ip", "lossy"]);
    wan.run(&[
        "nft",
        "add chain ip lossy back { type filter hook forward priority 0 ; }",
    ]);
    wan.run(&[
        "nft",
        // 156: a handshake initiation (148 bytes) and its UDP header.
        &format!(
            "add rule ip lossy back ip saddr {PUBLIC_IP} udp sport 51820 udp length != 156 drop"
        ),
    ]);
    s.start_roamer();
    s.ok(&["add-port", "22"]);
    let roamer = |s: &Scenario| {
        let view: serde_json::Value =
            serde_json::from_str(&s.ok(&["status", "--json"])).expect("status --json");
        view["roamers"][0].clone()
    };
    // The initiation arrived and was answered: the device learns the endpoint only from an
    // initiation it authenticated, and answers each one.
    assert!(
        wait_until(Duration::from_secs(10), || roamer(&s)["endpoint"]
            .is_string()),
        "{}",
        roamer(&s)
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        roamer(&s)["last_handshake_secs"].is_null(),
        "{}",
        roamer(&s)
    );
    // A client tries the forward (a SYN and its retry reach the gateway, nothing comes back).
    assert_eq!(s.bed.cli.tcp_banner(&format!("{FLOATING_IP}:22")), None);
    let status = s.ok(&["status"]);
    assert!(
        status.contains("'laptop' has no working tunnel (last completed handshake: never)"),
        "{status}"
    );
    wan.run(&["nft", "delete", "table", "ip", "lossy"]);
    assert!(
        wait_until(Duration::from_secs(15), || !roamer(&s)
            ["last_handshake_secs"]
            .is_null()),
        "{}",
        roamer(&s)
    );
}
