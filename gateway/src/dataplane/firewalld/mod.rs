//! The firewalld backend: roamgw's zone and policies (see [`model`]) kept in firewalld's
//! runtime **and** permanent configuration over D-Bus, so `firewall-cmd --reload` and reboots
//! keep them. D-Bus, not `firewall-cmd`: one call is ~8 ms over D-Bus and 150–280 ms through
//! firewall-cmd (its Python start-up), and add-port needs two (runtime and permanent).
//!
//! Observe → plan → apply as everywhere: both configurations are read ([`Firewalld::observe`]),
//! the pure [`plan::plan`] says what differs, and only that is written, each object in one
//! call (firewalld applies the difference itself; [`write`]). Creating a policy or zone is
//! permanent-only in firewalld; the runtime learns new ones from a reload, which `up` does
//! once, the first time. [`bus`] is the D-Bus connection, [`settings`] the shapes firewalld's
//! interfaces take.

mod bus;
pub mod model;
pub mod plan;
mod plane;
mod settings;
mod write;

pub use bus::Firewalld;
use bus::*;
pub use plane::{down, FirewalldPlane};
pub use settings::PolicyView;
use settings::*;

use std::collections::BTreeSet;

use roamgw_common::state::GatewayState;
use tracing::{debug, info};
use zbus::zvariant::OwnedObjectPath;

use model::{Desired, IpsetSpec, PolicySpec, IPSET_PREFIX, IPSET_TYPE, PRIORITY, ZONE};
use plan::{Observed, Permanent};

#[derive(Debug, thiserror::Error)]
pub enum FirewalldError {
    #[error("cannot reach firewalld over D-Bus ({0}): is it running? (systemctl start firewalld) — or use `roamgw init --force --backend nftables`")]
    Unreachable(String),
    #[error("firewalld refused {what}: {message}")]
    Refused { what: String, message: String },
}

/// One thing firewalld has differently from what the state asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    CreateZone,
    PermanentZone(OwnedObjectPath),
    CreateIpset(String),
    PermanentIpset(String, OwnedObjectPath),
    /// An ipset of a roamer that is gone (permanent; the runtime drops it at the next reload).
    StaleIpset(String, OwnedObjectPath),
    RuntimeIpset(String),
    CreatePolicy(&'static str),
    PermanentPolicy(&'static str, OwnedObjectPath),
    /// New objects exist at runtime only after a reload.
    Reload,
    RuntimePolicy(&'static str),
    /// The WireGuard interface is not in zone roamgw at runtime.
    Binding(String),
    /// The backend's counters (nft table ip roamgw_count, crate::dataplane::nftables::counting) differ.
    Counting(String),
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::CreateZone => write!(f, "create zone {ZONE} (permanent)"),
            Difference::PermanentZone(_) => write!(f, "set zone {ZONE} (permanent)"),
            Difference::CreateIpset(name) => write!(f, "create ipset {name} (permanent)"),
            Difference::PermanentIpset(name, _) => write!(f, "set ipset {name} (permanent)"),
            Difference::StaleIpset(name, _) => write!(f, "remove ipset {name} (permanent)"),
            Difference::RuntimeIpset(name) => write!(f, "set ipset {name} (runtime)"),
            Difference::CreatePolicy(name) => write!(f, "create policy {name} (permanent)"),
            Difference::PermanentPolicy(name, _) => write!(f, "set policy {name} (permanent)"),
            Difference::Reload => write!(f, "reload firewalld once to load them"),
            Difference::RuntimePolicy(name) => write!(f, "set policy {name} (runtime)"),
            Difference::Binding(interface) => {
                write!(f, "put {interface} into zone {ZONE} (runtime)")
            }
            Difference::Counting(what) => write!(f, "counters: {what}"),
        }
    }
}

/// For logs and `apply`: what was (or would be) done.
pub fn summary(differences: &[Difference]) -> String {
    if differences.is_empty() {
        "firewalld: roamgw's zone and policies are up to date".to_string()
    } else {
        format!(
            "firewalld: {}",
            differences
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )
    }
}

impl Firewalld {
    /// The default zone (where `firewall-cmd --add-rich-rule` puts a rule without --zone).
    pub fn default_zone(&self) -> Result<String, FirewalldError> {
        self.call(PATH, IFACE, "getDefaultZone", &())
    }

    /// A zone's rich rules, permanent and runtime together (`roamgw import` reads the manual
    /// setup's). Reads only.
    pub fn rich_rules(&self, zone: &str) -> Result<BTreeSet<String>, FirewalldError> {
        let mut rules: BTreeSet<String> = self
            .call::<_, Vec<String>>(PATH, IFACE_ZONE, "getRichRules", &(zone,))?
            .into_iter()
            .collect();
        if let Some(path) = self.permanent_path("getZoneByName", zone)? {
            rules.extend(self.call::<_, Vec<String>>(
                path.as_str(),
                IFACE_CONFIG_ZONE,
                "getRichRules",
                &(),
            )?);
        }
        Ok(rules)
    }

    /// Removes rich rules of a zone, runtime and permanent; one that is not there is fine.
    pub fn remove_rich_rules(&self, zone: &str, rules: &[String]) -> Result<(), FirewalldError> {
        let permanent = self.permanent_path("getZoneByName", zone)?;
        for rule in rules {
            let gone = |r: Result<(), FirewalldError>| match r {
                Err(FirewalldError::Refused { message, .. }) if message.contains("NOT_ENABLED") => {
                    Ok(())
                }
                other => other,
            };
            gone(
                self.call::<_, String>(PATH, IFACE_ZONE, "removeRichRule", &(zone, rule.as_str()))
                    .map(|_| ()),
            )?;
            if let Some(path) = &permanent {
                gone(self.call_unit(
                    path.as_str(),
                    IFACE_CONFIG_ZONE,
                    "removeRichRule",
                    &(rule.as_str(),),
                ))?;
            }
        }
        Ok(())
    }

    /// roamgw's ipsets in the permanent configuration, by name prefix.
    fn our_ipsets(&self) -> Result<Vec<(String, OwnedObjectPath)>, FirewalldError> {
        let names: Vec<String> = self.call(CONFIG_PATH, IFACE_CONFIG, "getIPSetNames", &())?;
        let mut out = Vec::new();
        for name in names.into_iter().filter(|n| n.starts_with(IPSET_PREFIX)) {
            if let Some(path) = self.permanent_path("getIPSetByName", &name)? {
                out.push((name, path));
            }
        }
        Ok(out)
    }

    /// What firewalld has of what `desired` names (and of our ipsets, when a zone is
    /// desired). Reads only.
    pub fn observe(&self, desired: &Desired) -> Result<Observed, FirewalldError> {
        let mut out = Observed::default();
        if desired.zone.is_some() {
            if let Some(path) = self.permanent_path("getZoneByName", ZONE)? {
                let settings: Settings =
                    self.call(path.as_str(), IFACE_CONFIG_ZONE, "getSettings2", &())?;
                let interfaces: Vec<String> = settings
                    .get("interfaces")
                    .and_then(|v| v.try_clone().ok())
                    .and_then(|v| Vec::<String>::try_from(v).ok())
                    .unwrap_or_default();
                out.zone = Some(Permanent {
                    path,
                    value: interfaces,
                });
            }
            out.our_ipsets = self.our_ipsets()?;
        }
        for set in &desired.ipsets {
            if let Some(path) = self.permanent_path("getIPSetByName", &set.name)? {
                let entries: Vec<String> =
                    self.call(path.as_str(), IFACE_CONFIG_IPSET, "getEntries", &())?;
                out.ipsets.insert(
                    set.name.clone(),
                    Permanent {
                        path,
                        value: entries.into_iter().collect(),
                    },
                );
            }
        }
        for spec in &desired.policies {
            if let Some(path) = self.permanent_path("getPolicyByName", spec.name)? {
                let settings: Settings =
                    self.call(path.as_str(), IFACE_CONFIG_POLICY, "getSettings", &())?;
                out.policies.insert(
                    spec.name.to_string(),
                    Permanent {
                        path,
                        value: PolicyView::from_settings(&settings),
                    },
                );
            }
        }
        out.runtime_policy_names = self.runtime_policies()?;
        out.runtime_zones = self.runtime_zones()?;
        out.runtime_ipset_names = self.call(PATH, IFACE_IPSET, "getIPSets", &())?;
        for set in &desired.ipsets {
            if out.runtime_ipset_names.contains(&set.name) {
                let entries: Vec<String> =
                    self.call(PATH, IFACE_IPSET, "getEntries", &(&set.name,))?;
                out.runtime_ipsets
                    .insert(set.name.clone(), entries.into_iter().collect());
            }
        }
        for spec in &desired.policies {
            if out.runtime_policy_names.iter().any(|r| r == spec.name) {
                let settings: Settings =
                    self.call(PATH, IFACE_POLICY, "getPolicySettings", &(spec.name,))?;
                out.runtime_policies
                    .insert(spec.name.to_string(), PolicyView::from_settings(&settings));
            }
        }
        if let Some(zone) = &desired.zone {
            for interface in &zone.interfaces {
                let bound: String = self.call(
                    PATH,
                    IFACE_ZONE,
                    "getZoneOfInterface",
                    &(interface.as_str(),),
                )?;
                out.bindings.insert(interface.clone(), bound);
            }
        }
        Ok(out)
    }

    /// What differs between `desired` and firewalld's permanent and runtime configuration
    /// (observe, then the pure [`plan::plan`]). Reads only.
    pub fn differences(&self, desired: &Desired) -> Result<Vec<Difference>, FirewalldError> {
        Ok(plan::plan(desired, &self.observe(desired)?))
    }

    /// Whether roamgw's objects exist (permanent): the data plane counts as up then.
    pub fn is_set_up(&self) -> Result<bool, FirewalldError> {
        Ok(self
            .permanent_path("getPolicyByName", model::DNAT_POLICY)?
            .is_some())
    }

    /// `down`: our policies emptied (runtime and permanent: forwards stop, the WireGuard port
    /// closes); `purge` removes the zone and policies themselves and reloads.
    pub fn down(&self, purge: bool) -> Result<bool, FirewalldError> {
        let mut existed = false;
        let runtime = self.runtime_policies()?;
        for name in model::POLICIES {
            let empty = PolicySpec {
                name,
                ingress_zones: Vec::new(),
                egress_zones: Vec::new(),
                ports: Vec::new(),
                masquerade: false,
                rich_rules: BTreeSet::new(),
            };
            if let Some(path) = self.permanent_path("getPolicyByName", name)? {
                existed = true;
                if purge {
                    self.call_unit(path.as_str(), IFACE_CONFIG_POLICY, "remove", &())?;
                } else {
                    self.call_unit(
                        path.as_str(),
                        IFACE_CONFIG_POLICY,
                        "update",
                        &(policy_settings(&empty, true),),
                    )?;
                }
            }
            if runtime.iter().any(|r| r == name) {
                self.call_unit(
                    PATH,
                    IFACE_POLICY,
                    "setPolicySettings",
                    &(name, policy_settings(&empty, false)),
                )?;
            }
        }
        if purge {
            if let Some(path) = self.permanent_path("getZoneByName", ZONE)? {
                existed = true;
                self.call_unit(path.as_str(), IFACE_CONFIG_ZONE, "remove", &())?;
            }
            for (_, path) in self.our_ipsets()? {
                self.call_unit(path.as_str(), IFACE_CONFIG_IPSET, "remove", &())?;
            }
            self.call_unit(PATH, IFACE, "reload", &())?;
        }
        Ok(existed)
    }
}

/// The desired objects for `state`, rendered as firewall-cmd would show them (for `rules`).
pub fn describe(state: &GatewayState) -> String {
    let desired = model::desired(state);
    let mut out = format!(
        "# firewalld backend: zone {ZONE} (interfaces: {}) and these policies, runtime and permanent\n",
        desired
            .zone
            .as_ref()
            .map(|z| z.interfaces.join(", "))
            .unwrap_or_default()
    );
    for set in &desired.ipsets {
        out.push_str(&format!(
            "ipset {} ({IPSET_TYPE}): {}\n",
            set.name,
            set.entries.iter().cloned().collect::<Vec<_>>().join(" ")
        ));
    }
    for p in &desired.policies {
        out.push_str(&format!(
            "policy {} (priority {PRIORITY}, target CONTINUE): ingress {} -> egress {}{}{}\n",
            p.name,
            p.ingress_zones.join(","),
            p.egress_zones.join(","),
            if p.masquerade { ", masquerade" } else { "" },
            p.ports
                .iter()
                .map(|(port, proto)| format!(", port {port}/{proto}"))
                .collect::<String>()
        ));
        for rule in &p.rich_rules {
            out.push_str(&format!("  {rule}\n"));
        }
    }
    out
}
