//! What each `roamgw` subcommand does, by topic: setup (init, run, up, down, apply, rules),
//! roamers, forwards, status. This module: the errors, the one way a change is made (through
//! the daemon or directly), and the helpers the views share. Every handler returns the text
//! for stdout; notes and warnings go to the log (stderr). A failing handler changes nothing
//! on disk.

use std::fmt::Write as _;

use roamgw_common::names::Endpoint;
use roamgw_common::state::{
    check_subnet, ClientIp, Forward, GatewaySettings, GatewayState, WireguardMode, STATE_VERSION,
};
use roamgw_common::{PresharedKey, PrivateKey};
use serde::Serialize;
use tracing::{debug, info, warn};

use crate::change::{roamer_names, StateChange};
use crate::cli::{
    AddPortArgs, AddRoamerArgs, ConfigFormat, EgressArgs, Endpoint6Args, EndpointFamily,
    Forward6Args, InitArgs, RemovePortArgs, RemoveRoamerArgs, RotateKeyArgs, ShowConfigArgs,
    TcpFallbackArgs,
};
use crate::control;
use crate::dataplane;
use crate::detect;
use crate::engine::{ChangeError, Engine, Fault, Role};
use crate::peer_configs;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Bad input or a refused change: the message says what is wrong and how to fix it.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Detect(#[from] detect::DetectError),
    #[error(transparent)]
    Key(#[from] roamgw_common::keys::KeyError),
    #[error(transparent)]
    DataPlane(#[from] dataplane::DataPlaneError),
    #[error(transparent)]
    Daemon(#[from] crate::daemon::DaemonError),
    #[error(transparent)]
    Change(#[from] ChangeError),
}

impl CommandError {
    /// The process's exit code: a change's fault tells it apart (docs/usage.md); everything
    /// else is a refusal (1).
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Change(e) => e.fault.exit_code(),
            _ => Fault::Input.exit_code(),
        }
    }
}

fn refused(message: impl Into<String>) -> CommandError {
    CommandError::Refused(message.into())
}

type Result<T> = std::result::Result<T, CommandError>;

/// What "pending" means for this gateway: the command that makes it live here.
fn pending(state: &GatewayState) -> &'static str {
    if state.gateway.wireguard == WireguardMode::External {
        "saved; pending until the data plane is up (`roamgw up`)"
    } else {
        "saved; pending until `roamgw run` starts (`systemctl start roamgw`)"
    }
}
const LIVE: &str = "live";
/// How long the daemon may take to make a change live before the CLI gives up; the daemon
/// refuses a change whose CLI has given up, so the answer always matches what happened.
const DAEMON_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);
/// How long the CLI waits for the daemon's reply: the deadline plus time for the refusal.
const DAEMON_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(45);

/// Sends a request to the daemon if one runs: `Ok(None)` when none does. A daemon that holds
/// the directory but does not answer is an error: nothing may change behind its back.
fn ask_daemon(store: &Store, request: &control::Request) -> Result<Option<String>> {
    let unavailable = |message: String| ChangeError::new(Fault::Unavailable, message).into();
    match control::request(store, request, DAEMON_TIMEOUT) {
        Ok(control::Reply::Applied { summary }) => Ok(Some(summary)),
        Ok(control::Reply::Error { message, fault }) => {
            Err(ChangeError::new(fault, message).into())
        }
        Ok(other) => Err(unavailable(format!(
            "unexpected reply from the daemon: {other:?}"
        ))),
        Err(control::ControlError::NotRunning) => Ok(None),
        Err(e @ control::ControlError::Lock(_)) => {
            Err(ChangeError::new(Fault::Files, e.to_string()).into())
        }
        Err(e) => Err(unavailable(e.to_string())),
    }
}

/// Makes a change, with the state lock held by the caller. With `roamgw run` up, the daemon
/// applies it to the state it holds, makes it live and saves it. Without, it is applied to the
/// file: when the data plane is up it goes live first and is saved after, so a failure leaves
/// the file untouched; when it is not up, it is saved as pending. Returns the summary and
/// the word for the user: live or pending.
fn make_change(store: &Store, change: StateChange) -> Result<(String, &'static str)> {
    let request = control::Request::Change {
        change: change.clone(),
        deadline_unix_ms: control::deadline_in(DAEMON_DEADLINE),
    };
    // A running daemon refuses on the standby itself (its role is the live one).
    if let Some(summary) = ask_daemon(store, &request)? {
        return Ok((summary, LIVE));
    }
    refuse_on_standby(store)?;
    let mut engine = Engine::on_this_machine(store.clone(), store.load()?, Role::Command);
    let done = engine.apply(&change)?;
    Ok((
        done.summary,
        if done.live {
            LIVE
        } else {
            pending(engine.state())
        },
    ))
}

/// A change on the standby of a pair would fork the pair's gateway: it is made on the active.
fn refuse_on_standby(store: &Store) -> Result<()> {
    match crate::ha::settings(store) {
        Ok(Some(pair)) if crate::ha::saved_role(store) == crate::ha::HaRole::Standby => {
            Err(refused(crate::ha::standby_refusal(pair.peer)))
        }
        _ => Ok(()),
    }
}

mod doctor;
mod forwards;
mod ha;
mod import;
mod roamers;
mod setup;
mod status;

pub use doctor::doctor;
pub use forwards::{add_port, endpoint6, forward6, list, remove_port, tcp_fallback};
pub use ha::ha;
pub use import::import;
pub use roamers::{add_roamer, egress, remove_roamer, roamers, rotate_key, show_config};
pub use setup::{apply, down, init, rules, run, up};
pub use status::status;

fn forward_count(state: &GatewayState) -> String {
    match state.forwards.len() {
        1 => "1 forward".into(),
        n => format!("{n} forwards"),
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<String> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| refused(format!("cannot write the view as JSON: {e}")))?;
    text.push('\n');
    Ok(text)
}

/// A plain aligned text table.
struct Table<const N: usize> {
    rows: Vec<[String; N]>,
}

impl<const N: usize> Table<N> {
    fn new(header: [&str; N]) -> Self {
        Self {
            rows: vec![header.map(str::to_string)],
        }
    }

    fn row(&mut self, cells: [String; N]) {
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let widths: Vec<usize> = (0..N)
            .map(|i| self.rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == N {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<width$}  ", width = widths[i]);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}
