//! The userspace device's configuration: our key, the peers (each with its boringtun
//! `noise::Tunn` session state), their allowed IPs as a routing table, and the session indexes
//! that route incoming datagrams to a peer.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::Tunn;
use boringtun::x25519;
use ipnet::IpNet;
use prefix_trie::joint::JointPrefixMap;

use super::super::model::{DeviceStatus, PeerConfig, PeerStatus, SetOp};
use super::udp::Path;
use crate::DeviceError;
use roamgw_common::clock::unix_ms;
use roamgw_common::keys::{PresharedKey, PrivateKey, PublicKey};

/// Handshakes per second before the device answers with cookies (boringtun's device uses the
/// same figure).
const HANDSHAKE_RATE_LIMIT: u64 = 100;

pub struct Peer {
    pub public_key: PublicKey,
    /// This peer's session index (24 bits; the low 8 bits of a receiver index are boringtun's).
    pub index: u32,
    pub allowed_ips: Vec<IpNet>,
    pub persistent_keepalive: u16,
    /// Kept (beside the copy in `tunn`) so that `wg show`/`wg showconf` report it, and so a
    /// change that keeps it keeps the session.
    preshared_key: Option<PresharedKey>,
    /// Shared with the entry a change replaces, so the session survives the change.
    tunn: Arc<Mutex<Tunn>>,
    endpoint: Mutex<Option<Path>>,
    /// When a handshake finished on our side (ms since the Unix epoch; 0: none waiting), and
    /// the session index the peer will send on: it is complete for the peer too only once
    /// it does. Our answer, or our confirmation after its answer, may be lost on the way.
    pending: AtomicU64,
    pending_index: AtomicU32,
    /// When the last handshake was completed on both sides (ms; 0: never): the peer's first
    /// packet on the new session shows it.
    completed: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the data path down with it.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Peer {
    pub fn tunn(&self) -> MutexGuard<'_, Tunn> {
        lock(&self.tunn)
    }

    pub fn endpoint(&self) -> Option<SocketAddr> {
        self.path().map(|p| p.remote)
    }

    /// Where to send, and from which of our addresses.
    pub fn path(&self) -> Option<Path> {
        *lock(&self.endpoint)
    }

    /// WireGuard's roaming: the endpoint is wherever the last authenticated datagram came from
    /// (and our side of the path, where it went to). Whether the peer's address changed.
    pub fn learn_endpoint(&self, path: Path) -> bool {
        let before = lock(&self.endpoint).replace(path);
        before.map(|p| p.remote) != Some(path.remote)
    }

    /// Our address `local` is gone: the route picks the source until the peer is heard again.
    fn forget_source(&self, local: std::net::IpAddr) {
        let mut endpoint = lock(&self.endpoint);
        if let Some(path) = endpoint.as_mut().filter(|p| p.local == Some(local)) {
            path.local = None;
        }
    }

    /// A handshake finished on our side: the peer sends on session `index` once it did too.
    /// `index` is ours: the sender index of our initiation or answer.
    pub fn handshake_pending(&self, index: u32) {
        self.pending_index.store(index, Ordering::Relaxed);
        self.pending.store(unix_ms().max(1), Ordering::Relaxed);
    }

    /// A packet from the peer on session `receiver_index`: the handshake waiting for it, if
    /// any, is complete. One atomic load per packet otherwise.
    pub fn sent_on_session(&self, receiver_index: u32) {
        if self.pending.load(Ordering::Relaxed) != 0
            && self.pending_index.load(Ordering::Relaxed) == receiver_index
        {
            let pending = self.pending.swap(0, Ordering::Relaxed);
            if pending != 0 {
                self.completed.store(pending, Ordering::Relaxed);
            }
        }
    }

    fn last_handshake(&self) -> Option<SystemTime> {
        match self.completed.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(UNIX_EPOCH + std::time::Duration::from_millis(ms)),
        }
    }

    pub fn preshared_key(&self) -> Option<&PresharedKey> {
        self.preshared_key.as_ref()
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allowed_ips.iter().any(|net| net.contains(&ip))
    }

    fn status(&self) -> PeerStatus {
        let (_, tx, rx, _, _) = self.tunn().stats();
        PeerStatus {
            public_key: self.public_key,
            has_preshared_key: self.preshared_key.is_some(),
            endpoint: self.endpoint(),
            allowed_ips: self.allowed_ips.clone(),
            persistent_keepalive: self.persistent_keepalive,
            // boringtun counts a handshake as soon as it has our side of it.
            last_handshake: self.last_handshake(),
            rx_bytes: rx as u64,
            tx_bytes: tx as u64,
        }
    }
}

pub struct Identity {
    private: PrivateKey,
    pub secret: x25519::StaticSecret,
    pub public: x25519::PublicKey,
    pub rate_limiter: Arc<RateLimiter>,
}

impl Identity {
    fn new(private: &PrivateKey) -> Self {
        let secret = x25519::StaticSecret::from(*private.expose_bytes());
        let public = x25519::PublicKey::from(&secret);
        Identity {
            private: private.clone(),
            rate_limiter: Arc::new(RateLimiter::new(&public, HANDSHAKE_RATE_LIMIT)),
            secret,
            public,
        }
    }
}

#[derive(Default)]
pub struct Table {
    identity: Option<Identity>,
    peers: Vec<Arc<Peer>>,
    by_index: HashMap<u32, Arc<Peer>>,
    /// Allowed IPs as a longest-prefix-match trie: a lookup costs the same with 1 or 10,000
    /// roamers (it was a linear scan).
    routes: JointPrefixMap<IpNet, Arc<Peer>>,
    last_index: u32,
    /// Where a configured endpoint is sent from until the peer reaches us (`None`: the
    /// route's choice). See [`crate::ReplySource::Arrival`].
    first_source: Option<IpAddr>,
}

impl Table {
    pub fn with_first_source(first_source: Option<IpAddr>) -> Self {
        Table {
            first_source,
            ..Table::default()
        }
    }

    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    pub fn private_key(&self) -> Option<&PrivateKey> {
        self.identity.as_ref().map(|i| &i.private)
    }

    pub fn peers(&self) -> &[Arc<Peer>] {
        &self.peers
    }

    pub fn peer(&self, key: &PublicKey) -> Option<&Arc<Peer>> {
        self.peers.iter().find(|p| &p.public_key == key)
    }

    /// After a send from `local` found the address gone ([`super::udp::Sent::SourceGone`]).
    pub fn forget_source(&self, local: Option<IpAddr>) {
        if let Some(local) = local {
            for peer in &self.peers {
                peer.forget_source(local);
            }
        }
    }

    /// The peer a datagram's receiver index names.
    pub fn by_receiver_index(&self, receiver_index: u32) -> Option<&Arc<Peer>> {
        self.by_index.get(&(receiver_index >> 8))
    }

    /// Cryptokey routing: the peer whose allowed IPs hold `destination` most specifically.
    pub fn route(&self, destination: IpAddr) -> Option<&Arc<Peer>> {
        self.routes
            .get_lpm(&IpNet::from(destination))
            .map(|(_, peer)| peer)
    }

    /// The device's status; the port is the bound socket's, which the table does not hold.
    pub fn status(&self, listen_port: u16) -> DeviceStatus {
        DeviceStatus {
            listen_port,
            fwmark: 0,
            peers: self.peers.iter().map(|p| p.status()).collect(),
            defence: None,
        }
    }

    /// Applies one `set` transaction (the listen port is the device's to bind). Checked first,
    /// so a refused one changes nothing. Returns the peers that should start a handshake now:
    /// a configured endpoint and keepalive, the kernel's behaviour, so a roamer is reachable
    /// without waiting for its first packet.
    pub fn apply(&mut self, ops: &[SetOp]) -> Result<Vec<PublicKey>, DeviceError> {
        let key_set = ops.iter().any(|op| matches!(op, SetOp::PrivateKey(_)));
        if self.identity.is_none() && !key_set && ops.iter().any(|op| matches!(op, SetOp::Peer(_)))
        {
            return Err(DeviceError::Userspace(
                "set the private key before adding peers".into(),
            ));
        }
        let mut initiate = Vec::new();
        for op in ops {
            match op {
                SetOp::PrivateKey(key) => self.set_key(key),
                SetOp::ListenPort(_) => {}
                SetOp::Peer(config) => {
                    if self.upsert(config) {
                        initiate.push(config.public_key);
                    }
                }
                SetOp::RemovePeer(key) => self.peers.retain(|p| &p.public_key != key),
            }
        }
        self.reindex();
        Ok(initiate)
    }

    fn set_key(&mut self, key: &PrivateKey) {
        if self.private_key() == Some(key) {
            return;
        }
        let identity = Identity::new(key);
        for peer in &self.peers {
            peer.tunn().set_static_private(
                identity.secret.clone(),
                identity.public,
                Some(Arc::clone(&identity.rate_limiter)),
            );
        }
        self.identity = Some(identity);
    }

    fn next_index(&mut self) -> u32 {
        // Any unused 24-bit value will do; start from a random one so a restarted device does
        // not hand out the indexes its previous sessions had.
        if self.last_index == 0 {
            let mut seed = [0u8; 4];
            let _ = getrandom::fill(&mut seed);
            self.last_index = u32::from_le_bytes(seed) & 0x00ff_ffff;
        }
        loop {
            self.last_index = (self.last_index + 1) & 0x00ff_ffff;
            // The peers themselves, not `by_index`: that is rebuilt only after a transaction.
            if self.last_index != 0 && !self.peers.iter().any(|p| p.index == self.last_index) {
                return self.last_index;
            }
        }
    }

    /// Adds the peer, or changes it: a change keeps the session when the key material and
    /// keepalive are the same, and keeps the learned endpoint unless a new one is given.
    /// Returns whether the peer should start a handshake now.
    fn upsert(&mut self, config: &PeerConfig) -> bool {
        let Some(identity) = self.identity.as_ref() else {
            return false;
        };
        let existing = self.peer(&config.public_key).cloned();
        self.peers.retain(|p| p.public_key != config.public_key);
        // A configured endpoint starts from the first source (the route's choice, as in
        // kernel WireGuard, unless the device was given one); a learned one keeps its path.
        let first_source = self.first_source;
        let endpoint = config
            .endpoint
            .map(|remote| Path {
                remote,
                local: first_source,
            })
            .or_else(|| existing.as_ref().and_then(|p| p.path()));
        let completed = existing
            .as_ref()
            .map_or(0, |p| p.completed.load(Ordering::Relaxed));
        let (index, tunn, fresh) = match existing {
            Some(old)
                if config.preshared_key == old.preshared_key
                    && old.persistent_keepalive == config.persistent_keepalive =>
            {
                (old.index, Arc::clone(&old.tunn), false)
            }
            _ => {
                let secret = identity.secret.clone();
                let limiter = Arc::clone(&identity.rate_limiter);
                let index = self.next_index();
                let tunn = Tunn::new(
                    secret,
                    x25519::PublicKey::from(*config.public_key.as_bytes()),
                    config.preshared_key.as_ref().map(|k| *k.expose_bytes()),
                    (config.persistent_keepalive > 0).then_some(config.persistent_keepalive),
                    index,
                    Some(limiter),
                );
                (index, Arc::new(Mutex::new(tunn)), true)
            }
        };
        self.peers.push(Arc::new(Peer {
            public_key: config.public_key,
            index,
            allowed_ips: config.allowed_ips.iter().map(IpNet::trunc).collect(),
            persistent_keepalive: config.persistent_keepalive,
            preshared_key: config.preshared_key.clone(),
            tunn,
            endpoint: Mutex::new(endpoint),
            pending: AtomicU64::new(0),
            pending_index: AtomicU32::new(0),
            completed: AtomicU64::new(if fresh { 0 } else { completed }),
        }));
        fresh && endpoint.is_some() && config.persistent_keepalive > 0
    }

    fn reindex(&mut self) {
        self.by_index = self
            .peers
            .iter()
            .map(|p| (p.index, Arc::clone(p)))
            .collect();
        let mut routes = JointPrefixMap::new();
        for peer in &self.peers {
            for net in &peer.allowed_ips {
                // An allowed IP belongs to one peer: the last configured one wins, as in WireGuard.
                routes.insert(*net, Arc::clone(peer));
            }
        }
        self.routes = routes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(key: &PublicKey, allowed: &[&str], keepalive: u16) -> PeerConfig {
        PeerConfig {
            public_key: *key,
            preshared_key: None,
            endpoint: None,
            allowed_ips: allowed.iter().map(|a| a.parse().expect("net")).collect(),
            persistent_keepalive: keepalive,
        }
    }

    fn key() -> PublicKey {
        PrivateKey::generate().expect("random").public_key()
    }

    fn table_with(peers: &[PeerConfig]) -> Table {
        let mut table = Table::default();
        let mut ops = vec![SetOp::PrivateKey(PrivateKey::generate().expect("random"))];
        ops.extend(peers.iter().cloned().map(SetOp::Peer));
        table.apply(&ops).expect("apply");
        table
    }

    #[test]
    fn routes_by_longest_prefix() {
        let (a, b) = (key(), key());
        let table = table_with(&[
            peer(&a, &["10.0.0.0/8"], 0),
            peer(&b, &["10.1.2.3/32", "192.168.5.0/24"], 0),
        ]);
        let routed = |ip: &str| table.route(ip.parse().expect("ip")).map(|p| p.public_key);
        assert_eq!(routed("10.1.2.3"), Some(b));
        assert_eq!(routed("10.1.2.4"), Some(a));
        assert_eq!(routed("192.168.5.9"), Some(b));
        assert_eq!(routed("192.168.6.9"), None);
    }

    #[test]
    fn an_allowed_ip_moves_to_the_peer_configured_last() {
        let (a, b) = (key(), key());
        let table = table_with(&[peer(&a, &["10.0.0.2/32"], 0), peer(&b, &["10.0.0.2/32"], 0)]);
        let routed = table
            .route("10.0.0.2".parse().expect("ip"))
            .map(|p| p.public_key);
        assert_eq!(routed, Some(b));
    }

    #[test]
    fn peers_are_found_by_their_session_index() {
        let (a, b) = (key(), key());
        let table = table_with(&[peer(&a, &["10.0.0.1/32"], 0), peer(&b, &["10.0.0.2/32"], 0)]);
        for p in table.peers() {
            let receiver_index = (p.index << 8) | 3;
            let found = table
                .by_receiver_index(receiver_index)
                .map(|f| f.public_key);
            assert_eq!(found, Some(p.public_key));
        }
        assert_ne!(table.peers()[0].index, table.peers()[1].index);
    }

    #[test]
    fn a_handshake_counts_once_the_peer_sends_on_its_session() {
        let a = key();
        let table = table_with(&[peer(&a, &["10.0.0.1/32"], 0)]);
        let p = &table.peers()[0];
        assert_eq!(p.status().last_handshake, None);
        p.handshake_pending(0x0102_0304);
        p.sent_on_session(0x0102_0305);
        assert_eq!(
            p.status().last_handshake,
            None,
            "another session proves nothing"
        );
        p.sent_on_session(0x0102_0304);
        assert!(p.status().last_handshake.is_some());
    }

    #[test]
    fn our_side_of_a_path_is_kept_until_it_is_gone_or_an_endpoint_is_set() {
        let (a, b) = (key(), key());
        let table = table_with(&[peer(&a, &["10.0.0.1/32"], 0), peer(&b, &["10.0.0.2/32"], 0)]);
        let anchor: IpAddr = "10.16.0.5".parse().expect("ip");
        let public: IpAddr = "203.0.113.10".parse().expect("ip");
        let path = |local: IpAddr| Path {
            remote: "198.51.100.9:40000".parse().expect("addr"),
            local: Some(local),
        };
        table.peers()[0].learn_endpoint(path(anchor));
        table.peers()[1].learn_endpoint(path(public));
        table.forget_source(Some(anchor));
        let locals: Vec<_> = table
            .peers()
            .iter()
            .map(|p| p.path().and_then(|p| p.local))
            .collect();
        assert_eq!(
            locals,
            [None, Some(public)],
            "only the gone address is forgotten"
        );
        assert_eq!(
            table.peers()[0].endpoint(),
            Some(path(anchor).remote),
            "endpoint kept"
        );

        // A configured endpoint starts over from the route's choice, as in the kernel.
        let mut table = table;
        let mut configured = peer(&b, &["10.0.0.2/32"], 0);
        configured.endpoint = Some("192.0.2.1:51820".parse().expect("addr"));
        table.apply(&[SetOp::Peer(configured)]).expect("change");
        let b_path = table.peer(&b).and_then(|p| p.path());
        assert_eq!(b_path.and_then(|p| p.local), None);

        // A device given a first source (the gateway whose roamers dial the floating IP)
        // sends to a configured endpoint from it.
        let mut table = Table::with_first_source(Some(anchor));
        let mut identity = peer(&a, &["10.0.0.1/32"], 0);
        identity.endpoint = Some("192.0.2.1:51820".parse().expect("addr"));
        table
            .apply(&[
                SetOp::PrivateKey(PrivateKey::generate().expect("random")),
                SetOp::Peer(identity),
            ])
            .expect("change");
        let a_path = table.peer(&a).and_then(|p| p.path());
        assert_eq!(a_path.and_then(|p| p.local), Some(anchor));
    }

    #[test]
    fn a_changed_peer_keeps_its_session_and_learned_endpoint() {
        let a = key();
        let mut table = table_with(&[peer(&a, &["10.0.0.1/32"], 0)]);
        let learned: SocketAddr = "198.51.100.9:40000".parse().expect("addr");
        table.peers()[0].learn_endpoint(learned.into());
        let index = table.peers()[0].index;
        table
            .apply(&[SetOp::Peer(peer(&a, &["10.0.0.1/32", "10.0.9.0/24"], 0))])
            .expect("change");
        assert_eq!(table.peers().len(), 1);
        assert_eq!(table.peers()[0].index, index, "same session");
        assert_eq!(table.peers()[0].endpoint(), Some(learned));
        assert!(table.route("10.0.9.5".parse().expect("ip")).is_some());

        // A new keepalive means a new session (boringtun's Tunn cannot change it), same endpoint.
        table
            .apply(&[SetOp::Peer(peer(&a, &["10.0.0.1/32"], 25))])
            .expect("change");
        assert_ne!(table.peers()[0].index, index);
        assert_eq!(table.peers()[0].endpoint(), Some(learned));
        assert!(table.route("10.0.9.5".parse().expect("ip")).is_none());
    }

    #[test]
    fn the_preshared_key_is_kept_compared_by_value_and_reported() {
        let a = key();
        let psk = |text: &str| Some(text.parse::<PresharedKey>().expect("psk"));
        let one = "GDvZAcXn0PPlb8Obc9+CQrHeoYhhJZSkiUnlB5RsvUo=";
        let two = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
        let with = |key: Option<PresharedKey>, allowed: &[&str]| PeerConfig {
            preshared_key: key,
            ..peer(&a, allowed, 0)
        };
        let mut table = table_with(&[with(psk(one), &["10.0.0.1/32"])]);
        let index = table.peers()[0].index;
        assert_eq!(table.peers()[0].preshared_key(), psk(one).as_ref());
        assert!(table.status(51820).peers[0].has_preshared_key);
        // Same key, other allowed IPs: the session goes on.
        table
            .apply(&[SetOp::Peer(with(psk(one), &["10.0.0.2/32"]))])
            .expect("change");
        assert_eq!(
            table.peers()[0].index,
            index,
            "same preshared key, same session"
        );
        // A new preshared key is a new session.
        table
            .apply(&[SetOp::Peer(with(psk(two), &["10.0.0.2/32"]))])
            .expect("change");
        assert_ne!(table.peers()[0].index, index);
        assert_eq!(table.peers()[0].preshared_key(), psk(two).as_ref());
    }

    #[test]
    fn removing_a_peer_removes_its_routes_and_index() {
        let (a, b) = (key(), key());
        let mut table = table_with(&[peer(&a, &["10.0.0.1/32"], 0), peer(&b, &["10.0.0.2/32"], 0)]);
        let index = table.peer(&a).expect("a").index;
        table.apply(&[SetOp::RemovePeer(a)]).expect("remove");
        assert!(table.route("10.0.0.1".parse().expect("ip")).is_none());
        assert!(table.by_receiver_index(index << 8).is_none());
        assert_eq!(table.peers().len(), 1);
    }

    #[test]
    fn peers_need_a_key_first_and_a_refused_set_changes_nothing() {
        let mut table = Table::default();
        let err = table
            .apply(&[SetOp::ListenPort(5), SetOp::Peer(peer(&key(), &[], 0))])
            .expect_err("no key");
        assert!(err.to_string().contains("private key"), "{err}");
        assert!(table.peers().is_empty());
    }

    #[test]
    fn a_peer_with_endpoint_and_keepalive_starts_a_handshake() {
        let mut table = table_with(&[]);
        let mut with_endpoint = peer(&key(), &["10.0.0.1/32"], 10);
        with_endpoint.endpoint = Some("192.0.2.1:51820".parse().expect("addr"));
        let initiate = table
            .apply(&[
                SetOp::Peer(with_endpoint.clone()),
                SetOp::Peer(peer(&key(), &[], 10)),
            ])
            .expect("apply");
        assert_eq!(initiate, vec![with_endpoint.public_key]);
    }
}
