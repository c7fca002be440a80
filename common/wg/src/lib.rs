//! roamgw's WireGuard engine: devices behind one trait, the peer plan that is safe for all of
//! them, and the interfaces and routes around them over rtnetlink. The plain types it works on
//! (keys, names, state) live in `roamgw-common`, which has no networking dependencies.
//!
//! - [`userspace`]: boringtun's protocol core (`noise::Tunn`) in our own batched I/O loop on a
//!   TUN device, configured in-process.
//! - [`kernel`]: kernel WireGuard over netlink (defguard_wireguard_rs).
//! - [`model`]: what every device reports and what a `set` changes (one model for all).
//! - [`uapi`]: the cross-platform text protocol of that model, also used to talk to wireguard-go.
//! - [`socket`]: a device reached through its UAPI socket (wireguard-go, or `wg show`'s view
//!   of ours).
//! - [`netlink`]: interfaces, addresses and network-change events over rtnetlink.

pub mod kernel;
pub mod model;
pub mod netlink;
pub mod nftwatch;
pub mod socket;
pub mod tcp;
pub mod uapi;
pub mod userspace;

pub use model::{
    DeviceError, DeviceStatus, HandshakeDefence, PeerConfig, PeerStatus, SetOp, SetRequest,
};
use roamgw_common::keys::PrivateKey;

/// Which WireGuard runs an interface we create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preference {
    /// Kernel WireGuard when the kernel has it, else userspace.
    Auto,
    Kernel,
    /// boringtun, embedded.
    Userspace,
}

/// Which of the host's addresses a userspace device sends from (kernel WireGuard always
/// answers from the address it was reached on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplySource {
    /// The address each peer last reached us on: a server with several addresses (the
    /// gateway: its public IP, and the anchor the floating IP arrives on). `first`: the
    /// address for a peer that has not reached us yet (a configured endpoint: the gateway's
    /// handshakes after a restart or a failover leave from the anchor when roamers dial the
    /// floating IP, or the laptop's NAT drops them). Kernel WireGuard uses the route's choice.
    Arrival { first: Option<std::net::IpAddr> },
    /// Whichever the route picks: a laptop, whose addresses come and go with its networks.
    Route,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Kernel(#[from] kernel::KernelError),
    #[error(transparent)]
    Userspace(#[from] userspace::UserspaceError),
}

/// Creates the interface `name` with the WireGuard `preference` asks for. A kernel interface of
/// that name that already exists is taken over (one a killed process left behind); the caller
/// decides beforehand whether an existing interface may be ours.
pub fn create_device(
    name: &str,
    preference: Preference,
    source: ReplySource,
) -> Result<Box<dyn WgDevice>, CreateError> {
    if preference != Preference::Userspace {
        match kernel::KernelDevice::create(name) {
            Ok(device) => {
                tracing::info!(interface = name, "kernel WireGuard");
                return Ok(Box::new(device));
            }
            Err(kernel::KernelError::Unavailable { message, .. })
                if preference == Preference::Auto =>
            {
                tracing::info!(
                    interface = name,
                    "no kernel WireGuard ({message}): embedded userspace WireGuard"
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    let device = userspace::UserspaceDevice::create(name, source)?;
    if preference == Preference::Userspace {
        tracing::info!(interface = name, "embedded userspace WireGuard");
    }
    Ok(Box::new(device))
}

/// Whether this machine's kernel has WireGuard: the module loaded, or loadable.
pub fn kernel_available() -> bool {
    std::path::Path::new("/sys/module/wireguard").exists()
        || std::process::Command::new("modprobe")
            .args(["-n", "-q", "wireguard"])
            .status()
            .is_ok_and(|s| s.success())
}

/// Which WireGuard runs the interface `name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Kernel,
    /// A TUN interface: ours, or wireguard-go's.
    Userspace,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Kernel => "kernel",
            Kind::Userspace => "userspace",
        })
    }
}

/// `None` when there is no such interface or it is neither kind.
pub fn interface_kind(name: &str) -> Option<Kind> {
    let dir = std::path::Path::new("/sys/class/net").join(name);
    let uevent = std::fs::read_to_string(dir.join("uevent")).ok()?;
    if uevent.lines().any(|l| l == "DEVTYPE=wireguard") {
        Some(Kind::Kernel)
    } else if dir.join("tun_flags").exists() {
        Some(Kind::Userspace)
    } else {
        None
    }
}

/// A WireGuard interface another process runs, to read its status: through its UAPI socket
/// (wireguard-go, or the `wg show` socket of our device), or over netlink for the kernel.
pub fn open_existing(name: &str) -> Option<Box<dyn WgDevice>> {
    if let Some(socket) = socket::UapiSocket::find(name) {
        return Some(Box::new(socket));
    }
    match interface_kind(name)? {
        Kind::Kernel => Some(Box::new(kernel::KernelDevice::attach(name)?)),
        Kind::Userspace => None,
    }
}

/// A running WireGuard interface roamgw can configure.
pub trait WgDevice: Send + Sync {
    fn name(&self) -> &str;
    fn status(&self) -> Result<DeviceStatus, DeviceError>;
    /// Sends one `set` transaction. Callers go through [`set_identity`] and [`sync_peers`],
    /// which keep to one peer per transaction.
    fn set(&self, request: &SetRequest) -> Result<(), DeviceError>;
    /// Calls `hook` (on a device thread: keep it short) each time a peer's endpoint changes,
    /// so it is recorded at once rather than at the next poll. Only the userspace device can
    /// tell; the others never call it.
    fn on_endpoint_change(&self, hook: EndpointHook) {
        let _ = hook;
    }
}

/// What [`WgDevice::on_endpoint_change`] calls.
pub type EndpointHook = std::sync::Arc<dyn Fn() + Send + Sync>;

/// Private key and listen port.
pub fn set_identity(
    device: &dyn WgDevice,
    key: &PrivateKey,
    listen_port: u16,
) -> Result<(), DeviceError> {
    let mut request = SetRequest::new();
    request.private_key(key).listen_port(listen_port);
    device.set(&request)
}

/// One step of bringing a device's peers to what is desired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerOp {
    Remove(roamgw_common::keys::PublicKey),
    Add(PeerConfig),
    /// Removed and added again (see [`sync_peers`] for why never in place), with the endpoint
    /// the device had learned unless the desired config names one.
    Replace(PeerConfig),
}

/// What [`sync_peers`] did; `failed` holds the ops that did not apply, with why.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PeerSync {
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
    pub failed: Vec<String>,
}

impl PeerSync {
    pub fn is_empty(&self) -> bool {
        *self == PeerSync::default()
    }

    /// For callers that cannot go on with a peer missing: any failed step is the error.
    pub fn all_applied(self) -> Result<PeerSync, DeviceError> {
        if self.failed.is_empty() {
            Ok(self)
        } else {
            Err(DeviceError::Userspace(format!(
                "peers not applied: {}",
                self.failed.join("; ")
            )))
        }
    }
}

impl std::fmt::Display for PeerSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "peers: +{} ~{} -{}",
            self.added, self.changed, self.removed
        )?;
        if !self.failed.is_empty() {
            write!(f, "; failed: {}", self.failed.join("; "))?;
        }
        Ok(())
    }
}

fn same_config(current: &PeerStatus, desired: &PeerConfig) -> bool {
    let mut have = current.allowed_ips.clone();
    let mut want = desired.allowed_ips.clone();
    have.sort();
    want.sort();
    have == want
        && current.persistent_keepalive == desired.persistent_keepalive
        && current.has_preshared_key == desired.preshared_key.is_some()
}

/// The steps from `current` to `desired`, removals first; unchanged peers get none, so their
/// sessions go on. Pure: the table tests below are its specification.
pub fn plan_peers(current: &DeviceStatus, desired: &[PeerConfig]) -> Vec<PeerOp> {
    let removals = current
        .peers
        .iter()
        .filter(|peer| !desired.iter().any(|d| d.public_key == peer.public_key))
        .map(|peer| PeerOp::Remove(peer.public_key));
    let rest = desired
        .iter()
        .filter_map(|want| match current.peer(&want.public_key) {
            Some(have) if same_config(have, want) => None,
            Some(have) => Some(PeerOp::Replace(PeerConfig {
                endpoint: want.endpoint.or(have.endpoint),
                ..want.clone()
            })),
            None => Some(PeerOp::Add(want.clone())),
        });
    removals.chain(rest).collect()
}

/// Brings the device's peers to `desired` in the one way tested on every device we drive
/// (kernel, wireguard-go, ours). It was forced on us by boringtun 0.7's own device, which we
/// no longer run (docs/decisions.md), and is kept because it is safe everywhere:
/// - one peer per `set` transaction (that device leaked fields of one peer into the next);
/// - a changed peer is removed and added again (that device could panic on a change in place),
///   and re-added with the endpoint it had learned: the gateway never configures endpoints, so
///   without the write-back the roamer would be unreachable until its next keepalive;
/// - unchanged peers are not touched, so their sessions go on.
///
/// A failing step does not stop the others: each is reported in [`PeerSync::failed`]. Only a
/// device that cannot be read at all is an error.
pub fn sync_peers(device: &dyn WgDevice, desired: &[PeerConfig]) -> Result<PeerSync, DeviceError> {
    let current = device.status()?;
    let mut sync = PeerSync::default();
    for op in plan_peers(&current, desired) {
        let (result, counter, key) = match &op {
            PeerOp::Remove(key) => {
                let mut request = SetRequest::new();
                request.remove_peer(key);
                (device.set(&request), &mut sync.removed, *key)
            }
            PeerOp::Add(peer) => {
                let mut request = SetRequest::new();
                request.peer(peer);
                (device.set(&request), &mut sync.added, peer.public_key)
            }
            PeerOp::Replace(peer) => (reset_peer(device, peer), &mut sync.changed, peer.public_key),
        };
        match result {
            Ok(()) => *counter += 1,
            Err(e) => sync.failed.push(format!("{key}: {e}")),
        }
    }
    Ok(sync)
}

/// Removes the peer and adds it again as `peer` says: a fresh session (the next packet starts
/// a handshake) at a possibly new endpoint. Two transactions, never a change in place (see
/// [`sync_peers`]).
pub fn reset_peer(device: &dyn WgDevice, peer: &PeerConfig) -> Result<(), DeviceError> {
    let mut remove = SetRequest::new();
    remove.remove_peer(&peer.public_key);
    device.set(&remove)?;
    let mut add = SetRequest::new();
    add.peer(peer);
    device.set(&add)
}

#[cfg(test)]
mod tests {
    use super::*;
    use roamgw_common::keys::{PresharedKey, PublicKey};

    fn key(n: u8) -> PublicKey {
        PublicKey::from_bytes([n; 32])
    }

    fn want(n: u8, allowed: &str, psk: bool) -> PeerConfig {
        PeerConfig {
            public_key: key(n),
            preshared_key: psk.then(|| {
                "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="
                    .parse::<PresharedKey>()
                    .expect("psk")
            }),
            endpoint: None,
            allowed_ips: vec![allowed.parse().expect("allowed ip")],
            persistent_keepalive: 0,
        }
    }

    fn have(n: u8, allowed: &str, psk: bool, endpoint: Option<&str>) -> PeerStatus {
        PeerStatus {
            public_key: key(n),
            has_preshared_key: psk,
            endpoint: endpoint.map(|e| e.parse().expect("endpoint")),
            allowed_ips: vec![allowed.parse().expect("allowed ip")],
            persistent_keepalive: 0,
            last_handshake: None,
            rx_bytes: 0,
            tx_bytes: 0,
        }
    }

    fn device(peers: Vec<PeerStatus>) -> DeviceStatus {
        DeviceStatus {
            listen_port: 51820,
            fwmark: 0,
            peers,
            defence: None,
        }
    }

    #[test]
    fn plan_table() {
        let learned = "198.51.100.2:40000";
        let with_learned = |mut p: PeerConfig| {
            p.endpoint = Some(learned.parse().expect("endpoint"));
            p
        };
        // (what, the device's peers, the desired peers, the plan)
        type Case = (&'static str, Vec<PeerStatus>, Vec<PeerConfig>, Vec<PeerOp>);
        let cases: Vec<Case> = vec![
            ("nothing to do", vec![], vec![], vec![]),
            (
                "same config: untouched, session goes on",
                vec![have(1, "192.168.32.2/32", true, Some(learned))],
                vec![want(1, "192.168.32.2/32", true)],
                vec![],
            ),
            (
                "new peer added",
                vec![],
                vec![want(1, "192.168.32.2/32", true)],
                vec![PeerOp::Add(want(1, "192.168.32.2/32", true))],
            ),
            (
                "gone peer removed, before anything is added",
                vec![have(2, "192.168.32.3/32", true, None)],
                vec![want(1, "192.168.32.2/32", true)],
                vec![
                    PeerOp::Remove(key(2)),
                    PeerOp::Add(want(1, "192.168.32.2/32", true)),
                ],
            ),
            (
                "changed allowed IPs: replaced with the learned endpoint",
                vec![have(1, "192.168.32.2/32", true, Some(learned))],
                vec![want(1, "192.168.32.9/32", true)],
                vec![PeerOp::Replace(with_learned(want(
                    1,
                    "192.168.32.9/32",
                    true,
                )))],
            ),
            (
                "preshared key added: replaced",
                vec![have(1, "192.168.32.2/32", false, Some(learned))],
                vec![want(1, "192.168.32.2/32", true)],
                vec![PeerOp::Replace(with_learned(want(
                    1,
                    "192.168.32.2/32",
                    true,
                )))],
            ),
        ];
        for (what, current, desired, ops) in cases {
            assert_eq!(plan_peers(&device(current), &desired), ops, "{what}");
        }
    }

    #[test]
    fn a_desired_endpoint_wins_over_the_learned_one() {
        let mut peer = want(1, "192.168.32.9/32", false);
        peer.endpoint = Some("203.0.113.10:51820".parse().expect("endpoint"));
        let ops = plan_peers(
            &device(vec![have(
                1,
                "192.168.32.2/32",
                false,
                Some("198.51.100.2:1"),
            )]),
            std::slice::from_ref(&peer),
        );
        assert_eq!(ops, vec![PeerOp::Replace(peer)]);
    }
}
