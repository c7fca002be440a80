//! Benchmark: the roamer on networks that pass no UDP (WireGuard over TCP), in one run against
//! UDP on the same testbed:
//! (a) joining a network that passes no UDP but DNS (the laptop's address changes while the
//!     CGNAT blocks UDP) until the forward answers, `TRIALS` times;
//! (b) forwarded throughput (iperf3 TCP, `RUNS` runs of `SECONDS` s) over UDP and over TCP,
//!     clean and with 1 % loss either way on the laptop's link;
//! (c) ping-pong latency through an open forwarded connection (one line echoed, `PINGS` times);
//! (d) from UDP passing again until the roamer is back on it, `TRIALS` times;
//! (e) `roamgw run`'s RSS with 1,000 connections held open on the TCP port by an outsider, and
//!     a laptop joining over TCP meanwhile.
//! Prints a markdown report; `bash bench/transport.sh` puts it into docs/benchmarks.md.

use std::io::{BufRead, BufReader, Write};
use std::time::{Duration, Instant};

use roamgw_e2e::bench::{iperf_mbit, roamer_status_and_health, secs_cell};
use roamgw_e2e::{
    hostile, median, rss_kib, wait_until, GatewayMode, Laptop, Scenario, FLOATING_IP, PUBLIC_IP,
};

const TRIALS: usize = 5;
const RUNS: usize = 3;
const SECONDS: u32 = 5;
const PINGS: usize = 200;
const IPERF: u16 = 5201;
const CAP: Duration = Duration::from_secs(20);

fn transport(s: &Scenario) -> String {
    roamer_status_and_health(s, "transport")
}

fn await_transport(s: &Scenario, wanted: &str, within: Duration) -> Option<Duration> {
    let since = Instant::now();
    wait_until(within, || transport(s) == format!("{wanted}/up")).then(|| since.elapsed())
}

/// Moves the laptop to the other of two addresses: a new network as far as it can tell.
fn join(s: &Scenario, trial: usize) {
    s.bed.move_laptop(if trial.is_multiple_of(2) {
        "100.64.0.3"
    } else {
        "100.64.0.2"
    });
}

fn throughput(s: &Scenario) -> f64 {
    let runs: Vec<f64> = (0..RUNS)
        .map(|_| iperf_mbit(&s.bed.cli, FLOATING_IP, IPERF, SECONDS))
        .collect();
    median(&runs)
}

/// Median round trip of one short line through the echo forward, in ms.
fn ping_pong(s: &Scenario) -> f64 {
    let stream = s
        .bed
        .cli
        .connect(&format!("{FLOATING_IP}:7"), Duration::from_secs(10))
        .expect("connect to the echo forward");
    let mut reader = BufReader::new(stream);
    let mut times = Vec::with_capacity(PINGS);
    let mut line = String::new();
    for _ in 0..PINGS {
        let sent = Instant::now();
        reader.get_mut().write_all(b"ping\n").expect("write");
        line.clear();
        reader.read_line(&mut line).expect("echo");
        times.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    median(&times)
}

fn scenario() -> Scenario {
    let s = Scenario::gateway_only(GatewayMode::Daemon, &[], false);
    s.ok(&["tcp-fallback", "443"]);
    let s = s.connect_laptop(Laptop::Roamer);
    s.bed
        .spawn(&s.bed.roam, &["iperf3", "-s", "-p", &IPERF.to_string()]);
    s.bed.tcp_echo_server(&s.bed.roam, 7);
    s.ok(&["add-port", &IPERF.to_string()]);
    s.ok(&["add-port", "7"]);
    s.ok(&["add-port", "22"]);
    assert!(await_transport(&s, "udp", Duration::from_secs(10)).is_some());
    s
}

/// What 1,000 silent connections on the TCP port cost, and whether a laptop gets in meanwhile.
struct Crowd {
    held: usize,
    rss_before: u64,
    rss_held: u64,
    joined: Option<Duration>,
}

/// 1,000 connections that never speak, held 4 s (the limit closes them after 5 s), and a
/// laptop joining over TCP meanwhile.
fn crowded(s: &Scenario) -> Crowd {
    let daemon = s.daemon.expect("daemon pid").to_string();
    let rss_before = rss_kib(&daemon);
    s.bed.spawn(
        &s.bed.cli,
        &[
            "python3",
            "-c",
            &format!(
                "import socket, time\nheld = [socket.create_connection(('{PUBLIC_IP}', 443)) for _ in range(1000)]\ntime.sleep(4)\n"
            ),
        ],
    );
    std::thread::sleep(Duration::from_secs(2));
    let held = String::from_utf8_lossy(
        &s.bed
            .gw
            .output(&["ss", "-Htn", "state", "established", "sport = :443"])
            .stdout,
    )
    .lines()
    .count();
    let rss_held = rss_kib(&daemon);
    let since = Instant::now();
    join(s, TRIALS);
    let joined = s
        .bed
        .time_until_banner(&format!("{FLOATING_IP}:22"), "roamer", since, CAP);
    Crowd {
        held,
        rss_before,
        rss_held,
        joined,
    }
}

/// `bench-transport throughput`: only (b) without loss, for work on the relay.
fn throughput_only(s: &Scenario) {
    let udp = throughput(s);
    hostile::block_udp(&s.bed);
    join(s, 0);
    assert!(
        await_transport(s, "tcp", CAP).is_some(),
        "never moved to TCP"
    );
    let tcp = throughput(s);
    println!(
        "UDP {udp:.0} Mbit/s, TCP {tcp:.0} Mbit/s ({:.2}× UDP)",
        tcp / udp
    );
}

fn main() {
    let s = scenario();
    if std::env::args().nth(1).as_deref() == Some("throughput") {
        return throughput_only(&s);
    }
    let udp = (throughput(&s), ping_pong(&s));
    hostile::lose(&s.bed, 1);
    let udp_lossy = throughput(&s);
    hostile::stop_losing(&s.bed);

    hostile::block_udp(&s.bed);
    let joins: Vec<Option<Duration>> = (0..TRIALS)
        .map(|trial| {
            let since = Instant::now();
            join(&s, trial);
            s.bed
                .time_until_banner(&format!("{FLOATING_IP}:22"), "roamer", since, CAP)
                .and_then(|_| await_transport(&s, "tcp", CAP).map(|_| since.elapsed()))
        })
        .collect();
    let tcp = (throughput(&s), ping_pong(&s));
    hostile::lose(&s.bed, 1);
    let tcp_lossy = throughput(&s);
    hostile::stop_losing(&s.bed);

    let crowd = crowded(&s);

    let backs: Vec<Option<Duration>> = (0..TRIALS)
        .map(|trial| {
            hostile::block_udp(&s.bed);
            join(&s, trial);
            await_transport(&s, "tcp", CAP);
            hostile::unblock_udp(&s.bed);
            await_transport(&s, "udp", Duration::from_secs(40))
        })
        .collect();

    println!("| transport | forwarded throughput, Mbit/s | with 1 % loss, Mbit/s | ping-pong through a forward, ms |");
    println!("|---|---|---|---|");
    println!("| UDP | {:.0} | {:.0} | {:.3} |", udp.0, udp_lossy, udp.1);
    println!(
        "| TCP (`roamgw tcp-fallback`) | {:.0} ({:.2}× UDP) | {:.0} ({:.2}× UDP) | {:.3} ({:.2}× UDP) |",
        tcp.0,
        tcp.0 / udp.0,
        tcp_lossy,
        tcp_lossy / udp_lossy,
        tcp.1,
        tcp.1 / udp.1
    );
    println!();
    println!("| event | roamer: median (trials) |");
    println!("|---|---|");
    println!(
        "| joins a network that passes no UDP but DNS → the forward answers over TCP | {} |",
        secs_cell(&joins, CAP)
    );
    println!(
        "| UDP passes again → the tunnel is back on UDP | {} |",
        secs_cell(&backs, CAP)
    );
    println!();
    println!(
        "`roamgw run` (userspace WireGuard) and `roamer run` on the namespace internet; iperf3 TCP from \
         the outside client through the floating IP to the laptop, median of {RUNS} runs of {SECONDS} s; \
         loss: the CGNAT drops 1 % of what it forwards either way at random (nftables `numgen`; this \
         kernel has no netem); ping-pong: median of {PINGS} round trips of one line over an open \
         forwarded connection. No UDP: the CGNAT drops all UDP but DNS, and the laptop's address \
         changes (a new network). Back to UDP: the roamer checks UDP beside the tunnel every 30 s."
    );
    println!();
    println!(
        "An outsider holding 1,000 silent connections to the TCP port ({} established at the \
         droplet when measured): `roamgw run`'s RSS {:.1} MB, {:.1} MB before; a laptop joining over \
         TCP meanwhile answered after {}.",
        crowd.held,
        crowd.rss_held as f64 / 1024.0,
        crowd.rss_before as f64 / 1024.0,
        crowd.joined.map_or(format!("more than {} s", CAP.as_secs()), |d| format!("{:.2} s", d.as_secs_f64()))
    );
}
