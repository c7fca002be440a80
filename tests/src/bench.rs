//! Small helpers the benchmark binaries share.

use std::time::{Duration, Instant};

use roamgw_common::state::Forward;

/// The `p` quantile (0..=1) of `samples` (sorted in place).
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

/// Times as a report cell: the median in bold, then each (`> CAP s` for one that never came).
pub fn secs_cell(values: &[Option<Duration>], cap: Duration) -> String {
    let listed: Vec<String> = values
        .iter()
        .map(|v| {
            v.map_or(format!("> {}", cap.as_secs()), |d| {
                format!("{:.2}", d.as_secs_f64())
            })
        })
        .collect();
    let ok: Vec<f64> = values.iter().flatten().map(Duration::as_secs_f64).collect();
    format!(
        "**{:.2} s** ({})",
        if ok.is_empty() {
            f64::NAN
        } else {
            crate::median(&ok)
        },
        listed.join(" / ")
    )
}

/// `roamer status --json`'s `field` and the health state, as `value/state` (`?` for missing).
pub fn roamer_status_and_health(s: &crate::Scenario, field: &str) -> String {
    let out = s.roamer(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    format!(
        "{}/{}",
        json[field].as_str().unwrap_or("?"),
        json["health"]["state"].as_str().unwrap_or("?")
    )
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Wall time of a command that must succeed.
pub fn timed(f: impl FnOnce() -> std::process::Output) -> Duration {
    let start = Instant::now();
    let out = f();
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

/// wireguard-go 0.0.20250522 (TUN offloads, UDP GSO/GRO), the strongest userspace WireGuard
/// we compare with: the static build in ../shared/anchors next to this repository, or
/// `WIREGUARD_GO_2025`.
pub fn wireguard_go_2025() -> String {
    let path = std::env::var("WIREGUARD_GO_2025")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/anchors/wireguard-go-0.0.20250522")
        });
    let path = path
        .canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e} (set WIREGUARD_GO_2025)", path.display()));
    path.to_str().expect("utf-8").to_string()
}

/// A plain TCP forward of `port` to roamer `laptop`.
pub fn forward(port: u16) -> Forward {
    format!("{port}/tcp -> laptop").parse().expect("forward")
}

/// Mbit/s an iperf3 client in `client` got through to `target:port` in `seconds`.
pub fn iperf_mbit(client: &crate::Ns, target: &str, port: u16, seconds: u32) -> f64 {
    iperf_run(client, target, port, seconds, false).0
}

/// CPU time (user + system, all threads) a process has used, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and
    // 13th of them.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    ticks as f64 / rustix::param::clock_ticks_per_second() as f64
}

/// The pids of the processes in namespace `ns` whose command name starts with `prefix`.
pub fn pids_named(ns: &crate::Ns, prefix: &str) -> Vec<u32> {
    ns.run(&["ip", "netns", "pids", &ns.name])
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim().starts_with(prefix))
        })
        .collect()
}

/// One iperf3 TCP run: Mbit/s and bytes received; `reverse`: the server sends (iperf3 -R).
pub fn iperf_run(
    client: &crate::Ns,
    target: &str,
    port: u16,
    seconds: u32,
    reverse: bool,
) -> (f64, u64) {
    let port = port.to_string();
    let seconds = seconds.to_string();
    let mut args = vec!["iperf3", "-c", target, "-p", &port, "-t", &seconds, "-J"];
    if reverse {
        args.push("-R");
    }
    let out = client.output(&args);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let received = &json["end"]["sum_received"];
    match (
        received["bits_per_second"].as_f64(),
        received["bytes"].as_u64(),
    ) {
        (Some(bps), Some(bytes)) => (bps / 1e6, bytes),
        _ => panic!(
            "iperf3 to {target} failed: {}",
            String::from_utf8_lossy(&out.stdout)
        ),
    }
}

/// `count` round trips of 100-byte messages, 10 ms apart, from `client` over one TCP
/// connection to an echo server at `target`: (p50, p99).
pub fn ping_pongs(client: &crate::Ns, target: &str, count: usize) -> (Duration, Duration) {
    use std::io::{Read as _, Write as _};
    let mut stream = client
        .connect(target, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("connect to the echo server {target}: {e}"));
    stream.set_nodelay(true).expect("nodelay");
    let message = [b'x'; 100];
    let mut back = [0u8; 100];
    let mut rtts: Vec<Duration> = (0..count)
        .map(|_| {
            let sent = Instant::now();
            stream.write_all(&message).expect("write");
            stream.read_exact(&mut back).expect("echo");
            let rtt = sent.elapsed();
            std::thread::sleep(Duration::from_millis(10));
            rtt
        })
        .collect();
    (percentile(&mut rtts, 0.5), percentile(&mut rtts, 0.99))
}
