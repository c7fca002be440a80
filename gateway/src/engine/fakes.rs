//! A fake backend, device, link and files for the engine, shared with the test through a
//! [`World`]: what the daemon and the engine do is tested without root.

use std::sync::{Arc, Mutex};

use roamgw_common::state::{GatewayState, WireguardMode};
use roamgw_common::{PresharedKey, PrivateKey, RoamerName};
use roamgw_wg::{DeviceStatus, PeerStatus, SetOp, SetRequest, WgDevice};

use super::*;
use crate::dataplane::nftables::diff::Plan;
use crate::dataplane::{Applied, Counters, View};

/// What the fakes saw and how they behave, shared with the test.
#[derive(Default)]
pub struct World {
    /// The forwards (keys) the backend was last brought to; `None`: the plane is not up.
    pub plane: Option<Vec<String>>,
    pub refuse_plane_changes: bool,
    pub plane_calls: Vec<&'static str>,
    pub flows_ended: usize,
    pub device: DeviceStatus,
    /// The device refuses one `set` after this many more succeed.
    pub device_sets_left: Option<usize>,
    pub identity_sets: usize,
    /// What was saved last.
    pub saved: Option<GatewayState>,
    pub refuse_saves: bool,
    pub link_exists: bool,
    pub link_configured: bool,
    pub devices_opened: usize,
    pub poked: Vec<std::net::Ipv4Addr>,
}

pub type Shared = Arc<Mutex<World>>;

pub fn with<T>(world: &Shared, f: impl FnOnce(&mut World) -> T) -> T {
    f(&mut world.lock().expect("world"))
}

pub fn forward_keys(state: &GatewayState) -> Vec<String> {
    state.forwards.iter().map(|f| f.key()).collect()
}

struct FakePlane(Shared);

impl FakePlane {
    fn bring(
        &self,
        call: &'static str,
        state: &GatewayState,
        only_if_up: bool,
    ) -> Result<Option<Applied>, crate::dataplane::DataPlaneError> {
        with(&self.0, |w| {
            w.plane_calls.push(call);
            if only_if_up && w.plane.is_none() {
                return Ok(None);
            }
            let want = forward_keys(state);
            let plan = if w.plane.as_ref() == Some(&want) {
                Plan::Nothing
            } else {
                Plan::Replace {
                    reasons: vec!["fake".into()],
                }
            };
            w.plane = Some(want);
            Ok(Some(Applied::Nft(plan)))
        })
    }
}

impl Backend for FakePlane {
    fn up(&self, state: &GatewayState) -> crate::dataplane::Result<Applied> {
        Ok(self
            .bring("up", state, false)?
            .unwrap_or(Applied::Nft(Plan::Nothing)))
    }

    fn apply_change(
        &self,
        _old: &GatewayState,
        new: &GatewayState,
        _change: &ForwardChange,
    ) -> crate::dataplane::Result<Option<Applied>> {
        if with(&self.0, |w| w.refuse_plane_changes && w.plane.is_some()) {
            with(&self.0, |w| w.plane_calls.push("apply_change refused"));
            return Err(crate::dataplane::DataPlaneError::Forwarding(
                std::io::Error::other("the kernel said no"),
            ));
        }
        self.bring("apply_change", new, true)
    }

    fn apply_if_up(&self, state: &GatewayState) -> crate::dataplane::Result<Option<Applied>> {
        self.bring("apply_if_up", state, true)
    }

    fn dry_run(&self, _: &GatewayState) -> crate::dataplane::Result<Applied> {
        Ok(Applied::Nft(Plan::Nothing))
    }

    fn rules_text(&self, _: &GatewayState) -> crate::dataplane::Result<String> {
        Ok(String::new())
    }

    fn view(&self, _: &GatewayState) -> crate::dataplane::Result<Option<View>> {
        Ok(None)
    }

    fn counters(&self, _: &GatewayState) -> Option<Counters> {
        None
    }

    fn end_flows(&self, _: &GatewayState, change: &ForwardChange) {
        with(&self.0, |w| {
            w.flows_ended += change.removed.len() + change.added.len()
        });
    }

    fn down(&self, _: bool) -> crate::dataplane::Result<bool> {
        Ok(with(&self.0, |w| w.plane.take().is_some()))
    }
}

struct FakeDevice(Shared);

impl WgDevice for FakeDevice {
    fn name(&self) -> &str {
        "fake0"
    }

    fn status(&self) -> Result<DeviceStatus, roamgw_wg::DeviceError> {
        Ok(with(&self.0, |w| w.device.clone()))
    }

    fn set(&self, request: &SetRequest) -> Result<(), roamgw_wg::DeviceError> {
        with(&self.0, |w| {
            if let Some(left) = &mut w.device_sets_left {
                if *left == 0 {
                    w.device_sets_left = None;
                    return Err(roamgw_wg::DeviceError::Userspace("device froze".into()));
                }
                *left -= 1;
            }
            for op in request.ops() {
                match op {
                    SetOp::PrivateKey(_) => w.identity_sets += 1,
                    SetOp::ListenPort(port) => w.device.listen_port = *port,
                    SetOp::RemovePeer(key) => w.device.peers.retain(|p| p.public_key != *key),
                    SetOp::Peer(peer) => {
                        w.device.peers.retain(|p| p.public_key != peer.public_key);
                        w.device.peers.push(PeerStatus {
                            public_key: peer.public_key,
                            has_preshared_key: peer.preshared_key.is_some(),
                            endpoint: peer.endpoint,
                            allowed_ips: peer.allowed_ips.clone(),
                            persistent_keepalive: peer.persistent_keepalive,
                            last_handshake: None,
                            rx_bytes: 0,
                            tx_bytes: 0,
                        });
                    }
                }
            }
            Ok(())
        })
    }
}

struct FakeLink(Shared);

impl Link for FakeLink {
    fn open(&self, _: &GatewayState) -> Result<Option<Box<dyn WgDevice>>, DeviceError> {
        with(&self.0, |w| {
            w.devices_opened += 1;
            w.link_exists = true;
            w.link_configured = false;
            w.device = DeviceStatus::default();
        });
        Ok(Some(Box::new(FakeDevice(self.0.clone()))))
    }

    fn exists(&self, _: &str) -> bool {
        with(&self.0, |w| w.link_exists)
    }

    fn configure(&self, _: &GatewayState) -> Result<(), DeviceError> {
        with(&self.0, |w| w.link_configured = true);
        Ok(())
    }

    fn is_configured(&self, _: &GatewayState) -> bool {
        with(&self.0, |w| w.link_configured)
    }

    fn poke(&self, roamers: &[std::net::Ipv4Addr]) -> std::io::Result<()> {
        with(&self.0, |w| w.poked.extend_from_slice(roamers));
        Ok(())
    }
}

/// Fresh keys: the engine reads each roamer's PSK once.
struct FakeFiles(Shared, PrivateKey);

impl Persist for FakeFiles {
    fn save(&self, state: &GatewayState) -> Result<(), StoreError> {
        with(&self.0, |w| {
            if w.refuse_saves {
                return Err(StoreError::Fs(roamgw_common::fsutil::FsError::new(
                    "cannot write",
                    std::path::Path::new("/fake/gateway.toml"),
                    std::io::ErrorKind::StorageFull.into(),
                )));
            }
            w.saved = Some(state.clone());
            Ok(())
        })
    }

    fn gateway_private_key(&self, _: &GatewayState) -> Result<PrivateKey, StoreError> {
        Ok(self.1.clone())
    }

    fn roamer_psk(&self, _: &RoamerName) -> Result<PresharedKey, StoreError> {
        Ok(PresharedKey::generate().expect("psk"))
    }
}

pub fn fixture() -> GatewayState {
    GatewayState::from_toml(include_str!(
        "../../../tests/fixtures/valid-state/gateway.toml"
    ))
    .expect("fixture state")
}

pub fn engine(role: Role, world: &Shared) -> Engine {
    let key = PrivateKey::generate().expect("key");
    let mut state = fixture();
    state.gateway.public_key = key.public_key();
    state.gateway.wireguard = WireguardMode::Userspace;
    Engine::new(
        state,
        role,
        Box::new(FakeFiles(world.clone(), key)),
        Box::new(FakePlane(world.clone())),
        Box::new(FakeLink(world.clone())),
    )
}

/// `add-port SPEC` to the default roamer, as a change.
pub fn add_port(spec: &str) -> StateChange {
    StateChange::AddPort {
        spec: spec.parse().expect("spec"),
        to: None,
        allow_from: Vec::new(),
        client_ip: None,
    }
}
