//! What `/api/status` answers: the page's view of the roamers and forwards, from one read of
//! the state.

use roamgw_common::state::{ClientIp, GatewayState};
use serde::Serialize;

use crate::control::PeerView;
use crate::monitor::{Event, Monitor, Rate, SAMPLE_SECS};

#[derive(Debug, Serialize)]
struct PageRoamer {
    name: String,
    address: String,
    endpoint: Option<String>,
    handshake_secs: Option<u64>,
    /// up: a handshake within 180 s; stale: an older one; never: none since the start.
    health: &'static str,
    rx_bytes: u64,
    tx_bytes: u64,
}

#[derive(Debug, Serialize)]
struct PageForward {
    spec: String,
    /// What the outside dials.
    public: String,
    to: String,
    local: String,
    allow_from: Vec<String>,
    client_ip: ClientIp,
    /// Absent when the backend does not count (or the plane is down).
    counters: Option<CountersView>,
}

#[derive(Debug, Serialize)]
struct CountersView {
    in_packets: u64,
    in_bytes: u64,
    back_packets: u64,
    back_bytes: u64,
}

#[derive(Debug, Serialize)]
pub(super) struct StatusView {
    version: &'static str,
    up: bool,
    in_sync: bool,
    backend: String,
    public_ip: Option<String>,
    changes_allowed: bool,
    sample_secs: u64,
    roamers: Vec<PageRoamer>,
    forwards: Vec<PageForward>,
    throughput: Vec<Rate>,
    events: Vec<Event>,
}

pub(super) fn health_of(handshake_secs: Option<u64>) -> &'static str {
    match handshake_secs {
        None => "never",
        fresh if roamgw_common::doctor::session_alive(fresh) => "up",
        Some(_) => "stale",
    }
}

fn roamer_views(state: &GatewayState, peers: Vec<PeerView>) -> Vec<PageRoamer> {
    peers
        .into_iter()
        .map(|p| PageRoamer {
            address: state
                .roamers
                .iter()
                .find(|r| r.name.as_str() == p.name)
                .map(|r| r.address.to_string())
                .unwrap_or_default(),
            health: health_of(p.last_handshake_secs),
            handshake_secs: p.last_handshake_secs,
            endpoint: p.endpoint,
            rx_bytes: p.rx_bytes,
            tx_bytes: p.tx_bytes,
            name: p.name,
        })
        .collect()
}

pub(super) fn status_view(monitor: &Monitor, changes_allowed: bool) -> StatusView {
    // The daemon's running state, published after each change: no file read per poll.
    let state = monitor.state();
    let state = state.as_deref();
    let metrics = crate::metrics::snapshot_of(state, monitor);
    let public = state
        .map(crate::change::public_address_text)
        .unwrap_or_default();
    let forwards = state.map_or_else(Vec::new, |state| {
        state
            .forwards
            .iter()
            .map(|f| {
                let c = metrics.counters.as_ref().and_then(|c| c.get(&f.key()));
                let address = state
                    .roamer(&f.to)
                    .map(|r| r.address.to_string())
                    .unwrap_or_default();
                PageForward {
                    spec: f.spec.to_string(),
                    public: format!("{public}:{}", f.spec.public),
                    to: f.to.to_string(),
                    local: format!("{address}:{}", f.spec.local),
                    allow_from: f.allow_from.iter().map(ToString::to_string).collect(),
                    client_ip: f.client_ip,
                    counters: c.map(|c| CountersView {
                        in_packets: c.incoming.packets,
                        in_bytes: c.incoming.bytes,
                        back_packets: c.back.packets,
                        back_bytes: c.back.bytes,
                    }),
                }
            })
            .collect()
    });
    StatusView {
        version: metrics.version,
        up: metrics.up,
        in_sync: metrics.in_sync,
        backend: state
            .map(|s| format!("{:?}", s.gateway.backend).to_lowercase())
            .unwrap_or_default(),
        public_ip: state
            .and_then(crate::change::public_address)
            .map(|ip| ip.to_string()),
        changes_allowed,
        sample_secs: SAMPLE_SECS,
        roamers: state.map_or_else(Vec::new, |s| roamer_views(s, metrics.peers)),
        forwards,
        throughput: monitor.throughput(),
        events: monitor.events(),
    }
}
