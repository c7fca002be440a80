//! Why a change failed, by whose fault: the user's input, the data plane (kernel, firewalld,
//! the WireGuard device), the files on disk, or a daemon that cannot take it now. The fault
//! decides the exit code and the HTTP status; the message says what to do.

use serde::{Deserialize, Serialize};

use crate::change::Refused;
use crate::dataplane::DataPlaneError;
use crate::device::DeviceError;
use crate::store::StoreError;

/// Whose fault a failed change was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The request is wrong (an unknown roamer, an overlapping forward): fix the input.
    #[default]
    Input,
    /// The kernel, firewalld or the WireGuard device refused or failed: nothing of the change
    /// is live, and the log says more.
    DataPlane,
    /// The state or a key file could not be read or written.
    Files,
    /// The daemon cannot take changes now (stopping, stuck, or the request waited too long).
    Unavailable,
}

impl Fault {
    /// `roamgw`'s exit code (docs/usage.md): 1 stays "refused", as before faults were told
    /// apart; 3 and 4 belong to `status`.
    pub fn exit_code(self) -> u8 {
        match self {
            Fault::Input => 1,
            Fault::DataPlane => 5,
            Fault::Files => 6,
            Fault::Unavailable => 7,
        }
    }

    /// The status page's answer to a change that failed this way.
    pub fn http_status(self) -> u16 {
        match self {
            Fault::Input => 409,
            Fault::DataPlane => 502,
            Fault::Files => 500,
            Fault::Unavailable => 503,
        }
    }
}

/// A change that did not happen, and why. Nothing of it is live or saved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ChangeError {
    pub fault: Fault,
    pub message: String,
}

impl ChangeError {
    pub fn new(fault: Fault, message: impl Into<String>) -> Self {
        ChangeError {
            fault,
            message: message.into(),
        }
    }
}

impl From<Refused> for ChangeError {
    fn from(e: Refused) -> Self {
        ChangeError::new(Fault::Input, e.0)
    }
}

impl From<DataPlaneError> for ChangeError {
    fn from(e: DataPlaneError) -> Self {
        ChangeError::new(Fault::DataPlane, e.to_string())
    }
}

impl From<roamgw_wg::DeviceError> for ChangeError {
    fn from(e: roamgw_wg::DeviceError) -> Self {
        ChangeError::new(Fault::DataPlane, e.to_string())
    }
}

impl From<DeviceError> for ChangeError {
    fn from(e: DeviceError) -> Self {
        match e {
            DeviceError::Store(e) => e.into(),
            other => ChangeError::new(Fault::DataPlane, other.to_string()),
        }
    }
}

impl From<StoreError> for ChangeError {
    fn from(e: StoreError) -> Self {
        ChangeError::new(Fault::Files, e.to_string())
    }
}
