//! The laptop's side: a UDP socket on loopback that the WireGuard device takes as the
//! gateway's endpoint. What the device sends there goes over one TCP connection to the
//! gateway's fallback, framed; frames that come back go to the device. The connection is
//! opened when the device first sends and again after it drops, so the device's own
//! retries (handshakes, keepalives) drive reconnection: no timers of its own.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tracing::debug;

use super::frame::Deframer;
use super::loopback::{Buffers, Loopback};

/// A connection attempt that has not succeeded in this long has failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// What the relay knows of its connection, for status and for the roamer's decisions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientState {
    pub connected: bool,
    /// The last connection error, if the last attempt failed.
    pub error: Option<String>,
}

/// Relays between a local UDP socket and `gateway` over TCP until dropped.
pub struct TcpClient {
    /// Where the device must send: the gateway's endpoint while this relay carries it.
    pub local: SocketAddr,
    pub gateway: SocketAddr,
    state: Arc<Mutex<ClientState>>,
    _running: super::Running,
}

impl TcpClient {
    /// A relay on an ephemeral loopback port (the roamer sets its device's endpoint to it).
    pub fn start(gateway: SocketAddr) -> io::Result<Self> {
        Self::start_on((Ipv4Addr::LOCALHOST, 0).into(), gateway)
    }

    /// A relay on `local` (`roamer tcp-relay`: a stock wg-quick's `Endpoint`).
    pub fn start_on(local: SocketAddr, gateway: SocketAddr) -> io::Result<Self> {
        let runtime = super::runtime()?;
        let socket = {
            let _entered = runtime.enter();
            Loopback::bind(local)?
        };
        let local = socket.local_addr()?;
        let state = Arc::new(Mutex::new(ClientState::default()));
        let task = relay(socket, gateway, state.clone());
        Ok(TcpClient {
            local,
            gateway,
            state,
            _running: super::run_on_thread("roamer-tcp", runtime, task)?,
        })
    }

    pub fn state(&self) -> ClientState {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn set(state: &Mutex<ClientState>, connected: bool, error: Option<String>) {
    *state.lock().unwrap_or_else(PoisonError::into_inner) = ClientState { connected, error };
}

async fn relay(socket: Loopback, gateway: SocketAddr, state: Arc<Mutex<ClientState>>) {
    let mut buffers = Buffers::default();
    let mut read = vec![0u8; super::BATCH_BYTES];
    let mut frames = Vec::with_capacity(super::BATCH_BYTES);
    let mut device: Option<SocketAddr> = None;
    let mut stream: Option<(OwnedReadHalf, OwnedWriteHalf)> = None;
    let mut deframer = Deframer::default();
    loop {
        tokio::select! {
            got = socket.recv_framed(&mut buffers, &mut frames) => {
                let Ok(from) = got else { continue };
                device = Some(from);
                if stream.is_none() {
                    stream = connect(gateway, &state).await;
                    deframer = Deframer::default();
                }
                let Some((_, to_gateway)) = &mut stream else { continue };
                if let Err(e) = to_gateway.write_all(&frames).await {
                    debug!("tcp relay: write to {gateway}: {e}");
                    set(&state, false, Some(e.to_string()));
                    stream = None;
                }
            }
            n = async {
                match &mut stream {
                    Some((from_gateway, _)) => from_gateway.read(&mut read).await,
                    None => std::future::pending().await,
                }
            } => {
                match n {
                    Ok(n) if n > 0 => {
                        deframer.push(&read[..n]);
                        if let Some(device) = device {
                            let _ = socket.send_deframed(&mut buffers, &mut deframer, device, |_| true);
                        }
                    }
                    ended => {
                        let why = ended.err().map_or("closed by the gateway".to_string(), |e| e.to_string());
                        debug!("tcp relay: connection to {gateway} ended: {why}");
                        set(&state, false, Some(why));
                        stream = None;
                    }
                }
            }
        }
    }
}

async fn connect(
    gateway: SocketAddr,
    state: &Mutex<ClientState>,
) -> Option<(OwnedReadHalf, OwnedWriteHalf)> {
    let attempt = tokio::time::timeout(CONNECT_TIMEOUT, connect_beside_tunnel(gateway)).await;
    match attempt {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            set(state, true, None);
            Some(stream.into_split())
        }
        Ok(Err(e)) => {
            set(state, false, Some(e.to_string()));
            None
        }
        Err(_) => {
            set(
                state,
                false,
                Some(format!("no answer within {CONNECT_TIMEOUT:?}")),
            );
            None
        }
    }
}

async fn connect_beside_tunnel(gateway: SocketAddr) -> io::Result<TcpStream> {
    let socket = super::beside_tunnel(gateway, socket2::Type::STREAM)?;
    socket.set_nonblocking(true)?;
    TcpSocket::from_std_stream(socket.into())
        .connect(gateway)
        .await
}

#[cfg(test)]
mod tests {
    use super::super::server::{Limits, TcpFallback};
    use super::*;

    fn wireguard_like(kind: u8, len: usize, fill: u8) -> Vec<u8> {
        let mut m = vec![fill; len];
        m[..4].copy_from_slice(&[kind, 0, 0, 0]);
        m
    }

    /// A UDP socket on loopback standing in for a WireGuard device.
    fn device() -> std::net::UdpSocket {
        let device = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        device
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        device
    }

    /// A gateway's device and its TCP fallback on loopback.
    fn gateway(limits: Limits) -> (std::net::UdpSocket, TcpFallback) {
        let device = device();
        let fallback = TcpFallback::start(
            "127.0.0.1:0".parse().expect("addr"),
            device.local_addr().expect("addr"),
            limits,
        )
        .expect("fallback");
        (device, fallback)
    }

    /// Device ↔ client relay ↔ TCP ↔ fallback ↔ a UDP "device" on the gateway, on loopback:
    /// datagrams cross both ways unchanged, and junk closes a connection.
    #[test]
    fn datagrams_cross_both_ways_and_junk_closes() {
        let (gateway_device, fallback) = gateway(Limits::default());
        let client = TcpClient::start(fallback.listen).expect("client");
        let laptop_device = device();

        let initiation = wireguard_like(1, 148, 7);
        laptop_device
            .send_to(&initiation, client.local)
            .expect("send");
        let mut buf = [0u8; 2048];
        let (n, relay) = gateway_device
            .recv_from(&mut buf)
            .expect("initiation arrives");
        assert_eq!(&buf[..n], &initiation[..]);
        assert_eq!(
            fallback.relays.peer_of(relay).map(|p| p.ip()),
            Some(Ipv4Addr::LOCALHOST.into())
        );

        let response = wireguard_like(2, 92, 9);
        gateway_device.send_to(&response, relay).expect("send");
        let (n, _) = laptop_device.recv_from(&mut buf).expect("response arrives");
        assert_eq!(&buf[..n], &response[..]);
        assert!(client.state().connected);

        // An outsider's junk: its connection is closed, the roamer's is not.
        let mut junk = std::net::TcpStream::connect(fallback.listen).expect("connect");
        junk.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        std::io::Write::write_all(&mut junk, b"\x00\x10GET / HTTP/1.1\r\n").expect("write");
        let mut rest = Vec::new();
        let read = std::io::Read::read_to_end(&mut junk, &mut rest);
        assert!(matches!(read, Ok(0)) || read.is_err(), "closed: {read:?}");

        let data = wireguard_like(4, 64, 3);
        laptop_device.send_to(&data, client.local).expect("send");
        let (n, _) = gateway_device.recv_from(&mut buf).expect("data arrives");
        assert_eq!(&buf[..n], &data[..]);
    }

    /// The probe of [`super::super::portal`] is answered by the fallback: it is the gateway.
    #[test]
    fn the_fallback_answers_the_portal_probe() {
        let (_device, fallback) = gateway(Limits::default());
        assert_eq!(
            super::super::portal::check(fallback.listen, Duration::from_secs(5)),
            super::super::portal::Reached::Gateway
        );
    }

    /// Unanswered connections make room: with a limit of 2 taken by idle connections, a third
    /// still gets through, and an idle one is closed after the handshake limit.
    #[test]
    fn idle_connections_make_room_and_time_out() {
        let (gateway_device, fallback) = gateway(Limits {
            connections: 2,
            handshake: Duration::from_millis(500),
            idle: Duration::from_secs(5),
        });
        let idle: Vec<_> = (0..2)
            .map(|_| std::net::TcpStream::connect(fallback.listen).expect("connect"))
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let client = TcpClient::start(fallback.listen).expect("client");
        let laptop_device = device();
        laptop_device
            .send_to(&wireguard_like(1, 148, 1), client.local)
            .expect("send");
        let mut buf = [0u8; 2048];
        assert!(
            gateway_device.recv_from(&mut buf).is_ok(),
            "the third connection relays"
        );
        for mut stream in idle {
            stream
                .set_read_timeout(Some(Duration::from_secs(3)))
                .expect("timeout");
            let mut rest = Vec::new();
            let read = std::io::Read::read_to_end(&mut stream, &mut rest);
            assert!(matches!(read, Ok(0)) || read.is_err(), "closed: {read:?}");
        }
    }
}
