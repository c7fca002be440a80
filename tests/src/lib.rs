//! The namespace internet roamgw's end-to-end tests run in (see docs/testing.md):
//!
//! ```text
//!  cli 192.0.2.2/.3 ── wan (router + provider 1:1 NAT 203.0.113.50 <-> 10.16.0.5) ── gw 203.0.113.10 + 10.16.0.5
//!                       └── cgn 198.51.100.2 (masquerade) ── roam 100.64.0.2
//! ```
//!
//! Every testbed has its own namespaces and WireGuard interface names (UAPI sockets in
//! /var/run/wireguard are shared by all namespaces), and tears everything down on drop, also
//! when the test panics. Only documentation and shared address ranges are used, and only inside
//! these namespaces. Without root or a needed tool, building a testbed panics: the test fails,
//! it never skips.
//!
//! Modules: `ns.rs` (one namespace: commands, client sockets), `testbed.rs` (the five of them,
//! their links and clean-up), `scenario.rs` (roamgw and a laptop on a testbed, and the
//! life-cycle helpers tests and benchmarks share), `firewalld.rs`, `bench.rs`.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};

pub mod bench;
pub mod browser;
pub mod dualstack;
pub mod firewalld;
pub mod flood;
pub mod hostile;
pub mod mirror;
mod ns;
pub mod pair;
pub mod provider;
mod scenario;
mod testbed;

pub use ns::Ns;
pub use scenario::{Backend, GatewayMode, Laptop, Scenario, StatusPoller};
pub use testbed::Testbed;

pub const CLIENT: &str = "192.0.2.2";
pub const OTHER_CLIENT: &str = "192.0.2.3";
pub const PUBLIC_IP: &str = "203.0.113.10";
pub const FLOATING_IP: &str = "203.0.113.50";
pub const ANCHOR_IP: &str = "10.16.0.5";
/// The droplet's DNS name in tests that name it (through the laptop's hosts file).
pub const GATEWAY_NAME: &str = "gw.roamgw.test";

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// The path of one of the workspace's binaries (`roamgw`, `roamer`), built fresh once per test
/// process with the same profile as the tests, so a test never runs a stale binary.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let exe = std::env::current_exe().expect("executable path");
        // target/<profile>/deps/<test> or target/<profile>/<bin> -> target/<profile>
        let mut profile_dir = exe
            .parent()
            .expect("executable lives in target/<profile>")
            .to_path_buf();
        if profile_dir.ends_with("deps") {
            profile_dir.pop();
        }
        // Built beforehand: in the qemu guest, whose tree is read-only, by the host side before
        // booting; for the demo, by scripts/demo in one build with the demo program.
        if std::env::var_os("ROAMGW_E2E_PREBUILT").is_some() {
            return profile_dir;
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build.args([
            "build",
            "--locked",
            "--bins",
            "-p",
            "roamgw-gateway",
            "-p",
            "roamgw-roamer",
        ]);
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "cargo build of the binaries failed");
        profile_dir
    });
    dir.join(name)
}

/// Tools the testbed needs, with the package that has each.
const TOOLS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("nft", "nftables"),
    ("socat", "socat"),
    ("wg", "wireguard-tools"),
    ("wg-quick", "wireguard-tools"),
    ("conntrack", "conntrack"),
];

fn require_root_and_tools() {
    let euid = nix::unistd::geteuid();
    assert!(
        euid.is_root(),
        "the end-to-end tests need root (network namespaces); run them as root, e.g. `sudo bash scripts/test`"
    );
    for (tool, package) in TOOLS {
        require_tool(tool, package);
    }
}

/// A tool only some tests need: missing, the test fails with the package to install.
pub fn require_tool(tool: &str, package: &str) {
    assert!(
        on_path(tool),
        "`{tool}` is missing: run `bash scripts/install-deps` (package {package})"
    );
}

/// Whether an executable of that name is on PATH.
pub fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false)
}

/// Polls `check` every 20 ms until it holds or `deadline` passes. Never a fixed sleep.
/// The middle value (the upper one of the two middles for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Resident memory of a process, KiB (0 when it is gone).
pub fn rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Adds `forward` to the state file at `path` by editing its text, as a config-management
/// tool (or an admin with an editor) would, behind roamgw's back. The state must hold exactly
/// the forward 22 to laptop.
pub fn add_forward_by_hand(path: &Path, forward: &str) {
    let text = std::fs::read_to_string(path).expect("state");
    let edited = text.replacen(
        "forwards = [\"22/tcp -> laptop\"]",
        &format!("forwards = [\"22/tcp -> laptop\", \"{forward}\"]"),
        1,
    );
    assert_ne!(edited, text, "unexpected state layout:\n{text}");
    std::fs::write(path, edited).expect("write state");
}

/// Boots the qemu guest (tests/guest/run) and runs the ignored test `inner` of the calling
/// test binary inside it, with `env` for the runner; prints the console's last lines and
/// returns whether the runner succeeded, and the console. Needs qemu and friends (fails,
/// naming the package, without them); builds the binaries first (the guest sees the tree
/// read-only).
pub fn run_in_guest(inner: &str, env: &[(&str, &std::ffi::OsStr)]) -> (bool, String) {
    for tool in ["qemu-system-x86_64", "busybox", "cpio", "depmod", "apt-get"] {
        assert!(
            on_path(tool),
            "{tool} is missing: run `bash scripts/install-deps` (the qemu guest needs it)"
        );
    }
    binary("roamgw");
    binary("roamer");
    let exe = std::env::current_exe().expect("test binary");
    let run = Path::new(env!("CARGO_MANIFEST_DIR")).join("guest/run");
    let started = Instant::now();
    let mut command = Command::new(&run);
    command
        .arg(&exe)
        .args(["--ignored", "--exact", inner, "--nocapture"])
        .env("ROAMGW_E2E_PREBUILT", "1");
    for (key, value) in env {
        command.env(key, value);
    }
    let out = command.output().expect("tests/guest/run");
    let console = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = console.lines().collect();
    eprintln!(
        "guest ran for {:?} (exit {:?}); its console, last lines:\n{}\n{}",
        started.elapsed(),
        out.status.code(),
        lines[lines.len().saturating_sub(60)..].join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), console)
}

/// [`run_in_guest`] with systemd as the guest's PID 1 (and the share it needs), for at most
/// `timeout_secs`.
pub fn run_in_systemd_guest(inner: &str, timeout_secs: u32) -> (bool, String) {
    let persist = tempfile::tempdir().expect("persist dir");
    let timeout = timeout_secs.to_string();
    run_in_guest(
        inner,
        &[
            ("ROAMGW_GUEST_INIT", "systemd".as_ref()),
            ("ROAMGW_GUEST_PERSIST", persist.path().as_os_str()),
            ("ROAMGW_GUEST_TIMEOUT", timeout.as_ref()),
        ],
    )
}

/// The guest half of a qemu test refuses to run anywhere else: it changes the machine it runs
/// on (its routes, units, packages). `launcher` is the host test that boots the guest for it.
pub fn assert_in_guest(launcher: &str) {
    assert!(
        std::env::var_os("ROAMGW_IN_GUEST").is_some(),
        "meant for the qemu guest: run {launcher}"
    );
}

/// Runs a command of this machine (the guest's, in its own tests) that must succeed; stdout.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes each `### PATH (MODE[ root:GROUP])` part of a `show-config --format networkd`
/// bundle whose path `wanted` takes at its path (in the guest); returns the paths written.
pub fn install_bundle(bundle: &str, wanted: impl Fn(&str) -> bool) -> Vec<String> {
    let mut paths = Vec::new();
    for part in bundle.split("\n### ").skip(1) {
        let (header, text) = part.split_once('\n').expect("a header line");
        let (path, rest) = header.split_once(" (").expect("path (mode)");
        if !wanted(path) {
            continue;
        }
        let rest = rest.trim_end_matches(')');
        let (mode, group) = match rest.split_once(" root:") {
            Some((mode, group)) => (mode, Some(group)),
            None => (rest, None),
        };
        std::fs::create_dir_all(Path::new(path).parent().expect("dir")).expect("mkdir");
        std::fs::write(path, text).expect("write");
        sh(&["chmod", mode, path]);
        if let Some(group) = group {
            sh(&["chown", &format!("root:{group}"), path]);
        }
        paths.push(path.to_string());
    }
    paths
}

/// The last lines of a unit's journal (in the guest booted with systemd), for a failure's
/// message.
pub fn journal(unit: &str) -> String {
    let out = Command::new("journalctl")
        .args(["-u", unit, "--no-pager", "-n", "60"])
        .output()
        .expect("journalctl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn wait_until(deadline: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if check() {
            return true;
        }
        if start.elapsed() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
