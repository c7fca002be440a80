//! Whether UDP reaches the gateway (again), asked without disturbing a tunnel that runs over
//! TCP: one handshake initiation from a socket of its own, with the peer's own keys. Only a
//! known peer's initiation gets an answer, so an answer proves the whole UDP path both ways.
//! The gateway takes the probe's address as the peer's endpoint for a moment: the caller
//! switches to UDP on an answer, or sends through the tunnel at once on none (an
//! authenticated packet over TCP moves the endpoint back).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519;
use roamgw_common::keys::{PresharedKey, PrivateKey, PublicKey};

/// A handshake response: type 2, 92 bytes.
fn is_response(datagram: &[u8]) -> bool {
    datagram.len() == 92 && datagram[..4] == [2, 0, 0, 0]
}

/// Sends one initiation to `endpoint` and waits up to `wait` for its response.
pub fn udp_answers(
    private: &PrivateKey,
    gateway: &PublicKey,
    preshared: Option<&PresharedKey>,
    endpoint: SocketAddr,
    wait: Duration,
) -> io::Result<bool> {
    let mut tunn = Tunn::new(
        x25519::StaticSecret::from(*private.expose_bytes()),
        x25519::PublicKey::from(*gateway.as_bytes()),
        preshared.map(|k| *k.expose_bytes()),
        None,
        rand_index(),
        None,
    );
    let mut buf = [0u8; 256];
    let initiation = match tunn.format_handshake_initiation(&mut buf, false) {
        TunnResult::WriteToNetwork(packet) => packet.to_vec(),
        _ => return Err(io::Error::other("no handshake initiation")),
    };
    let socket: UdpSocket = super::beside_tunnel(endpoint, socket2::Type::DGRAM)?.into();
    socket.connect(endpoint)?;
    socket.send(&initiation)?;
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        socket.set_read_timeout(Some(left))?;
        match socket.recv(&mut buf) {
            Ok(n) if is_response(&buf[..n]) => return Ok(true),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(false)
            }
            // ICMP unreachable: UDP does not get through.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}

fn rand_index() -> u32 {
    let mut bytes = [0u8; 4];
    let _ = getrandom::fill(&mut bytes);
    u32::from_ne_bytes(bytes)
}
