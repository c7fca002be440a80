//! A roamer as a NetworkManager keyfile (`/etc/NetworkManager/system-connections/`): the
//! WireGuard connection with the key inline (the file is 0600, as NetworkManager requires),
//! `peer-routes=false` so AllowedIPs (any source) adds no routes, and the reply routing of
//! [`crate::replies`] as the connection's own routing rules and a route in the reply table.
//! `nmcli connection import type wireguard` of the wg-quick file would lose that routing
//! (it reads neither `Table = off` nor `PostUp`) and route everything into the tunnel.
//! The UDP reply table is the unit [`crate::networkd::udp_replies_unit`] ships.

use std::fmt::Write as _;

use crate::replies;
use crate::state::RoamerConfig;

/// Where NetworkManager reads keyfiles.
pub const DIR: &str = "/etc/NetworkManager/system-connections";

/// A stable UUID for the connection (NetworkManager wants one): the interface name and the
/// gateway's key, hashed (FNV-1a, two halves) into the shape of a version 4 UUID.
fn uuid(config: &RoamerConfig) -> String {
    let hash = |half: u8| {
        let seed = format!(
            "{}\0{}\0{half}",
            config.interface, config.gateway.public_key
        );
        crate::hash::fnv1a64(seed.as_bytes())
    };
    let bits = (u128::from(hash(0)) << 64 | u128::from(hash(1))) & !(0xf << 76) & !(0x3 << 62);
    let bits = bits | 0x4 << 76 | 0x2 << 62;
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The keyfile's text.
pub fn keyfile(config: &RoamerConfig) -> String {
    let gateway = &config.gateway;
    let name = config.interface.as_str();
    let table = replies::table(&config.interface);
    let mark = replies::mark(&config.interface);
    let priority = replies::RULE_PRIORITY;
    let mut out = format!(
        "[connection]\nid={name}\nuuid={}\ntype=wireguard\ninterface-name={name}\nautoconnect=true\n\n",
        uuid(config)
    );
    let _ = writeln!(out, "[wireguard]\nmtu={}\npeer-routes=false", config.mtu);
    if let Some(key) = &config.private_key {
        let _ = writeln!(out, "private-key={}", key.expose_base64().as_str());
    }
    let _ = write!(out, "\n[wireguard-peer.{}]\n", gateway.public_key);
    let _ = writeln!(out, "endpoint={}", gateway.endpoint);
    if let Some(psk) = &gateway.preshared_key {
        let _ = writeln!(
            out,
            "preshared-key={}\npreshared-key-flags=0",
            psk.expose_base64().as_str()
        );
    }
    if gateway.persistent_keepalive > 0 {
        let _ = writeln!(out, "persistent-keepalive={}", gateway.persistent_keepalive);
    }
    let any: Vec<String> = config
        .any_source()
        .iter()
        .map(ToString::to_string)
        .collect();
    let _ = writeln!(out, "allowed-ips={};", any.join(";"));
    let families = [
        ("ipv4", Some(ipnet::IpNet::V4(config.address)), "0.0.0.0/0"),
        ("ipv6", config.address6.map(ipnet::IpNet::V6), "::/0"),
    ];
    for (family, address, default) in families {
        let Some(address) = address else {
            let _ = write!(out, "\n[{family}]\nmethod=disabled\n");
            continue;
        };
        let _ = write!(
            out,
            "\n[{family}]\nmethod=manual\naddress1={address}\nnever-default=true\n\
             route1={default}\nroute1_options=table={table}\n\
             routing-rule1=priority {priority} from {source} table {table}\n\
             routing-rule2=priority {priority} fwmark {mark} table {table}\n",
            source = address.addr()
        );
    }
    out
}

/// The keyfile with a header that says where it goes and how to load it.
pub fn bundle(config: &RoamerConfig) -> String {
    let name = config.interface.as_str();
    let mut out = format!(
        "# NetworkManager keyfile for roamer '{}', made by `roamgw show-config --format nm`.\n\
         # Holds secrets: save as {DIR}/{name}.nmconnection, mode 0600, then\n\
         #   nmcli connection reload && nmcli connection up {name}\n\
         # and, for UDP servers bound to 0.0.0.0, the unit `roamgw show-config --format networkd`\n\
         # prints (roamgw-udp-replies@.service): systemctl enable --now roamgw-udp-replies@{name}\n\
         # Replies to forwarded connections are routed by their source (rule priority {}, table {}).\n",
        config.name,
        replies::RULE_PRIORITY,
        replies::table(&config.interface)
    );
    if config.private_key.is_none() {
        let _ = writeln!(
            out,
            "# The private key stays on the laptop: add `private-key=` (wg genkey output) under [wireguard]."
        );
    }
    out.push('\n');
    out + &keyfile(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(address6: bool) -> RoamerConfig {
        crate::state::roamer_fixture(address6)
    }

    #[test]
    fn the_keyfile_routes_replies_and_nothing_else() {
        let text = keyfile(&config(false));
        for part in [
            "type=wireguard\ninterface-name=roamgw0\n",
            "peer-routes=false",
            "[wireguard-peer.mRWxSJPnBqVjl1ywX0hE+JZfDzpnTPBWaT6gdHbT7HY=]",
            "endpoint=droplet.example.com:51820",
            "allowed-ips=0.0.0.0/0;\n",
            "persistent-keepalive=10",
            "[ipv4]\nmethod=manual\naddress1=192.168.32.2/24\nnever-default=true\n",
            "route1=0.0.0.0/0\nroute1_options=table=52354\n",
            "routing-rule1=priority 5100 from 192.168.32.2 table 52354\n",
            "routing-rule2=priority 5100 fwmark 52354 table 52354\n",
            "[ipv6]\nmethod=disabled\n",
        ] {
            assert!(text.contains(part), "{part} missing:\n{text}");
        }
        let v6 = keyfile(&config(true));
        assert!(v6.contains("allowed-ips=0.0.0.0/0;::/0;"), "{v6}");
        assert!(v6.contains("routing-rule1=priority 5100 from fd12:3456:789a::2 table 52354"));
    }

    #[test]
    fn the_uuid_is_stable_and_well_formed() {
        let a = uuid(&config(false));
        assert_eq!(a, uuid(&config(true)));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4", "version 4: {a}");
        assert!("89ab".contains(&a[19..20]), "variant: {a}");
    }
}
