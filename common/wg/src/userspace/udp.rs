//! The userspace device's UDP socket: dual-stack where the machine has IPv6, with GSO and GRO
//! through quinn-udp; IPv4 peers appear as plain IPv4 addresses to the rest of the device.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use rustix::event::{poll, PollFd, PollFlags};

/// Kernel socket buffers: bursts of 64 KB sends must not find a full buffer.
const SOCKET_BUFFER: usize = 4 << 20;

/// The UDP socket: dual-stack where the machine has IPv6, else IPv4.
pub struct UdpPort {
    socket: UdpSocket,
    state: UdpSocketState,
    dual_stack: bool,
}

impl UdpPort {
    pub fn bind(port: u16) -> io::Result<Self> {
        let (socket, dual_stack) = match bind_dual_stack(port) {
            Ok(socket) => (socket, true),
            Err(_) => (UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))?, false),
        };
        let state = UdpSocketState::new((&socket).into())?;
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

    pub fn port(&self) -> u16 {
        self.socket.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    /// One `recvmmsg`: datagrams (each possibly a GRO train) into `buffers`, their senders
    /// and sizes into `meta`; how many arrived.
    pub(super) fn recv(
        &self,
        buffers: &mut [std::io::IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> io::Result<usize> {
        self.state.recv((&self.socket).into(), buffers, meta)
    }

    /// How many datagrams one send may carry.
    pub fn max_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    /// Sends `contents`, cut into datagrams of `segment` bytes when given. A full socket buffer
    /// waits for room (up to a second) rather than dropping: a drop costs TCP far more.
    pub fn send(&self, destination: SocketAddr, contents: &[u8], segment: Option<usize>) {
        let transmit = Transmit {
            destination: self.to_wire(destination),
            ecn: None,
            contents,
            segment_size: segment,
            src_ip: None,
        };
        for _ in 0..10 {
            match self.state.try_send((&self.socket).into(), &transmit) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut fds = [PollFd::new(&self.socket, PollFlags::OUT)];
                    let _ = poll(
                        &mut fds,
                        Some(&super::datapath::timespec(Duration::from_millis(100))),
                    );
                }
                Err(e) => {
                    tracing::debug!(%destination, "UDP send failed: {e}");
                    return;
                }
                Ok(()) => return,
            }
        }
    }

    pub fn send_one(&self, destination: SocketAddr, datagram: &[u8]) {
        self.send(destination, datagram, None);
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

pub(super) fn from_wire(address: SocketAddr) -> SocketAddr {
    SocketAddr::new(address.ip().to_canonical(), address.port())
}

fn bind_dual_stack(port: u16) -> io::Result<UdpSocket> {
    let socket = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::DGRAM, None)?;
    socket.set_only_v6(false)?;
    socket.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
    Ok(socket.into())
}
