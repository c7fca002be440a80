//! The firewalld backend: roamgw's zone and policies (see [`model`]) kept in firewalld's
//! runtime **and** permanent configuration over D-Bus, so `firewall-cmd --reload` and reboots
//! keep them. D-Bus, not `firewall-cmd`: one call is ~8 ms over D-Bus and 150–280 ms through
//! firewall-cmd (its Python start-up), and add-port needs two (runtime and permanent).
//!
//! Observe → plan → apply as everywhere: both configurations are read ([`Firewalld::observe`]),
//! the pure [`plan::plan`] says what differs, and only that is written, each object in one
//! call (firewalld applies the difference itself). Creating a policy or zone is permanent-only in firewalld; the runtime learns new
//! ones from a reload, which `up` does once, the first time.

pub mod model;
pub mod plan;

use std::collections::{BTreeSet, HashMap};

use roamgw_common::state::GatewayState;
use tracing::{debug, info};
use zbus::blocking::Connection;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

use model::{Desired, IpsetSpec, PolicySpec, IPSET_PREFIX, IPSET_TYPE, PRIORITY, ZONE};
use plan::{Observed, Permanent};

/// An ipset's settings as firewalld's config interface takes them:
/// (version, short, description, type, options, entries).
type IpsetSettings = (
    String,
    String,
    String,
    String,
    HashMap<String, String>,
    Vec<String>,
);

fn ipset_settings(spec: &IpsetSpec) -> IpsetSettings {
    (
        String::new(),
        "roamgw forwards".to_string(),
        "Managed by roamgw: the plain forwards to one roamer (anchor,protocol:port).".to_string(),
        IPSET_TYPE.to_string(),
        HashMap::new(),
        spec.entries.iter().cloned().collect(),
    )
}

const DEST: &str = "org.fedoraproject.FirewallD1";
const PATH: &str = "/org/fedoraproject/FirewallD1";
const CONFIG_PATH: &str = "/org/fedoraproject/FirewallD1/config";
const IFACE: &str = "org.fedoraproject.FirewallD1";
const IFACE_POLICY: &str = "org.fedoraproject.FirewallD1.policy";
const IFACE_ZONE: &str = "org.fedoraproject.FirewallD1.zone";
const IFACE_CONFIG: &str = "org.fedoraproject.FirewallD1.config";
const IFACE_CONFIG_POLICY: &str = "org.fedoraproject.FirewallD1.config.policy";
const IFACE_CONFIG_ZONE: &str = "org.fedoraproject.FirewallD1.config.zone";
const IFACE_IPSET: &str = "org.fedoraproject.FirewallD1.ipset";
const IFACE_CONFIG_IPSET: &str = "org.fedoraproject.FirewallD1.config.ipset";

#[derive(Debug, thiserror::Error)]
pub enum FirewalldError {
    #[error("cannot reach firewalld over D-Bus ({0}): is it running? (systemctl start firewalld) — or use `roamgw init --force --backend nftables`")]
    Unreachable(String),
    #[error("firewalld refused {what}: {message}")]
    Refused { what: String, message: String },
}

type Settings = HashMap<String, OwnedValue>;

pub struct Firewalld {
    conn: Connection,
}

/// What firewalld has of one of our policies, in the terms we set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyView {
    pub ingress_zones: BTreeSet<String>,
    pub egress_zones: BTreeSet<String>,
    pub ports: BTreeSet<(String, String)>,
    pub masquerade: bool,
    pub rich_rules: BTreeSet<String>,
}

impl PolicyView {
    fn of(spec: &PolicySpec) -> Self {
        PolicyView {
            ingress_zones: spec.ingress_zones.iter().cloned().collect(),
            egress_zones: spec.egress_zones.iter().cloned().collect(),
            ports: spec.ports.iter().cloned().collect(),
            masquerade: spec.masquerade,
            rich_rules: spec.rich_rules.clone(),
        }
    }

    fn from_settings(settings: &Settings) -> Self {
        fn get<T: TryFrom<OwnedValue>>(s: &Settings, key: &str) -> Option<T> {
            s.get(key)
                .and_then(|v| v.try_clone().ok())
                .and_then(|v| T::try_from(v).ok())
        }
        PolicyView {
            ingress_zones: get::<Vec<String>>(settings, "ingress_zones")
                .unwrap_or_default()
                .into_iter()
                .collect(),
            egress_zones: get::<Vec<String>>(settings, "egress_zones")
                .unwrap_or_default()
                .into_iter()
                .collect(),
            ports: get::<Vec<(String, String)>>(settings, "ports")
                .unwrap_or_default()
                .into_iter()
                .collect(),
            masquerade: get::<bool>(settings, "masquerade").unwrap_or(false),
            rich_rules: get::<Vec<String>>(settings, "rich_rules")
                .unwrap_or_default()
                .into_iter()
                .collect(),
        }
    }
}

fn policy_settings(spec: &PolicySpec, full: bool) -> HashMap<&'static str, Value<'static>> {
    let mut s: HashMap<&'static str, Value<'static>> = HashMap::new();
    s.insert("ingress_zones", Value::new(spec.ingress_zones.clone()));
    s.insert("egress_zones", Value::new(spec.egress_zones.clone()));
    s.insert("ports", Value::new(spec.ports.clone()));
    s.insert("masquerade", Value::new(spec.masquerade));
    s.insert(
        "rich_rules",
        Value::new(spec.rich_rules.iter().cloned().collect::<Vec<_>>()),
    );
    if full {
        s.insert("target", Value::new("CONTINUE".to_string()));
        s.insert("priority", Value::new(PRIORITY));
        s.insert("short", Value::new(format!("roamgw: {}", spec.name)));
        s.insert(
            "description",
            Value::new(
                "Managed by roamgw (static public ports for a roaming laptop). Changed by `roamgw`; removed by `roamgw down --purge`."
                    .to_string(),
            ),
        );
    }
    s
}

fn zone_settings(interfaces: &[String]) -> HashMap<&'static str, Value<'static>> {
    let mut s: HashMap<&'static str, Value<'static>> = HashMap::new();
    s.insert("interfaces", Value::new(interfaces.to_vec()));
    s.insert("short", Value::new("roamgw tunnel".to_string()));
    s.insert(
        "description",
        Value::new("Managed by roamgw: the WireGuard interface toward the roamers.".to_string()),
    );
    s
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
    /// The backend's counters (nft table ip roamgw_count, crate::nft::counting) differ.
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
    /// firewalld when it runs; `None` when nothing answers on the system bus.
    pub fn if_running() -> Result<Option<Self>, FirewalldError> {
        match Self::connect() {
            Ok(fw) => Ok(Some(fw)),
            Err(FirewalldError::Unreachable(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn connect() -> Result<Self, FirewalldError> {
        let conn = Connection::system().map_err(|e| FirewalldError::Unreachable(e.to_string()))?;
        let fw = Firewalld { conn };
        // A bus without firewalld on it answers ServiceUnknown: not running either.
        fw.call::<_, String>(PATH, IFACE, "getDefaultZone", &())
            .map_err(|e| FirewalldError::Unreachable(e.to_string()))?;
        Ok(fw)
    }

    /// One method call; its error says which method firewalld refused, or that it is gone.
    fn call_raw<B>(
        &self,
        path: &str,
        iface: &str,
        method: &str,
        body: &B,
    ) -> Result<zbus::Message, FirewalldError>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        self.conn
            .call_method(Some(DEST), path, Some(iface), method, body)
            .map_err(|e| match e {
                zbus::Error::MethodError(_, Some(message), _) => FirewalldError::Refused {
                    what: method.to_string(),
                    message,
                },
                zbus::Error::InputOutput(_)
                | zbus::Error::Address(_)
                | zbus::Error::Handshake(_) => FirewalldError::Unreachable(e.to_string()),
                other => FirewalldError::Refused {
                    what: method.to_string(),
                    message: other.to_string(),
                },
            })
    }

    fn call<B, R>(
        &self,
        path: &str,
        iface: &str,
        method: &str,
        body: &B,
    ) -> Result<R, FirewalldError>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
        R: serde::de::DeserializeOwned + zbus::zvariant::Type,
    {
        self.call_raw(path, iface, method, body)?
            .body()
            .deserialize::<R>()
            .map_err(|e| FirewalldError::Refused {
                what: method.to_string(),
                message: format!("unexpected reply: {e}"),
            })
    }

    /// A call whose reply carries nothing we need.
    fn call_unit<B>(
        &self,
        path: &str,
        iface: &str,
        method: &str,
        body: &B,
    ) -> Result<(), FirewalldError>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        self.call_raw(path, iface, method, body).map(|_| ())
    }

    fn runtime_policies(&self) -> Result<Vec<String>, FirewalldError> {
        self.call(PATH, IFACE_POLICY, "getPolicies", &())
    }

    fn runtime_zones(&self) -> Result<Vec<String>, FirewalldError> {
        self.call(PATH, IFACE_ZONE, "getZones", &())
    }

    fn permanent_path(
        &self,
        method: &str,
        name: &str,
    ) -> Result<Option<OwnedObjectPath>, FirewalldError> {
        match self.call::<_, OwnedObjectPath>(CONFIG_PATH, IFACE_CONFIG, method, &(name,)) {
            Ok(path) => Ok(Some(path)),
            Err(FirewalldError::Refused { message, .. }) if message.contains("INVALID_") => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

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
