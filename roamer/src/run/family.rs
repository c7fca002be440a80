//! Which of the gateway's addresses to dial on this network: happy eyeballs (RFC 8305) with
//! WireGuard handshakes. A laptop's network may have IPv4 only (behind a CGNAT), IPv6 only (a
//! mobile carrier with NAT64), both, or IPv6 that is configured but drops packets; the only
//! test that tells is a handshake the gateway answers. So each candidate gets one initiation
//! from a socket of its own, IPv6 first and the next 250 ms later, and the first answer wins.
//! Once one has answered no further initiation is sent: each answered one moves the gateway's
//! idea of where the laptop is for a moment.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use roamgw_common::state::RoamerGateway;

/// RFC 8305's recommended Connection Attempt Delay.
pub const ATTEMPT_DELAY: Duration = Duration::from_millis(250);
/// How long the last attempt waits for its answer.
pub const ANSWER_WAIT: Duration = Duration::from_secs(1);
/// Attempts in one race (two of each family covers a name with several records per family).
const MAX_ATTEMPTS: usize = 4;

/// The gateway's addresses in the order they are tried: `endpoint`'s (its A and AAAA records
/// when it is a name) and `endpoint6`.
pub fn lookup(gateway: &RoamerGateway) -> Result<Vec<SocketAddr>, String> {
    let endpoint = &gateway.endpoint;
    let found = (endpoint.host.as_str(), endpoint.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve the gateway's endpoint {endpoint}: {e}"));
    let own: Vec<SocketAddr> = gateway
        .endpoint6
        .iter()
        .flat_map(|e| e.ip().map(|ip| SocketAddr::new(ip, e.port)))
        .collect();
    let found = match found {
        Ok(found) => found.collect(),
        // The IPv6 endpoint is an address: a network without DNS (or with broken DNS) can
        // still reach it.
        Err(_) if !own.is_empty() => Vec::new(),
        Err(e) => return Err(e),
    };
    let ordered = interleave(found.into_iter().chain(own));
    if ordered.is_empty() {
        return Err(format!("the gateway's endpoint {endpoint} has no address"));
    }
    Ok(ordered)
}

/// RFC 8305 section 4: IPv6 first, then the families alternate; repeats go.
pub fn interleave(addresses: impl IntoIterator<Item = SocketAddr>) -> Vec<SocketAddr> {
    let mut v6 = Vec::new();
    let mut v4 = Vec::new();
    for address in addresses {
        // The gateway listens on both families; a v4-mapped answer is its IPv4.
        let address = SocketAddr::new(address.ip().to_canonical(), address.port());
        let list = if address.is_ipv6() { &mut v6 } else { &mut v4 };
        if !list.contains(&address) {
            list.push(address);
        }
    }
    let mut out = Vec::with_capacity(v6.len() + v4.len());
    let (mut v6, mut v4) = (v6.into_iter(), v4.into_iter());
    loop {
        match (v6.next(), v4.next()) {
            (None, None) => return out,
            (a, b) => out.extend(a.into_iter().chain(b)),
        }
    }
}

/// Whether the candidates need a race: only when both families are there.
pub fn both_families(candidates: &[SocketAddr]) -> bool {
    candidates.iter().any(SocketAddr::is_ipv6) && candidates.iter().any(SocketAddr::is_ipv4)
}

/// How often a race looks whether it was called off.
const CANCEL_CHECK: Duration = Duration::from_millis(20);

/// How a race ended without a winner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoWinner {
    /// No candidate answered.
    Silent,
    /// `cancelled` was set: the network changed under it, and an attempt from an address
    /// that is gone would only wait out its time.
    Cancelled,
}

/// Asks `answers(candidate, wait)` of each candidate, the next `delay` after the one before
/// or as soon as it has failed (no route, say), and returns the first that says yes (with
/// how long the race took). Once one has answered, no other is asked.
pub fn race<F>(
    candidates: &[SocketAddr],
    answers: F,
    delay: Duration,
    wait: Duration,
    cancelled: &AtomicBool,
) -> Result<(SocketAddr, Duration), NoWinner>
where
    F: Fn(SocketAddr, Duration) -> bool + Send + Sync + 'static,
{
    let started = Instant::now();
    let answers = Arc::new(answers);
    let (tell, told) = mpsc::channel();
    let mut pending = candidates.iter().take(MAX_ATTEMPTS).copied();
    let mut running = 0usize;
    let mut last_start = started;
    let mut start_one = true;
    loop {
        if std::mem::take(&mut start_one) {
            if let Some(candidate) = pending.next() {
                let (answers, tell) = (Arc::clone(&answers), tell.clone());
                let spawned = std::thread::Builder::new()
                    .name("happy-eyeballs".into())
                    .spawn(move || {
                        let _ = tell.send((candidate, answers(candidate, wait)));
                    });
                match spawned {
                    Ok(_) => running += 1,
                    Err(e) => tracing::warn!("cannot start a happy-eyeballs thread: {e}"),
                }
                last_start = Instant::now();
            }
        }
        let more = pending.len() > 0;
        if running == 0 && !more {
            return Err(NoWinner::Silent);
        }
        if cancelled.load(Ordering::Relaxed) {
            return Err(NoWinner::Cancelled);
        }
        // The next start is due `delay` after the last; with none left, the last answer is.
        let until = last_start + if more { delay } else { wait };
        let left = until.saturating_duration_since(Instant::now());
        match told.recv_timeout(left.min(CANCEL_CHECK)) {
            Ok((candidate, true)) => return Ok((candidate, started.elapsed())),
            Ok((_, false)) => {
                running -= 1;
                // Failed (no route, say): the next one starts now, not after the delay.
                start_one = true;
            }
            // Not due yet: look at `cancelled` again.
            Err(_) if left > CANCEL_CHECK => {}
            Err(_) if more => start_one = true,
            Err(_) => return Err(NoWinner::Silent),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("address")
    }

    #[test]
    fn ipv6_first_then_alternating_without_repeats() {
        let cases: &[(&[&str], &[&str])] = &[
            (
                &[
                    "203.0.113.10:1",
                    "[2001:db8::1]:1",
                    "203.0.113.11:1",
                    "[2001:db8::2]:1",
                ],
                &[
                    "[2001:db8::1]:1",
                    "203.0.113.10:1",
                    "[2001:db8::2]:1",
                    "203.0.113.11:1",
                ],
            ),
            (
                &["203.0.113.10:1", "203.0.113.11:1", "[2001:db8::1]:1"],
                &["[2001:db8::1]:1", "203.0.113.10:1", "203.0.113.11:1"],
            ),
            (
                &[
                    "[2001:db8::1]:1",
                    "[2001:db8::1]:1",
                    "[::ffff:203.0.113.10]:1",
                    "203.0.113.10:1",
                ],
                &["[2001:db8::1]:1", "203.0.113.10:1"],
            ),
            (&["203.0.113.10:1"], &["203.0.113.10:1"]),
            (&[], &[]),
        ];
        for (input, expected) in cases {
            let got = interleave(input.iter().map(|a| addr(a)));
            let expected: Vec<SocketAddr> = expected.iter().map(|a| addr(a)).collect();
            assert_eq!(got, expected, "{input:?}");
        }
        assert!(both_families(&[
            addr("[2001:db8::1]:1"),
            addr("203.0.113.10:1")
        ]));
        assert!(!both_families(&[
            addr("203.0.113.10:1"),
            addr("203.0.113.11:1")
        ]));
    }

    const V6: &str = "[2001:db8::1]:51820";
    const V4: &str = "203.0.113.10:51820";

    /// A race where only the addresses in `answering` answer, at once; a silent one takes all
    /// of its wait, as an unanswered handshake does.
    fn race_with(answering: &'static [&'static str]) -> (Option<SocketAddr>, Vec<SocketAddr>) {
        race_cancelled_after(answering, None)
    }

    fn race_cancelled_after(
        answering: &'static [&'static str],
        cancel_after: Option<Duration>,
    ) -> (Option<SocketAddr>, Vec<SocketAddr>) {
        let cancelled = Arc::new(AtomicBool::new(false));
        if let Some(after) = cancel_after {
            let flag = Arc::clone(&cancelled);
            std::thread::spawn(move || {
                std::thread::sleep(after);
                flag.store(true, Ordering::Relaxed);
            });
        }
        let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = Arc::clone(&asked);
        let winner = race(
            &[addr(V6), addr(V4)],
            move |candidate, wait| {
                log.lock().expect("log").push(candidate);
                let answers = answering.iter().any(|a| addr(a) == candidate);
                if !answers {
                    std::thread::sleep(wait);
                }
                answers
            },
            Duration::from_millis(200),
            Duration::from_millis(400),
            &cancelled,
        );
        let asked = asked.lock().expect("log").clone();
        (winner.ok().map(|(w, _)| w), asked)
    }

    #[test]
    fn ipv6_that_answers_wins_and_ipv4_is_never_asked() {
        let (winner, asked) = race_with(&[V6, V4]);
        assert_eq!(winner, Some(addr(V6)));
        // The IPv4 attempt was due 200 ms in; give it the time to (wrongly) go out.
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(asked, vec![addr(V6)]);
    }

    #[test]
    fn broken_ipv6_loses_to_ipv4_after_the_attempt_delay() {
        let (winner, asked) = race_with(&[V4]);
        assert_eq!(winner, Some(addr(V4)));
        assert_eq!(asked, vec![addr(V6), addr(V4)]);
    }

    #[test]
    fn nothing_answers_no_winner() {
        assert_eq!(race_with(&[]).0, None);
    }

    #[test]
    fn a_cancelled_race_ends_without_waiting_out_its_attempts() {
        let started = Instant::now();
        let (winner, asked) = race_cancelled_after(&[], Some(Duration::from_millis(50)));
        assert_eq!(winner, None);
        assert_eq!(asked, vec![addr(V6)]);
        // The IPv6 attempt alone would take 400 ms.
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );
    }
}
