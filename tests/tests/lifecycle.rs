//! A gateway daemon you can leave running: restarts and reboots (remembered endpoints,
//! gateway-initiated handshakes), drift repaired by events while `status` is polled, a control
//! socket that cannot be held hostage, one daemon per config directory, and `down` while the
//! daemon runs.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use roamgw_e2e::{
    binary, rss_kib, wait_until, Backend, GatewayMode, Laptop, Scenario, StatusPoller, Testbed,
    FLOATING_IP,
};

/// The bound for "works again within 1 s" in a test on a noisy machine; the figure itself is
/// measured by bench/restart.sh.
const BOUND: Duration = Duration::from_secs(3);

fn forward() -> String {
    format!("{FLOATING_IP}:22")
}

/// `roamgw run` with the forward 22 to `laptop`, once the daemon has remembered the laptop's
/// endpoint.
fn gateway_with(laptop: Laptop) -> Scenario {
    let s = Scenario::build_with(GatewayMode::Daemon, laptop, &[], false);
    s.forward_22_works();
    s.await_remembered_endpoint();
    s
}

fn check_restart(laptop: Laptop, stop: fn(&mut Scenario), what: &str) {
    let mut s = gateway_with(laptop);
    stop(&mut s);
    let took = s.restart_daemon_until_forward(Duration::from_secs(10));
    assert!(
        took.is_some_and(|t| t <= BOUND),
        "{laptop:?} after {what}: forward back after {took:?} (bound {BOUND:?})\n{}",
        s.bed.log("daemon.log")
    );
    eprintln!("{laptop:?} after {what}: forward back {took:?} after ready");
    assert!(
        s.bed.log("daemon.log").contains("handshakes started"),
        "{}",
        s.bed.log("daemon.log")
    );
}

#[test]
fn stock_laptop_is_back_within_a_second_after_kill_9() {
    check_restart(Laptop::WgQuick, Scenario::kill_daemon, "kill -9");
}

#[test]
fn stock_laptop_is_back_within_a_second_after_sigterm_and_start() {
    check_restart(Laptop::WgQuick, Scenario::stop_daemon, "SIGTERM + start");
}

#[test]
fn stock_laptop_is_back_within_a_second_after_a_reboot() {
    check_restart(
        Laptop::WgQuick,
        Scenario::simulate_reboot,
        "a simulated reboot",
    );
}

#[test]
fn roamer_is_back_within_a_second_after_kill_9_and_a_reboot() {
    check_restart(Laptop::Roamer, Scenario::kill_daemon, "kill -9");
    check_restart(
        Laptop::Roamer,
        Scenario::simulate_reboot,
        "a simulated reboot",
    );
}

fn assert_repaired(s: &Scenario, args: &[&str]) {
    let took = s.time_to_repair(args);
    assert!(
        took.is_some_and(|t| t <= BOUND),
        "{args:?}: forward back after {took:?} (bound {BOUND:?})\n{}",
        s.bed.log("daemon.log")
    );
    eprintln!("{args:?}: repaired in {took:?}");
}

#[test]
fn drift_is_repaired_by_events_while_status_is_polled() {
    let s = gateway_with(Laptop::WgQuick);
    let _poller = StatusPoller::start(&s.bed);
    assert_repaired(&s, &["nft", "flush", "ruleset"]);
    assert_repaired(&s, &["nft", "delete", "table", "inet", "roamgw"]);
    assert_repaired(&s, &["ip", "link", "del", &s.bed.gw_wg]);
    assert_repaired(&s, &["ip", "addr", "flush", "dev", &s.bed.gw_wg]);
    // Our own changes are not drift: no repair logged for them.
    s.ok(&["add-port", "2222:22"]);
    s.ok(&["remove-port", "2222:22"]);
    std::thread::sleep(Duration::from_millis(300));
    let log = s.bed.log("daemon.log");
    let repairs = log.matches("repaired:").count();
    assert_eq!(
        repairs, 4,
        "one repair per drift, none for our own changes:\n{log}"
    );
    let status: serde_json::Value =
        serde_json::from_str(&s.ok(&["status", "--json"])).expect("json");
    assert_eq!(status["in_sync"], true, "{status}");
}

#[test]
fn firewalld_reload_is_repaired_within_a_second_on_the_firewalld_backend() {
    let s = Scenario::gateway_on(GatewayMode::Daemon, Backend::Firewalld, &[], false)
        .connect_laptop(Laptop::WgQuick);
    s.forward_22_works();
    let _poller = StatusPoller::start(&s.bed);
    let fw = s.firewalld.as_ref().expect("firewalld");
    std::thread::sleep(Duration::from_millis(1500));
    let since = Instant::now();
    assert!(fw.cmd(&s.bed.gw, &["--reload"]).status.success());
    let took = s
        .bed
        .time_until_banner(&forward(), "roamer", since, Duration::from_secs(10));
    assert!(
        took.is_some_and(|t| t <= BOUND),
        "firewall-cmd --reload: forward back after {took:?}\n{}",
        s.bed.log("daemon.log")
    );
    // The reload itself leaves our objects in place (they are permanent too): the daemon
    // sees it and finds nothing to repair.
    let seen = wait_until(BOUND, || {
        s.bed
            .log("daemon.log")
            .contains("cause=\"firewalld reloaded\"")
    });
    assert!(
        seen,
        "the reload was not seen:\n{}",
        s.bed.log("daemon.log")
    );
    // `down --purge` while the daemon runs: refused, and says what to do; all still up.
    let out = s.bed.roamgw(&binary("roamgw"), &["down", "--purge"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("systemctl stop roamgw") && stderr.contains("nothing was changed"),
        "{stderr}"
    );
    assert_eq!(s.banner(&forward()).as_deref(), Some("roamer"));
}

#[test]
fn control_socket_cannot_be_held_hostage_and_one_daemon_per_directory() {
    let s = gateway_with(Laptop::WgQuick);
    let b = &s.bed;
    let socket = b.config_dir().join("roamgw.sock");
    b.tcp_banner_server(&b.roam, 4005, "roamer-4005");
    b.tcp_banner_server(&b.roam, 4006, "roamer-4006");

    // How long an add-port takes with nothing in the way.
    let started = Instant::now();
    s.ok(&["add-port", "4006"]);
    let alone = started.elapsed();

    // An idle client, and one sending a 10 MB line.
    let _idle = UnixStream::connect(&socket).expect("idle client");
    let flood_path = socket.clone();
    let flood = std::thread::spawn(move || {
        let mut stream = UnixStream::connect(&flood_path).expect("flood client");
        let line = vec![b'x'; 10 * 1024 * 1024];
        let _ = stream.write_all(&line);
        let _ = stream.write_all(b"\n");
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        reply
    });
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let out = s.ok(&["add-port", "4005"]);
    let contended = started.elapsed();
    assert!(out.contains("live"), "{out}");
    assert!(
        contended < alone + Duration::from_secs(1),
        "add-port took {contended:?} beside an idle client and a 10 MB line ({alone:?} alone)"
    );
    assert_eq!(
        b.cli.tcp_banner(&format!("{FLOATING_IP}:4005")).as_deref(),
        Some("roamer-4005")
    );
    let reply = flood.join().expect("flood thread");
    assert!(reply.contains("larger than 64 KiB"), "{reply:?}");
    let pid = s.daemon.expect("daemon");
    let rss = rss_kib(&pid.to_string());
    assert!(rss < 40 * 1024, "daemon RSS {rss} KiB after the 10 MB line");

    // A second daemon refuses and touches nothing; the first stays reachable.
    let second =
        b.gw.command(
            &b.roamgw_run_command()
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
        .env("DBUS_SYSTEM_BUS_ADDRESS", b.system_bus())
        .output()
        .expect("second roamgw run");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(
        stderr.contains("already running for") && stderr.contains(&format!("(pid {pid})")),
        "{stderr}"
    );
    assert!(socket.exists(), "the second daemon removed the socket");
    assert_eq!(
        b.cli.tcp_banner(&format!("{FLOATING_IP}:4006")).as_deref(),
        Some("roamer-4006")
    );
    let out = s.ok(&["remove-port", "4006"]);
    assert!(out.contains("live"), "{out}");

    // `down` is refused while the daemon runs; `apply` goes through it.
    let out = b.roamgw(&binary("roamgw"), &["down"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("roamgw run (pid {pid})")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = s.ok(&["apply"]);
    assert!(out.contains("by roamgw run"), "{out}");
    assert_eq!(s.banner(&forward()).as_deref(), Some("roamer"));
}

#[test]
fn a_daemon_that_holds_the_directory_but_does_not_answer_is_reported_stuck() {
    let bed = Testbed::new();
    let roamgw = binary("roamgw");
    let init = bed.init_args("external");
    for args in [
        init.iter().map(String::as_str).collect::<Vec<_>>(),
        vec!["add-roamer", "laptop"],
    ] {
        assert!(bed.roamgw(&roamgw, &args).status.success(), "{args:?}");
    }
    // A process holds the daemon's lock (its pid inside) and serves no socket.
    let lock = bed.config_dir().join("roamgw.pid");
    bed.spawn(
        &bed.gw,
        &[
            "sh",
            "-c",
            &format!("echo $$ > {0}; exec flock {0} sleep 60", lock.display()),
        ],
    );
    assert!(wait_until(Duration::from_secs(5), || bed
        .gw
        .output(&["flock", "-n", lock.to_str().expect("utf-8"), "true"])
        .status
        .code()
        == Some(1)));
    let state = bed.config_dir().join("gateway.toml");
    let before = std::fs::read(&state).expect("state");
    for args in [&["add-port", "22"][..], &["apply"], &["down"]] {
        let out = bed.roamgw(&roamgw, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {stderr}");
        assert!(
            stderr.contains("roamgw run (pid ")
                && (stderr.contains("stuck") || stderr.contains("keeps this data plane up")),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(
        std::fs::read(&state).expect("state"),
        before,
        "the state changed"
    );
    assert!(
        !bed.gw
            .output(&["nft", "list", "table", "inet", "roamgw"])
            .status
            .success(),
        "a table was made behind the (stuck) daemon's back"
    );
    let second = bed
        .gw
        .command(
            &bed.roamgw_run_command()
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
        .output()
        .expect("roamgw run");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success() && stderr.contains("already running"),
        "{stderr}"
    );
}

/// A crash right after a stock laptop's first handshake: the daemon records an endpoint the
/// moment its device learns it (it used to look once a second, and a `kill -9` within that
/// second left the laptop unknown to the restarted daemon until the laptop's own retry).
#[test]
fn stock_laptop_is_back_after_a_kill_9_just_after_its_first_handshake() {
    let mut s = Scenario::gateway_only(GatewayMode::Daemon, &[], false);
    s.ok(&["add-port", "22"]);
    s.bed.tcp_banner_server(&s.bed.roam, 22, "roamer");
    let (roam, roam_wg) = (s.bed.roam.clone(), s.bed.roam_wg.clone());
    s.wg_quick_up_from_show_config(&roam, &roam_wg, &["laptop"], "laptop");
    let gw_wg = s.bed.gw_wg.clone();
    let handshake = wait_until(Duration::from_secs(10), || {
        let shown = s.bed.gw.run(&["wg", "show", &gw_wg, "latest-handshakes"]);
        shown.split_whitespace().nth(1).is_some_and(|t| t != "0")
    });
    assert!(handshake, "no handshake:\n{}", s.bed.log("daemon.log"));
    std::thread::sleep(Duration::from_millis(100));
    s.kill_daemon();
    let took = s.restart_daemon_until_forward(Duration::from_secs(10));
    eprintln!("kill -9 0.1 s after the first handshake: forward back {took:?} after ready");
    assert!(
        took.is_some_and(|t| t <= BOUND),
        "forward back after {took:?} (bound {BOUND:?})\n{}",
        s.bed.log("daemon.log")
    );
}
