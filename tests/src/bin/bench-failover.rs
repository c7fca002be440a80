//! Benchmark: from the active droplet's death (links down, every process killed) to a working
//! forward through the reserved IP, for `roamer run` and for a stock wg-quick + wireguard-go
//! laptop at once, `TRIALS` times, with the fake provider API's action delay at 0 and 3 s;
//! then the same for a planned handover (keepalived stopped on the active). Each time is
//! broken into detection (death to the provider's assign request: keepalived), the API action
//! (request to `completed`) and the data plane (to the first answered connection). keepalived
//! advertises every second. After each trial the dead droplet comes back as the standby.
//! Prints a markdown report; `bash bench/failover.sh` puts it into docs/benchmarks.md.

use std::time::{Duration, Instant};

use roamgw_e2e::pair::{Droplet, Model, PairBed};
use roamgw_e2e::{median, wait_until, FLOATING_IP};

const TRIALS: usize = 5;
const CAP: Duration = Duration::from_secs(30);

/// One trial, in seconds from the event: (assign request, completed, roamer, stock).
type Trial = (f64, f64, Option<f64>, Option<f64>);

#[derive(Clone, Copy, PartialEq)]
enum How {
    Crash,
    Handover,
}

fn laptops(pair: &PairBed) {
    let bed = &pair.bed;
    let roamer = pair.roamgw_ok(&pair.a, &["show-config", "laptop", "--format", "roamer"]);
    bed.spawn_roamer(&roamer, &[]);
    let stock = pair.roamgw_ok(&pair.a, &["show-config", "stock", "--format", "wg-quick"]);
    bed.wg_quick_up(&pair.stock.0, &pair.stock.1, &stock);
    bed.tcp_banner_server(&bed.roam, 22, "roamer");
    bed.tcp_banner_server(&pair.stock.0, 22, "stock");
    for (port, banner) in [(22, "roamer"), (2222, "stock")] {
        let took = bed.time_until_banner(
            &format!("{FLOATING_IP}:{port}"),
            banner,
            Instant::now(),
            CAP,
        );
        assert!(
            took.is_some(),
            "{banner} before the trials:\n{}",
            pair.logs()
        );
    }
}

fn active(pair: &PairBed) -> (&Droplet, &Droplet) {
    if pair.api.holder(FLOATING_IP) == Some(pair.a.id) {
        (&pair.a, &pair.b)
    } else {
        (&pair.b, &pair.a)
    }
}

fn trial(pair: &PairBed, how: How) -> Trial {
    let (dying, taking) = active(pair);
    // The standby knows where both laptops are (a laptop that connected within the last
    // second may not be known yet: the window issue 28 names).
    assert!(
        wait_until(Duration::from_secs(10), || pair.remembers(taking, 2)),
        "the standby does not know the laptops:\n{}",
        pair.logs()
    );
    let assigns_before = pair.api.books.lock().expect("books").assigns.len();
    let event = Instant::now();
    match how {
        How::Crash => pair.kill(dying),
        How::Handover => pair.stop_keepalived(dying),
    }
    let forward = |port: u16, banner: &str| {
        pair.bed
            .time_until_banner(&format!("{FLOATING_IP}:{port}"), banner, event, CAP)
            .map(|d| d.as_secs_f64())
    };
    // Both laptops at once: the stock one is tried as soon as the roamer answers.
    let roamer = forward(22, "roamer");
    let stock = forward(2222, "stock");
    let (asked, completed) = {
        let books = pair.api.books.lock().expect("books");
        books
            .assigns
            .get(assigns_before)
            .filter(|(droplet, _, _)| *droplet == taking.id)
            .map(|(_, at, done)| {
                (
                    at.duration_since(event).as_secs_f64(),
                    done.map_or(f64::NAN, |d| d.duration_since(event).as_secs_f64()),
                )
            })
            .unwrap_or((f64::NAN, f64::NAN))
    };
    // Back to a pair: the old active returns as the standby.
    match how {
        How::Crash => {
            pair.revive_links(dying);
            pair.start_daemon(dying);
            pair.start_keepalived(dying);
        }
        How::Handover => pair.start_keepalived(dying),
    }
    assert!(
        wait_until(Duration::from_secs(30), || pair.in_step(dying)),
        "the old active did not come back as the standby:\n{}",
        pair.logs()
    );
    (asked, completed, roamer, stock)
}

fn cell(values: &[f64]) -> String {
    let ok: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if ok.is_empty() {
        return "—".into();
    }
    let max = ok.iter().copied().fold(f64::MIN, f64::max);
    format!("{:.2} (max {:.2})", median(&ok), max)
}

fn row(name: &str, delay: Duration, trials: &[Trial]) -> String {
    let detect: Vec<f64> = trials.iter().map(|t| t.0).collect();
    let api: Vec<f64> = trials.iter().map(|t| t.1 - t.0).collect();
    let plane: Vec<f64> = trials
        .iter()
        .map(|t| t.2.map_or(f64::NAN, |r| r - t.1))
        .collect();
    let roamer: Vec<f64> = trials.iter().map(|t| t.2.unwrap_or(f64::NAN)).collect();
    let stock: Vec<f64> = trials.iter().map(|t| t.3.unwrap_or(f64::NAN)).collect();
    let lost = trials
        .iter()
        .filter(|t| t.2.is_none() || t.3.is_none())
        .count();
    format!(
        "| {name} | {} s | {} | {} | {} | {} | {} | {lost}/{} |",
        delay.as_secs(),
        cell(&detect),
        cell(&api),
        cell(&plane),
        cell(&roamer),
        cell(&stock),
        trials.len()
    )
}

fn main() {
    let mut rows = Vec::new();
    let runs = [
        (Model::A, Duration::ZERO, &[How::Crash, How::Handover][..]),
        (
            Model::A,
            Duration::from_secs(3),
            &[How::Crash, How::Handover],
        ),
        (Model::C, Duration::ZERO, &[How::Crash]),
    ];
    for (model, delay, events) in runs {
        let pair = PairBed::with_model(model);
        pair.api.set_delay(delay);
        pair.up();
        laptops(&pair);
        if model == Model::C {
            // Only a laptop's own handshake reaches the new active: the stock one sends
            // (a ping a second, as a laptop in use does) and handshakes after 15 s unanswered.
            pair.bed
                .spawn(&pair.stock.0, &["ping", "-q", "-i", "1", "192.168.32.1"]);
        }
        for how in events {
            let name = match (how, model) {
                (How::Crash, Model::C) => "active killed, model (c)",
                (How::Crash, _) => "active killed",
                (How::Handover, _) => "handover",
            };
            let trials: Vec<Trial> = (0..TRIALS).map(|_| trial(&pair, *how)).collect();
            eprintln!("{name}, delay {delay:?}: {trials:?}");
            rows.push(row(name, delay, &trials));
        }
    }
    println!(
        "From the event to a working forward through the reserved IP, two droplets with keepalived \
         (`advert_int 1`, unicast, `nopreempt`) and the fake provider API in the namespace internet; \
         the provider's NAT is model (a) (client addresses kept) unless the row says (c) (the NAT \
         rewrites clients to its own address: only the laptops' own handshakes reach the new \
         active; the stock laptop pings through the tunnel once a second). {TRIALS} trials each, \
         median (max) in seconds. *Detection*: the event to the \
         new active's assign request (keepalived, then `roamgw ha notify`); *API*: request to \
         `completed`; *data plane*: `completed` to the roamer's forward answering. *Killed*: the \
         active's links down, then every process in it killed; *handover*: keepalived stopped on \
         the active (it announces priority 0). After each trial the old active comes back as the \
         standby and catches up. The stock laptop's forward is tried once the roamer's answers, \
         so its figure is at least the roamer's.\n"
    );
    println!(
        "| event | API delay | detection | API | data plane | roamer forward | stock wg-quick forward | not back in {} s |",
        CAP.as_secs()
    );
    println!("|---|---|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}
