//! The D-Bus connection to firewalld: finding it, one method call, and the object paths of
//! its runtime and permanent configuration.

use zbus::blocking::Connection;
use zbus::zvariant::OwnedObjectPath;

use super::FirewalldError;

pub(super) const DEST: &str = "org.fedoraproject.FirewallD1";
pub(super) const PATH: &str = "/org/fedoraproject/FirewallD1";
pub(super) const CONFIG_PATH: &str = "/org/fedoraproject/FirewallD1/config";
pub(super) const IFACE: &str = "org.fedoraproject.FirewallD1";
pub(super) const IFACE_POLICY: &str = "org.fedoraproject.FirewallD1.policy";
pub(super) const IFACE_ZONE: &str = "org.fedoraproject.FirewallD1.zone";
pub(super) const IFACE_CONFIG: &str = "org.fedoraproject.FirewallD1.config";
pub(super) const IFACE_CONFIG_POLICY: &str = "org.fedoraproject.FirewallD1.config.policy";
pub(super) const IFACE_CONFIG_ZONE: &str = "org.fedoraproject.FirewallD1.config.zone";
pub(super) const IFACE_IPSET: &str = "org.fedoraproject.FirewallD1.ipset";
pub(super) const IFACE_CONFIG_IPSET: &str = "org.fedoraproject.FirewallD1.config.ipset";

pub struct Firewalld {
    conn: Connection,
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

    /// Whether firewalld answers on the system bus (`roamgw doctor`).
    pub fn is_running() -> bool {
        Self::if_running().ok().flatten().is_some()
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
    pub(super) fn call_raw<B>(
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

    pub(super) fn call<B, R>(
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
    pub(super) fn call_unit<B>(
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

    pub(super) fn runtime_policies(&self) -> Result<Vec<String>, FirewalldError> {
        self.call(PATH, IFACE_POLICY, "getPolicies", &())
    }

    pub(super) fn runtime_zones(&self) -> Result<Vec<String>, FirewalldError> {
        self.call(PATH, IFACE_ZONE, "getZones", &())
    }

    pub(super) fn permanent_path(
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
}
