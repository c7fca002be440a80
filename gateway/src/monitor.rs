//! What `roamgw run` records of its own work for `--http`: counters for Prometheus, recent
//! events and an hour of throughput for the status page. The event loop writes, the HTTP
//! thread reads; everything here is bounded. The events are also kept in the state
//! directory, so a restart (the moment one wants to know what happened before) shows them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::path::{Path, PathBuf};

use roamgw_common::fsutil;
use roamgw_common::metrics::Histogram;
use roamgw_common::state::GatewayState;
use roamgw_wg::DeviceStatus;
use serde::{Deserialize, Serialize};

/// Upper bounds of the apply-latency histogram, in seconds.
pub const LATENCY_BUCKETS: [f64; 8] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5];
/// Events the page shows (older ones are dropped).
const EVENTS_KEPT: usize = 100;
/// One throughput sample this often; an hour of them is kept.
pub const SAMPLE_SECS: u64 = 5;
const SAMPLES_KEPT: usize = (3600 / SAMPLE_SECS) as usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The daemon started (a restart, when it ran before).
    Started,
    /// A roamer's endpoint changed (it roamed), or was seen for the first time.
    Roamed,
    /// Someone else's change to roamgw's rules or interface was put back.
    DriftRepaired,
    /// A change from the CLI or the page went live.
    Changed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Unix seconds.
    pub at: u64,
    pub kind: EventKind,
    pub text: String,
}

/// The WireGuard device's byte counters summed over all roamers at one time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub at_ms: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// Throughput between two samples, as the page plots it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rate {
    /// Unix seconds at the end of the interval.
    pub at: u64,
    /// Bits per second from the roamers (replies, uploads) and to them (forwarded traffic).
    pub from_roamers_bps: f64,
    pub to_roamers_bps: f64,
}

#[derive(Debug)]
pub struct Monitor {
    pub drift_repairs: AtomicU64,
    pub changes: AtomicU64,
    pub apply_latency: Histogram,
    endpoint_changes: Mutex<BTreeMap<String, u64>>,
    events: Mutex<VecDeque<Event>>,
    /// Where the events are kept across restarts; `None`: memory only.
    events_file: Option<PathBuf>,
    samples: Mutex<VecDeque<Totals>>,
    /// The state the daemon runs, as it last published it (`None` before it did).
    state: Mutex<Option<Arc<GatewayState>>>,
    /// The daemon's own device as it last read it (every second): the page and the metrics
    /// read this, not a socket path that another process of the same interface name could own.
    device: Mutex<Option<DeviceStatus>>,
    defence: Mutex<crate::flood::Samples>,
}

impl Default for Monitor {
    fn default() -> Self {
        Monitor {
            drift_repairs: AtomicU64::new(0),
            changes: AtomicU64::new(0),
            apply_latency: Histogram::new(&LATENCY_BUCKETS),
            endpoint_changes: Mutex::default(),
            events: Mutex::default(),
            events_file: None,
            samples: Mutex::default(),
            state: Mutex::default(),
            device: Mutex::default(),
            defence: Mutex::default(),
        }
    }
}

/// The file [`Monitor::remembering`] keeps the events of the interface's daemon in.
pub fn events_path(state_dir: &Path, interface: &str) -> PathBuf {
    state_dir.join(format!("{interface}.events.json"))
}

/// A poisoned lock only means a panic elsewhere mid-update of a display list: keep going.
fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Monitor {
    /// A monitor whose events are kept in `file`, starting with those an earlier run left
    /// there. An unreadable file is said and replaced: the events are a display, not state.
    pub fn remembering(file: PathBuf) -> Self {
        let kept = match fsutil::read_to_string(&file) {
            Ok(text) => serde_json::from_str::<VecDeque<Event>>(&text).unwrap_or_else(|e| {
                tracing::warn!(file = %file.display(), "the page's events start anew: {e}");
                VecDeque::new()
            }),
            Err(e) if e.is_not_found() => VecDeque::new(),
            Err(e) => {
                tracing::warn!("the page's events start anew: {e}");
                VecDeque::new()
            }
        };
        Monitor {
            events: Mutex::new(kept),
            events_file: Some(file),
            ..Monitor::default()
        }
    }

    /// What the daemon runs now: readers (the page, metrics, the sampler) see it without
    /// reading the state file. An `Arc`, so publishing copies nothing.
    pub fn publish(&self, state: Arc<GatewayState>) {
        *locked(&self.state) = Some(state);
    }

    pub fn state(&self) -> Option<Arc<GatewayState>> {
        locked(&self.state).clone()
    }

    pub fn event(&self, at: u64, kind: EventKind, text: impl Into<String>) {
        let mut events = locked(&self.events);
        while events.len() >= EVENTS_KEPT {
            events.pop_front();
        }
        events.push_back(Event {
            at,
            kind,
            text: text.into(),
        });
        if let Some(file) = &self.events_file {
            // Events are rare (changes, repairs, roams): one small atomic write each.
            let saved = serde_json::to_vec(&*events)
                .map_err(|e| e.to_string())
                .and_then(|json| fsutil::write_private(file, &json).map_err(|e| e.to_string()));
            if let Err(e) = saved {
                tracing::debug!("cannot keep the page's events: {e}");
            }
        }
    }

    /// Newest first.
    pub fn events(&self) -> Vec<Event> {
        locked(&self.events).iter().rev().cloned().collect()
    }

    pub fn drift_repaired(&self, at: u64, what: &str) {
        self.drift_repairs.fetch_add(1, Ordering::Relaxed);
        self.event(at, EventKind::DriftRepaired, what);
    }

    pub fn change_applied(&self, at: u64, took: std::time::Duration, summary: &str) {
        self.changes.fetch_add(1, Ordering::Relaxed);
        self.apply_latency.observe(took);
        self.event(at, EventKind::Changed, summary);
    }

    /// A roamer's endpoint moved (`from: None`: first seen since the daemon remembers).
    pub fn roamed(
        &self,
        at: u64,
        roamer: &str,
        from: Option<std::net::SocketAddr>,
        to: std::net::SocketAddr,
    ) {
        let text = match from {
            Some(from) => {
                *locked(&self.endpoint_changes)
                    .entry(roamer.to_string())
                    .or_default() += 1;
                format!("{roamer} roamed: {from} → {to}")
            }
            None => format!("{roamer} connected from {to}"),
        };
        self.event(at, EventKind::Roamed, text);
    }

    pub fn endpoint_changes(&self) -> BTreeMap<String, u64> {
        locked(&self.endpoint_changes).clone()
    }

    pub fn sample(&self, totals: Totals) {
        let mut samples = locked(&self.samples);
        if samples.len() > SAMPLES_KEPT {
            samples.pop_front();
        }
        samples.push_back(totals);
    }

    /// What the daemon read of its device at `at_ms`.
    pub fn observe_device(&self, at_ms: u64, status: DeviceStatus) {
        if let Some(counts) = status.defence {
            locked(&self.defence).record(at_ms, counts);
        }
        *locked(&self.device) = Some(status);
    }

    /// The daemon's device as last read; `None` when it runs none (WireGuard is external).
    pub fn device(&self) -> Option<DeviceStatus> {
        locked(&self.device).clone()
    }

    pub fn flood(&self) -> Option<crate::flood::FloodView> {
        locked(&self.defence).view()
    }

    /// The last hour as rates between consecutive samples.
    pub fn throughput(&self) -> Vec<Rate> {
        rates(&locked(&self.samples).iter().copied().collect::<Vec<_>>())
    }
}

/// Rates between consecutive samples. A counter that went down (the device was re-created,
/// peers were re-added) restarts from zero: that interval counts what the new counter shows.
pub fn rates(samples: &[Totals]) -> Vec<Rate> {
    samples
        .windows(2)
        .filter_map(|pair| {
            let (a, b) = (pair[0], pair[1]);
            let secs = b.at_ms.checked_sub(a.at_ms).filter(|ms| *ms > 0)? as f64 / 1000.0;
            let delta = |before: u64, now: u64| {
                if now >= before {
                    now - before
                } else {
                    now
                }
            };
            Some(Rate {
                at: b.at_ms / 1000,
                from_roamers_bps: delta(a.rx_bytes, b.rx_bytes) as f64 * 8.0 / secs,
                to_roamers_bps: delta(a.tx_bytes, b.tx_bytes) as f64 * 8.0 / secs,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(at_ms: u64, rx_bytes: u64, tx_bytes: u64) -> Totals {
        Totals {
            at_ms,
            rx_bytes,
            tx_bytes,
        }
    }

    #[test]
    fn rates_table() {
        type Case = (&'static str, Vec<Totals>, Vec<(u64, f64, f64)>);
        let cases: &[Case] = &[
            ("nothing yet", vec![], vec![]),
            ("one sample", vec![totals(0, 0, 0)], vec![]),
            (
                "steady",
                vec![totals(0, 0, 0), totals(5000, 625_000, 1_250_000)],
                vec![(5, 1e6, 2e6)],
            ),
            (
                "counter reset counts from zero",
                vec![totals(0, 1000, 1000), totals(1000, 10, 0)],
                vec![(1, 80.0, 0.0)],
            ),
            (
                "a sample at the same time is skipped",
                vec![totals(1000, 0, 0), totals(1000, 5, 5)],
                vec![],
            ),
        ];
        for (name, samples, want) in cases {
            let got: Vec<(u64, f64, f64)> = rates(samples)
                .iter()
                .map(|r| (r.at, r.from_roamers_bps, r.to_roamers_bps))
                .collect();
            assert_eq!(&got, want, "{name}");
        }
    }

    #[test]
    fn events_are_bounded_and_newest_first() {
        let m = Monitor::default();
        for i in 0..(EVENTS_KEPT as u64 + 5) {
            m.event(i, EventKind::Changed, format!("change {i}"));
        }
        let events = m.events();
        assert_eq!(events.len(), EVENTS_KEPT);
        assert_eq!(events[0].text, format!("change {}", EVENTS_KEPT + 4));
    }

    #[test]
    fn events_outlive_the_monitor_in_their_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = events_path(&dir.path().join("state"), "roamgw0");
        let first = Monitor::remembering(file.clone());
        first.event(1, EventKind::Started, "started");
        first.event(2, EventKind::Changed, "add-port 22");
        let second = Monitor::remembering(file.clone());
        second.event(3, EventKind::Started, "started again");
        let texts: Vec<_> = second.events().into_iter().map(|e| e.text).collect();
        assert_eq!(texts, ["started again", "add-port 22", "started"]);
        std::fs::write(&file, "not json").expect("write");
        assert!(Monitor::remembering(file).events().is_empty());
    }

    #[test]
    fn a_move_counts_a_first_sighting_does_not() {
        let m = Monitor::default();
        let a = "198.51.100.2:40000".parse().expect("addr");
        let b = "198.51.100.3:40001".parse().expect("addr");
        m.roamed(1, "laptop", None, a);
        m.roamed(2, "laptop", Some(a), b);
        assert_eq!(m.endpoint_changes().get("laptop"), Some(&1));
        assert_eq!(m.events()[0].text, format!("laptop roamed: {a} → {b}"));
    }

    #[test]
    fn samples_keep_an_hour() {
        let m = Monitor::default();
        for i in 0..(SAMPLES_KEPT as u64 + 10) {
            m.sample(totals(i * SAMPLE_SECS * 1000, i, i));
        }
        assert_eq!(m.throughput().len(), SAMPLES_KEPT);
    }
}
