//! The cloud provider's API, for the one thing high availability needs from it: moving the
//! reserved (floating) IP to this droplet and telling who holds it.
//!
//! DigitalOcean: `POST /v2/reserved_ips/{ip}/actions {"type":"assign","droplet_id":N}` starts
//! an action, `GET /v2/reserved_ips/{ip}/actions/{id}` says when it is `completed`, and
//! `GET /v2/reserved_ips/{ip}` names the droplet that holds the IP. A 429 or a 5xx, or no
//! answer at all, is tried again with backoff until the deadline; anything else the API
//! refuses is final and becomes one line that says what to fix.

use std::fmt;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tracing::{debug, info};
use zeroize::Zeroizing;

pub const DIGITALOCEAN_API: &str = "https://api.digitalocean.com";
/// How long a claim may take in all: DigitalOcean's assign actions take seconds.
pub const CLAIM_DEADLINE: Duration = Duration::from_secs(60);
/// One request's limit; a claim tries again until [`CLAIM_DEADLINE`].
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an action is asked about; within DigitalOcean's 250 requests a minute. The
/// first asks come sooner (doubling from [`POLL_FIRST`]): every forward waits for the
/// answer, and a quick action would otherwise cost up to a whole interval.
const POLL_EVERY: Duration = Duration::from_millis(250);
const POLL_FIRST: Duration = Duration::from_millis(25);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(4);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("no API token at {0}: put a token that may write reserved IPs in it (install -m 600 /dev/stdin {0} <<< TOKEN)")]
    TokenMissing(PathBuf),
    #[error("the API token file {path} is readable by others (mode {mode:o}): chmod 600 {path}")]
    TokenExposed { path: PathBuf, mode: u32 },
    #[error("cannot read the API token {path}: {why}")]
    TokenUnreadable { path: PathBuf, why: String },
    #[error("the provider refused the API token from {0} (401): put a valid token with write access to reserved IPs there")]
    Unauthorized(PathBuf),
    #[error("reserved IP {0} is not in the token's account (404): check `reserved_ip` in ha.toml, or use a token of the account that owns it")]
    UnknownIp(Ipv4Addr),
    #[error("the provider refused to {what} ({status}): {message}")]
    Refused {
        what: String,
        status: u16,
        message: String,
    },
    #[error("cannot reach the provider's API at {url} within {secs} s: {why}")]
    Unreachable { url: String, secs: u64, why: String },
    #[error("the provider's action {action} to assign {ip} ended as '{status}'")]
    ActionFailed {
        ip: Ipv4Addr,
        action: u64,
        status: String,
    },
    #[error("the provider's answer made no sense ({0})")]
    Garbled(String),
}

/// The API token, read from its file; never shown.
pub struct Token {
    secret: Zeroizing<String>,
    path: PathBuf,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({}, ***)", self.path.display())
    }
}

impl Token {
    /// Reads the token from `path`, which only its owner may read (0600 or stricter).
    pub fn read(path: &Path) -> Result<Token, ProviderError> {
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ProviderError::TokenMissing(path.to_path_buf()))
            }
            Err(e) => {
                return Err(ProviderError::TokenUnreadable {
                    path: path.to_path_buf(),
                    why: e.to_string(),
                })
            }
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(ProviderError::TokenExposed {
                path: path.to_path_buf(),
                mode,
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| ProviderError::TokenUnreadable {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
        let secret = Zeroizing::new(text.trim().to_string());
        if secret.is_empty() || secret.contains(char::is_whitespace) {
            return Err(ProviderError::TokenUnreadable {
                path: path.to_path_buf(),
                why: "it should hold one token on one line".into(),
            });
        }
        Ok(Token {
            secret,
            path: path.to_path_buf(),
        })
    }
}

/// What a completed claim cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claimed {
    /// From the first request to the action's `completed`.
    pub took: Duration,
    /// Requests that were tried again (429, 5xx, no answer).
    pub retries: u32,
}

/// The reserved IP's owner as the provider knows it.
pub trait Provider: Send + Sync {
    /// Moves `ip` to `droplet` and waits until the provider says it is done.
    fn claim(&self, ip: Ipv4Addr, droplet: u64) -> Result<Claimed, ProviderError>;
    /// The droplet that holds `ip` (`None`: nobody).
    fn holder(&self, ip: Ipv4Addr) -> Result<Option<u64>, ProviderError>;
}

pub struct DigitalOcean {
    base: String,
    token: Token,
    agent: ureq::Agent,
    deadline: Duration,
}

impl DigitalOcean {
    /// The API at `base` (`https://api.digitalocean.com`; tests give a fake's address).
    pub fn new(base: &str, token: Token) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .proxy(None)
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .build()
            .into();
        DigitalOcean {
            base: base.trim_end_matches('/').to_string(),
            token,
            agent,
            deadline: CLAIM_DEADLINE,
        }
    }

    /// A shorter deadline than [`CLAIM_DEADLINE`] (`roamgw ha status` asks within seconds).
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// One request, tried again on 429, 5xx and transport errors until `until`.
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
        until: Instant,
        retries: &mut u32,
    ) -> Result<(u16, String), ProviderError> {
        let url = format!("{}{path}", self.base);
        let auth = Zeroizing::new(format!("Bearer {}", self.token.secret.as_str()));
        let mut backoff = FIRST_BACKOFF;
        loop {
            let sent = match (method, &body) {
                ("POST", Some(body)) => self
                    .agent
                    .post(&url)
                    .header("Authorization", auth.as_str())
                    .content_type("application/json")
                    .send(body.as_str()),
                _ => self
                    .agent
                    .get(&url)
                    .header("Authorization", auth.as_str())
                    .call(),
            };
            let why = match sent {
                Ok(mut response) => {
                    let status = response.status().as_u16();
                    let text = response
                        .body_mut()
                        .read_to_string()
                        .unwrap_or_else(|e| format!("(unreadable body: {e})"));
                    if status != 429 && status < 500 {
                        return Ok((status, text));
                    }
                    format!("{status} {}", api_message(&text))
                }
                Err(e) => e.to_string(),
            };
            if Instant::now() + backoff >= until {
                return Err(ProviderError::Unreachable {
                    url,
                    secs: self.deadline.as_secs(),
                    why,
                });
            }
            debug!("{method} {url}: {why}; trying again in {backoff:?}");
            *retries += 1;
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// A final answer that is not a success, as the error that says what to do.
    fn refusal(&self, ip: Ipv4Addr, what: &str, status: u16, text: &str) -> ProviderError {
        match status {
            401 | 403 => ProviderError::Unauthorized(self.token.path.clone()),
            404 => ProviderError::UnknownIp(ip),
            _ => ProviderError::Refused {
                what: what.to_string(),
                status,
                message: api_message(text),
            },
        }
    }
}

#[derive(Deserialize)]
struct ActionReply {
    action: Action,
}

#[derive(Deserialize)]
struct Action {
    id: u64,
    status: String,
}

#[derive(Deserialize)]
struct ReservedIpReply {
    reserved_ip: ReservedIp,
}

#[derive(Deserialize)]
struct ReservedIp {
    droplet: Option<DropletRef>,
}

#[derive(Deserialize)]
struct DropletRef {
    id: u64,
}

/// DigitalOcean's error body is `{"id": "...", "message": "..."}`; anything else is shown cut.
fn api_message(text: &str) -> String {
    #[derive(Deserialize)]
    struct ApiError {
        message: String,
    }
    match serde_json::from_str::<ApiError>(text) {
        Ok(e) => e.message,
        Err(_) => text.chars().take(120).collect(),
    }
}

impl Provider for DigitalOcean {
    fn claim(&self, ip: Ipv4Addr, droplet: u64) -> Result<Claimed, ProviderError> {
        let started = Instant::now();
        let until = started + self.deadline;
        let mut retries = 0;
        let body = serde_json::json!({"type": "assign", "droplet_id": droplet}).to_string();
        let what = format!("assign {ip} to droplet {droplet}");
        let path = format!("/v2/reserved_ips/{ip}/actions");
        let (status, text) = self.call("POST", &path, Some(body), until, &mut retries)?;
        if !(200..300).contains(&status) {
            return Err(self.refusal(ip, &what, status, &text));
        }
        let mut action = parse::<ActionReply>(&text)?.action;
        info!(action = action.id, "the provider started moving {ip} here");
        let mut wait = POLL_FIRST;
        loop {
            match action.status.as_str() {
                "completed" => {
                    return Ok(Claimed {
                        took: started.elapsed(),
                        retries,
                    })
                }
                "in-progress" => {}
                other => {
                    return Err(ProviderError::ActionFailed {
                        ip,
                        action: action.id,
                        status: other.to_string(),
                    })
                }
            }
            if Instant::now() + wait >= until {
                return Err(ProviderError::Unreachable {
                    url: format!("{}{path}/{}", self.base, action.id),
                    secs: self.deadline.as_secs(),
                    why: "the action was still in progress".into(),
                });
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(POLL_EVERY);
            let poll = format!("{path}/{}", action.id);
            let (status, text) = self.call("GET", &poll, None, until, &mut retries)?;
            if !(200..300).contains(&status) {
                return Err(self.refusal(ip, &what, status, &text));
            }
            action = parse::<ActionReply>(&text)?.action;
        }
    }

    fn holder(&self, ip: Ipv4Addr) -> Result<Option<u64>, ProviderError> {
        let until = Instant::now() + self.deadline;
        let mut retries = 0;
        let path = format!("/v2/reserved_ips/{ip}");
        let (status, text) = self.call("GET", &path, None, until, &mut retries)?;
        if !(200..300).contains(&status) {
            return Err(self.refusal(ip, &format!("look up {ip}"), status, &text));
        }
        Ok(parse::<ReservedIpReply>(&text)?
            .reserved_ip
            .droplet
            .map(|d| d.id))
    }
}

fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ProviderError> {
    serde_json::from_str(text).map_err(|e| {
        ProviderError::Garbled(format!(
            "{e}: {}",
            text.chars().take(120).collect::<String>()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    type Seen = Arc<Mutex<Vec<String>>>;

    /// An API on loopback that gives `replies` in order and notes each request as
    /// "METHOD URL AUTH BODY".
    fn canned(replies: Vec<(u16, &'static str)>) -> (String, Seen) {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("binds");
        let base = format!("http://{}", server.server_addr());
        let seen: Seen = Arc::default();
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for (status, body) in replies {
                let Ok(mut request) = server.recv() else {
                    return;
                };
                let auth = request
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("Authorization"))
                    .map(|h| h.value.to_string())
                    .unwrap_or_default();
                let mut sent = String::new();
                let _ = request.as_reader().read_to_string(&mut sent);
                log.lock().expect("log").push(format!(
                    "{} {} {auth} {sent}",
                    request.method(),
                    request.url()
                ));
                let _ = request
                    .respond(tiny_http::Response::from_string(body).with_status_code(status));
            }
        });
        (base, seen)
    }

    fn token() -> (tempfile::TempDir, Token) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        roamgw_common::fsutil::write_private(&path, b"dop_v1_secret\n").expect("writes");
        let token = Token::read(&path).expect("reads");
        (dir, token)
    }

    const IN_PROGRESS: &str = r#"{"action":{"id":7,"status":"in-progress","type":"assign_ip"}}"#;
    const COMPLETED: &str = r#"{"action":{"id":7,"status":"completed","type":"assign_ip"}}"#;
    const IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 50);

    #[test]
    fn a_claim_posts_the_assign_action_and_polls_it_to_completed() {
        let (base, seen) = canned(vec![
            (201, IN_PROGRESS),
            (200, IN_PROGRESS),
            (200, COMPLETED),
        ]);
        let (_dir, token) = token();
        let claimed = DigitalOcean::new(&base, token)
            .claim(IP, 4242)
            .expect("claims");
        assert_eq!(claimed.retries, 0);
        let seen = seen.lock().expect("log").clone();
        assert_eq!(
            seen[0],
            "POST /v2/reserved_ips/203.0.113.50/actions Bearer dop_v1_secret {\"droplet_id\":4242,\"type\":\"assign\"}"
        );
        assert!(
            seen[2].starts_with("GET /v2/reserved_ips/203.0.113.50/actions/7 "),
            "{seen:?}"
        );
    }

    #[test]
    fn busy_and_broken_answers_are_tried_again() {
        let (base, _) = canned(vec![
            (
                429,
                r#"{"id":"too_many_requests","message":"API Rate limit exceeded."}"#,
            ),
            (503, "<html>bad gateway</html>"),
            (201, COMPLETED),
        ]);
        let (_dir, token) = token();
        let claimed = DigitalOcean::new(&base, token)
            .claim(IP, 1)
            .expect("claims");
        assert_eq!(claimed.retries, 2);
    }

    #[test]
    fn a_wrong_token_or_a_foreign_ip_is_one_line_that_says_what_to_fix() {
        let (_dir, token) = token();
        let (base, _) = canned(vec![(
            401,
            r#"{"id":"unauthorized","message":"Unable to authenticate you."}"#,
        )]);
        let err = DigitalOcean::new(&base, token)
            .claim(IP, 1)
            .expect_err("401");
        assert!(matches!(err, ProviderError::Unauthorized(_)), "{err}");
        let (_dir, token) = self::token();
        let (base, _) = canned(vec![(
            404,
            r#"{"id":"not_found","message":"The resource you were accessing could not be found."}"#,
        )]);
        let err = DigitalOcean::new(&base, token)
            .claim(IP, 1)
            .expect_err("404");
        assert_eq!(err, ProviderError::UnknownIp(IP));
        assert!(!err.to_string().contains('\n'));
        let (_dir, token) = self::token();
        let (base, _) = canned(vec![
            (201, IN_PROGRESS),
            (200, r#"{"action":{"id":7,"status":"errored"}}"#),
        ]);
        let err = DigitalOcean::new(&base, token)
            .claim(IP, 1)
            .expect_err("errored");
        assert!(err.to_string().contains("errored"), "{err}");
    }

    #[test]
    fn an_api_that_never_answers_fails_at_the_deadline() {
        let (_dir, token) = token();
        // A port nothing listens on: bind, learn the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let started = Instant::now();
        let err = DigitalOcean::new(&format!("http://127.0.0.1:{port}"), token)
            .with_deadline(Duration::from_secs(1))
            .claim(IP, 1)
            .expect_err("unreachable");
        assert!(matches!(err, ProviderError::Unreachable { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn the_holder_is_the_droplet_the_api_names() {
        let (_dir, token) = token();
        let (base, _) = canned(vec![
            (
                200,
                r#"{"reserved_ip":{"ip":"203.0.113.50","droplet":{"id":99,"name":"b"},"region":{}}}"#,
            ),
            (
                200,
                r#"{"reserved_ip":{"ip":"203.0.113.50","droplet":null}}"#,
            ),
        ]);
        let api = DigitalOcean::new(&base, token);
        assert_eq!(api.holder(IP), Ok(Some(99)));
        assert_eq!(api.holder(IP), Ok(None));
    }

    #[test]
    fn the_token_file_must_exist_and_be_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        assert!(matches!(
            Token::read(&path),
            Err(ProviderError::TokenMissing(_))
        ));
        std::fs::write(&path, "dop_v1_x\n").expect("writes");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = Token::read(&path).expect_err("exposed");
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let token = Token::read(&path).expect("reads");
        assert!(!format!("{token:?}").contains("dop_v1_x"));
    }
}
