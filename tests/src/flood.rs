//! Floods at the gateway's WireGuard port from an outside namespace, bounded in time: junk, or
//! handshake initiations that pass mac1 (anyone with the gateway's public key, which every
//! roamer config and phone QR code carries, can make them).

use std::io::{BufRead, BufReader, Write};
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
    /// The same from [`SPOOFED_SOURCES`] forged addresses in turn (raw IPv4), as a botnet or a
    /// spoofing host would: no address sends more than its share.
    Spoofed,
}

/// How many addresses a spoofed flood forges: 172.31.0.1 on, in the private range, which the
/// router sends back to the client's link ([`route_spoofed_sources`]), so nothing of it leaves
/// the test's namespaces and the answers (cookies) go nowhere.
pub const SPOOFED_SOURCES: u32 = 1000;

/// The router's route for the forged sources, so their packets pass its reverse-path check.
pub fn route_spoofed_sources(bed: &crate::Testbed) {
    bed.wan.run(&[
        "ip",
        "route",
        "replace",
        "172.31.0.0/16",
        "via",
        crate::CLIENT,
    ]);
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
        Flood::Initiations | Flood::Spoofed => initiation(gateway_key),
    };
    std::thread::spawn(move || {
        ns.enter(move || {
            if kind == Flood::Spoofed {
                return spoofed(target, &datagram, duration);
            }
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

/// `datagram` to `target` from each forged source in turn, through a raw socket.
fn spoofed(target: SocketAddr, datagram: &[u8], duration: Duration) -> u64 {
    let SocketAddr::V4(target) = target else {
        panic!("an IPv4 target")
    };
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::RAW,
        Some(socket2::Protocol::UDP),
    )
    .expect("raw socket");
    socket.set_header_included_v4(true).expect("IP_HDRINCL");
    let to = socket2::SockAddr::from(SocketAddr::V4(target));
    let packets: Vec<Vec<u8>> = (0..SPOOFED_SOURCES)
        .map(|i| {
            let source = std::net::Ipv4Addr::new(172, 31, (i / 250) as u8, (i % 250 + 1) as u8);
            ipv4_udp(source, 40_000 + i as u16, target, datagram)
        })
        .collect();
    let deadline = Instant::now() + duration;
    let mut sent = 0u64;
    while Instant::now() < deadline {
        for packet in &packets {
            if socket.send_to(packet, &to).is_ok() {
                sent += 1;
            }
        }
    }
    sent
}

/// An IPv4 packet carrying `payload` in UDP (no UDP checksum, which IPv4 allows; the kernel
/// fills in the IP checksum and the identification).
fn ipv4_udp(
    source: std::net::Ipv4Addr,
    source_port: u16,
    target: std::net::SocketAddrV4,
    payload: &[u8],
) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut packet = Vec::with_capacity(total);
    packet.extend_from_slice(&[0x45, 0]);
    packet.extend_from_slice(&(total as u16).to_be_bytes());
    packet.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    packet.extend_from_slice(&source.octets());
    packet.extend_from_slice(&target.ip().octets());
    packet.extend_from_slice(&source_port.to_be_bytes());
    packet.extend_from_slice(&target.port().to_be_bytes());
    packet.extend_from_slice(&(udp_len as u16).to_be_bytes());
    packet.extend_from_slice(&[0, 0]);
    packet.extend_from_slice(payload);
    packet
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

/// Round trips of one line through an echo server at `addr`, from `ns`, one every `every` for
/// `during`. A round trip not answered within 1 s is lost, and a new connection carries on.
#[derive(Debug, Default)]
pub struct RoundTrips {
    pub times: Vec<Duration>,
    pub lost: usize,
}

pub fn round_trips(ns: &Ns, addr: &str, during: Duration, every: Duration) -> RoundTrips {
    let mut result = RoundTrips::default();
    let until = Instant::now() + during;
    let mut line = String::new();
    while Instant::now() < until {
        let Ok(stream) = ns.connect(addr, Duration::from_secs(1)) else {
            result.lost += 1;
            continue;
        };
        let mut reader = BufReader::new(stream);
        while Instant::now() < until {
            let sent = Instant::now();
            line.clear();
            let echoed = reader.get_mut().write_all(b"ping\n").is_ok()
                && reader.read_line(&mut line).is_ok_and(|n| n > 0);
            if !echoed {
                result.lost += 1;
                break;
            }
            result.times.push(sent.elapsed());
            std::thread::sleep(every);
        }
    }
    result
}
