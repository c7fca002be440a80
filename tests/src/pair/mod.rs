//! Two droplets on the namespace internet, one reserved IP (`roamgw ha`):
//!
//! ```text
//!  cli ── wan (router; provider NAT 203.0.113.50 <-> the holder's anchor; fake API 192.0.2.1:8080)
//!          ├── a (= the testbed's gw) 203.0.113.10 + anchor 10.16.0.5 ─ eth1 10.10.0.1 ┐ private
//!          ├── b                      203.0.113.20 + anchor 10.17.0.5 ─ eth1 10.10.0.2 ┘ switch
//!          │                                                  (a bridge in wan, no IP of its own)
//!          └── cgn (masquerade) ── roam 100.64.0.2 (roamer), l1 100.64.1.2 (stock wg-quick)
//! ```
//!
//! The provider's NAT plays one of issue 26's three models ([`Model`]); a completed assign
//! re-points it and forgets its flows. Real keepalived in both droplets, real `roamgw run`, a real roamer and a stock
//! wg-quick laptop, all dialing the reserved IP.

mod models;

use super::*;
use crate::provider::{FakeApi, TOKEN};
pub use models::Model;
use models::{anchor_gateway_of, anchor_gateways, point_nat, provider_addresses};

pub const A_ID: u64 = 1001;
pub const B_ID: u64 = 1002;
const B_PUBLIC: &str = "203.0.113.20";
pub(crate) const B_ANCHOR: &str = "10.17.0.5";
const API_ADDRESS: &str = "192.0.2.1";

/// One droplet of the pair: where it lives and where its files are.
pub struct Droplet {
    pub ns: Ns,
    pub name: &'static str,
    pub id: u64,
    pub private_ip: &'static str,
    pub wg: String,
    pub config_dir: PathBuf,
    pub state_dir: PathBuf,
}

pub struct PairBed {
    pub bed: Testbed,
    pub model: Model,
    pub a: Droplet,
    pub b: Droplet,
    pub api: FakeApi,
    pub token_file: PathBuf,
    /// The stock wg-quick laptop: namespace and interface.
    pub stock: (Ns, String),
}

fn anchor_of(droplet: u64) -> &'static str {
    if droplet == A_ID {
        ANCHOR_IP
    } else {
        B_ANCHOR
    }
}

impl PairBed {
    /// Model (a): the namespaces, links, NAT and fake API; no roamgw yet.
    pub fn new() -> PairBed {
        Self::with_model(Model::A)
    }

    pub fn with_model(model: Model) -> PairBed {
        require_tool("keepalived", "keepalived");
        let bed = Testbed::new();
        let (b_ns, b_wg) = bed.add_host("b");
        let link = |a: &Ns, a_if: &str, b: &Ns, b_if: &str| {
            a.run(&[
                "ip", "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name,
            ]);
            a.run(&["ip", "link", "set", a_if, "up"]);
            b.run(&["ip", "link", "set", b_if, "up"]);
        };
        link(&bed.wan, "to-b", &b_ns, "eth0");
        // The private network is a switch (a bridge in the router's namespace): a droplet
        // that dies takes its own port down, never its peer's carrier (a veth pair would).
        bed.wan
            .run(&["ip", "link", "add", "priv", "type", "bridge"]);
        bed.wan.run(&["ip", "link", "set", "priv", "up"]);
        // Set where the host loaded br_netfilter: bridged frames must not cross the NAT.
        let _ = bed
            .wan
            .output(&["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0"]);
        for (ns, port) in [(&bed.gw, "priv-a"), (&b_ns, "priv-b")] {
            link(&bed.wan, port, ns, "eth1");
            bed.wan.run(&["ip", "link", "set", port, "master", "priv"]);
        }
        // The router's side of b's link shares its address with a's; b's address is routed.
        bed.wan
            .run(&["ip", "addr", "add", "203.0.113.1/32", "dev", "to-b"]);
        bed.wan.run(&[
            "ip",
            "route",
            "add",
            &format!("{B_PUBLIC}/32"),
            "dev",
            "to-b",
        ]);
        bed.wan
            .run(&["ip", "route", "add", "10.17.0.0/16", "via", B_PUBLIC]);
        for (ns, address) in [
            (&b_ns, format!("{B_PUBLIC}/24")),
            (&b_ns, format!("{B_ANCHOR}/16")),
        ] {
            ns.run(&["ip", "addr", "add", &address, "dev", "eth0"]);
        }
        b_ns.run(&["ip", "route", "add", "default", "via", "203.0.113.1"]);
        bed.gw
            .run(&["ip", "addr", "add", "10.10.0.1/24", "dev", "eth1"]);
        b_ns.run(&["ip", "addr", "add", "10.10.0.2/24", "dev", "eth1"]);

        let wan = bed.wan.clone();
        let api = FakeApi::start(
            &bed.wan,
            API_ADDRESS,
            FLOATING_IP,
            A_ID,
            Arc::new(move |droplet| point_nat(&wan, model, anchor_of(droplet))),
        );
        let token_file = bed.dir.path().join("provider-token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token");
        std::fs::set_permissions(
            &token_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .expect("chmod");
        let stock = bed.add_laptop(1);
        let a = Droplet {
            ns: bed.gw.clone(),
            name: "a",
            id: A_ID,
            private_ip: "10.10.0.1",
            wg: bed.gw_wg.clone(),
            config_dir: bed.config_dir(),
            state_dir: bed.state_dir(),
        };
        let b = Droplet {
            ns: b_ns,
            name: "b",
            id: B_ID,
            private_ip: "10.10.0.2",
            wg: b_wg,
            config_dir: bed.dir.path().join("roamgw-b"),
            state_dir: bed.dir.path().join("state-b"),
        };
        match model {
            Model::A => {}
            Model::B => anchor_gateways(&bed.wan),
            Model::C => {
                provider_addresses(&bed.wan);
                point_nat(&bed.wan, model, ANCHOR_IP);
            }
        }
        PairBed {
            bed,
            model,
            a,
            b,
            api,
            token_file,
            stock,
        }
    }

    /// `roamgw` on `droplet` with its config directory.
    pub fn roamgw(&self, droplet: &Droplet, args: &[&str]) -> Output {
        let roamgw = binary("roamgw");
        let mut full = vec![
            roamgw.to_str().expect("utf-8"),
            "--config-dir",
            droplet.config_dir.to_str().expect("utf-8"),
        ];
        full.extend_from_slice(args);
        droplet
            .ns
            .command(&full)
            .env("ROAMGW_METADATA_URL", "off")
            .stdin(Stdio::null())
            .output()
            .expect("run roamgw")
    }

    /// [`PairBed::roamgw`], which must succeed: its stdout.
    pub fn roamgw_ok(&self, droplet: &Droplet, args: &[&str]) -> String {
        let out = self.roamgw(droplet, args);
        assert!(
            out.status.success(),
            "roamgw {args:?} on {}: {}",
            droplet.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn init(&self, droplet: &Droplet, public: &str, anchor: &str) {
        let gateway = anchor_gateway_of(anchor);
        let mut args = vec![
            "init",
            "--public-ip",
            public,
            "--anchor-ip",
            anchor,
            "--floating-ip",
            FLOATING_IP,
            "--endpoint",
            FLOATING_IP,
            "--wireguard",
            "userspace",
            "--interface",
            &droplet.wg,
        ];
        if self.model == Model::B {
            args.extend_from_slice(&["--anchor-gateway", gateway.as_str()]);
        }
        self.roamgw_ok(droplet, &args);
    }

    fn ha_args<'a>(&'a self, droplet: &'a Droplet, peer: &'a Droplet, id: &'a str) -> Vec<String> {
        [
            "--peer",
            peer.private_ip,
            "--this",
            droplet.private_ip,
            "--droplet-id",
            id,
            "--api",
            &self.api.url,
            "--token-file",
            self.token_file.to_str().expect("utf-8"),
            "--keepalived-conf",
            self.keepalived_conf(droplet).to_str().expect("utf-8"),
        ]
        .map(ToString::to_string)
        .to_vec()
    }

    fn keepalived_conf(&self, droplet: &Droplet) -> PathBuf {
        self.bed
            .dir
            .path()
            .join(format!("keepalived-{}.conf", droplet.name))
    }

    /// a serves laptop (port 22) and stock (port 2222 → 22); b joins; both daemons run;
    /// keepalived starts on a, then on b once a is active; b is in step.
    pub fn up(&self) {
        self.init(&self.a, PUBLIC_IP, ANCHOR_IP);
        for args in [
            &["add-roamer", "laptop"][..],
            &["add-roamer", "stock"],
            &["add-port", "22", "--to", "laptop"],
            &["add-port", "2222:22", "--to", "stock"],
        ] {
            self.roamgw_ok(&self.a, args);
        }
        self.init(&self.b, B_PUBLIC, B_ANCHOR);
        let a_id = A_ID.to_string();
        let mut setup = vec!["ha".to_string(), "setup".to_string()];
        setup.extend(self.ha_args(&self.a, &self.b, &a_id));
        let setup: Vec<&str> = setup.iter().map(String::as_str).collect();
        let printed = self.roamgw_ok(&self.a, &setup);
        let key = printed
            .split("--pair-key '")
            .nth(1)
            .and_then(|rest| rest.split('\'').next())
            .unwrap_or_else(|| panic!("no pair key in:\n{printed}"))
            .to_string();
        let b_id = B_ID.to_string();
        let mut join = vec![
            "ha".to_string(),
            "join".to_string(),
            "--pair-key".to_string(),
            key,
        ];
        join.extend(self.ha_args(&self.b, &self.a, &b_id));
        let join: Vec<&str> = join.iter().map(String::as_str).collect();
        self.roamgw_ok(&self.b, &join);
        self.start_daemon(&self.a);
        self.start_daemon(&self.b);
        self.start_keepalived(&self.a);
        assert!(
            wait_until(Duration::from_secs(20), || self.is_active(&self.a)),
            "a did not become active:\n{}",
            self.logs()
        );
        self.start_keepalived(&self.b);
        assert!(
            wait_until(Duration::from_secs(10), || self.in_step(&self.b)),
            "b is not in step with a:\n{}",
            self.logs()
        );
    }

    /// Starts `roamgw run` on `droplet` (log: daemon-<name>.log) and waits until it serves.
    pub fn start_daemon(&self, droplet: &Droplet) {
        let roamgw = binary("roamgw");
        let log = format!("daemon-{}.log", droplet.name);
        self.bed.spawn_logged(
            &droplet.ns,
            &[
                roamgw.to_str().expect("utf-8"),
                "--config-dir",
                droplet.config_dir.to_str().expect("utf-8"),
                "run",
                "--state-dir",
                droplet.state_dir.to_str().expect("utf-8"),
            ],
            &log,
        );
        assert!(
            wait_until(Duration::from_secs(20), || self
                .ha_status(droplet)
                .is_some()),
            "roamgw run on {} did not come up:\n{}",
            droplet.name,
            self.bed.log(&log)
        );
    }

    pub fn start_keepalived(&self, droplet: &Droplet) {
        let file = |suffix: &str| {
            self.bed
                .dir
                .path()
                .join(format!("keepalived-{}.{suffix}", droplet.name))
                .to_str()
                .expect("utf-8")
                .to_string()
        };
        // A killed keepalived's pid files name zombies (the testbed reaps its children only
        // at the end), which keepalived takes for a running instance.
        for suffix in ["pid", "vrrp.pid", "checkers.pid"] {
            let _ = std::fs::remove_file(file(suffix));
        }
        let conf = self.keepalived_conf(droplet);
        self.bed.spawn_logged(
            &droplet.ns,
            &[
                "keepalived",
                "-n",
                "-l",
                "-D",
                "-f",
                conf.to_str().expect("utf-8"),
                "-p",
                &file("pid"),
                "-r",
                &file("vrrp.pid"),
                "-c",
                &file("checkers.pid"),
            ],
            &format!("keepalived-{}.log", droplet.name),
        );
        // Elections are only measured once it takes part: a peer's priority-0 announcement
        // sent before would be missed.
        let log = format!("keepalived-{}.log", droplet.name);
        assert!(
            wait_until(Duration::from_secs(10), || self
                .bed
                .log(&log)
                .contains("Startup complete")),
            "keepalived on {} did not start:\n{}",
            droplet.name,
            self.bed.log(&log)
        );
    }

    /// The private switch between the droplets off (`true`: they no longer see each other)
    /// or on again; both keep their links.
    pub fn cut_private(&self, cut: bool) {
        let state = if cut { "down" } else { "up" };
        self.bed.wan.run(&["ip", "link", "set", "priv", state]);
    }

    /// A planned switch-over: keepalived on `droplet` stopped (SIGTERM: it announces
    /// priority 0 and the peer takes over at once).
    pub fn stop_keepalived(&self, droplet: &Droplet) {
        let pid_file = self
            .bed
            .dir
            .path()
            .join(format!("keepalived-{}.pid", droplet.name));
        let pid = std::fs::read_to_string(&pid_file).expect("keepalived's pid file");
        droplet.ns.run(&["kill", "-TERM", pid.trim()]);
        // Gone once its pid file is.
        wait_until(Duration::from_secs(5), || !pid_file.exists());
    }

    /// `roamgw ha status --json` of `droplet`'s daemon (`None` when it does not answer).
    pub fn ha_status(&self, droplet: &Droplet) -> Option<serde_json::Value> {
        let out = self.roamgw(droplet, &["ha", "status", "--json"]);
        let value: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (value["daemon_running"] == true).then(|| value["pair"].clone())
    }

    /// Active, holding the reserved IP.
    pub fn is_active(&self, droplet: &Droplet) -> bool {
        self.ha_status(droplet)
            .is_some_and(|pair| pair["role"] == "active" && pair["holding"]["state"] == "held")
    }

    /// The standby with the active's gateway.
    pub fn in_step(&self, droplet: &Droplet) -> bool {
        self.ha_status(droplet).is_some_and(|pair| {
            pair["role"] == "standby"
                && pair["peer"]["role"] == "active"
                && pair["peer"]["in_sync"] == true
        })
    }

    /// Whether `droplet`'s remembered-endpoints file names `laptops` roamers (the standby has
    /// it from the active within a second of a laptop's handshake).
    pub fn remembers(&self, droplet: &Droplet, laptops: usize) -> bool {
        let path = droplet
            .state_dir
            .join(format!("{}.endpoints.json", droplet.wg));
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|v| v["roamers"].as_object().map(|r| r.len()))
            == Some(laptops)
    }

    /// The droplet dies: its links down first (a dying keepalived would otherwise announce
    /// priority 0 and hand over at once, which a crashed droplet never does), then every
    /// process in its namespace killed.
    pub fn kill(&self, droplet: &Droplet) {
        for link in ["eth0", "eth1"] {
            droplet.ns.run(&["ip", "link", "set", link, "down"]);
        }
        let out = Command::new("ip")
            .args(["netns", "pids", &droplet.ns.name])
            .output()
            .expect("ip netns pids");
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).output();
        }
    }

    /// Brings a killed droplet's links back (its processes stay dead).
    pub fn revive_links(&self, droplet: &Droplet) {
        for link in ["eth0", "eth1"] {
            droplet.ns.run(&["ip", "link", "set", link, "up"]);
        }
        droplet
            .ns
            .run(&["ip", "route", "replace", "default", "via", "203.0.113.1"]);
    }

    /// Every log of the pair, for a failing assertion.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for log in [
            "daemon-a.log",
            "daemon-b.log",
            "keepalived-a.log",
            "keepalived-b.log",
            "roamer.log",
        ] {
            let text = self.bed.log(log);
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            out.push_str(&format!("--- {log} (last lines)\n"));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Default for PairBed {
    fn default() -> Self {
        Self::new()
    }
}
