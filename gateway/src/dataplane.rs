//! The data plane on this machine: our nft table, IP forwarding and conntrack, driven from the
//! state. Every function reads what the kernel has, plans the difference and applies it.

use std::collections::BTreeMap;

use roamgw_common::state::{Backend, Forward, GatewayState};
use tracing::{info, warn};

use crate::conntrack;
use crate::nft::apply::{self, NftError};
use crate::nft::diff::{plan, Plan};
use crate::nft::model::{counter_name, desired, forward_elements, Element};
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
        Err(DataPlaneError::Nft(e))
            if e.is_permission_denied() || matches!(e, NftError::Missing(_)) =>
        {
            Ok(None)
        }
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
/// forwards: when the table carries our marker, only the elements of the forwards that changed
/// are added and removed (one nft transaction). Anything unexpected (a different marker, an
/// element that is not where it should be) falls back to a full reconcile.
/// `Ok(None)`: the data plane is not up (or not visible to this user); nothing applied.
pub fn apply_change(
    old: &GatewayState,
    new: &GatewayState,
) -> Result<Option<Plan>, DataPlaneError> {
    check_backend(new)?;
    let marker = match apply::read_marker() {
        Ok(Some(marker)) => marker,
        Ok(None) => return Ok(None),
        Err(e) if e.is_permission_denied() || matches!(e, NftError::Missing(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let settings_unchanged = desired_settings(old) == desired_settings(new);
    if marker != Some(desired_settings(new).marker()) || !settings_unchanged {
        return apply_if_up(new);
    }
    let (remove, add) = forward_delta(old, new);
    if remove.is_empty() && add.is_empty() {
        return Ok(Some(Plan::Nothing));
    }
    match apply::apply_update(&remove, &add) {
        Ok(()) => Ok(Some(Plan::Update { remove, add })),
        Err(e) => {
            warn!("element update failed ({e}); reconciling the whole table");
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

/// The elements of the forwards that differ between two states with the same settings.
/// Forwards never share elements (their public ports do not overlap), so this is exact.
fn forward_delta(old: &GatewayState, new: &GatewayState) -> (Vec<Element>, Vec<Element>) {
    let elements = |state: &GatewayState, forward: &Forward| -> Vec<Element> {
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
    };
    let mut remove: Vec<Element> = old
        .forwards
        .iter()
        .filter(|f| {
            !new.forwards.contains(f)
                || old.roamer(&f.to).map(|r| r.address) != new.roamer(&f.to).map(|r| r.address)
        })
        .flat_map(|f| elements(old, f))
        .collect();
    // Elements before the counters they refer to.
    remove.reverse();
    let add: Vec<Element> = new
        .forwards
        .iter()
        .filter(|f| {
            !old.forwards.contains(f)
                || old.roamer(&f.to).map(|r| r.address) != new.roamer(&f.to).map(|r| r.address)
        })
        .flat_map(|f| elements(new, f))
        .collect();
    (remove, add)
}

/// Applies a state live when the data plane is up. `Ok(None)`: not up, nothing applied.
pub fn apply_if_up(state: &GatewayState) -> Result<Option<Plan>, DataPlaneError> {
    let Some(observed) = observe_if_up()? else {
        return Ok(None);
    };
    Ok(Some(reconcile(state, Some(&observed))?))
}

/// Ends the open flows of forwards that were removed or changed, and clears stale entries for
/// new ones (e.g. a UDP flow that was answered by the droplet before the forward existed).
pub fn end_changed_flows(old: &GatewayState, new: &GatewayState) {
    let anchor = new.gateway.anchor_ip;
    let changed = old
        .forwards
        .iter()
        .filter(|f| !new.forwards.contains(f))
        .chain(new.forwards.iter().filter(|f| !old.forwards.contains(f)));
    for forward in changed {
        if let Err(e) = conntrack::flush_forward(anchor, &forward.spec) {
            warn!(forward = %forward.spec, "{e}");
        }
    }
}

/// Byte and packet counts per forward (by its spec), when the data plane is up.
pub fn forward_counters(state: &GatewayState) -> Option<BTreeMap<String, CounterValue>> {
    let observed = observe_if_up().ok().flatten()?;
    Some(
        state
            .forwards
            .iter()
            .map(|f: &Forward| {
                let value = observed
                    .counters
                    .get(&counter_name(&f.spec))
                    .cloned()
                    .unwrap_or_default();
                (f.key(), value)
            })
            .collect(),
    )
}
