//! The userspace device's UDP socket: dual-stack where the machine has IPv6, with GSO and GRO
//! through quinn-udp; IPv4 peers appear as plain IPv4 addresses to the rest of the device.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::io::Errno;

/// Kernel socket buffers: bursts of 64 KB sends must not find a full buffer.
const SOCKET_BUFFER: usize = 4 << 20;

/// Where a datagram goes, and from which of our addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Path {
    pub remote: SocketAddr,
    /// Our address the peer last reached us on, as the socket reports it (a v4-mapped IPv6
    /// address on a dual-stack socket): replies leave from it, as they do from kernel
    /// WireGuard and wireguard-go. A host with several addresses (the gateway: its public IP
    /// and the anchor the floating IP is NATed to) otherwise answers from whichever the route
    /// picks, and the peer's NAT drops the answer. `None`: the route decides.
    pub local: Option<IpAddr>,
}

impl From<SocketAddr> for Path {
    fn from(remote: SocketAddr) -> Self {
        Path {
            remote,
            local: None,
        }
    }
}

/// What became of a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Handed to the kernel (or dropped after a second of full buffers, or refused: logged).
    Done,
    /// The kernel refused the path's local address (no longer one of the host's): sent from
    /// the route's choice instead; the caller forgets that address for its peers.
    SourceGone,
}

/// The UDP socket: dual-stack where the machine has IPv6, else IPv4. Generic over the socket
/// so a relay in an async runtime can have the same sends and receives on a socket its
/// reactor watches (crate::tcp).
pub struct UdpPort<S = UdpSocket> {
    socket: S,
    state: UdpSocketState,
    dual_stack: bool,
}

impl UdpPort {
    pub fn bind(port: u16) -> io::Result<Self> {
        let (socket, dual_stack) = match bind_dual_stack(port) {
            Ok(socket) => (socket, true),
            Err(_) => (UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))?, false),
        };
        Self::with(socket, dual_stack)
    }

    pub fn port(&self) -> u16 {
        self.socket.local_addr().map(|a| a.port()).unwrap_or(0)
    }
}

impl<S: AsFd> UdpPort<S> {
    /// Takes `socket` with our options: GSO and GRO, fragmentation allowed, big buffers.
    /// `dual_stack`: an IPv6 socket that also carries IPv4 (v4-mapped on the wire).
    pub fn with(socket: S, dual_stack: bool) -> io::Result<Self> {
        let state = UdpSocketState::new((&socket.as_fd()).into())?;
        // quinn-udp forbids fragmentation; WireGuard lets a path with a small MTU fragment
        // instead of losing every full-sized packet (the kernel module does the same).
        let _ = rustix::net::sockopt::set_ip_mtu_discover(
            &socket,
            rustix::net::sockopt::Ipv4PathMtuDiscovery::DONT,
        );
        // The forced sizes need CAP_NET_ADMIN; without it the sysctl maximum applies.
        use rustix::net::sockopt as opt;
        let fd = socket.as_fd();
        if opt::set_socket_send_buffer_size_force(fd, SOCKET_BUFFER).is_err() {
            let _ = opt::set_socket_send_buffer_size(fd, SOCKET_BUFFER);
        }
        if opt::set_socket_recv_buffer_size_force(fd, SOCKET_BUFFER).is_err() {
            let _ = opt::set_socket_recv_buffer_size(fd, SOCKET_BUFFER);
        }
        Ok(UdpPort {
            socket,
            state,
            dual_stack,
        })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    pub(crate) fn socket(&self) -> &S {
        &self.socket
    }

    /// One `recvmmsg`: datagrams (each possibly a GRO train) into `buffers`, their senders
    /// and sizes into `meta`; how many arrived.
    pub(crate) fn recv(
        &self,
        buffers: &mut [std::io::IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> io::Result<usize> {
        self.state
            .recv((&self.socket.as_fd()).into(), buffers, meta)
    }

    /// How many datagrams one send may carry.
    pub fn max_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    /// Sends `contents` along `path`, cut into datagrams of `segment` bytes when given. A full
    /// socket buffer waits for room (up to a second) rather than dropping: a drop costs TCP
    /// far more.
    pub fn send(&self, path: Path, contents: &[u8], segment: Option<usize>) -> Sent {
        let mut transmit = Transmit {
            destination: self.to_wire(path.remote),
            ecn: None,
            contents,
            segment_size: segment,
            src_ip: path.local.map(|ip| self.to_wire_ip(ip)),
        };
        let mut sent = Sent::Done;
        for _ in 0..10 {
            match self
                .state
                .try_send((&self.socket.as_fd()).into(), &transmit)
            {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut fds = [PollFd::new(&self.socket, PollFlags::OUT)];
                    let _ = poll(
                        &mut fds,
                        Some(&super::datapath::timespec(Duration::from_millis(100))),
                    );
                }
                // The kernel refuses a source address the host no longer has (ENETUNREACH,
                // measured; EADDRNOTAVAIL elsewhere): send from the route's choice. Not
                // EINVAL: quinn-udp takes that for missing GSO and turns GSO off, and our
                // source and destination come from one datagram, so the address families
                // always agree.
                Err(e) if transmit.src_ip.is_some() && source_refused(&e) => {
                    tracing::debug!(source = ?transmit.src_ip, "source address gone: {e}");
                    transmit.src_ip = None;
                    sent = Sent::SourceGone;
                }
                Err(e) => {
                    tracing::debug!(destination = %path.remote, "UDP send failed: {e}");
                    return sent;
                }
                Ok(()) => return sent,
            }
        }
        sent
    }

    pub fn send_one(&self, path: Path, datagram: &[u8]) -> Sent {
        self.send(path, datagram, None)
    }

    /// Our address as the socket takes it (v4-mapped on a dual-stack socket).
    fn to_wire_ip(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) if self.dual_stack => IpAddr::V6(v4.to_ipv6_mapped()),
            other => other,
        }
    }

    fn to_wire(&self, address: SocketAddr) -> SocketAddr {
        match address {
            SocketAddr::V4(v4) if self.dual_stack => {
                SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0).into()
            }
            other => other,
        }
    }
}

fn source_refused(e: &io::Error) -> bool {
    matches!(
        Errno::from_io_error(e),
        Some(Errno::NETUNREACH | Errno::ADDRNOTAVAIL)
    )
}

pub(super) fn from_wire(address: SocketAddr) -> SocketAddr {
    SocketAddr::new(address.ip().to_canonical(), address.port())
}

fn bind_dual_stack(port: u16) -> io::Result<UdpSocket> {
    let socket = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::DGRAM, None)?;
    socket.set_only_v6(false)?;
    socket.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer's socket on loopback, and what it received: (text, from).
    fn peer() -> UdpSocket {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        socket
    }

    fn received(socket: &UdpSocket) -> (String, SocketAddr) {
        let mut buf = [0u8; 64];
        let (n, from) = socket.recv_from(&mut buf).expect("an answer");
        (String::from_utf8_lossy(&buf[..n]).into_owned(), from)
    }

    /// The device's side: what arrived, and on which of our addresses.
    fn arrival(port: &UdpPort) -> Path {
        let mut buf = vec![0u8; 65_535];
        let mut meta = [RecvMeta::default()];
        let mut slices = [std::io::IoSliceMut::new(&mut buf)];
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        loop {
            match port.recv(&mut slices, &mut meta) {
                Ok(n) if n > 0 => break,
                _ if std::time::Instant::now() > deadline => panic!("nothing arrived"),
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        Path {
            remote: from_wire(meta[0].addr),
            local: meta[0].dst_ip,
        }
    }

    #[test]
    fn an_answer_leaves_from_the_address_the_datagram_arrived_on() {
        // 127.0.0.2 is as local as 127.0.0.1, and the route picks 127.0.0.1 for replies: the
        // anchor and the public IP of a droplet, in miniature.
        let port = UdpPort::bind(0).expect("bind");
        port.socket.set_nonblocking(true).expect("nonblocking");
        let laptop = peer();
        laptop
            .send_to(b"hello", ("127.0.0.2", port.port()))
            .expect("send");
        let path = arrival(&port);
        assert_eq!(
            path.local.map(|ip| ip.to_canonical()),
            Some("127.0.0.2".parse().expect("ip"))
        );

        assert_eq!(port.send_one(path, b"sticky"), Sent::Done);
        let (text, from) = received(&laptop);
        assert_eq!(
            (text.as_str(), from.ip().to_string()),
            ("sticky", "127.0.0.2".into())
        );

        assert_eq!(port.send_one(path.remote.into(), b"routed"), Sent::Done);
        let (text, from) = received(&laptop);
        assert_eq!(
            (text.as_str(), from.ip().to_string()),
            ("routed", "127.0.0.1".into())
        );
    }

    #[test]
    fn a_source_address_the_host_lost_falls_back_to_the_route_and_keeps_gso() {
        let port = UdpPort::bind(0).expect("bind");
        let segments = port.max_segments();
        let laptop = peer();
        let remote = laptop.local_addr().expect("addr");
        // Not an address of this host: the kernel refuses it as a source (EINVAL).
        let gone: IpAddr = "192.0.2.99".parse().expect("ip");
        let local = if port.dual_stack {
            IpAddr::V6(match gone {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            })
        } else {
            gone
        };
        let path = Path {
            remote,
            local: Some(local),
        };
        assert_eq!(port.send_one(path, b"anyway"), Sent::SourceGone);
        let (text, from) = received(&laptop);
        assert_eq!(
            (text.as_str(), from.ip().to_string()),
            ("anyway", "127.0.0.1".into())
        );
        assert_eq!(port.max_segments(), segments, "GSO as before");
    }
}
