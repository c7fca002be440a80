//! A roamer as systemd-networkd files: a `.netdev` (the WireGuard link, its key in a file of
//! its own) and a `.network` (the addresses, and the reply routing of
//! [`crate::replies`] as `[RoutingPolicyRule]` and `[Route]` sections: no scripts). What
//! networkd cannot say, the UDP reply table for servers bound to 0.0.0.0, is the one nft line
//! of [`crate::replies::udp_reply_ruleset`], loaded by a small unit after networkd has made the
//! link.
//!
//! networkd makes no routes for a peer's AllowedIPs unless `RouteTable=` asks (systemd 250
//! and later), so AllowedIPs may accept any source, as the roamer's device does, and the
//! tunnel subnet's route comes with the address.

use std::fmt::Write as _;

use crate::replies;
use crate::state::RoamerConfig;

/// Where networkd reads its files.
pub const DIR: &str = "/etc/systemd/network";

/// One file of the set: where it goes, its mode, and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: String,
    /// `0640 root:systemd-network` for the key (networkd reads it as that group), else 0644.
    pub mode: u32,
    pub group: Option<&'static str>,
    pub text: String,
}

/// The files for `config`: the key file only when the config holds the key (one the laptop
/// made itself is the user's to put there).
pub fn files(config: &RoamerConfig) -> Vec<File> {
    let name = config.interface.as_str();
    let key_path = format!("{DIR}/{name}.key");
    let mut out = vec![
        File {
            path: format!("{DIR}/50-{name}.netdev"),
            mode: 0o644,
            group: None,
            text: netdev(config, &key_path),
        },
        File {
            path: format!("{DIR}/50-{name}.network"),
            mode: 0o644,
            group: None,
            text: network(config),
        },
        File {
            path: "/etc/systemd/system/roamgw-udp-replies@.service".to_string(),
            mode: 0o644,
            group: None,
            text: udp_replies_unit(config),
        },
    ];
    if let Some(key) = &config.private_key {
        out.push(File {
            path: key_path,
            mode: 0o640,
            group: Some("systemd-network"),
            text: format!("{}\n", key.expose_base64().as_str()),
        });
    }
    out
}

fn netdev(config: &RoamerConfig, key_path: &str) -> String {
    let gateway = &config.gateway;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "[NetDev]\nName={}\nKind=wireguard\nMTUBytes={}\n",
        config.interface, config.mtu
    );
    let _ = writeln!(out, "[WireGuard]\nPrivateKeyFile={key_path}\n");
    let _ = writeln!(out, "[WireGuardPeer]\nPublicKey={}", gateway.public_key);
    if let Some(psk) = &gateway.preshared_key {
        let _ = writeln!(out, "PresharedKey={}", psk.expose_base64().as_str());
    }
    let any: Vec<String> = config
        .any_source()
        .iter()
        .map(ToString::to_string)
        .collect();
    let _ = writeln!(out, "AllowedIPs={}", any.join(","));
    let _ = writeln!(out, "Endpoint={}", gateway.endpoint);
    if gateway.persistent_keepalive > 0 {
        let _ = writeln!(out, "PersistentKeepalive={}", gateway.persistent_keepalive);
    }
    out
}

fn network(config: &RoamerConfig) -> String {
    let table = replies::table(&config.interface);
    let mark = replies::mark(&config.interface);
    let priority = replies::RULE_PRIORITY;
    let mut out = format!("[Match]\nName={}\n\n[Network]\n", config.interface);
    for address in config.tunnel_addresses() {
        let _ = writeln!(out, "Address={address}");
    }
    // Our rules, so networkd's ManageForeignRoutingPolicyRules= keeps them; per family, the
    // rules by source and by mark and the reply table's default route.
    for address in config.tunnel_addresses() {
        let (family, default) = match address {
            ipnet::IpNet::V4(_) => ("ipv4", "0.0.0.0/0"),
            ipnet::IpNet::V6(_) => ("ipv6", "::/0"),
        };
        let _ = write!(
            out,
            "\n[RoutingPolicyRule]\nFrom={source}\nTable={table}\nPriority={priority}\n\
             \n[RoutingPolicyRule]\nFirewallMark={mark}\nTable={table}\nPriority={priority}\nFamily={family}\n\
             \n[Route]\nDestination={default}\nTable={table}\nScope=link\n",
            source = address.addr()
        );
    }
    for destination in config.egress() {
        let _ = write!(
            out,
            "\n# Egress: not expressed here (its rules keep the tunnel's own UDP out of the tunnel);\n\
             # use `roamer run` for egress to {destination}.\n"
        );
    }
    out
}

/// The UDP reply table as a unit (instanced by the interface name; the table's text names
/// the addresses). It needs no link: the table matches the interface by name, so it may load
/// before networkd makes the link, and stays harmless without one.
pub fn udp_replies_unit(config: &RoamerConfig) -> String {
    let ruleset = replies::udp_reply_ruleset(
        &config.interface,
        config.interface.as_str(),
        config.reply_sources(),
    );
    let table = replies::nft_table(&config.interface);
    format!(
        "# UDP replies from servers bound to 0.0.0.0 (or ::) go back through the tunnel: what\n\
         # the network manager cannot express (docs/roamer.md). `systemctl enable --now\n\
         # roamgw-udp-replies@{name}`.\n\
         [Unit]\nDescription=roamgw: UDP replies of forwards into %i\n\
         Before=network.target\n\n\
         [Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/usr/sbin/nft '{ruleset}'\n\
         ExecStop=/usr/sbin/nft delete table {family} {table}\n\n\
         [Install]\nWantedBy=multi-user.target\n",
        name = config.interface,
        family = replies::NFT_FAMILY,
    )
}

/// The files as one text: each under a `### PATH (mode)` line, with how to install them.
pub fn bundle(config: &RoamerConfig) -> String {
    let mut out = format!(
        "# systemd-networkd files for roamer '{}', made by `roamgw show-config --format networkd`.\n\
         # Holds secrets. Save each part below at its path (mode and group as given), then:\n\
         #   networkctl reload && systemctl daemon-reload && systemctl enable --now roamgw-udp-replies@{}\n\
         # Replies to forwarded connections are routed by their source (rule priority {}, table {}).\n",
        config.name,
        config.interface,
        replies::RULE_PRIORITY,
        replies::table(&config.interface)
    );
    if config.private_key.is_none() {
        let _ = writeln!(
            out,
            "# The private key stays on the laptop: put `wg genkey` output in {DIR}/{}.key (0640 root:systemd-network).",
            config.interface
        );
    }
    for file in files(config) {
        let group = file.group.map(|g| format!(" root:{g}")).unwrap_or_default();
        let _ = write!(
            out,
            "\n### {} ({:04o}{group})\n{}",
            file.path, file.mode, file.text
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(address6: bool) -> RoamerConfig {
        crate::state::roamer_fixture(address6)
    }

    #[test]
    fn the_netdev_holds_the_peer_and_the_key_is_a_file() {
        let files = files(&config(false));
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/etc/systemd/network/50-roamgw0.netdev",
                "/etc/systemd/network/50-roamgw0.network",
                "/etc/systemd/system/roamgw-udp-replies@.service",
                "/etc/systemd/network/roamgw0.key",
            ]
        );
        let netdev = &files[0].text;
        for line in [
            "Kind=wireguard",
            "PrivateKeyFile=/etc/systemd/network/roamgw0.key",
            "PublicKey=mRWxSJPnBqVjl1ywX0hE+JZfDzpnTPBWaT6gdHbT7HY=",
            "AllowedIPs=0.0.0.0/0\n",
            "Endpoint=droplet.example.com:51820",
            "PersistentKeepalive=10",
        ] {
            assert!(netdev.contains(line), "{line} missing:\n{netdev}");
        }
        assert!(
            !netdev.contains("PrivateKey="),
            "the key is in its own file"
        );
        assert_eq!(
            (files[3].mode, files[3].group),
            (0o640, Some("systemd-network"))
        );
    }

    #[test]
    fn the_network_routes_replies_by_source_for_each_family() {
        let v4 = network(&config(false));
        for part in [
            "Address=192.168.32.2/24",
            "[RoutingPolicyRule]\nFrom=192.168.32.2\nTable=52354\nPriority=5100\n",
            "[RoutingPolicyRule]\nFirewallMark=52354\nTable=52354\nPriority=5100\nFamily=ipv4\n",
            "[Route]\nDestination=0.0.0.0/0\nTable=52354\nScope=link\n",
        ] {
            assert!(v4.contains(part), "{part} missing:\n{v4}");
        }
        assert!(!v4.contains("::/0"), "{v4}");
        let v6 = network(&config(true));
        for part in [
            "Address=fd12:3456:789a::2/64",
            "From=fd12:3456:789a::2\n",
            "Family=ipv6",
            "Destination=::/0",
        ] {
            assert!(v6.contains(part), "{part} missing:\n{v6}");
        }
        let netdev = netdev(&config(true), "/k");
        assert!(netdev.contains("AllowedIPs=0.0.0.0/0,::/0"), "{netdev}");
    }

    #[test]
    fn the_bundle_says_where_each_file_goes() {
        let text = bundle(&config(true));
        assert!(text.contains("### /etc/systemd/network/roamgw0.key (0640 root:systemd-network)"));
        assert!(text.contains("### /etc/systemd/network/50-roamgw0.netdev (0644)"));
        assert!(text.contains("ExecStart=/usr/sbin/nft 'table inet roamgw_roamgw0"));
        assert!(text.contains("networkctl reload"));
    }
}
