//! The real client address (`--client-ip keep`, the default) against masquerade, end to end:
//! servers on the laptop report the address a connection or datagram came from, for the
//! roamer and for stock wg-quick with the generated config, on both backends; the laptop's own
//! traffic still leaves directly; allow-lists hold on the real source. The laptop runs strict
//! reverse-path filtering (Fedora's rp_filter=1) throughout: source routing must pass it.

use roamgw_e2e::{
    Backend, GatewayMode, Laptop, Scenario, ANCHOR_IP, CLIENT, FLOATING_IP, OTHER_CLIENT, PUBLIC_IP,
};

/// Where the laptop's servers report the peer address: keep and masquerade forwards.
const KEEP_PORT: u16 = 7000;
const MASQ_PORT: u16 = 7001;
const NAIVE_UDP_PORT: u16 = 7003;
/// The gateway's tunnel address: what a masqueraded forward shows.
const GATEWAY_TUNNEL: &str = "192.168.32.1";
/// The CGNAT's public address: what the outside sees of the laptop's own traffic.
const CGNAT_PUBLIC: &str = "198.51.100.2";

fn strict_rp_filter(s: &Scenario) {
    for conf in ["all", "default", "eth0"] {
        s.bed.roam.run(&[
            "sysctl",
            "-qw",
            &format!("net.ipv4.conf.{conf}.rp_filter=1"),
        ]);
    }
}

/// A UDP server as many are written: bound to 0.0.0.0, replying with `sendto` and no
/// source address of its own choosing (the kernel picks one from the route to the client).
fn naive_udp_server(s: &Scenario, port: u16) {
    let program = format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind(('0.0.0.0', {port}))\nwhile True:\n    d, a = s.recvfrom(100)\n    \
         s.sendto(a[0].encode(), a)\n"
    );
    s.bed.spawn(&s.bed.roam, &["python3", "-c", &program]);
}

fn scenario(backend: Backend, laptop: Laptop) -> Scenario {
    let s = Scenario::gateway_on(GatewayMode::Daemon, backend, &[], false);
    strict_rp_filter(&s);
    let s = s.connect_laptop(laptop);
    // An interface made after `default` was set inherits it; the tunnel's own is checked too.
    let tunnel = s.bed.roam.run(&[
        "sysctl",
        "-n",
        &format!("net.ipv4.conf.{}.rp_filter", s.bed.roam_wg),
    ]);
    assert_eq!(tunnel.trim(), "1", "the tunnel interface filters strictly");
    s.bed.peer_address_server(&s.bed.roam, KEEP_PORT);
    s.bed.peer_address_server(&s.bed.roam, MASQ_PORT);
    s.ok(&["add-port", &format!("{KEEP_PORT}/tcp+udp")]);
    s.ok(&[
        "add-port",
        &format!("{MASQ_PORT}/tcp+udp"),
        "--client-ip",
        "masquerade",
    ]);
    s
}

/// The first `Some` of `f` within 5 s (a server just spawned may not listen yet).
fn wait_for(mut f: impl FnMut() -> Option<String>) -> Option<String> {
    let mut got = None;
    roamgw_e2e::wait_until(std::time::Duration::from_secs(5), || {
        got = f();
        got.is_some()
    });
    got
}

/// What the laptop's servers saw of a TCP connection and a UDP datagram to `port`. The UDP
/// exchange gets the same 5 s as a new server. (A first exchange that went unanswered for all
/// of `udp_exchange`'s ~3 s on a loaded CI machine was the test server's race, not roamgw's:
/// `udp_answer` in testbed.rs.)
fn seen(s: &Scenario, port: u16) -> (Option<String>, Option<String>) {
    s.bed.seen_from_client(&format!("{FLOATING_IP}:{port}"))
}

fn assert_both_modes(s: &Scenario) {
    let client = Some(CLIENT.to_string());
    assert_eq!(seen(s, KEEP_PORT), (client.clone(), client.clone()), "keep");
    naive_udp_server(s, NAIVE_UDP_PORT);
    s.ok(&["add-port", &format!("{NAIVE_UDP_PORT}/udp")]);
    let answer = wait_for(|| {
        s.bed
            .cli
            .udp_exchange(&format!("{FLOATING_IP}:{NAIVE_UDP_PORT}"), "hi")
    });
    assert_eq!(
        answer, client,
        "a UDP server bound to 0.0.0.0 answers through the tunnel"
    );
    let tunnel = Some(GATEWAY_TUNNEL.to_string());
    assert_eq!(seen(s, MASQ_PORT), (tunnel.clone(), tunnel), "masquerade");
}

/// The laptop's own connection to the outside reports the CGNAT's address: it did not take
/// the tunnel.
fn assert_own_traffic_goes_direct(s: &Scenario) {
    s.bed.peer_address_server(&s.bed.cli, 7100);
    let seen = s.bed.roam.tcp_banner(&format!("{CLIENT}:7100"));
    assert_eq!(seen.as_deref(), Some(CGNAT_PUBLIC));
}

#[test]
fn roamer_sees_the_client_with_keep_and_the_gateway_with_masquerade() {
    let s = scenario(Backend::Nftables, Laptop::Roamer);
    // Another VPN on the laptop that takes all traffic into a table of its own (as Tailscale's
    // rules from 5210 do): the replies still find the tunnel, since our rule comes first.
    s.bed.roam.run(&[
        "ip",
        "route",
        "add",
        "default",
        "via",
        "100.64.0.1",
        "table",
        "200",
    ]);
    s.bed
        .roam
        .run(&["ip", "rule", "add", "lookup", "200", "priority", "5210"]);
    assert_both_modes(&s);
    // Each forward keeps its own mode, even to one laptop port: the laptop's server on
    // KEEP_PORT sees the gateway through 17000 and the client through KEEP_PORT.
    s.ok(&[
        "add-port",
        &format!("17000:{KEEP_PORT}/tcp+udp"),
        "--client-ip",
        "masquerade",
    ]);
    let tunnel = Some(GATEWAY_TUNNEL.to_string());
    assert_eq!(
        seen(&s, 17000),
        (tunnel.clone(), tunnel),
        "remap, masquerade"
    );
    let client = Some(CLIENT.to_string());
    assert_eq!(seen(&s, KEEP_PORT), (client.clone(), client), "keep, still");
    assert_own_traffic_goes_direct(&s);
    // Allow-lists are checked against the real source, which the laptop then sees.
    s.bed.peer_address_server(&s.bed.roam, 7002);
    s.ok(&["add-port", "7002", "--allow-from", OTHER_CLIENT]);
    let addr = format!("{FLOATING_IP}:7002");
    assert_eq!(s.bed.cli.tcp_banner_from(CLIENT, &addr), None, "refused");
    assert_eq!(
        s.bed.cli.tcp_banner_from(OTHER_CLIENT, &addr).as_deref(),
        Some(OTHER_CLIENT)
    );
    // The reply rule goes with the roamer.
    let rules = s.bed.roam.run(&["ip", "rule", "show"]);
    assert!(rules.contains("from 192.168.32.2 lookup 52"), "{rules}");
    s.roamer_down();
    let rules = s.bed.roam.run(&["ip", "rule", "show"]);
    assert!(!rules.contains("from 192.168.32.2"), "left behind: {rules}");
    let tables = s.bed.roam.run(&["nft", "list", "tables"]);
    assert!(!tables.contains("roamgw_"), "left behind: {tables}");
}

#[test]
fn stock_wg_quick_sees_the_client_with_the_generated_config() {
    let s = scenario(Backend::Nftables, Laptop::WgQuick);
    assert_both_modes(&s);
    assert_own_traffic_goes_direct(&s);
}

#[test]
fn firewalld_backend_keeps_and_masquerades_per_forward() {
    let s = scenario(Backend::Firewalld, Laptop::WgQuick);
    assert_both_modes(&s);
    // A forward changed from keep to masquerade: removed and added again.
    s.ok(&["remove-port", &format!("{KEEP_PORT}/tcp+udp")]);
    s.ok(&[
        "add-port",
        &format!("{KEEP_PORT}/tcp+udp"),
        "--client-ip",
        "masquerade",
    ]);
    let tunnel = Some(GATEWAY_TUNNEL.to_string());
    assert_eq!(seen(&s, KEEP_PORT), (tunnel.clone(), tunnel));
}

#[test]
fn status_tells_when_a_laptop_with_an_old_config_sends_nothing_back() {
    let s = Scenario::gateway_on(GatewayMode::Daemon, Backend::Nftables, &[], false);
    // The config of a version that masqueraded everything: only the subnet allowed, no rule.
    let config = s.ok(&["show-config", "laptop", "--format", "wg-quick"]);
    let old: String = config
        .lines()
        .filter(|l| {
            !l.starts_with("Table") && !l.starts_with("PostUp") && !l.starts_with("PreDown")
        })
        .map(|l| {
            if l.starts_with("AllowedIPs") {
                "AllowedIPs = 192.168.32.0/24\n".to_string()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    s.bed.wg_quick_up(&s.bed.roam, &s.bed.roam_wg, &old);
    s.bed.peer_address_server(&s.bed.roam, KEEP_PORT);
    s.ok(&["add-port", &format!("{KEEP_PORT}")]);
    assert_eq!(
        s.bed.cli.tcp_banner(&format!("{FLOATING_IP}:{KEEP_PORT}")),
        None
    );
    let status = s.bed.roamgw(&roamgw_e2e::binary("roamgw"), &["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains(&format!("forward {KEEP_PORT}/tcp: "))
            && text.contains("none back")
            && text.contains("--client-ip masquerade"),
        "{text}"
    );
    // Masquerade, as the message says, and it works with the old config.
    s.ok(&["remove-port", &format!("{KEEP_PORT}")]);
    s.ok(&[
        "add-port",
        &format!("{KEEP_PORT}"),
        "--client-ip",
        "masquerade",
    ]);
    assert_eq!(
        s.bed
            .cli
            .tcp_banner(&format!("{FLOATING_IP}:{KEEP_PORT}"))
            .as_deref(),
        Some(GATEWAY_TUNNEL)
    );
}

/// A forward reached from the laptop itself and from the droplet itself (a monitoring check,
/// a script), by the floating IP and by the anchor.
#[test]
fn hairpin_from_the_laptop_and_from_the_droplet() {
    let s = scenario(Backend::Nftables, Laptop::Roamer);
    let cases = [
        (KEEP_PORT, CGNAT_PUBLIC, PUBLIC_IP, ANCHOR_IP),
        (MASQ_PORT, GATEWAY_TUNNEL, GATEWAY_TUNNEL, GATEWAY_TUNNEL),
    ];
    for (port, from_laptop, from_droplet, from_droplet_to_anchor) in cases {
        let floating = format!("{FLOATING_IP}:{port}");
        // The laptop reaches its own forward the way the outside does: out through the CGNAT.
        let seen = (
            s.bed.roam.tcp_banner(&floating),
            s.bed.gw.tcp_banner(&floating),
            s.bed.gw.tcp_banner(&format!("{ANCHOR_IP}:{port}")),
            s.bed.gw.udp_exchange(&floating, "hi"),
        );
        let want = |a: &str| Some(a.to_string());
        if seen.3.is_none() {
            eprintln!("{}", hairpin_diagnostics(&s));
        }
        assert_eq!(
            seen,
            (
                want(from_laptop),
                want(from_droplet),
                want(from_droplet_to_anchor),
                want(from_droplet)
            ),
            "port {port}: (laptop, droplet, droplet to the anchor, droplet over UDP)"
        );
    }
    let status = s.bed.roamgw(&roamgw_e2e::binary("roamgw"), &["status"]);
    assert_eq!(status.status.code(), Some(0), "in sync");
}

/// What the kernels on both ends saw of an unanswered UDP hairpin: the droplet's conntrack
/// and counters, the laptop's UDP flows, rules and conntrack, the roamer's log.
fn hairpin_diagnostics(s: &Scenario) -> String {
    let interface: roamgw_common::names::InterfaceName =
        s.bed.roam_wg.parse().expect("interface name");
    let laptop_table = roamgw_common::replies::nft_table(&interface);
    let sections = [
        (
            "droplet conntrack",
            s.bed.gw.output(&["conntrack", "-L", "-p", "udp"]),
        ),
        (
            "droplet table",
            s.bed.gw.output(&["nft", "list", "table", "inet", "roamgw"]),
        ),
        ("droplet wg", s.bed.gw.output(&["wg", "show", &s.bed.gw_wg])),
        (
            "laptop table",
            s.bed
                .roam
                .output(&["nft", "list", "table", "inet", &laptop_table]),
        ),
        ("laptop rules", s.bed.roam.output(&["ip", "rule"])),
        // A reply that left past the tunnel shows here with the laptop's own address.
        (
            "laptop conntrack",
            s.bed.roam.output(&["conntrack", "-L", "-p", "udp"]),
        ),
        ("laptop sockets", s.bed.roam.output(&["ss", "-uanp"])),
        (
            "laptop udp counters",
            s.bed.roam.output(&["nstat", "-az", "Udp*"]),
        ),
    ];
    let mut text = String::from("UDP hairpin from the droplet unanswered:\n");
    for (name, out) in sections {
        text += &format!(
            "--- {name}\n{}{}\n",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    text + &s.bed.log("roamer.log")
}

/// What systemd-networkd does to rules it did not make when it configures a link, and what an
/// admin's cleanup does: the reply rules, their table and the UDP reply table gone while the
/// roamer runs. The roamer puts them back (it looks every 10 s and soon after network
/// changes) and kept clients are answered again.
#[test]
fn roamer_puts_back_reply_routing_that_someone_removed() {
    let s = scenario(Backend::Nftables, Laptop::Roamer);
    let client = Some(CLIENT.to_string());
    assert_eq!(seen(&s, KEEP_PORT), (client.clone(), client.clone()));
    let interface: roamgw_common::names::InterfaceName =
        s.bed.roam_wg.parse().expect("interface name");
    let table = roamgw_common::replies::table(&interface).to_string();
    let priority = roamgw_common::replies::RULE_PRIORITY.to_string();
    let removed = std::time::Instant::now();
    while s
        .bed
        .roam
        .output(&["ip", "rule", "del", "priority", &priority])
        .status
        .success()
    {}
    s.bed.roam.run(&["ip", "route", "flush", "table", &table]);
    s.bed.roam.run(&[
        "nft",
        "delete",
        "table",
        "inet",
        &roamgw_common::replies::nft_table(&interface),
    ]);
    let rules = s.bed.roam.run(&["ip", "rule", "show"]);
    assert!(!rules.contains(&format!("lookup {table}")), "{rules}");
    let back = roamgw_e2e::wait_until(std::time::Duration::from_secs(20), || {
        seen(&s, KEEP_PORT) == (client.clone(), client.clone())
    });
    let took = removed.elapsed();
    let log = s.bed.log("roamer.log");
    assert!(back, "kept clients not answered again:\n{log}");
    assert!(
        took < std::time::Duration::from_secs(15),
        "{took:?}: the roamer looks every 10 s"
    );
    eprintln!("reply routing back after {took:?}");
    for part in ["rules and route that send replies", "nft table"] {
        assert!(
            log.lines()
                .any(|l| l.contains(part) && l.contains("put back")),
            "{part}:\n{log}"
        );
    }
    s.assert_roamer_doctor_clean();
}

/// firewalld on the laptop (Fedora's default): the tunnel interface falls in the default zone,
/// which decides what forwarded ports the laptop accepts, by the clients' real addresses; its
/// rules do not disturb the reply routing, and a reload leaves (or the roamer puts back) the
/// UDP reply table.
#[test]
fn firewalld_on_the_laptop_decides_by_zone_and_leaves_the_replies_alone() {
    let s = scenario(Backend::Nftables, Laptop::Roamer);
    let firewalld = roamgw_e2e::firewalld::Firewalld::start(&s.bed, &s.bed.roam);
    let firewall = |args: &[&str]| {
        let out = firewalld.cmd(&s.bed.roam, args);
        assert!(
            out.status.success(),
            "firewall-cmd {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // firewalld's start made the kernel track connections: the tunnel's packets from the
    // gateway are refused until the laptop sends one. roamer sends one at once (a probe on the
    // nftables change) rather than at its next keepalive: the gateway's ping gets through.
    let ping = s.bed.gw.output(&["ping", "-c1", "-W1", "192.168.32.2"]);
    assert!(ping.status.success(), "{}", s.bed.log("roamer.log"));
    let client = Some(CLIENT.to_string());
    let addr = format!("{FLOATING_IP}:{KEEP_PORT}");
    assert_eq!(
        s.bed.cli.tcp_banner(&addr),
        None,
        "the public zone refuses 7000"
    );

    let port = format!("--add-port={KEEP_PORT}/tcp");
    let udp_port = format!("--add-port={KEEP_PORT}/udp");
    firewall(&[&port, &udp_port]);
    assert_eq!(seen(&s, KEEP_PORT), (client.clone(), client.clone()));

    // A reload drops runtime-only rules; the interface's zone then comes from the permanent
    // configuration: trusted accepts everything the gateway forwards.
    let trusted = format!("--add-interface={}", s.bed.roam_wg);
    firewall(&["--permanent", "--zone=trusted", &trusted]);
    firewall(&["--reload"]);
    let answered = roamgw_e2e::wait_until(std::time::Duration::from_secs(15), || {
        seen(&s, KEEP_PORT) == (client.clone(), client.clone())
    });
    assert!(
        answered,
        "{:?}\n{}",
        seen(&s, KEEP_PORT),
        s.bed.log("roamer.log")
    );
    s.assert_roamer_doctor_clean();
}
