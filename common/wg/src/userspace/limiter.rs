//! Handshake initiations per source, before any cryptography: a flood from one host is dropped
//! here. Left to boringtun's limiter alone, every initiation over its global limit costs a
//! mac1 check, a cookie reply and a send, and the flood counts against every other peer's
//! handshake: one host at ~190,000 initiations/s held an established forward's round trip at
//! p50 219 ms and lost a quarter of its probes.
//!
//! Sources are counted per address (IPv6 per /64, what one host has), in windows of a second.
//! Many sources (a spoofed flood) are boringtun's to handle: its cookies prove an address, and
//! a table full of sources lets the rest through to it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Initiations one source may send in a window: a laptop sends one every 5 s while it retries,
/// so this leaves room for dozens behind one CGNAT address.
pub const PER_SOURCE: u32 = 20;
/// Sources counted at once (~0.5 MB at most).
pub const MAX_SOURCES: usize = 16_384;
const WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct SourceLimiter {
    window_start: Instant,
    counts: HashMap<IpAddr, u32>,
}

impl SourceLimiter {
    pub fn new(now: Instant) -> Self {
        SourceLimiter {
            window_start: now,
            counts: HashMap::new(),
        }
    }

    /// Whether an initiation from `source` at `now` goes on to the handshake.
    pub fn allows(&mut self, source: IpAddr, now: Instant) -> bool {
        if now.saturating_duration_since(self.window_start) >= WINDOW {
            self.counts.clear();
            self.window_start = now;
        }
        let source = host_of(source);
        if let Some(count) = self.counts.get_mut(&source) {
            *count = count.saturating_add(1);
            return *count <= PER_SOURCE;
        }
        if self.counts.len() < MAX_SOURCES {
            self.counts.insert(source, 1);
        }
        true
    }
}

/// What one host has: its IPv4 address, or its IPv6 /64.
fn host_of(source: IpAddr) -> IpAddr {
    match source {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn one_source_gets_its_share_per_window_and_others_are_untouched() {
        let start = Instant::now();
        let mut limiter = SourceLimiter::new(start);
        let passed = (0..1000)
            .filter(|_| limiter.allows(ip("198.51.100.2"), start))
            .count();
        assert_eq!(passed, PER_SOURCE as usize);
        assert!(limiter.allows(ip("100.64.0.9"), start), "another source");
        // The next window starts afresh.
        assert!(limiter.allows(ip("198.51.100.2"), start + WINDOW));
    }

    #[test]
    fn an_ipv6_host_is_its_64_and_mapped_addresses_are_ipv4() {
        let start = Instant::now();
        let mut limiter = SourceLimiter::new(start);
        for i in 0..PER_SOURCE {
            assert!(limiter.allows(ip(&format!("2001:db8:1:2::{:x}", i + 1)), start));
        }
        assert!(
            !limiter.allows(ip("2001:db8:1:2:ffff::1"), start),
            "same /64"
        );
        assert!(limiter.allows(ip("2001:db8:1:3::1"), start), "another /64");
        for _ in 0..PER_SOURCE {
            limiter.allows(ip("::ffff:192.0.2.7"), start);
        }
        assert!(!limiter.allows(ip("192.0.2.7"), start));
    }

    #[test]
    fn a_full_table_lets_new_sources_through_to_the_cookies() {
        let start = Instant::now();
        let mut limiter = SourceLimiter::new(start);
        for i in 0..MAX_SOURCES as u32 {
            limiter.allows(IpAddr::V4((0x0a00_0000 + i).into()), start);
        }
        for _ in 0..100 {
            assert!(limiter.allows(ip("203.0.113.9"), start));
        }
    }
}
