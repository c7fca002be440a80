//! The firewalld backend behind the `Backend` trait: roamgw's zone, ipsets and policies in the
//! running firewalld, runtime and permanent (the model and the D-Bus client are beside it).

use roamgw_common::state::GatewayState;

use crate::dataplane::firewalld::model::{self, PolicySpec};
use crate::dataplane::firewalld::{self as fw, Difference};
use crate::dataplane::nftables::counters_by_forward;
use crate::dataplane::nftables::counting;
use crate::dataplane::ForwardChange;
use crate::dataplane::{Applied, Backend, Counters, Result, View};

pub struct FirewalldPlane;

/// Our firewalld objects emptied (with `purge`, removed); whether any existed. Nothing to do
/// when firewalld does not run.
pub fn down(purge: bool) -> Result<bool> {
    Ok(match fw::Firewalld::if_running()? {
        Some(fw) => fw.down(purge)?,
        None => false,
    })
}

/// firewalld when our objects are in it: up. firewalld not running counts as not up (a change
/// is then saved and goes live with `up`).
fn up() -> Result<Option<fw::Firewalld>> {
    match fw::Firewalld::if_running()? {
        Some(fw) if fw.is_set_up()? => Ok(Some(fw)),
        _ => Ok(None),
    }
}

impl Backend for FirewalldPlane {
    fn up(&self, state: &GatewayState) -> Result<Applied> {
        crate::dataplane::prepare(state)?;
        // Left from the nftables backend (a re-init): not ours to keep.
        if crate::dataplane::nftables::observe_if_up()?.is_some() {
            crate::dataplane::nftables::exec::delete_table()?;
        }
        let mut differences = fw::Firewalld::connect()?.apply(&model::desired(state))?;
        differences.extend(counting::sync(state)?.map(Difference::Counting));
        Ok(Applied::Firewalld(differences))
    }

    /// Only the ipset entries and the policies whose rules changed are written (two calls
    /// each); anything unexpected takes the full path.
    fn apply_change(
        &self,
        old: &GatewayState,
        new: &GatewayState,
        _change: &ForwardChange,
    ) -> Result<Option<Applied>> {
        let before = model::desired(old);
        let after = model::desired(new);
        let names =
            |d: &model::Desired| d.ipsets.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        if before.zone != after.zone || names(&before) != names(&after) {
            return self.apply_if_up(new);
        }
        let changed: Vec<&PolicySpec> = after
            .policies
            .iter()
            .filter(|p| !before.policies.contains(p))
            .collect();
        let Some(fw) = fw::Firewalld::if_running()? else {
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
                return self.apply_if_up(new);
            }
            done.push(Difference::RuntimeIpset(now.name.clone()));
        }
        if !fw.set_policies(&changed)? {
            return self.apply_if_up(new);
        }
        done.extend(changed.iter().map(|p| Difference::RuntimePolicy(p.name)));
        done.extend(counting::sync(new)?.map(Difference::Counting));
        Ok(Some(Applied::Firewalld(done)))
    }

    fn apply_if_up(&self, state: &GatewayState) -> Result<Option<Applied>> {
        let Some(fw) = up()? else {
            return Ok(None);
        };
        let mut differences = fw.apply(&model::desired(state))?;
        differences.extend(counting::sync(state)?.map(Difference::Counting));
        Ok(Some(Applied::Firewalld(differences)))
    }

    fn dry_run(&self, state: &GatewayState) -> Result<Applied> {
        let mut differences = fw::Firewalld::connect()?.differences(&model::desired(state))?;
        let observed = counting::observe()?;
        differences.extend(
            counting::difference(&counting::desired(state), observed.as_ref())
                .map(Difference::Counting),
        );
        Ok(Applied::Firewalld(differences))
    }

    fn rules_text(&self, state: &GatewayState) -> Result<String> {
        Ok(fw::describe(state))
    }

    /// firewalld keeps no per-rule counters: they come from roamgw's counting table.
    fn view(&self, state: &GatewayState) -> Result<Option<View>> {
        let Some(fw) = up()? else {
            return Ok(None);
        };
        let mut differences = fw.differences(&model::desired(state))?;
        let observed = counting::observe()?;
        differences.extend(
            counting::difference(&counting::desired(state), observed.as_ref())
                .map(Difference::Counting),
        );
        Ok(Some(View {
            drift: (!differences.is_empty()).then(|| fw::summary(&differences)),
            counters: observed.map(|o| counters_by_forward(state, &o)),
            handshakes_dropped: None,
        }))
    }

    fn counters(&self, state: &GatewayState) -> Option<Counters> {
        let observed = counting::observe().ok().flatten()?;
        Some(counters_by_forward(state, &observed))
    }
}
