//! Egress, opt-in: a roamer the gateway allows sends chosen destinations out through the
//! droplet, leaving with the anchor address (the outside sees the floating IP); other
//! destinations, the laptop's own networks, the tunnel itself and the droplet's own traffic
//! keep their way. A server in the client namespace reports the address it sees.

use roamgw_e2e::{
    binary, Backend, GatewayMode, Laptop, Scenario, CLIENT, FLOATING_IP, OTHER_CLIENT, PUBLIC_IP,
};

const REPORT_PORT: u16 = 7100;
const CGNAT_PUBLIC: &str = "198.51.100.2";
const ANCHOR_GATEWAY: &str = "10.16.0.1";

/// What the outside server at `host` sees of a connection from the laptop.
fn seen_from_laptop(s: &Scenario, host: &str) -> Option<String> {
    s.bed.roam.tcp_banner(&format!("{host}:{REPORT_PORT}"))
}

/// How the droplet routes what arrives from the laptop's tunnel address for the client.
fn route_of_arrivals(s: &Scenario) -> String {
    s.bed.gw.run(&[
        "ip",
        "route",
        "get",
        CLIENT,
        "from",
        "192.168.32.2",
        "iif",
        &s.bed.gw_wg,
    ])
}

/// The roamer again, with the config the gateway prints now.
fn restart_roamer(s: &Scenario) {
    s.roamer_down();
    s.start_roamer();
    s.await_tunnel(Laptop::Roamer);
}

#[test]
fn egress_leaves_as_the_floating_ip_for_chosen_destinations_only() {
    let s = Scenario::gateway_only(
        GatewayMode::Daemon,
        &["--anchor-gateway", ANCHOR_GATEWAY],
        false,
    );
    // The provider's anchor gateway, as on DigitalOcean: the router's address in the anchor's
    // network.
    s.bed.wan.run(&[
        "ip",
        "addr",
        "add",
        &format!("{ANCHOR_GATEWAY}/16"),
        "dev",
        "to-gw",
    ]);
    let s = s.connect_laptop(Laptop::Roamer);
    s.ok(&["add-port", "22"]);
    s.bed.peer_address_server(&s.bed.cli, REPORT_PORT);
    assert_eq!(
        seen_from_laptop(&s, CLIENT).as_deref(),
        Some(CGNAT_PUBLIC),
        "off by default"
    );

    let said = s.ok(&["egress", "laptop", &format!("{CLIENT}/32")]);
    assert!(said.contains("roamgw show-config laptop"), "{said}");
    restart_roamer(&s);
    assert_eq!(seen_from_laptop(&s, CLIENT).as_deref(), Some(FLOATING_IP));
    assert_eq!(
        seen_from_laptop(&s, OTHER_CLIENT).as_deref(),
        Some(CGNAT_PUBLIC),
        "other destinations stay direct"
    );
    // The droplet's own traffic keeps its public address; forwards still work.
    let droplet = s.bed.gw.tcp_banner(&format!("{CLIENT}:{REPORT_PORT}"));
    assert_eq!(droplet.as_deref(), Some(PUBLIC_IP));
    let route = route_of_arrivals(&s);
    assert!(route.contains(&format!("via {ANCHOR_GATEWAY}")), "{route}");
    assert_eq!(
        s.banner(&format!("{FLOATING_IP}:22")).as_deref(),
        Some("roamer")
    );
    // The rule dropped as systemd-networkd drops foreign rules: the daemon puts it back.
    s.bed.gw.run(&["ip", "rule", "del", "iif", &s.bed.gw_wg]);
    let repaired = roamgw_e2e::wait_until(std::time::Duration::from_secs(5), || {
        s.bed.log("daemon.log").contains("routing of")
    });
    assert!(repaired, "{}", s.bed.log("daemon.log"));
    let route = route_of_arrivals(&s);
    assert!(route.contains(&format!("via {ANCHOR_GATEWAY}")), "{route}");

    // Everything: the tunnel's own packets and the laptop's network stay out of it.
    s.ok(&["egress", "laptop", "0.0.0.0/0"]);
    restart_roamer(&s);
    assert_eq!(
        seen_from_laptop(&s, OTHER_CLIENT).as_deref(),
        Some(FLOATING_IP)
    );
    let lan = s.bed.roam.output(&["ping", "-c1", "-W1", "100.64.0.1"]);
    assert!(lan.status.success(), "the laptop's own network is direct");
    assert_eq!(
        s.banner(&format!("{FLOATING_IP}:22")).as_deref(),
        Some("roamer")
    );
    let rules = s.bed.roam.run(&["ip", "rule"]);
    assert!(
        rules.contains("sport"),
        "the tunnel's own UDP is excepted: {rules}"
    );

    // Off on the gateway: the laptop's old config can no longer use the droplet.
    s.ok(&["egress", "laptop", "--off"]);
    assert_eq!(
        seen_from_laptop(&s, OTHER_CLIENT),
        None,
        "refused by the gateway"
    );
    restart_roamer(&s);
    assert_eq!(
        seen_from_laptop(&s, OTHER_CLIENT).as_deref(),
        Some(CGNAT_PUBLIC)
    );
    s.roamer_down();
    let rules = s.bed.roam.run(&["ip", "rule"]);
    assert!(
        !rules.contains("lookup 53"),
        "egress rules left behind: {rules}"
    );
}

#[test]
fn egress_with_stock_wg_quick_and_refused_on_firewalld() {
    let s = Scenario::gateway_on(GatewayMode::Daemon, Backend::Nftables, &[], false);
    s.ok(&["egress", "laptop", &format!("{CLIENT}/32")]);
    let s = s.connect_laptop(Laptop::WgQuick);
    s.bed.peer_address_server(&s.bed.cli, REPORT_PORT);
    assert_eq!(seen_from_laptop(&s, CLIENT).as_deref(), Some(FLOATING_IP));
    assert_eq!(
        seen_from_laptop(&s, OTHER_CLIENT).as_deref(),
        Some(CGNAT_PUBLIC)
    );

    let fw = Scenario::gateway_on(GatewayMode::Daemon, Backend::Firewalld, &[], false);
    let out = fw
        .bed
        .roamgw(&binary("roamgw"), &["egress", "laptop", "0.0.0.0/0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("needs the nftables backend"), "{err}");
}
