//! Whether a handshake flood is going on, from the userspace device's counts (what it dropped
//! unread, what it answered with a cookie) over the last [`WINDOW_SECS`]: `roamgw status` says
//! so, the metrics count it.

use std::collections::VecDeque;

use roamgw_wg::HandshakeDefence;
use serde::{Deserialize, Serialize};

/// How far back "going on" looks.
pub const WINDOW_SECS: u64 = 10;

/// The device's counts since it started, and what of them came within the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FloodView {
    pub initiations_dropped: u64,
    pub cookie_replies: u64,
    pub recent_dropped: u64,
    pub recent_cookies: u64,
}

impl FloodView {
    pub fn going_on(&self) -> bool {
        self.recent_dropped > 0 || self.recent_cookies > 0
    }

    /// The line `roamgw status` shows while it goes on.
    pub fn describe(&self) -> String {
        format!(
            "handshake flood: {} initiations dropped, {} answered with a cookie in the last {WINDOW_SECS} s \
             (connected roamers keep working; docs/operations.md, \"Handshake floods\")",
            self.recent_dropped, self.recent_cookies
        )
    }
}

/// The device's counts as read once a second, for the window.
#[derive(Debug, Default)]
pub struct Samples {
    samples: VecDeque<(u64, HandshakeDefence)>,
}

impl Samples {
    /// A reading at `at_ms`; readings older than the window go.
    pub fn record(&mut self, at_ms: u64, counts: HandshakeDefence) {
        // A new device counts from zero: what came before is another device's.
        if self.samples.back().is_some_and(|(_, last)| {
            counts.initiations_dropped < last.initiations_dropped
                || counts.cookie_replies < last.cookie_replies
        }) {
            self.samples.clear();
        }
        self.samples.push_back((at_ms, counts));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| at_ms.saturating_sub(*t) > WINDOW_SECS * 1000)
        {
            self.samples.pop_front();
        }
    }

    pub fn view(&self) -> Option<FloodView> {
        let (_, first) = self.samples.front()?;
        let (_, last) = self.samples.back()?;
        Some(FloodView {
            initiations_dropped: last.initiations_dropped,
            cookie_replies: last.cookie_replies,
            recent_dropped: last.initiations_dropped - first.initiations_dropped,
            recent_cookies: last.cookie_replies - first.cookie_replies,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(dropped: u64, cookies: u64) -> HandshakeDefence {
        HandshakeDefence {
            initiations_dropped: dropped,
            cookie_replies: cookies,
        }
    }

    /// Readings as (at_ms, dropped, cookies).
    type Readings = &'static [(u64, u64, u64)];

    #[test]
    fn a_flood_is_what_the_last_ten_seconds_counted() {
        // (readings, recent (dropped, cookies), going on?)
        let cases: &[(Readings, (u64, u64), bool)] = &[
            (&[], (0, 0), false),
            (&[(0, 5, 0)], (0, 0), false),
            (&[(0, 5, 0), (1000, 5, 0)], (0, 0), false),
            (&[(0, 0, 0), (1000, 90_000, 12)], (90_000, 12), true),
            // Older than the window: gone.
            (
                &[(0, 0, 0), (1000, 90_000, 0), (12_000, 90_000, 0)],
                (0, 0),
                false,
            ),
            // A new device: its own counts only.
            (&[(0, 500, 0), (1000, 3, 1)], (0, 0), false),
        ];
        for (readings, recent, going_on) in cases {
            let mut samples = Samples::default();
            for &(at, dropped, cookies) in *readings {
                samples.record(at, counts(dropped, cookies));
            }
            let view = samples.view();
            let got = view.map_or((0, 0), |v| (v.recent_dropped, v.recent_cookies));
            assert_eq!(got, *recent, "{readings:?}");
            assert_eq!(
                view.is_some_and(|v| v.going_on()),
                *going_on,
                "{readings:?}"
            );
        }
    }
}
