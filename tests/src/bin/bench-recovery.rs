//! Benchmark: how long until an incoming forwarded connection works again after
//! (a) the laptop's address changes behind the CGNAT, (b) the CGNAT forgets its mapping
//! (`conntrack -F`), (c) the gateway moves to a new address and its name follows.
//! `TRIALS` trials each, for `roamer run` and, in the same run, for stock wg-quick +
//! wireguard-go as the laptop; `roamgw run` is the gateway for both. Keepalive 10 s (the
//! default). Also the RSS of `roamer run`. Prints a markdown report; `bash bench/recovery.sh`
//! puts it into docs/benchmarks.md.

use std::time::{Duration, Instant};

use roamgw_e2e::{
    median, rss_kib, GatewayMode, Laptop, Scenario, FLOATING_IP, GATEWAY_NAME, PUBLIC_IP,
};

const TRIALS: usize = 5;
/// Give up on a trial after this long (keepalive 10 s: the roamer's bounds are 11 s and 15 s).
const CAP: Duration = Duration::from_secs(20);
const OTHER_IP: &str = "203.0.113.11";

/// Seconds to recovery per trial; `None` when not within [`CAP`].
type Trials = Vec<Option<f64>>;

fn scenario(laptop: Laptop) -> Scenario {
    let s = Scenario::gateway_only(GatewayMode::Daemon, &["--endpoint", GATEWAY_NAME], false);
    s.bed
        .set_hosts(&s.bed.roam, &format!("{PUBLIC_IP} {GATEWAY_NAME}\n"));
    let s = s.connect_laptop(laptop);
    s.ok(&["add-port", "22"]);
    s
}

fn time_to_forward(s: &Scenario, since: Instant) -> Option<f64> {
    s.bed
        .time_until_banner(&format!("{FLOATING_IP}:22"), "roamer", since, CAP)
        .map(|d| d.as_secs_f64())
}

/// After a trial that did not recover: restart the laptop's tunnel, as its user would.
fn repair(s: &Scenario, laptop: Laptop) {
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
            s.start_roamer();
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

fn measure(laptop: Laptop) -> ([Trials; 3], Option<u64>) {
    let s = scenario(laptop);
    let mut address_change = Vec::new();
    for trial in 0..TRIALS {
        let since = Instant::now();
        s.bed.move_laptop(if trial % 2 == 0 {
            "100.64.0.3"
        } else {
            "100.64.0.2"
        });
        address_change.push(time_to_forward(&s, since));
        repair(&s, laptop);
    }
    let mut nat_loss = Vec::new();
    for _ in 0..TRIALS {
        // Let the keepalive phase drift between trials.
        std::thread::sleep(Duration::from_millis(1700));
        let since = Instant::now();
        s.bed.cgn.run(&["conntrack", "-F"]);
        nat_loss.push(time_to_forward(&s, since));
        repair(&s, laptop);
    }
    let mut gateway_move = Vec::new();
    let mut at = PUBLIC_IP;
    for _ in 0..TRIALS {
        let to = if at == PUBLIC_IP { OTHER_IP } else { PUBLIC_IP };
        let since = Instant::now();
        s.bed.move_gateway(at, to);
        at = to;
        gateway_move.push(time_to_forward(&s, since));
        repair(&s, laptop);
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

fn main() {
    let (ours, rss) = measure(Laptop::Roamer);
    let (stock, _) = measure(Laptop::WgQuick);
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
    println!();
    println!(
        "Time from the change until the outside client's first successful connection to \
         floating IP:22 (attempts every 20 ms, 100 ms timeouts); keepalive 10 s on both laptops; \
         `roamgw run` is the gateway for both. A trial that does not recover within {} s counts \
         as not recovered, and the laptop's tunnel is restarted before the next one.",
        CAP.as_secs()
    );
    if let Some(rss) = rss {
        println!();
        println!(
            "RSS of `roamer run` after all trials: {:.1} MB.",
            rss as f64 / 1024.0
        );
    }
}
