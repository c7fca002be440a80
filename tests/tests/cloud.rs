//! `roamgw init` with no address flags on a cloud droplet: DigitalOcean's metadata service
//! (a fake one, on 169.254.169.254 inside the droplet's test namespace) gives the public IP,
//! the anchor and its gateway and the reserved IP; elsewhere init gives up on it fast and
//! reads the interfaces. Flags override.

use std::time::{Duration, Instant};

use roamgw_e2e::{binary, Testbed, ANCHOR_IP, FLOATING_IP, PUBLIC_IP};

const METADATA_ADDRESS: &str = "169.254.169.254";

fn init(bed: &Testbed, extra: &[&str]) -> String {
    let mut args = vec![
        "init",
        "--force",
        "--wireguard",
        "external",
        "--interface",
        &bed.gw_wg,
    ];
    args.extend_from_slice(extra);
    let out = bed.roamgw(&binary("roamgw"), &args);
    assert!(
        out.status.success(),
        "init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn state(bed: &Testbed) -> String {
    std::fs::read_to_string(bed.config_dir().join("gateway.toml")).expect("state")
}

#[test]
fn init_on_digitalocean_reads_the_metadata_service() {
    let bed = Testbed::new();
    let www = bed.dir.path().join("metadata-www");
    std::fs::create_dir_all(www.join("metadata")).expect("dir");
    std::fs::write(
        www.join("metadata/v1.json"),
        format!(
            r#"{{"droplet_id": 1, "interfaces": {{"public": [{{
                "ipv4": {{"ip_address": "{PUBLIC_IP}", "netmask": "255.255.255.0", "gateway": "203.0.113.1"}},
                "anchor_ipv4": {{"ip_address": "{ANCHOR_IP}", "netmask": "255.255.0.0", "gateway": "10.16.0.1"}},
                "ipv6": {{"ip_address": "2001:DB8:D:0:0:0:0:10", "cidr": 64, "gateway": "2001:db8:d::1"}},
                "type": "public"}}], "private": []}},
              "reserved_ip": {{"ipv4": {{"active": true, "ip_address": "{FLOATING_IP}"}},
                               "ipv6": {{"active": true, "ip_address": "2001:db8:d::50"}}}}}}"#
        ),
    )
    .expect("metadata");
    bed.gw.run(&[
        "ip",
        "addr",
        "add",
        &format!("{METADATA_ADDRESS}/32"),
        "dev",
        "lo",
    ]);
    bed.spawn(
        &bed.gw,
        &[
            "python3",
            "-m",
            "http.server",
            "--bind",
            METADATA_ADDRESS,
            "--directory",
            www.to_str().expect("utf-8"),
            "80",
        ],
    );
    let served = roamgw_e2e::wait_until(Duration::from_secs(5), || {
        bed.gw
            .tcp_banner(&format!("{METADATA_ADDRESS}:80"))
            .is_some()
            || bed
                .gw
                .connect(
                    &format!("{METADATA_ADDRESS}:80"),
                    Duration::from_millis(200),
                )
                .is_ok()
    });
    assert!(served, "the fake metadata service did not start");

    let said = init(&bed, &[]);
    assert!(said.contains("DigitalOcean's metadata service"), "{said}");
    // The reserved IPv6 is static and the pair's: roamers dial it and forwards answer on it;
    // the droplet's own stays its own.
    assert!(
        said.contains("forwards answer on 2001:db8:d::50 too"),
        "{said}"
    );
    let text = state(&bed);
    for line in [
        format!("public_ip = \"{PUBLIC_IP}\""),
        format!("anchor_ip = \"{ANCHOR_IP}\""),
        format!("floating_ip = \"{FLOATING_IP}\""),
        "anchor_gateway = \"10.16.0.1\"".to_string(),
        "endpoint6 = \"[2001:db8:d::50]:51820\"".to_string(),
        "forward6 = \"2001:db8:d::50\"".to_string(),
        "public_ip6 = \"2001:db8:d::10\"".to_string(),
        "subnet6 = \"fd".to_string(),
    ] {
        assert!(text.contains(&line), "{line} missing:\n{text}");
    }
    // Flags win over what the provider says.
    init(&bed, &["--floating-ip", "203.0.113.60"]);
    assert!(state(&bed).contains("floating_ip = \"203.0.113.60\""));
}

#[test]
fn init_elsewhere_gives_up_on_metadata_fast_and_reads_the_interfaces() {
    let bed = Testbed::new();
    binary("roamgw"); // built before the clock starts
    let started = Instant::now();
    let said = init(&bed, &[]);
    let took = started.elapsed();
    assert!(said.contains("the addresses of eth0"), "{said}");
    assert!(state(&bed).contains(&format!("anchor_ip = \"{ANCHOR_IP}\"")));
    // The metadata request is bounded by 1 s; 3 s leaves room for a loaded machine.
    assert!(took < Duration::from_secs(3), "init took {took:?}");
}

/// Hetzner's and Vultr's shape: the floating IP is configured on the droplet's own interface
/// (no provider NAT, no private anchor); it is then the anchor itself.
#[test]
fn a_floating_ip_on_the_interface_is_the_anchor() {
    use roamgw_e2e::{GatewayMode, Laptop, Scenario};
    let mut s = Scenario::build_with(GatewayMode::Daemon, Laptop::Roamer, &[], false);
    s.stop_daemon();
    s.roamer_down();
    // No 1:1 NAT at the provider: the floating IP routes to the droplet, which carries it.
    s.bed.wan.run(&["nft", "delete", "table", "ip", "provider"]);
    s.bed.gw.run(&[
        "ip",
        "addr",
        "add",
        &format!("{FLOATING_IP}/24"),
        "dev",
        "eth0",
    ]);
    let gw_wg = s.bed.gw_wg.clone();
    s.ok(&[
        "init",
        "--force",
        "--public-ip",
        PUBLIC_IP,
        "--anchor-ip",
        FLOATING_IP,
        "--wireguard",
        "userspace",
        "--interface",
        &gw_wg,
    ]);
    s.ok(&["add-roamer", "laptop"]);
    s.start_daemon();
    s.start_roamer();
    let said = s.ok(&["add-port", "22"]);
    assert!(said.contains(&format!("{FLOATING_IP}:22")), "{said}");
    assert!(
        roamgw_e2e::wait_until(Duration::from_secs(10), || s
            .banner(&format!("{FLOATING_IP}:22"))
            .as_deref()
            == Some("roamer")),
        "the floating IP does not reach the laptop:\n{}",
        s.bed.log("daemon.log")
    );
    assert_eq!(
        s.banner(&format!("{PUBLIC_IP}:22")).as_deref(),
        Some("droplet")
    );
}
