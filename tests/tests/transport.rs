//! The roamer on a network that passes no UDP but DNS (hotel Wi-Fi): the gateway's WireGuard
//! over TCP carries the tunnel, forwards keep the client's address, `roamer status` says TCP
//! and why; once UDP passes again the roamer goes back to it by itself. And the TCP port
//! under junk from an outsider.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use roamgw_e2e::{
    hostile, wait_until, GatewayMode, Laptop, Scenario, CLIENT, FLOATING_IP, PUBLIC_IP,
};

const TCP_PORT: &str = "443";

fn block_udp(s: &Scenario) {
    hostile::block_udp(&s.bed);
}

fn unblock_udp(s: &Scenario) {
    hostile::unblock_udp(&s.bed);
}

/// How long after `since` the laptop's banner answers through the floating IP's port 22.
fn forward_back(s: &Scenario, since: Instant, within: Duration) -> Option<Duration> {
    s.bed
        .time_until_banner(&format!("{FLOATING_IP}:22"), "roamer", since, within)
}

fn status(s: &Scenario) -> serde_json::Value {
    let out = s.roamer(&["status", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "roamer status --json: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The laptop's status once it runs over `transport` and is up (or the last one after `wait`).
fn status_when(s: &Scenario, transport: &str, wait: Duration) -> serde_json::Value {
    let mut last = status(s);
    wait_until(wait, || {
        last = status(s);
        last["transport"] == transport && last["health"]["state"] == "up"
    });
    last
}

#[test]
fn udp_blocked_the_tunnel_runs_over_tcp_and_returns_to_udp() {
    let s = Scenario::gateway_only(GatewayMode::Daemon, &[], false);
    let said = s.ok(&["tcp-fallback", TCP_PORT]);
    assert!(
        said.contains(&format!("{PUBLIC_IP}:{TCP_PORT}")),
        "where it listens: {said}"
    );
    block_udp(&s);
    let joined = Instant::now();
    let s = s.connect_laptop(Laptop::Roamer);
    let status = status_when(&s, "tcp", Duration::from_secs(10));
    assert_eq!(
        status["transport"],
        "tcp",
        "{status}\nroamer:\n{}",
        s.bed.log("roamer.log")
    );
    assert!(
        status["tcp_because"]
            .as_str()
            .is_some_and(|why| why.contains("UDP got no answer")),
        "{status}"
    );
    eprintln!("UDP blocked: up over TCP after {:?}", joined.elapsed());
    let text = String::from_utf8_lossy(&s.roamer(&["status"]).stdout).into_owned();
    assert!(text.contains("over TCP (UDP got no answer"), "{text}");

    // Forwards over TCP: TCP and UDP, with the client's own address.
    s.bed.peer_address_server(&s.bed.roam, 7000);
    s.ok(&["add-port", "7000/tcp+udp"]);
    let addr = format!("{FLOATING_IP}:7000");
    assert_eq!(s.bed.cli.tcp_banner(&addr).as_deref(), Some(CLIENT));
    assert_eq!(
        s.bed.cli.udp_exchange(&addr, "who am i").as_deref(),
        Some(CLIENT)
    );
    // An open connection survives the way back to UDP.
    s.bed.tcp_echo_server(&s.bed.roam, 7);
    s.ok(&["add-port", "7"]);
    s.ok(&["add-port", "22"]);
    let mut echo = s
        .bed
        .cli
        .connect(&format!("{FLOATING_IP}:7"), Duration::from_secs(10))
        .expect("connect to the echo forward");
    let mut line = |text: &str| {
        echo.write_all(format!("{text}\n").as_bytes())
            .expect("write");
        let mut buf = [0u8; 64];
        let n = echo.read(&mut buf).expect("echo");
        String::from_utf8_lossy(&buf[..n]).trim().to_string()
    };
    assert_eq!(line("over tcp"), "over tcp");
    // Another network that blocks UDP too: UDP is tried first, then TCP again.
    let moved = Instant::now();
    s.bed.move_laptop("100.64.0.3");
    let back = forward_back(&s, moved, Duration::from_secs(20));
    eprintln!("a new network without UDP: forward back over TCP after {back:?}");
    assert!(
        back.is_some_and(|d| d < Duration::from_secs(8)),
        "{back:?}\nroamer:\n{}",
        s.bed.log("roamer.log")
    );

    unblock_udp(&s);
    let status = status_when(&s, "udp", Duration::from_secs(45));
    assert_eq!(
        status["transport"],
        "udp",
        "{status}\nroamer:\n{}",
        s.bed.log("roamer.log")
    );
    assert_eq!(line("over udp"), "over udp");
    assert_eq!(s.bed.cli.tcp_banner(&addr).as_deref(), Some(CLIENT));
}

#[test]
fn junk_on_the_tcp_port_costs_a_closed_connection() {
    let s = Scenario::gateway_only(GatewayMode::Daemon, &[], false);
    s.ok(&["tcp-fallback", TCP_PORT]);
    // A port another process has is refused, and nothing changes.
    s.bed.tcp_banner_server(&s.bed.gw, 8443, "nginx");
    let out = s
        .bed
        .roamgw(&roamgw_e2e::binary("roamgw"), &["tcp-fallback", "8443"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("another process has it"),
        "{said}"
    );
    assert!(s.ok(&["tcp-fallback"]).contains(&format!(":{TCP_PORT}")));
    // A forward on the port is refused too.
    let out = s
        .bed
        .roamgw(&roamgw_e2e::binary("roamgw"), &["add-port", TCP_PORT]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("WireGuard-over-TCP port"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let target = format!("{PUBLIC_IP}:{TCP_PORT}");
    // Random bytes (not WireGuard's shape): closed at once.
    let mut junk = s
        .bed
        .cli
        .connect(&target, Duration::from_secs(5))
        .expect("connect");
    junk.write_all(b"\x00\x20GET / HTTP/1.1\r\nHost: x\r\n\r\n  ")
        .expect("write");
    let mut rest = Vec::new();
    let read = junk.read_to_end(&mut rest);
    assert!(
        matches!(read, Ok(0)) || read.is_err(),
        "junk was answered: {read:?} {rest:?}"
    );
    // Idle connections (slow-loris): closed after the handshake limit, nothing sent.
    let idle: Vec<_> = (0..50)
        .map(|_| {
            s.bed
                .cli
                .connect(&target, Duration::from_secs(5))
                .expect("connect")
        })
        .collect();
    let started = Instant::now();
    for mut stream in idle {
        let mut rest = Vec::new();
        let read = stream.read_to_end(&mut rest);
        assert!(rest.is_empty(), "an idle connection got {rest:?}");
        assert!(read.is_ok() || started.elapsed() < Duration::from_secs(8));
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "idle connections stayed open {:?}",
        started.elapsed()
    );
    // The laptop still gets through over TCP.
    block_udp(&s);
    let s = s.connect_laptop(Laptop::Roamer);
    assert_eq!(
        status_when(&s, "tcp", Duration::from_secs(10))["transport"],
        "tcp"
    );
}

#[test]
fn a_stock_wg_quick_laptop_through_roamer_tcp_relay() {
    let s = Scenario::gateway_only(GatewayMode::Daemon, &[], false);
    s.ok(&["tcp-fallback", TCP_PORT]);
    block_udp(&s);
    let roamer = roamgw_e2e::binary("roamer");
    s.bed.spawn(
        &s.bed.roam,
        &[
            roamer.to_str().expect("utf-8"),
            "tcp-relay",
            &format!("{PUBLIC_IP}:{TCP_PORT}"),
        ],
    );
    let config = s
        .ok(&["show-config", "laptop", "--format", "wg-quick"])
        .replace(
            &format!("Endpoint = {PUBLIC_IP}:51820"),
            "Endpoint = 127.0.0.1:51821",
        );
    assert!(config.contains("Endpoint = 127.0.0.1:51821"), "{config}");
    s.bed.wg_quick_up(&s.bed.roam, &s.bed.roam_wg, &config);
    s.bed.tcp_banner_server(&s.bed.roam, 22, "stock");
    s.ok(&["add-port", "22"]);
    let answered = wait_until(Duration::from_secs(15), || {
        // wg-quick's first handshake waits for traffic.
        s.bed.roam.output(&["ping", "-c1", "-W1", "192.168.32.1"]);
        s.bed
            .cli
            .tcp_banner(&format!("{FLOATING_IP}:22"))
            .as_deref()
            == Some("stock")
    });
    assert!(answered, "no forward through the relay");
}

#[test]
fn a_captive_portal_is_named_and_the_tunnel_comes_after_the_login() {
    let s = Scenario::gateway_only(GatewayMode::Daemon, &[], false);
    s.ok(&["tcp-fallback", TCP_PORT]);
    hostile::captive_portal(&s.bed);
    s.start_roamer();
    let mut last = serde_json::Value::Null;
    let named = wait_until(Duration::from_secs(15), || {
        last = status(&s);
        last["health"]["state"] == "portal"
    });
    assert!(
        named && last["health"]["reason"] == hostile::PORTAL_LOGIN,
        "{last}\nroamer:\n{}",
        s.bed.log("roamer.log")
    );
    let text = String::from_utf8_lossy(&s.roamer(&["status"]).stdout).into_owned();
    assert!(
        text.contains(&format!(
            "captive portal: log in at {}",
            hostile::PORTAL_LOGIN
        )),
        "{text}"
    );
    // The user logs in (from the laptop, as a browser would).
    let login = s.bed.roam.output(&[
        "python3",
        "-c",
        &format!(
            "import urllib.request; urllib.request.urlopen('{}', timeout=5)",
            hostile::PORTAL_LOGIN
        ),
    ]);
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    let logged_in = Instant::now();
    s.bed.tcp_banner_server(&s.bed.roam, 22, "roamer");
    s.ok(&["add-port", "22"]);
    let back = forward_back(&s, logged_in, Duration::from_secs(15));
    eprintln!("captive portal: forward works {back:?} after the login");
    assert!(back.is_some(), "roamer:\n{}", s.bed.log("roamer.log"));
}

#[test]
fn walking_into_a_network_without_udp_moves_the_tunnel_to_tcp() {
    let s = Scenario::gateway_only(GatewayMode::Daemon, &[], false);
    s.ok(&["tcp-fallback", TCP_PORT]);
    let s = s.connect_laptop(Laptop::Roamer);
    s.ok(&["add-port", "22"]);
    assert_eq!(
        status_when(&s, "udp", Duration::from_secs(10))["transport"],
        "udp"
    );
    hostile::block_udp(&s.bed);
    let moved = Instant::now();
    s.bed.move_laptop("100.64.0.3");
    let back = forward_back(&s, moved, Duration::from_secs(20));
    eprintln!("walked into a network without UDP: forward over TCP after {back:?}");
    // The goal is 5 s; 2.1-2.3 s here. It once took ~12 s one run in five: data that
    // came just before the change passed for the probe's answer over the new network.
    assert!(
        back.is_some_and(|d| d < Duration::from_secs(5)),
        "{back:?}\nroamer:\n{}\ndaemon:\n{}",
        s.bed.log("roamer.log"),
        s.bed.log("daemon.log")
    );
}

/// Egress `0.0.0.0/0` sends everything of the laptop's through the tunnel, but not the TCP
/// connection that carries the tunnel: marked, it keeps the laptop's own network (unmarked, it
/// was routed into the tunnel it carries, and nothing got through).
#[test]
fn egress_of_everything_still_reaches_the_gateway_over_tcp() {
    let s = Scenario::gateway_only(GatewayMode::Daemon, &[], false);
    s.ok(&["tcp-fallback", TCP_PORT]);
    s.ok(&["egress", "laptop", "0.0.0.0/0"]);
    let s = s.connect_laptop(Laptop::Roamer);
    s.ok(&["add-port", "22"]);
    assert_eq!(
        status_when(&s, "udp", Duration::from_secs(10))["transport"],
        "udp"
    );
    block_udp(&s);
    let moved = Instant::now();
    s.bed.move_laptop("100.64.0.3");
    let back = forward_back(&s, moved, Duration::from_secs(10));
    assert!(
        back.is_some(),
        "{}\nroamer:\n{}",
        s.bed.roam.run(&["ip", "rule"]),
        s.bed.log("roamer.log")
    );
    assert_eq!(status(&s)["transport"], "tcp");
}
