//! The nftables backend behind the `Backend` trait: table `inet roamgw` and nothing else (the
//! model, the observed table, the pure plan and the transactions are beside it).

use roamgw_common::state::GatewayState;
use tracing::{debug, info};

use crate::dataplane::firewalld;
use crate::dataplane::nftables::diff::{plan, Plan};
use crate::dataplane::nftables::model::{
    desired, egress_elements, elements_of, is_count, is_reply_count, Element, TableSettings,
};
use crate::dataplane::nftables::observed::{self, Observed};
use crate::dataplane::nftables::render;
use crate::dataplane::nftables::{counting, exec};
use crate::dataplane::ForwardChange;
use crate::dataplane::{Applied, Backend, Counters, ForwardCounters, Result, View};

pub struct NftPlane;

/// Our table as the kernel has it; `None` when it does not exist.
pub fn observe() -> Result<Option<Observed>> {
    match exec::list_table()? {
        Some(json) => Ok(Some(observed::parse(&json)?)),
        None => Ok(None),
    }
}

/// Whether the table is up, for commands that also work without it: a missing table, or no
/// permission to look (not root), both mean "not up".
pub fn observe_if_up() -> Result<Option<Observed>> {
    match observe() {
        Err(crate::dataplane::DataPlaneError::Nft(e)) if e.is_unavailable() => Ok(None),
        other => other,
    }
}

/// Brings the table to the state, from what `observed` says is there.
fn reconcile(state: &GatewayState, observed: Option<&Observed>) -> Result<Applied> {
    let want = desired(state);
    let plan = plan(&want, observed);
    match &plan {
        Plan::Nothing => {}
        Plan::Replace { .. } => {
            let keep = observed.map(|o| o.counters.clone()).unwrap_or_default();
            exec::apply_text(&render::full_transaction(&want, &keep))?;
        }
        Plan::Update { remove, add } => exec::apply_update(remove, add)?,
    }
    Ok(Applied::Nft(plan))
}

/// Removes the table; whether it existed.
pub fn down() -> Result<bool> {
    let existed = observe_if_up()?.is_some();
    exec::delete_table()?;
    // The firewalld backend's counters are ours too.
    let counting = leftover_counting_removed()?;
    Ok(existed || counting)
}

/// Removes the firewalld backend's counting table if it is there (a backend switch, `down`).
fn leftover_counting_removed() -> Result<bool> {
    match counting::observe() {
        Ok(Some(_)) => {
            counting::remove()?;
            Ok(true)
        }
        Ok(None) => Ok(false),
        Err(counting::CountingError::Nft(e)) if e.is_unavailable() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Byte and packet counts per forward (by its key): the sum of the counters of the forward's
/// counting elements.
pub fn counters_by_forward(state: &GatewayState, observed: &Observed) -> Counters {
    state
        .forwards
        .iter()
        .map(|forward| {
            let mut counters = ForwardCounters::default();
            for element in elements_of(state, forward).iter().filter(|e| is_count(e)) {
                let Some(c) = observed.counters.get(element) else {
                    continue;
                };
                let sum = if is_reply_count(element) {
                    &mut counters.back
                } else {
                    &mut counters.incoming
                };
                sum.packets += c.packets;
                sum.bytes += c.bytes;
            }
            (forward.key(), counters)
        })
        .collect()
}

/// Whether `old` and `new` differ in forwards only, so the elements of the changed forwards
/// are the whole change: the rules, the egress and the addresses forwards answer on (and
/// the tunnel addresses they lead to) are the same.
fn only_forwards_differ(old: &GatewayState, new: &GatewayState) -> bool {
    let addresses = |s: &GatewayState| {
        let g = &s.gateway;
        (g.floating_ip, g.forward6, g.subnet6, g.anchor_passthrough)
    };
    TableSettings::of(old) == TableSettings::of(new)
        && egress_elements(old).eq(egress_elements(new))
        && addresses(old) == addresses(new)
}

impl Backend for NftPlane {
    fn up(&self, state: &GatewayState) -> Result<Applied> {
        crate::dataplane::prepare(state)?;
        if let Some(fw) = firewalld::Firewalld::if_running()? {
            // firewalld drops new flows to the WireGuard port unless firewalld itself opens
            // it; forwarded (DNATed) flows it accepts early on its own.
            let opened = fw.apply(&firewalld::model::nftables_allowance(state))?;
            if !opened.is_empty() {
                info!(
                    "firewalld is running: opened udp {} through it ({})",
                    state.gateway.listen_port,
                    firewalld::summary(&opened)
                );
            }
        }
        leftover_counting_removed()?;
        reconcile(state, observe()?.as_ref())
    }

    /// Only the elements of the forwards that changed are added and removed, in one nft
    /// transaction. When that fails (no table, or not the shape we expect), the table is
    /// checked: missing means "not up" (`Ok(None)`), anything else gets a full reconcile.
    ///
    /// No rules-marker check first: inside the transaction (delete + re-add of the marker
    /// element) it costs an RCU grace period, ~11 ms here, and a separate `nft list` another
    /// process. `roamgw apply`, `up` and the daemon compare it.
    fn apply_change(
        &self,
        old: &GatewayState,
        new: &GatewayState,
        change: &ForwardChange,
    ) -> Result<Option<Applied>> {
        if !only_forwards_differ(old, new) {
            return self.apply_if_up(new);
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
        if remove.is_empty() && add.is_empty() {
            // Nothing of the table changes (a roamer without forwards): live only if the
            // table is there at all.
            return Ok(observe_if_up()?.map(|_| Applied::Nft(Plan::Nothing)));
        }
        match exec::apply_update(&remove, &add) {
            Ok(()) => Ok(Some(Applied::Nft(Plan::Update { remove, add }))),
            Err(first) => {
                debug!("element update refused ({first}); reconciling the whole table");
                self.apply_if_up(new)
            }
        }
    }

    fn apply_if_up(&self, state: &GatewayState) -> Result<Option<Applied>> {
        let Some(observed) = observe_if_up()? else {
            return Ok(None);
        };
        // A forward address of a new family needs that family's forwarding.
        crate::dataplane::enable_forwarding(state)?;
        Ok(Some(reconcile(state, Some(&observed))?))
    }

    fn dry_run(&self, state: &GatewayState) -> Result<Applied> {
        Ok(Applied::Nft(plan(&desired(state), observe()?.as_ref())))
    }

    fn rules_text(&self, state: &GatewayState) -> Result<String> {
        let keep = observe_if_up()?.map(|o| o.counters).unwrap_or_default();
        Ok(render::full_transaction(&desired(state), &keep))
    }

    fn view(&self, state: &GatewayState) -> Result<Option<View>> {
        let Some(observed) = observe_if_up()? else {
            return Ok(None);
        };
        let drift = Some(plan(&desired(state), Some(&observed)))
            .filter(|p| *p != Plan::Nothing)
            .map(|p| p.to_string());
        Ok(Some(View {
            drift,
            counters: Some(counters_by_forward(state, &observed)),
            handshakes_dropped: observed.handshakes_dropped,
        }))
    }

    fn counters(&self, state: &GatewayState) -> Option<Counters> {
        let observed = observe_if_up().ok().flatten()?;
        Some(counters_by_forward(state, &observed))
    }
}
