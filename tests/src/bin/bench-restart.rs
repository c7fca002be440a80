//! Benchmark: how long after a restarted `roamgw run` is ready until the forward works again,
//! after kill -9 + start, SIGTERM + start and a simulated reboot (daemon killed, WireGuard
//! link deleted, ruleset flushed, runtime sockets removed), for a stock wg-quick +
//! wireguard-go laptop and for `roamer run`: with the remembered endpoints (now), and without
//! them (the file removed before the start: what every restart did before). Then: how long
//! each kind of drift takes to repair while `roamgw status` is polled every second, on the
//! gateway and (what the roamer puts back itself) on the laptop. Prints a markdown report;
//! `bash bench/restart.sh` puts it into docs/benchmarks.md.

use std::time::{Duration, Instant};

use roamgw_e2e::{median, Backend, GatewayMode, Laptop, Scenario, StatusPoller};

const TRIALS: usize = 5;
/// A stock laptop without remembered endpoints waits for its rekey (up to 120 s + jitter).
const CAP: Duration = Duration::from_secs(135);

type Stop = (&'static str, fn(&mut Scenario));

const STOPS: [Stop; 3] = [
    ("kill -9 + start", Scenario::kill_daemon),
    ("SIGTERM + start", Scenario::stop_daemon),
    ("simulated reboot", Scenario::simulate_reboot),
];

fn secs(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64())
}

fn summary(trials: &[Option<f64>]) -> String {
    let ok: Vec<f64> = trials.iter().flatten().copied().collect();
    if ok.is_empty() {
        return format!("none within {} s", CAP.as_secs());
    }
    let min = ok.iter().copied().fold(f64::INFINITY, f64::min);
    let max = ok.iter().copied().fold(0.0, f64::max);
    let lost = trials.len() - ok.len();
    format!(
        "{:.3} s ({:.3}–{:.3}){}",
        median(&ok),
        min,
        max,
        if lost > 0 {
            format!(", {lost} not within {} s", CAP.as_secs())
        } else {
            String::new()
        }
    )
}

/// Trials of one stop kind on one scenario; `remember`: keep the endpoints file.
fn trials(
    s: &mut Scenario,
    stop: fn(&mut Scenario),
    remember: bool,
    count: usize,
) -> Vec<Option<f64>> {
    (0..count)
        .map(|_| {
            s.await_remembered_endpoint();
            stop(s);
            if !remember {
                s.forget_endpoints();
            }
            let took = secs(s.restart_daemon_until_forward(CAP));
            eprintln!("  {took:?}");
            took
        })
        .collect()
}

fn main() {
    let mut rows = Vec::new();
    for (laptop, name) in [
        (Laptop::WgQuick, "stock wg-quick + wireguard-go"),
        (Laptop::Roamer, "roamer run"),
    ] {
        let mut s = Scenario::build_with(GatewayMode::Daemon, laptop, &[], false);
        s.forward_22_works();
        for (what, stop) in STOPS {
            eprintln!("{name}, {what}, remembered endpoints:");
            let now = trials(&mut s, stop, true, TRIALS);
            // Without memory a stock laptop takes up to ~2 min a trial: fewer of them.
            let before_count = if laptop == Laptop::WgQuick { 1 } else { 3 };
            eprintln!("{name}, {what}, without:");
            let before = trials(&mut s, stop, false, before_count);
            rows.push(format!(
                "| {name} | {what} | {} | {} ({before_count} trial{}) |",
                summary(&now),
                summary(&before),
                if before_count == 1 { "" } else { "s" }
            ));
        }
    }

    let mut drift_rows = Vec::new();
    let s = Scenario::build_with(GatewayMode::Daemon, Laptop::WgQuick, &[], false);
    s.forward_22_works();
    let gw_wg = s.bed.gw_wg.clone();
    {
        let _poller = StatusPoller::start(&s.bed);
        let drifts: [(&str, Vec<&str>); 4] = [
            ("`nft flush ruleset`", vec!["nft", "flush", "ruleset"]),
            (
                "`nft delete table inet roamgw`",
                vec!["nft", "delete", "table", "inet", "roamgw"],
            ),
            (
                "`ip link del <wg interface>`",
                vec!["ip", "link", "del", &gw_wg],
            ),
            (
                "`ip addr flush dev <wg interface>`",
                vec!["ip", "addr", "flush", "dev", &gw_wg],
            ),
        ];
        for (what, args) in drifts {
            let took: Vec<Option<f64>> =
                (0..TRIALS).map(|_| secs(s.time_to_repair(&args))).collect();
            eprintln!("{what}: {took:?}");
            drift_rows.push(format!(
                "| gateway (nftables) | {what} | {} |",
                summary(&took)
            ));
        }
    }
    drop(s);
    // The laptop's side: what the roamer puts back itself.
    let s = Scenario::build_with(GatewayMode::Daemon, Laptop::Roamer, &[], false);
    s.forward_22_works();
    let tunnel = s.bed.roam_wg.clone();
    let interface: roamgw_common::names::InterfaceName = tunnel.parse().expect("interface");
    // As systemd-networkd drops foreign rules: both reply rules, and the table with them.
    let drop_rules = format!(
        "ip rule del priority {p}; ip rule del priority {p}; ip route flush table {t}",
        p = roamgw_common::replies::RULE_PRIORITY,
        t = roamgw_common::replies::table(&interface),
    );
    let laptop_drifts: [(&str, Vec<&str>); 2] = [
        (
            "the reply rules and their table removed (as systemd-networkd does)",
            vec!["sh", "-c", &drop_rules],
        ),
        (
            "`ip link del <wg interface>`",
            vec!["ip", "link", "del", &tunnel],
        ),
    ];
    for (what, args) in laptop_drifts {
        let took: Vec<Option<f64>> = (0..TRIALS)
            .map(|_| secs(s.time_to_repair_in(&s.bed.roam, &args)))
            .collect();
        eprintln!("{what}: {took:?}");
        drift_rows.push(format!("| laptop (roamer) | {what} | {} |", summary(&took)));
    }
    drop(s);
    let s = Scenario::gateway_on(GatewayMode::Daemon, Backend::Firewalld, &[], false)
        .connect_laptop(Laptop::WgQuick);
    s.forward_22_works();
    {
        let _poller = StatusPoller::start(&s.bed);
        let fw = s.firewalld.as_ref().expect("firewalld");
        let took: Vec<Option<f64>> = (0..TRIALS)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(1500));
                let since = Instant::now();
                assert!(fw.cmd(&s.bed.gw, &["--reload"]).status.success());
                secs(s.bed.time_until_banner(
                    &format!("{}:22", roamgw_e2e::FLOATING_IP),
                    "roamer",
                    since,
                    Duration::from_secs(10),
                ))
            })
            .collect();
        eprintln!("firewall-cmd --reload: {took:?}");
        drift_rows.push(format!(
            "| gateway (firewalld) | `firewall-cmd --reload` (from the command's start) | {} |",
            summary(&took)
        ));
    }

    println!(
        "Time from a restarted `roamgw run` being ready (`roamgw status` says so) until an \
         outside client's connection to the floating IP reaches the laptop again; median \
         (min–max) of {TRIALS} trials, userspace WireGuard on the gateway, keepalive 10 s. \
         \"Without\" removes the remembered endpoints before the start: every restart was \
         like that before.\n"
    );
    println!("| laptop | restart | remembered endpoints | without |");
    println!("|---|---|---:|---:|");
    for row in rows {
        println!("{row}");
    }
    println!(
        "\nDrift repaired by events, while `roamgw status` runs every second: time from the \
         breaking command until the forward answers again, median (min–max) of {TRIALS}.\n"
    );
    println!("| where | drift | forward back after |");
    println!("|---|---|---:|");
    for row in drift_rows {
        println!("{row}");
    }
}
