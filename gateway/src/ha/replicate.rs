//! How the standby keeps the active droplet's gateway: it asks, the active answers.
//!
//! Each daemon of a pair serves its role and, when active, a snapshot of its gateway (the
//! state file, the key files, the remembered endpoints) on its private address; each asks its
//! peer in a long poll: "this is the snapshot I have (its digest): answer when yours differs,
//! or in 10 s". A change on the active therefore reaches the standby in one round trip.
//!
//! Nothing here trusts the network. The answer is sealed (ChaCha20-Poly1305) with the pair's
//! key (`pair.key`, made by `roamgw ha setup`, given to `roamgw ha join`), and bound to the
//! asker's random challenge, so an answer can be neither read, forged nor replayed by anyone
//! without the key. An outsider can ask, and gets ciphertext; connections are bounded.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use blake2::{Blake2s256, Digest};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use super::HaRole;

const MAGIC: &[u8; 4] = b"RGW1";
const CHALLENGE_LEN: usize = 32;
const DIGEST_LEN: usize = 32;
const ASK_LEN: usize = MAGIC.len() + CHALLENGE_LEN + DIGEST_LEN + 4;
const NONCE_LEN: usize = 12;
/// A snapshot of 100,000 forwards is a few MB.
const MAX_ANSWER: usize = 64 << 20;
/// How long an answer may be held back waiting for a change.
pub const LONG_POLL: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the asker waits after a failed exchange.
const RETRY_AFTER: Duration = Duration::from_secs(1);
const MAX_CONNECTIONS: usize = 8;
const ASK_DEADLINE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("the pair key {0}")]
    Key(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the peer's answer does not open with this droplet's pair key: the two droplets have different pair keys (run `roamgw ha join` again with the active's key)")]
    Sealed,
    #[error("the peer's answer is malformed: {0}")]
    Malformed(String),
}

/// The secret the two droplets of a pair share: 32 random bytes, base64 in `pair.key` (0600).
pub struct PairKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for PairKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PairKey(***)")
    }
}

impl PairKey {
    pub fn generate() -> Result<Self, ReplicaError> {
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::fill(key.as_mut()).map_err(|e| ReplicaError::Key(e.to_string()))?;
        Ok(PairKey(key))
    }

    pub fn from_base64(text: &str) -> Result<Self, ReplicaError> {
        let bytes = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|_| ReplicaError::Key("is not base64".into()))?,
        );
        let mut key = Zeroizing::new([0u8; 32]);
        if bytes.len() != key.len() {
            return Err(ReplicaError::Key(format!(
                "has {} bytes, not 32: copy it whole from `roamgw ha setup`'s output",
                bytes.len()
            )));
        }
        key.copy_from_slice(&bytes);
        Ok(PairKey(key))
    }

    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(self.0.as_ref()))
    }

    pub fn read(path: &Path) -> Result<Self, ReplicaError> {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| ReplicaError::Key(format!("{}: {e}", path.display())))?,
        );
        PairKey::from_base64(&text)
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(self.0.as_ref()))
    }
}

/// The active droplet's gateway, whole: what the standby needs to take over.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// `gateway.toml` as the active has it.
    pub state: String,
    /// The files of `keys/`, by name.
    pub keys: BTreeMap<String, Zeroizing<String>>,
    /// The remembered endpoints, as the endpoints file holds them.
    pub endpoints: String,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("state_bytes", &self.state.len())
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

pub type SnapshotDigest = [u8; DIGEST_LEN];

impl Snapshot {
    /// What identifies it: the same files give the same digest on both droplets.
    pub fn digest(&self) -> SnapshotDigest {
        let text = Zeroizing::new(serde_json::to_vec(self).unwrap_or_default());
        Blake2s256::digest(text.as_slice()).into()
    }
}

/// A question: "answer when your snapshot's digest is not `have`, or after `wait`".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    pub challenge: [u8; CHALLENGE_LEN],
    pub have: SnapshotDigest,
    pub wait: Duration,
}

impl Ask {
    pub fn new(have: SnapshotDigest, wait: Duration) -> Result<Ask, ReplicaError> {
        let mut challenge = [0u8; CHALLENGE_LEN];
        getrandom::fill(&mut challenge).map_err(|e| ReplicaError::Key(e.to_string()))?;
        Ok(Ask {
            challenge,
            have,
            wait,
        })
    }

    pub fn encode(&self) -> [u8; ASK_LEN] {
        let mut out = [0u8; ASK_LEN];
        let wait = u32::try_from(self.wait.as_millis()).unwrap_or(u32::MAX);
        out[..4].copy_from_slice(MAGIC);
        out[4..36].copy_from_slice(&self.challenge);
        out[36..68].copy_from_slice(&self.have);
        out[68..].copy_from_slice(&wait.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8; ASK_LEN]) -> Option<Ask> {
        if &bytes[..4] != MAGIC {
            return None;
        }
        let mut challenge = [0u8; CHALLENGE_LEN];
        challenge.copy_from_slice(&bytes[4..36]);
        let mut have = [0u8; DIGEST_LEN];
        have.copy_from_slice(&bytes[36..68]);
        let mut wait = [0u8; 4];
        wait.copy_from_slice(&bytes[68..]);
        Some(Ask {
            challenge,
            have,
            wait: Duration::from_millis(u64::from(u32::from_be_bytes(wait))).min(LONG_POLL),
        })
    }
}

/// The answer: the server's role, the digest of its snapshot, and the snapshot itself when it
/// is active and the asker does not have it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    pub role: HaRole,
    pub digest: SnapshotDigest,
    pub snapshot: Option<Snapshot>,
}

/// `answer`, sealed for the asker of `challenge`: nonce, then ciphertext.
pub fn seal(
    key: &PairKey,
    challenge: &[u8; CHALLENGE_LEN],
    answer: &Answer,
) -> Result<Vec<u8>, ReplicaError> {
    let plain = Zeroizing::new(
        serde_json::to_vec(answer).map_err(|e| ReplicaError::Malformed(e.to_string()))?,
    );
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| ReplicaError::Key(e.to_string()))?;
    let sealed = key
        .cipher()
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &plain,
                aad: challenge,
            },
        )
        .map_err(|_| ReplicaError::Malformed("cannot seal".into()))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens an answer to `challenge`; fails for another key, another challenge or a changed byte.
pub fn open(
    key: &PairKey,
    challenge: &[u8; CHALLENGE_LEN],
    sealed: &[u8],
) -> Result<Answer, ReplicaError> {
    if sealed.len() < NONCE_LEN {
        return Err(ReplicaError::Malformed("too short".into()));
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let plain = Zeroizing::new(
        key.cipher()
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: challenge,
                },
            )
            .map_err(|_| ReplicaError::Sealed)?,
    );
    serde_json::from_slice(&plain).map_err(|e| ReplicaError::Malformed(e.to_string()))
}

/// What this daemon offers its peer, and what it last heard from it.
pub struct Replica {
    key: PairKey,
    offer: Mutex<Offer>,
    changed: Condvar,
    peer: Mutex<PeerSeen>,
    connections: AtomicUsize,
}

struct Offer {
    role: HaRole,
    snapshot: Option<Snapshot>,
    digest: SnapshotDigest,
    generation: u64,
}

/// The peer as the last exchange saw it (for `roamgw ha status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerSeen {
    pub role: Option<HaRole>,
    /// Unix ms of the last answer.
    pub answered_ms: Option<u64>,
    /// Whether this droplet has the peer's snapshot (meaningful when the peer is active).
    pub in_sync: bool,
    /// Unix ms when this droplet last took a snapshot from it.
    pub taken_ms: Option<u64>,
    /// Why the last exchange failed, if it did.
    pub error: Option<String>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Replica {
    pub fn new(key: PairKey, role: HaRole) -> Arc<Replica> {
        Arc::new(Replica {
            key,
            offer: Mutex::new(Offer {
                role,
                snapshot: None,
                digest: [0; DIGEST_LEN],
                generation: 0,
            }),
            changed: Condvar::new(),
            peer: Mutex::new(PeerSeen::default()),
            connections: AtomicUsize::new(0),
        })
    }

    /// Offers `role` and, if given, a new snapshot; wakes the peer's waiting question.
    pub fn publish(&self, role: HaRole, snapshot: Option<Snapshot>) {
        let mut offer = lock(&self.offer);
        let mut changed = offer.role != role;
        offer.role = role;
        if let Some(snapshot) = snapshot {
            let digest = snapshot.digest();
            if digest != offer.digest {
                offer.digest = digest;
                offer.snapshot = Some(snapshot);
                changed = true;
            }
        }
        if changed {
            offer.generation += 1;
            self.changed.notify_all();
        }
    }

    pub fn role(&self) -> HaRole {
        lock(&self.offer).role
    }

    pub fn peer(&self) -> PeerSeen {
        lock(&self.peer).clone()
    }

    /// The answer to `ask`: at once when the asker lacks our snapshot, else when something
    /// changes or `ask.wait` has passed.
    pub fn answer(&self, ask: &Ask) -> Answer {
        let until = Instant::now() + ask.wait;
        let mut offer = lock(&self.offer);
        let generation = offer.generation;
        loop {
            let differs = offer.role == HaRole::Active && offer.digest != ask.have;
            let now = Instant::now();
            if differs || offer.generation != generation || now >= until {
                break;
            }
            offer = self
                .changed
                .wait_timeout(offer, until - now)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        let send = offer.role == HaRole::Active && offer.digest != ask.have;
        Answer {
            role: offer.role,
            digest: offer.digest,
            snapshot: if send { offer.snapshot.clone() } else { None },
        }
    }

    /// Serves questions on `listener` (the private address), one thread per connection.
    pub fn serve(self: &Arc<Self>, listener: TcpListener) {
        let replica = Arc::clone(self);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                if replica.connections.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                    replica.connections.fetch_sub(1, Ordering::SeqCst);
                    continue;
                }
                let replica = Arc::clone(&replica);
                std::thread::spawn(move || {
                    if let Err(e) = replica.serve_one(stream) {
                        debug!("replication: a question went unanswered: {e}");
                    }
                    replica.connections.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
    }

    fn serve_one(&self, mut stream: TcpStream) -> Result<(), ReplicaError> {
        stream.set_read_timeout(Some(ASK_DEADLINE))?;
        let mut bytes = [0u8; ASK_LEN];
        stream.read_exact(&mut bytes)?;
        let ask = Ask::decode(&bytes).ok_or_else(|| ReplicaError::Malformed("not ours".into()))?;
        let answer = self.answer(&ask);
        let sealed = seal(&self.key, &ask.challenge, &answer)?;
        let length = u32::try_from(sealed.len())
            .map_err(|_| ReplicaError::Malformed("answer too large".into()))?;
        stream.write_all(&length.to_be_bytes())?;
        stream.write_all(&sealed)?;
        Ok(())
    }

    /// Asks `peer` once.
    pub fn ask(&self, peer: SocketAddr, ask: &Ask) -> Result<Answer, ReplicaError> {
        let mut stream = TcpStream::connect_timeout(&peer, CONNECT_TIMEOUT)?;
        stream.set_read_timeout(Some(ask.wait + Duration::from_secs(5)))?;
        stream.write_all(&ask.encode())?;
        let mut length = [0u8; 4];
        stream.read_exact(&mut length)?;
        let length = usize::try_from(u32::from_be_bytes(length)).unwrap_or(usize::MAX);
        if length > MAX_ANSWER {
            return Err(ReplicaError::Malformed(format!("{length} bytes")));
        }
        let mut sealed = vec![0u8; length];
        stream.read_exact(&mut sealed)?;
        open(&self.key, &ask.challenge, &sealed)
    }

    /// Asks `peer` for ever on a thread of its own. A standby hands every new snapshot of an
    /// active peer to `take` (which applies it: `Ok` means it is live here).
    pub fn follow(
        self: &Arc<Self>,
        peer: SocketAddr,
        take: impl Fn(Snapshot) -> Result<(), String> + Send + 'static,
    ) {
        let replica = Arc::clone(self);
        std::thread::spawn(move || {
            let mut taken: SnapshotDigest = [0; DIGEST_LEN];
            let mut seen: SnapshotDigest = [0; DIGEST_LEN];
            loop {
                let standby = replica.role() == HaRole::Standby;
                // An active droplet takes nothing: it only waits for news of its peer.
                let have = if standby { taken } else { seen };
                let result = Ask::new(have, LONG_POLL).and_then(|ask| replica.ask(peer, &ask));
                let now = roamgw_common::clock::unix_ms();
                match result {
                    Ok(answer) => {
                        seen = answer.digest;
                        let mut error = None;
                        if let (true, Some(snapshot)) = (standby, answer.snapshot) {
                            match take(snapshot) {
                                Ok(()) => {
                                    taken = answer.digest;
                                    lock(&replica.peer).taken_ms = Some(now);
                                }
                                Err(e) => error = Some(e),
                            }
                        }
                        let mut view = lock(&replica.peer);
                        if view.error.is_some() {
                            info!("replication: {peer} answers again");
                        }
                        view.role = Some(answer.role);
                        view.answered_ms = Some(now);
                        view.in_sync = answer.digest == taken;
                        if let Some(e) = &error {
                            warn!("replication: the active's state was not taken: {e}");
                        }
                        view.error = error;
                    }
                    Err(e) => {
                        let mut view = lock(&replica.peer);
                        if view.error.is_none() {
                            warn!("replication: cannot ask {peer}: {e}");
                        }
                        view.error = Some(e.to_string());
                        // Unknown now: what it said before says nothing of it now.
                        view.role = None;
                        drop(view);
                        std::thread::sleep(RETRY_AFTER);
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(state: &str) -> Snapshot {
        Snapshot {
            state: state.into(),
            keys: BTreeMap::from([("gateway.key".into(), Zeroizing::new("secret".into()))]),
            endpoints: String::new(),
        }
    }

    #[test]
    fn an_answer_opens_only_with_the_pair_key_and_for_its_own_question() {
        let key = PairKey::generate().expect("random");
        let other = PairKey::generate().expect("random");
        let answer = Answer {
            role: HaRole::Active,
            digest: snapshot("a").digest(),
            snapshot: Some(snapshot("a")),
        };
        let challenge = [7u8; CHALLENGE_LEN];
        let sealed = seal(&key, &challenge, &answer).expect("seals");
        assert_eq!(open(&key, &challenge, &sealed).expect("opens"), answer);
        assert!(matches!(
            open(&other, &challenge, &sealed),
            Err(ReplicaError::Sealed)
        ));
        // A replayed answer to an earlier question.
        assert!(open(&key, &[8u8; CHALLENGE_LEN], &sealed).is_err());
        let mut flipped = sealed.clone();
        flipped[20] ^= 1;
        assert!(open(&key, &challenge, &flipped).is_err());
        // The secrets never travel in the clear.
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
    }

    #[test]
    fn a_question_survives_the_wire_and_junk_is_not_one() {
        let ask = Ask::new([3; DIGEST_LEN], Duration::from_secs(5)).expect("random");
        assert_eq!(Ask::decode(&ask.encode()), Some(ask));
        assert_eq!(Ask::decode(&[0u8; ASK_LEN]), None);
        let mut long = Ask::new([0; DIGEST_LEN], Duration::from_secs(3600))
            .expect("random")
            .encode();
        long[0..4].copy_from_slice(MAGIC);
        assert_eq!(Ask::decode(&long).map(|a| a.wait), Some(LONG_POLL));
    }

    #[test]
    fn the_pair_key_round_trips_and_a_cut_one_says_so() {
        let key = PairKey::generate().expect("random");
        let again = PairKey::from_base64(&key.to_base64()).expect("parses");
        assert_eq!(again.to_base64(), key.to_base64());
        let cut = &key.to_base64()[..20];
        let err = PairKey::from_base64(cut).expect_err("short").to_string();
        assert!(err.contains("32") || err.contains("base64"), "{err}");
        assert_eq!(format!("{key:?}"), "PairKey(***)");
    }

    #[test]
    fn a_standby_gets_the_active_snapshot_at_once_then_waits_for_a_change() {
        let replica = Replica::new(PairKey::generate().expect("random"), HaRole::Active);
        replica.publish(HaRole::Active, Some(snapshot("one")));
        let first = replica.answer(&Ask::new([0; 32], LONG_POLL).expect("random"));
        assert_eq!(first.snapshot, Some(snapshot("one")));
        let waiting = {
            let replica = Arc::clone(&replica);
            let have = first.digest;
            std::thread::spawn(move || {
                let started = Instant::now();
                let answer = replica.answer(&Ask::new(have, LONG_POLL).expect("random"));
                (answer, started.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        replica.publish(HaRole::Active, Some(snapshot("two")));
        let (second, took) = waiting.join().expect("answers");
        assert_eq!(second.snapshot, Some(snapshot("two")));
        assert!(took < Duration::from_secs(5), "{took:?}");
        // Nothing changed: the question times out with no snapshot.
        let idle = replica.answer(&Ask::new(second.digest, Duration::from_millis(50)).expect("r"));
        assert_eq!(idle.snapshot, None);
    }

    #[test]
    fn a_standby_serves_no_snapshot() {
        let replica = Replica::new(PairKey::generate().expect("random"), HaRole::Standby);
        replica.publish(HaRole::Standby, Some(snapshot("mine")));
        let answer = replica.answer(&Ask::new([0; 32], Duration::from_millis(10)).expect("r"));
        assert_eq!((answer.role, answer.snapshot), (HaRole::Standby, None));
    }

    #[test]
    fn two_replicas_over_loopback_hand_over_a_snapshot() {
        let key = PairKey::generate().expect("random");
        let copy = PairKey::from_base64(&key.to_base64()).expect("copy");
        let active = Replica::new(key, HaRole::Active);
        active.publish(HaRole::Active, Some(snapshot("state")));
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let addr = listener.local_addr().expect("addr");
        active.serve(listener);
        let standby = Replica::new(copy, HaRole::Standby);
        let (tx, rx) = std::sync::mpsc::channel();
        standby.follow(addr, move |s| {
            tx.send(s).map_err(|e| e.to_string())?;
            Ok(())
        });
        let got = rx.recv_timeout(Duration::from_secs(5)).expect("a snapshot");
        assert_eq!(got, snapshot("state"));
        active.publish(HaRole::Active, Some(snapshot("changed")));
        let got = rx.recv_timeout(Duration::from_secs(5)).expect("the change");
        assert_eq!(got, snapshot("changed"));
    }
}
