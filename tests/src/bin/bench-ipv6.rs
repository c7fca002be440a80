//! Benchmark: the tunnel over IPv6 against over IPv4, in one run on the dual-stack testbed
//! (`roamgw run` with its userspace device, `roamer run`, `roamgw endpoint6`):
//! (a) forwarded throughput (iperf3 TCP from the client to the floating IP, `SECONDS` s) and
//!     the CPU both WireGuard ends spend per GB, the families alternating `RUNS` times;
//! (b) moving the laptop from an IPv4-only network to an IPv6-only one until the forward
//!     answers, `TRIALS` times;
//! (c) the happy-eyeballs race's own time (the roamer's log) joining a dual-stack network
//!     (IPv6 answers) and one whose IPv6 drops everything (IPv4 wins), `TRIALS` times each.
//! Prints a markdown report; `bash bench/ipv6.sh` puts it into docs/benchmarks.md.
//! `DEBUG_IPV6=1` also prints the roamer's log of each move to an IPv6-only network.

use std::time::{Duration, Instant};

use roamgw_e2e::bench::{cpu_seconds, iperf_mbit, roamer_status_and_health, secs_cell};
use roamgw_e2e::dualstack::GATEWAY6;
use roamgw_e2e::{median, wait_until, GatewayMode, Laptop, Scenario, FLOATING_IP};

const TRIALS: usize = 5;
const RUNS: usize = 3;
const SECONDS: u32 = 5;
const IPERF: u16 = 5201;
const CAP: Duration = Duration::from_secs(20);

fn family(s: &Scenario) -> String {
    roamer_status_and_health(s, "gateway_family")
}

/// A new network for the laptop: its address changes (a move between two, by `trial`), with
/// IPv4, IPv6 or both; returns once the forward answers over `family` (`None`: not within CAP).
fn join(s: &Scenario, trial: usize, v4: bool, v6: bool, family_wanted: &str) -> Option<Duration> {
    let since = Instant::now();
    let address = if trial.is_multiple_of(2) {
        "100.64.0.3"
    } else {
        "100.64.0.2"
    };
    s.bed.move_laptop(address);
    if !v4 {
        s.bed.laptop_ipv6_only();
    }
    if v6 {
        s.bed.give_laptop_ipv6();
    }
    s.bed
        .time_until_banner(&format!("{FLOATING_IP}:22"), "roamer", since, CAP)?;
    let wanted = format!("{family_wanted}/up");
    wait_until(CAP, || family(s) == wanted).then(|| since.elapsed())
}

/// Throughput (Mbit/s) and CPU seconds per GB of both ends over the family in use.
fn throughput(s: &Scenario, pids: [u32; 2]) -> (f64, f64) {
    let cpu = || pids.iter().map(|&p| cpu_seconds(p)).sum::<f64>();
    let before = cpu();
    let mbit = iperf_mbit(&s.bed.cli, FLOATING_IP, IPERF, SECONDS);
    let gb = mbit * f64::from(SECONDS) / 8.0 / 1000.0;
    (mbit, (cpu() - before) / gb)
}

/// The race times (ms) the roamer logged after the first `skip` log lines.
fn race_times(s: &Scenario, skip: usize) -> Vec<f64> {
    s.bed
        .log("roamer.log")
        .lines()
        .skip(skip)
        .filter(|l| l.contains("happy eyeballs: the gateway answered"))
        .filter_map(|l| l.split("took_ms=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .collect()
}

fn log_lines(s: &Scenario) -> usize {
    s.bed.log("roamer.log").lines().count()
}

fn ms(values: &[f64]) -> String {
    let listed: Vec<String> = values.iter().map(|v| format!("{v:.0}")).collect();
    format!("**{:.0} ms** ({})", median(values), listed.join(" / "))
}

fn main() {
    let s = Scenario::gateway_only(GatewayMode::Daemon, &["--endpoint6", GATEWAY6], false);
    s.bed.add_ipv6();
    let s = s.connect_laptop(Laptop::Roamer);
    s.bed
        .spawn(&s.bed.roam, &["iperf3", "-s", "-p", &IPERF.to_string()]);
    s.ok(&["add-port", &IPERF.to_string()]);
    s.ok(&["add-port", "22"]);
    let pids = [
        s.daemon.expect("daemon"),
        u32::try_from(s.roamer_pid()).expect("pid"),
    ];

    // (a) The families alternate, so drift in the machine's load touches both alike.
    let (mut v6, mut v4) = (Vec::new(), Vec::new());
    for run in 0..RUNS {
        assert!(
            join(&s, 2 * run, true, true, "ipv6").is_some(),
            "no IPv6 tunnel"
        );
        v6.push(throughput(&s, pids));
        s.bed.break_ipv6();
        assert!(
            join(&s, 2 * run + 1, true, true, "ipv4").is_some(),
            "no IPv4 tunnel"
        );
        v4.push(throughput(&s, pids));
        s.bed.repair_ipv6();
    }
    let med = |runs: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| {
        median(&runs.iter().map(f).collect::<Vec<_>>())
    };
    let (v6_mbit, v6_cpu) = (med(&v6, |r| r.0), med(&v6, |r| r.1));
    let (v4_mbit, v4_cpu) = (med(&v4, |r| r.0), med(&v4, |r| r.1));

    // (b) From an IPv4-only network to an IPv6-only one.
    let to_v6_only: Vec<Option<Duration>> = (0..TRIALS)
        .map(|trial| {
            assert!(
                join(&s, trial, true, false, "ipv4").is_some(),
                "no IPv4-only tunnel"
            );
            let skip = log_lines(&s);
            let took = join(&s, trial + 1, false, true, "ipv6");
            if std::env::var_os("DEBUG_IPV6").is_some() {
                for line in s.bed.log("roamer.log").lines().skip(skip) {
                    eprintln!("trial {trial}: {line}");
                }
            }
            took
        })
        .collect();

    // (c) The race itself.
    let mut dual_stack = Vec::new();
    let mut broken = Vec::new();
    for trial in 0..TRIALS {
        let skip = log_lines(&s);
        join(&s, trial, true, true, "ipv6");
        dual_stack.extend(race_times(&s, skip));
        s.bed.break_ipv6();
        let skip = log_lines(&s);
        join(&s, trial + 1, true, true, "ipv4");
        broken.extend(race_times(&s, skip));
        s.bed.repair_ipv6();
    }

    println!("| | tunnel over IPv4 | tunnel over IPv6 | IPv6 / IPv4 |");
    println!("|---|---|---|---|");
    println!(
        "| forwarded throughput (iperf3 TCP, median of {RUNS} × {SECONDS} s) | {v4_mbit:.0} Mbit/s | {v6_mbit:.0} Mbit/s | **{:.2}×** |",
        v6_mbit / v4_mbit
    );
    println!(
        "| CPU of both WireGuard ends per GB forwarded | {v4_cpu:.2} s | {v6_cpu:.2} s | {:.2}× |",
        v6_cpu / v4_cpu
    );
    println!();
    println!("| event | time |");
    println!("|---|---|");
    println!(
        "| from an IPv4-only network to an IPv6-only one: forward answers over IPv6 (median, {TRIALS} trials) | {} |",
        secs_cell(&to_v6_only, CAP)
    );
    println!(
        "| happy-eyeballs race joining a dual-stack network (IPv6 answers) | {} |",
        ms(&dual_stack)
    );
    println!(
        "| happy-eyeballs race joining a network whose IPv6 drops everything (IPv4 wins) | {} |",
        ms(&broken)
    );
    println!();
    println!(
        "Release builds on the dual-stack namespace internet: `roamgw run` (userspace WireGuard) \
         and `roamer run`, the laptop's IPv6 routed (no NAT) behind a stateful firewall, its \
         IPv4 behind the CGNAT's masquerade. A join is the laptop's address changing (its \
         network as far as it can tell); its time runs until the forward answers through the \
         floating IP and `roamer status` reports the family. The race time is the roamer's \
         own log line: from the first initiation to the first answer."
    );
}
