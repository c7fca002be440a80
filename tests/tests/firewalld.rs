//! The firewalld backend against a real firewalld (in the gateway namespace, on a private
//! D-Bus): what only firewalld has. The scenarios shared with the nftables backend run on both
//! in tests/nftables.rs.

use roamgw_e2e::{Backend, GatewayMode, Scenario, FLOATING_IP, PUBLIC_IP};

fn floating(port: u16) -> String {
    format!("{FLOATING_IP}:{port}")
}

fn firewall_cmd(s: &Scenario, args: &[&str]) -> String {
    let fw = s.firewalld.as_ref().expect("firewalld runs");
    let out = fw.cmd(&s.bed.gw, args);
    assert!(
        out.status.success(),
        "firewall-cmd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Everything firewalld has that is not roamgw's: zones and policies, runtime and permanent.
fn users_config(s: &Scenario) -> String {
    let mut out = String::new();
    for permanent in [false, true] {
        let p: &[&str] = if permanent { &["--permanent"] } else { &[] };
        let zones = firewall_cmd(s, &[p, &["--get-zones"]].concat());
        for zone in zones.split_whitespace().filter(|z| *z != "roamgw") {
            out.push_str(&firewall_cmd(s, &[p, &["--info-zone", zone]].concat()));
        }
        let policies = firewall_cmd(s, &[p, &["--get-policies"]].concat());
        for policy in policies
            .split_whitespace()
            .filter(|p| !p.starts_with("roamgw"))
        {
            out.push_str(&firewall_cmd(s, &[p, &["--info-policy", policy]].concat()));
        }
        out.push_str(&firewall_cmd(s, &[p, &["--get-services"]].concat()));
    }
    out
}

#[test]
fn forwards_survive_a_firewalld_reload_behind_roamgws_back() {
    let s = Scenario::on(GatewayMode::Daemon, Backend::Firewalld, &[]);
    s.ok(&["add-port", "22"]);
    assert_eq!(s.banner(&floating(22)).as_deref(), Some("roamer"));
    let packets = || {
        let list: serde_json::Value =
            serde_json::from_str(&s.ok(&["list", "--json"])).expect("json");
        list[0]["packets"].as_u64().unwrap_or(0)
    };
    let before = packets();
    assert!(before > 0, "the counting table did not count");
    firewall_cmd(&s, &["--reload"]);
    assert_eq!(s.banner(&floating(22)).as_deref(), Some("roamer"));
    // A reload leaves roamgw's counting table (and its counts) alone.
    assert!(packets() > before, "the counters were reset or stopped");
    assert_eq!(
        s.banner(&format!("{PUBLIC_IP}:22")).as_deref(),
        Some("droplet")
    );
    // Runtime and permanent agree, so nothing is left to repair.
    let apply = s.ok(&["apply"]);
    assert!(apply.contains("up to date"), "{apply}");
    // roamgw's objects are firewalld's own: visible to its tools. Plain forwards are
    // entries of the roamer's ipset, which one rule per protocol DNATs.
    let set = firewall_cmd(&s, &["--info-ipset", "roamgw-192-168-32-2"]);
    assert!(set.contains("10.16.0.5,tcp:22"), "{set}");
    let dnat = firewall_cmd(&s, &["--info-policy", "roamgw-dnat"]);
    assert!(
        dnat.contains("destination ipset=\"roamgw-192-168-32-2\""),
        "{dnat}"
    );
}

#[test]
fn the_users_own_firewalld_config_is_identical_after_up_and_down_purge() {
    let s = Scenario::on(GatewayMode::External, Backend::Firewalld, &[]);
    s.ok(&["down", "--purge"]);
    // The admin's own things: a custom zone, a service, a rich rule.
    for args in [
        &["--permanent", "--new-zone=office"][..],
        &[
            "--permanent",
            "--zone=office",
            "--add-source=198.51.100.0/24",
        ][..],
        &["--permanent", "--new-service=mirror"][..],
        &["--permanent", "--service=mirror", "--add-port=8443/tcp"][..],
        &["--permanent", "--zone=public", "--add-service=mirror"][..],
        &[
            "--permanent",
            "--zone=public",
            "--add-rich-rule=rule family=\"ipv4\" source address=\"192.0.2.99\" drop",
        ][..],
        &["--reload"][..],
    ] {
        firewall_cmd(&s, args);
    }
    let before = users_config(&s);
    s.ok(&["up"]);
    s.ok(&["add-port", "22"]);
    s.ok(&[
        "add-port",
        "60000-60010/udp",
        "--allow-from",
        "192.0.2.0/24",
    ]);
    assert_eq!(s.banner(&floating(22)).as_deref(), Some("roamer"));
    assert_eq!(
        users_config(&s),
        before,
        "roamgw changed the admin's config"
    );
    s.ok(&["down", "--purge"]);
    assert_eq!(users_config(&s), before);
    let zones = firewall_cmd(&s, &["--permanent", "--get-zones"]);
    let policies = firewall_cmd(&s, &["--permanent", "--get-policies"]);
    assert!(
        !zones.contains("roamgw") && !policies.contains("roamgw"),
        "left behind: {zones} / {policies}"
    );
    // Nothing of roamgw's is left: the anchor is just another address of the droplet again.
    assert_eq!(s.banner(&floating(22)).as_deref(), Some("droplet"));
}

#[test]
fn the_nftables_backend_works_beside_a_running_firewalld() {
    let s = Scenario::on(GatewayMode::Daemon, Backend::NftablesBesideFirewalld, &[]);
    s.ok(&["add-port", "22"]);
    assert_eq!(s.banner(&floating(22)).as_deref(), Some("roamer"));
    // Only the WireGuard port went through firewalld; the forwards live in our table.
    let host = firewall_cmd(&s, &["--info-policy", "roamgw-host"]);
    assert!(host.contains("51820/udp"), "{host}");
    assert!(
        !firewall_cmd(&s, &["--get-policies"]).contains("roamgw-dnat"),
        "the nftables backend should not add forwards to firewalld"
    );
    // And firewalld's own reload does not break the tunnel: the port stays open.
    firewall_cmd(&s, &["--reload"]);
    s.bed.roam.run(&["ping", "-c1", "-W2", "192.168.32.1"]);
}
