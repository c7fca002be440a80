//! Benchmark: the gateway under handshake floods, roamgw against wireguard-go 0.0.20250522
//! (../shared/anchors) as the gateway's WireGuard (with roamgw's rules, `--wireguard
//! external`), in one run on the same testbed. For each: idle, then a flood from the client
//! namespace at the gateway's port for `FLOOD` s (junk; valid-mac1 initiations from one host;
//! the same from 1,000 forged sources): round trips through an established forward (p50, p99,
//! lost), the gateway's CPU, and a roamer that restarts during a flood: time until its forward
//! answers. Prints a markdown report; `bash bench/flood.sh` puts it into docs/benchmarks.md.

use std::time::{Duration, Instant};

use roamgw_e2e::bench::{cpu_seconds, percentile, pids_named, wireguard_go_2025};
use roamgw_e2e::flood::{flood, gateway_key, round_trips, route_spoofed_sources, Flood};
use roamgw_e2e::{wait_until, Testbed, FLOATING_IP, PUBLIC_IP};

const ECHO: u16 = 7;
const PROBE: Duration = Duration::from_secs(4);
const FLOOD: Duration = Duration::from_secs(5);
const CAP: Duration = Duration::from_secs(9);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gateway {
    Ours,
    WireguardGo,
}

impl Gateway {
    fn name(self) -> &'static str {
        match self {
            Gateway::Ours => "roamgw",
            Gateway::WireguardGo => "wireguard-go 0.0.20250522",
        }
    }
}

/// The testbed with the roamer connected and forwards 7 (echo) and 22 (banner); the pids of
/// the gateway's WireGuard process and of the roamer.
fn setup(gateway: Gateway) -> (Testbed, u32, u32) {
    let bed = Testbed::new();
    let wireguard = match gateway {
        Gateway::Ours => "userspace",
        Gateway::WireguardGo => "external",
    };
    bed.init_with_laptop(wireguard, &[]);
    bed.roamgw_ok(&["add-port", &ECHO.to_string()]);
    bed.roamgw_ok(&["add-port", "22"]);
    let pid = match gateway {
        Gateway::Ours => bed.start_roamgw_run(Duration::from_secs(20)),
        Gateway::WireguardGo => {
            let config = bed.roamgw_ok(&["show-config", "--gateway", "--format", "wg-quick"]);
            bed.wg_quick_up_with(&bed.gw, &bed.gw_wg, &config, &wireguard_go_2025());
            bed.roamgw_ok(&["up"]);
            pids_named(&bed.gw, "wireguard-go")[0]
        }
    };
    bed.tcp_echo_server(&bed.roam, ECHO);
    bed.tcp_banner_server(&bed.roam, 22, "roamer");
    let roamer = start_roamer(&bed);
    assert!(
        bed.tunnel_answers_within(Duration::from_secs(15)),
        "the tunnel did not come up ({})",
        gateway.name()
    );
    route_spoofed_sources(&bed);
    (bed, pid, roamer)
}

/// Stops the roamer `pid` (SIGTERM: it takes its tunnel down) and waits until it has.
fn stop_roamer(bed: &Testbed, pid: u32) {
    bed.roam.run(&["kill", "-TERM", &pid.to_string()]);
    let gone = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_or(true, |stat| stat.contains(") Z "))
    });
    assert!(gone, "the roamer did not stop");
}

fn start_roamer(bed: &Testbed) -> u32 {
    let config = bed.roamgw_ok(&["show-config", "laptop", "--format", "roamer"]);
    bed.spawn_roamer(&config, &[])
}

struct Row {
    flood: &'static str,
    sent_per_sec: f64,
    p50: Duration,
    p99: Duration,
    answered: usize,
    lost: usize,
    cpu_percent: f64,
    new_handshake: Option<Duration>,
}

fn measure(bed: &Testbed, pid: u32, roamer: &mut u32, key: [u8; 32], kind: Option<Flood>) -> Row {
    let target = format!("{PUBLIC_IP}:51820");
    let flooding = kind.map(|k| flood(&bed.cli, &target, key, k, FLOOD));
    std::thread::sleep(Duration::from_millis(500));
    let cpu = cpu_seconds(pid);
    let started = Instant::now();
    let mut trips = round_trips(
        &bed.cli,
        &format!("{FLOATING_IP}:{ECHO}"),
        PROBE,
        Duration::from_millis(10),
    );
    let cpu_percent = (cpu_seconds(pid) - cpu) / started.elapsed().as_secs_f64() * 100.0;
    let sent = flooding.map_or(0, |f| f.join().expect("flood"));
    // A roamer that must handshake anew while the same flood goes on.
    let flooding = kind.map(|k| flood(&bed.cli, &target, key, k, CAP + FLOOD));
    std::thread::sleep(Duration::from_millis(500));
    stop_roamer(bed, *roamer);
    let since = Instant::now();
    *roamer = start_roamer(bed);
    let new_handshake = bed.time_until_banner(&format!("{FLOATING_IP}:22"), "roamer", since, CAP);
    if let Some(f) = flooding {
        f.join().expect("flood");
    }
    let (p50, p99) = if trips.times.is_empty() {
        (Duration::ZERO, Duration::ZERO)
    } else {
        (
            percentile(&mut trips.times, 0.5),
            percentile(&mut trips.times, 0.99),
        )
    };
    Row {
        flood: match kind {
            None => "none (idle)",
            Some(Flood::Junk) => "junk, one host",
            Some(Flood::Initiations) => "valid-mac1 initiations, one host",
            Some(Flood::Spoofed) => "valid-mac1 initiations, 1,000 forged sources",
        },
        sent_per_sec: sent as f64 / FLOOD.as_secs_f64(),
        p50,
        p99,
        answered: trips.times.len(),
        lost: trips.lost,
        cpu_percent,
        new_handshake,
    }
}

fn main() {
    println!("| gateway | flood | sent/s | established forward p50 / p99 | lost | gateway CPU | new handshake during the flood |");
    println!("|---|---|---|---|---|---|---|");
    for gateway in [Gateway::Ours, Gateway::WireguardGo] {
        let (bed, pid, mut roamer) = setup(gateway);
        let key = gateway_key(&bed.roamgw_ok(&["show-config", "laptop", "--format", "wg-quick"]));
        for kind in [
            None,
            Some(Flood::Junk),
            Some(Flood::Initiations),
            Some(Flood::Spoofed),
        ] {
            let r = measure(&bed, pid, &mut roamer, key, kind);
            println!(
                "| {} | {} | {:.0} | {:.2} / {:.2} ms | {} of {} | {:.0} % | {} |",
                gateway.name(),
                r.flood,
                r.sent_per_sec,
                r.p50.as_secs_f64() * 1e3,
                r.p99.as_secs_f64() * 1e3,
                r.lost,
                r.answered + r.lost,
                r.cpu_percent,
                r.new_handshake
                    .map_or(format!("> {} s", CAP.as_secs()), |d| format!(
                        "{:.2} s",
                        d.as_secs_f64()
                    )),
            );
        }
    }
    println!();
    println!(
        "Release builds on the namespace internet. Each flood comes from one thread in the client \
         namespace for {} s at the gateway's WireGuard port; round trips: one line through an \
         open forwarded connection every 10 ms for {} s, lost when unanswered within 1 s; CPU: \
         the gateway's WireGuard process (all threads) meanwhile; new handshake: the roamer \
         restarted during the same flood until its forward answers (process start included). \
         Both gateways run roamgw's nftables rules, whose per-source limit on initiations \
         (20 a second) applies to both.",
        FLOOD.as_secs(),
        PROBE.as_secs()
    );
}
