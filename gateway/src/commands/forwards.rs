//! Forwards: add-port, remove-port, list.

use super::*;

pub fn add_port(store: &Store, args: AddPortArgs) -> Result<String> {
    let _lock = store.lock()?;
    let change = StateChange::AddPort {
        spec: args.spec,
        to: args.to,
        allow_from: args.allow_from,
        client_ip: args.client_ip,
    };
    let (summary, how) = make_change(store, change)?;
    Ok(format!("{summary}; {how}\n"))
}

/// `roamgw tcp-fallback [PORT] [--off]`: sets it, or shows it when given neither.
pub fn tcp_fallback(store: &Store, args: TcpFallbackArgs) -> Result<String> {
    if args.port.is_none() && !args.off {
        let state = store.load()?;
        return Ok(match state.gateway.tcp_listen() {
            Some(listen) => format!(
                "WireGuard over TCP on {listen}; roamers dial {}:{}\n",
                state.gateway.endpoint.host,
                listen.port()
            ),
            None => "WireGuard over TCP is off: `roamgw tcp-fallback 443` turns it on\n".into(),
        });
    }
    let _lock = store.lock()?;
    if let Some(port) = args.port {
        let mut next = store.load()?.gateway;
        next.tcp_port = Some(port);
        if let Some(listen) = next.tcp_listen() {
            // Refused here, before anything is saved, rather than by the daemon afterwards.
            std::net::TcpListener::bind(listen).map_err(|e| {
                refused(format!(
                    "cannot listen on {listen} ({e}): another process has it (`ss -ltnp 'sport = :{port}'` shows which); pick another port"
                ))
            })?;
        }
    }
    let (summary, how) = make_change(store, StateChange::SetTcpPort { port: args.port })?;
    Ok(format!("{summary}; {how}\n"))
}

/// `roamgw endpoint6 [ADDRESS] [--off]`: sets it, or shows it when given neither.
pub fn endpoint6(store: &Store, args: Endpoint6Args) -> Result<String> {
    if args.address.is_none() && !args.off {
        let state = store.load()?;
        return Ok(match &state.gateway.endpoint6 {
            Some(endpoint) => format!("roamers dial {endpoint} over IPv6 too\n"),
            None => "no IPv6 endpoint: `roamgw endpoint6 2001:db8::10` gives one\n".into(),
        });
    }
    let _lock = store.lock()?;
    let listen_port = store.load()?.gateway.listen_port;
    let endpoint6 = args
        .address
        .as_deref()
        .map(|text| super::setup::parse_endpoint6(text, listen_port))
        .transpose()?;
    let (summary, how) = make_change(store, StateChange::SetEndpoint6 { endpoint6 })?;
    Ok(format!("{summary}; {how}\n"))
}

/// `roamgw forward6 [ADDRESS] [--off]`: sets it, or shows it when given neither.
pub fn forward6(store: &Store, args: Forward6Args) -> Result<String> {
    if args.address.is_none() && !args.off {
        let g = store.load()?.gateway;
        return Ok(match (g.forward6, g.subnet6) {
            (Some(address), Some(prefix)) => {
                format!("forwards answer on {address} too; the tunnel's IPv6 prefix is {prefix}\n")
            }
            _ => "forwards answer on IPv4 only: `roamgw forward6 2001:db8::5` dedicates an IPv6 address to them\n".into(),
        });
    }
    if let Some(address) = args.address {
        roamgw_common::state::check_forward6(address).map_err(refused)?;
        if !crate::device::address_present(address.into()) {
            warn!(
                %address,
                "the address is on no interface of this droplet: put it on the public one (`ip -6 addr add {address}/128 dev eth0`, and in its network config), or the provider's router finds no one to deliver it to"
            );
        }
    }
    let _lock = store.lock()?;
    let subnet6 = super::setup::new_subnet6()?;
    let change = StateChange::SetForward6 {
        forward6: args.address,
        subnet6,
    };
    let (summary, how) = make_change(store, change)?;
    Ok(format!("{summary}; {how}\n"))
}

pub fn remove_port(store: &Store, args: RemovePortArgs) -> Result<String> {
    let _lock = store.lock()?;
    let (summary, how) = make_change(store, StateChange::RemovePort { spec: args.spec })?;
    Ok(format!("{summary}; {how}\n"))
}

#[derive(Serialize)]
struct ForwardRow {
    #[serde(skip_serializing_if = "Option::is_none")]
    packets: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
    spec: String,
    protocols: String,
    /// What the outside dials; `None` when the floating IP is not known.
    public: Option<String>,
    /// What the outside dials over IPv6 (`roamgw forward6`).
    #[serde(skip_serializing_if = "Option::is_none")]
    public6: Option<String>,
    #[serde(skip)]
    public_text: String,
    to: String,
    local: String,
    allow_from: Vec<String>,
    client_ip: ClientIp,
}

/// One row per forward, with its counters when the backend has them.
fn forward_rows(
    state: &GatewayState,
    counters: Option<&crate::dataplane::Counters>,
) -> Vec<ForwardRow> {
    let public_ip = crate::change::public_address(state);
    state
        .forwards
        .iter()
        .map(|f| {
            let address = state
                .roamer(&f.to)
                .map(|r| r.address.to_string())
                .unwrap_or_default();
            let counter = counters.and_then(|c| c.get(&f.key())).map(|c| c.total());
            ForwardRow {
                packets: counter.map(|c| c.packets),
                bytes: counter.map(|c| c.bytes),
                spec: f.key(),
                protocols: f.spec.protocols.to_string(),
                public: public_ip.map(|ip| format!("{ip}:{}", f.spec.public)),
                public6: state
                    .gateway
                    .forward6
                    .map(|ip| format!("[{ip}]:{}", f.spec.public)),
                public_text: format!(
                    "{}:{}",
                    crate::change::public_address_text(state),
                    f.spec.public
                ),
                to: f.to.to_string(),
                local: format!("{address}:{}", f.spec.local),
                allow_from: f.allow_from.iter().map(ToString::to_string).collect(),
                client_ip: f.client_ip,
            }
        })
        .collect()
}

pub fn list(store: &Store, json: bool) -> Result<String> {
    let state = store.load()?;
    let public_ip = crate::change::public_address(&state);
    let counters = dataplane::of(&state).counters(&state);
    let views = forward_rows(&state, counters.as_ref());
    if json {
        return to_json(&views);
    }
    if views.is_empty() {
        return Ok("no forwards; add one with `roamgw add-port 22`\n".into());
    }
    let mut table = Table::new([
        "SPEC",
        "PUBLIC",
        "TO",
        "LOCAL",
        "ALLOW FROM",
        "CLIENT IP",
        "PACKETS",
        "BYTES",
    ]);
    for v in views {
        table.row([
            v.spec,
            v.public_text,
            v.to,
            v.local,
            if v.allow_from.is_empty() {
                "anyone".into()
            } else {
                v.allow_from.join(",")
            },
            v.client_ip.to_string(),
            v.packets.map_or("-".into(), |p| p.to_string()),
            v.bytes.map_or("-".into(), |b| b.to_string()),
        ]);
    }
    let mut out = table.render();
    out.push_str(&format!(
        "(CLIENT IP: keep = the roamer sees the client's address, masquerade = the gateway's; \
         new forwards: {})\n",
        state.gateway.client_ip
    ));
    if let Some(forward6) = state.gateway.forward6 {
        out.push_str(&format!(
            "(every forward answers on [{forward6}] too, to the roamer's tunnel IPv6)\n"
        ));
    }
    if public_ip.is_none() {
        let anchor = state.gateway.anchor_ip;
        out.push_str(&format!(
            "(PUBLIC: the floating IP is not in the state; the forwards answer on whatever public \
             address the provider maps to the anchor {anchor})\n"
        ));
    }
    if counters.is_none() {
        out.push_str("(counters show once the data plane is up)\n");
    }
    Ok(out)
}
