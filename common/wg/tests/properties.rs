//! Property tests for the UAPI text protocol a peer's output reaches: any reply parses without
//! panicking, and every status survives render → parse unchanged. `PROPTEST_CASES` raises the
//! number of cases (bench/fuzz.sh).

use std::net::Ipv4Addr;

use proptest::prelude::*;
use roamgw_common::{PresharedKey, PublicKey};
use roamgw_wg::uapi;
use roamgw_wg::{DeviceStatus, PeerStatus};

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok());
    ProptestConfig::with_cases(cases.unwrap_or(2000))
}

fn key_bytes() -> impl Strategy<Value = [u8; 32]> {
    prop::array::uniform32(any::<u8>())
}

fn peer() -> impl Strategy<Value = PeerStatus> {
    (
        key_bytes(),
        any::<bool>(),
        prop::option::of((any::<[u8; 4]>(), 1u16..=65535)),
        prop::collection::vec((any::<[u8; 4]>(), 0u8..=32), 0..4),
        any::<u16>(),
        prop::option::of(1u64..4_000_000_000),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(key, psk, endpoint, allowed, keepalive, handshake, rx, tx)| PeerStatus {
                public_key: PublicKey::from_bytes(key),
                has_preshared_key: psk,
                endpoint: endpoint.map(|(ip, port)| (Ipv4Addr::from(ip), port).into()),
                allowed_ips: allowed
                    .into_iter()
                    .filter_map(|(ip, len)| ipnet::Ipv4Net::new(Ipv4Addr::from(ip), len).ok())
                    .map(|n| ipnet::IpNet::V4(n.trunc()))
                    .collect(),
                persistent_keepalive: keepalive,
                last_handshake: handshake
                    .map(|s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s)),
                rx_bytes: rx,
                tx_bytes: tx,
            },
        )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn uapi_replies_never_panic_and_round_trip(text in ".{0,200}", peers in prop::collection::vec(peer(), 0..4), port in any::<u16>()) {
        let _ = uapi::parse_get(&text);
        let status = DeviceStatus { listen_port: port, fwmark: 0, peers, defence: None };
        let psk: PresharedKey = "GDvZAcXn0PPlb8Obc9+CQrHeoYhhJZSkiUnlB5RsvUo=".parse().expect("psk");
        let rendered = uapi::render_get(&status, None, &|key| {
            status.peer(key).filter(|p| p.has_preshared_key).map(|_| psk.clone())
        });
        prop_assert_eq!(uapi::parse_get(&rendered).ok(), Some(status));
    }
}
