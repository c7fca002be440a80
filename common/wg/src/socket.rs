//! A WireGuard device reached through its UAPI socket in [`crate::userspace::UAPI_DIR`]: wireguard-go under
//! wg-quick, or the `wg show` socket our embedded device serves (read-only).

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use super::model::{DeviceStatus, SetRequest};
use super::uapi;
use super::userspace::uapi_path;
use super::DeviceError;
use super::WgDevice;

pub struct UapiSocket {
    name: String,
    path: PathBuf,
}

impl UapiSocket {
    /// `None` when the interface has no UAPI socket (kernel WireGuard, or not running).
    pub fn find(name: &str) -> Option<Self> {
        let path = uapi_path(name);
        path.exists().then(|| UapiSocket {
            name: name.to_string(),
            path,
        })
    }

    fn connect(&self) -> Result<UnixStream, DeviceError> {
        let stream = UnixStream::connect(&self.path)?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        Ok(stream)
    }
}

impl WgDevice for UapiSocket {
    fn name(&self) -> &str {
        &self.name
    }

    fn status(&self) -> Result<DeviceStatus, DeviceError> {
        uapi::get(&mut self.connect()?, uapi::GET)
    }

    fn set(&self, request: &SetRequest) -> Result<(), DeviceError> {
        uapi::set(&mut self.connect()?, request)
    }
}
