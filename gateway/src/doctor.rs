//! `roamgw doctor`: what is wrong with this droplet for roamgw, one finding a line, each with
//! its fix. The system is read once into [`Facts`]; [`evaluate`] turns them into findings and
//! is a pure function with table tests.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;
pub use roamgw_common::doctor::{Finding, Level};

/// What `doctor` reads from the system.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub ip_forward: Option<bool>,
    /// rp_filter of the interface with the default route (0 off, 1 strict, 2 loose).
    pub rp_filter: Option<(String, u8)>,
    pub listen_port: u16,
    pub anchor: String,
    pub anchor_gateway: Option<Ipv4Addr>,
    /// Roamers with the seconds since their last handshake (`None`: never).
    pub handshakes: Vec<(String, Option<u64>)>,
    /// Whether a WireGuard interface of ours is there to ask.
    pub interface_up: bool,
    pub tunnel_mtu: u16,
    /// (interface, MTU) the default route leaves by.
    pub path_mtu: Option<(String, u32)>,
    pub subnet: Ipv4Net,
    /// Routes of other interfaces that overlap the tunnel subnet, as text.
    pub collisions: Vec<String>,
    /// Secret files others may read: (path, mode).
    pub exposed_secrets: Vec<(String, u32)>,
    /// Why the gateway's key file cannot serve the public key the state names (missing,
    /// unreadable, another key); `None`: it does.
    pub gateway_key_problem: Option<String>,
    pub kernel_wireguard: bool,
    /// Other tables' input base chains that drop by default: "family table/chain".
    pub dropping_input_chains: Vec<String>,
    /// Other tables with a DNAT rule: "family table/chain".
    pub foreign_dnat: Vec<String>,
    pub firewalld_running: bool,
    /// The floating IP, when roamers dial it (its NAT is then what their handshakes cross).
    pub dialed_floating_ip: Option<Ipv4Addr>,
    /// Where the handshakes of roamers with a working session come from.
    pub roamer_sources: Vec<IpAddr>,
}

/// The findings, in a fixed order.
pub fn evaluate(f: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    forwarding(f, &mut out);
    tunnel(f, &mut out);
    neighbours(f, &mut out);
    out.extend(provider_nat(f));
    out.push(roamgw_common::doctor::wireguard_kind(f.kernel_wireguard));
    out
}

/// The kernel forwards, and strict reverse-path filtering does not drop the replies.
fn forwarding(f: &Facts, out: &mut Vec<Finding>) {
    out.push(match f.ip_forward {
        Some(true) => Finding::ok("ip_forward", "on"),
        Some(false) => Finding::fail(
            "ip_forward",
            "off: nothing is forwarded to the roamers",
            "sysctl -w net.ipv4.ip_forward=1 (roamgw up and roamgw run turn it on)",
        ),
        None => Finding::warn(
            "ip_forward",
            "cannot read /proc/sys/net/ipv4/ip_forward",
            "run roamgw doctor on the droplet itself, with /proc mounted",
        ),
    });
    if let Some((interface, mode)) = &f.rp_filter {
        out.push(match (mode, f.anchor_gateway) {
            (1, Some(gateway)) => Finding::warn("rp_filter", format!("strict on {interface}, and roamers' traffic leaves by the anchor gateway {gateway}: replies that come back another way are dropped"), format!("sysctl -w net.ipv4.conf.{interface}.rp_filter=2 (loose)")),
            _ => Finding::ok("rp_filter", format!("{mode} on {interface}")),
        });
    }
}

/// The WireGuard port is reachable, roamers handshake, the MTU fits the path.
fn tunnel(f: &Facts, out: &mut Vec<Finding>) {
    out.push(if f.dropping_input_chains.is_empty() {
        Finding::ok(
            "wireguard_port",
            format!(
                "no other table drops input by default (udp {})",
                f.listen_port
            ),
        )
    } else {
        Finding::warn(
            "wireguard_port",
            format!(
                "{} drop input by default: udp {} must be accepted there",
                f.dropping_input_chains.join(", "),
                f.listen_port
            ),
            format!(
                "add `udp dport {} accept` to that chain (roamgw never edits other tables)",
                f.listen_port
            ),
        )
    });
    if f.firewalld_running {
        out.push(Finding::ok(
            "firewalld",
            format!(
                "running: roamgw opens udp {} through it at up",
                f.listen_port
            ),
        ));
    }
    if f.interface_up {
        for (name, handshake) in &f.handshakes {
            out.push(match handshake {
                Some(secs) if roamgw_common::doctor::session_alive(Some(*secs)) => {
                    Finding::ok("handshake", format!("{name}: {secs} s ago"))
                }
                Some(secs) => Finding::warn(
                    "handshake",
                    format!(
                        "{name}: last completed handshake {secs} s ago: no working session (one lasts {} s)",
                        roamgw_common::doctor::SESSION_SECS
                    ),
                    format!("see `roamer status` on {name}: a laptop that is off or offline is fine; one that says the gateway never answered does not get the answers"),
                ),
                None => Finding::warn("handshake", format!("{name}: never a handshake"), format!(
                        "check that the cloud firewall lets udp {} in, and that {name} runs with its current config (roamgw show-config {name})",
                        f.listen_port
                    )),
            });
        }
    }
    if let Some((interface, path)) = &f.path_mtu {
        let fits = crate::device::max_tunnel_mtu(*path);
        out.push(if u32::from(f.tunnel_mtu) > fits {
            Finding::warn(
                "mtu",
                format!(
                    "tunnel MTU {} does not fit {interface}'s {path} (at most {fits})",
                    f.tunnel_mtu
                ),
                format!("roamgw init --force --mtu {fits}, or lower"),
            )
        } else {
            Finding::ok(
                "mtu",
                format!("tunnel {} fits {interface}'s {path}", f.tunnel_mtu),
            )
        });
    }
}

/// What else on the droplet could collide: networks, other DNAT rules, readable secrets.
fn neighbours(f: &Facts, out: &mut Vec<Finding>) {
    out.push(if f.collisions.is_empty() {
        Finding::ok("subnet", format!("{} overlaps no other network", f.subnet))
    } else {
        Finding::warn(
            "subnet",
            format!("{} overlaps {}", f.subnet, f.collisions.join(", ")),
            "pick another with roamgw init --force --subnet",
        )
    });
    out.push(if f.foreign_dnat.is_empty() {
        Finding::ok("dnat", "no other table DNATs")
    } else {
        Finding::warn("dnat", format!(
                "{} DNAT too: a rule there for the anchor {} and a forwarded port takes the traffic first or second",
                f.foreign_dnat.join(", "),
                f.anchor
            ), "check those rules do not match the forwarded ports (nft list ruleset)")
    });
    out.extend(f.exposed_secrets.iter().map(|(path, mode)| {
        Finding::fail(
            "secrets",
            format!("{path} is mode {mode:o}: others may read a key"),
            format!("chmod 600 {path}, and rotate the key if it was exposed"),
        )
    }));
    if f.exposed_secrets.is_empty() {
        out.push(Finding::ok("secrets", "key files are 0600"));
    }
    out.push(match &f.gateway_key_problem {
        None => Finding::ok(
            "gateway_key",
            "gateway.key belongs to the public key the roamers' configs name",
        ),
        Some(problem) => Finding::fail(
            "gateway_key",
            problem.clone(),
            "`roamgw run` refuses to start until this is fixed",
        ),
    });
}

/// What the provider's floating-IP NAT does to client addresses (issue 26's models), judged
/// from the sources of the roamers' handshakes: a laptop on the internet never comes from a
/// private or shared address, so when every one does, the NAT rewrote it.
fn provider_nat(f: &Facts) -> Option<Finding> {
    let floating = f.dialed_floating_ip?;
    let private = f.roamer_sources.iter().find(|s| !is_internet(**s));
    let public = f.roamer_sources.iter().any(|s| is_internet(*s));
    Some(match (private, public) {
        (None, false) => Finding::ok(
            "provider_nat",
            format!("not observed yet: no roamer dialing {floating} has a working session"),
        ),
        (Some(private), true) => Finding::ok(
            "provider_nat",
            format!("{floating}'s NAT keeps client addresses (a roamer from {private} is on a private network)"),
        ),
        (None, true) => {
            let gateway = match f.anchor_gateway {
                Some(gateway) => format!("anchor traffic leaves by the anchor gateway {gateway}"),
                None => "if the provider drops anchor traffic not sent to its gateway, add it with roamgw init --force --anchor-gateway".into(),
            };
            Finding::ok(
                "provider_nat",
                format!("{floating}'s NAT keeps client addresses: forwarded clients reach the laptops with their own address; {gateway}"),
            )
        }
        (Some(rewritten), false) => Finding::warn(
            "provider_nat",
            format!("{floating}'s NAT rewrites client addresses to {rewritten}: laptops see every forwarded client as {rewritten}, and after a failover only a laptop's own handshake reaches the new droplet"),
            "nothing on the droplet changes this: in a pair, run `roamer` on the laptops (it handshakes again within its keepalive interval + 2 s; stock wg-quick only once it sends, 15 s later, or at its next rekey)",
        ),
    })
}

/// Not private, shared (CGNAT), loopback or link-local: an address on the internet.
fn is_internet(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(roamgw_common::state::is_private_or_shared(v4)
                || v4.is_loopback()
                || v4.is_link_local())
        }
        IpAddr::V6(v6) => {
            let unique_local = (v6.segments()[0] & 0xfe00) == 0xfc00;
            let link_local = (v6.segments()[0] & 0xffc0) == 0xfe80;
            !(unique_local || link_local || v6.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roamgw_common::doctor::{assert_each_break_is_found, Break};

    fn healthy() -> Facts {
        Facts {
            ip_forward: Some(true),
            rp_filter: Some(("eth0".into(), 1)),
            listen_port: 51820,
            anchor: "10.16.0.5".into(),
            handshakes: vec![("laptop".into(), Some(3))],
            interface_up: true,
            tunnel_mtu: 1420,
            path_mtu: Some(("eth0".into(), 1500)),
            subnet: "192.168.32.0/24".parse().expect("net"),
            kernel_wireguard: true,
            dialed_floating_ip: Some(Ipv4Addr::new(203, 0, 113, 50)),
            roamer_sources: vec!["198.51.100.7".parse().expect("ip")],
            ..Facts::default()
        }
    }

    fn levels(f: &Facts) -> Vec<(&'static str, Level)> {
        evaluate(f).iter().map(|x| (x.check, x.level)).collect()
    }

    #[test]
    fn a_healthy_droplet_has_nothing_to_fix() {
        let findings = evaluate(&healthy());
        assert!(
            findings.iter().all(|f| f.level == Level::Ok),
            "{findings:?}"
        );
    }

    #[test]
    fn each_broken_thing_is_one_finding_with_a_fix() {
        let cases: &[Break<Facts>] = &[
            (
                "ip_forward off",
                |f| f.ip_forward = Some(false),
                "ip_forward",
                Level::Fail,
            ),
            (
                "strict rp_filter with an anchor gateway",
                |f| f.anchor_gateway = Some(Ipv4Addr::new(10, 16, 0, 1)),
                "rp_filter",
                Level::Warn,
            ),
            (
                "a dropping input chain",
                |f| f.dropping_input_chains = vec!["inet filter/input".into()],
                "wireguard_port",
                Level::Warn,
            ),
            (
                "a gateway key that is not the state's",
                |f| f.gateway_key_problem = Some("keys/gateway.key does not match".into()),
                "gateway_key",
                Level::Fail,
            ),
            (
                "never a handshake",
                |f| f.handshakes = vec![("laptop".into(), None)],
                "handshake",
                Level::Warn,
            ),
            (
                "a handshake older than a session lives",
                |f| f.handshakes = vec![("laptop".into(), Some(600))],
                "handshake",
                Level::Warn,
            ),
            (
                "MTU too large",
                |f| f.path_mtu = Some(("eth0".into(), 1400)),
                "mtu",
                Level::Warn,
            ),
            (
                "subnet collision",
                |f| f.collisions = vec!["192.168.32.0/24 on eth1".into()],
                "subnet",
                Level::Warn,
            ),
            (
                "foreign DNAT",
                |f| f.foreign_dnat = vec!["ip other/pre".into()],
                "dnat",
                Level::Warn,
            ),
            (
                "a NAT that rewrites clients (model c)",
                |f| f.roamer_sources = vec!["10.16.0.1".parse().expect("ip"); 2],
                "provider_nat",
                Level::Warn,
            ),
            (
                "exposed key",
                |f| f.exposed_secrets = vec![("/etc/roamgw/keys/gateway.key".into(), 0o644)],
                "secrets",
                Level::Fail,
            ),
        ];
        assert_each_break_is_found(healthy, evaluate, cases);
        // Without an interface, handshakes are not judged.
        let mut down = healthy();
        down.interface_up = false;
        down.handshakes = vec![("laptop".into(), None)];
        assert!(levels(&down).iter().all(|(_, l)| *l == Level::Ok));
    }

    #[test]
    fn the_provider_nat_is_named_from_the_roamers_sources() {
        let says = |sources: &[&str], floating: bool| {
            let mut f = healthy();
            f.roamer_sources = sources.iter().map(|s| s.parse().expect("ip")).collect();
            f.dialed_floating_ip = floating.then(|| Ipv4Addr::new(203, 0, 113, 50));
            evaluate(&f)
                .into_iter()
                .find(|x| x.check == "provider_nat")
                .map(|x| (x.level, x.message))
        };
        let cases: &[(&[&str], bool, Option<Level>, &str)] = &[
            (
                &["198.51.100.7"],
                true,
                Some(Level::Ok),
                "keeps client addresses",
            ),
            (
                &["10.16.0.1", "10.16.0.1"],
                true,
                Some(Level::Warn),
                "rewrites client addresses to 10.16.0.1",
            ),
            (&["100.64.3.1"], true, Some(Level::Warn), "rewrites"),
            (
                &["198.51.100.7", "10.0.0.9"],
                true,
                Some(Level::Ok),
                "on a private network",
            ),
            (&[], true, Some(Level::Ok), "not observed yet"),
            (&["10.16.0.1"], false, None, ""),
        ];
        for (sources, floating, level, text) in cases {
            let got = says(sources, *floating);
            assert_eq!(got.as_ref().map(|g| g.0), *level, "{sources:?}: {got:?}");
            if let Some((_, message)) = got {
                assert!(message.contains(text), "{sources:?}: {message}");
            }
        }
    }
}
