//! The data plane end to end, with real traffic through the namespace internet:
//! client -> floating IP -> provider NAT -> anchor -> roamgw DNAT -> WireGuard -> CGNAT ->
//! roamer (stock wg-quick + wireguard-go). Every scenario runs with stock wg-quick on the
//! droplet and roamgw managing the rules (`external`), and with `roamgw run` and its own
//! userspace device (`daemon`); those that do not look at nftables itself also run on the
//! firewalld backend, against a real firewalld (`*_firewalld`; firewalld-only scenarios are in
//! tests/firewalld.rs).

/// Runs a scenario function in both gateway modes on the nftables backend, and, with
/// `firewalld`, on the firewalld backend too.
macro_rules! scenarios {
    ($($name:ident $(+ $firewalld:ident)?),* $(,)?) => {$(
        mod $name {
            use roamgw_e2e::{Backend, GatewayMode};
            #[test]
            fn external() {
                super::$name(GatewayMode::External, Backend::Nftables)
            }
            #[test]
            fn daemon() {
                super::$name(GatewayMode::Daemon, Backend::Nftables)
            }
            $(
            #[test]
            fn external_firewalld() {
                let _ = stringify!($firewalld);
                super::$name(GatewayMode::External, Backend::Firewalld)
            }
            #[test]
            fn daemon_firewalld() {
                super::$name(GatewayMode::Daemon, Backend::Firewalld)
            }
            )?
        }
    )*};
}

scenarios!(
    floating_ip_reaches_the_roamer_and_public_ip_the_droplet + firewalld,
    only_forwarded_ports_udp_ranges_and_remaps + firewalld,
    allow_from_admits_the_allowed_source_only + firewalld,
    remove_port_cuts_an_open_flow_and_add_port_works_at_once + firewalld,
    a_foreign_table_is_identical_before_and_after,
    apply_repairs_a_flushed_ruleset_and_is_then_a_no_op,
);

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use roamgw_e2e::{Backend, GatewayMode, Scenario, CLIENT, FLOATING_IP, OTHER_CLIENT, PUBLIC_IP};

fn floating(port: u16) -> String {
    format!("{FLOATING_IP}:{port}")
}

fn floating_ip_reaches_the_roamer_and_public_ip_the_droplet(mode: GatewayMode, backend: Backend) {
    let s = Scenario::on(mode, backend, &[]);
    s.ok(&["add-port", "22"]);
    assert_eq!(s.banner(&floating(22)).as_deref(), Some("roamer"));
    assert_eq!(
        s.banner(&format!("{PUBLIC_IP}:22")).as_deref(),
        Some("droplet")
    );
    // On firewalld, from roamgw's counting table (firewalld keeps no counters).
    let list = s.ok(&["list", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&list).expect("json");
    assert!(
        list[0]["packets"].as_u64().unwrap_or(0) > 0,
        "counter did not move on {backend:?}: {list}"
    );
    // The roamer as WireGuard sees it: from the daemon, or from wireguard-go's UAPI socket.
    let status: serde_json::Value =
        serde_json::from_str(&s.ok(&["status", "--json"])).expect("json");
    let endpoint = status["roamers"][0]["endpoint"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        endpoint.starts_with("198.51.100.2:"),
        "roamer endpoint behind the CGNAT: {status}"
    );
    // The live change left exactly what a full apply would build.
    let apply = s.ok(&["apply"]);
    assert!(apply.contains("up to date"), "{apply}");
}

fn only_forwarded_ports_udp_ranges_and_remaps(mode: GatewayMode, backend: Backend) {
    let s = Scenario::on(mode, backend, &[]);
    let b = &s.bed;
    b.tcp_banner_server(&b.roam, 8080, "roamer-8080");
    b.tcp_banner_server(&b.gw, 8080, "droplet-8080");
    b.udp_banner_server(&b.roam, 5353, "roamer-udp");
    b.udp_banner_server(&b.roam, 60050, "roamer-range");
    b.tcp_banner_server(&b.roam, 9001, "roamer-9001");
    s.ok(&["add-port", "22"]);
    s.ok(&["add-port", "5353/udp"]);
    s.ok(&["add-port", "60000-60100/udp"]);
    s.ok(&["add-port", "8000-8010:9000-9010"]);

    // Not forwarded: neither the roamer nor the droplet's own service answers on the floating IP.
    assert_eq!(s.banner(&floating(8080)), None);
    assert_eq!(
        s.banner(&format!("{PUBLIC_IP}:8080")).as_deref(),
        Some("droplet-8080")
    );
    s.udp_forward_answers(5353, "roamer-udp");
    s.udp_forward_answers(60050, "roamer-range");
    assert_eq!(s.banner(&floating(8001)).as_deref(), Some("roamer-9001"));
}

fn allow_from_admits_the_allowed_source_only(mode: GatewayMode, backend: Backend) {
    // With --anchor-passthrough the droplet's own services answer on the anchor, so this also
    // shows that a refused source does not fall through to the droplet's ssh on anchor:22.
    let s = Scenario::on(mode, backend, &["--anchor-passthrough"]);
    let b = &s.bed;
    b.tcp_banner_server(&b.gw, 8080, "droplet-8080");
    s.ok(&["add-port", "22", "--allow-from", &format!("{CLIENT}/32")]);
    assert_eq!(
        b.cli.tcp_banner_from(CLIENT, &floating(22)).as_deref(),
        Some("roamer")
    );
    assert_eq!(b.cli.tcp_banner_from(OTHER_CLIENT, &floating(22)), None);
    assert_eq!(
        b.cli
            .tcp_banner_from(OTHER_CLIENT, &floating(8080))
            .as_deref(),
        Some("droplet-8080")
    );
}

fn remove_port_cuts_an_open_flow_and_add_port_works_at_once(mode: GatewayMode, backend: Backend) {
    let s = Scenario::on(mode, backend, &[]);
    let b = &s.bed;
    b.tcp_echo_server(&b.roam, 7000);
    s.ok(&["add-port", "7000"]);
    let stream = b
        .cli
        .connect(&floating(7000), Duration::from_secs(2))
        .expect("connect");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    let mut line = String::new();
    writer.write_all(b"one\n").expect("write");
    reader.read_line(&mut line).expect("echo before removal");
    assert_eq!(line, "one\n");

    s.ok(&["remove-port", "7000"]);
    line.clear();
    let _ = writer.write_all(b"two\n");
    let after = reader.read_line(&mut line);
    assert!(
        after.is_err() || line.is_empty(),
        "the open flow still carried data after remove-port: {line:?}"
    );

    b.tcp_banner_server(&b.roam, 7001, "fresh");
    s.ok(&["add-port", "7001"]);
    assert_eq!(s.banner(&floating(7001)).as_deref(), Some("fresh"));
}

const FOREIGN_TABLE: &str = "table inet foreign {
  counter seen { }
  set blocked { type ipv4_addr; elements = { 198.51.100.99 } }
  map ports { type inet_service : verdict; elements = { 2222 : drop, 2223 : accept } }
  chain input { type filter hook input priority 10; policy accept;
    ip saddr @blocked drop
    tcp dport vmap @ports
    counter name seen
  }
}
";

fn foreign_table(s: &Scenario) -> String {
    // Counters aside: they move with any traffic.
    let text = s
        .bed
        .gw
        .run(&["nft", "-s", "list", "table", "inet", "foreign"]);
    text.lines()
        .filter(|l| !l.contains("packets"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn a_foreign_table_is_identical_before_and_after(mode: GatewayMode, backend: Backend) {
    let mut s = Scenario::on(mode, backend, &[]);
    s.down();
    let out = s.bed.gw.run_with_stdin(&["nft", "-f", "-"], FOREIGN_TABLE);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = foreign_table(&s);
    s.up();
    s.ok(&["add-port", "22"]);
    s.ok(&["apply"]);
    assert_eq!(s.banner(&floating(22)).as_deref(), Some("roamer"));
    s.ok(&["remove-port", "22"]);
    s.down();
    assert_eq!(foreign_table(&s), before);
    let tables = s.bed.gw.run(&["nft", "list", "tables"]);
    assert!(
        !tables.contains("roamgw"),
        "roamgw left its table behind: {tables}"
    );
}

fn apply_repairs_a_flushed_ruleset_and_is_then_a_no_op(mode: GatewayMode, backend: Backend) {
    let s = Scenario::on(mode, backend, &[]);
    s.ok(&["add-port", "22"]);
    s.ok(&["add-port", "60000-60100/udp"]);
    assert_eq!(s.banner(&floating(22)).as_deref(), Some("roamer"));
    if mode == GatewayMode::Daemon {
        // The daemon sees the flush and repairs it by itself; `apply` then finds nothing.
        let repaired_after = |breaking: &[&str]| {
            s.bed.gw.run(breaking);
            let back = roamgw_e2e::wait_until(std::time::Duration::from_secs(3), || {
                s.banner(&floating(22)).as_deref() == Some("roamer")
            });
            assert!(
                back,
                "the daemon did not repair {breaking:?}:\n{}",
                s.bed.log("daemon.log")
            );
        };
        repaired_after(&["nft", "flush", "ruleset"]);
        let apply = s.ok(&["apply"]);
        assert!(apply.contains("up to date"), "{apply}");
        repaired_after(&["nft", "flush", "map", "inet", "roamgw", "dnat_addr"]);
        return;
    }
    s.bed.gw.run(&["nft", "flush", "ruleset"]);
    // Without our rules the anchor is just another droplet address.
    assert_eq!(
        s.banner(&floating(22)).as_deref(),
        Some("droplet"),
        "the flush should have cut the forward"
    );
    // Down: said, and in the exit code (3) for scripts and monitoring.
    let out = s.bed.roamgw(&roamgw_e2e::binary("roamgw"), &["status"]);
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(status.contains("down"), "{status}");
    assert_eq!(out.status.code(), Some(3), "{status}");
    let repaired = s.ok(&["apply"]);
    assert!(repaired.contains("replace"), "{repaired}");
    assert_eq!(s.banner(&floating(22)).as_deref(), Some("roamer"));
    assert_eq!(s.ok(&["apply"]).trim(), "table inet roamgw is up to date");
    // Drift in the elements is repaired element-wise.
    s.bed
        .gw
        .run(&["nft", "flush", "map", "inet", "roamgw", "dnat_addr"]);
    let repaired = s.ok(&["apply"]);
    assert!(repaired.contains("update"), "{repaired}");
    assert_eq!(s.banner(&floating(22)).as_deref(), Some("roamer"));
}
