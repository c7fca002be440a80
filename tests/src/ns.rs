//! A network namespace of the testbed, and what runs in it: commands, client sockets.

use super::*;

/// One network namespace of a testbed.
#[derive(Debug, Clone)]
pub struct Ns {
    pub name: String,
}

impl Ns {
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).args(args);
        cmd
    }

    /// Runs a command in the namespace; returns its output whatever the exit status.
    pub fn output(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {args:?} in {}: {e}", self.name))
    }

    /// Runs a command that must succeed; returns stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "in {}: {args:?} failed: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command with standard input.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
        if let Some(mut pipe) = child.stdin.take() {
            let _ = pipe.write_all(stdin.as_bytes());
        }
        child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// Runs `f` on a thread that has joined this namespace. Sockets it creates stay in the
    /// namespace wherever they are used afterwards.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            setns(file, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {path}: {e}"));
            f()
        })
        .join()
        .unwrap_or_else(|_| panic!("thread in {} panicked", self.name))
    }

    /// A TCP connection from this namespace, or the error (refused, timed out).
    pub fn connect(&self, addr: &str, timeout: Duration) -> std::io::Result<TcpStream> {
        let addr: SocketAddr = addr.parse().unwrap_or_else(|e| panic!("{addr}: {e}"));
        self.enter(move || {
            let stream = TcpStream::connect_timeout(&addr, timeout)?;
            stream.set_read_timeout(Some(timeout))?;
            stream.set_write_timeout(Some(timeout))?;
            Ok(stream)
        })
    }

    /// Reads the banner a TCP server sends on connect; `None` when nothing arrives in time.
    pub fn tcp_banner(&self, addr: &str) -> Option<String> {
        let mut stream = self.connect(addr, Duration::from_secs(2)).ok()?;
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        (!text.is_empty()).then(|| text.trim().to_string())
    }

    /// Like [`Ns::tcp_banner`], from a given source address of this namespace (via socat).
    pub fn tcp_banner_from(&self, source: &str, addr: &str) -> Option<String> {
        let out = self.output(&[
            "socat",
            "-T2",
            "-u",
            &format!("TCP:{addr},bind={source},connect-timeout=2"),
            "-",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !text.is_empty()).then_some(text)
    }

    /// Sends one UDP datagram and returns the first reply, if any arrives within 2 s. Only a
    /// reply from `addr` itself counts (the socket is connected, as most clients' are): one
    /// that leaves the laptop from another address would never reach a real client.
    pub fn udp_exchange(&self, addr: &str, payload: &str) -> Option<String> {
        let addr: SocketAddr = addr.parse().unwrap_or_else(|e| panic!("{addr}: {e}"));
        let payload = payload.to_string();
        self.enter(move || {
            let mut buf = [0u8; 1500];
            // UDP: a client sends again when nothing comes back (4 tries, ~3 s in all), each
            // time from a new port, so one lost datagram cannot pin the later ones to the same
            // conntrack entry.
            for attempt in 1..=4 {
                let any = if addr.is_ipv6() {
                    "[::]:0"
                } else {
                    "0.0.0.0:0"
                };
                let socket = UdpSocket::bind(any).ok()?;
                socket
                    .set_read_timeout(Some(Duration::from_millis(700)))
                    .ok()?;
                socket.connect(addr).ok()?;
                socket.send(payload.as_bytes()).ok()?;
                if let Ok(n) = socket.recv(&mut buf) {
                    if attempt > 1 {
                        eprintln!("udp_exchange {addr}: answered on try {attempt}");
                    }
                    return Some(String::from_utf8_lossy(&buf[..n]).trim().to_string());
                }
            }
            None
        })
    }
}

impl Ns {
    pub(crate) fn run_checked_stdin(&self, args: &[&str], stdin: &str) {
        let out = self.run_with_stdin(args, stdin);
        assert!(
            out.status.success(),
            "in {}: {args:?} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

pub(crate) fn wait_for_listener(ns: &Ns, port: u16, protocol: &str) {
    wait_for_listener_of(ns, port, protocol, "-4");
}

/// A listener of one family (`-4` or `-6`, as `ss` takes it).
pub(crate) fn wait_for_listener_of(ns: &Ns, port: u16, protocol: &str, family: &str) {
    let flag = if protocol == "tcp" { "-ltn" } else { "-lun" };
    let ok = wait_until(Duration::from_secs(5), || {
        ns.output(&["ss", flag, family, &format!("sport = :{port}")])
            .stdout
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count()
            > 1
    });
    assert!(
        ok,
        "no {protocol} listener on port {port} in {} after 5 s",
        ns.name
    );
}
