//! Two droplets, one reserved IP (`roamgw ha`, issue 26): keepalived elects, the fake provider
//! API moves the IP, the standby follows the active's changes and takes over when it dies.

use std::time::{Duration, Instant};

use roamgw_e2e::pair::PairBed;
use roamgw_e2e::{wait_until, FLOATING_IP};

const FORWARD: &str = "203.0.113.50:22";
const STOCK_FORWARD: &str = "203.0.113.50:2222";

/// A pair up, a roamer (port 22) and a stock wg-quick laptop (port 2222) dialing the
/// reserved IP, both answering through it.
fn pair_with_laptops() -> PairBed {
    let pair = PairBed::new();
    pair.up();
    let bed = &pair.bed;
    let roamer = pair.roamgw_ok(&pair.a, &["show-config", "laptop", "--format", "roamer"]);
    assert!(
        roamer.contains(FLOATING_IP),
        "the roamer dials the reserved IP:\n{roamer}"
    );
    bed.spawn_roamer(&roamer, &[]);
    let stock = pair.roamgw_ok(&pair.a, &["show-config", "stock", "--format", "wg-quick"]);
    bed.wg_quick_up(&pair.stock.0, &pair.stock.1, &stock);
    bed.tcp_banner_server(&bed.roam, 22, "roamer");
    bed.tcp_banner_server(&pair.stock.0, 22, "stock");
    for (forward, banner) in [(FORWARD, "roamer"), (STOCK_FORWARD, "stock")] {
        let took = bed.time_until_banner(forward, banner, Instant::now(), Duration::from_secs(20));
        assert!(
            took.is_some(),
            "{forward} before any failover:\n{}",
            pair.logs()
        );
    }
    pair
}

/// The endpoints file of `droplet` names both laptops.
fn remembers_both_laptops(droplet: &roamgw_e2e::pair::Droplet) -> bool {
    let path = droplet
        .state_dir
        .join(format!("{}.endpoints.json", droplet.wg));
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| v["roamers"].as_object().map(|r| r.len()))
        == Some(2)
}

#[test]
fn the_standby_follows_the_active_and_takes_over_when_it_dies() {
    let pair = pair_with_laptops();
    let (a, b) = (&pair.a, &pair.b);

    // The laptops' endpoints reach the standby.
    assert!(
        wait_until(Duration::from_secs(5), || remembers_both_laptops(b)),
        "b does not know where the laptops are:\n{}",
        pair.logs()
    );

    // A change on the active reaches the standby; one on the standby is refused.
    let started = Instant::now();
    pair.roamgw_ok(a, &["add-port", "8022", "--to", "laptop"]);
    let replicated = wait_until(Duration::from_secs(5), || {
        pair.roamgw_ok(b, &["list", "--json"]).contains("8022")
    });
    eprintln!(
        "ha: add-port on the active seen on the standby after {:?}",
        started.elapsed()
    );
    assert!(replicated, "the change did not reach b:\n{}", pair.logs());
    let refused = pair.roamgw(b, &["add-port", "9000", "--to", "laptop"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "a change on the standby went through"
    );
    assert!(
        stderr.contains("standby") && stderr.contains(a.private_ip),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");

    // The active dies; the standby claims the IP and the laptops follow.
    let died = Instant::now();
    pair.kill(a);
    for (forward, banner) in [(FORWARD, "roamer"), (STOCK_FORWARD, "stock")] {
        let took = pair
            .bed
            .time_until_banner(forward, banner, died, Duration::from_secs(30));
        eprintln!("ha: {forward} ({banner}) answers again {took:?} after the active died");
        assert!(
            took.is_some(),
            "{forward} after the failover:\n{}",
            pair.logs()
        );
    }
    assert!(
        pair.is_active(b),
        "b says it is not active:\n{}",
        pair.logs()
    );
    assert_eq!(pair.api.holder(FLOATING_IP), Some(b.id));

    // The old active comes back as the standby, in step with the new one.
    pair.revive_links(a);
    pair.start_daemon(a);
    pair.start_keepalived(a);
    assert!(
        wait_until(Duration::from_secs(20), || pair.in_step(a)),
        "a did not come back as b's standby:\n{}",
        pair.logs()
    );
    assert_eq!(pair.api.holder(FLOATING_IP), Some(b.id), "no failback");
    let took =
        pair.bed
            .time_until_banner(FORWARD, "roamer", Instant::now(), Duration::from_secs(5));
    assert!(
        took.is_some(),
        "the forward after a came back:\n{}",
        pair.logs()
    );
}
