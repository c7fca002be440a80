//! Benchmark for the firewalld backend: `roamgw add-port` until live with 10 and 1,000
//! forwards present (CLI alone, and with `roamgw run`), against the manual setup's way in the
//! same run (one `firewall-cmd --add-rich-rule` per port, 10 and 1,000 rules present); all on
//! a real firewalld in the gateway namespace. Prints a markdown report; `bash
//! bench/firewalld.sh` puts it into docs/benchmarks.md.

use std::time::{Duration, Instant};

use roamgw_e2e::bench::{ms, percentile, timed};
use roamgw_e2e::firewalld::Firewalld;
use roamgw_e2e::{binary, Testbed, ANCHOR_IP};

const ROUNDS: u16 = 15;
const SIZES: [u16; 2] = [10, 1_000];

fn main() {
    let mut rows = Vec::new();
    let mut ours_at = Vec::new();
    for size in SIZES {
        for daemon in [false, true] {
            // A fresh firewalld per run: its permanent config lives in the testbed.
            let bed = Testbed::new();
            let _firewalld = Firewalld::start(&bed, &bed.gw);
            let roamgw = binary("roamgw");
            let run = |args: &[&str]| bed.roamgw(&roamgw, args);
            bed.init_with_laptop(
                if daemon { "userspace" } else { "external" },
                &["--backend", "firewalld"],
            );
            bed.preload_forwards(size);
            let start = Instant::now();
            if daemon {
                bed.start_roamgw_run(Duration::from_secs(60));
            } else {
                timed(|| run(&["up"]));
            }
            let batch = start.elapsed();
            let mut samples: Vec<Duration> = (0..ROUNDS)
                .map(|i| timed(|| run(&["add-port", &(10_000 + i).to_string()])))
                .collect();
            let p50 = percentile(&mut samples, 0.5);
            if daemon {
                ours_at.push((size, p50));
            }
            rows.push(format!(
                "| {size} | roamgw, firewalld backend, {} | {} | {} | {} |",
                if daemon {
                    "`roamgw run` up"
                } else {
                    "CLI alone"
                },
                ms(p50),
                ms(percentile(&mut samples, 0.95)),
                ms(batch)
            ));
        }
        // The manual way: one rich rule per port in the zone, runtime (as the manual setup does).
        let bed = Testbed::new();
        let firewalld = Firewalld::start(&bed, &bed.gw);
        let rich = |port: u16| {
            format!(
                "--add-rich-rule=rule family=ipv4 destination address={ANCHOR_IP}/32 forward-port port={port} protocol=tcp to-port={port} to-addr=192.168.32.2"
            )
        };
        let preload: Vec<String> = (0..size).map(|i| rich(20_000 + i)).collect();
        let preload: Vec<&str> = preload.iter().map(String::as_str).collect();
        let start = Instant::now();
        for chunk in preload.chunks(200) {
            assert!(firewalld.cmd(&bed.gw, chunk).status.success());
        }
        let batch = start.elapsed();
        let mut samples: Vec<Duration> = (0..ROUNDS.min(10))
            .map(|i| timed(|| firewalld.cmd(&bed.gw, &[&rich(40_000 + i)])))
            .collect();
        let p50 = percentile(&mut samples, 0.5);
        rows.push(format!(
            "| {size} | manual: `firewall-cmd --add-rich-rule` | {} | {} | {} |",
            ms(p50),
            ms(percentile(&mut samples, 0.95)),
            ms(batch)
        ));
        if let Some((_, ours)) = ours_at.iter().find(|(s, _)| *s == size) {
            rows.push(format!(
                "| {size} | ratio manual / `roamgw run` | {:.1}x | | |",
                p50.as_secs_f64() / ours.as_secs_f64()
            ));
        }
    }
    println!("| forwards present | how | add-port until live p50 | p95 | all N at start |");
    println!("|---:|---|---:|---:|---:|");
    for row in rows {
        println!("{row}");
    }
    println!();
    println!(
        "Each figure is the wall time of one command under `ip netns exec` in the gateway namespace, \
         with a real firewalld 1.3 (nftables backend) there. roamgw writes runtime and permanent \
         configuration over D-Bus; the manual way writes runtime only (its permanent copy would be \
         a second call). {ROUNDS} rounds per roamgw row, 10 per manual row."
    );
}
