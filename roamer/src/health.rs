//! When to probe, re-resolve and re-handshake: a pure state machine, so every path through it
//! is a table test. `run` feeds it observations and events and carries out its actions.
//!
//! Liveness is "the tunnel delivered data to us": boringtun counts only decrypted IP packets
//! in rx_bytes (not keepalives, not handshakes), and a probe to the gateway's tunnel address
//! is answered by the gateway's kernel (ICMP port unreachable), so an answered probe means
//! the whole path works, keys included.
//!
//! Times are seconds on CLOCK_BOOTTIME as [`Duration`]s since an arbitrary start, so a
//! suspended laptop sees the time it slept.

use std::net::SocketAddr;
use std::time::Duration;

pub use roamgw_wg::tcp::portal::Reached;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Probe after this long without data from the gateway: the keepalive interval, at least
    /// [`MIN_PROBE_INTERVAL`].
    pub probe_interval: Duration,
    /// A probe unanswered for this long means the path looks dead.
    pub probe_timeout: Duration,
    /// Re-resolve the gateway's name this often even when all is well.
    pub dns_refresh: Duration,
    /// Recovery attempts back off from `backoff_min` to `backoff_max` (with ±20 % jitter).
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Up this long in one piece: forget earlier failures (the next outage starts at
    /// `backoff_min` again).
    pub healthy_reset: Duration,
    /// Unanswered this long: down, not just stale.
    pub down_after: Duration,
    /// Over TCP, ask this often whether UDP gets through again.
    pub udp_recheck: Duration,
}

/// While a captive portal answers in the gateway's place: how often to ask whether the login
/// happened (one short TCP exchange with the gateway's port).
pub const PORTAL_RECHECK: Duration = Duration::from_secs(2);

/// Keepalives are one packet out and keep the NAT's mapping (and the gateway's idea of the
/// endpoint) fresh; a probe costs a round trip and only finds a gateway that moved or
/// restarted, which is rarer: a short keepalive does not make probes more frequent than this.
pub const MIN_PROBE_INTERVAL: Duration = Duration::from_secs(10);

impl Timing {
    pub fn new(keepalive_secs: u16) -> Self {
        let probe_interval = match keepalive_secs {
            0 => Duration::from_secs(25),
            secs => Duration::from_secs(u64::from(secs)).max(MIN_PROBE_INTERVAL),
        };
        Timing {
            probe_interval,
            probe_timeout: Duration::from_secs(2),
            dns_refresh: Duration::from_secs(300),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            healthy_reset: Duration::from_secs(60),
            down_after: Duration::from_secs(60),
            udp_recheck: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "state", content = "reason")]
pub enum Health {
    /// Started, first answer not seen yet.
    Connecting,
    Up,
    /// The last probe went unanswered; recovering.
    Stale(String),
    /// Unanswered for [`Timing::down_after`] or more.
    Down(String),
    /// The network answers in the gateway's place until someone logs in at this URL.
    Portal(String),
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Health::Connecting => f.write_str("connecting"),
            Health::Up => f.write_str("up"),
            Health::Stale(why) => write!(f, "stale: {why}"),
            Health::Down(why) => write!(f, "down: {why}"),
            Health::Portal(url) => write!(f, "captive portal: log in at {url}"),
        }
    }
}

/// How the tunnel's packets reach the gateway: UDP, or the gateway's WireGuard over TCP
/// when UDP gets no answer (`roamgw tcp-fallback`). UDP is better (no head-of-line blocking),
/// so the machine goes back to it whenever it may work again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The device's received data bytes for the gateway, read every tick.
    Tick {
        rx_bytes: u64,
    },
    /// A link, address or route of the laptop changed, or it woke from suspend; with the
    /// device's rx counter read at that moment, so data that came before the change (and
    /// was not yet seen by a tick) is not taken for an answer over the new path.
    NetworkChanged {
        rx_bytes: u64,
    },
    Resolved(SocketAddr),
    ResolveFailed(String),
    /// What [`Action::CheckUdp`] found: whether the gateway answered over UDP.
    UdpChecked(bool),
    /// What [`Action::CheckPortal`] found.
    PortalChecked(Reached),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// One datagram to the gateway's tunnel address: sends from the laptop's current source
    /// address (the gateway learns it) and asks for an answer.
    Probe,
    /// Look the gateway's name up again (off the loop; answer with Resolved/ResolveFailed).
    Resolve,
    /// Re-add the gateway peer with this endpoint (a fresh session, so a handshake starts at
    /// once), over the machine's transport, then probe.
    Reconnect(SocketAddr),
    /// The same at the endpoint it has, over this transport.
    Switch(Transport),
    /// Over TCP: ask, beside the tunnel, whether UDP gets through (answer with UdpChecked).
    CheckUdp,
    /// Ask the gateway's TCP port whether it is the gateway that answers, or a captive portal
    /// (answer with PortalChecked).
    CheckPortal,
}

/// Why a resolve was asked for: decides what an unchanged answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Purpose {
    Refresh,
    NetworkChange,
    Recovery,
}

#[derive(Debug)]
pub struct Machine {
    timing: Timing,
    endpoint: SocketAddr,
    health: Health,
    health_since: Duration,
    started: Duration,
    rx_bytes: u64,
    last_answer: Option<Duration>,
    probe_sent: Option<Duration>,
    resolving: Option<Purpose>,
    /// The network changed while a resolve was out: its answer (a race run on the network
    /// as it was, perhaps before its addresses were all up) is followed by another.
    resolve_again: bool,
    next_refresh: Duration,
    failures: u32,
    next_recovery: Option<Duration>,
    jitter: u64,
    /// Whether the gateway takes WireGuard over TCP.
    fallback: bool,
    transport: Transport,
    /// Why the transport is TCP.
    tcp_because: Option<String>,
    /// Over TCP: when to ask whether UDP works again (`None` while a check is out).
    next_udp_check: Option<Duration>,
    /// The captive portal's login page, while one answers in the gateway's place.
    portal: Option<String>,
    /// When to ask again whether the portal still answers (`None` while a check is out).
    next_portal_check: Option<Duration>,
}

impl Machine {
    /// `now` is when the tunnel came up and was poked.
    pub fn new(timing: Timing, endpoint: SocketAddr, now: Duration, seed: u64) -> Self {
        Machine {
            timing,
            endpoint,
            health: Health::Connecting,
            health_since: now,
            started: now,
            rx_bytes: 0,
            last_answer: None,
            probe_sent: Some(now),
            resolving: None,
            resolve_again: false,
            next_refresh: now + timing.dns_refresh,
            failures: 0,
            next_recovery: None,
            jitter: seed | 1,
            fallback: false,
            transport: Transport::Udp,
            tcp_because: None,
            next_udp_check: None,
            portal: None,
            next_portal_check: None,
        }
    }

    /// The gateway takes WireGuard over TCP too: unanswered UDP switches to it.
    pub fn with_tcp_fallback(mut self) -> Self {
        self.fallback = true;
        self
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Why the tunnel runs over TCP, while it does.
    pub fn tcp_because(&self) -> Option<&str> {
        self.tcp_because.as_deref()
    }

    /// The transport and what goes with it: why TCP, and when to ask whether UDP works again.
    fn set_transport(&mut self, transport: Transport, now: Duration) {
        self.transport = transport;
        self.next_udp_check = match transport {
            Transport::Udp => {
                self.tcp_because = None;
                None
            }
            Transport::Tcp => Some(now + self.timing.udp_recheck),
        };
    }

    fn switch(&mut self, transport: Transport, now: Duration, actions: &mut Vec<Action>) {
        self.set_transport(transport, now);
        // The peer is added afresh, its counters from zero (as in `reconnect`): the old count
        // must not read as an answer.
        self.rx_bytes = 0;
        self.probe_sent = Some(now);
        actions.push(Action::Switch(transport));
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    pub fn health_since(&self) -> Duration {
        self.health_since
    }

    pub fn endpoint(&self) -> SocketAddr {
        self.endpoint
    }

    /// A probe is out: worth looking at the counters often, so the answer is seen at once.
    pub fn awaiting_answer(&self) -> bool {
        self.probe_sent.is_some()
    }

    fn set_health(&mut self, health: Health, now: Duration) {
        // A portal that was found stays the news until the gateway answers again.
        if self.portal.is_some() && matches!(health, Health::Stale(_) | Health::Down(_)) {
            return;
        }
        if self.health != health {
            self.health = health;
            self.health_since = now;
        }
    }

    /// Whether the resolve asked for is only the periodic one, with the tunnel fine: the
    /// address in use may stay (no race).
    pub fn refreshing(&self) -> bool {
        self.resolving == Some(Purpose::Refresh)
    }

    fn resolve(&mut self, purpose: Purpose, actions: &mut Vec<Action>) {
        match self.resolving {
            Some(pending) => {
                self.resolving = Some(pending.max(purpose));
                self.resolve_again |= purpose == Purpose::NetworkChange;
            }
            None => {
                self.resolving = Some(purpose);
                actions.push(Action::Resolve);
            }
        }
    }

    fn reconnect(&mut self, endpoint: SocketAddr, now: Duration, actions: &mut Vec<Action>) {
        self.endpoint = endpoint;
        // A fresh peer starts counting from zero.
        self.rx_bytes = 0;
        self.probe_sent = Some(now);
        actions.push(Action::Reconnect(endpoint));
    }

    /// xorshift: jitter needs no quality, only to keep many laptops from retrying in step.
    fn backoff(&mut self) -> Duration {
        self.jitter ^= self.jitter << 13;
        self.jitter ^= self.jitter >> 7;
        self.jitter ^= self.jitter << 17;
        let exponent = self.failures.saturating_sub(1).min(16);
        let base = self
            .timing
            .backoff_min
            .saturating_mul(1 << exponent)
            .min(self.timing.backoff_max);
        // 0.8 .. 1.2
        let factor = 0.8 + (self.jitter % 401) as f64 / 1000.0;
        base.mul_f64(factor)
    }

    fn start_recovery(&mut self, now: Duration, actions: &mut Vec<Action>) {
        self.failures += 1;
        let delay = self.backoff();
        self.next_recovery = Some(now + delay);
        self.resolve(Purpose::Recovery, actions);
    }

    pub fn step(&mut self, now: Duration, input: Input) -> Vec<Action> {
        let mut actions = Vec::new();
        match input {
            Input::Tick { rx_bytes } => self.tick(now, rx_bytes, &mut actions),
            Input::NetworkChanged { rx_bytes } => {
                // A new network deserves an immediate try, whatever the backoff said; and
                // over UDP, which it may pass.
                self.rx_bytes = rx_bytes;
                self.failures = 0;
                self.next_recovery = None;
                if self.transport == Transport::Tcp {
                    self.switch(Transport::Udp, now, &mut actions);
                } else {
                    self.probe_sent = Some(now);
                    actions.push(Action::Probe);
                }
                self.resolve(Purpose::NetworkChange, &mut actions);
            }
            Input::Resolved(address) => {
                let purpose = self.resolving.take();
                if address != self.endpoint || purpose == Some(Purpose::Recovery) {
                    self.reconnect(address, now, &mut actions);
                } else if purpose == Some(Purpose::NetworkChange) {
                    // The answer may have come from a race, whose handshake the gateway took
                    // as ours for a moment: a packet through the tunnel moves it back.
                    self.probe_sent.get_or_insert(now);
                    actions.push(Action::Probe);
                }
            }
            Input::PortalChecked(reached) => self.portal_checked(reached, now, &mut actions),
            Input::UdpChecked(answered) => {
                if self.transport == Transport::Tcp {
                    if answered {
                        self.switch(Transport::Udp, now, &mut actions);
                    } else {
                        self.next_udp_check = Some(now + self.timing.udp_recheck);
                        // The gateway took the check's address as ours: a packet through the
                        // tunnel (over TCP) moves it back at once.
                        self.probe_sent = Some(now);
                        actions.push(Action::Probe);
                    }
                }
            }
            Input::ResolveFailed(_) => {
                // Recovering anyway: the gateway may be back at the address we have.
                if self.resolving.take() == Some(Purpose::Recovery) {
                    self.reconnect(self.endpoint, now, &mut actions);
                }
            }
        }
        if self.resolving.is_none() && std::mem::take(&mut self.resolve_again) {
            self.resolve(Purpose::NetworkChange, &mut actions);
        }
        actions
    }

    /// A portal found: say so and ask again every [`PORTAL_RECHECK`]. The gateway answering
    /// after one: the login happened, so a new network as far as the tunnel goes.
    fn portal_checked(&mut self, reached: Reached, now: Duration, actions: &mut Vec<Action>) {
        match reached {
            Reached::Portal(url) => {
                self.portal = Some(url.clone());
                self.set_health(Health::Portal(url), now);
                self.next_portal_check = Some(now + PORTAL_RECHECK);
            }
            Reached::Gateway if self.portal.is_some() => {
                self.portal = None;
                self.next_portal_check = None;
                self.failures = 0;
                self.next_recovery = None;
                self.set_health(
                    Health::Stale("logged in to the portal: connecting".into()),
                    now,
                );
                self.switch(Transport::Udp, now, actions);
                self.resolve(Purpose::NetworkChange, actions);
            }
            // Gone (another network), or never there: the usual recovery goes on.
            Reached::Gateway | Reached::Nothing(_) => {
                self.portal = None;
                self.next_portal_check = None;
            }
        }
    }

    /// The probe got no answer in time. Over UDP with a fallback: TCP at once, no backoff (a
    /// network that blocks UDP is not an outage of the gateway). Otherwise stale and the
    /// recovery; unanswered over TCP too, the next try is UDP again (the gateway may be down,
    /// or this network may pass UDP now), then TCP, and so on; and a network that answers TCP
    /// in the gateway's place may be a captive portal.
    fn probe_unanswered(&mut self, now: Duration, actions: &mut Vec<Action>) {
        let waited = self.timing.probe_timeout.as_secs();
        if self.fallback && self.transport == Transport::Udp {
            self.tcp_because = Some(format!("UDP got no answer within {waited} s"));
            self.switch(Transport::Tcp, now, actions);
            self.set_health(
                Health::Stale(format!("no answer over UDP within {waited} s: trying TCP")),
                now,
            );
            return;
        }
        self.probe_sent = None;
        if self.transport == Transport::Tcp {
            self.set_transport(Transport::Udp, now);
            if self.portal.is_none() {
                actions.push(Action::CheckPortal);
            }
        }
        let why = match self.last_answer {
            None => "no answer from the gateway yet".to_string(),
            Some(_) => format!("probe unanswered for {waited} s"),
        };
        self.set_health(Health::Stale(why), now);
        self.start_recovery(now, actions);
    }

    fn tick(&mut self, now: Duration, rx_bytes: u64, actions: &mut Vec<Action>) {
        if rx_bytes != self.rx_bytes {
            self.rx_bytes = rx_bytes;
            self.last_answer = Some(now);
            self.probe_sent = None;
            self.next_recovery = None;
            self.portal = None;
            self.next_portal_check = None;
            self.set_health(Health::Up, now);
        }
        if self.next_portal_check.is_some_and(|at| now >= at) {
            self.next_portal_check = None;
            actions.push(Action::CheckPortal);
        }
        if self.health == Health::Up
            && now.saturating_sub(self.health_since) >= self.timing.healthy_reset
        {
            self.failures = 0;
        }
        if self
            .probe_sent
            .is_some_and(|sent| now.saturating_sub(sent) >= self.timing.probe_timeout)
            && self.next_recovery.is_none()
        {
            self.probe_unanswered(now, actions);
        }
        if let Some(at) = self.next_recovery {
            if now >= at {
                self.start_recovery(now, actions);
            }
        }
        let idle_since = self.last_answer.unwrap_or(self.started);
        if matches!(self.health, Health::Stale(_))
            && now.saturating_sub(idle_since) >= self.timing.down_after
        {
            let why = match self.last_answer {
                None => "the gateway never answered".to_string(),
                Some(_) => format!("no answer for over {} s", self.timing.down_after.as_secs()),
            };
            self.set_health(Health::Down(why), now);
        }
        if self.health == Health::Up
            && self.probe_sent.is_none()
            && now.saturating_sub(idle_since) >= self.timing.probe_interval
        {
            self.probe_sent = Some(now);
            actions.push(Action::Probe);
        }
        if now >= self.next_refresh {
            self.next_refresh = now + self.timing.dns_refresh;
            self.resolve(Purpose::Refresh, actions);
        }
        if self.transport == Transport::Tcp
            && self.health == Health::Up
            && self.next_udp_check.is_some_and(|at| now >= at)
        {
            self.next_udp_check = None;
            actions.push(Action::CheckUdp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: &str = "203.0.113.10:51820";
    const MOVED: &str = "198.51.100.77:51820";

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    fn machine() -> Machine {
        Machine::new(Timing::new(10), addr(GW), secs(0.0), 42)
    }

    #[test]
    fn a_short_keepalive_does_not_make_probes_more_frequent() {
        for (keepalive, probe) in [(2, 10), (10, 10), (25, 25), (0, 25)] {
            assert_eq!(
                Timing::new(keepalive).probe_interval,
                Duration::from_secs(probe),
                "keepalive {keepalive}"
            );
        }
    }

    /// Feeds (time, input) pairs; returns every action with the time it was asked for.
    fn run(m: &mut Machine, inputs: &[(f64, Input)]) -> Vec<(f64, Action)> {
        let mut out = Vec::new();
        for (at, input) in inputs {
            for action in m.step(secs(*at), input.clone()) {
                out.push((*at, action));
            }
        }
        out
    }

    fn ticks(from: f64, to: f64, rx_bytes: u64) -> Vec<(f64, Input)> {
        let mut out = Vec::new();
        let mut t = from;
        while t <= to {
            out.push((t, Input::Tick { rx_bytes }));
            t += 0.5;
        }
        out
    }

    #[test]
    fn unanswered_udp_switches_to_tcp_at_once_and_a_new_network_tries_udp_again() {
        let mut m = machine().with_tcp_fallback();
        // No answer over UDP in 2 s: TCP, no backoff and no resolve.
        let actions = run(&mut m, &ticks(0.5, 2.0, 0));
        assert_eq!(actions, vec![(2.0, Action::Switch(Transport::Tcp))]);
        assert_eq!(m.transport(), Transport::Tcp);
        assert_eq!(m.tcp_because(), Some("UDP got no answer within 2 s"));
        assert!(matches!(m.health(), Health::Stale(_)), "{:?}", m.health());
        // TCP answers: up, over TCP.
        run(&mut m, &ticks(2.5, 3.0, 200));
        assert_eq!((m.health(), m.transport()), (&Health::Up, Transport::Tcp));
        // Another network: UDP first again, then TCP once more when it stays silent.
        let actions = run(&mut m, &[(5.0, Input::NetworkChanged { rx_bytes: 0 })]);
        assert_eq!(
            actions,
            vec![
                (5.0, Action::Switch(Transport::Udp)),
                (5.0, Action::Resolve)
            ]
        );
        assert_eq!(m.tcp_because(), None);
        // The re-added peer counts from zero: no answer, so TCP again after 2 s.
        let actions = run(&mut m, &ticks(5.5, 7.0, 0));
        assert_eq!(actions, vec![(7.0, Action::Switch(Transport::Tcp))]);
    }

    #[test]
    fn over_tcp_udp_is_checked_every_30_s_and_taken_when_it_answers() {
        let mut m = machine().with_tcp_fallback();
        run(&mut m, &ticks(0.5, 2.0, 0));
        // Traffic keeps it up; the check is due 30 s after the switch.
        let traffic: Vec<_> = (5u32..=64)
            .map(|i| {
                (
                    f64::from(i) * 0.5,
                    Input::Tick {
                        rx_bytes: u64::from(i),
                    },
                )
            })
            .collect();
        let actions = run(&mut m, &traffic);
        assert_eq!(actions, vec![(32.0, Action::CheckUdp)]);
        // No answer: a probe through the tunnel, and the next check 30 s later.
        let actions = run(&mut m, &[(34.0, Input::UdpChecked(false))]);
        assert_eq!(actions, vec![(34.0, Action::Probe)]);
        assert_eq!(m.transport(), Transport::Tcp);
        let actions = run(&mut m, &[(64.0, Input::Tick { rx_bytes: 1000 })]);
        assert_eq!(actions, vec![(64.0, Action::CheckUdp)]);
        // An answer: back to UDP.
        let actions = run(&mut m, &[(64.5, Input::UdpChecked(true))]);
        assert_eq!(actions, vec![(64.5, Action::Switch(Transport::Udp))]);
        assert_eq!((m.transport(), m.tcp_because()), (Transport::Udp, None));
    }

    #[test]
    fn a_portal_is_said_until_the_login_then_the_tunnel_connects() {
        let url = "http://portal.example/login";
        let mut m = machine().with_tcp_fallback();
        // UDP unanswered -> TCP; TCP unanswered too -> recovery, and the portal check.
        run(&mut m, &ticks(0.5, 2.0, 0));
        let actions = run(&mut m, &ticks(2.5, 4.0, 0));
        assert_eq!(
            actions,
            vec![(4.0, Action::CheckPortal), (4.0, Action::Resolve)]
        );
        run(
            &mut m,
            &[(4.2, Input::PortalChecked(Reached::Portal(url.into())))],
        );
        assert_eq!(m.health(), &Health::Portal(url.into()));
        assert_eq!(
            m.health().to_string(),
            "captive portal: log in at http://portal.example/login"
        );
        // Recovery attempts go on underneath without hiding it; the portal is asked again.
        let actions = run(&mut m, &ticks(4.5, 6.5, 0));
        assert!(actions.contains(&(6.5, Action::CheckPortal)), "{actions:?}");
        run(&mut m, &ticks(7.0, 70.0, 0));
        assert_eq!(
            m.health(),
            &Health::Portal(url.into()),
            "not down while the portal answers"
        );
        // The login: the gateway answers the check; UDP first, as on a new network (the
        // recovery's resolve is still out, so no second one).
        let actions = run(&mut m, &[(71.0, Input::PortalChecked(Reached::Gateway))]);
        assert_eq!(actions, vec![(71.0, Action::Switch(Transport::Udp))]);
        run(&mut m, &[(71.5, Input::Tick { rx_bytes: 10 })]);
        assert_eq!(m.health(), &Health::Up);
    }

    #[test]
    fn unanswered_tcp_recovers_over_udp_first() {
        let mut m = machine().with_tcp_fallback();
        run(&mut m, &ticks(0.5, 2.0, 0));
        run(&mut m, &ticks(2.5, 3.0, 200));
        // Idle, probed at 12.5 over TCP, unanswered: the usual recovery, over UDP.
        let actions = run(&mut m, &ticks(3.5, 15.0, 200));
        assert_eq!(
            actions,
            vec![
                (12.5, Action::Probe),
                (14.5, Action::CheckPortal),
                (14.5, Action::Resolve)
            ]
        );
        assert_eq!(m.transport(), Transport::Udp);
        let actions = run(&mut m, &[(15.1, Input::Resolved(addr(GW)))]);
        assert_eq!(actions, vec![(15.1, Action::Reconnect(addr(GW)))]);
    }

    #[test]
    fn without_a_fallback_unanswered_udp_is_a_recovery() {
        let mut m = machine();
        let actions = run(&mut m, &ticks(0.5, 2.0, 0));
        assert_eq!(actions, vec![(2.0, Action::Resolve)]);
        assert_eq!(m.transport(), Transport::Udp);
    }

    #[test]
    fn answered_start_is_up_and_probes_only_when_idle() {
        let mut m = machine();
        let mut inputs = vec![(0.1, Input::Tick { rx_bytes: 100 })];
        inputs.extend(ticks(0.5, 10.0, 100));
        let actions = run(&mut m, &inputs);
        assert_eq!(m.health(), &Health::Up);
        assert!(actions.is_empty(), "{actions:?}");
        let actions = run(&mut m, &ticks(10.5, 10.5, 100));
        assert_eq!(actions, vec![(10.5, Action::Probe)]);
        // Answered: up, and the next probe is one interval later.
        let actions = run(&mut m, &ticks(11.0, 20.0, 228));
        assert!(actions.is_empty(), "{actions:?}");
        assert_eq!(m.health(), &Health::Up);
    }

    #[test]
    fn unanswered_probe_goes_stale_resolves_and_reconnects() {
        let mut m = machine();
        run(&mut m, &[(0.1, Input::Tick { rx_bytes: 100 })]);
        let actions = run(&mut m, &ticks(0.5, 12.5, 100));
        assert_eq!(
            actions,
            vec![(10.5, Action::Probe), (12.5, Action::Resolve)]
        );
        assert!(matches!(m.health(), Health::Stale(_)), "{}", m.health());
        // Same address while recovering: a fresh session there (the gateway may have restarted).
        let actions = run(&mut m, &[(12.6, Input::Resolved(addr(GW)))]);
        assert_eq!(actions, vec![(12.6, Action::Reconnect(addr(GW)))]);
        // The fresh peer counts from zero: its first answer is up again.
        run(&mut m, &[(12.7, Input::Tick { rx_bytes: 92 })]);
        assert_eq!(m.health(), &Health::Up);
    }

    #[test]
    fn moved_gateway_is_followed_after_one_probe_interval() {
        let mut m = machine();
        run(&mut m, &[(0.1, Input::Tick { rx_bytes: 100 })]);
        let actions = run(&mut m, &ticks(0.5, 12.5, 100));
        assert_eq!(actions.last(), Some(&(12.5, Action::Resolve)));
        let actions = run(&mut m, &[(12.6, Input::Resolved(addr(MOVED)))]);
        assert_eq!(actions, vec![(12.6, Action::Reconnect(addr(MOVED)))]);
        assert_eq!(m.endpoint(), addr(MOVED));
    }

    #[test]
    fn network_change_probes_at_once_and_keeps_an_unchanged_endpoint() {
        let mut m = machine();
        run(&mut m, &[(0.1, Input::Tick { rx_bytes: 100 })]);
        let actions = run(&mut m, &[(3.0, Input::NetworkChanged { rx_bytes: 100 })]);
        assert_eq!(actions, vec![(3.0, Action::Probe), (3.0, Action::Resolve)]);
        // Unchanged: no reconnect, one more probe (a race's handshake may have moved the
        // gateway's idea of where we are).
        let actions = run(&mut m, &[(3.01, Input::Resolved(addr(GW)))]);
        assert_eq!(actions, vec![(3.01, Action::Probe)]);
        // More changes while the first resolve is out ask for one more resolve, once it
        // has answered (the network it ran on may have been half up).
        let actions = run(
            &mut m,
            &[
                (3.1, Input::NetworkChanged { rx_bytes: 100 }),
                (3.2, Input::NetworkChanged { rx_bytes: 100 }),
                (3.25, Input::NetworkChanged { rx_bytes: 100 }),
            ],
        );
        assert_eq!(
            actions,
            vec![
                (3.1, Action::Probe),
                (3.1, Action::Resolve),
                (3.2, Action::Probe),
                (3.25, Action::Probe)
            ]
        );
        let actions = run(&mut m, &[(3.3, Input::Resolved(addr(GW)))]);
        assert_eq!(actions, vec![(3.3, Action::Probe), (3.3, Action::Resolve)]);
        let actions = run(&mut m, &[(3.4, Input::Resolved(addr(GW)))]);
        assert_eq!(actions, vec![(3.4, Action::Probe)]);
    }

    /// Data that arrived between the last tick and the change (read by the first tick after
    /// it) once passed for the probe's answer: a laptop walking into a network without UDP
    /// stayed "up" over dead UDP until the next probe, 10 s on.
    #[test]
    fn data_from_before_a_network_change_does_not_answer_its_probe() {
        let mut m = machine().with_tcp_fallback();
        run(&mut m, &[(0.1, Input::Tick { rx_bytes: 100 })]);
        run(&mut m, &[(3.0, Input::NetworkChanged { rx_bytes: 184 })]);
        let actions = run(&mut m, &ticks(3.5, 5.0, 184));
        assert_eq!(actions, vec![(5.0, Action::Switch(Transport::Tcp))]);
    }

    #[test]
    fn network_change_moves_to_a_new_address() {
        let mut m = machine();
        run(&mut m, &[(0.1, Input::Tick { rx_bytes: 100 })]);
        run(&mut m, &[(3.0, Input::NetworkChanged { rx_bytes: 100 })]);
        let actions = run(&mut m, &[(3.05, Input::Resolved(addr(MOVED)))]);
        assert_eq!(actions, vec![(3.05, Action::Reconnect(addr(MOVED)))]);
    }

    /// Ticks with no answer from the gateway, every resolve failing; returns the resolve times.
    fn unreachable(m: &mut Machine, from: f64, to: f64) -> Vec<f64> {
        let mut attempts = Vec::new();
        let mut t = from;
        while t < to {
            for action in m.step(secs(t), Input::Tick { rx_bytes: 0 }) {
                if action == Action::Resolve {
                    attempts.push(t);
                    m.step(secs(t), Input::ResolveFailed("timeout".into()));
                }
            }
            t += 0.5;
        }
        attempts
    }

    #[test]
    fn unreachable_gateway_backs_off_with_jitter_and_never_busy_loops() {
        let mut m = machine();
        let attempts = unreachable(&mut m, 0.0, 600.0);
        let gaps: Vec<f64> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|g| *g >= 0.5), "{gaps:?}");
        // Grows to the 60 s cap (±20 %) and stays there.
        assert!(
            gaps.iter().rev().take(3).all(|g| (47.5..=72.5).contains(g)),
            "{gaps:?}"
        );
        assert!(attempts.len() < 20, "{} attempts in 10 min", attempts.len());
        assert!(matches!(m.health(), Health::Down(_)), "{}", m.health());
    }

    #[test]
    fn failed_resolve_while_recovering_still_reconnects_to_the_known_address() {
        let mut m = machine();
        let actions = run(&mut m, &ticks(0.5, 2.0, 0));
        assert_eq!(actions, vec![(2.0, Action::Resolve)]);
        let actions = run(&mut m, &[(2.1, Input::ResolveFailed("no DNS".into()))]);
        assert_eq!(actions, vec![(2.1, Action::Reconnect(addr(GW)))]);
        assert_eq!(
            m.health(),
            &Health::Stale("no answer from the gateway yet".into())
        );
    }

    #[test]
    fn network_change_resets_the_backoff() {
        let mut m = machine();
        unreachable(&mut m, 0.0, 300.0);
        let actions = run(&mut m, &[(300.2, Input::NetworkChanged { rx_bytes: 0 })]);
        assert_eq!(actions.first(), Some(&(300.2, Action::Probe)));
        m.step(secs(300.3), Input::ResolveFailed("x".into()));
        // Unanswered again: attempts come ~1 s and ~2 s apart, not ~60 s.
        let resolves = unreachable(&mut m, 300.5, 306.0);
        assert!(resolves.len() >= 3, "{resolves:?}");
    }

    #[test]
    fn refreshes_the_name_periodically() {
        let mut m = machine();
        let mut resolves = Vec::new();
        for i in 0..700u32 {
            let t = f64::from(i);
            for action in m.step(
                secs(t),
                Input::Tick {
                    rx_bytes: u64::from(i),
                },
            ) {
                assert_eq!(action, Action::Resolve, "at {t}");
                resolves.push(t);
                assert!(m.step(secs(t), Input::Resolved(addr(GW))).is_empty());
            }
        }
        assert_eq!(resolves, vec![300.0, 600.0]);
    }

    #[test]
    fn health_since_is_stable_while_down() {
        let mut m = machine();
        run(&mut m, &ticks(0.5, 100.0, 0));
        let since = m.health_since();
        run(&mut m, &ticks(100.5, 200.0, 0));
        assert_eq!(m.health_since(), since);
    }
}
