//! A fake of the cloud provider's API, inside a test namespace: DigitalOcean's request and
//! response shapes for reserved IPs, a token check, and an action delay. When an assign
//! action completes, `on_assign` re-points the provider's floating-IP NAT (the testbed's
//! router) at the new holder.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Ns;

pub const TOKEN: &str = "dop_v1_roamgw_test_token";
pub const API_PORT: u16 = 8080;

/// What the fake knows and did.
#[derive(Default)]
pub struct Books {
    /// Reserved IP → droplet holding it.
    pub holders: HashMap<String, Option<u64>>,
    /// Action id → completed.
    pub actions: HashMap<u64, bool>,
    /// (droplet, when the assign arrived, when it completed).
    pub assigns: Vec<(u64, Instant, Option<Instant>)>,
    pub delay: Duration,
    /// Every request, as "METHOD URL".
    pub requests: Vec<String>,
}

pub struct FakeApi {
    pub books: Arc<Mutex<Books>>,
    pub url: String,
}

type OnAssign = Arc<dyn Fn(u64) + Send + Sync>;

impl FakeApi {
    /// Serves on `address`:[`API_PORT`] inside `ns`, with `ip` held by `holder`.
    pub fn start(ns: &Ns, address: &str, ip: &str, holder: u64, on_assign: OnAssign) -> FakeApi {
        let listen = format!("{address}:{API_PORT}");
        let server = ns
            .enter(move || tiny_http::Server::http(listen).map_err(|e| e.to_string()))
            .expect("the fake API binds");
        let books = Arc::new(Mutex::new(Books::default()));
        books
            .lock()
            .expect("books")
            .holders
            .insert(ip.to_string(), Some(holder));
        let served = Arc::clone(&books);
        std::thread::spawn(move || {
            for request in server.incoming_requests() {
                answer(request, &served, &on_assign);
            }
        });
        FakeApi {
            books,
            url: format!("http://{address}:{API_PORT}"),
        }
    }

    pub fn set_delay(&self, delay: Duration) {
        self.books.lock().expect("books").delay = delay;
    }

    pub fn holder(&self, ip: &str) -> Option<u64> {
        self.books
            .lock()
            .expect("books")
            .holders
            .get(ip)
            .copied()
            .flatten()
    }
}

fn json(status: u16, body: String) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let header =
        tiny_http::Header::from_bytes("Content-Type", "application/json").expect("a valid header");
    tiny_http::Response::from_string(body)
        .with_status_code(status)
        .with_header(header)
}

fn answer(mut request: tiny_http::Request, books: &Arc<Mutex<Books>>, on_assign: &OnAssign) {
    let url = request.url().to_string();
    let method = request.method().to_string();
    books
        .lock()
        .expect("books")
        .requests
        .push(format!("{method} {url}"));
    let authorized = request
        .headers()
        .iter()
        .any(|h| h.field.equiv("Authorization") && h.value.as_str() == format!("Bearer {TOKEN}"));
    if !authorized {
        let body = r#"{"id":"unauthorized","message":"Unable to authenticate you."}"#;
        let _ = request.respond(json(401, body.into()));
        return;
    }
    let mut body = String::new();
    let _ = request.as_reader().read_to_string(&mut body);
    let parts: Vec<&str> = url.trim_start_matches('/').split('/').collect();
    let reply = match (method.as_str(), parts.as_slice()) {
        ("POST", ["v2", "reserved_ips", ip, "actions"]) => assign(books, ip, &body, on_assign),
        ("GET", ["v2", "reserved_ips", ip, "actions", id]) => {
            let b = books.lock().expect("books");
            match id
                .parse::<u64>()
                .ok()
                .and_then(|id| b.actions.get(&id).map(|d| (id, *d)))
            {
                Some((id, done)) if b.holders.contains_key(*ip) => (
                    200,
                    action(id, if done { "completed" } else { "in-progress" }),
                ),
                _ => not_found(),
            }
        }
        ("GET", ["v2", "reserved_ips", ip]) => {
            let b = books.lock().expect("books");
            match b.holders.get(*ip) {
                Some(holder) => {
                    let droplet = holder.map_or("null".to_string(), |d| {
                        format!(r#"{{"id":{d},"name":"droplet-{d}"}}"#)
                    });
                    (
                        200,
                        format!(
                            r#"{{"reserved_ip":{{"ip":"{ip}","droplet":{droplet},"region":{{"slug":"test1"}},"locked":false}}}}"#
                        ),
                    )
                }
                None => not_found(),
            }
        }
        _ => not_found(),
    };
    let _ = request.respond(json(reply.0, reply.1));
}

fn not_found() -> (u16, String) {
    (
        404,
        r#"{"id":"not_found","message":"The resource you were accessing could not be found."}"#
            .into(),
    )
}

fn action(id: u64, status: &str) -> String {
    format!(
        r#"{{"action":{{"id":{id},"status":"{status}","type":"assign_ip","resource_type":"reserved_ip"}}}}"#
    )
}

/// Starts an assign action: after the delay the IP is the droplet's and the NAT follows.
fn assign(books: &Arc<Mutex<Books>>, ip: &str, body: &str, on_assign: &OnAssign) -> (u16, String) {
    let droplet = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .filter(|v| v["type"] == "assign")
        .and_then(|v| v["droplet_id"].as_u64());
    let Some(droplet) = droplet else {
        return (
            422,
            r#"{"id":"unprocessable_entity","message":"type and droplet_id are required"}"#.into(),
        );
    };
    let mut b = books.lock().expect("books");
    if !b.holders.contains_key(ip) {
        return not_found();
    }
    let id = b.actions.len() as u64 + 1;
    b.actions.insert(id, false);
    let index = b.assigns.len();
    b.assigns.push((droplet, Instant::now(), None));
    let delay = b.delay;
    drop(b);
    let books = Arc::clone(books);
    let ip = ip.to_string();
    let on_assign = Arc::clone(on_assign);
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        on_assign(droplet);
        let mut b = books.lock().expect("books");
        b.holders.insert(ip, Some(droplet));
        b.actions.insert(id, true);
        b.assigns[index].2 = Some(Instant::now());
    });
    (201, action(id, "in-progress"))
}
