//! The five namespaces joined by veth pairs (the namespace internet), the processes started
//! in them, and their clean-up.

use super::*;
use crate::ns::wait_for_listener;

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
    /// The host whose "namespace" is this machine's own (a handle on PID 1's), for services
    /// that systemd starts (the qemu guest's systemd tests): the droplet or the laptop.
    root: Option<Root>,
    children: Mutex<Vec<Child>>,
    /// The D-Bus "system bus" roamgw and the daemon see: a dead address unless the test
    /// started firewalld on a private bus, so no test ever reaches this machine's own bus
    /// (and a firewalld on it).
    system_bus: Mutex<String>,
    /// More hosts ([`Testbed::add_host`]: laptops behind the CGNAT, a second droplet):
    /// namespace and WireGuard interface name.
    laptops: Mutex<Vec<(Ns, String)>>,
}

/// Where tests point DBUS_SYSTEM_BUS_ADDRESS when they run no firewalld.
const NO_SYSTEM_BUS: &str = "unix:path=/nonexistent/roamgw-tests-use-no-system-bus";

/// Which host of the testbed is this machine itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Root {
    Gateway,
    Laptop,
}

impl Testbed {
    pub fn new() -> Self {
        Self::create(None)
    }

    /// A testbed whose droplet is this machine itself (its root network namespace, named
    /// like the others through `ip netns attach`), so that services started by the machine's
    /// systemd are the droplet's. Only for a machine of the test's own: the qemu guest.
    pub fn with_gateway_in_root_namespace() -> Self {
        Self::create(Some(Root::Gateway))
    }

    /// The same with the laptop as this machine itself, for a network manager run by the
    /// machine's systemd (systemd-networkd in the qemu guest).
    pub fn with_laptop_in_root_namespace() -> Self {
        Self::create(Some(Root::Laptop))
    }

    /// Whether `ns` is this machine's own namespace.
    fn is_root(&self, ns: &Ns) -> bool {
        match self.root {
            Some(Root::Gateway) => ns.name == self.gw.name,
            Some(Root::Laptop) => ns.name == self.roam.name,
            None => false,
        }
    }

    fn create(root: Option<Root>) -> Self {
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
            root,
            children: Mutex::new(Vec::new()),
            system_bus: Mutex::new(NO_SYSTEM_BUS.to_string()),
            laptops: Mutex::new(Vec::new()),
        };
        bed.build();
        bed
    }

    /// Every namespace of the testbed, the added laptops' too.
    fn all(&self) -> Vec<Ns> {
        let mut all: Vec<Ns> = [&self.cli, &self.wan, &self.gw, &self.cgn, &self.roam]
            .into_iter()
            .cloned()
            .collect();
        all.extend(self.laptops().into_iter().map(|(ns, _)| ns));
        all
    }

    fn laptops(&self) -> Vec<(Ns, String)> {
        self.laptops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Another laptop behind the CGNAT (number `n`, 1..=200): its own namespace with
    /// 100.64.`n`.2/24 on eth0, and a WireGuard interface name of its own; cleaned up with the
    /// testbed.
    pub fn add_laptop(&self, n: u8) -> (Ns, String) {
        let (ns, interface) = self.add_host(&format!("l{n}"));
        let cgn_if = format!("to-l{n}");
        self.cgn.run(&[
            "ip", "link", "add", &cgn_if, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
        ]);
        self.cgn.run(&["ip", "link", "set", &cgn_if, "up"]);
        self.cgn.run(&[
            "ip",
            "addr",
            "add",
            &format!("100.64.{n}.1/24"),
            "dev",
            &cgn_if,
        ]);
        ns.run(&["ip", "link", "set", "eth0", "up"]);
        ns.run(&[
            "ip",
            "addr",
            "add",
            &format!("100.64.{n}.2/24"),
            "dev",
            "eth0",
        ]);
        ns.run(&[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &format!("100.64.{n}.1"),
        ]);
        (ns, interface)
    }

    /// A namespace of its own (`rg<id>-<role>`, lo up, no links yet) and a WireGuard
    /// interface name for it (`rg<id><role>`), both cleaned up with the testbed.
    pub fn add_host(&self, role: &str) -> (Ns, String) {
        let ns = Ns {
            name: format!("rg{}-{role}", self.id),
        };
        let interface = format!("rg{}{role}", self.id);
        let out = Command::new("ip")
            .args(["netns", "add", &ns.name])
            .output()
            .expect("ip netns add");
        assert!(out.status.success(), "ip netns add {}", ns.name);
        self.laptops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((ns.clone(), interface.clone()));
        ns.run(&["ip", "link", "set", "lo", "up"]);
        (ns, interface)
    }

    fn build(&self) {
        for ns in self.all() {
            let out = if self.is_root(&ns) {
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
                &udp_answer(&format!("echo {banner}")),
            ],
        );
        wait_for_listener(ns, port, "udp");
    }

    /// TCP and UDP servers on `port` that answer every connection or datagram with the
    /// address it came from, as the laptop's own logs would record it.
    pub fn peer_address_server(&self, ns: &Ns, port: u16) {
        for (listen, proto) in [("TCP-LISTEN", "tcp"), ("UDP-RECVFROM", "udp")] {
            self.spawn(
                ns,
                &[
                    "socat",
                    &format!("{listen}:{port},fork,reuseaddr"),
                    &answer(proto, "echo $SOCAT_PEERADDR"),
                ],
            );
            wait_for_listener(ns, port, proto);
        }
    }

    /// What the laptop's [`Testbed::peer_address_server`] saw of a TCP connection and a UDP
    /// datagram from the client to `addr`. The UDP exchange gets 5 s, as a new server does.
    pub fn seen_from_client(&self, addr: &str) -> (Option<String>, Option<String>) {
        let mut udp = None;
        crate::wait_until(Duration::from_secs(5), || {
            udp = self.cli.udp_exchange(addr, "who am i");
            udp.is_some()
        });
        (self.cli.tcp_banner(addr), udp)
    }

    /// [`Testbed::peer_address_server`] over IPv6 (beside the IPv4 one on the same port).
    /// socat writes the address in full and in brackets: [`crate::dualstack::peer_ip`] reads it.
    pub fn peer_address_server6(&self, ns: &Ns, port: u16) {
        for (listen, proto) in [("TCP6-LISTEN", "tcp"), ("UDP6-RECVFROM", "udp")] {
            self.spawn(
                ns,
                &[
                    "socat",
                    &format!("{listen}:{port},fork,reuseaddr,ipv6only=1"),
                    &answer(proto, "echo $SOCAT_PEERADDR"),
                ],
            );
            crate::ns::wait_for_listener_of(ns, port, proto, "-6");
        }
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

    /// Whether one ping from the laptop reaches the gateway's tunnel address (192.168.32.1):
    /// the tunnel answers.
    pub fn tunnel_answers(&self) -> bool {
        self.roam
            .output(&["ping", "-c1", "-W1", "192.168.32.1"])
            .status
            .success()
    }

    /// [`Testbed::tunnel_answers`], tried until `deadline`.
    pub fn tunnel_answers_within(&self, deadline: Duration) -> bool {
        wait_until(deadline, || self.tunnel_answers())
    }

    /// This build's `roamgw` with `args`, which must succeed: its stdout.
    pub fn roamgw_ok(&self, args: &[&str]) -> String {
        let out = self.roamgw(&binary("roamgw"), args);
        assert!(
            out.status.success(),
            "roamgw {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
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
        std::fs::write(&path, state.to_toml().expect("serializes")).expect("write state");
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

    /// Where [`Testbed::spawn_roamer`] puts the laptop's config.
    pub fn roamer_config(&self) -> PathBuf {
        self.dir.path().join("roamer.toml")
    }

    /// Starts `roamer run` on the laptop (log: roamer.log) with `config` as `roamgw show-config
    /// laptop --format roamer` printed it (its interface renamed to this testbed's); returns
    /// its pid.
    pub fn spawn_roamer(&self, config: &str, extra: &[&str]) -> u32 {
        self.spawn_roamer_in(&self.roam, &self.roam_wg, config, extra)
    }

    /// [`Testbed::spawn_roamer`] in another laptop's namespace with its interface name (log:
    /// `roamer-<interface>.log` there, `roamer.log` for the main laptop).
    pub fn spawn_roamer_in(&self, ns: &Ns, interface: &str, config: &str, extra: &[&str]) -> u32 {
        let config = config.replace(
            &format!("interface = \"{}\"", self.gw_wg),
            &format!("interface = \"{interface}\""),
        );
        let (path, log) = if interface == self.roam_wg {
            (self.roamer_config(), "roamer.log".to_string())
        } else {
            (
                self.dir.path().join(format!("roamer-{interface}.toml")),
                format!("roamer-{interface}.log"),
            )
        };
        std::fs::write(&path, config).expect("write roamer.toml");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
        let roamer = binary("roamer");
        let mut args = vec![
            roamer.to_str().expect("utf-8"),
            "run",
            "--config",
            path.to_str().expect("utf-8"),
        ];
        args.extend_from_slice(extra);
        self.spawn_logged(ns, &args, &log)
    }

    /// Brings up stock wg-quick + wireguard-go in a namespace with the given config text.
    /// (Checked here, not for every testbed: the demo's laptop is the roamer, and its first
    /// run on a fresh machine installs no wireguard-go.)
    pub fn wg_quick_up(&self, ns: &Ns, interface: &str, config: &str) {
        crate::require_tool("wireguard-go", "wireguard-go");
        self.wg_quick_up_with(ns, interface, config, "wireguard-go");
    }

    /// [`Testbed::wg_quick_up`] with another userspace implementation (a path or a command).
    pub fn wg_quick_up_with(&self, ns: &Ns, interface: &str, config: &str, implementation: &str) {
        let path = self.dir.path().join(format!("{interface}.conf"));
        std::fs::write(&path, config).expect("write wg-quick config");
        let out = ns
            .command(&["wg-quick", "up", path.to_str().expect("utf-8")])
            .env("WG_QUICK_USERSPACE_IMPLEMENTATION", implementation)
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
            for ns in self.all().into_iter().filter(|ns| !self.is_root(ns)) {
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
        let mut interfaces = vec![self.gw_wg.clone(), self.roam_wg.clone()];
        interfaces.extend(self.laptops().into_iter().map(|(_, interface)| interface));
        for interface in &interfaces {
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

/// socat's `SYSTEM:` answer of a server: for TCP the command as it is (a client that only
/// reads must get it at once), for UDP [`udp_answer`].
fn answer(protocol: &str, command: &str) -> String {
    if protocol == "udp" {
        udp_answer(command)
    } else {
        format!("SYSTEM:{command}")
    }
}

/// For a UDP datagram, socat's child writes the payload into the command's stdin after
/// starting it; a command that never reads (a bare `echo`) may have exited by then, socat's
/// write fails with EPIPE, and it exits without sending the answer the command printed. On a
/// loaded machine the command wins that race often enough that every try of an exchange went
/// unanswered (the "hairpin flake" of issue 30; reproduced by delaying socat's receive with
/// strace: every datagram lost, `E write(6, …): Broken pipe`). Reading the datagram first
/// makes the command wait for it.
fn udp_answer(command: &str) -> String {
    format!("SYSTEM:cat >/dev/null; {command}")
}
