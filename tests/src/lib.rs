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
pub mod firewalld;

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
        // In the qemu guest the tree is read-only: the host side built them before booting.
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
    ("wireguard-go", "wireguard-go"),
    ("conntrack", "conntrack"),
];

fn require_root_and_tools() {
    let euid = nix::unistd::geteuid();
    assert!(
        euid.is_root(),
        "the end-to-end tests need root (network namespaces); run them as root, e.g. `sudo bash scripts/test`"
    );
    for (tool, package) in TOOLS {
        assert!(
            on_path(tool),
            "`{tool}` is missing: run `bash scripts/install-deps` (package {package})"
        );
    }
}

/// Whether an executable of that name is on PATH.
pub fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false)
}

/// One network namespace of a testbed.
#[derive(Debug, Clone)]
pub struct Ns {
    pub name: String,
}

impl Ns {
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).args(args);
        cmd
    }

    /// Runs a command in the namespace; returns its output whatever the exit status.
    pub fn output(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {args:?} in {}: {e}", self.name))
    }

    /// Runs a command that must succeed; returns stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "in {}: {args:?} failed: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command with standard input.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
        if let Some(mut pipe) = child.stdin.take() {
            let _ = pipe.write_all(stdin.as_bytes());
        }
        child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// Runs `f` on a thread that has joined this namespace. Sockets it creates stay in the
    /// namespace wherever they are used afterwards.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            setns(file, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {path}: {e}"));
            f()
        })
        .join()
        .unwrap_or_else(|_| panic!("thread in {} panicked", self.name))
    }

    /// A TCP connection from this namespace, or the error (refused, timed out).
    pub fn connect(&self, addr: &str, timeout: Duration) -> std::io::Result<TcpStream> {
        let addr: SocketAddr = addr.parse().unwrap_or_else(|e| panic!("{addr}: {e}"));
        self.enter(move || {
            let stream = TcpStream::connect_timeout(&addr, timeout)?;
            stream.set_read_timeout(Some(timeout))?;
            stream.set_write_timeout(Some(timeout))?;
            Ok(stream)
        })
    }

    /// Reads the banner a TCP server sends on connect; `None` when nothing arrives in time.
    pub fn tcp_banner(&self, addr: &str) -> Option<String> {
        let mut stream = self.connect(addr, Duration::from_secs(2)).ok()?;
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        (!text.is_empty()).then(|| text.trim().to_string())
    }

    /// Like [`Ns::tcp_banner`], from a given source address of this namespace (via socat).
    pub fn tcp_banner_from(&self, source: &str, addr: &str) -> Option<String> {
        let out = self.output(&[
            "socat",
            "-T2",
            "-u",
            &format!("TCP:{addr},bind={source},connect-timeout=2"),
            "-",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !text.is_empty()).then_some(text)
    }

    /// Sends one UDP datagram and returns the first reply, if any arrives within 2 s.
    pub fn udp_exchange(&self, addr: &str, payload: &str) -> Option<String> {
        let addr: SocketAddr = addr.parse().unwrap_or_else(|e| panic!("{addr}: {e}"));
        let payload = payload.to_string();
        self.enter(move || {
            let mut buf = [0u8; 1500];
            // UDP: a client sends again when nothing comes back (4 tries, ~3 s in all), each
            // time from a new port, so one lost datagram cannot pin the later ones to the same
            // conntrack entry.
            for attempt in 1..=4 {
                let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
                socket
                    .set_read_timeout(Some(Duration::from_millis(700)))
                    .ok()?;
                socket.send_to(payload.as_bytes(), addr).ok()?;
                if let Ok((n, _)) = socket.recv_from(&mut buf) {
                    if attempt > 1 {
                        eprintln!("udp_exchange {addr}: answered on try {attempt}");
                    }
                    return Some(String::from_utf8_lossy(&buf[..n]).trim().to_string());
                }
            }
            None
        })
    }
}

/// The five namespaces, the processes started in them, and the files they use.
pub struct Testbed {
    pub id: String,
    pub cli: Ns,
    pub wan: Ns,
    pub gw: Ns,
    pub cgn: Ns,
    pub roam: Ns,
    /// WireGuard interface names, unique on this machine.
    pub gw_wg: String,
    pub roam_wg: String,
    pub dir: tempfile::TempDir,
    /// The gateway's "namespace" is this machine's own (a handle on PID 1's), for services
    /// that systemd starts (the qemu guest's systemd test).
    gw_is_root: bool,
    children: Mutex<Vec<Child>>,
    /// The D-Bus "system bus" roamgw and the daemon see: a dead address unless the test
    /// started firewalld on a private bus, so no test ever reaches this machine's own bus
    /// (and a firewalld on it).
    system_bus: Mutex<String>,
}

/// Where tests point DBUS_SYSTEM_BUS_ADDRESS when they run no firewalld.
const NO_SYSTEM_BUS: &str = "unix:path=/nonexistent/roamgw-tests-use-no-system-bus";

impl Testbed {
    pub fn new() -> Self {
        Self::create(false)
    }

    /// A testbed whose droplet is this machine itself (its root network namespace, named
    /// like the others through `ip netns attach`), so that services started by the machine's
    /// systemd are the droplet's. Only for a machine of the test's own: the qemu guest.
    pub fn with_gateway_in_root_namespace() -> Self {
        Self::create(true)
    }

    fn create(gw_is_root: bool) -> Self {
        require_root_and_tools();
        let n = NEXT_ID.fetch_add(1, Ordering::SeqCst);
        // pid modulo keeps names short (interface names have 15 characters) and apart across runs.
        let id = format!("{}{}", std::process::id() % 10_000, n);
        let ns = |role: &str| Ns {
            name: format!("rg{id}-{role}"),
        };
        let bed = Testbed {
            cli: ns("cli"),
            wan: ns("wan"),
            gw: ns("gw"),
            cgn: ns("cgn"),
            roam: ns("roam"),
            gw_wg: format!("rg{id}g"),
            roam_wg: format!("rg{id}r"),
            id,
            dir: tempfile::tempdir().expect("tempdir"),
            gw_is_root,
            children: Mutex::new(Vec::new()),
            system_bus: Mutex::new(NO_SYSTEM_BUS.to_string()),
        };
        bed.build();
        bed
    }

    fn all(&self) -> [&Ns; 5] {
        [&self.cli, &self.wan, &self.gw, &self.cgn, &self.roam]
    }

    fn build(&self) {
        for ns in self.all() {
            let out = if self.gw_is_root && ns.name == self.gw.name {
                Command::new("ip")
                    .args(["netns", "attach", &ns.name, "1"])
                    .output()
                    .expect("ip netns attach")
            } else {
                Command::new("ip")
                    .args(["netns", "add", &ns.name])
                    .output()
                    .expect("ip netns add")
            };
            assert!(
                out.status.success(),
                "ip netns add {}: {}",
                ns.name,
                String::from_utf8_lossy(&out.stderr)
            );
            ns.run(&["ip", "link", "set", "lo", "up"]);
        }
        // veth pairs, created from inside wan/cgn so no interface ever exists in the host namespace.
        let link = |a: &Ns, a_if: &str, b: &Ns, b_if: &str| {
            a.run(&[
                "ip", "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name,
            ]);
            a.run(&["ip", "link", "set", a_if, "up"]);
            b.run(&["ip", "link", "set", b_if, "up"]);
        };
        link(&self.wan, "to-cli", &self.cli, "eth0");
        link(&self.wan, "to-gw", &self.gw, "eth0");
        link(&self.wan, "to-cgn", &self.cgn, "eth0");
        link(&self.cgn, "to-roam", &self.roam, "eth0");

        self.cli
            .run(&["ip", "addr", "add", "192.0.2.2/24", "dev", "eth0"]);
        self.cli
            .run(&["ip", "addr", "add", "192.0.2.3/24", "dev", "eth0"]);
        self.cli
            .run(&["ip", "route", "add", "default", "via", "192.0.2.1"]);

        self.wan
            .run(&["ip", "addr", "add", "192.0.2.1/24", "dev", "to-cli"]);
        self.wan
            .run(&["ip", "addr", "add", "203.0.113.1/24", "dev", "to-gw"]);
        self.wan
            .run(&["ip", "addr", "add", "198.51.100.1/24", "dev", "to-cgn"]);
        self.wan
            .run(&["ip", "route", "add", "10.16.0.0/16", "via", PUBLIC_IP]);
        self.wan.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        // The cloud provider's 1:1 NAT: the droplet never sees the floating IP.
        self.wan.run_checked_stdin(
            &["nft", "-f", "-"],
            &format!(
                "table ip provider {{\n\
                 chain pre {{ type nat hook prerouting priority dstnat; ip daddr {FLOATING_IP} dnat to {ANCHOR_IP}; }}\n\
                 chain post {{ type nat hook postrouting priority srcnat; ip saddr {ANCHOR_IP} snat to {FLOATING_IP}; }}\n\
                 }}\n"
            ),
        );

        self.gw.run(&[
            "ip",
            "addr",
            "add",
            &format!("{PUBLIC_IP}/24"),
            "dev",
            "eth0",
        ]);
        self.gw.run(&[
            "ip",
            "addr",
            "add",
            &format!("{ANCHOR_IP}/16"),
            "dev",
            "eth0",
        ]);
        self.gw
            .run(&["ip", "route", "add", "default", "via", "203.0.113.1"]);

        self.cgn
            .run(&["ip", "addr", "add", "198.51.100.2/24", "dev", "eth0"]);
        self.cgn
            .run(&["ip", "addr", "add", "100.64.0.1/24", "dev", "to-roam"]);
        self.cgn
            .run(&["ip", "route", "add", "default", "via", "198.51.100.1"]);
        self.cgn.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        self.cgn.run_checked_stdin(
            &["nft", "-f", "-"],
            "table ip cgnat {\n chain post { type nat hook postrouting priority srcnat; oifname \"eth0\" masquerade random; }\n}\n",
        );

        self.roam
            .run(&["ip", "addr", "add", "100.64.0.2/24", "dev", "eth0"]);
        self.roam
            .run(&["ip", "route", "add", "default", "via", "100.64.0.1"]);
    }

    /// Starts a long-running process in a namespace; it is killed when the testbed drops.
    pub fn spawn(&self, ns: &Ns, args: &[&str]) {
        let child = ns
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {args:?}: {e}"));
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(child);
    }

    /// Starts a long-running process with stdout/stderr into `log` (inside the temp dir); returns
    /// its pid. Killed when the testbed drops.
    pub fn spawn_logged(&self, ns: &Ns, args: &[&str], log: &str) -> u32 {
        let file = File::create(self.dir.path().join(log)).expect("log file");
        let child = ns
            .command(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", self.system_bus())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {args:?}: {e}"));
        let pid = child.id();
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(child);
        pid
    }

    /// The contents of a log written by [`Testbed::spawn_logged`].
    pub fn log(&self, log: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(log)).unwrap_or_default()
    }

    /// A TCP server that sends `banner` to every connection.
    pub fn tcp_banner_server(&self, ns: &Ns, port: u16, banner: &str) {
        self.spawn(
            ns,
            &[
                "socat",
                &format!("TCP-LISTEN:{port},fork,reuseaddr"),
                &format!("SYSTEM:echo {banner}"),
            ],
        );
        wait_for_listener(ns, port, "tcp");
    }

    /// A TCP echo server.
    pub fn tcp_echo_server(&self, ns: &Ns, port: u16) {
        self.spawn(
            ns,
            &[
                "socat",
                &format!("TCP-LISTEN:{port},fork,reuseaddr"),
                "EXEC:cat",
            ],
        );
        wait_for_listener(ns, port, "tcp");
    }

    /// A UDP server that answers every datagram with `banner`.
    pub fn udp_banner_server(&self, ns: &Ns, port: u16, banner: &str) {
        self.spawn(
            ns,
            &[
                "socat",
                &format!("UDP-RECVFROM:{port},fork,reuseaddr"),
                &format!("SYSTEM:echo {banner}"),
            ],
        );
        wait_for_listener(ns, port, "udp");
    }

    /// `roamgw init` for this testbed's droplet, with WireGuard run as `wireguard` says.
    pub fn init_args(&self, wireguard: &str) -> Vec<String> {
        [
            "init",
            "--public-ip",
            PUBLIC_IP,
            "--anchor-ip",
            ANCHOR_IP,
            "--floating-ip",
            FLOATING_IP,
            "--wireguard",
            wireguard,
            "--interface",
            &self.gw_wg,
        ]
        .map(ToString::to_string)
        .to_vec()
    }

    /// The laptop gets a new address behind the CGNAT (as on a new Wi-Fi): old one flushed,
    /// `address` (in 100.64.0.0/24) added, default route restored.
    pub fn move_laptop(&self, address: &str) {
        self.roam.run(&["ip", "addr", "flush", "dev", "eth0"]);
        self.roam
            .run(&["ip", "addr", "add", &format!("{address}/24"), "dev", "eth0"]);
        self.roam
            .run(&["ip", "route", "add", "default", "via", "100.64.0.1"]);
    }

    /// The droplet's public address changes from `from` to `to` (both in 203.0.113.0/24): the
    /// new one added, the old one removed, the provider routes the anchor to the new one, and
    /// the laptop's hosts file names `gw.roamgw.test` the new one.
    pub fn move_gateway(&self, from: &str, to: &str) {
        self.gw
            .run(&["sysctl", "-qw", "net.ipv4.conf.eth0.promote_secondaries=1"]);
        self.gw
            .run(&["ip", "addr", "add", &format!("{to}/24"), "dev", "eth0"]);
        self.gw
            .run(&["ip", "addr", "del", &format!("{from}/24"), "dev", "eth0"]);
        self.gw
            .run(&["ip", "route", "replace", "default", "via", "203.0.113.1"]);
        self.wan
            .run(&["ip", "route", "replace", "10.16.0.0/16", "via", to]);
        self.set_hosts(&self.roam, &format!("{to} {GATEWAY_NAME}\n"));
    }

    /// Gives `ns` its own /etc/hosts (`ip netns exec` bind-mounts /etc/netns/NAME/hosts).
    /// Later calls rewrite the same file in place, so running processes see the change.
    pub fn set_hosts(&self, ns: &Ns, text: &str) {
        let dir = PathBuf::from(format!("/etc/netns/{}", ns.name));
        std::fs::create_dir_all(&dir).expect("create /etc/netns/NAME");
        std::fs::write(dir.join("hosts"), text).expect("write hosts");
    }

    /// How long after `since` the outside client first reads `expected` from `addr`, trying
    /// every 20 ms with 100 ms timeouts (a lost SYN would wait 1 s for its retransmission);
    /// `None` if not by `deadline` after `since`.
    pub fn time_until_banner(
        &self,
        addr: &str,
        expected: &str,
        since: Instant,
        deadline: Duration,
    ) -> Option<Duration> {
        while since.elapsed() < deadline {
            let attempt = Instant::now();
            if let Ok(mut stream) = self.cli.connect(addr, Duration::from_millis(100)) {
                let mut text = String::new();
                let _ = stream.read_to_string(&mut text);
                if text.trim() == expected {
                    return Some(since.elapsed());
                }
            }
            std::thread::sleep(Duration::from_millis(20).saturating_sub(attempt.elapsed()));
        }
        None
    }

    /// A config directory for roamgw inside the testbed's temp dir.
    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("roamgw")
    }

    /// Runs `roamgw` in the gateway namespace (the binary path comes from the test crate).
    pub fn roamgw(&self, binary: &Path, args: &[&str]) -> Output {
        let dir = self.config_dir();
        let mut full: Vec<&str> = vec![
            binary.to_str().expect("utf-8 path"),
            "--config-dir",
            dir.to_str().expect("utf-8"),
        ];
        full.extend_from_slice(args);
        self.gw
            .command(&full)
            .env("DBUS_SYSTEM_BUS_ADDRESS", self.system_bus())
            .stdin(Stdio::null())
            .output()
            .expect("run roamgw")
    }

    /// The daemon's state directory (remembered endpoints), inside the temp dir.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// `roamgw run` for this testbed's config and state directories, as a command line.
    pub fn roamgw_run_command(&self) -> Vec<String> {
        [
            binary("roamgw"),
            PathBuf::from("--config-dir"),
            self.config_dir(),
            PathBuf::from("run"),
            PathBuf::from("--state-dir"),
            self.state_dir(),
        ]
        .iter()
        .map(|p| p.to_str().expect("utf-8").to_string())
        .collect()
    }

    /// Starts `roamgw run` (log: daemon.log); returns its pid at once.
    pub fn spawn_roamgw_run(&self) -> u32 {
        let command = self.roamgw_run_command();
        let args: Vec<&str> = command.iter().map(String::as_str).collect();
        self.spawn_logged(&self.gw, &args, "daemon.log")
    }

    /// Whether `roamgw run` serves with its data plane up (`roamgw status` says so).
    pub fn roamgw_run_ready(&self) -> bool {
        self.config_dir().join("roamgw.sock").exists() && {
            let out = self.roamgw(&binary("roamgw"), &["status", "--json"]);
            serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .is_ok_and(|v| v["data_plane_up"] == true && v["daemon_running"] == true)
        }
    }

    /// Starts `roamgw run` in the gateway namespace (log: daemon.log) and waits until it
    /// serves with its data plane up; returns its pid.
    pub fn start_roamgw_run(&self, deadline: Duration) -> u32 {
        let pid = self.spawn_roamgw_run();
        let up = wait_until(deadline, || self.roamgw_run_ready());
        assert!(
            up,
            "roamgw run did not come up:\n{}",
            self.log("daemon.log")
        );
        pid
    }

    /// `roamgw init` (with `wireguard`, plus `extra` flags) and `add-roamer laptop`, which must
    /// both succeed.
    pub fn init_with_laptop(&self, wireguard: &str, extra: &[&str]) {
        let mut args = self.init_args(wireguard);
        args.extend(extra.iter().map(ToString::to_string));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let roamgw = binary("roamgw");
        for command in [&args[..], &["add-roamer", "laptop"][..]] {
            let out = self.roamgw(&roamgw, command);
            assert!(
                out.status.success(),
                "roamgw {command:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Writes `count` plain TCP forwards (ports 20000, 20001, …) to roamer `laptop` straight
    /// into the state file, as a long-lived gateway would have them (benchmarks).
    pub fn preload_forwards(&self, count: u16) {
        let path = self.config_dir().join("gateway.toml");
        let mut state = roamgw_common::state::GatewayState::from_toml(
            &std::fs::read_to_string(&path).expect("read state"),
        )
        .expect("parse state");
        state
            .forwards
            .extend((0..count).map(|i| bench::forward(20_000 + i)));
        std::fs::write(&path, state.to_toml()).expect("write state");
    }

    /// The system bus address the testbed's roamgw processes use.
    pub fn system_bus(&self) -> String {
        self.system_bus
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Points the testbed's roamgw processes at `address` (a private bus with firewalld).
    pub fn set_system_bus(&self, address: &str) {
        *self.system_bus.lock().unwrap_or_else(|p| p.into_inner()) = address.to_string();
    }

    /// Brings up stock wg-quick + wireguard-go in a namespace with the given config text.
    pub fn wg_quick_up(&self, ns: &Ns, interface: &str, config: &str) {
        let path = self.dir.path().join(format!("{interface}.conf"));
        std::fs::write(&path, config).expect("write wg-quick config");
        let out = ns
            .command(&["wg-quick", "up", path.to_str().expect("utf-8")])
            .env("WG_QUICK_USERSPACE_IMPLEMENTATION", "wireguard-go")
            .env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1")
            .output()
            .expect("wg-quick");
        assert!(
            out.status.success(),
            "wg-quick up {interface} in {}: {}",
            ns.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Testbed {
    /// `wg-quick down` for an interface [`Testbed::wg_quick_up`] brought up.
    pub fn wg_quick_down(&self, ns: &Ns, interface: &str) {
        let path = self.dir.path().join(format!("{interface}.conf"));
        ns.run(&["wg-quick", "down", path.to_str().expect("utf-8")]);
    }
}

impl Default for Testbed {
    fn default() -> Self {
        Self::new()
    }
}

impl Ns {
    fn run_checked_stdin(&self, args: &[&str], stdin: &str) {
        let out = self.run_with_stdin(args, stdin);
        assert!(
            out.status.success(),
            "in {}: {args:?} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn wait_for_listener(ns: &Ns, port: u16, protocol: &str) {
    let flag = if protocol == "tcp" { "-ltn" } else { "-lun" };
    let ok = wait_until(Duration::from_secs(5), || {
        ns.output(&["ss", flag, &format!("sport = :{port}")])
            .stdout
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count()
            > 1
    });
    assert!(
        ok,
        "no {protocol} listener on port {port} in {} after 5 s",
        ns.name
    );
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

impl Drop for Testbed {
    fn drop(&mut self) {
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        for child in children.iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Whatever else runs in our namespaces (wireguard-go daemons, socat forks) goes too:
        // SIGTERM first so wireguard-go removes its UAPI socket.
        for signal in ["-TERM", "-KILL"] {
            // Not the machine's own namespace: everything runs there.
            for ns in self
                .all()
                .into_iter()
                .filter(|ns| !(self.gw_is_root && ns.name == self.gw.name))
            {
                let pids = Command::new("ip")
                    .args(["netns", "pids", &ns.name])
                    .output();
                if let Ok(out) = pids {
                    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                        let _ = Command::new("kill").args([signal, pid]).output();
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for ns in self.all() {
            let _ = Command::new("ip").args(["netns", "del", &ns.name]).output();
        }
        for interface in [&self.gw_wg, &self.roam_wg] {
            let _ = std::fs::remove_file(format!("/var/run/wireguard/{interface}.sock"));
            for suffix in ["json", "log"] {
                let _ = std::fs::remove_file(format!("/run/roamgw/roamer-{interface}.{suffix}"));
            }
        }
        for ns in self.all() {
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", ns.name));
        }
    }
}

/// How the gateway's WireGuard runs in a [`Scenario`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayMode {
    /// Stock wg-quick + wireguard-go on the droplet (the manual setup's tunnel); roamgw
    /// manages the rules (`--wireguard external`, `roamgw up`).
    External,
    /// `roamgw run` with its embedded userspace WireGuard.
    Daemon,
    /// `roamgw run` with kernel WireGuard (in the qemu guest: this machine's kernel has none).
    KernelDaemon,
}

/// Which roamgw backend a [`Scenario`]'s gateway uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Nftables,
    Firewalld,
    /// The nftables backend on a droplet that also runs firewalld.
    NftablesBesideFirewalld,
}

/// What runs the laptop's tunnel in a [`Scenario`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Laptop {
    /// Stock wg-quick + wireguard-go with `roamgw show-config laptop --format wg-quick`.
    WgQuick,
    /// `roamer run` with `roamgw show-config laptop --format roamer`.
    Roamer,
    /// The same with `--wireguard kernel` (in the qemu guest).
    KernelRoamer,
}

/// A testbed with roamgw on the gateway, roamer `laptop` on stock wg-quick + wireguard-go with
/// the config `roamgw show-config` prints, the data plane up, and banner servers: "roamer" on
/// the laptop and "droplet" on the gateway, both on port 22.
pub struct Scenario {
    pub bed: Testbed,
    pub mode: GatewayMode,
    /// Print every roamgw command and its output (the demo).
    pub verbose: bool,
    /// The firewalld in the gateway namespace, with [`Backend::Firewalld`].
    pub firewalld: Option<firewalld::Firewalld>,
    /// The daemon's pid in [`GatewayMode::Daemon`].
    pub daemon: Option<u32>,
}

impl Scenario {
    pub fn new(mode: GatewayMode, extra_init_flags: &[&str]) -> Self {
        Self::build(mode, extra_init_flags, false)
    }

    /// A stock wg-quick laptop behind a gateway on `backend`.
    pub fn on(mode: GatewayMode, backend: Backend, extra_init_flags: &[&str]) -> Self {
        Self::gateway_on(mode, backend, extra_init_flags, false).connect_laptop(Laptop::WgQuick)
    }

    pub fn build(mode: GatewayMode, extra_init_flags: &[&str], verbose: bool) -> Self {
        Self::build_with(mode, Laptop::WgQuick, extra_init_flags, verbose)
    }

    pub fn build_with(
        mode: GatewayMode,
        laptop: Laptop,
        extra_init_flags: &[&str],
        verbose: bool,
    ) -> Self {
        Self::gateway_only(mode, extra_init_flags, verbose).connect_laptop(laptop)
    }

    /// [`Scenario::build_with`] in two steps, for tests that prepare the laptop's side first.
    /// This one: the gateway with roamer `laptop`, up.
    pub fn gateway_only(mode: GatewayMode, extra_init_flags: &[&str], verbose: bool) -> Self {
        Self::gateway_on(mode, Backend::Nftables, extra_init_flags, verbose)
    }

    /// [`Scenario::gateway_only`] on a chosen backend; firewalld runs in the gateway namespace
    /// on a private bus for [`Backend::Firewalld`].
    pub fn gateway_on(
        mode: GatewayMode,
        backend: Backend,
        extra_init_flags: &[&str],
        verbose: bool,
    ) -> Self {
        let bed = Testbed::new();
        let firewalld = (backend != Backend::Nftables).then(|| {
            let fw = firewalld::Firewalld::start(&bed, &bed.gw);
            // The droplet's own services, as its admin opened them (ssh is open by default).
            for args in [
                &["--add-port=8080/tcp"][..],
                &["--permanent", "--add-port=8080/tcp"][..],
            ] {
                assert!(
                    fw.cmd(&bed.gw, args).status.success(),
                    "firewall-cmd {args:?}"
                );
            }
            fw
        });
        let mut scenario = Scenario {
            bed,
            mode,
            verbose,
            firewalld,
            daemon: None,
        };
        let wireguard = match mode {
            GatewayMode::External => "external",
            GatewayMode::Daemon => "userspace",
            GatewayMode::KernelDaemon => "kernel",
        };
        let mut init = scenario.bed.init_args(wireguard);
        if backend == Backend::Firewalld {
            init.extend(["--backend".to_string(), "firewalld".to_string()]);
        }
        init.extend(extra_init_flags.iter().map(ToString::to_string));
        let init: Vec<&str> = init.iter().map(String::as_str).collect();
        scenario.ok(&init);
        scenario.ok(&["add-roamer", "laptop"]);
        match mode {
            GatewayMode::External => {
                scenario.wg_quick_up_from_show_config(
                    &scenario.bed.gw,
                    &scenario.bed.gw_wg,
                    &["--gateway"],
                    "droplet",
                );
                scenario.ok(&["up"]);
            }
            GatewayMode::Daemon | GatewayMode::KernelDaemon => scenario.start_daemon(),
        }
        scenario
    }

    /// Stock wg-quick + wireguard-go in `ns` with the file `roamgw show-config WHOM --format
    /// wg-quick` prints.
    fn wg_quick_up_from_show_config(&self, ns: &Ns, interface: &str, whom: &[&str], host: &str) {
        let mut args = vec!["show-config"];
        args.extend_from_slice(whom);
        args.extend(["--format", "wg-quick"]);
        let conf = self.quiet(&args);
        self.say(&format!(
            "wg-quick up {interface} on the {host} (wireguard-go)"
        ));
        self.bed.wg_quick_up(ns, interface, &conf);
    }

    /// The second step: the laptop's tunnel up, and the banner servers.
    pub fn connect_laptop(mut self, laptop: Laptop) -> Self {
        let scenario = &mut self;
        match laptop {
            Laptop::WgQuick => scenario.wg_quick_up_from_show_config(
                &scenario.bed.roam,
                &scenario.bed.roam_wg,
                &["laptop"],
                "laptop",
            ),
            Laptop::Roamer => scenario.start_roamer(),
            Laptop::KernelRoamer => scenario.start_roamer_with(&["--wireguard", "kernel"]),
        }
        let roam = scenario.bed.roam.clone();
        let tunnel = wait_until(Duration::from_secs(10), || {
            roam.output(&["ping", "-c1", "-W1", "192.168.32.1"])
                .status
                .success()
        });
        assert!(
            tunnel,
            "the WireGuard tunnel did not come up within 10 s\ndaemon:\n{}\nroamer:\n{}",
            scenario.bed.log("daemon.log"),
            scenario.bed.log("roamer.log")
        );
        scenario
            .bed
            .tcp_banner_server(&scenario.bed.roam, 22, "roamer");
        scenario
            .bed
            .tcp_banner_server(&scenario.bed.gw, 22, "droplet");
        self
    }

    /// Starts `roamgw run` in the gateway namespace and waits until it serves.
    pub fn start_daemon(&mut self) {
        self.say("roamgw run   (in the background)");
        self.daemon = Some(self.bed.start_roamgw_run(Duration::from_secs(20)));
    }

    /// Starts `roamer run` on the laptop with the config roamgw prints (interface renamed to
    /// this testbed's unique name).
    pub fn start_roamer(&self) {
        self.start_roamer_with(&[]);
    }

    /// [`Scenario::start_roamer`] with more `roamer run` arguments.
    pub fn start_roamer_with(&self, extra: &[&str]) {
        let config = self
            .quiet(&["show-config", "laptop", "--format", "roamer"])
            .replace(
                &format!("interface = \"{}\"", self.bed.gw_wg),
                &format!("interface = \"{}\"", self.bed.roam_wg),
            );
        let path = self.roamer_config();
        std::fs::write(&path, config).expect("write roamer.toml");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
        self.say(&format!("roamer run on the laptop ({})", self.bed.roam_wg));
        let roamer = binary("roamer");
        let mut args = vec![
            roamer.to_str().expect("utf-8"),
            "run",
            "--config",
            path.to_str().expect("utf-8"),
        ];
        args.extend_from_slice(extra);
        self.bed.spawn_logged(&self.bed.roam, &args, "roamer.log");
    }

    /// Where [`Scenario::start_roamer`] puts the laptop's config.
    pub fn roamer_config(&self) -> PathBuf {
        self.bed.dir.path().join("roamer.toml")
    }

    /// The pid of the laptop's `roamer run`, from its status file.
    pub fn roamer_pid(&self) -> u64 {
        let path = format!("/run/roamgw/roamer-{}.json", self.bed.roam_wg);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let json: serde_json::Value = serde_json::from_str(&text).expect("status JSON");
        json["pid"].as_u64().expect("pid")
    }

    /// Whether the laptop's WireGuard interface exists.
    pub fn laptop_interface_exists(&self) -> bool {
        self.bed
            .roam
            .output(&["ip", "link", "show", &self.bed.roam_wg])
            .status
            .success()
    }

    /// `roamer down` on the laptop, which must succeed and leave no interface behind.
    pub fn roamer_down(&self) {
        let out = self.roamer(&["down"]);
        assert!(
            out.status.success(),
            "roamer down: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !self.laptop_interface_exists(),
            "roamer left its interface:\n{}",
            self.bed.log("roamer.log")
        );
    }

    /// Runs `roamer ARGS --config <the laptop's config>` on the laptop.
    pub fn roamer(&self, args: &[&str]) -> Output {
        let config = self.roamer_config();
        let roamer = binary("roamer");
        let mut full = vec![roamer.to_str().expect("utf-8")];
        full.extend_from_slice(args);
        full.extend(["--config", config.to_str().expect("utf-8")]);
        self.bed.roam.output(&full)
    }

    /// Stops the daemon with SIGTERM and waits until its table is gone.
    pub fn stop_daemon(&mut self) {
        if let Some(pid) = self.daemon.take() {
            self.bed.gw.run(&["kill", "-TERM", &pid.to_string()]);
            let gw = self.bed.gw.clone();
            let sock = self.bed.config_dir().join("roamgw.sock");
            let down = wait_until(Duration::from_secs(10), || {
                !sock.exists()
                    && !gw
                        .output(&["nft", "list", "table", "ip", "roamgw"])
                        .status
                        .success()
            });
            assert!(
                down,
                "roamgw run did not stop:\n{}",
                self.bed.log("daemon.log")
            );
        }
    }

    /// Takes the data plane down the way this mode does it.
    pub fn down(&mut self) {
        match self.mode {
            GatewayMode::External => {
                self.ok(&["down"]);
            }
            GatewayMode::Daemon | GatewayMode::KernelDaemon => self.stop_daemon(),
        }
    }

    /// Brings it up again. A restarted daemon starts the handshakes to the endpoints it
    /// remembered; the laptop also sends some data, as a laptop in use would, until the
    /// tunnel is back (so this works even before the daemon has remembered an endpoint).
    pub fn up(&mut self) {
        match self.mode {
            GatewayMode::External => {
                self.ok(&["up"]);
            }
            GatewayMode::Daemon | GatewayMode::KernelDaemon => {
                self.start_daemon();
                self.bed.spawn(
                    &self.bed.roam,
                    &["ping", "-i", "0.5", "-w", "60", "192.168.32.1"],
                );
                let roam = self.bed.roam.clone();
                let back = wait_until(Duration::from_secs(60), || {
                    roam.output(&["ping", "-c1", "-W1", "192.168.32.1"])
                        .status
                        .success()
                });
                assert!(back, "the laptop did not reconnect to the restarted daemon");
            }
        }
    }

    fn say(&self, text: &str) {
        if self.verbose {
            println!("[#] {text}");
        }
    }

    fn quiet(&self, args: &[&str]) -> String {
        let out = self.bed.roamgw(&binary("roamgw"), args);
        assert!(
            out.status.success(),
            "roamgw {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a roamgw command on the gateway that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.say(&format!("roamgw {}", args.join(" ")));
        let out = self.bed.roamgw(&binary("roamgw"), args);
        if self.verbose {
            print!("{}", String::from_utf8_lossy(&out.stdout));
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
        }
        assert!(
            out.status.success(),
            "roamgw {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `add-port 22`, then: the floating IP reaches the laptop, the public IP the droplet.
    pub fn forward_22_works(&self) {
        self.ok(&["add-port", "22"]);
        assert_eq!(
            self.banner(&format!("{FLOATING_IP}:22")).as_deref(),
            Some("roamer")
        );
        assert_eq!(
            self.banner(&format!("{PUBLIC_IP}:22")).as_deref(),
            Some("droplet")
        );
    }

    /// The banner the outside client reads from `addr`.
    /// Asserts that a datagram to the floating IP's `port` is answered with `want`. On failure
    /// the panic carries the gateway's UDP conntrack entries and ruleset: a rare failure on the
    /// firewalld backend (about 1 run in 30, never reproduced alone) is still unexplained.
    pub fn udp_forward_answers(&self, port: u16, want: &str) {
        let got = self
            .bed
            .cli
            .udp_exchange(&format!("{FLOATING_IP}:{port}"), "hi");
        if got.as_deref() != Some(want) {
            let conntrack = self.bed.gw.output(&["conntrack", "-L", "-p", "udp"]);
            let ruleset = self.bed.gw.output(&["nft", "list", "ruleset"]);
            panic!(
                "UDP to {FLOATING_IP}:{port}: got {got:?}, want {want:?}\nconntrack (gateway):\n{}\nruleset (gateway):\n{}\nroamgw status:\n{}",
                String::from_utf8_lossy(&conntrack.stdout),
                String::from_utf8_lossy(&ruleset.stdout),
                String::from_utf8_lossy(&self.bed.roamgw(&binary("roamgw"), &["status"]).stdout),
            );
        }
    }

    pub fn banner(&self, addr: &str) -> Option<String> {
        self.bed.cli.tcp_banner(addr)
    }

    /// Waits until the daemon has remembered the laptop's endpoint (it writes it within a
    /// second of learning it).
    pub fn await_remembered_endpoint(&self) {
        let file = self
            .bed
            .state_dir()
            .join(format!("{}.endpoints.json", self.bed.gw_wg));
        let remembered = wait_until(Duration::from_secs(5), || {
            std::fs::read_to_string(&file).is_ok_and(|t| t.contains("\"198.51.100.2:"))
        });
        assert!(
            remembered,
            "no endpoint remembered in {}:\n{}",
            file.display(),
            self.bed.log("daemon.log")
        );
    }

    /// Forgets the remembered endpoints, as a daemon without them (before they existed).
    pub fn forget_endpoints(&self) {
        let _ = std::fs::remove_file(
            self.bed
                .state_dir()
                .join(format!("{}.endpoints.json", self.bed.gw_wg)),
        );
    }

    /// `kill -9` of the daemon; returns once it is dead.
    pub fn kill_daemon(&mut self) {
        let pid = self.daemon.take().expect("daemon pid");
        self.bed.gw.run(&["kill", "-9", &pid.to_string()]);
        // Dead once it is a zombie (the test process is its parent).
        let dead = wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |stat| stat.contains(") Z "))
        });
        assert!(dead, "the daemon did not die");
    }

    /// What a reboot leaves of the droplet: the daemon gone, no WireGuard link, no ruleset,
    /// empty runtime directories (the socket files). The state directory stays (/var/lib).
    pub fn simulate_reboot(&mut self) {
        self.kill_daemon();
        let b = &self.bed;
        let _ = b.gw.output(&["ip", "link", "del", &b.gw_wg]);
        b.gw.run(&["nft", "flush", "ruleset"]);
        let _ = std::fs::remove_file(b.config_dir().join("roamgw.sock"));
        let _ = std::fs::remove_file(format!("/var/run/wireguard/{}.sock", b.gw_wg));
    }

    /// Starts the daemon again and returns how long after it was ready the forward 22
    /// answered (`None`: not within `cap`).
    pub fn restart_daemon_until_forward(&mut self, cap: Duration) -> Option<Duration> {
        let pid = self.bed.spawn_roamgw_run();
        let ready = wait_until(Duration::from_secs(20), || self.bed.roamgw_run_ready());
        assert!(
            ready,
            "roamgw run did not come up:\n{}",
            self.bed.log("daemon.log")
        );
        self.daemon = Some(pid);
        self.bed
            .time_until_banner(&format!("{FLOATING_IP}:22"), "roamer", Instant::now(), cap)
    }
}

impl Scenario {
    /// Breaks the data plane with `args` (a command in the gateway namespace) and returns how
    /// long until the forward 22 answers again (`None`: not within 10 s). Waits 1.5 s first,
    /// so that a [`StatusPoller`]'s requests are in flight around the repair.
    pub fn time_to_repair(&self, args: &[&str]) -> Option<Duration> {
        std::thread::sleep(Duration::from_millis(1500));
        let since = Instant::now();
        self.bed.gw.run(args);
        self.bed.time_until_banner(
            &format!("{FLOATING_IP}:22"),
            "roamer",
            since,
            Duration::from_secs(10),
        )
    }
}

/// Polls `roamgw status` every second until dropped, as a monitoring check would.
pub struct StatusPoller {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StatusPoller {
    pub fn start(bed: &Testbed) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let gw = bed.gw.clone();
        let command = [
            binary("roamgw").to_str().expect("utf-8").to_string(),
            "--config-dir".into(),
            bed.config_dir().to_str().expect("utf-8").to_string(),
            "status".into(),
        ];
        let bus = bed.system_bus();
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let args: Vec<&str> = command.iter().map(String::as_str).collect();
            while !flag.load(Ordering::SeqCst) {
                let _ = gw
                    .command(&args)
                    .env("DBUS_SYSTEM_BUS_ADDRESS", &bus)
                    .output();
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for StatusPoller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
