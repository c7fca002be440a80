//! The WireGuard cross-platform userspace API (https://www.wireguard.com/xplatform/): the text
//! protocol of `/var/run/wireguard/<if>.sock` that wireguard-go and boringtun serve and `wg`
//! speaks. Keys travel as hex; a message ends with an empty line; the reply ends with
//! `errno=N` and an empty line.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::time::{Duration, UNIX_EPOCH};

use zeroize::Zeroizing;

use super::model::{DeviceError, DeviceStatus, PeerStatus, SetOp, SetRequest};
use roamgw_common::keys::{PresharedKey, PrivateKey, PublicKey};

fn hex(bytes: &[u8; 32]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(64));
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Parses the body of a `get=1` reply (up to and including `errno=`).
pub fn parse_get(text: &str) -> Result<DeviceStatus, DeviceError> {
    let mut status = DeviceStatus::default();
    let mut handshake_sec: u64 = 0;
    let mut handshake_nsec: u32 = 0;
    let finish_handshake = |peer: &mut PeerStatus, sec: u64, nsec: u32| {
        if sec != 0 || nsec != 0 {
            peer.last_handshake = Some(UNIX_EPOCH + Duration::new(sec, nsec));
        }
    };
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| DeviceError::Malformed(line.to_string()))?;
        let bad = || DeviceError::Malformed(line.to_string());
        match key {
            "errno" => {
                let errno: i32 = value.parse().map_err(|_| bad())?;
                if errno != 0 {
                    return Err(DeviceError::Errno(errno));
                }
            }
            "private_key" => {}
            "listen_port" => status.listen_port = value.parse().map_err(|_| bad())?,
            "fwmark" => status.fwmark = value.parse().map_err(|_| bad())?,
            "public_key" => {
                if let Some(peer) = status.peers.last_mut() {
                    finish_handshake(peer, handshake_sec, handshake_nsec);
                }
                handshake_sec = 0;
                handshake_nsec = 0;
                status.peers.push(PeerStatus {
                    public_key: PublicKey::from_bytes(unhex(value).ok_or_else(bad)?),
                    has_preshared_key: false,
                    endpoint: None,
                    allowed_ips: Vec::new(),
                    persistent_keepalive: 0,
                    last_handshake: None,
                    rx_bytes: 0,
                    tx_bytes: 0,
                });
            }
            // Device-level keys we do not use (boringtun's own_public_key, future ones).
            _ if status.peers.is_empty() => {}
            _ => {
                let peer = status.peers.last_mut().ok_or_else(bad)?;
                match key {
                    "preshared_key" => peer.has_preshared_key = value.bytes().any(|b| b != b'0'),
                    "endpoint" => {
                        peer.endpoint = Some(value.parse().map_err(|_| bad())?);
                    }
                    "allowed_ip" => peer.allowed_ips.push(value.parse().map_err(|_| bad())?),
                    "persistent_keepalive_interval" => {
                        peer.persistent_keepalive = value.parse().map_err(|_| bad())?
                    }
                    "last_handshake_time_sec" => {
                        handshake_sec = value.parse().map_err(|_| bad())?
                    }
                    "last_handshake_time_nsec" => {
                        handshake_nsec = value.parse().map_err(|_| bad())?
                    }
                    "rx_bytes" => peer.rx_bytes = value.parse().map_err(|_| bad())?,
                    "tx_bytes" => peer.tx_bytes = value.parse().map_err(|_| bad())?,
                    // protocol_version and future keys: not ours to judge.
                    _ => {}
                }
            }
        }
    }
    if let Some(peer) = status.peers.last_mut() {
        finish_handshake(peer, handshake_sec, handshake_nsec);
    }
    Ok(status)
}

/// Renders `status` as the body of a `get=1` reply (what `wg show` reads), ending with
/// `errno=0`. With `private_key`, `wg show` can print the interface's public key; with the
/// peers' preshared keys (`preshared_key` looks them up), it says they have one and `wg
/// showconf` prints them, as for any other device.
pub fn render_get(
    status: &DeviceStatus,
    private_key: Option<&PrivateKey>,
    preshared_key: &dyn Fn(&PublicKey) -> Option<PresharedKey>,
) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::new());
    let mut line = |key: &str, value: &dyn std::fmt::Display| {
        let _ = writeln!(out, "{key}={value}");
    };
    if let Some(key) = private_key {
        line("private_key", &hex(key.expose_bytes()).as_str());
    }
    line("listen_port", &status.listen_port);
    if status.fwmark != 0 {
        line("fwmark", &status.fwmark);
    }
    for peer in &status.peers {
        line("public_key", &hex(peer.public_key.as_bytes()).as_str());
        if let Some(psk) = preshared_key(&peer.public_key) {
            line("preshared_key", &hex(psk.expose_bytes()).as_str());
        }
        if let Some(endpoint) = peer.endpoint {
            line("endpoint", &endpoint);
        }
        let since_epoch = peer
            .last_handshake
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .unwrap_or_default();
        line("last_handshake_time_sec", &since_epoch.as_secs());
        line("last_handshake_time_nsec", &since_epoch.subsec_nanos());
        line("tx_bytes", &peer.tx_bytes);
        line("rx_bytes", &peer.rx_bytes);
        line("persistent_keepalive_interval", &peer.persistent_keepalive);
        for net in &peer.allowed_ips {
            line("allowed_ip", net);
        }
        line("protocol_version", &1);
    }
    line("errno", &0);
    out
}

/// The UAPI `set=1` message of `request`, ending with the empty line that closes it.
pub fn set_message(request: &SetRequest) -> Zeroizing<String> {
    let mut body = Zeroizing::new(String::from("set=1\n"));
    let mut line = |key: &str, value: &dyn std::fmt::Display| {
        let _ = writeln!(body, "{key}={value}");
    };
    for op in request.ops() {
        match op {
            SetOp::PrivateKey(key) => line("private_key", &hex(key.expose_bytes()).as_str()),
            SetOp::ListenPort(port) => line("listen_port", port),
            SetOp::Peer(peer) => {
                line("public_key", &hex(peer.public_key.as_bytes()).as_str());
                if let Some(psk) = &peer.preshared_key {
                    line("preshared_key", &hex(psk.expose_bytes()).as_str());
                }
                if let Some(endpoint) = peer.endpoint {
                    line("endpoint", &endpoint);
                }
                line("persistent_keepalive_interval", &peer.persistent_keepalive);
                line("replace_allowed_ips", &"true");
                for net in &peer.allowed_ips {
                    line("allowed_ip", net);
                }
            }
            SetOp::RemovePeer(key) => {
                line("public_key", &hex(key.as_bytes()).as_str());
                line("remove", &"true");
            }
        }
    }
    body.push('\n');
    body
}

/// Reads one reply: lines up to the empty line after `errno=` (that line not included).
pub fn read_reply(reader: &mut impl BufRead) -> Result<String, DeviceError> {
    let mut reply = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(DeviceError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        if line == "\n"
            && reply
                .lines()
                .last()
                .is_some_and(|l| l.starts_with("errno="))
        {
            return Ok(reply);
        }
        reply.push_str(&line);
    }
}

/// The `get` request as the protocol has it (wireguard-go waits for the empty line).
pub const GET: &[u8] = b"get=1\n\n";
/// The `get` request for boringtun: it reads only the first line and would take the empty
/// line left in the stream for a second, invalid command.
pub const GET_ONE_LINE: &[u8] = b"get=1\n";

/// `get=1` over a connected stream, with `request` being [`GET`] or [`GET_ONE_LINE`].
pub fn get<S: Read + Write>(stream: &mut S, request: &[u8]) -> Result<DeviceStatus, DeviceError> {
    stream.write_all(request)?;
    let reply = read_reply(&mut BufReader::new(&mut *stream))?;
    parse_get(&reply)
}

/// `set=1` over a connected stream.
pub fn set<S: Read + Write>(stream: &mut S, request: &SetRequest) -> Result<(), DeviceError> {
    stream.write_all(set_message(request).as_bytes())?;
    let reply = read_reply(&mut BufReader::new(&mut *stream))?;
    parse_get(&reply).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PeerConfig;
    use ipnet::IpNet;

    const KEY_HEX: &str = "e84b5a6d2717c1003a13b431570353dbaca9146cf150c5f8575680feba52027a";

    #[test]
    fn parses_a_wireguard_go_style_reply() {
        let text = format!(
            "private_key=e84b5a6d2717c1003a13b431570353dbaca9146cf150c5f8575680feba52027a\nlisten_port=51820\n\
             public_key={KEY_HEX}\npreshared_key=0000000000000000000000000000000000000000000000000000000000000000\n\
             protocol_version=1\nendpoint=198.51.100.2:40000\nlast_handshake_time_sec=1700000000\n\
             last_handshake_time_nsec=5\ntx_bytes=100\nrx_bytes=200\npersistent_keepalive_interval=0\n\
             allowed_ip=192.168.32.2/32\nerrno=0\n"
        );
        let status = parse_get(&text).expect("parse");
        assert_eq!(status.listen_port, 51820);
        let peer = &status.peers[0];
        assert!(!peer.has_preshared_key);
        assert_eq!(
            peer.endpoint,
            Some("198.51.100.2:40000".parse().expect("addr"))
        );
        assert_eq!(peer.rx_bytes, 200);
        assert_eq!(
            peer.allowed_ips,
            vec!["192.168.32.2/32".parse::<IpNet>().expect("net")]
        );
        assert_eq!(
            peer.last_handshake,
            Some(UNIX_EPOCH + Duration::new(1_700_000_000, 5))
        );
    }

    #[test]
    fn errors_are_errors() {
        assert!(matches!(
            parse_get("errno=22\n"),
            Err(DeviceError::Errno(22))
        ));
        assert!(matches!(
            parse_get("nonsense\n"),
            Err(DeviceError::Malformed(_))
        ));
        // Device-level keys we do not know are skipped (boringtun sends own_public_key).
        assert!(parse_get("own_public_key=ab\nerrno=0\n").is_ok());
    }

    #[test]
    fn set_message_is_hex_and_ends_with_a_blank_line() {
        let key = PrivateKey::generate().expect("random");
        let mut request = SetRequest::new();
        request
            .private_key(&key)
            .listen_port(51820)
            .peer(&PeerConfig {
                public_key: key.public_key(),
                preshared_key: None,
                endpoint: None,
                allowed_ips: vec!["192.168.32.2/32".parse().expect("net")],
                persistent_keepalive: 0,
            });
        let message = set_message(&request);
        assert!(
            message.starts_with("set=1\nprivate_key="),
            "{}",
            message.as_str()
        );
        assert!(message.ends_with("allowed_ip=192.168.32.2/32\n\n"));
        assert!(
            !message.contains("endpoint="),
            "the gateway never pins an endpoint"
        );
        assert!(message.contains(&format!(
            "public_key={}",
            hex(key.public_key().as_bytes()).as_str()
        )));
    }

    #[test]
    fn rendered_status_parses_back() {
        let key = PrivateKey::generate().expect("random");
        let status = DeviceStatus {
            listen_port: 51820,
            fwmark: 0,
            peers: vec![PeerStatus {
                public_key: key.public_key(),
                has_preshared_key: false,
                endpoint: Some("198.51.100.2:40000".parse().expect("addr")),
                allowed_ips: vec!["192.168.32.2/32".parse().expect("net")],
                persistent_keepalive: 25,
                last_handshake: Some(UNIX_EPOCH + Duration::new(1_700_000_000, 5)),
                rx_bytes: 7,
                tx_bytes: 9,
            }],
            defence: None,
        };
        let text = render_get(&status, Some(&key), &|_| None);
        assert!(text.starts_with("private_key="), "{}", text.as_str());
        assert_eq!(parse_get(&text).expect("parse"), status);
    }

    #[test]
    fn hex_round_trips() {
        let bytes = unhex(KEY_HEX).expect("hex");
        assert_eq!(hex(&bytes).as_str(), KEY_HEX);
        assert!(unhex("zz").is_none());
    }
}
