//! Prometheus metrics of `roamgw run --http ADDR`: `GET /metrics` in the text format.
//! Counters of the daemon's own work live in [`Monitor`] (shared with the event loop); the
//! rest is read at scrape time (the state file, the backend's per-forward counters, the
//! WireGuard device), and [`render`] is a pure function of it.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use roamgw_common::metrics::{Exposition, HistogramSnapshot, Kind};
use roamgw_common::state::GatewayState;

use crate::control::PeerView;
use crate::dataplane::{self, Counters};
use crate::monitor::Monitor;

/// Everything one scrape shows.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub version: &'static str,
    pub up: bool,
    pub in_sync: bool,
    /// (key, roamer) of each forward.
    pub forwards: Vec<(String, String)>,
    pub counters: Option<Counters>,
    pub peers: Vec<PeerView>,
    pub endpoint_changes: BTreeMap<String, u64>,
    pub drift_repairs: u64,
    pub changes: u64,
    pub apply_latency: HistogramSnapshot,
    /// Userspace WireGuard only.
    pub flood: Option<crate::flood::FloodView>,
    /// nftables backend only.
    pub kernel_handshakes_dropped: Option<u64>,
}

/// The text format (version 0.0.4).
pub fn render(s: &Snapshot) -> String {
    let mut e = Exposition::default();
    e.family(
        "roamgw_build_info",
        Kind::Gauge,
        "roamgw's version, as a label.",
    )
    .sample("roamgw_build_info", &[("version", s.version)], 1);
    e.single(
        "roamgw_up",
        Kind::Gauge,
        "1 when the data plane is up.",
        u8::from(s.up),
    );
    e.single(
        "roamgw_in_sync",
        Kind::Gauge,
        "1 when the data plane matches the state.",
        u8::from(s.in_sync),
    );
    forward_families(&mut e, s);
    roamer_families(&mut e, s);
    e.single(
        "roamgw_drift_repairs_total",
        Kind::Counter,
        "Repairs of drift (changes by others to roamgw's rules or interface).",
        s.drift_repairs,
    );
    e.single(
        "roamgw_changes_total",
        Kind::Counter,
        "Changes made live by roamgw run (from the CLI or the status page).",
        s.changes,
    );
    e.histogram(
        "roamgw_apply_duration_seconds",
        "Time to make a change live.",
        &s.apply_latency,
    );
    handshake_families(&mut e, s);
    e.finish()
}

/// What handshake floods cost their senders, where the gateway can tell.
fn handshake_families(e: &mut Exposition, s: &Snapshot) {
    const DROPPED: &str = "roamgw_handshake_initiations_dropped_total";
    let dropped = [
        ("kernel", s.kernel_handshakes_dropped),
        ("device", s.flood.map(|f| f.initiations_dropped)),
    ];
    if dropped.iter().any(|(_, v)| v.is_some()) {
        e.family(
            DROPPED,
            Kind::Counter,
            "Handshake initiations dropped unread, by the kernel (nftables) or the userspace device: their source sent more than its share in a second.",
        );
        for (by, value) in dropped {
            if let Some(value) = value {
                e.sample(DROPPED, &[("by", by)], value);
            }
        }
    }
    if let Some(flood) = &s.flood {
        e.single(
            "roamgw_cookie_replies_total",
            Kind::Counter,
            "Handshake initiations answered with a cookie (over the device's limit, no valid mac2).",
            flood.cookie_replies,
        );
    }
}

/// Packets and bytes per forward and direction.
fn forward_families(e: &mut Exposition, s: &Snapshot) {
    for (name, help, bytes) in [
        (
            "roamgw_forward_packets_total",
            "Packets of a forward, by direction (in: from clients; back: replies).",
            false,
        ),
        (
            "roamgw_forward_bytes_total",
            "Bytes of a forward, by direction.",
            true,
        ),
    ] {
        e.family(name, Kind::Counter, help);
        let Some(counters) = &s.counters else {
            continue;
        };
        for (key, to) in &s.forwards {
            let Some(c) = counters.get(key) else { continue };
            for (direction, value) in [("in", c.incoming), ("back", c.back)] {
                let labels = [
                    ("forward", key.as_str()),
                    ("roamer", to),
                    ("direction", direction),
                ];
                e.sample(
                    name,
                    &labels,
                    if bytes { value.bytes } else { value.packets },
                );
            }
        }
    }
}

/// Traffic, handshake age and endpoint changes per roamer.
fn roamer_families(e: &mut Exposition, s: &Snapshot) {
    type PeerValue = fn(&PeerView) -> Option<u64>;
    let per_roamer: [(&str, Kind, &str, PeerValue); 3] = [
        (
            "roamgw_roamer_receive_bytes_total",
            Kind::Counter,
            "Bytes received from a roamer through WireGuard.",
            |p| Some(p.rx_bytes),
        ),
        (
            "roamgw_roamer_transmit_bytes_total",
            Kind::Counter,
            "Bytes sent to a roamer through WireGuard.",
            |p| Some(p.tx_bytes),
        ),
        (
            "roamgw_roamer_last_handshake_seconds",
            Kind::Gauge,
            "Seconds since a roamer's last handshake (absent: never).",
            |p| p.last_handshake_secs,
        ),
    ];
    for (name, kind, help, value) in per_roamer {
        e.family(name, kind, help);
        for p in &s.peers {
            if let Some(v) = value(p) {
                e.sample(name, &[("roamer", &p.name)], v);
            }
        }
    }
    e.family(
        "roamgw_roamer_endpoint_changes_total",
        Kind::Counter,
        "Times a roamer's endpoint changed (it roamed) since roamgw run started.",
    );
    for p in &s.peers {
        let changes = s.endpoint_changes.get(&p.name).copied().unwrap_or(0);
        e.sample(
            "roamgw_roamer_endpoint_changes_total",
            &[("roamer", &p.name)],
            changes,
        );
    }
}

/// What a scrape reads: the state the daemon runs, and the kernel's counters.
pub fn snapshot(monitor: &Monitor) -> Snapshot {
    snapshot_of(monitor.state().as_deref(), monitor)
}

/// What a scrape shows of `state` (`None`: no usable state file) and the daemon's own counts.
pub fn snapshot_of(state: Option<&GatewayState>, monitor: &Monitor) -> Snapshot {
    let mut s = Snapshot {
        version: env!("CARGO_PKG_VERSION"),
        drift_repairs: monitor.drift_repairs.load(Ordering::Relaxed),
        changes: monitor.changes.load(Ordering::Relaxed),
        apply_latency: monitor.apply_latency.snapshot(),
        endpoint_changes: monitor.endpoint_changes(),
        flood: monitor.flood(),
        ..Snapshot::default()
    };
    let Some(state) = state else { return s };
    let view = dataplane::of(state).view(state).ok().flatten();
    s.up = view.is_some();
    s.in_sync = view.as_ref().is_some_and(|v| v.drift.is_none());
    s.kernel_handshakes_dropped = view.as_ref().and_then(|v| v.handshakes_dropped);
    s.counters = view.and_then(|v| v.counters);
    s.forwards = state
        .forwards
        .iter()
        .map(|f| (f.key(), f.to.to_string()))
        .collect();
    s.peers = peers(state, monitor);
    s
}

/// The roamers as the running device sees them: the daemon's own, as it last read it, else
/// an external one (wireguard-go) through its socket.
pub fn peers(state: &GatewayState, monitor: &Monitor) -> Vec<PeerView> {
    let status = monitor.device().or_else(|| {
        roamgw_wg::open_existing(state.gateway.interface.as_str()).and_then(|d| d.status().ok())
    });
    PeerView::for_roamers(state, status.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::nftables::observed::CounterValue;
    use crate::dataplane::ForwardCounters;

    #[test]
    fn the_text_format_has_every_family_and_labels() {
        let mut counters = Counters::new();
        counters.insert(
            "22/tcp".into(),
            ForwardCounters {
                incoming: CounterValue {
                    packets: 10,
                    bytes: 1000,
                },
                back: CounterValue {
                    packets: 8,
                    bytes: 4000,
                },
            },
        );
        let snapshot = Snapshot {
            version: "0.1.0",
            up: true,
            in_sync: true,
            forwards: vec![("22/tcp".into(), "laptop".into())],
            counters: Some(counters),
            peers: vec![PeerView {
                name: "laptop".into(),
                public_key: String::new(),
                endpoint: None,
                last_handshake_secs: Some(4),
                rx_bytes: 5,
                tx_bytes: 6,
            }],
            endpoint_changes: [("laptop".to_string(), 7)].into(),
            drift_repairs: 2,
            changes: 3,
            apply_latency: HistogramSnapshot {
                bounds: &crate::monitor::LATENCY_BUCKETS,
                buckets: vec![0, 2, 1, 0, 0, 0, 0, 0],
                count: 3,
                sum_secs: 0.009,
            },
            flood: Some(crate::flood::FloodView {
                initiations_dropped: 90_000,
                cookie_replies: 12,
                recent_dropped: 0,
                recent_cookies: 0,
            }),
            kernel_handshakes_dropped: Some(5),
        };
        let text = render(&snapshot);
        for expected in [
            "roamgw_up 1",
            r#"roamgw_forward_packets_total{forward="22/tcp",roamer="laptop",direction="in"} 10"#,
            r#"roamgw_forward_bytes_total{forward="22/tcp",roamer="laptop",direction="back"} 4000"#,
            r#"roamgw_roamer_last_handshake_seconds{roamer="laptop"} 4"#,
            r#"roamgw_apply_duration_seconds_bucket{le="0.005"} 3"#,
            r#"roamgw_apply_duration_seconds_bucket{le="+Inf"} 3"#,
            "roamgw_drift_repairs_total 2",
            r#"roamgw_roamer_endpoint_changes_total{roamer="laptop"} 7"#,
            r#"roamgw_handshake_initiations_dropped_total{by="device"} 90000"#,
            r#"roamgw_handshake_initiations_dropped_total{by="kernel"} 5"#,
            "roamgw_cookie_replies_total 12",
        ] {
            assert!(
                text.lines().any(|l| l == expected),
                "{expected} missing:\n{text}"
            );
        }
        assert_eq!(roamgw_common::metrics::check_text(&text), Ok(()));
    }
}
