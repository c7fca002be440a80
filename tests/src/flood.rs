//! Floods at the gateway's WireGuard port from an outside namespace, bounded in time: junk, or
//! handshake initiations that pass mac1 (anyone with the gateway's public key, which every
//! roamer config and phone QR code carries, can make them).

use std::net::{SocketAddr, UdpSocket};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519;

use crate::Ns;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flood {
    /// Random bytes of an initiation's size.
    Junk,
    /// One initiation from a stranger's key, valid mac1, sent again and again.
    Initiations,
}

/// Sends `kind` from `ns` to `target` for `duration`, from one thread as fast as it goes; the
/// handle gives how many datagrams left.
pub fn flood(
    ns: &Ns,
    target: &str,
    gateway_key: [u8; 32],
    kind: Flood,
    duration: Duration,
) -> JoinHandle<u64> {
    let ns = ns.clone();
    let target: SocketAddr = target.parse().expect("flood target");
    let datagram = match kind {
        Flood::Junk => junk(148),
        Flood::Initiations => initiation(gateway_key),
    };
    std::thread::spawn(move || {
        ns.enter(move || {
            let socket = UdpSocket::bind("0.0.0.0:0").expect("bind");
            socket.connect(target).expect("connect");
            let deadline = Instant::now() + duration;
            let mut sent = 0u64;
            while Instant::now() < deadline {
                for _ in 0..256 {
                    if socket.send(&datagram).is_ok() {
                        sent += 1;
                    }
                }
            }
            sent
        })
    })
}

/// The gateway's public key, from the config it prints for `laptop`.
pub fn gateway_key(wg_quick_config: &str) -> [u8; 32] {
    let line = wg_quick_config
        .lines()
        .find_map(|l| l.strip_prefix("PublicKey = "))
        .expect("PublicKey in the config");
    *line
        .trim()
        .parse::<roamgw_common::keys::PublicKey>()
        .expect("a key")
        .as_bytes()
}

fn initiation(gateway_key: [u8; 32]) -> Vec<u8> {
    let stranger = x25519::StaticSecret::from([7u8; 32]);
    let mut tunn = Tunn::new(
        stranger,
        x25519::PublicKey::from(gateway_key),
        None,
        None,
        1,
        None,
    );
    let mut buf = [0u8; 256];
    match tunn.format_handshake_initiation(&mut buf, false) {
        TunnResult::WriteToNetwork(packet) => packet.to_vec(),
        _ => panic!("no initiation"),
    }
}

/// Bytes that look random (xorshift), not shaped like any WireGuard message.
fn junk(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_u32;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8 | 0x80
        })
        .collect()
}
