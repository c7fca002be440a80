//! The data plane: what makes the floating IP's ports reach the roamers, in one place. One
//! trait, one implementation per backend, chosen once from the state ([`of`]):
//! - [`nftables`]: our own table `inet roamgw` (model → observed → pure plan → one transaction);
//!   `add-port 22` becomes map elements in [`NftPlane::apply_change`];
//! - [`firewalld`]: firewalld's zone, ipsets and policies over D-Bus; `add-port 22` becomes an
//!   entry of the roamer's ipset in [`FirewalldPlane::apply_change`].
//!
//! Around them, what both need: IP forwarding, the open flows of changed forwards
//! ([`conntrack`]), and `down`, which removes whatever of ours exists, whichever backend the
//! state names.

pub mod conntrack;
pub mod firewalld;
pub mod nftables;

use roamgw_common::state::GatewayState;
use tracing::{info, warn};

use self::firewalld::{Difference, FirewalldError};
use self::nftables::diff::Plan;
use self::nftables::exec::NftError;
use self::nftables::observed;
use roamgw_common::state::Forward;

pub use self::firewalld::FirewalldPlane;
pub use self::nftables::NftPlane;

#[derive(Debug, thiserror::Error)]
pub enum DataPlaneError {
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error(transparent)]
    Parse(#[from] observed::ParseError),
    #[error(transparent)]
    Firewalld(#[from] FirewalldError),
    #[error(transparent)]
    Counting(#[from] crate::dataplane::nftables::counting::CountingError),
    #[error("cannot enable IP forwarding ({0}): run as root")]
    Forwarding(std::io::Error),
}

/// The forwards a change removed and added: the caller knows, so nothing has to compare
/// thousands of forwards to find out.
#[derive(Debug, Clone, Default)]
pub struct ForwardChange {
    pub removed: Vec<Forward>,
    pub added: Vec<Forward>,
    /// An address forwards no longer answer on (`roamgw forward6 --off`, or another one):
    /// every flow to it ends.
    pub retired: Option<std::net::IpAddr>,
}

impl ForwardChange {
    /// From `before` to `after` when the caller does not know (a whole state taken over).
    pub fn between(before: &[Forward], after: &[Forward]) -> ForwardChange {
        let had: std::collections::HashSet<&Forward> = before.iter().collect();
        let has: std::collections::HashSet<&Forward> = after.iter().collect();
        ForwardChange {
            removed: before
                .iter()
                .filter(|f| !has.contains(f))
                .cloned()
                .collect(),
            added: after.iter().filter(|f| !had.contains(f)).cloned().collect(),
            retired: None,
        }
    }
}

/// What an apply did (or, dry, would do), per backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Nft(Plan),
    Firewalld(Vec<Difference>),
}

impl Applied {
    pub fn is_nothing(&self) -> bool {
        match self {
            Applied::Nft(plan) => *plan == Plan::Nothing,
            Applied::Firewalld(differences) => differences.is_empty(),
        }
    }
}

impl std::fmt::Display for Applied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Applied::Nft(plan) => plan.fmt(f),
            Applied::Firewalld(differences) => {
                f.write_str(&crate::dataplane::firewalld::summary(differences))
            }
        }
    }
}

/// The firewall plane as `status` shows it, when it is up.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// What differs from the state; `None` when in sync.
    pub drift: Option<String>,
    /// Per forward (by its key); `None` when the counters cannot be read.
    pub counters: Option<Counters>,
    /// Handshake initiations the kernel dropped as over their source's share (nftables
    /// backend only).
    pub handshakes_dropped: Option<u64>,
}

pub type Result<T> = std::result::Result<T, DataPlaneError>;

/// One firewall backend. Every method reads what is there, plans the difference and applies
/// it; none touches anything that is not roamgw's.
pub trait Backend {
    /// Brings the plane to `state` (`up`, the daemon's start and every repair).
    fn up(&self, state: &GatewayState) -> Result<Applied>;
    /// A CLI change, made live when the plane is up, in time independent of the number of
    /// forwards where the backend allows. `Ok(None)`: not up, nothing applied.
    fn apply_change(
        &self,
        old: &GatewayState,
        new: &GatewayState,
        change: &ForwardChange,
    ) -> Result<Option<Applied>>;
    /// Brings the plane to `state` when it is up. `Ok(None)`: not up, nothing applied.
    fn apply_if_up(&self, state: &GatewayState) -> Result<Option<Applied>>;
    /// What [`Backend::up`] would do, without doing it.
    fn dry_run(&self, state: &GatewayState) -> Result<Applied>;
    /// The exact configuration `up` would write, as text (`roamgw rules`).
    fn rules_text(&self, state: &GatewayState) -> Result<String>;
    /// `None` when not up.
    fn view(&self, state: &GatewayState) -> Result<Option<View>>;
    /// Per-forward counters alone (cheaper than a view), when up and the backend counts.
    fn counters(&self, state: &GatewayState) -> Option<Counters>;
    /// Ends the open flows of the forwards a change removed (see [`end_changed_flows`]).
    fn end_flows(&self, new: &GatewayState, change: &ForwardChange) {
        end_changed_flows(new, change);
    }
    /// Removes whatever of ours is up, whichever backend made it (see [`down`]).
    fn down(&self, purge: bool) -> Result<bool> {
        down(purge)
    }
}

/// Packets and bytes per forward, by its key.
pub type Counters = std::collections::BTreeMap<String, ForwardCounters>;

/// A forward's traffic, the way in and the way back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwardCounters {
    pub incoming: observed::CounterValue,
    pub back: observed::CounterValue,
}

impl ForwardCounters {
    pub fn total(&self) -> observed::CounterValue {
        observed::CounterValue {
            packets: self.incoming.packets + self.back.packets,
            bytes: self.incoming.bytes + self.back.bytes,
        }
    }

    /// A client tried again and nothing ever came back. For TCP that is never normal: a
    /// client sends its SYN again after 1 s, and even a closed port answers with a reset, so
    /// two packets in and none back means the replies do not reach the gateway. (A UDP
    /// service may rightly never answer: callers judge TCP forwards only.)
    pub fn unanswered(&self) -> bool {
        self.incoming.packets >= 2 && self.back.packets == 0
    }
}

/// The backend the state asks for.
pub fn of(state: &GatewayState) -> Box<dyn Backend> {
    match state.gateway.backend {
        roamgw_common::state::Backend::Nftables => Box::new(NftPlane),
        roamgw_common::state::Backend::Firewalld => Box::new(FirewalldPlane),
    }
}

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
/// IPv6 forwarding, on only for forwards over IPv6: with it on, the kernel ignores router
/// advertisements (unless accept_ra=2), which droplets configured statically do not use.
const IPV6_FORWARDING: &str = "/proc/sys/net/ipv6/conf/all/forwarding";

pub(crate) fn enable_forwarding(state: &GatewayState) -> Result<()> {
    let ipv6 = state.gateway.forward6.map(|_| IPV6_FORWARDING);
    for path in std::iter::once(IP_FORWARD).chain(ipv6) {
        let current = std::fs::read_to_string(path).map_err(DataPlaneError::Forwarding)?;
        if current.trim() != "1" {
            std::fs::write(path, "1\n").map_err(DataPlaneError::Forwarding)?;
            info!(
                "enabled {} (was {}): forwards need it",
                path.trim_start_matches("/proc/sys/").replace('/', "."),
                current.trim()
            );
        }
    }
    Ok(())
}

pub fn interface_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// What every backend's `up` does first: forwarding on, and a word when the interface the
/// forwards need is missing.
pub(crate) fn prepare(state: &GatewayState) -> Result<()> {
    enable_forwarding(state)?;
    let interface = state.gateway.interface.as_str();
    if !interface_exists(interface) {
        warn!(
            interface,
            "WireGuard interface is not present: forwards need it (e.g. `wg-quick up {interface}` with the file from `roamgw show-config --gateway --format wg-quick`)"
        );
    }
    Ok(())
}

/// `roamgw down`: our table removed, our firewalld policies emptied (with `purge`, removed
/// with our zone); nothing else touched. Returns whether anything of ours was up.
pub fn down(purge: bool) -> Result<bool> {
    let table = nftables::down()?;
    let firewalld = firewalld::down(purge)?;
    Ok(table || firewalld)
}

/// Ends the open flows of forwards that were removed or changed, and clears stale entries for
/// new ones.
///
/// Stale entries for a new forward's tuple (e.g. a UDP flow the droplet itself answered) can
/// only exist with --anchor-passthrough: otherwise our input chain drops such packets before
/// conntrack confirms them, so no entry is ever created. Skipping the flush then matters: a
/// conntrack dump walks the kernel's whole (all-namespace) table, ~12 ms here, more than the
/// rest of an add-port together.
pub fn end_changed_flows(new: &GatewayState, change: &ForwardChange) {
    let addresses = new.gateway.forward_addresses();
    let stale_possible = new.gateway.anchor_passthrough;
    let added = change.added.iter().filter(|_| stale_possible);
    for forward in change.removed.iter().chain(added) {
        for address in &addresses {
            if let Err(e) = conntrack::flush_forward(*address, &forward.spec) {
                warn!(forward = %forward.spec, "{e}");
            }
        }
    }
    if let Some(address) = change.retired {
        if let Err(e) = conntrack::flush_address(address) {
            warn!(%address, "{e}");
        }
    }
}
