//! The engine: the one place where a change to the desired state becomes live.
//!
//! It holds the state, the files it is saved to, the firewall backend and the WireGuard device
//! (all injected, so the code that decides what happens when a change half-fails runs in unit
//! tests with fakes), and offers two operations:
//! - [`Engine::apply`]: pure change → device identity and peers → backend → save → end the
//!   open flows of changed forwards. A failure at any step puts the device and the backend back
//!   to the state it started from ([`Engine::restore`], the one rollback) and saves nothing.
//! - [`Engine::reconcile`]: brings the device, its link and the backend to the state (start,
//!   drift repair, `roamgw apply`).
//!
//! `roamgw run` owns one engine for its life; a CLI command without a daemon builds a
//! short-lived one over the state file; the status page and the control socket hand their
//! changes to the daemon's engine through [`Submit`].

mod error;
#[cfg(test)]
pub(crate) mod fakes;
#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use roamgw_common::state::{GatewayState, WireguardMode};
use roamgw_common::{PresharedKey, PrivateKey, PublicKey, RoamerName};
use roamgw_wg::WgDevice;
use tracing::{debug, warn};

use crate::change::StateChange;
use crate::dataplane::ForwardChange;
use crate::dataplane::{Applied, Backend};
use crate::device::{self, DeviceError, Psks};
use crate::store::{Store, StoreError};

pub use error::{ChangeError, Fault};

/// A device and the peers meant for it.
type DevicePeers<'a> = (&'a dyn WgDevice, Vec<roamgw_wg::PeerConfig>);

/// The files behind the state: the state itself and the keys the device needs.
pub trait Persist {
    fn save(&self, state: &GatewayState) -> Result<(), StoreError>;
    fn gateway_private_key(&self, state: &GatewayState) -> Result<PrivateKey, StoreError>;
    fn roamer_psk(&self, name: &RoamerName) -> Result<PresharedKey, StoreError>;
}

impl Persist for Store {
    fn save(&self, state: &GatewayState) -> Result<(), StoreError> {
        Store::save(self, state)
    }

    fn gateway_private_key(&self, state: &GatewayState) -> Result<PrivateKey, StoreError> {
        Store::gateway_private_key(self, state)
    }

    fn roamer_psk(&self, name: &RoamerName) -> Result<PresharedKey, StoreError> {
        Store::roamer_psk(self, name)
    }
}

/// The interface around the device: creating it, its address and routing, and a datagram
/// that starts a handshake. [`SystemLink`] touches the machine; tests use a fake.
pub trait Link {
    /// A new device as the state asks (`None` for `--wireguard external`).
    fn open(&self, state: &GatewayState) -> Result<Option<Box<dyn WgDevice>>, DeviceError>;
    fn exists(&self, interface: &str) -> bool;
    /// Address, MTU, up, and the anchor gateway's routing.
    fn configure(&self, state: &GatewayState) -> Result<(), DeviceError>;
    fn is_configured(&self, state: &GatewayState) -> bool;
    /// One datagram to each tunnel address: a peer with an endpoint and no session starts a
    /// handshake at once.
    fn poke(&self, roamers: &[Ipv4Addr]) -> std::io::Result<()>;
}

/// The machine's own interfaces, through rtnetlink and the device layer.
pub struct SystemLink;

impl Link for SystemLink {
    fn open(&self, state: &GatewayState) -> Result<Option<Box<dyn WgDevice>>, DeviceError> {
        device::open(state)
    }

    fn exists(&self, interface: &str) -> bool {
        crate::dataplane::interface_exists(interface)
    }

    fn configure(&self, state: &GatewayState) -> Result<(), DeviceError> {
        device::configure_link(state)
    }

    fn is_configured(&self, state: &GatewayState) -> bool {
        device::link_configured(state)
    }

    fn poke(&self, roamers: &[Ipv4Addr]) -> std::io::Result<()> {
        device::poke(roamers)
    }
}

/// Where changes go to the engine that holds the state (the daemon's): the status page and
/// the control socket submit through it.
pub trait Submit: Send + Sync {
    fn submit(&self, change: StateChange) -> Result<Done, ChangeError>;
}

/// What a change that was applied did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// The line for the user.
    pub summary: String,
    /// Live now, or only saved because the data plane is not up (a CLI without a daemon).
    pub live: bool,
}

/// Whether the engine runs the gateway (the daemon: it owns the device and keeps the plane
/// up) or stands in for a CLI command while no daemon runs (no device; a plane that is not up
/// makes a change pending rather than an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Daemon,
    Command,
}

pub struct Engine {
    /// Shared, not copied, with whoever shows it (the status page): a change replaces it.
    state: Arc<GatewayState>,
    role: Role,
    files: Box<dyn Persist>,
    plane: Box<dyn Backend>,
    link: Box<dyn Link>,
    device: Option<Box<dyn WgDevice>>,
    /// The roamers' preshared keys, read once per roamer (a change of forwards reads no file).
    psks: Psks,
    /// The standby of a pair: no peer has an endpoint, so the device sends nothing to any
    /// roamer (a handshake from here would move a laptop behind a full-cone NAT to the wrong
    /// droplet). The remembered endpoints wait for [`Engine::wake`].
    quiet: bool,
    /// Given to every device this engine opens (the daemon records endpoints through it).
    endpoint_hook: Option<roamgw_wg::EndpointHook>,
}

impl Engine {
    pub fn new(
        state: GatewayState,
        role: Role,
        files: Box<dyn Persist>,
        plane: Box<dyn Backend>,
        link: Box<dyn Link>,
    ) -> Self {
        Engine {
            state: Arc::new(state),
            role,
            files,
            plane,
            link,
            device: None,
            psks: Psks::new(),
            quiet: false,
            endpoint_hook: None,
        }
    }

    /// The engine on this machine: the state's files, the backend it names, the system's
    /// interfaces. `Role::Command` for a CLI command while no daemon runs.
    pub fn on_this_machine(store: Store, state: GatewayState, role: Role) -> Self {
        let plane = crate::dataplane::of(&state);
        Engine::new(state, role, Box::new(store), plane, Box::new(SystemLink))
    }

    pub fn state(&self) -> &GatewayState {
        &self.state
    }

    /// Told each time the device sees a roamer's endpoint change, from now on.
    pub fn on_endpoint_change(&mut self, hook: roamgw_wg::EndpointHook) {
        if let Some(device) = &self.device {
            device.on_endpoint_change(hook.clone());
        }
        self.endpoint_hook = Some(hook);
    }

    fn open_device(&mut self) -> Result<(), ChangeError> {
        self.device = self.link.open(&self.state)?;
        if let (Some(device), Some(hook)) = (&self.device, &self.endpoint_hook) {
            device.on_endpoint_change(hook.clone());
        }
        Ok(())
    }

    /// The running state, for readers on other threads; the next change does not alter it.
    pub fn shared_state(&self) -> Arc<GatewayState> {
        Arc::clone(&self.state)
    }

    pub fn device(&self) -> Option<&dyn WgDevice> {
        self.device.as_deref()
    }

    pub fn plane(&self) -> &dyn Backend {
        self.plane.as_ref()
    }

    /// Whether the device and link are ours to run.
    fn owns_device(&self) -> bool {
        self.role == Role::Daemon && self.state.gateway.wireguard != WireguardMode::External
    }

    /// A state read again from disk (SIGHUP): key files may have been replaced too.
    pub fn replace_state(&mut self, state: GatewayState) {
        self.state = Arc::new(state);
        self.psks.clear();
    }

    /// Applies `change`: checked and applied to a copy of the state, made live (identity,
    /// peers, backend), saved, and the open flows of changed forwards ended. On any failure
    /// the device and backend are put back and nothing is saved.
    pub fn apply(&mut self, change: &StateChange) -> Result<Done, ChangeError> {
        // The copy is the rollback's reference; a forward change costs one clone of the state.
        let mut new = GatewayState::clone(&self.state);
        let applied = crate::change::apply(&mut new, change)?;
        let live = match self.make_live(&new, &applied.forwards) {
            Ok(live) => live,
            Err(e) => return Err(self.restore(e)),
        };
        if let Err(e) = self.files.save(&new) {
            return Err(self.restore(e.into()));
        }
        if live {
            self.plane.end_flows(&new, &applied.forwards);
        }
        self.state = Arc::new(new);
        Ok(Done {
            summary: applied.summary,
            live,
        })
    }

    /// Identity, peers and backend to `new`. `Ok(false)`: the backend is not up (a command
    /// then saves the change as pending).
    fn make_live(
        &mut self,
        new: &GatewayState,
        forwards: &ForwardChange,
    ) -> Result<bool, ChangeError> {
        if let Some(device) = &self.device {
            if new.gateway.public_key != self.state.gateway.public_key {
                let key = self.files.gateway_private_key(new)?;
                roamgw_wg::set_identity(device.as_ref(), &key, new.gateway.listen_port)?;
            }
        }
        // A change of forwards leaves the peers alone; the tunnel's IPv6 prefix is in every
        // peer's allowed IPs and on the link.
        let new_prefix = new.gateway.subnet6 != self.state.gateway.subnet6;
        if new_prefix && self.owns_device() {
            self.link.configure(new)?;
        }
        if new.roamers != self.state.roamers || new_prefix {
            // A roamer with a new key has a new PSK too: read again.
            let old = &self.state;
            self.psks.retain(|name, _| {
                new.roamer(name).map(|r| r.public_key) == old.roamer(name).map(|r| r.public_key)
            });
            sync_peers(
                self.device.as_deref(),
                &mut self.psks,
                self.files.as_ref(),
                new,
            )?
            .all_applied()?;
        }
        match self.plane.apply_change(&self.state, new, forwards)? {
            Some(applied) => {
                debug!("{applied}");
                Ok(true)
            }
            None if self.role == Role::Command => Ok(false),
            None => Err(ChangeError::new(
                Fault::DataPlane,
                "the data plane is not up: the daemon puts it back; try again",
            )),
        }
    }

    /// The one rollback: peers and backend back to the running state, then `cause` is
    /// returned. (A rotated gateway key is not set back: its file already holds the new key;
    /// the command that wrote it puts the old file back.)
    fn restore(&mut self, cause: ChangeError) -> ChangeError {
        warn!("change not applied ({cause}); putting back the running state");
        let device = self.device.as_deref();
        match sync_peers(device, &mut self.psks, self.files.as_ref(), &self.state) {
            Ok(sync) if !sync.failed.is_empty() => warn!("could not put every peer back: {sync}"),
            Ok(_) => {}
            Err(e) => warn!("could not put the peers back: {e}"),
        }
        if let Err(e) = self.plane.apply_if_up(&self.state) {
            warn!("could not put the data plane back: {e}");
        }
        cause
    }

    /// Brings the device (created again when gone), its link and the backend to the state.
    /// `remembered` gives a new peer its last known endpoint. Returns what it repaired.
    pub fn reconcile(
        &mut self,
        remembered: &dyn Fn(&PublicKey) -> Option<SocketAddr>,
    ) -> Result<Vec<String>, ChangeError> {
        let mut repaired = Vec::new();
        if self.owns_device() {
            let name = self.state.gateway.interface.to_string();
            if self.device.is_none() || !self.link.exists(&name) {
                // The old device first: its `wg show` socket has the new one's name.
                self.device = None;
                self.open_device()?;
                self.configure_device(remembered)?;
                self.initiate_handshakes();
                repaired.push(format!("interface {name} created again"));
            } else if !self.link.is_configured(&self.state) {
                self.link.configure(&self.state)?;
                repaired.push(format!("address and routing of {name} restored"));
            }
        }
        // A peer that does not apply is reported, not a reason to leave the rules unrepaired.
        let device = self.device.as_deref();
        let peers = sync_peers(device, &mut self.psks, self.files.as_ref(), &self.state)?;
        if !peers.is_empty() {
            repaired.push(peers.to_string());
        }
        let applied: Applied = self.plane.up(&self.state)?;
        if !applied.is_nothing() {
            repaired.push(applied.to_string());
        }
        Ok(repaired)
    }

    /// The daemon's start: the device, its identity, peers (with their remembered endpoints)
    /// and link, then the backend; then handshakes to every remembered endpoint. Returns what
    /// the backend did.
    pub fn bring_up(
        &mut self,
        remembered: &dyn Fn(&PublicKey) -> Option<SocketAddr>,
    ) -> Result<Applied, ChangeError> {
        if self.owns_device() && self.device.is_none() {
            self.open_device()?;
        }
        self.configure_device(remembered)?;
        let applied = self.plane.up(&self.state)?;
        self.initiate_handshakes();
        Ok(applied)
    }

    /// Identity, peers (a peer new to the device gets its remembered endpoint unless the
    /// engine is quiet), link.
    fn configure_device(
        &mut self,
        remembered: &dyn Fn(&PublicKey) -> Option<SocketAddr>,
    ) -> Result<(), ChangeError> {
        let Some(device) = &self.device else {
            return Ok(());
        };
        let key = self.files.gateway_private_key(&self.state)?;
        roamgw_wg::set_identity(device.as_ref(), &key, self.state.gateway.listen_port)?;
        self.remembering_peers(remembered)?;
        self.link.configure(&self.state)?;
        Ok(())
    }

    /// The peers as the state says; one the device has no endpoint for gets its remembered
    /// one, unless the engine is quiet.
    fn remembering_peers(
        &mut self,
        remembered: &dyn Fn(&PublicKey) -> Option<SocketAddr>,
    ) -> Result<(), ChangeError> {
        let quiet = self.quiet;
        let Some((device, peers)) =
            self.with_remembered(&|key| remembered(key).filter(|_| !quiet))?
        else {
            return Ok(());
        };
        let sync =
            roamgw_wg::sync_peers(device, &peers).and_then(roamgw_wg::PeerSync::all_applied)?;
        tracing::info!("{sync}");
        Ok(())
    }

    /// The device and the peers the state wants on it, each one the device has no endpoint
    /// for given its remembered one; `None` without a device.
    fn with_remembered(
        &mut self,
        remembered: &dyn Fn(&PublicKey) -> Option<SocketAddr>,
    ) -> Result<Option<DevicePeers<'_>>, ChangeError> {
        let Some(device) = &self.device else {
            return Ok(None);
        };
        let current = device.status()?;
        refresh_psks(&mut self.psks, &self.state, self.files.as_ref())?;
        let mut peers = device::desired_peers(&self.state, &self.psks);
        for peer in &mut peers {
            let learned = current
                .peer(&peer.public_key)
                .and_then(|have| have.endpoint);
            if learned.is_none() {
                peer.endpoint = remembered(&peer.public_key);
            }
        }
        Ok(Some((device.as_ref(), peers)))
    }

    /// One datagram into the tunnel for every roamer whose peer has an endpoint: with no
    /// session yet, the device starts a handshake to it now.
    pub fn initiate_handshakes(&self) {
        let Some(device) = self.device.as_ref().filter(|_| !self.quiet) else {
            return;
        };
        let Ok(status) = device.status() else {
            return;
        };
        let targets: Vec<_> = self
            .state
            .roamers
            .iter()
            .filter(|r| {
                status
                    .peer(&r.public_key)
                    .is_some_and(|p| p.endpoint.is_some())
            })
            .map(|r| r.address)
            .collect();
        if targets.is_empty() {
            return;
        }
        match self.link.poke(&targets) {
            Ok(()) => tracing::info!(
                roamers = targets.len(),
                "handshakes started to the remembered endpoints"
            ),
            Err(e) => warn!("cannot start handshakes to the remembered endpoints: {e}"),
        }
    }

    /// Becomes the standby's engine: every peer loses its endpoint and session, so the device
    /// sends nothing to any roamer until [`Engine::wake`]. Already quiet: nothing to do (an
    /// active that finds the IP elsewhere hears so again at every check).
    pub fn go_quiet(&mut self) -> Result<(), ChangeError> {
        if std::mem::replace(&mut self.quiet, true) {
            return Ok(());
        }
        let Some(device) = &self.device else {
            return Ok(());
        };
        refresh_psks(&mut self.psks, &self.state, self.files.as_ref())?;
        for peer in device::desired_peers(&self.state, &self.psks) {
            roamgw_wg::reset_peer(device.as_ref(), &peer)?;
        }
        Ok(())
    }

    /// Becomes the active droplet's engine: every peer without an endpoint gets its
    /// remembered one, and handshakes start to all of them (what a restart does), so stock
    /// laptops come back without waiting for their rekey.
    pub fn wake(
        &mut self,
        remembered: &dyn Fn(&PublicKey) -> Option<SocketAddr>,
    ) -> Result<(), ChangeError> {
        self.quiet = false;
        if let Some((device, peers)) = self.with_remembered(remembered)? {
            // The device compares peers without their endpoints: a quiet peer is set anew.
            for peer in peers.iter().filter(|p| p.endpoint.is_some()) {
                roamgw_wg::reset_peer(device, peer)?;
            }
        }
        self.initiate_handshakes();
        Ok(())
    }

    /// The daemon's end: the backend's rules removed, the device dropped (which removes the
    /// TUN interface and its `wg` socket).
    pub fn take_down(&mut self) -> Result<bool, ChangeError> {
        let result = self.plane.down(false);
        self.device = None;
        Ok(result?)
    }
}

/// Reads the PSKs `state` needs and brings the device's peers to it (nothing without a
/// device). Borrows the engine's fields apart, so the running state is not copied.
fn sync_peers(
    device: Option<&dyn WgDevice>,
    psks: &mut Psks,
    files: &dyn Persist,
    state: &GatewayState,
) -> Result<roamgw_wg::PeerSync, ChangeError> {
    let Some(device) = device else {
        return Ok(roamgw_wg::PeerSync::default());
    };
    refresh_psks(psks, state, files)?;
    let peers = device::desired_peers(state, psks);
    Ok(roamgw_wg::sync_peers(device, &peers)?)
}

/// Brings `psks` to the roamers of `state`: reads the key file of a roamer it does not hold
/// yet, forgets roamers that are gone.
fn refresh_psks(
    psks: &mut Psks,
    state: &GatewayState,
    files: &dyn Persist,
) -> Result<(), StoreError> {
    psks.retain(|name, _| state.roamer(name).is_some());
    for roamer in &state.roamers {
        if !psks.contains_key(&roamer.name) {
            psks.insert(roamer.name.clone(), files.roamer_psk(&roamer.name)?);
        }
    }
    Ok(())
}
