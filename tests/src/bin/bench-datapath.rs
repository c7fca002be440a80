//! Benchmark (issue 19): roamgw's userspace data path against today's strongest userspace
//! WireGuard, wireguard-go 0.0.20250522 (TUN offloads, UDP GSO/GRO; ../shared/anchors), in one
//! run. The path is always the forward: internet client -> floating IP -> droplet (nft DNAT)
//! -> tunnel -> laptop, on the nftables backend.
//!
//! - Bulk TCP (iperf3, 3 runs of 4 s per direction) for each pair of ends: wireguard-go both
//!   ends, ours both ends (`roamgw run` + `roamer run`), and the two mixed pairs. CPU seconds
//!   (user + system of both tunnel processes) per GB moved, and each end's RSS sampled mid-run.
//! - Small packets: UDP at 64 and 512 bytes of payload (iperf3 -u, unlimited rate), packets
//!   per second that arrive, wireguard-go both ends against ours both ends.
//! - Latency under load: 100-byte TCP ping-pongs through a forward, idle and while a bulk
//!   transfer fills the tunnel.
//! - Many roamers: 200 configured on one `roamgw run`, 10 of them online (`roamer run` in 10
//!   laptop namespaces behind the CGNAT): one roamer alone, then all 10 pushing at once; and
//!   the time a restarted gateway takes until all 10 have handshaken again.
//!
//! Prints a markdown report; `bash bench/datapath.sh` puts it into docs/benchmarks.md.
//!
//! `bench-datapath quick` measures only ours both ends, bulk (for tuning).
//! `bench-datapath profile ours|wireguard-go [reverse]` instead profiles one pair with `perf`
//! (the whole machine, 6 s of an iperf3 run) and prints where the cycles go, by process and by
//! symbol.

use std::time::Duration;

use roamgw_e2e::bench::{cpu_seconds, iperf_run, pids_named, ping_pongs, wireguard_go_2025};
use roamgw_e2e::{binary, median, rss_kib, wait_until, Ns, Testbed, FLOATING_IP};

const RUNS: usize = 3;
const SECONDS: u32 = 4;
const PORT: u16 = 5201;
const ECHO_PORT: u16 = 7;
const PINGS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Ours,
    WireguardGo,
}

impl End {
    fn name(self) -> &'static str {
        match self {
            End::Ours => "roamgw",
            End::WireguardGo => "wireguard-go 0.0.20250522",
        }
    }
}

/// A testbed with the forward up between `gateway` and `laptop`; the tunnel processes' pids
/// (gateway's, laptop's).
fn setup(gateway: End, laptop: End) -> (Testbed, u32, u32) {
    let bed = Testbed::new();
    let wireguard = if gateway == End::Ours {
        "userspace"
    } else {
        "external"
    };
    bed.init_with_laptop(wireguard, &[]);
    // iperf3's UDP test sends its data to the port of its TCP control connection. Its server
    // connect()s a socket per client, which a kept client address would route past the
    // tunnel (docs/roamer.md): that one masquerades.
    bed.roamgw_ok(&["add-port", &PORT.to_string()]);
    bed.roamgw_ok(&[
        "add-port",
        &format!("{PORT}/udp"),
        "--client-ip",
        "masquerade",
    ]);
    bed.roamgw_ok(&["add-port", &ECHO_PORT.to_string()]);
    let gateway_pid = match gateway {
        End::Ours => bed.start_roamgw_run(Duration::from_secs(20)),
        End::WireguardGo => {
            let config = bed.roamgw_ok(&["show-config", "--gateway", "--format", "wg-quick"]);
            bed.wg_quick_up_with(&bed.gw, &bed.gw_wg, &config, &wireguard_go_2025());
            bed.roamgw_ok(&["up"]);
            only(
                pids_named(&bed.gw, "wireguard-go"),
                "the gateway's wireguard-go",
            )
        }
    };
    let laptop_pid = match laptop {
        End::Ours => {
            let config = bed.roamgw_ok(&["show-config", "laptop", "--format", "roamer"]);
            bed.spawn_roamer(&config, &[])
        }
        End::WireguardGo => {
            let config = bed.roamgw_ok(&["show-config", "laptop", "--format", "wg-quick"]);
            bed.wg_quick_up_with(&bed.roam, &bed.roam_wg, &config, &wireguard_go_2025());
            only(
                pids_named(&bed.roam, "wireguard-go"),
                "the laptop's wireguard-go",
            )
        }
    };
    assert!(
        bed.tunnel_answers_within(Duration::from_secs(15)),
        "the tunnel did not come up ({} gateway, {} laptop):\n{}\n{}",
        gateway.name(),
        laptop.name(),
        bed.log("daemon.log"),
        bed.log("roamer.log")
    );
    bed.spawn(&bed.roam, &["iperf3", "-s", "-p", &PORT.to_string()]);
    bed.spawn(
        &bed.roam,
        &[
            "socat",
            &format!("TCP-LISTEN:{ECHO_PORT},fork,reuseaddr"),
            "EXEC:cat",
        ],
    );
    let roam = bed.roam.clone();
    assert!(wait_until(Duration::from_secs(5), || {
        let listening = roam.run(&["ss", "-Htln"]);
        listening.contains(&format!(":{PORT}")) && listening.contains(&format!(":{ECHO_PORT}"))
    }));
    (bed, gateway_pid, laptop_pid)
}

fn only(pids: Vec<u32>, what: &str) -> u32 {
    match pids.as_slice() {
        [pid] => *pid,
        other => panic!("{what}: expected one process, found {other:?}"),
    }
}

/// One direction of one pair: Mbit/s of each run, CPU seconds per GB, and the largest RSS
/// seen of each end (KiB) half-way through a run.
struct Bulk {
    runs: Vec<f64>,
    cpu_per_gb: f64,
    rss_gateway: u64,
    rss_laptop: u64,
}

fn bulk(bed: &Testbed, pids: (u32, u32), reverse: bool) -> Bulk {
    let cpu = || cpu_seconds(pids.0) + cpu_seconds(pids.1);
    let (mut runs, mut bytes, mut rss) = (Vec::new(), 0u64, (0u64, 0u64));
    let before = cpu();
    for _ in 0..RUNS {
        let client = bed.cli.clone();
        let run =
            std::thread::spawn(move || iperf_run(&client, FLOATING_IP, PORT, SECONDS, reverse));
        std::thread::sleep(Duration::from_secs(u64::from(SECONDS) / 2));
        rss.0 = rss.0.max(rss_kib(&pids.0.to_string()));
        rss.1 = rss.1.max(rss_kib(&pids.1.to_string()));
        let (mbit, moved) = run.join().expect("iperf3");
        runs.push(mbit);
        bytes += moved;
    }
    Bulk {
        runs,
        cpu_per_gb: (cpu() - before) / (bytes as f64 / 1e9),
        rss_gateway: rss.0,
        rss_laptop: rss.1,
    }
}

/// Packets per second that arrive of an unlimited UDP stream with `payload` bytes each.
fn small_packets(client: &Ns, payload: u16) -> f64 {
    let out = client.output(&[
        "iperf3",
        "-c",
        FLOATING_IP,
        "-p",
        &PORT.to_string(),
        "-u",
        "-b",
        "0",
        "-l",
        &payload.to_string(),
        "-t",
        &SECONDS.to_string(),
        "-J",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let sum = &json["end"]["sum"];
    match (
        sum["packets"].as_f64(),
        sum["lost_packets"].as_f64(),
        sum["seconds"].as_f64(),
    ) {
        (Some(sent), Some(lost), Some(secs)) if secs > 0.0 => (sent - lost) / secs,
        _ => panic!("iperf3 -u failed: {}", String::from_utf8_lossy(&out.stdout)),
    }
}

/// Ping-pongs idle, then while a bulk transfer runs toward the laptop.
fn latency(bed: &Testbed) -> ((Duration, Duration), (Duration, Duration)) {
    let target = format!("{FLOATING_IP}:{ECHO_PORT}");
    let idle = ping_pongs(&bed.cli, &target, PINGS);
    let client = bed.cli.clone();
    let load = std::thread::spawn(move || iperf_run(&client, FLOATING_IP, PORT, 6, false));
    std::thread::sleep(Duration::from_millis(500));
    let loaded = ping_pongs(&bed.cli, &target, PINGS);
    let _ = load.join();
    (idle, loaded)
}

const CONFIGURED: u8 = 200;
const ONLINE: u8 = 10;

struct Many {
    single: Vec<f64>,
    aggregate: Vec<f64>,
    /// The new `roamgw run` started → every online roamer handshaken again.
    rehandshake: Vec<Duration>,
}

/// Handshake ages of the online roamers (`None`: never) from `roamgw status --json`.
fn handshake_ages(bed: &Testbed, names: &[String]) -> Vec<Option<u64>> {
    // Not roamgw_ok: status exits non-zero while the data plane is not up yet.
    let out = bed.roamgw(&binary("roamgw"), &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    names
        .iter()
        .map(|name| {
            status["roamers"]
                .as_array()
                .and_then(|all| all.iter().find(|r| r["name"] == name.as_str()))
                .and_then(|r| r["last_handshake_secs"].as_u64())
        })
        .collect()
}

fn many_roamers() -> Many {
    let bed = Testbed::new();
    bed.init_with_laptop("userspace", &[]);
    let names: Vec<String> = (1..=ONLINE).map(|n| format!("l{n}")).collect();
    for n in 1..CONFIGURED {
        bed.roamgw_ok(&["add-roamer", &format!("l{n}")]);
    }
    for (i, name) in names.iter().enumerate() {
        let public = (5301 + i).to_string();
        bed.roamgw_ok(&["add-port", &format!("{public}:{PORT}"), "--to", name]);
    }
    let mut gateway_pid = bed.start_roamgw_run(Duration::from_secs(30));
    for (n, name) in (1..=ONLINE).zip(&names) {
        let (ns, interface) = bed.add_laptop(n);
        let config = bed.roamgw_ok(&["show-config", name, "--format", "roamer"]);
        bed.spawn_roamer_in(&ns, &interface, &config, &[]);
        bed.spawn(&ns, &["iperf3", "-s", "-p", &PORT.to_string()]);
    }
    assert!(
        wait_until(Duration::from_secs(30), || handshake_ages(&bed, &names)
            .iter()
            .all(Option::is_some)),
        "not every roamer came online: {:?}",
        handshake_ages(&bed, &names)
    );
    let single = (0..RUNS)
        .map(|_| iperf_run(&bed.cli, FLOATING_IP, 5301, SECONDS, false).0)
        .collect();
    let aggregate = (0..RUNS)
        .map(|_| {
            let runs: Vec<_> = (0..usize::from(ONLINE))
                .map(|i| {
                    let client = bed.cli.clone();
                    let port = 5301 + i as u16;
                    std::thread::spawn(move || {
                        iperf_run(&client, FLOATING_IP, port, SECONDS, false)
                    })
                })
                .collect();
            runs.into_iter()
                .map(|r| r.join().expect("iperf3").0)
                .sum::<f64>()
        })
        .collect();
    let mut rehandshake = Vec::new();
    for _ in 0..RUNS {
        // The restarted daemon's device is new: any handshake it reports is fresh.
        bed.gw.run(&["kill", "-TERM", &gateway_pid.to_string()]);
        let gone = bed.config_dir().join("roamgw.sock");
        assert!(wait_until(Duration::from_secs(10), || !gone.exists()));
        let started = std::time::Instant::now();
        gateway_pid = bed.spawn_roamgw_run();
        let fresh = || handshake_ages(&bed, &names).iter().all(Option::is_some);
        assert!(
            wait_until(Duration::from_secs(30), fresh),
            "roamers did not handshake again: {:?}",
            handshake_ages(&bed, &names)
        );
        rehandshake.push(started.elapsed());
    }
    Many {
        single,
        aggregate,
        rehandshake,
    }
}

struct PairResult {
    gateway: End,
    laptop: End,
    to_laptop: Bulk,
    from_laptop: Bulk,
    /// Both ends the same: small packets at 64 and 512 bytes, and latency.
    small: Option<(f64, f64)>,
    latency: Option<((Duration, Duration), (Duration, Duration))>,
}

fn pair(gateway: End, laptop: End) -> PairResult {
    let (bed, gateway_pid, laptop_pid) = setup(gateway, laptop);
    let pids = (gateway_pid, laptop_pid);
    let to_laptop = bulk(&bed, pids, false);
    let from_laptop = bulk(&bed, pids, true);
    let same = gateway == laptop;
    let small = same.then(|| (small_packets(&bed.cli, 64), small_packets(&bed.cli, 512)));
    let latency = same.then(|| latency(&bed));
    PairResult {
        gateway,
        laptop,
        to_laptop,
        from_laptop,
        small,
        latency,
    }
}

fn runs_text(runs: &[f64]) -> String {
    runs.iter()
        .map(|v| format!("{v:.0}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Where the cycles go while `end` runs both ends of a bulk transfer.
fn profile(end: End, reverse: bool) {
    let (bed, _, _) = setup(end, end);
    let client = bed.cli.clone();
    let run = std::thread::spawn(move || iperf_run(&client, FLOATING_IP, PORT, 10, reverse));
    std::thread::sleep(Duration::from_secs(2));
    let data = bed.dir.path().join("perf.data");
    let data = data.to_str().expect("utf-8");
    let record = std::process::Command::new("perf")
        .args(["record", "-a", "-F", "2999", "-o", data, "--", "sleep", "6"])
        .output()
        .expect("perf record (apt-get install linux-perf)");
    assert!(
        record.status.success(),
        "perf record: {}",
        String::from_utf8_lossy(&record.stderr)
    );
    let (mbit, _) = run.join().expect("iperf3");
    println!(
        "{} both ends, {}: {mbit:.0} Mbit/s while profiled",
        end.name(),
        if reverse {
            "laptop → client"
        } else {
            "client → laptop"
        }
    );
    for sort in ["comm", "comm,dso", "comm,dso,symbol"] {
        let report = std::process::Command::new("perf")
            .args([
                "report",
                "-i",
                data,
                "--stdio",
                "--no-children",
                "--sort",
                sort,
                "--percent-limit",
                "0.8",
            ])
            .output()
            .expect("perf report");
        println!("{}", String::from_utf8_lossy(&report.stdout));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("profile") {
        let end = match args.get(1).map(String::as_str) {
            Some("wireguard-go") => End::WireguardGo,
            _ => End::Ours,
        };
        profile(end, args.get(2).map(String::as_str) == Some("reverse"));
        return;
    }
    if args.first().map(String::as_str) == Some("quick") {
        // While tuning: ours both ends, bulk only, no reference.
        let (bed, gateway_pid, laptop_pid) = setup(End::Ours, End::Ours);
        for (direction, reverse) in [("client → laptop", false), ("laptop → client", true)] {
            let b = bulk(&bed, (gateway_pid, laptop_pid), reverse);
            println!(
                "{direction}: {} Mbit/s, {:.2} CPU s/GB, RSS {:.1} / {:.1} MB",
                runs_text(&b.runs),
                b.cpu_per_gb,
                b.rss_gateway as f64 / 1024.0,
                b.rss_laptop as f64 / 1024.0
            );
        }
        return;
    }
    let pairs: Vec<PairResult> = [
        (End::WireguardGo, End::WireguardGo),
        (End::Ours, End::Ours),
        (End::Ours, End::WireguardGo),
        (End::WireguardGo, End::Ours),
    ]
    .into_iter()
    .map(|(g, l)| pair(g, l))
    .collect();
    let many = many_roamers();
    let reference = &pairs[0];
    let base = |b: &Bulk| median(&b.runs);
    println!("| gateway | laptop | direction | Mbit/s ({RUNS} runs) | median | vs wireguard-go both ends | CPU s/GB | vs | RSS gateway / laptop |");
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|");
    for p in &pairs {
        for (direction, b, r) in [
            ("client → laptop", &p.to_laptop, &reference.to_laptop),
            ("laptop → client", &p.from_laptop, &reference.from_laptop),
        ] {
            println!(
                "| {} | {} | {direction} | {} | {:.0} | {:.2}x | {:.2} | {:.2}x | {:.1} / {:.1} MB |",
                p.gateway.name(),
                p.laptop.name(),
                runs_text(&b.runs),
                base(b),
                base(b) / base(r),
                b.cpu_per_gb,
                b.cpu_per_gb / r.cpu_per_gb,
                b.rss_gateway as f64 / 1024.0,
                b.rss_laptop as f64 / 1024.0,
            );
        }
    }
    println!();
    println!("| both ends | UDP 64 B, packets/s arriving | UDP 512 B | ping-pong idle p50 / p99 | during bulk p50 / p99 |");
    println!("|---|---:|---:|---:|---:|");
    for p in pairs.iter().filter(|p| p.small.is_some()) {
        let (small, large) = p.small.unwrap_or_default();
        let ((idle50, idle99), (load50, load99)) = p.latency.unwrap_or_default();
        println!(
            "| {} | {small:.0} | {large:.0} | {} / {} | {} / {} |",
            p.gateway.name(),
            ms(idle50),
            ms(idle99),
            ms(load50),
            ms(load99)
        );
    }
    println!();
    let ours_single = median(&pairs[1].to_laptop.runs);
    println!(
        "| many roamers (`roamgw run` + `roamer run`) | Mbit/s ({RUNS} runs) | median | ratio |"
    );
    println!("|---|---:|---:|---:|");
    println!(
        "| one roamer, 1 configured (above) | {} | {ours_single:.0} | 1.00x |",
        runs_text(&pairs[1].to_laptop.runs)
    );
    println!(
        "| one roamer, {CONFIGURED} configured | {} | {:.0} | {:.2}x |",
        runs_text(&many.single),
        median(&many.single),
        median(&many.single) / ours_single
    );
    println!(
        "| {ONLINE} roamers at once, {CONFIGURED} configured (sum) | {} | {:.0} | {:.2}x of one roamer with {CONFIGURED} configured |",
        runs_text(&many.aggregate),
        median(&many.aggregate),
        median(&many.aggregate) / median(&many.single)
    );
    let rehandshake: Vec<String> = many
        .rehandshake
        .iter()
        .map(|d| format!("{:.2} s", d.as_secs_f64()))
        .collect();
    println!();
    println!(
        "Gateway restart (SIGTERM, start) with {CONFIGURED} roamers configured and {ONLINE} online: \
         from the new `roamgw run`'s start until all {ONLINE} have handshaken again: {} (read from \
         `roamgw status --json` in a loop, which answers once the daemon serves; the restarted \
         device starts without sessions, so any handshake it shows is new).",
        rehandshake.join(" / ")
    );
    println!();
    println!(
        "iperf3 TCP through the forward, {SECONDS} s per run; CPU s/GB: user + system seconds of \
         both tunnel processes (`roamgw run`, `roamer run`, or wireguard-go) per GB iperf3 \
         received, over the {RUNS} runs; RSS: VmRSS half-way through a run, largest of the runs. \
         Small packets: iperf3 -u -b 0 for {SECONDS} s toward the laptop, packets that arrived per \
         second. Ping-pong: {PINGS} round trips of 100 bytes over one TCP connection through a \
         forward to `socat … EXEC:cat` on the laptop, 10 ms apart (round-trip time). Client, \
         droplet and laptop share this machine's cores."
    );
}
