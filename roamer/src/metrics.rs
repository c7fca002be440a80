//! Prometheus metrics of `roamer run --http ADDR`: `GET /metrics` in the text format. The run
//! loop records health and recoveries in [`Monitor`]; the tunnel's counters are read from the
//! device at scrape time; [`render`] is a pure function of a [`Snapshot`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use roamgw_common::metrics::{Exposition, Histogram, HistogramSnapshot, Kind, CONTENT_TYPE};
use roamgw_wg::PeerStatus;
use tracing::{info, warn};

use crate::health::{Health, Transport};

/// Upper bounds of the time-to-recover histogram, in seconds: a roam takes ~0.1 s, a lost
/// path is retried with a backoff of 1 s up to 60 s.
pub const RECOVERY_BUCKETS: [f64; 11] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
const STATES: [&str; 5] = ["connecting", "up", "stale", "down", "portal"];

fn state_name(health: &Health) -> &'static str {
    match health {
        Health::Connecting => STATES[0],
        Health::Up => STATES[1],
        Health::Stale(_) => STATES[2],
        Health::Down(_) => STATES[3],
        Health::Portal(_) => STATES[4],
    }
}

/// What the run loop records.
#[derive(Debug)]
pub struct Monitor {
    health: Mutex<&'static str>,
    over_tcp: std::sync::atomic::AtomicBool,
    over_ipv6: std::sync::atomic::AtomicBool,
    network_changes: AtomicU64,
    gateway_moves: AtomicU64,
    drift_repairs: AtomicU64,
    pub recovery: Histogram,
    /// The gateway peer as the run last read it from its own device (every tick): never
    /// through a socket path another process of the same interface name could own.
    gateway_peer: Mutex<Option<PeerStatus>>,
}

impl Default for Monitor {
    fn default() -> Self {
        Monitor {
            health: Mutex::new(STATES[0]),
            over_tcp: std::sync::atomic::AtomicBool::new(false),
            over_ipv6: std::sync::atomic::AtomicBool::new(false),
            network_changes: AtomicU64::new(0),
            gateway_moves: AtomicU64::new(0),
            drift_repairs: AtomicU64::new(0),
            recovery: Histogram::new(&RECOVERY_BUCKETS),
            gateway_peer: Mutex::new(None),
        }
    }
}

impl Monitor {
    pub fn set_gateway_peer(&self, peer: Option<PeerStatus>) {
        *self
            .gateway_peer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = peer;
    }

    pub fn set_health(&self, health: &Health) {
        *self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = state_name(health);
    }

    fn health(&self) -> &'static str {
        *self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn set_transport(&self, transport: Transport) {
        self.over_tcp
            .store(transport == Transport::Tcp, Ordering::Relaxed);
    }

    /// The family of the gateway address the tunnel dials.
    pub fn set_gateway_address(&self, address: std::net::SocketAddr) {
        self.over_ipv6.store(address.is_ipv6(), Ordering::Relaxed);
    }

    pub fn recovered(&self, took: Duration) {
        self.recovery.observe(took);
    }

    /// A network change or a wake-up made roamer probe the gateway.
    pub fn network_changed(&self) {
        self.network_changes.fetch_add(1, Ordering::Relaxed);
    }

    /// The gateway's name resolved to a new address and roamer followed it.
    pub fn gateway_moved(&self) {
        self.gateway_moves.fetch_add(1, Ordering::Relaxed);
    }

    /// Something removed the tunnel interface or part of the laptop's routing for it, and
    /// roamer put it back.
    pub fn drift_repaired(&self) {
        self.drift_repairs.fetch_add(1, Ordering::Relaxed);
    }
}

/// Everything one scrape shows.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub version: &'static str,
    pub roamer: String,
    pub health: &'static str,
    pub over_tcp: bool,
    pub over_ipv6: bool,
    pub network_changes: u64,
    pub gateway_moves: u64,
    pub drift_repairs: u64,
    pub recovery: HistogramSnapshot,
    /// The tunnel's counters for the gateway peer; `None` when the device cannot be read.
    pub rx_bytes: Option<u64>,
    pub tx_bytes: Option<u64>,
    pub handshake_secs: Option<u64>,
}

pub fn render(s: &Snapshot) -> String {
    let mut e = Exposition::default();
    let roamer = [("roamer", s.roamer.as_str())];
    e.family(
        "roamer_build_info",
        Kind::Gauge,
        "roamer's version and name, as labels.",
    )
    .sample(
        "roamer_build_info",
        &[("version", s.version), ("roamer", &s.roamer)],
        1,
    );
    let subject = roamer[0];
    e.state_set(
        "roamer_health",
        "The tunnel's health: 1 for the current state (connecting, up, stale, down).",
        subject,
        "state",
        &STATES,
        s.health,
    );
    e.state_set(
        "roamer_transport",
        "How the tunnel reaches the gateway: 1 for the current one (udp, or tcp: the gateway's fallback when UDP gets no answer).",
        subject,
        "transport",
        &["udp", "tcp"],
        if s.over_tcp { "tcp" } else { "udp" },
    );
    e.state_set(
        "roamer_gateway_family",
        "Which of the gateway's addresses the tunnel dials: 1 for the current family (ipv4, ipv6; chosen per network by a happy-eyeballs race when the gateway has both).",
        subject,
        "family",
        &["ipv4", "ipv6"],
        if s.over_ipv6 { "ipv6" } else { "ipv4" },
    );
    e.family(
        "roamer_network_changes_total",
        Kind::Counter,
        "Network changes and wake-ups after which roamer probed the gateway.",
    )
    .sample("roamer_network_changes_total", &roamer, s.network_changes);
    e.family(
        "roamer_gateway_moves_total",
        Kind::Counter,
        "Times the gateway's name resolved to a new address and roamer followed it.",
    )
    .sample("roamer_gateway_moves_total", &roamer, s.gateway_moves);
    e.family(
        "roamer_drift_repairs_total",
        Kind::Counter,
        "Times roamer found its interface, routing rules, routes or UDP reply table changed by someone else and put them back.",
    )
    .sample("roamer_drift_repairs_total", &roamer, s.drift_repairs);
    e.histogram(
        "roamer_recovery_duration_seconds",
        "From a network change, a wake-up or an unanswered probe until data flows through the tunnel again (_count: recoveries).",
        &s.recovery,
    );
    for (name, kind, help, value) in [
        (
            "roamer_receive_bytes_total",
            Kind::Counter,
            "Bytes received from the gateway through the tunnel.",
            s.rx_bytes,
        ),
        (
            "roamer_transmit_bytes_total",
            Kind::Counter,
            "Bytes sent to the gateway through the tunnel.",
            s.tx_bytes,
        ),
        (
            "roamer_last_handshake_seconds",
            Kind::Gauge,
            "Seconds since the last handshake with the gateway (absent: none yet).",
            s.handshake_secs,
        ),
    ] {
        e.family(name, kind, help);
        if let Some(v) = value {
            e.sample(name, &roamer, v);
        }
    }
    e.finish()
}

fn snapshot(monitor: &Monitor, roamer: &str) -> Snapshot {
    let peer = monitor
        .gateway_peer
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    Snapshot {
        version: env!("CARGO_PKG_VERSION"),
        roamer: roamer.to_string(),
        health: monitor.health(),
        over_tcp: monitor.over_tcp.load(Ordering::Relaxed),
        over_ipv6: monitor.over_ipv6.load(Ordering::Relaxed),
        network_changes: monitor.network_changes.load(Ordering::Relaxed),
        gateway_moves: monitor.gateway_moves.load(Ordering::Relaxed),
        drift_repairs: monitor.drift_repairs.load(Ordering::Relaxed),
        recovery: monitor.recovery.snapshot(),
        rx_bytes: peer.as_ref().map(|p| p.rx_bytes),
        tx_bytes: peer.as_ref().map(|p| p.tx_bytes),
        handshake_secs: peer
            .and_then(|p| p.last_handshake)
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .map(|d| d.as_secs()),
    }
}

/// Serves `GET /metrics` on `addr` from a thread of its own, until the process ends.
pub fn serve(addr: SocketAddr, monitor: Arc<Monitor>, roamer: String) -> std::io::Result<()> {
    let server = tiny_http::Server::http(addr).map_err(std::io::Error::other)?;
    if !addr.ip().is_loopback() {
        warn!(%addr, "metrics served on a non-local address: anyone who reaches it sees the tunnel's state");
    }
    info!(%addr, "metrics at http://{addr}/metrics");
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let (status, content_type, body) = if request.url() == "/metrics" {
                    let s = snapshot(&monitor, &roamer);
                    (200, CONTENT_TYPE, render(&s))
                } else {
                    (404, "text/plain", "roamer: GET /metrics\n".to_string())
                };
                let mut response = tiny_http::Response::from_string(body).with_status_code(status);
                if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", content_type) {
                    response.add_header(h);
                }
                let _ = request.respond(response);
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_has_every_family() {
        let monitor = Monitor::default();
        monitor.set_health(&Health::Stale("probe unanswered".into()));
        monitor.recovered(Duration::from_millis(120));
        monitor.network_changed();
        let s = Snapshot {
            version: "0.1.0",
            roamer: "laptop".into(),
            health: monitor.health(),
            over_tcp: true,
            over_ipv6: true,
            network_changes: monitor.network_changes.load(Ordering::Relaxed),
            gateway_moves: 0,
            drift_repairs: 2,
            recovery: monitor.recovery.snapshot(),
            rx_bytes: Some(10),
            tx_bytes: Some(20),
            handshake_secs: None,
        };
        let text = render(&s);
        for expected in [
            r#"roamer_health{roamer="laptop",state="stale"} 1"#,
            r#"roamer_health{roamer="laptop",state="up"} 0"#,
            r#"roamer_transport{roamer="laptop",transport="tcp"} 1"#,
            r#"roamer_transport{roamer="laptop",transport="udp"} 0"#,
            r#"roamer_gateway_family{roamer="laptop",family="ipv6"} 1"#,
            r#"roamer_gateway_family{roamer="laptop",family="ipv4"} 0"#,
            r#"roamer_recovery_duration_seconds_bucket{le="0.25"} 1"#,
            "roamer_recovery_duration_seconds_count 1",
            r#"roamer_network_changes_total{roamer="laptop"} 1"#,
            r#"roamer_drift_repairs_total{roamer="laptop"} 2"#,
            r#"roamer_receive_bytes_total{roamer="laptop"} 10"#,
        ] {
            assert!(text.lines().any(|l| l == expected), "{expected}:\n{text}");
        }
        assert!(!text.contains("roamer_last_handshake_seconds{"));
        assert_eq!(roamgw_common::metrics::check_text(&text), Ok(()));
    }
}
