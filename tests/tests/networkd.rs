//! The laptop on systemd-networkd (issue 30): `roamgw show-config laptop --format networkd`
//! written where it says, and the real systemd-networkd of the qemu guest (systemd as PID 1,
//! kernel WireGuard) brings the tunnel up. The laptop is the guest itself (its root network
//! namespace); the droplet and the rest of the namespace internet are built around it. The
//! forward works and the laptop sees the client's own address over TCP and UDP (a server
//! bound to 0.0.0.0: the unit the bundle ships loads the UDP reply table); `networkctl
//! reload` after an edit keeps it working, and networkd's ManageForeignRoutingPolicyRules=
//! removes a foreign rule but never the reply rules, which are its own.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use roamgw_e2e::{install_bundle, journal, sh, wait_until, Scenario, Testbed, CLIENT, FLOATING_IP};

const GUEST_TEST: &str = "guest_networkd";
const PORT: u16 = 7000;

#[test]
fn networkd_laptop_in_a_qemu_guest() {
    assert!(
        Path::new("/lib/systemd/systemd-networkd").exists(),
        "systemd-networkd is missing: run `bash scripts/install-deps` (package systemd)"
    );
    let (ok, console) = roamgw_e2e::run_in_systemd_guest(GUEST_TEST, 300);
    assert!(
        ok && console.contains("test result: ok. 1 passed"),
        "the networkd test failed in the guest:\n{console}"
    );
}

/// What the laptop's servers saw of a TCP connection and a UDP datagram from the client.
fn seen(bed: &Testbed) -> (Option<String>, Option<String>) {
    bed.seen_from_client(&format!("{FLOATING_IP}:{PORT}"))
}

#[test]
#[ignore = "runs inside the qemu guest that networkd_laptop_in_a_qemu_guest boots"]
fn guest_networkd() {
    roamgw_e2e::assert_in_guest("networkd_laptop_in_a_qemu_guest");
    let s = Scenario::laptop_is_this_machine();
    let bundle = s.ok(&["show-config", "laptop", "--format", "networkd"]);
    let interface = s.bed.gw_wg.clone();
    let paths = install_bundle(&bundle, |_| true);
    assert_eq!(paths.len(), 4, "netdev, network, unit, key:\n{bundle}");
    // The shared tree has no udev, and networkd waits for udev to have seen a link unless
    // /sys is read-only (as in a container, where it runs without udev): a drop-in says so.
    let drop_in = Path::new("/run/systemd/system/systemd-networkd.service.d");
    std::fs::create_dir_all(drop_in).expect("drop-in dir");
    std::fs::write(
        drop_in.join("no-udev.conf"),
        "[Service]\nBindReadOnlyPaths=/sys\n",
    )
    .expect("drop-in");
    sh(&["systemctl", "daemon-reload"]);
    sh(&["systemctl", "start", "dbus", "systemd-networkd"]);
    sh(&["networkctl", "reload"]);
    let configured = wait_until(Duration::from_secs(20), || {
        Command::new("networkctl")
            .args(["status", &interface])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("configured"))
    });
    assert!(
        configured,
        "networkd did not configure {interface}:\n{}",
        journal("systemd-networkd")
    );
    sh(&[
        "systemctl",
        "start",
        &format!("roamgw-udp-replies@{interface}"),
    ]);
    s.bed.peer_address_server(&s.bed.roam, PORT);
    s.ok(&["add-port", &format!("{PORT}/tcp+udp")]);
    let client = Some(CLIENT.to_string());
    let kept = wait_until(Duration::from_secs(15), || seen(&s.bed).0 == client);
    assert!(
        kept,
        "no forward through networkd's tunnel:\n{}\n{}",
        sh(&["wg", "show"]),
        journal("systemd-networkd")
    );
    assert_eq!(
        seen(&s.bed),
        (client.clone(), client.clone()),
        "the client's own address"
    );

    // An edit and `networkctl reload`; a foreign rule networkd removes, ours it keeps.
    let network = paths
        .iter()
        .find(|p| p.ends_with(".network"))
        .expect("network file");
    let edited =
        std::fs::read_to_string(network).expect("read") + "\n[Link]\nRequiredForOnline=no\n";
    std::fs::write(network, edited).expect("edit");
    sh(&[
        "ip",
        "rule",
        "add",
        "from",
        "198.18.0.1",
        "lookup",
        "1234",
        "priority",
        "9000",
    ]);
    sh(&["networkctl", "reload"]);
    sh(&["networkctl", "reconfigure", &interface]);
    let foreign_gone = wait_until(Duration::from_secs(10), || {
        !sh(&["ip", "rule", "show"]).contains("198.18.0.1")
    });
    let rules = sh(&["ip", "rule", "show"]);
    assert!(
        foreign_gone,
        "networkd left a foreign rule (ManageForeignRoutingPolicyRules=):\n{rules}"
    );
    let table = roamgw_common::replies::table(&interface.parse().expect("name")).to_string();
    assert!(
        rules.contains(&format!("from 192.168.32.2 lookup {table}")),
        "the reply rule is gone:\n{rules}"
    );
    let back = wait_until(Duration::from_secs(15), || {
        seen(&s.bed) == (client.clone(), client.clone())
    });
    assert!(
        back,
        "no forward after networkctl reload:\n{}",
        journal("systemd-networkd")
    );
}
