//! `roamgw run` with its embedded userspace WireGuard (boringtun) against a stock wg-quick +
//! wireguard-go laptop, in the namespace internet.

use std::time::Duration;

use roamgw_e2e::{binary, wait_until, Testbed, ANCHOR_IP, FLOATING_IP, PUBLIC_IP};

struct Gateway {
    bed: Testbed,
    pid: u32,
}

impl Gateway {
    /// init (userspace WireGuard), roamer `laptop`, `roamgw run`, the laptop on wg-quick with
    /// the config roamgw prints, and banner servers on port 22 on both ends.
    fn start() -> Self {
        let bed = Testbed::new();
        let roamgw = binary("roamgw");
        let ok = |args: &[&str]| {
            let out = bed.roamgw(&roamgw, args);
            assert!(
                out.status.success(),
                "roamgw {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        ok(&[
            "init",
            "--public-ip",
            PUBLIC_IP,
            "--anchor-ip",
            ANCHOR_IP,
            "--floating-ip",
            FLOATING_IP,
            "--wireguard",
            "userspace",
            "--interface",
            &bed.gw_wg,
        ]);
        ok(&["add-roamer", "laptop"]);
        ok(&["add-port", "22"]);
        let dir = bed.config_dir();
        let pid = bed.spawn_logged(
            &bed.gw,
            &[
                roamgw.to_str().expect("utf-8"),
                "--config-dir",
                dir.to_str().expect("utf-8"),
                "run",
            ],
            "daemon.log",
        );
        let socket = dir.join("roamgw.sock");
        let up = wait_until(Duration::from_secs(10), || {
            socket.exists()
                && bed
                    .gw
                    .output(&["nft", "list", "table", "ip", "roamgw"])
                    .status
                    .success()
        });
        assert!(up, "roamgw run did not come up:\n{}", bed.log("daemon.log"));
        let laptop = ok(&["show-config", "laptop", "--format", "wg-quick"]);
        bed.wg_quick_up(&bed.roam, &bed.roam_wg, &laptop);
        let roam = bed.roam.clone();
        let tunnel = wait_until(Duration::from_secs(10), || {
            roam.output(&["ping", "-c1", "-W1", "192.168.32.1"])
                .status
                .success()
        });
        assert!(
            tunnel,
            "no tunnel to roamgw's userspace device:\n{}",
            bed.log("daemon.log")
        );
        bed.tcp_banner_server(&bed.roam, 22, "roamer");
        bed.tcp_banner_server(&bed.gw, 22, "droplet");
        Gateway { bed, pid }
    }

    fn roamgw(&self, args: &[&str]) -> std::process::Output {
        self.bed.roamgw(&binary("roamgw"), args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.roamgw(args);
        assert!(
            out.status.success(),
            "roamgw {args:?}: {}\ndaemon log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.bed.log("daemon.log")
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

#[test]
fn full_scenario_through_our_own_device() {
    let gw = Gateway::start();
    let b = &gw.bed;
    assert_eq!(
        b.cli.tcp_banner(&format!("{FLOATING_IP}:22")).as_deref(),
        Some("roamer")
    );
    assert_eq!(
        b.cli.tcp_banner(&format!("{PUBLIC_IP}:22")).as_deref(),
        Some("droplet")
    );

    // A change while the daemon runs is live when the command returns.
    b.tcp_banner_server(&b.roam, 8080, "roamer-8080");
    let out = gw.ok(&["add-port", "8080"]);
    assert!(out.contains("live"), "{out}");
    assert_eq!(
        b.cli.tcp_banner(&format!("{FLOATING_IP}:8080")).as_deref(),
        Some("roamer-8080")
    );

    // `wg show` works on the userspace device, and status has the roamer's endpoint.
    let wg = b.gw.run(&["wg", "show", &b.gw_wg]);
    assert!(
        wg.contains("peer:") && wg.contains("endpoint: 198.51.100.2"),
        "{wg}"
    );
    assert!(
        !wg.contains("years ago"),
        "handshake time must be fixed up: {wg}"
    );
    let status: serde_json::Value =
        serde_json::from_str(&gw.ok(&["status", "--json"])).expect("json");
    assert_eq!(status["daemon_running"], true);
    assert!(
        status["roamers"][0]["endpoint"]
            .as_str()
            .unwrap_or("")
            .starts_with("198.51.100.2:"),
        "{status}"
    );
}

#[test]
fn peer_changes_while_traffic_flows_keep_the_device_alive() {
    let gw = Gateway::start();
    let b = &gw.bed;
    // Traffic flowing through the tunnel the whole time.
    let mut stream = b
        .cli
        .connect(&format!("{FLOATING_IP}:22"), Duration::from_secs(2))
        .expect("connect");
    let _ = std::io::Read::read(&mut stream, &mut [0u8; 64]);
    // A second roamer, then the first one changed (removed and re-added by sync) via its
    // forwards' owner: remove-roamer --force and add it back is a peer change too.
    gw.ok(&["add-roamer", "phone"]);
    gw.ok(&["add-port", "2222:22", "--to", "phone"]);
    assert_eq!(
        b.cli.tcp_banner(&format!("{FLOATING_IP}:22")).as_deref(),
        Some("roamer"),
        "laptop lost after adding phone"
    );
    gw.ok(&["remove-roamer", "phone", "--force"]);
    assert_eq!(
        b.cli.tcp_banner(&format!("{FLOATING_IP}:22")).as_deref(),
        Some("roamer"),
        "laptop lost after removing phone"
    );
    assert!(
        b.gw.output(&["kill", "-0", &gw.pid.to_string()])
            .status
            .success(),
        "the daemon died:\n{}",
        b.log("daemon.log")
    );
    assert!(
        !b.log("daemon.log").contains("panicked"),
        "{}",
        b.log("daemon.log")
    );
}

#[test]
fn sigterm_takes_everything_down_and_a_restart_after_kill_9_comes_back() {
    let gw = Gateway::start();
    let b = &gw.bed;
    b.gw.run(&["kill", "-9", &gw.pid.to_string()]);
    let gone = wait_until(Duration::from_secs(5), || {
        !b.gw
            .output(&["ip", "link", "show", &b.gw_wg])
            .status
            .success()
    });
    assert!(gone, "the TUN interface outlived the killed daemon");
    // The killed process is gone once it is a zombie (the test process is its parent).
    let pid = gw.pid;
    let dead = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_or(true, |stat| stat.contains(") Z "))
    });
    assert!(dead, "the daemon did not die");
    // Restart with the leftover table and socket file in place.
    let roamgw = binary("roamgw");
    let dir = b.config_dir();
    let pid = b.spawn_logged(
        &b.gw,
        &[
            roamgw.to_str().expect("utf-8"),
            "--config-dir",
            dir.to_str().expect("utf-8"),
            "run",
        ],
        "daemon2.log",
    );
    // The new device has new sessions. A stock laptop handshakes again only once data it
    // sends goes unanswered for 15 s (keepalives do not count), so let it send some, as any
    // laptop in use would; the roamer service reconnects on its own and faster.
    b.spawn(&b.roam, &["ping", "-i", "0.5", "-w", "60", "192.168.32.1"]);
    let started = std::time::Instant::now();
    let back = wait_until(Duration::from_secs(60), || {
        b.cli.tcp_banner(&format!("{FLOATING_IP}:22")).as_deref() == Some("roamer")
    });
    assert!(
        back,
        "no forward after the restart:\n{}",
        b.log("daemon2.log")
    );
    eprintln!("forward back {:?} after the restart", started.elapsed());

    b.gw.run(&["kill", "-TERM", &pid.to_string()]);
    let down = wait_until(Duration::from_secs(5), || {
        !b.gw
            .output(&["nft", "list", "table", "ip", "roamgw"])
            .status
            .success()
            && !b
                .gw
                .output(&["ip", "link", "show", &b.gw_wg])
                .status
                .success()
    });
    assert!(
        down,
        "SIGTERM left the table or the interface:\n{}",
        b.log("daemon2.log")
    );
    assert!(
        !dir.join("roamgw.sock").exists(),
        "control socket left behind"
    );
}
