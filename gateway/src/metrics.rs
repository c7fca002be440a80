//! Prometheus metrics of `roamgw run --http ADDR`: `GET /metrics` in the text format.
//! Counters of the daemon's own work live in [`DaemonCounters`] (shared with the event loop);
//! the rest is read at scrape time (the state file, the backend's per-forward counters, the
//! WireGuard device), and [`render`] is a pure function of it.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use roamgw_common::state::GatewayState;
use tracing::{info, warn};

use crate::backend::{self, Counters};
use crate::control::PeerView;
use crate::store::Store;

/// Upper bounds of the apply-latency histogram, in seconds.
pub const LATENCY_BUCKETS: [f64; 8] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5];

/// What the event loop counts.
#[derive(Debug, Default)]
pub struct DaemonCounters {
    pub drift_repairs: AtomicU64,
    pub changes: AtomicU64,
    /// Cumulative counts per bucket of [`LATENCY_BUCKETS`] (Prometheus `le` semantics are
    /// applied when rendering), the count and the sum in microseconds.
    pub latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    pub latency_count: AtomicU64,
    pub latency_sum_micros: AtomicU64,
}

impl DaemonCounters {
    /// One CLI change made live in `took`.
    pub fn change_applied(&self, took: Duration) {
        self.changes.fetch_add(1, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.latency_sum_micros.fetch_add(micros, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|le| secs <= *le) {
            self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Everything one scrape shows.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub version: &'static str,
    pub up: bool,
    pub in_sync: bool,
    pub forwards: Vec<(String, String)>,
    pub counters: Option<Counters>,
    pub peers: Vec<PeerView>,
    pub drift_repairs: u64,
    pub changes: u64,
    pub latency_buckets: Vec<u64>,
    pub latency_count: u64,
    pub latency_sum_secs: f64,
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The text format (version 0.0.4).
pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(
        "roamgw_build_info",
        "gauge",
        "roamgw's version, as a label.",
    );
    family("roamgw_up", "gauge", "1 when the data plane is up.");
    family(
        "roamgw_in_sync",
        "gauge",
        "1 when the data plane matches the state.",
    );
    family(
        "roamgw_forward_packets_total",
        "counter",
        "Packets of a forward, by direction (in: from clients; back: replies).",
    );
    family(
        "roamgw_forward_bytes_total",
        "counter",
        "Bytes of a forward, by direction.",
    );
    family(
        "roamgw_roamer_receive_bytes_total",
        "counter",
        "Bytes received from a roamer through WireGuard.",
    );
    family(
        "roamgw_roamer_transmit_bytes_total",
        "counter",
        "Bytes sent to a roamer through WireGuard.",
    );
    family(
        "roamgw_roamer_last_handshake_seconds",
        "gauge",
        "Seconds since a roamer's last handshake (absent: never).",
    );
    family(
        "roamgw_drift_repairs_total",
        "counter",
        "Repairs of drift (changes by others to roamgw's rules or interface).",
    );
    family(
        "roamgw_changes_total",
        "counter",
        "CLI changes made live by roamgw run.",
    );
    family(
        "roamgw_apply_duration_seconds",
        "histogram",
        "Time to make a CLI change live.",
    );
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!(
        "roamgw_build_info{{version=\"{}\"}} 1",
        escape(s.version)
    ));
    line(format!("roamgw_up {}", u8::from(s.up)));
    line(format!("roamgw_in_sync {}", u8::from(s.in_sync)));
    if let Some(counters) = &s.counters {
        for (key, to) in &s.forwards {
            let Some(c) = counters.get(key) else { continue };
            for (direction, value) in [("in", c.incoming), ("back", c.back)] {
                let labels = format!(
                    "forward=\"{}\",roamer=\"{}\",direction=\"{direction}\"",
                    escape(key),
                    escape(to)
                );
                line(format!(
                    "roamgw_forward_packets_total{{{labels}}} {}",
                    value.packets
                ));
                line(format!(
                    "roamgw_forward_bytes_total{{{labels}}} {}",
                    value.bytes
                ));
            }
        }
    }
    for p in &s.peers {
        let roamer = format!("roamer=\"{}\"", escape(&p.name));
        line(format!(
            "roamgw_roamer_receive_bytes_total{{{roamer}}} {}",
            p.rx_bytes
        ));
        line(format!(
            "roamgw_roamer_transmit_bytes_total{{{roamer}}} {}",
            p.tx_bytes
        ));
        if let Some(secs) = p.last_handshake_secs {
            line(format!(
                "roamgw_roamer_last_handshake_seconds{{{roamer}}} {secs}"
            ));
        }
    }
    line(format!("roamgw_drift_repairs_total {}", s.drift_repairs));
    line(format!("roamgw_changes_total {}", s.changes));
    let mut cumulative = 0;
    for (le, count) in LATENCY_BUCKETS.iter().zip(&s.latency_buckets) {
        cumulative += count;
        line(format!(
            "roamgw_apply_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
        ));
    }
    line(format!(
        "roamgw_apply_duration_seconds_bucket{{le=\"+Inf\"}} {}",
        s.latency_count
    ));
    line(format!(
        "roamgw_apply_duration_seconds_sum {}",
        s.latency_sum_secs
    ));
    line(format!(
        "roamgw_apply_duration_seconds_count {}",
        s.latency_count
    ));
    out
}

/// What a scrape reads.
fn snapshot(store: &Store, counters: &DaemonCounters) -> Snapshot {
    let state: Option<GatewayState> = store.load().ok();
    let mut s = Snapshot {
        version: env!("CARGO_PKG_VERSION"),
        drift_repairs: counters.drift_repairs.load(Ordering::Relaxed),
        changes: counters.changes.load(Ordering::Relaxed),
        latency_buckets: counters
            .latency_buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect(),
        latency_count: counters.latency_count.load(Ordering::Relaxed),
        latency_sum_secs: counters.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        ..Snapshot::default()
    };
    let Some(state) = state else { return s };
    let view = backend::of(&state).view(&state).ok().flatten();
    s.up = view.is_some();
    s.in_sync = view.as_ref().is_some_and(|v| v.drift.is_none());
    s.counters = view.and_then(|v| v.counters);
    s.forwards = state
        .forwards
        .iter()
        .map(|f| (f.key(), f.to.to_string()))
        .collect();
    let status =
        roamgw_wg::open_existing(state.gateway.interface.as_str()).and_then(|d| d.status().ok());
    s.peers = PeerView::for_roamers(&state, status.as_ref());
    s
}

/// Serves `GET /metrics` on `addr` from a thread of its own, until the process ends.
pub fn serve(addr: SocketAddr, store: Store, counters: Arc<DaemonCounters>) -> std::io::Result<()> {
    let server = tiny_http::Server::http(addr).map_err(std::io::Error::other)?;
    if !addr.ip().is_loopback() {
        warn!(%addr, "metrics served on a non-local address: anyone who reaches it sees the forwards and roamers");
    }
    info!(%addr, "metrics at http://{addr}/metrics");
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let response = if request.url() == "/metrics" {
                    let text = render(&snapshot(&store, &counters));
                    tiny_http::Response::from_string(text).with_header(
                        tiny_http::Header::from_bytes(
                            &b"Content-Type"[..],
                            &b"text/plain; version=0.0.4"[..],
                        )
                        .unwrap_or_else(|_| unreachable!("a valid header")),
                    )
                } else {
                    tiny_http::Response::from_string("roamgw: GET /metrics\n").with_status_code(404)
                };
                let _ = request.respond(response);
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ForwardCounters;
    use crate::nft::observed::CounterValue;

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
            drift_repairs: 2,
            changes: 3,
            latency_buckets: vec![0, 2, 1, 0, 0, 0, 0, 0],
            latency_count: 3,
            latency_sum_secs: 0.009,
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
        ] {
            assert!(
                text.lines().any(|l| l == expected),
                "{expected} missing:\n{text}"
            );
        }
        // Every sample belongs to a declared family.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap_or_default();
            let family = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "{name} undeclared"
            );
        }
    }

    #[test]
    fn latencies_land_in_their_bucket() {
        let c = DaemonCounters::default();
        c.change_applied(Duration::from_micros(800));
        c.change_applied(Duration::from_millis(7));
        c.change_applied(Duration::from_secs(2));
        let buckets: Vec<u64> = c
            .latency_buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        assert_eq!(buckets, [1, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(c.latency_count.load(Ordering::Relaxed), 3);
    }
}
