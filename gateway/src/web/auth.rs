//! Who may change what through the page: the token, and the checks against cross-site
//! requests and DNS rebinding (see the module above for why each exists).

use std::net::SocketAddr;
use std::path::Path;

use super::WebError;

/// The secret that allows changes from the page. Never printed.
#[derive(Clone)]
pub struct Token(pub(super) String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

impl Token {
    pub fn load(path: &Path) -> Result<Token, WebError> {
        use std::os::unix::fs::PermissionsExt as _;
        let read = |source| WebError::TokenRead {
            path: path.to_path_buf(),
            source,
        };
        let mode = std::fs::metadata(path).map_err(read)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(WebError::TokenMode {
                path: path.to_path_buf(),
                mode: mode & 0o777,
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        let token = text.trim();
        if token.len() < 16 {
            return Err(WebError::TokenShort {
                path: path.to_path_buf(),
                len: token.len(),
            });
        }
        Ok(Token(token.to_string()))
    }

    pub(super) fn matches(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

/// The request headers the checks look at.
#[derive(Debug, Default, Clone)]
pub struct Headers {
    pub host: Option<String>,
    pub origin: Option<String>,
    pub sec_fetch_site: Option<String>,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
}

/// Whether a request's `Host` may be served: on a loopback address only loopback names (a
/// DNS-rebinding page reaches 127.0.0.1 under its own name); elsewhere any.
pub fn host_allowed(host: Option<&str>, bound: SocketAddr) -> bool {
    if !bound.ip().is_loopback() {
        return true;
    }
    let Some(host) = host else { return false };
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Why a change from the page is refused, as (HTTP status, message); `None`: allowed.
pub fn refuse_change(headers: &Headers, token: Option<&Token>) -> Option<(u16, String)> {
    let Some(token) = token else {
        return Some((
            403,
            "changes are off: this page is read-only unless roamgw run has --http-token-file"
                .into(),
        ));
    };
    let media_type = headers
        .content_type
        .as_deref()
        .map(|t| t.split(';').next().unwrap_or_default().trim());
    if media_type != Some("application/json") {
        return Some((415, "a change is a JSON request".into()));
    }
    if headers
        .sec_fetch_site
        .as_deref()
        .is_some_and(|s| s != "same-origin" && s != "none")
    {
        return Some((403, "cross-site request refused".into()));
    }
    if let Some(origin) = &headers.origin {
        let same = headers
            .host
            .as_deref()
            .is_some_and(|host| origin.strip_prefix("http://") == Some(host));
        if !same {
            return Some((
                403,
                format!("request from another origin ({origin}) refused"),
            ));
        }
    }
    let presented = headers
        .authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "));
    match presented {
        Some(p) if token.matches(p.trim()) => None,
        Some(_) => Some((401, "wrong token".into())),
        None => Some((
            401,
            "a change needs the token (Authorization: Bearer …)".into(),
        )),
    }
}
