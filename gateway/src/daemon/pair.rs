//! The daemon's half of an active/standby pair (see [`crate::ha`]).
//!
//! - keepalived's word (`roamgw ha notify` → [`Request::HaNotify`]) sets the role. Promoted,
//!   the daemon claims the reserved IP through the provider's API on a thread of its own and,
//!   once the provider says it is done, wakes the engine: the remembered endpoints are set and
//!   handshakes start, so stock laptops come back without waiting for their rekey. Demoted, the
//!   engine goes quiet at once.
//! - Active, it offers its gateway to the peer after every change (the replica's long poll
//!   carries it within a round trip); standby, it takes the peer's and refuses changes of its
//!   own.
//! - Split brain: while active it asks the provider every [`HOLDER_CHECK`] who holds the IP;
//!   when another droplet does, it goes quiet and says so. It claims again only when the peer
//!   reports itself standby, so two droplets that cannot see each other never take turns.
//!
//! [`Request::HaNotify`]: crate::control::Request::HaNotify

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use roamgw_common::clock::unix_ms;
use roamgw_common::fsutil;
use roamgw_common::state::ha::HaSettings;
use roamgw_common::state::GatewayState;
use tracing::{error, info, warn};
use zeroize::Zeroizing;

use super::endpoints::Endpoints;
use super::{Daemon, DaemonError, Event};
use crate::change::StateChange;
use crate::engine::{ChangeError, Fault};
use crate::ha::provider::{Claimed, DigitalOcean, Provider, ProviderError, Token};
use crate::ha::replicate::{PairKey, Replica, Snapshot};
use crate::ha::{self, HaRole, HaView, Holding};
use crate::store::Store;

/// How often an active droplet asks the provider whether the reserved IP is still its own.
pub const HOLDER_CHECK: Duration = Duration::from_secs(10);
/// How long a failed claim waits before it is tried again.
const CLAIM_RETRY: Duration = Duration::from_secs(5);

/// What the pair's threads tell the event loop.
pub enum PairEvent {
    Claimed(Result<Claimed, ProviderError>),
    Holder(Result<Option<u64>, ProviderError>),
    Snapshot(Box<Snapshot>, mpsc::Sender<Result<(), String>>),
}

pub struct Pair {
    settings: HaSettings,
    replica: Arc<Replica>,
    role: HaRole,
    holding: Holding,
    events: mpsc::Sender<Event>,
    /// What was last offered to the peer, to offer again only after a change.
    offered: Option<(Arc<GatewayState>, Endpoints)>,
    next_holder_check: Instant,
    next_claim: Option<Instant>,
    /// A claim or a holder check is under way (one at a time).
    asking: bool,
}

/// The pair this daemon is half of, serving and following its peer; `None` without `ha.toml`.
pub fn start(store: &Store, events: &mpsc::Sender<Event>) -> Result<Option<Pair>, DaemonError> {
    let settings = match ha::settings(store) {
        Ok(Some(settings)) => settings,
        Ok(None) => return Ok(None),
        Err(e) => return Err(DaemonError::Ha(e.to_string())),
    };
    let key =
        PairKey::read(&ha::pair_key_path(store)).map_err(|e| DaemonError::Ha(e.to_string()))?;
    let role = ha::saved_role(store);
    let replica = Replica::new(key, role);
    let listen = SocketAddr::from((settings.this, settings.replication_port));
    let listener = TcpListener::bind(listen).map_err(|e| {
        DaemonError::Ha(format!(
            "cannot serve the pair's replication on {listen}: {e} (is 'this' in ha.toml this droplet's private address?)"
        ))
    })?;
    replica.serve(listener);
    let to_loop = events.clone();
    replica.follow(
        SocketAddr::from((settings.peer, settings.replication_port)),
        move |snapshot| {
            let (reply, answer) = mpsc::channel();
            to_loop
                .send(Event::Pair(PairEvent::Snapshot(Box::new(snapshot), reply)))
                .map_err(|_| "the daemon is stopping".to_string())?;
            answer
                .recv()
                .unwrap_or_else(|_| Err("the daemon is stopping".into()))
        },
    );
    info!(%role, peer = %settings.peer, reserved_ip = %settings.reserved_ip, "one of a pair");
    Ok(Some(Pair {
        settings,
        replica,
        role,
        holding: Holding::Unknown,
        events: events.clone(),
        offered: None,
        next_holder_check: Instant::now(),
        next_claim: None,
        asking: false,
    }))
}

impl Pair {
    pub fn role(&self) -> HaRole {
        self.role
    }

    pub fn view(&self) -> HaView {
        HaView {
            role: self.role,
            reserved_ip: self.settings.reserved_ip,
            droplet_id: self.settings.droplet_id,
            holding: self.holding.clone(),
            peer_address: self.settings.peer,
            peer: self.replica.peer(),
        }
    }

    /// The provider's client, from the token file as it is now (a fixed token is used at once).
    fn provider(&self) -> Result<Arc<dyn Provider>, ProviderError> {
        let token = Token::read(&self.settings.token_file)?;
        Ok(Arc::new(DigitalOcean::new(&self.settings.api, token)))
    }

    /// On a thread: claims the reserved IP (one that is already ours counts as claimed).
    fn spawn_claim(&mut self) {
        self.asking = true;
        self.next_claim = None;
        self.holding = Holding::Claiming {
            since_ms: unix_ms(),
        };
        let (ip, droplet) = (self.settings.reserved_ip, self.settings.droplet_id);
        let provider = self.provider();
        let events = self.events.clone();
        std::thread::spawn(move || {
            let result = provider.and_then(|p| match p.claim(ip, droplet) {
                // Assigning an IP to the droplet that has it is refused: it is ours.
                Err(ProviderError::Refused { .. }) if p.holder(ip) == Ok(Some(droplet)) => {
                    Ok(Claimed {
                        took: Duration::ZERO,
                        retries: 0,
                    })
                }
                other => other,
            });
            let _ = events.send(Event::Pair(PairEvent::Claimed(result)));
        });
    }

    fn spawn_holder_check(&mut self) {
        self.asking = true;
        self.next_holder_check = Instant::now() + HOLDER_CHECK;
        let ip = self.settings.reserved_ip;
        let provider = self.provider();
        let events = self.events.clone();
        std::thread::spawn(move || {
            let result = provider.and_then(|p| p.holder(ip));
            let _ = events.send(Event::Pair(PairEvent::Holder(result)));
        });
    }
}

impl Daemon {
    /// keepalived's word, from `roamgw ha notify`.
    pub(super) fn set_role(&mut self, role: HaRole) -> Result<String, ChangeError> {
        let Some(pair) = &mut self.pair else {
            return Err(ChangeError::new(Fault::Input, ha::NOT_PAIRED));
        };
        if let Err(e) = ha::save_role(&self.store, role) {
            warn!("the role is not saved, a restart will start as the standby: {e}");
        }
        if pair.role == role {
            return Ok(format!("already {role}"));
        }
        pair.role = role;
        self.offered_role_changed();
        match role {
            HaRole::Active => {
                info!("keepalived made this droplet active: claiming the reserved IP");
                if let Some(pair) = &mut self.pair {
                    pair.spawn_claim();
                }
                Ok("active: claiming the reserved IP".into())
            }
            HaRole::Standby => {
                info!("keepalived made this droplet the standby: quiet");
                if let Some(pair) = &mut self.pair {
                    pair.holding = Holding::Unknown;
                }
                self.engine.go_quiet()?;
                Ok("standby: quiet".into())
            }
        }
    }

    /// One of a pair starts quiet whatever its saved role: an active one wakes once the
    /// provider confirms the reserved IP is still its own (a droplet revived after a failover
    /// must not handshake as if it led).
    pub(super) fn pair_before_bring_up(&mut self) -> Result<(), ChangeError> {
        if self.pair.is_some() {
            self.engine.go_quiet()?;
        }
        Ok(())
    }

    pub(super) fn pair_event(&mut self, event: PairEvent) {
        let Some(pair) = &mut self.pair else { return };
        match event {
            PairEvent::Claimed(result) => {
                pair.asking = false;
                if pair.role != HaRole::Active {
                    return;
                }
                match result {
                    Ok(claimed) => {
                        info!(
                            retries = claimed.retries,
                            "the provider moved the reserved IP here"
                        );
                        self.hold(claimed.took);
                    }
                    Err(e) => {
                        error!("cannot claim the reserved IP: {e}");
                        pair.holding = Holding::Failed {
                            error: e.to_string(),
                            at_ms: unix_ms(),
                        };
                        pair.next_claim = Some(Instant::now() + CLAIM_RETRY);
                    }
                }
            }
            PairEvent::Holder(result) => {
                pair.asking = false;
                let ours = pair.settings.droplet_id;
                match result {
                    Ok(holder) if holder == Some(ours) => {
                        if pair.role == HaRole::Active
                            && !matches!(pair.holding, Holding::Held { .. })
                        {
                            self.hold(Duration::ZERO);
                        }
                    }
                    Ok(holder) if pair.role == HaRole::Active => {
                        let who = holder.map_or("no droplet".into(), |h| format!("droplet {h}"));
                        error!("the reserved IP is on {who}, not here: quiet until the peer is the standby");
                        if !matches!(pair.holding, Holding::Lost { .. }) {
                            pair.holding = Holding::Lost {
                                holder,
                                since_ms: unix_ms(),
                            };
                        }
                        if let Err(e) = self.engine.go_quiet() {
                            error!("cannot quiet the device: {e}");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => warn!("cannot ask the provider who holds the reserved IP: {e}"),
                }
            }
            PairEvent::Snapshot(snapshot, reply) => {
                let _ = reply.send(self.take_snapshot(*snapshot));
            }
        }
    }

    /// The reserved IP is ours (the provider moved it in `took`): handshakes start to the
    /// remembered endpoints.
    fn hold(&mut self, took: Duration) {
        let took_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        info!(
            took_ms,
            "the reserved IP is ours: starting handshakes to the remembered endpoints"
        );
        if let Some(pair) = &mut self.pair {
            pair.holding = Holding::Held { took_ms };
            pair.next_holder_check = Instant::now() + HOLDER_CHECK;
        }
        let endpoints = &self.endpoints;
        if let Err(e) = self.engine.wake(&|key| endpoints.endpoint(key)) {
            error!("cannot wake the device: {e}");
        }
    }

    /// The timers: a failed claim again, the holder check, and a lost IP claimed again once
    /// the peer says it is the standby. Offers the gateway to the peer when it changed.
    pub(super) fn pair_tick(&mut self) {
        let now = Instant::now();
        self.offer();
        let Some(pair) = &mut self.pair else { return };
        if pair.role != HaRole::Active || pair.asking {
            return;
        }
        match &pair.holding {
            Holding::Failed { .. } if pair.next_claim.is_some_and(|at| now >= at) => {
                pair.spawn_claim()
            }
            // The peer's word must be newer than the loss: an answer from before a cut
            // between the droplets says nothing of the peer now.
            Holding::Lost { since_ms, .. }
                if pair.replica.peer().role == Some(HaRole::Standby)
                    && pair.replica.peer().answered_ms > Some(*since_ms) =>
            {
                info!("the peer is the standby now: claiming the reserved IP again");
                pair.spawn_claim();
            }
            Holding::Held { .. } | Holding::Lost { .. } if now >= pair.next_holder_check => {
                pair.spawn_holder_check()
            }
            // A daemon that starts as the active asks before it claims: the IP may have
            // moved while it was down.
            Holding::Unknown if now >= pair.next_holder_check => pair.spawn_holder_check(),
            _ => {}
        }
    }

    /// Changes are refused on the standby: they would fork the pair's gateway.
    pub(super) fn refuse_on_standby(&self) -> Result<(), ChangeError> {
        match &self.pair {
            Some(pair) if pair.role == HaRole::Standby => Err(ChangeError::new(
                Fault::Input,
                ha::standby_refusal(pair.settings.peer),
            )),
            _ => Ok(()),
        }
    }

    fn offered_role_changed(&mut self) {
        if let Some(pair) = &mut self.pair {
            pair.offered = None;
        }
        self.offer();
    }

    /// Offers this droplet's gateway to the peer (active) or just its role (standby).
    fn offer(&mut self) {
        let Some(pair) = &mut self.pair else { return };
        if pair.role != HaRole::Active {
            pair.replica.publish(pair.role, None);
            return;
        }
        let state = self.engine.shared_state();
        let unchanged = pair
            .offered
            .as_ref()
            .is_some_and(|(s, e)| Arc::ptr_eq(s, &state) && *e == self.endpoints);
        if unchanged {
            return;
        }
        match snapshot_of(&self.store, &self.endpoints) {
            Ok(snapshot) => {
                pair.replica.publish(HaRole::Active, Some(snapshot));
                pair.offered = Some((state, self.endpoints.clone()));
            }
            Err(e) => warn!("cannot offer the gateway to the peer: {e}"),
        }
    }

    /// The active's gateway made this droplet's: key files first (the engine reads them),
    /// then the state through the engine, then the endpoints. On a failure the key files are
    /// put back and nothing else changed.
    fn take_snapshot(&mut self, snapshot: Snapshot) -> Result<(), String> {
        if self.pair.as_ref().map(Pair::role) != Some(HaRole::Standby) {
            return Err("this droplet is active: it keeps its own gateway".into());
        }
        let active = GatewayState::from_toml(&snapshot.state)
            .map_err(|e| format!("the active's gateway.toml: {e}"))?;
        let endpoints: Endpoints = serde_json::from_str(&snapshot.endpoints)
            .map_err(|e| format!("the active's endpoints: {e}"))?;
        let keys_dir = self.store.keys_dir();
        let before = read_keys(&keys_dir).map_err(|e| e.to_string())?;
        write_keys(&keys_dir, &snapshot.keys).map_err(|e| e.to_string())?;
        let change = StateChange::Adopt {
            active: Box::new(active),
        };
        if let Err(e) = self.apply(&change) {
            if let Err(undo) = write_keys(&keys_dir, &before) {
                error!("cannot put the key files back: {undo}");
            }
            return Err(e.to_string());
        }
        for stale in before
            .keys()
            .filter(|name| !snapshot.keys.contains_key(*name))
        {
            let _ = std::fs::remove_file(keys_dir.join(stale));
        }
        if let Err(e) = endpoints.save(&self.endpoints_path) {
            warn!("cannot save the active's endpoints: {e}");
        }
        self.endpoints = endpoints;
        Ok(())
    }
}

/// The files of `keys/`, by name.
fn read_keys(dir: &Path) -> std::io::Result<BTreeMap<String, Zeroizing<String>>> {
    let mut keys = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_file() && is_key_file_name(&name) {
            keys.insert(name, Zeroizing::new(std::fs::read_to_string(entry.path())?));
        }
    }
    Ok(keys)
}

/// Only names `roamgw` gives its key files: a snapshot cannot write anywhere else.
fn is_key_file_name(name: &str) -> bool {
    !name.starts_with('.')
        && (name.ends_with(".key") || name.ends_with(".psk"))
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn write_keys(dir: &Path, keys: &BTreeMap<String, Zeroizing<String>>) -> Result<(), String> {
    for (name, contents) in keys {
        if !is_key_file_name(name) {
            return Err(format!("the active sent a key file named {name:?}"));
        }
        let path = dir.join(name);
        let same = std::fs::read_to_string(&path).is_ok_and(|have| *have == **contents);
        if !same {
            fsutil::write_private(&path, contents.as_bytes()).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn snapshot_of(store: &Store, endpoints: &Endpoints) -> Result<Snapshot, String> {
    let state = fsutil::read_to_string(&store.state_path()).map_err(|e| e.to_string())?;
    let keys = read_keys(&store.keys_dir()).map_err(|e| e.to_string())?;
    let endpoints = serde_json::to_string(endpoints).map_err(|e| e.to_string())?;
    Ok(Snapshot {
        state,
        keys,
        endpoints,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_key_file_names_are_written() {
        assert!(is_key_file_name("gateway.key"));
        assert!(is_key_file_name("laptop-2.psk"));
        for bad in [
            "../gateway.toml",
            ".gateway.key.tmp.1",
            "gateway.toml",
            "a/b.key",
        ] {
            assert!(!is_key_file_name(bad), "{bad}");
        }
    }
}
