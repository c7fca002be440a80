//! What `roamer run` tells the rest of the machine: a small JSON file per interface in
//! [`RUN_DIR`] (health and the gateway's resolved address, rewritten on every change), read by
//! `roamer status`, `roamer up` and `roamer down`. Live counters come from the device itself.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ipnet::Ipv4Net;
use roamgw_common::fsutil::{self, FsError};
use roamgw_common::state::RoamerConfig;
use serde::{Deserialize, Serialize};

use crate::health::{Health, Transport};

/// Tmpfs: gone after a reboot, like the tunnel.
pub const RUN_DIR: &str = "/run/roamgw";

/// Written by `roamer run`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunState {
    pub pid: u32,
    pub config: PathBuf,
    pub name: String,
    pub interface: String,
    pub tunnel_address: Ipv4Net,
    /// As configured (a name or an address).
    pub gateway_endpoint: String,
    /// What it resolved to, where the tunnel sends now.
    pub gateway_address: SocketAddr,
    /// UDP, or TCP (the gateway's fallback) when UDP got no answer.
    #[serde(default = "udp")]
    pub transport: Transport,
    /// Why the transport is TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_because: Option<String>,
    pub health: Health,
    /// Seconds since the epoch.
    pub health_since: u64,
    pub started: u64,
}

pub use roamgw_common::clock::unix_now;

/// A status file from before transports were written: UDP was the only one.
fn udp() -> Transport {
    Transport::Udp
}

pub fn path(interface: &str) -> PathBuf {
    Path::new(RUN_DIR).join(format!("roamer-{interface}.json"))
}

pub fn write(state: &RunState) -> Result<(), FsError> {
    fsutil::ensure_private_dir(Path::new(RUN_DIR))?;
    let text = serde_json::to_string_pretty(state).unwrap_or_default();
    fsutil::write_atomic(&path(&state.interface), text.as_bytes(), 0o644)
}

pub fn remove(interface: &str) {
    let _ = std::fs::remove_file(path(interface));
}

/// The state of a roamer whose process is still alive; a file left by a killed one is `None`.
pub fn read_live(interface: &str) -> Option<RunState> {
    let text = std::fs::read_to_string(path(interface)).ok()?;
    let state: RunState = serde_json::from_str(&text).ok()?;
    process_alive(state.pid).then_some(state)
}

/// Alive and not a zombie: a roamer that exited is gone even while its parent (a
/// supervisor, a test) has not reaped it yet.
pub fn process_alive(pid: u32) -> bool {
    let exists = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok());
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // "pid (comm) S ...": the state follows the last ')' (comm may hold anything).
            let after = &stat[stat.rfind(')')? + 1..];
            after.split_whitespace().next().map(|state| state == "Z")
        })
        .unwrap_or(false);
    exists && !zombie
}

/// `roamer status`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub name: String,
    pub interface: String,
    /// `kernel` or `userspace` WireGuard.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<roamgw_wg::Kind>,
    pub running: bool,
    pub tunnel_address: Ipv4Net,
    pub gateway_endpoint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_address: Option<SocketAddr>,
    /// `ipv4` or `ipv6`: the family of `gateway_address`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_family: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_for_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<Transport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_because: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_handshake_secs: Option<u64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

impl Report {
    pub fn gather(config: &RoamerConfig) -> Report {
        let interface = config.interface.to_string();
        let run = read_live(&interface);
        let peer = roamgw_wg::open_existing(&interface)
            .and_then(|device| device.status().ok())
            .and_then(|status| status.peer(&config.gateway.public_key).cloned());
        let now = SystemTime::now();
        let gateway_address = run
            .as_ref()
            .map(|r| r.gateway_address)
            .or(peer.as_ref().and_then(|p| p.endpoint));
        Report {
            name: config.name.to_string(),
            wireguard: roamgw_wg::interface_kind(&interface),
            running: run.is_some(),
            tunnel_address: config.address,
            gateway_endpoint: config.gateway.endpoint.to_string(),
            gateway_address,
            gateway_family: gateway_address.map(|a| if a.is_ipv6() { "ipv6" } else { "ipv4" }),
            health_for_secs: run
                .as_ref()
                .map(|r| unix_now().saturating_sub(r.health_since)),
            transport: run.as_ref().map(|r| r.transport),
            tcp_because: run.as_ref().and_then(|r| r.tcp_because.clone()),
            health: run.map(|r| r.health),
            last_handshake_secs: peer
                .as_ref()
                .and_then(|p| p.last_handshake)
                .and_then(|t| now.duration_since(t).ok())
                .map(|d| d.as_secs()),
            rx_bytes: peer.as_ref().map_or(0, |p| p.rx_bytes),
            tx_bytes: peer.as_ref().map_or(0, |p| p.tx_bytes),
            interface,
        }
    }

    pub fn render(&self) -> String {
        if !self.running {
            return format!(
                "roamer {}: not running on {} (start it: `roamer up`, or `systemctl start roamer`)\n",
                self.name, self.interface
            );
        }
        let health = self
            .health
            .as_ref()
            .map_or("unknown".to_string(), ToString::to_string);
        let transport = match (self.transport, &self.tcp_because) {
            (Some(transport), Some(why)) => format!("{transport} ({why})"),
            (Some(transport), None) => transport.to_string(),
            (None, _) => "unknown".to_string(),
        };
        format!(
            "roamer {}: {health} (for {})\n  interface  {}{}, address {}\n  gateway    {} -> {} over {transport}\n  \
             handshake  {}\n  transfer   {} received, {} sent\n",
            self.name,
            age(self.health_for_secs.unwrap_or(0)),
            self.interface,
            self.wireguard
                .map(|kind| format!(" ({kind} WireGuard)"))
                .unwrap_or_default(),
            self.tunnel_address,
            self.gateway_endpoint,
            self.gateway_address.map_or("unresolved".to_string(), |a| format!(
                "{a} ({})",
                crate::run::family_name(a)
            )),
            self.last_handshake_secs
                .map_or("none yet".to_string(), |s| format!("{} ago", age(s))),
            bytes(self.rx_bytes),
            bytes(self.tx_bytes),
        )
    }
}

fn age(secs: u64) -> String {
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_read_well() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }

    #[test]
    fn run_state_round_trips_and_rejects_unknown_fields() {
        let state = RunState {
            pid: 1,
            config: "/etc/roamgw/roamer.toml".into(),
            name: "laptop".into(),
            interface: "roamgw0".into(),
            tunnel_address: "192.168.32.2/24".parse().expect("net"),
            gateway_endpoint: "gw.example.net:51820".into(),
            gateway_address: "203.0.113.10:51820".parse().expect("addr"),
            transport: Transport::Tcp,
            tcp_because: Some("UDP got no answer within 2 s".into()),
            health: Health::Stale("probe unanswered for 2 s".into()),
            health_since: 5,
            started: 1,
        };
        let text = serde_json::to_string(&state).expect("json");
        assert_eq!(
            serde_json::from_str::<RunState>(&text).expect("back"),
            state
        );
        let extra = text.replacen('{', "{\"surprise\":1,", 1);
        assert!(serde_json::from_str::<RunState>(&extra).is_err());
    }
}
