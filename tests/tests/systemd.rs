//! The shipped units (contrib/roamgw.service, contrib/roamer.service) under a real systemd as
//! PID 1: the host-side test boots the qemu guest with systemd (tests/guest/run,
//! ROAMGW_GUEST_INIT=systemd) on Debian's kernel, so WireGuard is the kernel's on both ends.
//! The droplet is the guest itself (its root network namespace); the rest of the namespace
//! internet is built around it. The guest reboots once: /etc/roamgw, /var/lib/roamgw and
//! /etc/systemd/system live on a share that survives it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use roamgw_e2e::{binary, journal, sh, wait_until, Testbed, FLOATING_IP, PUBLIC_IP};

const GUEST_TEST: &str = "guest_systemd_units";
const CONFIG_DIR: &str = "/etc/roamgw";
/// `systemd-analyze security` exposure of the units before this test existed (4.4 and 4.0):
/// hardening must not get worse.
const ROAMGW_EXPOSURE: f64 = 4.4;
const ROAMER_EXPOSURE: f64 = 4.0;
/// "Works again within a second of ready", with room for a noisy, emulated machine.
const BOUND: Duration = Duration::from_secs(3);

#[test]
fn systemd_units_in_a_qemu_guest() {
    assert!(
        Path::new("/lib/systemd/systemd").exists(),
        "systemd is missing: run `bash scripts/install-deps` (package systemd)"
    );
    let (ok, console) = roamgw_e2e::run_in_systemd_guest(GUEST_TEST, 400);
    assert!(
        ok && console.contains("guest: rebooting") && console.contains("test result: ok. 1 passed"),
        "the systemd test failed in the guest:\n{console}"
    );
}

fn roamgw(args: &[&str]) -> String {
    let roamgw = binary("roamgw");
    let mut full = vec![roamgw.to_str().expect("utf-8"), "--config-dir", CONFIG_DIR];
    full.extend_from_slice(args);
    sh(&full)
}

fn main_pid(unit: &str) -> u32 {
    sh(&["systemctl", "show", "-p", "MainPID", "--value", unit])
        .trim()
        .parse()
        .unwrap_or(0)
}

/// The daemon serves with its data plane up.
fn ready() -> bool {
    let Ok(out) = Command::new(binary("roamgw"))
        .args(["--config-dir", CONFIG_DIR, "status", "--json"])
        .output()
    else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .is_ok_and(|v| v["data_plane_up"] == true && v["daemon_running"] == true)
}

fn install(binary_name: &str, unit: &str) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::copy(binary(binary_name), format!("/usr/local/bin/{binary_name}"))
        .expect("install binary");
    std::fs::copy(
        repo.join("contrib").join(unit),
        Path::new("/etc/systemd/system").join(unit),
    )
    .expect("install unit");
    sh(&["systemctl", "daemon-reload"]);
}

fn exposure(unit: &str) -> f64 {
    let text = sh(&["systemd-analyze", "security", "--no-pager", unit]);
    text.lines()
        .find_map(|l| l.split("exposure level for").nth(1))
        .and_then(|rest| rest.split(':').nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"))
}

/// The laptop: stock wg-quick (kernel WireGuard in the guest) with the config roamgw prints.
fn stock_laptop(bed: &Testbed) {
    let config = roamgw(&["show-config", "laptop", "--format", "wg-quick"]);
    bed.wg_quick_up(&bed.roam, &bed.roam_wg, &config);
    bed.tcp_banner_server(&bed.roam, 22, "roamer");
    bed.tcp_banner_server(&bed.gw, 22, "droplet");
}

fn forward_answers_within(bed: &Testbed, since: Instant, deadline: Duration) -> Option<Duration> {
    bed.time_until_banner(&format!("{FLOATING_IP}:22"), "roamer", since, deadline)
}

/// Copies the regular files of `from` (recursively) to `to`, modes kept; sockets and the like
/// are not copied.
fn copy_files(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir").flatten() {
        let kind = entry.file_type().expect("file type");
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_files(&entry.path(), &target);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn phase_file() -> PathBuf {
    PathBuf::from("/roamgw-persist/phase")
}

#[test]
#[ignore = "runs inside the qemu guest that systemd_units_in_a_qemu_guest boots"]
fn guest_systemd_units() {
    assert!(
        std::env::var_os("ROAMGW_IN_GUEST").is_some() && Path::new("/roamgw-persist").exists(),
        "meant for the qemu guest with systemd: run systemd_units_in_a_qemu_guest"
    );
    match std::fs::read_to_string(phase_file()).as_deref() {
        Ok("after reboot") => after_reboot(),
        _ => before_reboot(),
    }
}

fn before_reboot() {
    let bed = Testbed::with_gateway_in_root_namespace();
    let init = bed.init_args("kernel");
    roamgw(&init.iter().map(String::as_str).collect::<Vec<_>>());
    roamgw(&["add-roamer", "laptop"]);
    roamgw(&["add-port", "22"]);

    // enable --now: the forward works.
    install("roamgw", "roamgw.service");
    sh(&["systemctl", "enable", "--now", "roamgw"]);
    assert!(
        wait_until(Duration::from_secs(30), ready),
        "roamgw.service did not come up:\n{}",
        journal("roamgw")
    );
    stock_laptop(&bed);
    assert!(
        forward_answers_within(&bed, Instant::now(), Duration::from_secs(10)).is_some(),
        "no forward through roamgw.service:\n{}",
        journal("roamgw")
    );
    assert_eq!(
        bed.cli.tcp_banner(&format!("{PUBLIC_IP}:22")).as_deref(),
        Some("droplet")
    );
    let state_dir = Path::new("/var/lib/roamgw");
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_dir(state_dir)
            .is_ok_and(|mut d| d.next().is_some())),
        "StateDirectory= holds no remembered endpoints:\n{}",
        journal("roamgw")
    );

    // reload re-reads the state.
    bed.tcp_banner_server(&bed.roam, 9090, "roamer-9090");
    let path = Path::new(CONFIG_DIR).join("gateway.toml");
    roamgw_e2e::add_forward_by_hand(&path, "9090/tcp -> laptop");
    sh(&["systemctl", "reload", "roamgw"]);
    assert!(
        wait_until(Duration::from_secs(10), || bed
            .cli
            .tcp_banner(&format!("{FLOATING_IP}:9090"))
            .as_deref()
            == Some("roamer-9090")),
        "systemctl reload did not apply the edited state:\n{}",
        journal("roamgw")
    );

    // kill -9 of the main process: Restart= brings it back, and the stock laptop's forward
    // works within a second of it being ready.
    let old = main_pid("roamgw");
    sh(&["kill", "-9", &old.to_string()]);
    let back = wait_until(Duration::from_secs(30), || {
        let pid = main_pid("roamgw");
        pid != 0 && pid != old && ready()
    });
    assert!(
        back,
        "Restart= did not bring roamgw back:\n{}",
        journal("roamgw")
    );
    let took = forward_answers_within(&bed, Instant::now(), Duration::from_secs(10));
    eprintln!("systemd: forward back {took:?} after the restarted roamgw.service was ready");
    assert!(
        took.is_some_and(|t| t <= BOUND),
        "after kill -9 + Restart=: {took:?}\n{}",
        journal("roamgw")
    );

    let score = exposure("roamgw.service");
    eprintln!("systemd-analyze security roamgw.service: {score}");
    assert!(score <= ROAMGW_EXPOSURE, "roamgw.service exposure {score}");

    // roamer.service on the laptop side (its network namespace, through a drop-in).
    bed.wg_quick_down(&bed.roam, &bed.roam_wg);
    let config = roamgw(&["show-config", "laptop", "--format", "roamer"]).replace(
        &format!("interface = \"{}\"", bed.gw_wg),
        &format!("interface = \"{}\"", bed.roam_wg),
    );
    let roamer_config = Path::new(CONFIG_DIR).join("roamer.toml");
    std::fs::write(&roamer_config, config).expect("roamer.toml");
    std::fs::set_permissions(
        &roamer_config,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    install("roamer", "roamer.service");
    let dropin = Path::new("/etc/systemd/system/roamer.service.d");
    std::fs::create_dir_all(dropin).expect("drop-in dir");
    std::fs::write(
        dropin.join("netns.conf"),
        format!(
            "# The test's laptop is a network namespace.\n[Service]\nNetworkNamespacePath=/run/netns/{}\n",
            bed.roam.name
        ),
    )
    .expect("drop-in");
    sh(&["systemctl", "daemon-reload"]);
    sh(&["systemctl", "start", "roamer"]);
    assert!(
        forward_answers_within(&bed, Instant::now(), Duration::from_secs(15)).is_some(),
        "no forward with roamer.service:\n{}\n{}",
        journal("roamer"),
        journal("roamgw")
    );
    let score = exposure("roamer.service");
    eprintln!("systemd-analyze security roamer.service: {score}");
    assert!(score <= ROAMER_EXPOSURE, "roamer.service exposure {score}");
    sh(&["systemctl", "stop", "roamer"]);
    assert!(
        !bed.roam
            .output(&["ip", "link", "show", &bed.roam_wg])
            .status
            .success(),
        "systemctl stop roamer left the interface"
    );

    // Reboot: roamgw.service is enabled; nothing else is done by hand afterwards. (What a
    // disk would keep of /etc/roamgw goes to the share: 9p cannot hold its socket.)
    copy_files(
        Path::new(CONFIG_DIR),
        Path::new("/roamgw-persist/etc-roamgw"),
    );
    std::fs::write(phase_file(), "after reboot").expect("phase");
    std::fs::write("/roamgw-persist/reboot-requested", "").expect("reboot request");
}

fn after_reboot() {
    // Enabled, so started at boot, before this test built the network around it.
    assert!(
        wait_until(Duration::from_secs(30), ready),
        "roamgw.service did not start at boot:\n{}",
        journal("roamgw")
    );
    let bed = Testbed::with_gateway_in_root_namespace();
    stock_laptop(&bed);
    let took = forward_answers_within(&bed, Instant::now(), Duration::from_secs(15));
    eprintln!("systemd: forward after the reboot {took:?} after the network was up");
    assert!(
        took.is_some(),
        "no forward after the reboot:\n{}",
        journal("roamgw")
    );

    // stop: table and interface gone.
    let status: serde_json::Value =
        serde_json::from_str(&roamgw(&["status", "--json"])).expect("status json");
    let interface = status["interface"].as_str().expect("interface").to_string();
    sh(&["systemctl", "stop", "roamgw"]);
    assert!(
        !bed.gw
            .output(&["nft", "list", "table", "inet", "roamgw"])
            .status
            .success(),
        "systemctl stop left table inet roamgw"
    );
    assert!(
        !bed.gw
            .output(&["ip", "link", "show", &interface])
            .status
            .success(),
        "systemctl stop left the interface {interface}"
    );
}
