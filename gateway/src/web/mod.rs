//! `roamgw run --http ADDR`: Prometheus metrics at `/metrics`, and a status page at `/` (one
//! HTML file, its script and its style, all inside the binary) fed by `/api/status`.
//!
//! Read-only unless `--http-token-file` names a token. Then the page may add and remove
//! forwards: they are handed to the daemon's engine ([`Submit`]), as the CLI's are. A
//! change must carry the token in an `Authorization: Bearer` header, which a browser never
//! attaches on its own, so another site cannot make a visitor's browser send it (no cookie,
//! no ambient authority); on top of that a change needs `Content-Type: application/json`
//! (a cross-site form cannot send it without a CORS preflight, which is never granted) and a
//! same-origin `Origin` / `Sec-Fetch-Site` when the browser sends them. On a loopback address
//! the `Host` header must name a loopback host too, so a DNS-rebinding page cannot read it.

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use roamgw_common::clock::unix_ms;
use roamgw_common::state::ClientIp;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::change::StateChange;
use crate::engine::Submit;
use crate::monitor::{Monitor, Totals, SAMPLE_SECS};

mod auth;
mod view;

pub use auth::{host_allowed, refuse_change, Headers, Token};
use view::status_view;

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("page.js");
const STYLE: &str = include_str!("page.css");
/// Larger bodies are refused: a change is a few hundred bytes.
const MAX_BODY: u64 = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("cannot read the token file {path}: {source}")]
    TokenRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the token file {path} is readable by others (mode {mode:o}): chmod 600 {path}")]
    TokenMode { path: PathBuf, mode: u32 },
    #[error("the token in {path} is too short ({len} characters): use at least 16, e.g. `openssl rand -hex 32 > {path}`")]
    TokenShort { path: PathBuf, len: usize },
    #[error("cannot serve http://{addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddForward {
    spec: String,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    allow_from: Vec<String>,
    #[serde(default)]
    client_ip: Option<ClientIp>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveForward {
    spec: String,
}

fn parse_add(body: &str) -> Result<StateChange, String> {
    let form: AddForward =
        serde_json::from_str(body).map_err(|e| format!("not a forward to add: {e}"))?;
    Ok(StateChange::AddPort {
        spec: form.spec.trim().parse().map_err(|e| format!("{e}"))?,
        to: form
            .to
            .filter(|t| !t.trim().is_empty())
            .map(|t| t.trim().parse())
            .transpose()
            .map_err(|e| format!("{e}"))?,
        allow_from: form
            .allow_from
            .iter()
            .map(|c| crate::change::parse_source(c.trim()))
            .collect::<Result<_, _>>()?,
        client_ip: form.client_ip,
    })
}

fn parse_remove(body: &str) -> Result<StateChange, String> {
    let form: RemoveForward =
        serde_json::from_str(body).map_err(|e| format!("not a forward to remove: {e}"))?;
    Ok(StateChange::RemovePort {
        spec: form.spec.trim().parse().map_err(|e| format!("{e}"))?,
    })
}

/// What the server answers, before it becomes a tiny_http response.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl Answer {
    fn json(status: u16, value: &impl Serialize) -> Answer {
        Answer {
            status,
            content_type: "application/json",
            body: serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")),
        }
    }

    fn message(status: u16, message: &str) -> Answer {
        let key = if status < 400 { "summary" } else { "error" };
        Answer::json(status, &serde_json::json!({ key: message }))
    }

    fn text(status: u16, content_type: &'static str, body: &str) -> Answer {
        Answer {
            status,
            content_type,
            body: body.to_string(),
        }
    }
}

struct Server {
    addr: SocketAddr,
    monitor: Arc<Monitor>,
    token: Option<Token>,
    changes: Arc<dyn Submit>,
}

impl Server {
    fn answer(&self, method: &str, path: &str, headers: &Headers, body: &str) -> Answer {
        if !host_allowed(headers.host.as_deref(), self.addr) {
            return Answer::message(421, "this server answers to its loopback address only");
        }
        let path = path.split('?').next().unwrap_or_default();
        match (method, path) {
            ("GET", "/metrics") => Answer {
                status: 200,
                content_type: roamgw_common::metrics::CONTENT_TYPE,
                body: crate::metrics::render(&crate::metrics::snapshot(&self.monitor)),
            },
            ("GET", "/") => Answer::text(200, "text/html; charset=utf-8", PAGE),
            ("GET", "/page.js") => Answer::text(200, "text/javascript; charset=utf-8", SCRIPT),
            ("GET", "/page.css") => Answer::text(200, "text/css; charset=utf-8", STYLE),
            ("GET", "/api/status") => {
                Answer::json(200, &status_view(&self.monitor, self.token.is_some()))
            }
            ("POST", "/api/forwards/add" | "/api/forwards/remove") => {
                if let Some((status, message)) = refuse_change(headers, self.token.as_ref()) {
                    warn!(path, "change from the status page refused: {message}");
                    return Answer::message(status, &message);
                }
                let change = if path.ends_with("/add") {
                    parse_add(body)
                } else {
                    parse_remove(body)
                };
                match change.map(|change| self.changes.submit(change)) {
                    Err(message) => Answer::message(400, &message),
                    Ok(Err(e)) => Answer::message(e.fault.http_status(), &e.message),
                    Ok(Ok(done)) => {
                        // The daemon's engine made it live: the CLI's words for that.
                        let summary = format!("{}; live", done.summary);
                        info!("status page: {summary}");
                        Answer::message(200, &summary)
                    }
                }
            }
            (
                _,
                "/metrics" | "/" | "/api/status" | "/api/forwards/add" | "/api/forwards/remove",
            ) => Answer::message(405, "method not allowed"),
            _ => Answer::message(404, "not found: / (the page), /metrics, /api/status"),
        }
    }

    fn respond(&self, mut request: tiny_http::Request) {
        let header = |name: &'static str| {
            request
                .headers()
                .iter()
                .find(|h| h.field.equiv(name))
                .map(|h| h.value.as_str().to_string())
        };
        let headers = Headers {
            host: header("Host"),
            origin: header("Origin"),
            sec_fetch_site: header("Sec-Fetch-Site"),
            authorization: header("Authorization"),
            content_type: header("Content-Type"),
        };
        let method = request.method().as_str().to_string();
        let url = request.url().to_string();
        let mut body = String::new();
        let answer = if request
            .as_reader()
            .take(MAX_BODY + 1)
            .read_to_string(&mut body)
            .is_err()
        {
            Answer::message(400, "the body is not UTF-8")
        } else if body.len() as u64 > MAX_BODY {
            Answer::message(413, "the body is too large")
        } else {
            self.answer(&method, &url, &headers, &body)
        };
        let mut response =
            tiny_http::Response::from_string(answer.body).with_status_code(answer.status);
        for (name, value) in [
            ("Content-Type", answer.content_type),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            ("X-Frame-Options", "DENY"),
            ("Referrer-Policy", "no-referrer"),
            (
                "Content-Security-Policy",
                "default-src 'self'; frame-ancestors 'none'; form-action 'none'",
            ),
        ] {
            if let Ok(h) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
                response.add_header(h);
            }
        }
        let _ = request.respond(response);
    }
}

/// Every [`SAMPLE_SECS`]: the device's byte counters summed over the roamers, for the chart.
fn sample_forever(monitor: Arc<Monitor>) {
    loop {
        if let Some(state) = monitor.state() {
            let peers = crate::metrics::peers(&state, &monitor);
            monitor.sample(Totals {
                at_ms: unix_ms(),
                rx_bytes: peers.iter().map(|p| p.rx_bytes).sum(),
                tx_bytes: peers.iter().map(|p| p.tx_bytes).sum(),
            });
        }
        std::thread::sleep(Duration::from_secs(SAMPLE_SECS));
    }
}

/// Serves metrics, the page and its API on `addr` from threads of their own, until the
/// process ends.
pub fn serve(
    addr: SocketAddr,
    token: Option<Token>,
    monitor: Arc<Monitor>,
    changes: Arc<dyn Submit>,
) -> Result<(), WebError> {
    let bind = |source| WebError::Bind { addr, source };
    let http = tiny_http::Server::http(addr).map_err(bind)?;
    if !addr.ip().is_loopback() {
        warn!(%addr, "the status page and metrics are served on a non-local address: anyone who reaches it sees the forwards and roamers");
    }
    info!(
        %addr,
        changes = if token.is_some() { "with the token" } else { "off (read-only)" },
        "status page at http://{addr}/, metrics at http://{addr}/metrics"
    );
    let sampler = monitor.clone();
    std::thread::Builder::new()
        .name("http-sampler".into())
        .spawn(move || sample_forever(sampler))
        .map_err(|e| bind(Box::new(e)))?;
    let server = Server {
        addr,
        monitor,
        token,
        changes,
    };
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            for request in http.incoming_requests() {
                server.respond(request);
            }
        })
        .map_err(|e| bind(Box::new(e)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::view::health_of;
    use super::*;

    fn token() -> Token {
        Token("0123456789abcdef0123".into())
    }

    fn headers(f: impl FnOnce(&mut Headers)) -> Headers {
        let mut h = Headers {
            host: Some("127.0.0.1:9587".into()),
            origin: Some("http://127.0.0.1:9587".into()),
            sec_fetch_site: Some("same-origin".into()),
            authorization: Some("Bearer 0123456789abcdef0123".into()),
            content_type: Some("application/json".into()),
        };
        f(&mut h);
        h
    }

    #[test]
    fn change_refusals_table() {
        let t = token();
        let cases: Vec<(&str, Headers, Option<&Token>, Option<u16>)> = vec![
            ("allowed", headers(|_| {}), Some(&t), None),
            ("no token configured", headers(|_| {}), None, Some(403)),
            (
                "no Authorization",
                headers(|h| h.authorization = None),
                Some(&t),
                Some(401),
            ),
            (
                "wrong token",
                headers(|h| h.authorization = Some("Bearer nope".into())),
                Some(&t),
                Some(401),
            ),
            (
                "a form post",
                headers(|h| h.content_type = Some("application/x-www-form-urlencoded".into())),
                Some(&t),
                Some(415),
            ),
            (
                "json with a charset",
                headers(|h| h.content_type = Some("application/json; charset=utf-8".into())),
                Some(&t),
                None,
            ),
            (
                "another origin",
                headers(|h| h.origin = Some("http://evil.example".into())),
                Some(&t),
                Some(403),
            ),
            (
                "cross-site fetch",
                headers(|h| h.sec_fetch_site = Some("cross-site".into())),
                Some(&t),
                Some(403),
            ),
            (
                "curl (no Origin, no Sec-Fetch-Site)",
                headers(|h| {
                    h.origin = None;
                    h.sec_fetch_site = None;
                }),
                Some(&t),
                None,
            ),
        ];
        for (name, h, token, want) in cases {
            assert_eq!(refuse_change(&h, token).map(|r| r.0), want, "{name}");
        }
    }

    #[test]
    fn hosts_table() {
        let local: SocketAddr = "127.0.0.1:9587".parse().expect("addr");
        let public: SocketAddr = "0.0.0.0:9587".parse().expect("addr");
        for (host, bound, want) in [
            (Some("127.0.0.1:9587"), local, true),
            (Some("localhost:9587"), local, true),
            (Some("[::1]:9587"), local, true),
            (Some("127.0.0.1"), local, true),
            (Some("evil.example:9587"), local, false),
            (None, local, false),
            (Some("gw.example.net:9587"), public, true),
        ] {
            assert_eq!(host_allowed(host, bound), want, "{host:?} on {bound}");
        }
    }

    #[test]
    fn token_files_must_be_private_and_long() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tmp");
        let write = |name: &str, text: &str, mode: u32| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            path
        };
        let good = write("good", "0123456789abcdef0123\n", 0o600);
        assert!(Token::load(&good).is_ok_and(|t| t.matches("0123456789abcdef0123")));
        let open = write("open", "0123456789abcdef0123", 0o644);
        assert!(Token::load(&open).is_err_and(|e| e.to_string().contains("chmod 600")));
        let short = write("short", "abc\n", 0o600);
        assert!(Token::load(&short).is_err_and(|e| e.to_string().contains("at least 16")));
        assert!(Token::load(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn the_token_is_never_printed() {
        assert_eq!(format!("{:?}", token()), "Token(***)");
    }

    #[test]
    fn bodies_parse_like_the_cli() {
        let change =
            parse_add(r#"{"spec":"8080:80/tcp","to":"laptop","allow_from":["192.0.2.0/24"]}"#)
                .expect("valid");
        let StateChange::AddPort {
            spec, allow_from, ..
        } = change
        else {
            panic!("an added forward: {change:?}");
        };
        assert_eq!(spec.to_string(), "8080:80/tcp");
        assert_eq!(allow_from.len(), 1);
        assert!(parse_add(r#"{"spec":"70000"}"#).is_err());
        assert!(parse_add(r#"{"spec":"22","extra":1}"#).is_err());
        assert!(parse_add(r#"{"spec":"22","allow_from":["192.0.2.1/24"]}"#)
            .is_err_and(|e| e.contains("host bits")));
        let removed = parse_remove(r#"{"spec":"22"}"#).expect("valid");
        assert!(
            matches!(&removed, StateChange::RemovePort { spec } if spec.to_string() == "22/tcp"),
            "{removed:?}"
        );
    }

    struct NoChanges;

    impl Submit for NoChanges {
        fn submit(
            &self,
            _: StateChange,
        ) -> Result<crate::engine::Done, crate::engine::ChangeError> {
            Err(crate::engine::ChangeError::new(
                crate::engine::Fault::Unavailable,
                "no engine in this test",
            ))
        }
    }

    #[test]
    fn routes_table() {
        let server = Server {
            addr: "127.0.0.1:9587".parse().expect("addr"),
            monitor: Arc::new(Monitor::default()),
            token: None,
            changes: Arc::new(NoChanges),
        };
        let local = headers(|h| {
            h.authorization = None;
        });
        let cases = [
            ("GET", "/", &local, 200, "text/html; charset=utf-8"),
            (
                "GET",
                "/page.js",
                &local,
                200,
                "text/javascript; charset=utf-8",
            ),
            ("GET", "/api/status?x=1", &local, 200, "application/json"),
            (
                "GET",
                "/metrics",
                &local,
                200,
                roamgw_common::metrics::CONTENT_TYPE,
            ),
            ("GET", "/api/forwards/add", &local, 405, "application/json"),
            (
                "POST",
                "/api/forwards/remove",
                &local,
                403,
                "application/json",
            ),
            ("GET", "/nothing", &local, 404, "application/json"),
        ];
        for (method, path, h, status, content_type) in cases {
            let answer = server.answer(method, path, h, "");
            assert_eq!(
                (answer.status, answer.content_type),
                (status, content_type),
                "{method} {path}: {}",
                answer.body
            );
        }
        let rebinding = headers(|h| h.host = Some("evil.example:9587".into()));
        assert_eq!(
            server.answer("GET", "/api/status", &rebinding, "").status,
            421
        );
        // Without a state the page still answers: nothing up, nothing listed.
        let status: serde_json::Value =
            serde_json::from_str(&server.answer("GET", "/api/status", &local, "").body)
                .expect("json");
        assert_eq!(status["up"], false);
        assert_eq!(status["changes_allowed"], false);
    }

    #[test]
    fn health_by_handshake_age() {
        assert_eq!(health_of(None), "never");
        assert_eq!(health_of(Some(5)), "up");
        assert_eq!(health_of(Some(181)), "stale");
    }
}
