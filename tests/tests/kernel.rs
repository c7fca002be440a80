//! Kernel WireGuard on both ends. This machine's kernel has no WireGuard, so the host-side test
//! boots Debian's kernel in a qemu guest (tests/guest/run) that shares the host's userland and
//! runs the guest-side test there: the same testbed, `roamgw run --wireguard kernel` on the
//! droplet and `roamer run --wireguard kernel` on the laptop.

use std::time::{Duration, Instant};

use roamgw_e2e::{wait_until, GatewayMode, Laptop, Scenario, FLOATING_IP};

const GUEST_TEST: &str = "guest_kernel_wireguard";

#[test]
fn kernel_wireguard_in_a_qemu_guest() {
    let (ok, console) = roamgw_e2e::run_in_guest(GUEST_TEST, &[]);
    assert!(
        ok && console.contains("test result: ok. 1 passed"),
        "the kernel-path test failed in the guest:\n{console}"
    );
}

fn is_kernel_wireguard(ns: &roamgw_e2e::Ns, interface: &str) -> bool {
    ns.run(&["ip", "-d", "link", "show", interface])
        .contains("wireguard")
}

#[test]
#[ignore = "runs inside the qemu guest that kernel_wireguard_in_a_qemu_guest boots"]
fn guest_kernel_wireguard() {
    roamgw_e2e::assert_in_guest("kernel_wireguard_in_a_qemu_guest");
    let mut s = Scenario::build_with(GatewayMode::KernelDaemon, Laptop::KernelRoamer, &[], false);
    assert!(
        is_kernel_wireguard(&s.bed.gw, &s.bed.gw_wg),
        "gateway: not kernel WireGuard"
    );
    assert!(
        is_kernel_wireguard(&s.bed.roam, &s.bed.roam_wg),
        "laptop: not kernel WireGuard"
    );
    s.forward_22_works();
    // Stock `wg show` reads the kernel device directly: the learned endpoint is the CGNAT's.
    let show = s.bed.gw.run(&["wg", "show", &s.bed.gw_wg, "endpoints"]);
    assert!(show.contains("198.51.100.2:"), "{show}");
    let status = s.ok(&["status"]);
    assert!(status.contains("198.51.100.2:"), "{status}");
    assert!(status.contains("present, kernel WireGuard"), "{status}");
    // roamer status reads the kernel device over netlink (there is no UAPI socket).
    let laptop: serde_json::Value =
        serde_json::from_slice(&s.roamer(&["status", "--json"]).stdout).expect("roamer status");
    assert_eq!(laptop["wireguard"], "kernel", "{laptop}");
    assert!(laptop["last_handshake_secs"].is_u64(), "{laptop}");
    assert!(laptop["rx_bytes"].as_u64().unwrap_or(0) > 0, "{laptop}");

    // Roaming works the same on the kernel device.
    let moved = Instant::now();
    s.bed.move_laptop("100.64.0.3");
    let took = s.bed.time_until_banner(
        &format!("{FLOATING_IP}:22"),
        "roamer",
        moved,
        Duration::from_secs(20),
    );
    eprintln!("kernel: address change recovered after {took:?}");
    // Whether it roams, not how fast: the guest is emulated (TCG, no KVM), and the same roam
    // took 1.77-5.19 s in four CI runs (0.33 s with userspace WireGuard on the host; the
    // figures are docs/benchmarks.md's).
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(10)),
        "{took:?}\n{}",
        s.bed.log("roamer.log")
    );

    // kill -9 leaves the kernel interface behind; the restarted daemon takes it over. The
    // kernel device is read once a second, so an endpoint learned within that second may be
    // lost to kill -9 (docs/operations.md): the kill waits until the roam is remembered.
    let learned = s.bed.gw.run(&["wg", "show", &s.bed.gw_wg, "endpoints"]);
    let learned = learned
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let file = s
        .bed
        .state_dir()
        .join(format!("{}.endpoints.json", s.bed.gw_wg));
    let remembered = wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&file).is_ok_and(|t| t.contains(&learned))
    });
    assert!(
        remembered,
        "{learned} not remembered:\n{}",
        s.bed.log("daemon.log")
    );
    let pid = s.daemon.take().expect("daemon");
    s.bed.gw.run(&["kill", "-KILL", &pid.to_string()]);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        is_kernel_wireguard(&s.bed.gw, &s.bed.gw_wg),
        "the kernel link should outlive the process"
    );
    let restarted = Instant::now();
    s.start_daemon();
    let took = s.bed.time_until_banner(
        &format!("{FLOATING_IP}:22"),
        "roamer",
        restarted,
        Duration::from_secs(30),
    );
    eprintln!("kernel: restart after kill -9 recovered after {took:?}");
    assert!(
        took.is_some(),
        "no forward after the restart:\n{}\nroamer:\n{}\ngateway's wg show:\n{}\nlaptop's wg show:\n{}",
        s.bed.log("daemon.log"),
        s.bed.log("roamer.log"),
        s.bed.gw.run(&["wg", "show", &s.bed.gw_wg]),
        s.bed.roam.run(&["wg", "show", &s.bed.roam_wg]),
    );

    // SIGTERM: the interface and the table go; `roamer down` takes the laptop's interface.
    s.stop_daemon();
    let gw = s.bed.gw.clone();
    let gw_wg = s.bed.gw_wg.clone();
    assert!(wait_until(Duration::from_secs(5), || !gw
        .output(&["ip", "link", "show", &gw_wg])
        .status
        .success()));
    s.roamer_down();
}
