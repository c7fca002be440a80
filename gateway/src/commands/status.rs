//! `roamgw status`: the live view.

use super::*;
use crate::dataplane::ForwardCounters;
use crate::flood::FloodView;
use roamgw_common::Protocol;

/// Per roamer: endpoint, handshake, traffic, from the daemon or from an external wireguard-go;
/// and the daemon's word on handshake floods.
pub(super) fn peer_views(
    store: &Store,
    state: &GatewayState,
) -> (Vec<control::PeerView>, Option<FloodView>) {
    if let Ok(control::Reply::Status { peers, flood }) = control::request(
        store,
        &control::Request::Status,
        std::time::Duration::from_secs(5),
    ) {
        return (peers, flood);
    }
    let status =
        roamgw_wg::open_existing(state.gateway.interface.as_str()).and_then(|d| d.status().ok());
    (control::PeerView::for_roamers(state, status.as_ref()), None)
}

#[derive(Serialize)]
struct StatusView {
    config_dir: String,
    backend: String,
    anchor_ip: String,
    floating_ip: Option<String>,
    public_ip: String,
    interface: String,
    interface_present: bool,
    /// `kernel` or `userspace` WireGuard.
    interface_kind: Option<roamgw_wg::Kind>,
    data_plane_up: bool,
    in_sync: Option<bool>,
    drift: Option<String>,
    ip_forward: Option<bool>,
    daemon_running: bool,
    daemon_pid: Option<u32>,
    roamers: Vec<control::PeerView>,
    forwards: Vec<ForwardStatus>,
    /// Userspace WireGuard under `roamgw run` only.
    handshake_flood: Option<FloodView>,
    /// Initiations over their source's share that the kernel dropped since the rules were
    /// applied (nftables backend).
    kernel_handshakes_dropped: Option<u64>,
}

#[derive(Serialize)]
struct ForwardStatus {
    spec: String,
    to: String,
    client_ip: ClientIp,
    packets: Option<u64>,
    bytes: Option<u64>,
    /// Packets of clients, and of replies back to them.
    packets_in: Option<u64>,
    packets_back: Option<u64>,
    /// Something wrong with this forward, and what to do.
    problem: Option<String>,
}

/// A roamer's last handshake as `status` says it.
fn handshake_text(secs: Option<u64>) -> String {
    secs.map_or("never".into(), |s| format!("{s} s ago"))
}

/// A forward that clients try and nothing answers: what it likely is, and what to do.
/// `handshake`: seconds since the roamer's last completed handshake (`None`: never).
fn forward_problem(
    state: &GatewayState,
    forward: &Forward,
    c: &ForwardCounters,
    handshake: Option<u64>,
) -> Option<String> {
    if !c.unanswered() || !forward.spec.protocols.contains(Protocol::Tcp) {
        return None;
    }
    let seen = format!("{} packets in, none back", c.incoming.packets);
    if !roamgw_common::doctor::session_alive(handshake) {
        return Some(format!(
            "{seen}: '{}' has no working tunnel (last completed handshake: {}): see `roamer \
             status` on it, and `roamgw doctor` here",
            forward.to,
            handshake_text(handshake),
        ));
    }
    let target = state.roamer(&forward.to).map_or_else(String::new, |r| {
        format!(" {}:{}", r.address, forward.spec.local)
    });
    Some(match forward.client_ip {
        ClientIp::Keep => format!(
            "{seen}: '{}' may not route replies to kept client addresses (a config made before \
             roamgw kept them, or a phone): give it a new config (`roamgw show-config {}`), or \
             re-add the forward with --client-ip masquerade",
            forward.to, forward.to
        ),
        ClientIp::Masquerade => format!(
            "{seen}: nothing answers on '{}'{target}: is the service running, and open in the \
             laptop's firewall?",
            forward.to
        ),
    })
}

/// `roamgw status`'s exit code when the data plane is down (as `roamer status` says 3 when
/// the tunnel is not running).
pub const EXIT_DOWN: u8 = 3;
/// `roamgw status`'s exit code when the data plane is up but differs from the state.
pub const EXIT_DRIFT: u8 = 4;

/// The view, and the exit code that sums it up for scripts and monitoring: 0 up and in sync,
/// [`EXIT_DOWN`], [`EXIT_DRIFT`].
pub fn status(store: &Store, json: bool) -> Result<crate::Outcome> {
    let state = store.load()?;
    let view = gather(store, &state)?;
    let exit_code = match (view.data_plane_up, view.in_sync) {
        (false, _) => EXIT_DOWN,
        (true, Some(false)) => EXIT_DRIFT,
        (true, _) => 0,
    };
    let stdout = if json {
        to_json(&view)?
    } else {
        render(&view, &state)
    };
    Ok(crate::Outcome { stdout, exit_code })
}

/// What `status` shows, read from the system (the daemon, the backend, the interface).
fn gather(store: &Store, state: &GatewayState) -> Result<StatusView> {
    let daemon_pid = control::daemon_pid_or_none(store);
    let g = &state.gateway;
    let plane = dataplane::of(state).view(state)?;
    let up = plane.is_some();
    let (drift, counters, kernel_handshakes_dropped) = plane
        .map(|v| (v.drift, v.counters, v.handshakes_dropped))
        .unwrap_or_default();
    let (roamers, handshake_flood) = peer_views(store, state);
    let view = StatusView {
        config_dir: store.dir().display().to_string(),
        backend: g.backend.to_string(),
        anchor_ip: g.anchor_ip.to_string(),
        floating_ip: g.floating_ip.map(|ip| ip.to_string()),
        public_ip: g.public_ip.to_string(),
        interface: g.interface.to_string(),
        interface_present: dataplane::interface_exists(g.interface.as_str()),
        interface_kind: roamgw_wg::interface_kind(g.interface.as_str()),
        data_plane_up: up,
        in_sync: up.then_some(drift.is_none()),
        drift,
        ip_forward: std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .ok()
            .map(|v| v.trim() == "1"),
        daemon_running: daemon_pid.is_some(),
        daemon_pid,
        forwards: state
            .forwards
            .iter()
            .map(|f| {
                let c = counters.as_ref().and_then(|c| c.get(&f.key()));
                ForwardStatus {
                    spec: f.key(),
                    to: f.to.to_string(),
                    client_ip: f.client_ip,
                    packets: c.map(|c| c.total().packets),
                    bytes: c.map(|c| c.total().bytes),
                    packets_in: c.map(|c| c.incoming.packets),
                    packets_back: c.map(|c| c.back.packets),
                    problem: c.and_then(|c| {
                        let handshake = roamers
                            .iter()
                            .find(|r| r.name == f.to.as_str())
                            .and_then(|r| r.last_handshake_secs);
                        forward_problem(state, f, c, handshake)
                    }),
                }
            })
            .collect(),
        roamers,
        handshake_flood,
        kernel_handshakes_dropped,
    };
    Ok(view)
}

/// The view as text (pure).
fn render(view: &StatusView, state: &GatewayState) -> String {
    let g = &state.gateway;
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let mut out = format!(
        "gateway {} (state in {})\n  backend {}; anchor {}{}; public IP {} (untouched)\n  \
         WireGuard interface {}: {}{}\n  data plane: {}\n  ip_forward: {}\n  {}, {}\n",
        g.public_ip,
        view.config_dir,
        view.backend,
        view.anchor_ip,
        view.floating_ip
            .as_ref()
            .map(|f| format!(" (floating IP {f})"))
            .unwrap_or_default(),
        view.public_ip,
        view.interface,
        match (view.interface_present, view.interface_kind) {
            (true, Some(kind)) => format!("present, {kind} WireGuard"),
            (true, None) => "present".to_string(),
            (false, _) => "missing".to_string(),
        },
        if view.daemon_running {
            " (roamgw run is up)"
        } else {
            ""
        },
        match (&view.data_plane_up, &view.drift) {
            (false, _) =>
                "down (`roamgw run`, or `roamgw up` with --wireguard external)".to_string(),
            (true, None) => "up, in sync with the state".to_string(),
            (true, Some(d)) => format!("up, DRIFT: {d} (`roamgw apply` repairs it)"),
        },
        view.ip_forward.map(yes_no).unwrap_or("unknown"),
        match view.roamers.len() {
            1 => "1 roamer".to_string(),
            n => format!("{n} roamers"),
        },
        forward_count(state),
    );
    if let Some(flood) = view.handshake_flood.filter(FloodView::going_on) {
        out.push_str(&format!("  {}\n", flood.describe()));
    }
    if let Some(dropped) = view.kernel_handshakes_dropped.filter(|d| *d > 0) {
        out.push_str(&format!(
            "  handshake initiations over their source's share, dropped by the kernel since the rules were applied: {dropped}\n"
        ));
    }
    if !view.roamers.is_empty() {
        let mut table = Table::new(["ROAMER", "ENDPOINT", "HANDSHAKE", "RX", "TX"]);
        for r in &view.roamers {
            table.row([
                r.name.clone(),
                r.endpoint.clone().unwrap_or_else(|| "-".into()),
                handshake_text(r.last_handshake_secs),
                r.rx_bytes.to_string(),
                r.tx_bytes.to_string(),
            ]);
        }
        out.push_str(&table.render());
    }
    if !view.forwards.is_empty() {
        let mut table = Table::new(["SPEC", "TO", "CLIENT IP", "PACKETS IN/BACK", "BYTES"]);
        for f in &view.forwards {
            table.row([
                f.spec.clone(),
                f.to.clone(),
                f.client_ip.to_string(),
                match (f.packets_in, f.packets_back) {
                    (Some(i), Some(b)) => format!("{i}/{b}"),
                    _ => "-".into(),
                },
                f.bytes.map_or("-".into(), |b| b.to_string()),
            ]);
        }
        out.push_str(&table.render());
        for f in view.forwards.iter() {
            if let Some(problem) = &f.problem {
                out.push_str(&format!("forward {}: {problem}\n", f.spec));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::nftables::observed::CounterValue;

    #[test]
    fn unanswered_tcp_forwards_say_what_to_do() {
        let state = GatewayState::from_toml(include_str!(
            "../../../tests/fixtures/valid-state/gateway.toml"
        ))
        .expect("state");
        let counters = |incoming: u64, back: u64| ForwardCounters {
            incoming: CounterValue {
                packets: incoming,
                bytes: 60 * incoming,
            },
            back: CounterValue {
                packets: back,
                bytes: 60 * back,
            },
        };
        let forward = |text: &str| text.parse::<Forward>().expect(text);
        // (forward, counters, seconds since the roamer's handshake, what the problem says)
        let cases: &[(&str, ForwardCounters, Option<u64>, Option<&str>)] = &[
            (
                "22 -> laptop",
                counters(2, 0),
                Some(4),
                Some("roamgw show-config laptop"),
            ),
            ("22 -> laptop", counters(1, 0), Some(4), None),
            ("22 -> laptop", counters(9, 1), Some(4), None),
            (
                "22 -> laptop masquerade",
                counters(3, 0),
                Some(4),
                Some("nothing answers on 'laptop' 192.168.32.2:22"),
            ),
            ("53/udp -> laptop", counters(9, 0), Some(4), None),
            // No tunnel: the forward is not the problem, whatever its client-ip mode.
            (
                "22 -> laptop",
                counters(80, 0),
                None,
                Some("'laptop' has no working tunnel (last completed handshake: never)"),
            ),
            (
                "22 -> laptop masquerade",
                counters(3, 0),
                Some(600),
                Some("no working tunnel (last completed handshake: 600 s ago)"),
            ),
        ];
        for (text, c, handshake, expected) in cases {
            let problem = forward_problem(&state, &forward(text), c, *handshake);
            match expected {
                None => assert_eq!(problem, None, "{text}"),
                Some(words) => assert!(
                    problem.as_deref().is_some_and(|p| p.contains(words)),
                    "{text}: {problem:?}"
                ),
            }
        }
    }
}
