//! `roamgw import`: the manual setup (docs/background.md) as roamgw state. Pure: the droplet's
//! wg-quick file and the zone's rich rules in, the roamers, forwards and the rules to remove
//! after the switch-over out, so every shape is a table test.
//!
//! The recipe's rules are `rule family=ipv4 destination address=ANCHOR/32 forward-port port=P
//! protocol=tcp to-port=L to-addr=LAPTOP` (one per port) and `rule family=ipv4 destination
//! address=LAPTOP/32 masquerade`. Imported forwards masquerade, as before: the laptop's config
//! (AllowedIPs = the subnet) routes no replies for other sources, and it is not touched.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use roamgw_common::state::{ClientIp, Forward};
use roamgw_common::wgquick::WgQuickConfig;
use roamgw_common::{
    PortRange, PortSpec, PresharedKey, PrivateKey, Protocol, Protocols, PublicKey, RoamerName,
};

/// One roamer found in the wg-quick file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedRoamer {
    pub name: RoamerName,
    pub address: Ipv4Addr,
    pub public_key: PublicKey,
    pub preshared_key: Option<PresharedKey>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportPlan {
    pub private_key: PrivateKey,
    pub listen_port: u16,
    /// The gateway's tunnel address, with the subnet's prefix.
    pub address: Ipv4Net,
    pub mtu: Option<u16>,
    pub roamers: Vec<ImportedRoamer>,
    pub forwards: Vec<Forward>,
    /// The rich rules roamgw replaces: removed once its own are live.
    pub replaced_rules: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("the wg-quick file has no PrivateKey: roamgw needs the droplet's key to keep the laptops' configs working")]
    NoKey,
    #[error("the wg-quick file has no IPv4 Address")]
    NoAddress,
    #[error("the wg-quick file has no [Peer]: nothing to import")]
    NoPeers,
    #[error("cannot tell which tunnel address belongs to peer {0}: its AllowedIPs hold no /32 and no rich rule names one; import it with one peer, or give each peer a /32")]
    UnknownAddress(String),
    #[error("{0}")]
    Other(String),
}

/// `key=value` words of a rich rule (`rule family="ipv4" destination address="10.16.0.5/32"
/// forward-port port="22" …`); quotes are optional, as firewall-cmd takes both.
fn words(rule: &str) -> BTreeMap<&str, String> {
    rule.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k, v.trim_matches('"').to_string()))
        .collect()
}

fn address(text: &str) -> Option<Ipv4Addr> {
    text.split('/').next()?.parse().ok()
}

/// A forward-port rule's public ports, protocol, local ports and target.
type ForwardPort = (PortRange, Protocol, PortRange, Ipv4Addr);

/// A forward-port rule to `anchor`.
fn forward_port(rule: &str, anchor: Ipv4Addr) -> Option<ForwardPort> {
    if !rule.contains("forward-port") {
        return None;
    }
    let w = words(rule);
    if address(w.get("address")?)? != anchor {
        return None;
    }
    let range = |text: &str| -> Option<PortRange> {
        match text.split_once('-') {
            Some((a, b)) => PortRange::new(a.parse().ok()?, b.parse().ok()?).ok(),
            None => PortRange::single(text.parse().ok()?).ok(),
        }
    };
    let public = range(w.get("port")?)?;
    let local = match w.get("to-port") {
        Some(p) => range(p)?,
        None => public,
    };
    let protocol = match w.get("protocol")?.as_str() {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        _ => return None,
    };
    Some((public, protocol, local, address(w.get("to-addr")?)?))
}

/// A masquerade rule toward one tunnel address.
fn masquerades(rule: &str) -> Option<Ipv4Addr> {
    (rule.contains("masquerade") && !rule.contains("forward-port"))
        .then(|| words(rule).get("address").and_then(|a| address(a)))
        .flatten()
}

/// One roamer per peer: its tunnel address from its allowed IPs (or, for the recipe's one
/// peer with the whole subnet, from the rules), its name from `name` or its position.
fn roamers_of(
    wg: &WgQuickConfig,
    targets: &[Ipv4Addr],
    name: Option<&RoamerName>,
) -> Result<Vec<ImportedRoamer>, ImportError> {
    let mut roamers = Vec::new();
    for (i, peer) in wg.peers.iter().enumerate() {
        let host = peer.allowed_ips.iter().find_map(|n| match n {
            ipnet::IpNet::V4(v4) if v4.prefix_len() == 32 => Some(v4.addr()),
            _ => None,
        });
        // The recipe gives its one peer the whole subnet: the rules name the laptop then.
        let address = host
            .or_else(|| {
                (wg.peers.len() == 1)
                    .then(|| targets.first().copied())
                    .flatten()
            })
            .ok_or_else(|| ImportError::UnknownAddress(peer.public_key.to_string()))?;
        let name = match (name, wg.peers.len()) {
            (Some(name), 1) => name.clone(),
            _ => format!("roamer{}", i + 1)
                .parse()
                .map_err(|e: roamgw_common::names::NameError| ImportError::Other(e.to_string()))?,
        };
        roamers.push(ImportedRoamer {
            name,
            address,
            public_key: peer.public_key,
            preshared_key: peer.preshared_key.clone(),
        });
    }
    Ok(roamers)
}

/// The plan for `roamgw import`. `name` names the roamer when the file has one peer (else
/// roamer1, roamer2, …).
pub fn plan(
    wg: &WgQuickConfig,
    rich_rules: &[String],
    anchor: Ipv4Addr,
    name: Option<&RoamerName>,
) -> Result<ImportPlan, ImportError> {
    let private_key = wg.interface.private_key.clone().ok_or(ImportError::NoKey)?;
    let address = wg
        .interface
        .address
        .iter()
        .find_map(|n| match n {
            ipnet::IpNet::V4(v4) => Some(*v4),
            ipnet::IpNet::V6(_) => None,
        })
        .ok_or(ImportError::NoAddress)?;
    if wg.peers.is_empty() {
        return Err(ImportError::NoPeers);
    }
    let forward_rules: Vec<(&String, ForwardPort)> = rich_rules
        .iter()
        .filter_map(|r| forward_port(r, anchor).map(|f| (r, f)))
        .collect();
    let targets: Vec<Ipv4Addr> = forward_rules.iter().map(|(_, f)| f.3).collect();
    let roamers = roamers_of(wg, &targets, name)?;
    let mut forwards = Vec::new();
    let mut replaced_rules = Vec::new();
    for (rule, (public, protocol, local, to)) in forward_rules {
        let Some(roamer) = roamers.iter().find(|r| r.address == to) else {
            continue; // a forward to something else than a roamer: not ours to take
        };
        let spec = PortSpec {
            public,
            local,
            protocols: match protocol {
                Protocol::Tcp => Protocols::Tcp,
                Protocol::Udp => Protocols::Udp,
            },
        };
        forwards.push(Forward {
            spec,
            to: roamer.name.clone(),
            allow_from: Vec::new(),
            client_ip: ClientIp::Masquerade,
        });
        replaced_rules.push(rule.clone());
    }
    replaced_rules.extend(
        rich_rules
            .iter()
            .filter(|r| masquerades(r).is_some_and(|a| roamers.iter().any(|x| x.address == a)))
            .cloned(),
    );
    Ok(ImportPlan {
        private_key,
        listen_port: wg.interface.listen_port.unwrap_or(51820),
        address,
        mtu: wg.interface.mtu,
        roamers,
        forwards,
        replaced_rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANCHOR: Ipv4Addr = Ipv4Addr::new(10, 16, 0, 5);

    fn wg(peers: &str) -> WgQuickConfig {
        format!(
            "[Interface]\nPrivateKey = GDvZAcXn0PPlb8Obc9+CQrHeoYhhJZSkiUnlB5RsvUo=\nAddress = 192.168.32.1/24\nListenPort = 51820\n{peers}"
        )
        .parse()
        .expect("wg-quick")
    }

    const LAPTOP: &str = "[Peer]\nPublicKey = HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=\nPresharedKey = GDvZAcXn0PPlb8Obc9+CQrHeoYhhJZSkiUnlB5RsvUo=\nAllowedIPs = 192.168.32.0/24\n";

    fn rules(texts: &[&str]) -> Vec<String> {
        texts.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_recipe_becomes_roamer_and_forwards() {
        let rich = rules(&[
            r#"rule family="ipv4" destination address="192.168.32.2/32" masquerade"#,
            r#"rule family="ipv4" destination address="10.16.0.5/32" forward-port port="22" protocol="tcp" to-port="22" to-addr="192.168.32.2""#,
            r#"rule family="ipv4" destination address="10.16.0.5/32" forward-port port="2222" protocol="tcp" to-port="22" to-addr="192.168.32.2""#,
            r#"rule family="ipv4" destination address="10.16.0.5/32" forward-port port="60000-60010" protocol="udp" to-addr="192.168.32.2""#,
            r#"rule family="ipv4" source address="192.0.2.0/24" service name="http" accept"#,
            r#"rule family="ipv4" destination address="10.99.0.1/32" forward-port port="80" protocol="tcp" to-addr="192.168.32.2""#,
        ]);
        let name: RoamerName = "laptop".parse().expect("name");
        let plan = plan(&wg(LAPTOP), &rich, ANCHOR, Some(&name)).expect("plan");
        assert_eq!(plan.roamers.len(), 1);
        assert_eq!(plan.roamers[0].address, Ipv4Addr::new(192, 168, 32, 2));
        assert!(plan.roamers[0].preshared_key.is_some());
        let forwards: Vec<String> = plan.forwards.iter().map(ToString::to_string).collect();
        assert_eq!(
            forwards,
            [
                "22/tcp -> laptop masquerade",
                "2222:22/tcp -> laptop masquerade",
                "60000-60010/udp -> laptop masquerade"
            ]
        );
        assert_eq!(
            plan.replaced_rules.len(),
            4,
            "three forwards and the masquerade"
        );
        assert!(
            !plan.replaced_rules.iter().any(|r| r.contains("service")),
            "the admin's own rules stay"
        );
    }

    #[test]
    fn several_peers_need_their_own_addresses() {
        let two = format!(
            "{LAPTOP}[Peer]\nPublicKey = YEocP0e2o1WT5GlvBvQzVF7EeR6z9aCk1ELvcRpoXUs=\nAllowedIPs = 192.168.32.3/32\n"
        );
        assert!(matches!(
            plan(&wg(&two), &[], ANCHOR, None),
            Err(ImportError::UnknownAddress(_))
        ));
        let both = two.replace(
            "AllowedIPs = 192.168.32.0/24",
            "AllowedIPs = 192.168.32.2/32",
        );
        let plan = plan(&wg(&both), &[], ANCHOR, None).expect("plan");
        let names: Vec<String> = plan.roamers.iter().map(|r| r.name.to_string()).collect();
        assert_eq!(names, ["roamer1", "roamer2"]);
        assert!(plan.forwards.is_empty());
    }
}
