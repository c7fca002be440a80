//! Benchmark: `roamgw add-port` until live with 10, 1,000 and 10,000 forwards present, one
//! batch of N (`roamgw up` with N forwards in the state), and, in the same run, the manual
//! setup's way: one `firewall-cmd --add-rich-rule` per port on a real firewalld with 10 and
//! 100 rules present. Prints a markdown report; `bash bench/add-port.sh` puts it into
//! docs/benchmarks.md.
//!
//! Every figure is the wall time of one command run with `ip netns exec` in the gateway
//! namespace; the cost of `ip netns exec true` alone is reported beside them.

use std::time::{Duration, Instant};

use roamgw_e2e::bench::{ms, percentile, timed};
use roamgw_e2e::firewalld::Firewalld;
use roamgw_e2e::{binary, wait_until, Testbed, ANCHOR_IP};

const ROUNDS: usize = 30;
const MANUAL_ROUNDS: usize = 10;

fn main() {
    let bed = Testbed::new();
    let roamgw = binary("roamgw");
    let gw = &bed.gw;
    let mut exec_baseline: Vec<Duration> = (0..ROUNDS)
        .map(|_| timed(|| gw.output(&["true"])))
        .collect();
    let baseline = percentile(&mut exec_baseline, 0.5);

    println!("| forwards present | mode | roamgw add-port p50 | p95 | one batch of N (start) |");
    println!("|---:|---|---:|---:|---:|");
    let mut roamgw_p50: Vec<(u16, Duration)> = Vec::new();
    for size in [10u16, 1_000, 10_000] {
        for daemon in [false, true] {
            let run = |args: &[&str]| bed.roamgw(&roamgw, args);
            bed.init_with_laptop(if daemon { "userspace" } else { "external" }, &["--force"]);
            bed.preload_forwards(size);
            let dir = bed.config_dir();
            let socket = dir.join("roamgw.sock");
            let (batch, pid) = if daemon {
                let start = Instant::now();
                let pid = bed.start_roamgw_run(Duration::from_secs(30));
                (start.elapsed(), Some(pid))
            } else {
                (timed(|| run(&["up"])), None)
            };
            let mut samples: Vec<Duration> = (0..ROUNDS as u16)
                .map(|i| timed(|| run(&["add-port", &(10_000 + i).to_string()])))
                .collect();
            let p50 = percentile(&mut samples, 0.5);
            if daemon {
                roamgw_p50.push((size, p50));
            }
            println!(
                "| {size} | {} | {} | {} | {} |",
                if daemon {
                    "`roamgw run` up"
                } else {
                    "CLI alone (external WireGuard)"
                },
                ms(p50),
                ms(percentile(&mut samples, 0.95)),
                ms(batch)
            );
            match pid {
                Some(pid) => {
                    gw.run(&["kill", "-TERM", &pid.to_string()]);
                    assert!(wait_until(Duration::from_secs(10), || !socket.exists()));
                }
                None => assert!(run(&["down"]).status.success()),
            }
        }
    }

    let firewalld = Firewalld::start(&bed, gw);
    let rich = |port: u16| {
        format!(
            "rule family=ipv4 destination address={ANCHOR_IP}/32 forward-port port={port} protocol=tcp to-port={port} to-addr=192.168.32.2"
        )
    };
    println!();
    println!("| rich rules present | manual `firewall-cmd --add-rich-rule` p50 | p95 |");
    println!("|---:|---:|---:|");
    let mut present = 0u16;
    let mut manual_p50: Vec<(u16, Duration)> = Vec::new();
    for size in [10u16, 100] {
        // Preload in one call: firewall-cmd takes many --add-rich-rule at once.
        let preload: Vec<String> = (present..size)
            .map(|i| format!("--add-rich-rule={}", rich(20_000 + i)))
            .collect();
        let preload: Vec<&str> = preload.iter().map(String::as_str).collect();
        assert!(firewalld.cmd(gw, &preload).status.success());
        present = size;
        let mut samples: Vec<Duration> = (0..MANUAL_ROUNDS as u16)
            .map(|i| {
                let rule = rich(40_000 + size + i);
                timed(|| firewalld.cmd(gw, &[&format!("--add-rich-rule={rule}")]))
            })
            .collect();
        present += MANUAL_ROUNDS as u16;
        let p50 = percentile(&mut samples, 0.5);
        manual_p50.push((size, p50));
        println!(
            "| {size} | {} | {} |",
            ms(p50),
            ms(percentile(&mut samples, 0.95))
        );
    }
    let ratio = |manual: Duration, ours: Duration| manual.as_secs_f64() / ours.as_secs_f64();
    if let (
        Some((_, ours_small)),
        Some((_, ours_large)),
        Some((_, manual_small)),
        Some((_, manual_large)),
    ) = (
        roamgw_p50.first(),
        roamgw_p50.last(),
        manual_p50.first(),
        manual_p50.last(),
    ) {
        println!();
        println!(
            "Ratio of p50s, manual / roamgw (with `roamgw run`): {:.0}x with 10 forwards each; {:.0}x for the manual way with 100 rules against roamgw with 10,000 forwards.",
            ratio(*manual_small, *ours_small),
            ratio(*manual_large, *ours_large)
        );
    }
    println!();
    println!(
        "`ip netns exec <ns> true` alone: {} (p50), included in every figure above. {ROUNDS} rounds per roamgw size, {MANUAL_ROUNDS} per manual size.",
        ms(baseline)
    );
}
