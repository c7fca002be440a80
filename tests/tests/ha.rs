//! Two droplets, one reserved IP (`roamgw ha`, issue 26): keepalived elects, the fake provider
//! API moves the IP, the standby follows the active's changes and takes over when it dies.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use roamgw_e2e::pair::{Model, PairBed};
use roamgw_e2e::{wait_until, FLOATING_IP};

const FORWARD: &str = "203.0.113.50:22";
const STOCK_FORWARD: &str = "203.0.113.50:2222";

/// A pair up, a roamer (port 22) and a stock wg-quick laptop (port 2222) dialing the
/// reserved IP, both answering through it.
fn pair_with_laptops(model: Model) -> PairBed {
    let pair = PairBed::with_model(model);
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

/// One line through an echo session; `None` when it does not come back within 5 s.
fn echo(session: &mut TcpStream, line: &str) -> Option<String> {
    session
        .set_read_timeout(Some(Duration::from_secs(5)))
        .ok()?;
    session.write_all(format!("{line}\n").as_bytes()).ok()?;
    let mut back = String::new();
    BufReader::new(session.try_clone().ok()?)
        .read_line(&mut back)
        .ok()?;
    Some(back.trim().to_string()).filter(|b| !b.is_empty())
}

/// The active killed: both laptops' forwards answer again through the reserved IP within
/// `cap` (each time printed with `label`).
fn both_come_back_after_a_death(pair: &PairBed, label: &str, cap: Duration) {
    let died = Instant::now();
    pair.kill(&pair.a);
    for (forward, banner) in [(FORWARD, "roamer"), (STOCK_FORWARD, "stock")] {
        let took = pair.bed.time_until_banner(forward, banner, died, cap);
        eprintln!("{label}: {forward} ({banner}) answers again {took:?} after the active died");
        assert!(
            took.is_some(),
            "{forward} after the failover:\n{}",
            pair.logs()
        );
    }
}

#[test]
fn the_standby_follows_the_active_and_takes_over_when_it_dies() {
    let pair = pair_with_laptops(Model::A);
    let (a, b) = (&pair.a, &pair.b);
    let doctor = pair.roamgw(a, &["doctor"]);
    let doctor = String::from_utf8_lossy(&doctor.stdout);
    assert!(doctor.contains("keeps client addresses"), "{doctor}");

    // The laptops' endpoints reach the standby.
    assert!(
        wait_until(Duration::from_secs(5), || pair.remembers(b, 2)),
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

    // An open connection through a forward (as an ssh session is), to see what a failover
    // does to it.
    pair.bed.tcp_echo_server(&pair.bed.roam, 7);
    pair.roamgw_ok(a, &["add-port", "7", "--to", "laptop"]);
    let mut session = pair
        .bed
        .cli
        .connect(&format!("{FLOATING_IP}:7"), Duration::from_secs(2))
        .expect("a connection through the forward");
    assert_eq!(echo(&mut session, "before"), Some("before".into()));
    assert!(
        wait_until(Duration::from_secs(5), || pair
            .roamgw_ok(b, &["list", "--json"])
            .contains("\"7/tcp\"")),
        "port 7 did not reach b"
    );

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
    let after = echo(&mut session, "after");
    eprintln!("ha: the open connection after the failover: {after:?}");
    assert_eq!(
        after.as_deref(),
        Some("after"),
        "an open connection through a forward (client address kept) survives a failover"
    );

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

#[test]
fn a_cut_between_the_droplets_leaves_exactly_one_forwarding() {
    let pair = pair_with_laptops(Model::A);
    let (a, b) = (&pair.a, &pair.b);
    pair.cut_private(true);
    // b no longer hears a: it becomes active and claims; a learns the IP moved, goes quiet.
    assert!(
        wait_until(Duration::from_secs(15), || pair.api.holder(FLOATING_IP)
            == Some(b.id)),
        "b did not claim the IP:\n{}",
        pair.logs()
    );
    let lost = || {
        pair.ha_status(a)
            .is_some_and(|p| p["role"] == "active" && p["holding"]["state"] == "lost")
    };
    assert!(
        wait_until(Duration::from_secs(15), lost),
        "a did not notice:\n{}",
        pair.logs()
    );
    let status = pair.roamgw_ok(a, &["ha", "status"]);
    assert!(status.contains("on droplet 1002, not here"), "{status}");
    assert!(status.contains("unreachable"), "{status}");
    // a sends nothing: no peer of its device has an endpoint.
    let endpoints = a.ns.run(&["wg", "show", &a.wg, "endpoints"]);
    assert!(
        endpoints.lines().all(|l| l.ends_with("(none)")),
        "a quiet droplet with endpoints:\n{endpoints}"
    );
    for (forward, banner) in [(FORWARD, "roamer"), (STOCK_FORWARD, "stock")] {
        let took =
            pair.bed
                .time_until_banner(forward, banner, Instant::now(), Duration::from_secs(20));
        assert!(
            took.is_some(),
            "{forward} during the split:\n{}",
            pair.logs()
        );
    }

    assert_eq!(
        pair.api.holder(FLOATING_IP),
        Some(b.id),
        "a took the IP back while it could not see b:\n{}",
        pair.logs()
    );

    // The cut heals: one active with the IP, the other its standby, in step.
    pair.cut_private(false);
    let one_leads =
        || (pair.is_active(a) && pair.in_step(b)) || (pair.is_active(b) && pair.in_step(a));
    assert!(
        wait_until(Duration::from_secs(30), one_leads),
        "no single leader after the cut healed:\n{}",
        pair.logs()
    );
    let took =
        pair.bed
            .time_until_banner(FORWARD, "roamer", Instant::now(), Duration::from_secs(20));
    assert!(
        took.is_some(),
        "the forward after the cut healed:\n{}",
        pair.logs()
    );
}

/// Model (b): the provider drops anchor-sourced packets not sent to the anchor gateway. The
/// tunnel's own datagrams from the anchor take the gateway too (`--anchor-gateway`), before
/// and after a failover.
#[test]
fn a_provider_that_wants_the_anchor_gateway_still_fails_over() {
    let pair = pair_with_laptops(Model::B);
    assert!(
        wait_until(Duration::from_secs(5), || pair.remembers(&pair.b, 2)),
        "b does not know where the laptops are:\n{}",
        pair.logs()
    );
    both_come_back_after_a_death(&pair, "ha (model b)", Duration::from_secs(30));
    // Nothing of the tunnel's skipped the anchor gateway (the router would have dropped it).
    let table = pair
        .bed
        .wan
        .run(&["nft", "list", "table", "ip", "provider_model_b"]);
    assert!(table.contains("counter packets 0 "), "{table}");
}

/// Model (c): the provider's NAT rewrites every client to an address of its own. The
/// endpoints the standby remembers are then the NAT's flows, gone with the move: only the
/// laptops' own handshakes reach the new active. The roamer sends one by itself once its
/// probe goes unanswered; a stock wg-quick laptop once it has sent something and heard
/// nothing back for 15 s (WireGuard's rule), so this one is in use: a ping a second.
#[test]
fn a_provider_that_rewrites_clients_fails_over_by_the_laptops_handshakes() {
    let pair = pair_with_laptops(Model::C);
    let doctor = pair.roamgw(&pair.a, &["doctor"]);
    let doctor = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        doctor.contains("rewrites client addresses to 10.16.0.1"),
        "{doctor}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || pair.remembers(&pair.b, 2)),
        "b does not know where the laptops are:\n{}",
        pair.logs()
    );
    pair.bed.spawn(
        &pair.stock.0,
        &["ping", "-q", "-i", "1", "-w", "90", "192.168.32.1"],
    );
    both_come_back_after_a_death(&pair, "ha (model c)", Duration::from_secs(45));
    let doctor = pair.roamgw(&pair.b, &["doctor"]);
    let doctor = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        doctor.contains("rewrites client addresses to 10.17.0.1"),
        "{doctor}"
    );
}
