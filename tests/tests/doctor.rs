//! `roamgw doctor` on the namespace internet: healthy first, then each thing it checks broken
//! on purpose, one at a time, and found with its fix.

use roamgw_e2e::{binary, GatewayMode, Laptop, Scenario};

/// (exit code, output) of `roamgw doctor`.
fn doctor(s: &Scenario) -> (Option<i32>, String) {
    let out = s.bed.roamgw(&binary("roamgw"), &["doctor"]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn line<'a>(text: &'a str, start: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting {start:?} in:\n{text}"))
}

#[test]
fn doctor_finds_each_broken_thing() {
    let s = Scenario::build_with(GatewayMode::Daemon, Laptop::Roamer, &[], false);
    let (code, text) = doctor(&s);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        !text.contains("WARN") && !text.contains("FAIL"),
        "healthy:\n{text}"
    );
    assert!(line(&text, "ok   handshake: laptop").contains("s ago"));

    // A roamer that never connected: the cloud firewall hint.
    s.ok(&["add-roamer", "phone"]);
    let (_, text) = doctor(&s);
    assert!(line(&text, "WARN handshake: phone").contains("cloud firewall"));

    // The tunnel MTU no longer fits the path.
    s.bed.gw.run(&["ip", "link", "set", "eth0", "mtu", "1400"]);
    let (_, text) = doctor(&s);
    assert!(line(&text, "WARN mtu").contains("--mtu 1340"), "{text}");

    // A network on the droplet that overlaps the tunnel subnet.
    s.bed
        .gw
        .run(&["ip", "route", "add", "192.168.32.128/25", "dev", "eth0"]);
    assert!(line(&doctor(&s).1, "WARN subnet").contains("192.168.32.128/25 on eth0"));

    // Another table that DNATs, and one that drops input by default.
    s.bed.gw.run_with_stdin(
        &["nft", "-f", "-"],
        "table ip admin {\n chain pre { type nat hook prerouting priority -90; ip daddr 10.16.0.5 tcp dport 2200 dnat to 10.16.0.9; }\n chain input { type filter hook input priority 10; policy drop; }\n}\n",
    );
    let (_, text) = doctor(&s);
    assert!(line(&text, "WARN dnat").contains("ip admin/pre"), "{text}");
    assert!(
        line(&text, "WARN wireguard_port").contains("ip admin/input"),
        "{text}"
    );

    // A key others can read, and forwarding off: both fail, exit 1.
    let key = s.bed.config_dir().join("keys/gateway.key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    s.bed.gw.run(&["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
    let (code, text) = doctor(&s);
    assert_eq!(code, Some(1), "{text}");
    assert!(line(&text, "FAIL secrets").contains("chmod 600"), "{text}");
    assert!(line(&text, "FAIL ip_forward").contains("sysctl -w net.ipv4.ip_forward=1"));
    let json = s.bed.roamgw(&binary("roamgw"), &["doctor", "--json"]);
    let findings: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert!(findings.as_array().is_some_and(|f| f
        .iter()
        .any(|x| x["check"] == "ip_forward" && x["level"] == "fail")));

    // A gateway.key that is not the state's (`roamgw run` refuses it): a finding too.
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    std::fs::write(&key, s.bed.gw.run(&["wg", "genkey"])).expect("another key");
    let (code, text) = doctor(&s);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        line(&text, "FAIL gateway_key").contains("does not match the gateway's public key"),
        "{text}"
    );
}

#[test]
fn roamer_doctor_finds_missing_reply_routing() {
    let s = Scenario::build_with(GatewayMode::Daemon, Laptop::Roamer, &[], false);
    let doctor = |s: &Scenario| {
        let out = s.roamer(&["doctor"]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let healthy = roamgw_e2e::wait_until(std::time::Duration::from_secs(5), || {
        doctor(&s).0 == Some(0) && doctor(&s).1.contains("ok   tunnel: up")
    });
    let (_, text) = doctor(&s);
    assert!(healthy, "{text}");
    assert!(!text.contains("WARN") && !text.contains("FAIL"), "{text}");

    // The roamer is frozen meanwhile: a running one puts what is removed back within 10 s
    // (client_ip.rs), which would race the doctor here.
    let roamer = s.roamer_pid().to_string();
    s.bed.roam.run(&["kill", "-STOP", &roamer]);
    // The UDP reply table dropped by someone: warned.
    s.bed.roam.run(&[
        "nft",
        "delete",
        "table",
        roamgw_common::replies::NFT_FAMILY,
        &format!("roamgw_{}", s.bed.roam_wg),
    ]);
    assert!(line(&doctor(&s).1, "WARN udp_replies").contains("puts it back"));

    // The source rule gone: replies to kept clients would leave directly. Fails.
    s.bed.roam.run(&[
        "ip",
        "rule",
        "del",
        "from",
        "192.168.32.2",
        "priority",
        "5100",
    ]);
    let (code, text) = doctor(&s);
    assert_eq!(code, Some(1), "{text}");
    assert!(line(&text, "FAIL replies").contains("1 of 2"), "{text}");
    assert!(
        line(&text, "FAIL replies").contains("puts it back"),
        "{text}"
    );

    // Thawed, the roamer puts both back.
    s.bed.roam.run(&["kill", "-CONT", &roamer]);
    let repaired = roamgw_e2e::wait_until(std::time::Duration::from_secs(15), || {
        doctor(&s).0 == Some(0)
    });
    assert!(repaired, "{}", doctor(&s).1);

    s.roamer_down();
    assert!(line(&doctor(&s).1, "WARN tunnel").contains("not running"));
}
