//! Writing our objects: the whole difference (`up`, repairs), or only the policies and ipset
//! entries one change touched (`add-port`).

use super::*;

impl Firewalld {
    /// Brings firewalld to `desired`: permanent first (so a reload at any moment keeps it),
    /// then runtime. Only what differs is written.
    pub fn apply(&self, desired: &Desired) -> Result<Vec<Difference>, FirewalldError> {
        let differences = self.differences(desired)?;
        let reloads = differences.contains(&Difference::Reload);
        for difference in &differences {
            match difference {
                Difference::CreateZone | Difference::PermanentZone(_) | Difference::Binding(_) => {
                    self.apply_zone(difference, desired)?
                }
                Difference::CreateIpset(name)
                | Difference::PermanentIpset(name, _)
                | Difference::RuntimeIpset(name) => {
                    if let Some(set) = desired.ipsets.iter().find(|s| &s.name == name) {
                        self.apply_ipset(difference, set, reloads)?;
                    }
                }
                Difference::StaleIpset(_, path) => {
                    self.call_unit(path.as_str(), IFACE_CONFIG_IPSET, "remove", &())?
                }
                Difference::CreatePolicy(name)
                | Difference::PermanentPolicy(name, _)
                | Difference::RuntimePolicy(name) => {
                    if let Some(spec) = desired.policies.iter().find(|p| p.name == *name) {
                        self.apply_policy(difference, spec, reloads)?;
                    }
                }
                Difference::Reload => {
                    info!("firewalld: reloading once so it loads roamgw's new zone and policies");
                    self.call_unit(PATH, IFACE, "reload", &())?;
                }
                // Not firewalld's: the backend syncs its counting table itself.
                Difference::Counting(_) => {}
            }
        }
        debug!(?differences, "firewalld applied");
        Ok(differences)
    }

    fn apply_zone(&self, difference: &Difference, desired: &Desired) -> Result<(), FirewalldError> {
        let interfaces = desired
            .zone
            .as_ref()
            .map(|z| z.interfaces.clone())
            .unwrap_or_default();
        match difference {
            Difference::CreateZone => {
                self.call::<_, OwnedObjectPath>(
                    CONFIG_PATH,
                    IFACE_CONFIG,
                    "addZone2",
                    &(ZONE, zone_settings(&interfaces)),
                )?;
            }
            Difference::PermanentZone(path) => self.call_unit(
                path.as_str(),
                IFACE_CONFIG_ZONE,
                "update2",
                &(zone_settings(&interfaces),),
            )?,
            Difference::Binding(interface) => {
                self.call::<_, String>(
                    PATH,
                    IFACE_ZONE,
                    "changeZoneOfInterface",
                    &(ZONE, interface.as_str()),
                )?;
            }
            _ => {}
        }
        Ok(())
    }

    /// `reloads`: the plan reloads firewalld before its runtime steps, which may bring the
    /// runtime in line already; it is read again then rather than written blindly.
    fn apply_ipset(
        &self,
        difference: &Difference,
        set: &IpsetSpec,
        reloads: bool,
    ) -> Result<(), FirewalldError> {
        let name = set.name.as_str();
        let entries = || set.entries.iter().cloned().collect::<Vec<String>>();
        match difference {
            Difference::CreateIpset(_) => {
                self.call::<_, OwnedObjectPath>(
                    CONFIG_PATH,
                    IFACE_CONFIG,
                    "addIPSet",
                    &(name, ipset_settings(set)),
                )?;
            }
            Difference::PermanentIpset(_, path) => self.call_unit(
                path.as_str(),
                IFACE_CONFIG_IPSET,
                "setEntries",
                &(entries(),),
            )?,
            Difference::RuntimeIpset(_) => {
                let differs = !reloads || {
                    let runtime: Vec<String> =
                        self.call(PATH, IFACE_IPSET, "getEntries", &(name,))?;
                    runtime.into_iter().collect::<BTreeSet<_>>() != set.entries
                };
                if differs {
                    self.call_unit(PATH, IFACE_IPSET, "setEntries", &(name, entries()))?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// `reloads` as for [`Firewalld::apply_ipset`].
    fn apply_policy(
        &self,
        difference: &Difference,
        spec: &PolicySpec,
        reloads: bool,
    ) -> Result<(), FirewalldError> {
        let name = spec.name;
        match difference {
            Difference::CreatePolicy(_) => {
                self.call::<_, OwnedObjectPath>(
                    CONFIG_PATH,
                    IFACE_CONFIG,
                    "addPolicy",
                    &(name, policy_settings(spec, true)),
                )?;
            }
            Difference::PermanentPolicy(_, path) => self.call_unit(
                path.as_str(),
                IFACE_CONFIG_POLICY,
                "update",
                &(policy_settings(spec, true),),
            )?,
            Difference::RuntimePolicy(_) => {
                let differs = !reloads || {
                    let settings: Settings =
                        self.call(PATH, IFACE_POLICY, "getPolicySettings", &(name,))?;
                    PolicyView::from_settings(&settings) != PolicyView::of(spec)
                };
                if differs {
                    self.call_unit(
                        PATH,
                        IFACE_POLICY,
                        "setPolicySettings",
                        &(name, policy_settings(spec, false)),
                    )?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The fast path of a CLI change: writes just `changed` (permanent, then runtime), without
    /// reading anything else first. `Ok(false)` when one of them is not there yet (not up, or
    /// never created): the caller falls back to a full [`Firewalld::apply`].
    pub fn set_policies(&self, changed: &[&PolicySpec]) -> Result<bool, FirewalldError> {
        if changed.is_empty() {
            return Ok(true);
        }
        let runtime = self.runtime_policies()?;
        for spec in changed {
            let Some(path) = self.permanent_path("getPolicyByName", spec.name)? else {
                return Ok(false);
            };
            if !runtime.iter().any(|r| r == spec.name) {
                return Ok(false);
            }
            self.call_unit(
                path.as_str(),
                IFACE_CONFIG_POLICY,
                "update",
                &(policy_settings(spec, true),),
            )?;
            self.call_unit(
                PATH,
                IFACE_POLICY,
                "setPolicySettings",
                &(spec.name, policy_settings(spec, false)),
            )?;
        }
        Ok(true)
    }

    /// The fast path for one ipset: adds and removes single entries (permanent, then
    /// runtime). `Ok(false)` when the ipset is not there (yet).
    pub fn change_entries(
        &self,
        name: &str,
        add: &[String],
        remove: &[String],
    ) -> Result<bool, FirewalldError> {
        let Some(path) = self.permanent_path("getIPSetByName", name)? else {
            return Ok(false);
        };
        let runtime: Vec<String> = self.call(PATH, IFACE_IPSET, "getIPSets", &())?;
        if !runtime.iter().any(|r| r == name) {
            return Ok(false);
        }
        for entry in remove {
            self.call_unit(path.as_str(), IFACE_CONFIG_IPSET, "removeEntry", &(entry,))?;
            self.call_unit(PATH, IFACE_IPSET, "removeEntry", &(name, entry))?;
        }
        for entry in add {
            self.call_unit(path.as_str(), IFACE_CONFIG_IPSET, "addEntry", &(entry,))?;
            self.call_unit(PATH, IFACE_IPSET, "addEntry", &(name, entry))?;
        }
        Ok(true)
    }
}
