//! Small helpers the benchmark binaries share.

use std::time::{Duration, Instant};

use roamgw_common::state::Forward;

/// The `p` quantile (0..=1) of `samples` (sorted in place).
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
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

/// A plain TCP forward of `port` to roamer `laptop`.
pub fn forward(port: u16) -> Forward {
    format!("{port}/tcp -> laptop").parse().expect("forward")
}

/// Mbit/s an iperf3 client in `client` got through to `target:port` in `seconds`, from
/// iperf3's JSON.
pub fn iperf_mbit(client: &crate::Ns, target: &str, port: u16, seconds: u32) -> f64 {
    let out = client.output(&[
        "iperf3",
        "-c",
        target,
        "-p",
        &port.to_string(),
        "-t",
        &seconds.to_string(),
        "-J",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let bps = json["end"]["sum_received"]["bits_per_second"].as_f64();
    bps.map(|b| b / 1e6).unwrap_or_else(|| {
        panic!(
            "iperf3 to {target} failed: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}
