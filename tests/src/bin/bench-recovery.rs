//! Benchmark: how long until an incoming forwarded connection works again after
//! (a) the laptop's address changes behind the CGNAT, (b) the CGNAT forgets its mapping
//! (`conntrack -F`), (c) the gateway moves to a new address and its name follows.
//! `TRIALS` trials each, for `roamer run` and, in the same run, for stock wg-quick +
//! wireguard-go as the laptop; `roamgw run` is the gateway for both. Keepalive 2 s (the
//! default), and (b) again for the roamer at 10 s (the default before). Then what an idle
//! tunnel costs a day at keepalive 2, 10 and 25 s: packets, bytes and radio wake-ups on the
//! laptop's link (tcpdump). Also the RSS of `roamer run`. Prints a markdown report;
//! `bash bench/recovery.sh` puts it into docs/benchmarks.md.

use std::time::{Duration, Instant};

use roamgw_e2e::{
    median, rss_kib, GatewayMode, Laptop, Scenario, FLOATING_IP, GATEWAY_NAME, PUBLIC_IP,
};

const TRIALS: usize = 5;
/// Give up on a trial after this long (the roamer's bounds: keepalive + 1 s, probe interval
/// 10 s + 5 s).
const CAP: Duration = Duration::from_secs(20);
/// An idle tunnel is watched this long per keepalive setting.
const IDLE: Duration = Duration::from_secs(40);
/// Packets closer than this to the one before ride on the same radio wake-up (a probe and
/// its answer; Wi-Fi power save sleeps again within ~100-200 ms of the last frame).
const WAKE_GAP: f64 = 0.2;
const OTHER_IP: &str = "203.0.113.11";

/// Seconds to recovery per trial; `None` when not within [`CAP`].
type Trials = Vec<Option<f64>>;

fn scenario(laptop: Laptop, roamer_args: &[&str]) -> Scenario {
    let s = Scenario::gateway_only(GatewayMode::Daemon, &["--endpoint", GATEWAY_NAME], false);
    s.bed
        .set_hosts(&s.bed.roam, &format!("{PUBLIC_IP} {GATEWAY_NAME}\n"));
    let s = s.connect_laptop_with(laptop, roamer_args);
    s.ok(&["add-port", "22"]);
    s
}

fn time_to_forward(s: &Scenario, since: Instant) -> Option<f64> {
    s.bed
        .time_until_banner(&format!("{FLOATING_IP}:22"), "roamer", since, CAP)
        .map(|d| d.as_secs_f64())
}

/// After a trial that did not recover: restart the laptop's tunnel, as its user would.
fn repair(s: &Scenario, laptop: Laptop, roamer_args: &[&str]) {
    if s.bed
        .time_until_banner(
            &format!("{FLOATING_IP}:22"),
            "roamer",
            Instant::now(),
            Duration::from_secs(1),
        )
        .is_some()
    {
        return;
    }
    match laptop {
        Laptop::WgQuick => {
            let conf =
                std::fs::read_to_string(s.bed.dir.path().join(format!("{}.conf", s.bed.roam_wg)))
                    .expect("laptop conf");
            s.bed.wg_quick_down(&s.bed.roam, &s.bed.roam_wg);
            s.bed.wg_quick_up(&s.bed.roam, &s.bed.roam_wg, &conf);
            // wg-quick's first handshake waits for traffic.
            s.bed.roam.output(&["ping", "-c1", "-W2", "192.168.32.1"]);
        }
        Laptop::Roamer | Laptop::KernelRoamer => {
            s.roamer(&["down"]);
            s.start_roamer_with(roamer_args);
        }
    }
    let back = s.bed.time_until_banner(
        &format!("{FLOATING_IP}:22"),
        "roamer",
        Instant::now(),
        Duration::from_secs(30),
    );
    assert!(
        back.is_some(),
        "the laptop's tunnel did not come back after a restart"
    );
}

/// The CGNAT forgets its mapping (`conntrack -F`; `masquerade random` then picks a new port).
fn nat_loss(s: &Scenario, laptop: Laptop, roamer_args: &[&str]) -> Trials {
    (0..TRIALS)
        .map(|_| {
            // Let the keepalive phase drift between trials.
            std::thread::sleep(Duration::from_millis(1700));
            let since = Instant::now();
            s.bed.cgn.run(&["conntrack", "-F"]);
            let took = time_to_forward(s, since);
            repair(s, laptop, roamer_args);
            took
        })
        .collect()
}

fn measure(laptop: Laptop) -> ([Trials; 3], Option<u64>) {
    let s = scenario(laptop, &[]);
    let mut address_change = Vec::new();
    for trial in 0..TRIALS {
        let since = Instant::now();
        s.bed.move_laptop(if trial % 2 == 0 {
            "100.64.0.3"
        } else {
            "100.64.0.2"
        });
        address_change.push(time_to_forward(&s, since));
        repair(&s, laptop, &[]);
    }
    let nat_loss = nat_loss(&s, laptop, &[]);
    let mut gateway_move = Vec::new();
    let mut at = PUBLIC_IP;
    for _ in 0..TRIALS {
        let to = if at == PUBLIC_IP { OTHER_IP } else { PUBLIC_IP };
        let since = Instant::now();
        s.bed.move_gateway(at, to);
        at = to;
        gateway_move.push(time_to_forward(&s, since));
        repair(&s, laptop, &[]);
    }
    let rss = (laptop == Laptop::Roamer).then(|| rss_kib(&s.roamer_pid().to_string()));
    ([address_change, nat_loss, gateway_move], rss)
}

fn summary(trials: &Trials) -> String {
    let recovered: Vec<f64> = trials.iter().flatten().copied().collect();
    let listed = trials
        .iter()
        .map(|t| t.map_or(format!("> {}", CAP.as_secs()), |s| format!("{s:.2}")))
        .collect::<Vec<_>>()
        .join(" / ");
    if recovered.len() == trials.len() {
        format!("**{:.2} s** ({listed})", median(&recovered))
    } else {
        format!(
            "**{}/{} recovered** within {} s ({listed})",
            recovered.len(),
            trials.len(),
            CAP.as_secs()
        )
    }
}

/// What an idle tunnel costs on the laptop's link, per day.
struct Cost {
    packets: f64,
    bytes: f64,
    wakeups: f64,
}

/// `roamer run --keepalive SECONDS`, idle for [`IDLE`], its UDP counted on the laptop's link.
fn idle_cost(keepalive: u16) -> Cost {
    let keepalive = keepalive.to_string();
    let s = scenario(Laptop::Roamer, &["--keepalive", &keepalive]);
    // Past the start's handshake and first probe.
    std::thread::sleep(Duration::from_secs(3));
    let window = IDLE.as_secs().to_string();
    let out = s.bed.roam.output(&[
        "timeout", &window, "tcpdump", "-i", "eth0", "-n", "-tt", "-q", "-l", "udp",
    ]);
    let packets: Vec<(f64, f64)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(packet)
        .collect();
    assert!(
        !packets.is_empty(),
        "tcpdump saw nothing: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wakeups = 1 + packets
        .windows(2)
        .filter(|pair| pair[1].0 - pair[0].0 > WAKE_GAP)
        .count();
    let per_day = 86_400.0 / IDLE.as_secs_f64();
    Cost {
        packets: packets.len() as f64 * per_day,
        bytes: packets.iter().map(|p| p.1).sum::<f64>() * per_day,
        wakeups: wakeups as f64 * per_day,
    }
}

/// (time, IP bytes) of a `tcpdump -tt -q` line: `1733.5 IP a.p > b.q: UDP, length 32`.
fn packet(line: &str) -> Option<(f64, f64)> {
    let at = line.split_whitespace().next()?.parse().ok()?;
    let payload: f64 = line.rsplit_once("length ")?.1.trim().parse().ok()?;
    Some((at, payload + 28.0))
}

fn main() {
    let (ours, rss) = measure(Laptop::Roamer);
    let (stock, _) = measure(Laptop::WgQuick);
    let before = {
        let args = ["--keepalive", "10"];
        let s = scenario(Laptop::Roamer, &args);
        nat_loss(&s, Laptop::Roamer, &args)
    };
    let costs: Vec<(u16, Cost)> = [2, 10, 25].map(|k| (k, idle_cost(k))).into();
    println!(
        "| after … | roamer run: median s (trials) | wg-quick + wireguard-go: median s (trials) |"
    );
    println!("|---|---|---|");
    for (i, what) in [
        "(a) the laptop's address changes",
        "(b) the CGNAT forgets the mapping",
        "(c) the gateway moves; its name follows",
    ]
    .iter()
    .enumerate()
    {
        println!(
            "| {what} | {} | {} |",
            summary(&ours[i]),
            summary(&stock[i])
        );
    }
    println!(
        "| (b) at keepalive 10 s (the default before) | {} | — |",
        summary(&before)
    );
    println!();
    println!(
        "Time from the change until the outside client's first successful connection to \
         floating IP:22 (attempts every 20 ms, 100 ms timeouts); keepalive 2 s (the default) on \
         both laptops unless the row says otherwise; `roamgw run` is the gateway for both. A \
         trial that does not recover within {} s counts as not recovered, and the laptop's \
         tunnel is restarted before the next one.",
        CAP.as_secs()
    );
    println!();
    println!(
        "| `roamer run --keepalive` | packets a day | IP bytes a day | radio wake-ups a day |"
    );
    println!("|---|---|---|---|");
    for (keepalive, cost) in &costs {
        println!(
            "| {keepalive} s | {:.0} | {:.2} MB | {:.0} |",
            cost.packets,
            cost.bytes / 1e6,
            cost.wakeups
        );
    }
    println!();
    println!(
        "An idle tunnel (nothing forwarded) for {} s per setting, every UDP packet on the \
         laptop's link counted both ways (tcpdump), scaled to a day: keepalives, the probe \
         every 10 s (every keepalive interval when that is longer) and its answer. Packets less \
         than {:.0} ms apart count as one wake-up of the radio.",
        IDLE.as_secs(),
        WAKE_GAP * 1000.0
    );
    if let Some(rss) = rss {
        println!();
        println!(
            "RSS of `roamer run` after all trials: {:.1} MB.",
            rss as f64 / 1024.0
        );
    }
}
