//! Where each roamer was last seen: the endpoint WireGuard learned from it. Runtime knowledge,
//! not desired state, so it lives apart from `gateway.toml`, in the daemon's state directory
//! (`/var/lib/roamgw`, systemd's `StateDirectory=`), which survives restarts and reboots.
//!
//! Why it exists: a restarted gateway has no session and no endpoint, and a stock wg-quick
//! laptop only starts a handshake at its next rekey (up to 2 min; keepalives never start one).
//! With the last endpoint remembered, the daemon sets it and starts the handshake itself: the
//! laptop's keepalives have kept its NAT mapping open. A stale endpoint costs nothing: the
//! handshake goes nowhere, and the laptop's own handshake still moves the endpoint.
//!
//! Written atomically, and only when an endpoint changes: never per packet or per handshake.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use roamgw_common::fsutil::{self, FsError};
use roamgw_common::PublicKey;
use roamgw_wg::DeviceStatus;
use serde::{Deserialize, Serialize};

const VERSION: u32 = 1;

/// The remembered endpoints, by the roamer's public key (a name can be re-used with a new key).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoints {
    version: u32,
    roamers: BTreeMap<String, Seen>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seen {
    pub endpoint: SocketAddr,
    /// When the daemon first saw this endpoint (Unix seconds).
    pub since: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointsError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("{path}: {message} (a cache: remove the file to start afresh)")]
    Parse { path: PathBuf, message: String },
}

/// `<state dir>/<interface>.endpoints.json`: one file per gateway interface, so two gateways on
/// one machine never share one.
pub fn path(state_dir: &Path, interface: &str) -> PathBuf {
    state_dir.join(format!("{interface}.endpoints.json"))
}

impl Endpoints {
    /// The file's contents; an absent file is an empty memory.
    pub fn load(path: &Path) -> Result<Self, EndpointsError> {
        let text = match fsutil::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.is_not_found() => return Ok(Self::default()),
            Err(e) => return Err(e.into()),
        };
        let parsed: Self = serde_json::from_str(&text).map_err(|e| EndpointsError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if parsed.version != VERSION {
            return Err(EndpointsError::Parse {
                path: path.to_path_buf(),
                message: format!("version {} (this roamgw writes {VERSION})", parsed.version),
            });
        }
        Ok(parsed)
    }

    pub fn save(&self, path: &Path) -> Result<(), EndpointsError> {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        fsutil::write_private(path, text.as_bytes())?;
        Ok(())
    }

    pub fn endpoint(&self, key: &PublicKey) -> Option<SocketAddr> {
        self.roamers.get(&key.to_string()).map(|s| s.endpoint)
    }

    /// The roamers whose endpoint differs from `before`: (public key, old endpoint if any, new).
    pub fn moves_since(&self, before: &Endpoints) -> Vec<(String, Option<SocketAddr>, SocketAddr)> {
        self.roamers
            .iter()
            .filter_map(|(key, seen)| {
                let old = before.roamers.get(key).map(|s| s.endpoint);
                (old != Some(seen.endpoint)).then(|| (key.clone(), old, seen.endpoint))
            })
            .collect()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.roamers.len()
    }

    /// Takes in what the device reports for the `roamers` (their public keys): a new endpoint
    /// replaces the remembered one, roamers no longer in the state are forgotten, a peer
    /// without an endpoint (not seen since the start) keeps what was remembered, and so does
    /// one behind the TCP fallback (a loopback relay socket: it ends with its connection, and
    /// only the laptop can open a new one). Returns whether anything changed, i.e. whether
    /// the file needs writing.
    pub fn observe(&mut self, status: &DeviceStatus, roamers: &[PublicKey], now: u64) -> bool {
        let before = self.clone();
        self.version = VERSION;
        let wanted: Vec<String> = roamers.iter().map(ToString::to_string).collect();
        self.roamers.retain(|key, _| wanted.contains(key));
        for peer in &status.peers {
            let key = peer.public_key.to_string();
            let Some(endpoint) = peer.endpoint else {
                continue;
            };
            if endpoint.ip().is_loopback() || !wanted.contains(&key) {
                continue;
            }
            match self.roamers.get(&key) {
                Some(seen) if seen.endpoint == endpoint => {}
                _ => {
                    self.roamers.insert(
                        key,
                        Seen {
                            endpoint,
                            since: now,
                        },
                    );
                }
            }
        }
        *self != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roamgw_wg::PeerStatus;

    fn key(n: u8) -> PublicKey {
        PublicKey::from_bytes([n; 32])
    }

    fn peer(n: u8, endpoint: Option<&str>) -> PeerStatus {
        PeerStatus {
            public_key: key(n),
            has_preshared_key: true,
            endpoint: endpoint.map(|e| e.parse().expect("endpoint")),
            allowed_ips: vec![],
            persistent_keepalive: 0,
            last_handshake: None,
            rx_bytes: 0,
            tx_bytes: 0,
        }
    }

    fn status(peers: Vec<PeerStatus>) -> DeviceStatus {
        DeviceStatus {
            listen_port: 51820,
            fwmark: 0,
            peers,
            defence: None,
        }
    }

    /// (what, remembered before, device peers, roamers in the state, changed?, endpoint of
    /// roamer 1 afterwards, number remembered afterwards)
    #[test]
    fn observe_table() {
        let a = "198.51.100.2:40000";
        let b = "198.51.100.2:50000";
        type Case = (
            &'static str,
            Vec<(u8, &'static str)>,
            Vec<PeerStatus>,
            Vec<u8>,
            bool,
            Option<&'static str>,
            usize,
        );
        let cases: Vec<Case> = vec![
            (
                "first sighting",
                vec![],
                vec![peer(1, Some(a))],
                vec![1],
                true,
                Some(a),
                1,
            ),
            (
                "same endpoint: no write",
                vec![(1, a)],
                vec![peer(1, Some(a))],
                vec![1],
                false,
                Some(a),
                1,
            ),
            (
                "roamed: new endpoint",
                vec![(1, a)],
                vec![peer(1, Some(b))],
                vec![1],
                true,
                Some(b),
                1,
            ),
            (
                "not seen since start: kept",
                vec![(1, a)],
                vec![peer(1, None)],
                vec![1],
                false,
                Some(a),
                1,
            ),
            (
                "removed roamer forgotten",
                vec![(1, a), (2, b)],
                vec![peer(1, Some(a))],
                vec![1],
                true,
                Some(a),
                1,
            ),
            (
                "peer not in the state ignored",
                vec![],
                vec![peer(3, Some(a))],
                vec![1],
                true,
                None,
                0,
            ),
        ];
        for (what, before, peers, roamers, changed, after, count) in cases {
            let mut memory = Endpoints::default();
            for (n, e) in &before {
                memory.roamers.insert(
                    key(*n).to_string(),
                    Seen {
                        endpoint: e.parse().expect("endpoint"),
                        since: 1,
                    },
                );
            }
            if !before.is_empty() {
                memory.version = VERSION;
            }
            let roamers: Vec<PublicKey> = roamers.into_iter().map(key).collect();
            assert_eq!(
                memory.observe(&status(peers), &roamers, 2),
                changed,
                "{what}"
            );
            assert_eq!(
                memory.endpoint(&key(1)),
                after.map(|e| e.parse().expect("endpoint")),
                "{what}"
            );
            assert_eq!(memory.len(), count, "{what}");
        }
    }

    #[test]
    fn moves_are_new_and_changed_endpoints() {
        let mut e = Endpoints::default();
        e.observe(
            &status(vec![peer(1, Some("198.51.100.2:1000"))]),
            &[key(1), key(2)],
            1,
        );
        let first = e.clone();
        assert_eq!(
            first.moves_since(&Endpoints::default()),
            [(
                key(1).to_string(),
                None,
                "198.51.100.2:1000".parse().expect("addr")
            )]
        );
        e.observe(
            &status(vec![
                peer(1, Some("198.51.100.3:1001")),
                peer(2, Some("198.51.100.9:9")),
            ]),
            &[key(1), key(2)],
            2,
        );
        let moves = e.moves_since(&first);
        assert_eq!(moves.len(), 2);
        assert_eq!(moves[0].1, Some("198.51.100.2:1000".parse().expect("addr")));
        assert!(e.moves_since(&e).is_empty());
    }

    #[test]
    fn save_load_round_trip_and_strictness() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = path(&dir.path().join("state"), "roamgw0");
        assert_eq!(
            Endpoints::load(&file).expect("absent"),
            Endpoints::default()
        );
        let mut memory = Endpoints::default();
        memory.observe(
            &status(vec![peer(1, Some("198.51.100.2:40000"))]),
            &[key(1)],
            7,
        );
        memory.save(&file).expect("save");
        assert_eq!(Endpoints::load(&file).expect("load"), memory);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::write(&file, "{\"version\":1,\"roamers\":{},\"extra\":1}").expect("write");
        let error = Endpoints::load(&file)
            .expect_err("unknown field")
            .to_string();
        assert!(error.contains("unknown field"), "{error}");
    }
}
