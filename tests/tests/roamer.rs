//! The product with our two binaries only: `roamgw run` on the droplet, `roamer run` on the
//! laptop behind the CGNAT.

use std::time::{Duration, Instant};

use roamgw_e2e::{wait_until, GatewayMode, Laptop, Scenario, FLOATING_IP, PUBLIC_IP};

#[test]
fn roamgw_and_roamer_only() {
    let started = Instant::now();
    let s = Scenario::build_with(GatewayMode::Daemon, Laptop::Roamer, &[], false);
    eprintln!(
        "tunnel up {:?} after the testbed started",
        started.elapsed()
    );
    s.ok(&["add-port", "22"]);
    assert_eq!(
        s.banner(&format!("{FLOATING_IP}:22")).as_deref(),
        Some("roamer")
    );
    assert_eq!(
        s.banner(&format!("{PUBLIC_IP}:22")).as_deref(),
        Some("droplet")
    );
    // Only the tunnel subnet goes through the tunnel: the laptop's default route is untouched.
    let route = s.bed.roam.run(&["ip", "route", "get", "198.51.100.1"]);
    assert!(route.contains("dev eth0"), "{route}");
    // SIGTERM takes the laptop's interface down.
    let roam = s.bed.roam.clone();
    roam.run(&["pkill", "-TERM", "-f", "roamer run"]);
    let gone = wait_until(Duration::from_secs(5), || {
        !roam
            .output(&["ip", "link", "show", &s.bed.roam_wg])
            .status
            .success()
    });
    assert!(
        gone,
        "roamer left its interface:\n{}",
        s.bed.log("roamer.log")
    );
}
