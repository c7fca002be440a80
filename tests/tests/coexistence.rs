//! The droplet's own mirror and update traffic while roamgw changes things: nginx on the
//! droplet's public IP behind a shaped uplink, downloads checked byte for byte (SHA-256) and
//! for resets and stalls (curl fails below 100 kB/s for 3 s), while forwards come and go, the
//! ruleset is re-applied, the daemon restarts (SIGTERM and kill -9), the data plane goes down
//! and up, and firewalld reloads. Short transfers here; bench/coexistence.sh measures long ones.

use std::time::Duration;

use roamgw_e2e::mirror::{download, Download, Mirror};
use roamgw_e2e::{Backend, GatewayMode, Laptop, Ns, Scenario, CLIENT, PUBLIC_IP};

/// The droplet's uplink in the tests: a 32 MB download takes about 4 s (more run back to back
/// while the events last).
const UPLINK_MBIT: u32 = 60;
const FILE_MB: u64 = 32;

/// Runs `events` while downloads from the mirror are under way, one after another until the
/// events are done (so they span the events however long those take on a busy machine); each
/// download must come through whole.
fn download_during(
    s: &mut Scenario,
    mirror: &Mirror,
    what: &str,
    events: impl FnOnce(&mut Scenario),
) {
    let cli: Ns = s.bed.cli.clone();
    let url = mirror.url.clone();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let events_over = done.clone();
    let running = std::thread::spawn(move || {
        let mut downloads = Vec::new();
        loop {
            downloads.push(download(&cli, &url));
            if events_over.load(std::sync::atomic::Ordering::SeqCst) {
                return downloads;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    events(s);
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let downloads: Vec<Download> = running.join().expect("download thread");
    for got in &downloads {
        assert!(
            got.ok && got.bytes == mirror.bytes && got.sha256 == mirror.sha256,
            "a mirror download during {what} failed or came out wrong: {got:?}"
        );
    }
    let mbit: Vec<String> = downloads
        .iter()
        .map(|d| format!("{:.0}", d.mbit_per_s()))
        .collect();
    eprintln!("{what}: {} Mbit/s", mbit.join(" / "));
}

/// 20 add-port / remove-port cycles of ports the mirror does not use.
fn forward_cycles(s: &mut Scenario) {
    for i in 0..20u16 {
        let port = (9000 + i).to_string();
        s.ok(&["add-port", &port]);
        s.ok(&["remove-port", &port]);
    }
}

#[test]
fn mirror_downloads_come_through_changes_and_daemon_restarts() {
    let mut s = Scenario::build_with(GatewayMode::Daemon, Laptop::Roamer, &[], false);
    s.ok(&["add-port", "22"]);
    s.bed.shape_droplet_uplink(UPLINK_MBIT);
    let mirror = s.bed.start_mirror(FILE_MB);
    download_during(
        &mut s,
        &mirror,
        "add-port/remove-port cycles and apply",
        |s| {
            forward_cycles(s);
            s.ok(&["apply"]);
        },
    );
    download_during(&mut s, &mirror, "roamgw run restarted (SIGTERM)", |s| {
        s.stop_daemon();
        s.start_daemon();
    });
    download_during(&mut s, &mirror, "roamgw run killed (-9) and started", |s| {
        s.kill_daemon();
        s.start_daemon();
    });
    assert_eq!(
        s.banner(&format!("{}:22", roamgw_e2e::FLOATING_IP))
            .as_deref(),
        Some("roamer")
    );
}

#[test]
fn mirror_downloads_come_through_down_and_up_on_nftables() {
    let mut s = Scenario::new(GatewayMode::External, &[]);
    s.ok(&["add-port", "22"]);
    s.bed.shape_droplet_uplink(UPLINK_MBIT);
    let mirror = s.bed.start_mirror(FILE_MB);
    download_during(&mut s, &mirror, "down and up (nftables)", |s| {
        s.ok(&["down"]);
        s.ok(&["up"]);
    });
}

#[test]
fn mirror_downloads_come_through_down_up_purge_and_firewalld_reload() {
    let mut s = Scenario::on(GatewayMode::External, Backend::Firewalld, &[]);
    s.bed.shape_droplet_uplink(UPLINK_MBIT);
    let mirror = s.bed.start_mirror(FILE_MB);
    // The admin's firewalld lets the mirror through, as on a real mirror droplet.
    s.firewalld_allows("http");
    download_during(
        &mut s,
        &mirror,
        "forward cycles on firewalld",
        forward_cycles,
    );
    download_during(&mut s, &mirror, "down --purge and up", |s| {
        s.ok(&["down", "--purge"]);
        s.ok(&["up"]);
    });
    download_during(&mut s, &mirror, "firewall-cmd --reload", |s| {
        let fw = s.firewalld.as_ref().expect("firewalld");
        assert!(fw.cmd(&s.bed.gw, &["--reload"]).status.success(), "reload");
    });
}

/// The droplet's own outbound connections (a sync from upstream, its package fetches) leave
/// with its public address, with roamgw up and a roamer's egress allowed; the laptop's own
/// downloads leave through its own route.
#[test]
fn own_traffic_of_droplet_and_laptop_keeps_its_way() {
    let s = Scenario::build_with(GatewayMode::Daemon, Laptop::Roamer, &[], false);
    s.ok(&["add-port", "22"]);
    s.ok(&["egress", "laptop", "203.0.113.0/24"]);
    s.bed.peer_address_server(&s.bed.cli, 7100);
    let upstream = format!("{CLIENT}:7100");
    assert_eq!(s.bed.gw.tcp_banner(&upstream).as_deref(), Some(PUBLIC_IP));
    assert_eq!(
        s.bed.roam.tcp_banner(&upstream).as_deref(),
        Some("198.51.100.2")
    );
    // Nothing of roamgw's marks the droplet's own packets (no packet marks at all, which
    // policy routing reads); the conntrack mark bit goes only on connections to forwards
    // with --client-ip masquerade.
    let ruleset = s.bed.gw.run(&["nft", "list", "table", "inet", "roamgw"]);
    assert!(!ruleset.contains("meta mark set"), "{ruleset}");
    for line in ruleset.lines().filter(|l| l.contains("mark set")) {
        assert!(
            line.contains("@masquerade_") && line.contains("ct mark set ct mark | 0x00100000"),
            "{line}"
        );
    }
}
