//! Property tests for every parser a user's input or a peer's output reaches: arbitrary input
//! never panics; every valid value survives render → parse unchanged; a mutated valid state or
//! roamer config either loads (and then round-trips) or is refused with one line. (The UAPI
//! text protocol's are in `common/wg/tests/properties.rs`.)
//!
//! `PROPTEST_CASES` raises the number of cases (bench/fuzz.sh runs them long); failures found
//! are kept in `properties.proptest-regressions` next to this file and replayed first (the
//! first one found: our userspace device never reported preshared keys to `wg show`).

use std::net::Ipv4Addr;

use proptest::prelude::*;
use roamgw_common::names::{Endpoint, InterfaceName};
use roamgw_common::state::{GatewayState, RoamerConfig};
use roamgw_common::wgquick::{Interface, Peer, WgQuickConfig};
use roamgw_common::{
    PortRange, PortSpec, PresharedKey, PrivateKey, Protocols, PublicKey, RoamerName,
};

/// A few thousand cases per target in the suite; PROPTEST_CASES overrides (bench/fuzz.sh).
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok());
    ProptestConfig::with_cases(cases.unwrap_or(2000))
}

/// Text that looks like what a user types, and plain garbage.
fn input() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-z:/+.,_@\\[\\]-]{0,24}",
        ".{0,40}",
        "[0-9]{1,6}(-[0-9]{1,6})?(:[0-9]{1,6}(-[0-9]{1,6})?)?(/(tcp|udp|tcp\\+udp|icmp))?",
    ]
}

fn port_range() -> impl Strategy<Value = PortRange> {
    (1u16..=65535, 0u16..200).prop_filter_map("range in bounds", |(first, extra)| {
        PortRange::new(first, first.checked_add(extra)?).ok()
    })
}

fn port_spec() -> impl Strategy<Value = PortSpec> {
    (
        port_range(),
        prop::option::of(1u16..=65535),
        prop_oneof![
            Just(Protocols::Tcp),
            Just(Protocols::Udp),
            Just(Protocols::Both)
        ],
    )
        .prop_filter_map(
            "local range in bounds",
            |(public, local_first, protocols)| {
                let local = match local_first {
                    None => public,
                    Some(first) => {
                        PortRange::new(first, first.checked_add(public.last() - public.first())?)
                            .ok()?
                    }
                };
                Some(PortSpec {
                    public,
                    local,
                    protocols,
                })
            },
        )
}

fn key_bytes() -> impl Strategy<Value = [u8; 32]> {
    prop::array::uniform32(any::<u8>())
}

fn wg_quick() -> impl Strategy<Value = WgQuickConfig> {
    let peer = (
        key_bytes(),
        prop::option::of(key_bytes()),
        prop::collection::vec((any::<[u8; 4]>(), 0u8..=32), 1..3),
        prop::option::of((any::<[u8; 4]>(), 1u16..=65535)),
        prop::option::of(1u16..=65535),
    )
        .prop_map(|(key, psk, allowed, endpoint, keepalive)| Peer {
            public_key: PublicKey::from_bytes(key),
            preshared_key: psk.map(|b| {
                base64_of(&b)
                    .parse::<PresharedKey>()
                    .expect("any 32 bytes are a preshared key")
            }),
            allowed_ips: allowed
                .into_iter()
                .filter_map(|(ip, len)| ipnet::Ipv4Net::new(Ipv4Addr::from(ip), len).ok())
                .map(|n| ipnet::IpNet::V4(n.trunc()))
                .collect(),
            endpoint: endpoint.map(|(ip, port)| Endpoint {
                host: Ipv4Addr::from(ip).to_string(),
                port,
            }),
            persistent_keepalive: keepalive,
        });
    (
        key_bytes(),
        prop::option::of(1u16..=65535),
        prop::collection::vec((any::<[u8; 4]>(), 1u8..=32), 0..3),
        prop::option::of(1280u16..=9000),
        prop::collection::vec(peer, 0..3),
    )
        .prop_map(|(key, listen_port, address, mtu, peers)| WgQuickConfig {
            interface: Interface {
                private_key: base64_of(&key).parse::<PrivateKey>().ok(),
                listen_port,
                address: address
                    .into_iter()
                    .filter_map(|(ip, len)| ipnet::Ipv4Net::new(Ipv4Addr::from(ip), len).ok())
                    .map(ipnet::IpNet::V4)
                    .collect(),
                mtu,
                ..Interface::default()
            },
            peers,
        })
}

fn base64_of(bytes: &[u8; 32]) -> String {
    PublicKey::from_bytes(*bytes).to_string()
}

const STATE: &str = include_str!("../../tests/fixtures/valid-state/gateway.toml");

const ROAMER: &str = include_str!("../../tests/fixtures/valid-roamer/inline-key.toml");

/// `text` with one edit: a byte replaced, a line dropped, or a line duplicated.
fn mutated(text: &'static str) -> impl Strategy<Value = String> {
    let lines = text.lines().count();
    prop_oneof![
        (0..text.len(), any::<char>()).prop_map(move |(at, c)| {
            let mut out: Vec<char> = text.chars().collect();
            let at = at.min(out.len().saturating_sub(1));
            out[at] = c;
            out.into_iter().collect()
        }),
        (0..lines).prop_map(move |drop| {
            text.lines()
                .enumerate()
                .filter(|(i, _)| *i != drop)
                .map(|(_, l)| format!("{l}\n"))
                .collect()
        }),
        (0..lines).prop_map(move |twice| {
            text.lines()
                .enumerate()
                .flat_map(|(i, l)| {
                    std::iter::repeat_n(format!("{l}\n"), if i == twice { 2 } else { 1 })
                })
                .collect()
        }),
    ]
}

/// A loaded file survives render → load unchanged; a refused one says why in one line.
fn whole_or_one_line<T: PartialEq + std::fmt::Debug, E: std::fmt::Display>(
    loaded: Result<T, E>,
    reload: impl Fn(&T) -> Result<T, E>,
) -> Result<(), TestCaseError> {
    match loaded {
        Ok(value) => prop_assert_eq!(reload(&value).ok(), Some(value)),
        Err(e) => {
            let message = e.to_string();
            prop_assert!(
                !message.is_empty() && !message.contains('\n'),
                "{:?}",
                message
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn port_specs_never_panic(text in input()) {
        let _ = text.parse::<PortSpec>();
    }

    #[test]
    fn port_specs_round_trip(spec in port_spec()) {
        let shown = spec.to_string();
        prop_assert_eq!(shown.parse::<PortSpec>(), Ok(spec), "{}", shown);
    }

    #[test]
    fn names_never_panic_and_valid_ones_round_trip(text in input()) {
        if let Ok(name) = text.parse::<RoamerName>() {
            prop_assert_eq!(name.to_string().parse::<RoamerName>(), Ok(name));
        }
        if let Ok(name) = text.parse::<InterfaceName>() {
            prop_assert_eq!(name.to_string().parse::<InterfaceName>(), Ok(name));
        }
        if let Ok(endpoint) = Endpoint::parse_with_default_port(&text, 51820) {
            prop_assert_eq!(endpoint.to_string().parse::<Endpoint>(), Ok(endpoint));
        }
    }

    #[test]
    fn keys_never_panic_and_round_trip(text in input(), bytes in key_bytes()) {
        let _ = text.parse::<PublicKey>();
        let _ = text.parse::<PrivateKey>();
        let _ = text.parse::<PresharedKey>();
        let key = PublicKey::from_bytes(bytes);
        prop_assert_eq!(key.to_string().parse::<PublicKey>().ok(), Some(key));
    }

    #[test]
    fn wg_quick_never_panics(text in ".{0,300}") {
        let _ = text.parse::<WgQuickConfig>();
        let with_header = format!("[Interface]\n{text}\n[Peer]\n{text}");
        let _ = with_header.parse::<WgQuickConfig>();
    }

    #[test]
    fn wg_quick_round_trips(config in wg_quick()) {
        let text = config.render();
        let parsed = text.parse::<WgQuickConfig>();
        prop_assert_eq!(parsed.as_ref().ok(), Some(&config), "{}\n{:?}", text, parsed);
    }

    #[test]
    fn a_mutated_state_loads_whole_or_is_refused_in_one_line(text in mutated(STATE)) {
        whole_or_one_line(GatewayState::from_toml(&text), |s| GatewayState::from_toml(&s.to_toml().expect("serializes")))?;
    }

    #[test]
    fn a_mutated_roamer_config_loads_whole_or_is_refused_in_one_line(text in mutated(ROAMER)) {
        whole_or_one_line(RoamerConfig::from_toml(&text), |c| RoamerConfig::from_toml(&c.to_toml().expect("serializes")))?;
    }
}
