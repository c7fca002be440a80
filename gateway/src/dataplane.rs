//! The data plane on this machine, driven from the state: our nft table (nftables backend) or
//! our firewalld zone and policies (firewalld backend), IP forwarding and conntrack. Every
//! function reads what is there, plans the difference and applies it.

use std::collections::BTreeMap;

use roamgw_common::state::{Backend, Forward, GatewayState};
use tracing::{debug, info, warn};

use crate::conntrack;
use crate::firewalld::{self, Difference, Firewalld, FirewalldError};
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
    #[error(transparent)]
    Firewalld(#[from] FirewalldError),
    #[error("cannot enable IP forwarding ({0}): run as root")]
    Forwarding(std::io::Error),
}

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

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
            Applied::Firewalld(differences) => f.write_str(&firewalld::summary(differences)),
        }
    }
}

/// firewalld when it runs; `None` when nothing answers on the system bus.
fn firewalld_if_running() -> Result<Option<Firewalld>, DataPlaneError> {
    match Firewalld::connect() {
        Ok(fw) => Ok(Some(fw)),
        Err(FirewalldError::Unreachable(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn is_firewalld(state: &GatewayState) -> bool {
    state.gateway.backend == Backend::Firewalld
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
) -> Result<Applied, DataPlaneError> {
    if is_firewalld(state) {
        let differences = Firewalld::connect()?.apply(&firewalld::model::desired(state))?;
        return Ok(Applied::Firewalld(differences));
    }
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
    Ok(Applied::Nft(plan))
}

/// The firewalld backend's view for `status`: `None` when not up (firewalld not running, or
/// our objects not there), else what differs from the state.
pub fn firewalld_view(state: &GatewayState) -> Result<Option<Vec<Difference>>, DataPlaneError> {
    let Some(fw) = firewalld_if_running()? else {
        return Ok(None);
    };
    if !fw.is_set_up()? {
        return Ok(None);
    }
    Ok(Some(fw.differences(&firewalld::model::desired(state))?))
}

/// What `apply` would do, without doing it.
pub fn dry_run(state: &GatewayState) -> Result<Applied, DataPlaneError> {
    if is_firewalld(state) {
        let differences = Firewalld::connect()?.differences(&firewalld::model::desired(state))?;
        return Ok(Applied::Firewalld(differences));
    }
    Ok(Applied::Nft(plan(&desired(state), observe()?.as_ref())))
}

/// The exact transaction `up`/`apply` would run to (re)build the table.
pub fn rules_text(state: &GatewayState) -> Result<String, DataPlaneError> {
    if is_firewalld(state) {
        return Ok(firewalld::describe(state));
    }
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

/// `roamgw up`: forwarding on, table (or firewalld objects) as the state says.
pub fn up(state: &GatewayState) -> Result<Applied, DataPlaneError> {
    enable_forwarding()?;
    let interface = state.gateway.interface.as_str();
    if !interface_exists(interface) {
        warn!(
            interface,
            "WireGuard interface is not present: forwards need it (e.g. `wg-quick up {interface}` with the file from `roamgw show-config --gateway --format wg-quick`)"
        );
    }
    if is_firewalld(state) {
        // Left from the nftables backend (a re-init): not ours to keep.
        if observe_if_up()?.is_some() {
            apply::delete_table()?;
        }
        return reconcile(state, None);
    }
    if let Some(fw) = firewalld_if_running()? {
        // firewalld drops new flows to the WireGuard port unless firewalld itself opens it;
        // forwarded (DNATed) flows it accepts early on its own.
        let opened = fw.apply(&firewalld::model::nftables_allowance(state))?;
        if !opened.is_empty() {
            info!(
                "firewalld is running: opened udp {} through it ({})",
                state.gateway.listen_port,
                firewalld::summary(&opened)
            );
        }
    }
    let observed = observe()?;
    reconcile(state, observed.as_ref())
}

/// `roamgw down`: our table removed, our firewalld policies emptied (with `purge`, removed
/// with our zone); nothing else touched. Returns whether anything of ours was up.
pub fn down(purge: bool) -> Result<bool, DataPlaneError> {
    let existed = observe_if_up()?.is_some();
    apply::delete_table()?;
    let firewalld = match firewalld_if_running()? {
        Some(fw) => fw.down(purge)?,
        None => false,
    };
    Ok(existed || firewalld)
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
) -> Result<Option<Applied>, DataPlaneError> {
    if is_firewalld(new) {
        return firewalld_change(old, new);
    }
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
        Ok(()) => Ok(Some(Applied::Nft(Plan::Update { remove, add }))),
        Err(first) => {
            // No table (not up), not ours to see, or not the shape we expect: the full path
            // tells which and repairs the last.
            debug!("element update refused ({first}); reconciling the whole table");
            apply_if_up(new)
        }
    }
}

/// A CLI change on the firewalld backend: only the policies whose rules changed are written
/// (two calls each); anything unexpected takes the full path.
fn firewalld_change(
    old: &GatewayState,
    new: &GatewayState,
) -> Result<Option<Applied>, DataPlaneError> {
    let before = firewalld::model::desired(old);
    let after = firewalld::model::desired(new);
    let names =
        |d: &firewalld::model::Desired| d.ipsets.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    if before.zone != after.zone || names(&before) != names(&after) {
        return apply_if_up(new);
    }
    let changed: Vec<&firewalld::model::PolicySpec> = after
        .policies
        .iter()
        .filter(|p| !before.policies.contains(p))
        .collect();
    let Some(fw) = firewalld_if_running()? else {
        return Ok(None);
    };
    let mut done = Vec::new();
    for (was, now) in before.ipsets.iter().zip(&after.ipsets) {
        if was.entries == now.entries {
            continue;
        }
        let add: Vec<String> = now.entries.difference(&was.entries).cloned().collect();
        let remove: Vec<String> = was.entries.difference(&now.entries).cloned().collect();
        if !fw.change_entries(&now.name, &add, &remove)? {
            return apply_if_up(new);
        }
        done.push(Difference::RuntimeIpset(now.name.clone()));
    }
    if !fw.set_policies(&changed)? {
        return apply_if_up(new);
    }
    done.extend(changed.iter().map(|p| Difference::RuntimePolicy(p.name)));
    Ok(Some(Applied::Firewalld(done)))
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
pub fn apply_if_up(state: &GatewayState) -> Result<Option<Applied>, DataPlaneError> {
    if is_firewalld(state) {
        // Up once our objects exist; firewalld not running counts as not up (the change is
        // saved and goes live with `up`).
        let Some(fw) = firewalld_if_running()? else {
            return Ok(None);
        };
        if !fw.is_set_up()? {
            return Ok(None);
        }
        let differences = fw.apply(&firewalld::model::desired(state))?;
        return Ok(Some(Applied::Firewalld(differences)));
    }
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
