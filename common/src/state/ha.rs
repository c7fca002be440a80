//! `ha.toml`: this droplet's half of an active/standby pair. The pair shares the gateway
//! (keys, roamers, forwards: replicated); this file holds what is each droplet's own: its
//! private address and its peer's, its droplet id, and how to reach the provider's API.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::file::{invalid, parse_versioned, to_text};
use super::StateError;

pub const HA_VERSION: u32 = 1;
/// Where the standby asks the active for the state (TCP, on the private addresses).
pub const DEFAULT_REPLICATION_PORT: u16 = 51821;
pub const DEFAULT_VIRTUAL_ROUTER_ID: u8 = 51;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    #[default]
    DigitalOcean,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaSettings {
    pub version: u32,
    pub provider: Provider,
    /// The provider's API (`https://api.digitalocean.com`).
    pub api: String,
    /// The API token, in a file only root reads.
    pub token_file: PathBuf,
    pub reserved_ip: Ipv4Addr,
    /// This droplet, as the provider's API names it.
    pub droplet_id: u64,
    /// This droplet's private address: keepalived's `unicast_src_ip`; the state is served here.
    pub this: Ipv4Addr,
    /// The other droplet's private address.
    pub peer: Ipv4Addr,
    /// The interface `this` is on (keepalived's `interface`).
    pub vrrp_interface: String,
    pub virtual_router_id: u8,
    /// keepalived's priority: the droplet set up first is preferred when both start at once
    /// (150 against 100); `nopreempt` keeps a recovered droplet the standby either way.
    pub priority: u8,
    pub replication_port: u16,
}

impl HaSettings {
    pub fn from_toml(text: &str) -> Result<Self, StateError> {
        let settings: HaSettings =
            parse_versioned(text, HA_VERSION..=HA_VERSION, |s: &HaSettings| s.version)?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn to_toml(&self) -> Result<String, StateError> {
        to_text(self)
    }

    pub fn validate(&self) -> Result<(), StateError> {
        if self.this == self.peer {
            return Err(invalid(format!(
                "'this' and 'peer' are both {}: the peer is the other droplet's private address",
                self.this
            )));
        }
        if !(self.api.starts_with("https://") || self.api.starts_with("http://")) {
            return Err(invalid(format!(
                "'api' is {:?}: give the provider's API as a URL (https://api.digitalocean.com)",
                self.api
            )));
        }
        if self.virtual_router_id == 0 {
            return Err(invalid("'virtual_router_id' must be 1-255"));
        }
        Ok(())
    }

    /// keepalived's configuration for this droplet: VRRP over unicast (clouds carry no
    /// multicast), both droplets `BACKUP` with `nopreempt` (a recovered droplet stays the
    /// standby), and every state change handed to `notify` (`roamgw ha notify`).
    pub fn keepalived_conf(&self, roamgw: &Path, config_dir: &Path) -> String {
        let mut conf = String::new();
        let _ = write!(
            conf,
            "# Written by `roamgw ha setup`: keepalived elects the active droplet, roamgw moves the\n\
             # reserved IP {ip} and the forwards follow. Both droplets are BACKUP with nopreempt.\n\
             global_defs {{\n    \
                 script_user root\n    \
                 enable_script_security\n\
             }}\n\n\
             vrrp_instance roamgw {{\n    \
                 state BACKUP\n    \
                 nopreempt\n    \
                 interface {interface}\n    \
                 virtual_router_id {vrid}\n    \
                 priority {priority}\n    \
                 advert_int 1\n    \
                 unicast_src_ip {this}\n    \
                 unicast_peer {{\n        {peer}\n    }}\n    \
                 notify \"{roamgw} --config-dir {dir} ha notify\"\n\
             }}\n",
            ip = self.reserved_ip,
            interface = self.vrrp_interface,
            vrid = self.virtual_router_id,
            priority = self.priority,
            this = self.this,
            peer = self.peer,
            roamgw = roamgw.display(),
            dir = config_dir.display(),
        );
        conf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> HaSettings {
        HaSettings {
            version: HA_VERSION,
            provider: Provider::DigitalOcean,
            api: "https://api.digitalocean.com".into(),
            token_file: "/etc/roamgw/provider-token".into(),
            reserved_ip: Ipv4Addr::new(203, 0, 113, 50),
            droplet_id: 4242,
            this: Ipv4Addr::new(10, 10, 0, 1),
            peer: Ipv4Addr::new(10, 10, 0, 2),
            vrrp_interface: "eth1".into(),
            virtual_router_id: DEFAULT_VIRTUAL_ROUTER_ID,
            priority: 150,
            replication_port: DEFAULT_REPLICATION_PORT,
        }
    }

    #[test]
    fn settings_round_trip_and_refuse_what_they_do_not_know() {
        let text = sample().to_toml().expect("writes");
        assert_eq!(HaSettings::from_toml(&text), Ok(sample()));
        let unknown = format!("{text}\nfloating = true\n");
        assert!(HaSettings::from_toml(&unknown).is_err());
        let same = text.replace("10.10.0.2", "10.10.0.1");
        let err = HaSettings::from_toml(&same).expect_err("this == peer");
        assert!(err.to_string().contains("other droplet"), "{err}");
    }

    #[test]
    fn keepalived_gets_unicast_nopreempt_and_our_notify() {
        let conf = sample().keepalived_conf(Path::new("/usr/bin/roamgw"), Path::new("/etc/roamgw"));
        for line in [
            "state BACKUP",
            "nopreempt",
            "interface eth1",
            "unicast_src_ip 10.10.0.1",
            "        10.10.0.2\n",
            "advert_int 1",
            "priority 150",
            "notify \"/usr/bin/roamgw --config-dir /etc/roamgw ha notify\"",
            "enable_script_security",
        ] {
            assert!(conf.contains(line), "{line:?} missing from:\n{conf}");
        }
    }
}
