//! The data plane on this machine: our nft table, IP forwarding and conntrack, driven from the
//! state. Every function reads what the kernel has, plans the difference and applies it.

use std::collections::BTreeMap;

use roamgw_common::state::{Backend, Forward, GatewayState};
use tracing::{debug, info, warn};

use crate::conntrack;
use crate::nft::apply::{self, NftError};
use crate::nft::diff::{plan, Plan};
use crate::nft::model::{desired, forward_elements, is_count, Element};
use crate::nft::observed::{self, CounterValue, Observed};
use crate::nft::render;

#[derive(Debug, thiserror::Error)]
pub enum DataPlaneError {
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error(transparent)]
    Parse(#[from] observed::ParseError),
    #[error("the firewalld backend is not available in this version: run `roamgw init --force --backend nftables` (or wait for the firewalld backend)")]
    FirewalldBackend,
    #[error("cannot enable IP forwarding ({0}): run as root")]
    Forwarding(std::io::Error),
}

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

fn check_backend(state: &GatewayState) -> Result<(), DataPlaneError> {
    match state.gateway.backend {
        Backend::Nftables => Ok(()),
        Backend::Firewalld => Err(DataPlaneError::FirewalldBackend),
    }
}

/// Our table as the kernel has it; `None` when it does not exist.
pub fn observe() -> Result<Option<Observed>, DataPlaneError> {
    match apply::list_table()? {
        Some(json) => Ok(Some(observed::parse(&json)?)),
        None => Ok(None),
    }
}

/// Whether the data plane is up, for commands that also work without it: a missing table, or
/// no permission to look (not root), both mean "not up".
pub fn observe_if_up() -> Result<Option<Observed>, DataPlaneError> {
    match observe() {
        Err(DataPlaneError::Nft(e)) if e.is_unavailable() => Ok(None),
        other => other,
    }
}

/// Brings the table to the state. Returns the plan it carried out.
pub fn reconcile(
    state: &GatewayState,
    observed: Option<&Observed>,
) -> Result<Plan, DataPlaneError> {
    check_backend(state)?;
    let want = desired(state);
    let plan = plan(&want, observed);
    match &plan {
        Plan::Nothing => {}
        Plan::Replace { .. } => {
            let keep = observed.map(|o| o.counters.clone()).unwrap_or_default();
            apply::apply_text(&render::full_transaction(&want, &keep))?;
        }
        Plan::Update { remove, add } => apply::apply_update(remove, add)?,
    }
    Ok(plan)
}

/// The exact transaction `up`/`apply` would run to (re)build the table.
pub fn rules_text(state: &GatewayState) -> Result<String, DataPlaneError> {
    check_backend(state)?;
    let keep = observe_if_up()?.map(|o| o.counters).unwrap_or_default();
    Ok(render::full_transaction(&desired(state), &keep))
}

fn enable_forwarding() -> Result<(), DataPlaneError> {
    let current = std::fs::read_to_string(IP_FORWARD).map_err(DataPlaneError::Forwarding)?;
    if current.trim() != "1" {
        std::fs::write(IP_FORWARD, "1\n").map_err(DataPlaneError::Forwarding)?;
        info!(
            "enabled net.ipv4.ip_forward (was {}): forwards need it",
            current.trim()
        );
    }
    Ok(())
}

pub fn interface_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// `roamgw up`: forwarding on, table as the state says.
pub fn up(state: &GatewayState) -> Result<Plan, DataPlaneError> {
    check_backend(state)?;
    enable_forwarding()?;
    let interface = state.gateway.interface.as_str();
    if !interface_exists(interface) {
        warn!(
            interface,
            "WireGuard interface is not present: forwards need it (e.g. `wg-quick up {interface}` with the file from `roamgw show-config --gateway --format wg-quick`)"
        );
    }
    let observed = observe()?;
    reconcile(state, observed.as_ref())
}

/// `roamgw down`: our table removed, nothing else touched.
pub fn down() -> Result<bool, DataPlaneError> {
    let existed = observe()?.is_some();
    apply::delete_table()?;
    Ok(existed)
}

/// Applies a CLI change live when the data plane is up, in time independent of the number of
/// forwards: only the elements of the forwards that changed are added and removed, in one nft
/// transaction. When that fails (no table, or not the shape we expect), the table is checked:
/// missing means "not up" (`Ok(None)`, nothing applied), anything else gets a full reconcile.
///
/// The fast path does not compare the rules marker first: a marker check inside the
/// transaction (delete + re-add of the marker element) costs an RCU grace period, ~11 ms here,
/// and a separate `nft list` another process. `roamgw apply`, `up` and the daemon compare it.
pub fn apply_change(
    old: &GatewayState,
    new: &GatewayState,
    change: &ForwardChange,
) -> Result<Option<Plan>, DataPlaneError> {
    check_backend(new)?;
    if desired_settings(old) != desired_settings(new) {
        return apply_if_up(new);
    }
    let remove: Vec<Element> = change
        .removed
        .iter()
        .flat_map(|f| elements_of(old, f))
        .collect();
    let add: Vec<Element> = change
        .added
        .iter()
        .flat_map(|f| elements_of(new, f))
        .collect();
    match apply::apply_update(&remove, &add) {
        Ok(()) => Ok(Some(Plan::Update { remove, add })),
        Err(first) => {
            // No table (not up), not ours to see, or not the shape we expect: the full path
            // tells which and repairs the last.
            debug!("element update refused ({first}); reconciling the whole table");
            apply_if_up(new)
        }
    }
}

fn desired_settings(state: &GatewayState) -> crate::nft::model::TableSettings {
    crate::nft::model::TableSettings {
        anchor: state.gateway.anchor_ip,
        interface: state.gateway.interface.clone(),
        listen_port: state.gateway.listen_port,
    }
}

fn elements_of(state: &GatewayState, forward: &Forward) -> Vec<Element> {
    state
        .roamer(&forward.to)
        .map(|r| {
            forward_elements(
                state.gateway.anchor_ip,
                &forward.spec,
                r.address,
                &forward.allow_from,
            )
        })
        .unwrap_or_default()
}

/// What a CLI command changed: the caller knows, so nothing has to compare thousands of
/// forwards to find out.
#[derive(Debug, Clone, Default)]
pub struct ForwardChange {
    pub removed: Vec<Forward>,
    pub added: Vec<Forward>,
}

/// Applies a state live when the data plane is up. `Ok(None)`: not up, nothing applied.
pub fn apply_if_up(state: &GatewayState) -> Result<Option<Plan>, DataPlaneError> {
    let Some(observed) = observe_if_up()? else {
        return Ok(None);
    };
    Ok(Some(reconcile(state, Some(&observed))?))
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
    let anchor = new.gateway.anchor_ip;
    let stale_possible = new.gateway.anchor_passthrough;
    let added = change.added.iter().filter(|_| stale_possible);
    for forward in change.removed.iter().chain(added) {
        if let Err(e) = conntrack::flush_forward(anchor, &forward.spec) {
            warn!(forward = %forward.spec, "{e}");
        }
    }
}

/// Byte and packet counts per forward (by its spec), when the data plane is up: the sum of
/// the counters of the forward's counting elements.
pub fn forward_counters(state: &GatewayState) -> Option<BTreeMap<String, CounterValue>> {
    let observed = observe_if_up().ok().flatten()?;
    Some(counters_by_forward(state, &observed))
}

pub fn counters_by_forward(
    state: &GatewayState,
    observed: &Observed,
) -> BTreeMap<String, CounterValue> {
    state
        .forwards
        .iter()
        .map(|forward| {
            let total = elements_of(state, forward)
                .iter()
                .filter(|e| is_count(e))
                .filter_map(|e| observed.counters.get(e))
                .fold(CounterValue::default(), |sum, c| CounterValue {
                    packets: sum.packets + c.packets,
                    bytes: sum.bytes + c.bytes,
                });
            (forward.key(), total)
        })
        .collect()
}
