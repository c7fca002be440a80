//! Benchmark: the droplet's own mirror and update traffic beside roamgw, one run, with the
//! droplet's uplink shaped to a droplet-like rate:
//! 1. a mirror download (outside client -> droplet public IP:80) idle, and during each event
//!    that changes or restarts roamgw (nftables, then firewalld);
//! 2. the droplet's own download from an upstream server, roamgw down vs up with a roamer's
//!    egress allowed, and the address the upstream sees;
//! 3. the laptop's update download, tunnel down vs up, and the address the server sees;
//! 4. a bulk forwarded transfer to the laptop and a mirror download at once: each one's
//!    share; and 100-byte ping-pongs through a forward, idle vs while the mirror saturates
//!    the uplink.
//!
//! Prints a markdown report; `bash bench/coexistence.sh` puts it into docs/benchmarks.md.

use std::time::Duration;

use roamgw_e2e::bench::{self, iperf_mbit};
use roamgw_e2e::mirror::{download, Download, Mirror};
use roamgw_e2e::{
    Backend, GatewayMode, Laptop, Ns, Scenario, CLIENT, FLOATING_IP, OTHER_CLIENT, PUBLIC_IP,
};

const UPLINK_MBIT: u32 = 300;
/// ~7 s at the shaped rate.
const MIRROR_MB: u64 = 256;
const UPSTREAM_MB: u64 = 256;
const PINGS: usize = 200;

fn checked(mirror: &Mirror, got: Download, what: &str) -> Download {
    assert!(
        got.ok && got.bytes == mirror.bytes && got.sha256 == mirror.sha256,
        "{what}: the download failed or came out wrong: {got:?}"
    );
    got
}

/// Mbit/s of a mirror download while `events` run.
fn during(
    s: &mut Scenario,
    mirror: &Mirror,
    what: &str,
    events: impl FnOnce(&mut Scenario),
) -> f64 {
    let cli: Ns = s.bed.cli.clone();
    let url = mirror.url.clone();
    let running = std::thread::spawn(move || download(&cli, &url));
    std::thread::sleep(Duration::from_millis(500));
    events(s);
    checked(mirror, running.join().expect("download"), what).mbit_per_s()
}

fn idle(s: &Scenario, mirror: &Mirror) -> f64 {
    checked(mirror, download(&s.bed.cli, &mirror.url), "idle").mbit_per_s()
}

/// A change or restart to run during a download, and its name.
type Event = (&'static str, fn(&mut Scenario));

fn cycles(s: &mut Scenario, n: u16) {
    for i in 0..n {
        let port = (9000 + i).to_string();
        s.ok(&["add-port", &port]);
        s.ok(&["remove-port", &port]);
    }
}

/// (event, Mbit/s) rows for the mirror download, with the idle figure first.
fn mirror_rows() -> Vec<(String, f64)> {
    let mut rows = Vec::new();
    let mut s = Scenario::build_with(GatewayMode::Daemon, Laptop::Roamer, &[], false);
    s.ok(&["add-port", "22"]);
    s.bed.shape_droplet_uplink(UPLINK_MBIT);
    let mirror = s.bed.start_mirror(MIRROR_MB);
    rows.push((
        "idle (nftables backend, roamgw run up)".into(),
        idle(&s, &mirror),
    ));
    let events: [Event; 4] = [
        ("100 add-port/remove-port cycles of other ports", |s| {
            cycles(s, 100)
        }),
        ("roamgw apply", |s| {
            s.ok(&["apply"]);
        }),
        ("roamgw run restarted (SIGTERM + start)", |s| {
            s.stop_daemon();
            s.start_daemon();
        }),
        ("roamgw run killed (-9) and started", |s| {
            s.kill_daemon();
            s.start_daemon();
        }),
    ];
    for (what, event) in events {
        rows.push((what.into(), during(&mut s, &mirror, what, event)));
    }
    drop(s);
    let mut s = Scenario::on(GatewayMode::External, Backend::Firewalld, &[]);
    s.bed.shape_droplet_uplink(UPLINK_MBIT);
    let mirror = s.bed.start_mirror(MIRROR_MB);
    // The admin's firewalld lets the mirror through, as on a real mirror droplet.
    s.firewalld_allows("http");
    rows.push((
        "idle (firewalld backend, wg-quick gateway)".into(),
        idle(&s, &mirror),
    ));
    let events: [Event; 4] = [
        ("100 add-port/remove-port cycles (firewalld)", |s| {
            cycles(s, 100)
        }),
        ("roamgw down + up (firewalld)", |s| {
            s.ok(&["down"]);
            s.ok(&["up"]);
        }),
        ("roamgw down --purge + up (firewalld)", |s| {
            s.ok(&["down", "--purge"]);
            s.ok(&["up"]);
        }),
        ("firewall-cmd --reload", |s| {
            let fw = s.firewalld.as_ref().expect("firewalld");
            assert!(fw.cmd(&s.bed.gw, &["--reload"]).status.success());
        }),
    ];
    for (what, event) in events {
        rows.push((what.into(), during(&mut s, &mirror, what, event)));
    }
    rows
}

/// What the server at `CLIENT:7100` sees of a connection from `ns`.
fn source_seen(ns: &Ns) -> String {
    ns.tcp_banner(&format!("{CLIENT}:7100"))
        .unwrap_or_else(|| "-".into())
}

/// (what, Mbit/s, source seen) for the droplet's own and the laptop's own downloads.
fn own_traffic_rows() -> Vec<(String, f64, String)> {
    let mut rows = Vec::new();
    let mut s = Scenario::build_with(GatewayMode::Daemon, Laptop::Roamer, &[], false);
    s.bed.shape_droplet_uplink(UPLINK_MBIT);
    let upstream = s
        .bed
        .start_http_server(&s.bed.cli, OTHER_CLIENT, "upstream", UPSTREAM_MB);
    s.bed.peer_address_server(&s.bed.cli, 7100);
    let fetch = |ns: &Ns| checked(&upstream, download(ns, &upstream.url), "own").mbit_per_s();
    s.ok(&["add-port", "22"]);
    s.ok(&["egress", "laptop", "0.0.0.0/0"]);
    rows.push((
        "droplet's own download, roamgw up, a roamer's egress 0.0.0.0/0 allowed".into(),
        fetch(&s.bed.gw),
        source_seen(&s.bed.gw),
    ));
    s.ok(&["egress", "laptop", "--off"]);
    rows.push((
        "laptop's own download, tunnel up (default: no egress)".into(),
        fetch(&s.bed.roam),
        source_seen(&s.bed.roam),
    ));
    s.roamer_down();
    rows.push((
        "laptop's own download, tunnel down".into(),
        fetch(&s.bed.roam),
        source_seen(&s.bed.roam),
    ));
    s.stop_daemon();
    s.ok(&["down"]);
    rows.push((
        "droplet's own download, roamgw down".into(),
        fetch(&s.bed.gw),
        source_seen(&s.bed.gw),
    ));
    rows
}

/// Round trips of 100-byte messages through the forward to the laptop's echo server.
fn ping_pongs(s: &Scenario) -> (Duration, Duration) {
    bench::ping_pongs(&s.bed.cli, &format!("{FLOATING_IP}:7"), PINGS)
}

struct Sharing {
    bulk_alone: f64,
    mirror_alone: f64,
    bulk_shared: f64,
    mirror_shared: f64,
    ping_idle: (Duration, Duration),
    ping_loaded: (Duration, Duration),
}

/// Mbit/s of an iperf3 client sending to the laptop through the forward for `secs`.
fn bulk(s: &Scenario, secs: u32) -> f64 {
    iperf_mbit(&s.bed.cli, FLOATING_IP, 5201, secs)
}

fn sharing() -> Sharing {
    let s = Scenario::build_with(GatewayMode::Daemon, Laptop::Roamer, &[], false);
    s.bed.shape_droplet_uplink(UPLINK_MBIT);
    let mirror = s.bed.start_mirror(MIRROR_MB);
    s.bed.tcp_echo_server(&s.bed.roam, 7);
    s.ok(&["add-port", "7"]);
    s.ok(&["add-port", "5201"]);
    s.bed.spawn(&s.bed.roam, &["iperf3", "-s", "-p", "5201"]);
    std::thread::sleep(Duration::from_millis(500));
    let bulk_alone = bulk(&s, 6);
    let mirror_alone = idle(&s, &mirror);
    let ping_idle = ping_pongs(&s);
    // Both at once: the mirror download spans the bulk transfer.
    let cli = s.bed.cli.clone();
    let url = mirror.url.clone();
    let mirror_run = std::thread::spawn(move || download(&cli, &url));
    std::thread::sleep(Duration::from_millis(300));
    let bulk_shared = bulk(&s, 4);
    let mirror_shared = checked(&mirror, mirror_run.join().expect("mirror"), "shared").mbit_per_s();
    // The mirror alone saturating the uplink, and the ping-pongs through the forward.
    let cli = s.bed.cli.clone();
    let url = mirror.url.clone();
    let mirror_run = std::thread::spawn(move || download(&cli, &url));
    std::thread::sleep(Duration::from_millis(300));
    let ping_loaded = ping_pongs(&s);
    checked(&mirror, mirror_run.join().expect("mirror"), "pings");
    Sharing {
        bulk_alone,
        mirror_alone,
        bulk_shared,
        mirror_shared,
        ping_idle,
        ping_loaded,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let mirror = mirror_rows();
    let own = own_traffic_rows();
    let share = sharing();

    println!("Droplet uplink shaped to {UPLINK_MBIT} Mbit/s (tbf on the droplet's side of its link); mirror file {MIRROR_MB} MB from nginx on the droplet's public IP, each download checked (SHA-256, no reset, no stall: curl fails under 100 kB/s for 3 s).");
    println!();
    println!("| mirror download (client -> {PUBLIC_IP}:80) during … | Mbit/s | against idle |");
    println!("|---|---:|---:|");
    let mut base = f64::NAN;
    for (what, mbit) in &mirror {
        if what.starts_with("idle") {
            base = *mbit;
        }
        println!("| {what} | {mbit:.0} | {:.2}x |", mbit / base);
    }
    println!();
    println!("| own traffic ({UPSTREAM_MB} MB from an upstream nginx) | Mbit/s | source the upstream sees |");
    println!("|---|---:|---|");
    for (what, mbit, source) in &own {
        println!("| {what} | {mbit:.0} | {source} |");
    }
    println!();
    println!("| sharing the {UPLINK_MBIT} Mbit/s uplink | alone | at the same time |");
    println!("|---|---:|---:|");
    println!(
        "| bulk forwarded transfer to the laptop (iperf3), Mbit/s | {:.0} | {:.0} |",
        share.bulk_alone, share.bulk_shared
    );
    println!(
        "| mirror download, Mbit/s | {:.0} | {:.0} |",
        share.mirror_alone, share.mirror_shared
    );
    println!();
    println!("| 100-byte ping-pong through a forward ({PINGS}, 10 ms apart) | p50 | p99 |");
    println!("|---|---:|---:|");
    println!(
        "| idle | {} | {} |",
        ms(share.ping_idle.0),
        ms(share.ping_idle.1)
    );
    println!(
        "| while a mirror download saturates the uplink | {} | {} |",
        ms(share.ping_loaded.0),
        ms(share.ping_loaded.1)
    );
}
