//! Does the TCP port reach the gateway, or does the network answer in its place (a captive
//! portal that intercepts TCP until someone logs in)? Asked of the gateway itself, never of a
//! third party: the gateway answers [`super::PROBE_REQUEST`] with [`super::PROBE_ANSWER`];
//! a portal answers with HTTP of its own (a redirect to its login page, or the page), or with
//! TLS of its own on 443.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reached {
    /// The gateway answered: the path is open (as far as TCP goes).
    Gateway,
    /// Something else answered in its place; log in at this URL.
    Portal(String),
    /// No answer at all (refused, reset, timed out): a plain outage, not a portal.
    Nothing(String),
}

/// Asks `gateway` (its TCP fallback) once, within `timeout`.
pub fn check(gateway: SocketAddr, timeout: Duration) -> Reached {
    match ask(gateway, timeout) {
        Ok(answer) => verdict(&answer, gateway),
        Err(e) => Reached::Nothing(e.to_string()),
    }
}

fn ask(gateway: SocketAddr, timeout: Duration) -> io::Result<Vec<u8>> {
    let socket = super::beside_tunnel(gateway, socket2::Type::STREAM)?;
    socket.connect_timeout(&gateway.into(), timeout)?;
    let mut stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(super::PROBE_REQUEST.as_bytes())?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 2048];
    // Enough to see a status line and a Location header; a portal's page may be long.
    while answer.len() < 8192 {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) if answer.is_empty() => return Err(e),
            Err(_) => break,
        }
        if answer.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    Ok(answer)
}

/// What an answer to the probe means.
pub fn verdict(answer: &[u8], gateway: SocketAddr) -> Reached {
    let page = || format!("http://{}/", gateway.ip());
    if answer.starts_with(super::PROBE_ANSWER.as_bytes()) {
        return Reached::Gateway;
    }
    if answer.starts_with(b"HTTP/1.") || answer.starts_with(b"HTTP/2") {
        let text = String::from_utf8_lossy(answer);
        let location = text
            .split("\r\n")
            .take_while(|line| !line.is_empty())
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case("location")
                    .then(|| value.trim().to_string())
            })
            .filter(|l| !l.is_empty());
        return Reached::Portal(location.unwrap_or_else(page));
    }
    // A TLS record (handshake or alert) where the gateway speaks no TLS: the network answers
    // 443 itself; its login page is at any plain-HTTP address.
    if answer.len() >= 2 && matches!(answer[0], 0x15 | 0x16) && answer[1] == 0x03 {
        return Reached::Portal(page());
    }
    if answer.is_empty() {
        return Reached::Nothing("closed without an answer".into());
    }
    Reached::Portal(page())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_mean_what_they_say() {
        let gw: SocketAddr = "203.0.113.50:443".parse().expect("addr");
        let page = Reached::Portal("http://203.0.113.50/".into());
        for (answer, expected) in [
            (super::super::PROBE_ANSWER.as_bytes().to_vec(), Reached::Gateway),
            (
                b"HTTP/1.1 302 Found\r\nLocation: http://portal.example/login?x=1\r\nContent-Length: 0\r\n\r\n".to_vec(),
                Reached::Portal("http://portal.example/login?x=1".into()),
            ),
            (
                b"HTTP/1.0 302 Moved\r\nlocation:  https://wifi.example/ \r\n\r\n".to_vec(),
                Reached::Portal("https://wifi.example/".into()),
            ),
            (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html>".to_vec(), page.clone()),
            (vec![0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28], page.clone()),
            (
                b"HTTP/1.1 200 OK\r\n\r\nLocation: not a header".to_vec(),
                page.clone(),
            ),
            (Vec::new(), Reached::Nothing("closed without an answer".into())),
        ] {
            assert_eq!(verdict(&answer, gw), expected, "{}", String::from_utf8_lossy(&answer));
        }
    }
}
