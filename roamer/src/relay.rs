//! `roamer tcp-relay`: the TCP road for a stock wg-quick laptop. Its WireGuard sends to a
//! local port; the relay carries each datagram to the gateway's WireGuard over TCP
//! (`roamgw tcp-fallback`) and back, until SIGINT or SIGTERM.

use roamgw_common::Endpoint;
use roamgw_wg::tcp::client::TcpClient;
use signal_hook::consts::{SIGINT, SIGTERM};
use tracing::info;

use crate::cli::TcpRelayArgs;

pub fn tcp_relay(args: &TcpRelayArgs) -> Result<String, String> {
    let endpoint =
        Endpoint::parse_with_default_port(&args.gateway, 443).map_err(|e| e.to_string())?;
    let gateway = crate::run::resolve(&endpoint).map_err(|e| e.to_string())?;
    let relay = TcpClient::start_on(args.listen, gateway).map_err(|e| {
        format!(
            "cannot listen on {} ({e}): pick another with --listen",
            args.listen
        )
    })?;
    info!(
        listen = %relay.local,
        gateway = %gateway,
        "relaying WireGuard over TCP: set the wg-quick config's Endpoint = {}",
        relay.local
    );
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| format!("cannot wait for signals: {e}"))?;
    let signal = signals.forever().next().unwrap_or(SIGTERM);
    info!(signal, "relay stopped");
    Ok(String::new())
}
