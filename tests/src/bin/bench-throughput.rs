//! Benchmark: forwarded TCP throughput, internet client -> floating IP -> laptop, iperf3,
//! 3 runs each, all in one run:
//! (a) the raw path without tunnel (client -> the droplet's public IP), the limit;
//! (b) the manual setup: wg-quick + wireguard-go on both ends, firewalld rich rules;
//! (c) `roamgw run` (embedded userspace WireGuard) on the droplet, wg-quick + wireguard-go on the laptop;
//! (d) `roamgw run` and `roamer run` (the forward keeps the client's address); (e) (d) on the
//! firewalld backend; (f) (d) with `--client-ip masquerade`; (g) (b) with wireguard-go
//! 0.0.20250522 (../shared/anchors), the strongest userspace WireGuard today. For (d) and (f)
//! also the time to set up a connection through the forward (connect to the first byte of a
//! banner).
//! Also the RSS of `roamgw run` with 1 roamer and 1,000 forwards, and of `roamer run`. Prints
//! a markdown report; `bash bench/throughput.sh` puts it into docs/benchmarks.md.

use std::time::Duration;

use roamgw_e2e::firewalld::Firewalld;
use roamgw_e2e::{
    bench::{iperf_mbit, percentile, wireguard_go_2025},
    median, rss_kib, wait_until, Backend, GatewayMode, Laptop, Ns, Scenario, Testbed, ANCHOR_IP,
    FLOATING_IP, PUBLIC_IP,
};

const RUNS: usize = 3;
const SECONDS: u32 = 5;
const PORT: u16 = 5201;

fn runs(client: &Ns, target: &str) -> Vec<f64> {
    (0..RUNS)
        .map(|_| iperf_mbit(client, target, PORT, SECONDS))
        .collect()
}

fn wait_tunnel(bed: &Testbed) {
    assert!(
        bed.tunnel_answers_within(Duration::from_secs(15)),
        "tunnel did not come up"
    );
}

fn iperf_server(bed: &Testbed, ns: &Ns) {
    bed.spawn(ns, &["iperf3", "-s", "-p", &PORT.to_string()]);
    let ns = ns.clone();
    assert!(wait_until(Duration::from_secs(5), || {
        String::from_utf8_lossy(&ns.output(&["ss", "-ltn"]).stdout).contains(&format!(":{PORT}"))
    }));
}

fn raw() -> Vec<f64> {
    let bed = Testbed::new();
    iperf_server(&bed, &bed.gw);
    runs(&bed.cli, PUBLIC_IP)
}

/// The manual setup with `implementation` as both ends' userspace WireGuard.
fn manual(implementation: &str) -> Vec<f64> {
    let bed = Testbed::new();
    // The keys and tunnel of the manual setup, written by hand there; roamgw prints the same.
    bed.init_with_laptop("external", &[]);
    let gateway = bed.roamgw_ok(&["show-config", "--gateway", "--format", "wg-quick"]);
    let laptop = bed.roamgw_ok(&["show-config", "laptop", "--format", "wg-quick"]);
    let firewalld = Firewalld::start(&bed, &bed.gw);
    bed.wg_quick_up_with(&bed.gw, &bed.gw_wg, &gateway, implementation);
    bed.wg_quick_up_with(&bed.roam, &bed.roam_wg, &laptop, implementation);
    for rule in [
        "--add-port=51820/udp".to_string(),
        "--add-rich-rule=rule family=ipv4 destination address=192.168.32.2/32 masquerade".to_string(),
        format!(
            "--add-rich-rule=rule family=ipv4 destination address={ANCHOR_IP}/32 forward-port port={PORT} protocol=tcp to-port={PORT} to-addr=192.168.32.2"
        ),
    ] {
        let out = firewalld.cmd(&bed.gw, &[&rule]);
        assert!(out.status.success(), "firewall-cmd {rule}: {}", String::from_utf8_lossy(&out.stderr));
    }
    wait_tunnel(&bed);
    iperf_server(&bed, &bed.roam);
    runs(&bed.cli, FLOATING_IP)
}

fn roamgw_userspace() -> (Vec<f64>, u64) {
    let bed = Testbed::new();
    bed.init_with_laptop("userspace", &[]);
    bed.roamgw_ok(&["add-port", &PORT.to_string()]);
    // 999 more forwards, for the RSS figure with 1,000.
    bed.preload_forwards(999);
    let dir = bed.config_dir();
    let pid = bed.spawn_roamgw_run();
    let socket = dir.join("roamgw.sock");
    assert!(
        wait_until(Duration::from_secs(10), || socket.exists()),
        "roamgw run: {}",
        bed.log("daemon.log")
    );
    let laptop = bed.roamgw_ok(&["show-config", "laptop", "--format", "wg-quick"]);
    bed.wg_quick_up(&bed.roam, &bed.roam_wg, &laptop);
    wait_tunnel(&bed);
    iperf_server(&bed, &bed.roam);
    let results = runs(&bed.cli, FLOATING_IP);
    let rss_kib = rss_kib(&pid.to_string());
    (results, rss_kib)
}

/// Connections set up one after another through a forward to a banner server.
const CONNECTIONS: usize = 300;

/// (throughput runs, roamer RSS, p50 and p99 of connection set-up)
fn both_ours(client_ip: &str) -> (Vec<f64>, u64, (Duration, Duration)) {
    let s = Scenario::build_with(GatewayMode::Daemon, Laptop::Roamer, &[], false);
    s.ok(&["add-port", &PORT.to_string(), "--client-ip", client_ip]);
    s.ok(&["add-port", "7000", "--client-ip", client_ip]);
    s.bed.tcp_banner_server(&s.bed.roam, 7000, "roamer");
    iperf_server(&s.bed, &s.bed.roam);
    let results = runs(&s.bed.cli, FLOATING_IP);
    let rss_kib = rss_kib(&s.roamer_pid().to_string());
    let target = format!("{FLOATING_IP}:7000");
    let mut setups: Vec<Duration> = (0..CONNECTIONS)
        .map(|_| {
            let started = std::time::Instant::now();
            let banner = s.bed.cli.tcp_banner(&target);
            assert_eq!(banner.as_deref(), Some("roamer"), "through {target}");
            started.elapsed()
        })
        .collect();
    let setup = (percentile(&mut setups, 0.5), percentile(&mut setups, 0.99));
    (results, rss_kib, setup)
}

/// (d) on the firewalld backend, against a real firewalld in the gateway namespace.
fn both_ours_firewalld() -> Vec<f64> {
    let s = Scenario::gateway_on(GatewayMode::Daemon, Backend::Firewalld, &[], false)
        .connect_laptop(Laptop::Roamer);
    s.ok(&["add-port", &PORT.to_string()]);
    iperf_server(&s.bed, &s.bed.roam);
    runs(&s.bed.cli, FLOATING_IP)
}

fn fmt(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.0}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// `BENCH_CASES=b,d` runs only those cases (for a quick look while tuning); the report needs
/// all of them.
fn selected(case: &str) -> bool {
    std::env::var("BENCH_CASES").map_or(true, |cases| cases.split(',').any(|c| c == case))
}

fn main() {
    let a = if selected("a") { raw() } else { vec![f64::NAN] };
    let b = if selected("b") {
        manual("wireguard-go")
    } else {
        vec![f64::NAN]
    };
    let g = if selected("g") {
        manual(&wireguard_go_2025())
    } else {
        vec![f64::NAN]
    };
    let (c, rss) = if selected("c") {
        roamgw_userspace()
    } else {
        (vec![f64::NAN], 0)
    };
    let none = || (vec![f64::NAN], 0, (Duration::ZERO, Duration::ZERO));
    let (d, roamer_rss, d_setup) = if selected("d") {
        both_ours("keep")
    } else {
        none()
    };
    let (f, _, f_setup) = if selected("f") {
        both_ours("masquerade")
    } else {
        none()
    };
    let e = if selected("e") {
        both_ours_firewalld()
    } else {
        vec![f64::NAN]
    };
    let (base, strongest) = (median(&b), median(&g));
    println!("| path | Mbit/s (3 runs) | median | ratio to (b) | ratio to (g) |");
    println!("|---|---:|---:|---:|---:|");
    for (name, values) in [
        ("(a) raw, no tunnel (client -> droplet public IP)", &a),
        (
            "(b) manual: wg-quick + wireguard-go both ends, firewalld rich rules",
            &b,
        ),
        (
            "(c) roamgw run (userspace) on the droplet, wg-quick + wireguard-go laptop",
            &c,
        ),
        (
            "(d) roamgw run on the droplet, roamer run on the laptop (userspace both ends)",
            &d,
        ),
        (
            "(e) as (d), on the firewalld backend (a real firewalld on the droplet)",
            &e,
        ),
        (
            "(f) as (d), with `--client-ip masquerade` (the manual setup's return path)",
            &f,
        ),
        (
            "(g) as (b) with wireguard-go 0.0.20250522 both ends (TUN offloads, UDP GSO/GRO)",
            &g,
        ),
    ] {
        println!(
            "| {name} | {} | {:.0} | {:.2}x | {:.2}x |",
            fmt(values),
            median(values),
            median(values) / base,
            median(values) / strongest
        );
    }
    println!();
    println!(
        "RSS of `roamgw run` with 1 roamer and 1,000 forwards, after the iperf3 runs: {:.1} MB. iperf3 TCP, {SECONDS} s per run; client, droplet and laptop share this machine's 2 cores.",
        rss as f64 / 1024.0
    );
    println!(
        "RSS of `roamer run` after the iperf3 runs: {:.1} MB.",
        roamer_rss as f64 / 1024.0
    );
    println!();
    println!("| connection set-up through the forward ({CONNECTIONS} in a row, connect to first byte) | p50 | p99 |");
    println!("|---|---:|---:|");
    for (name, (p50, p99)) in [
        ("(d) keep (the client's address)", d_setup),
        ("(f) masquerade", f_setup),
    ] {
        println!(
            "| {name} | {:.2} ms | {:.2} ms |",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
}
