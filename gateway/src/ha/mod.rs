//! High availability: two droplets, one reserved IP. keepalived elects the active droplet and
//! calls `roamgw ha notify`; the active one claims the reserved IP through the provider's API
//! and answers the roamers; the standby keeps the same gateway (replicated from the active,
//! see [`replicate`]) ready and quiet. roamgw runs no election of its own.
//!
//! This droplet's half of the pair lives beside the state: `ha.toml` (its addresses, the
//! provider), `pair.key` (the secret both halves share, 0600) and `ha.role` (what keepalived
//! last said, so a restarted daemon resumes it).

pub mod provider;
pub mod replicate;

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use roamgw_common::fsutil::{self, FsError};
use roamgw_common::state::ha::HaSettings;
use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError};
use replicate::PeerSeen;

pub const SETTINGS_FILE: &str = "ha.toml";
pub const PAIR_KEY_FILE: &str = "pair.key";
pub const ROLE_FILE: &str = "ha.role";

/// What keepalived made this droplet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HaRole {
    /// Holds (or is claiming) the reserved IP and answers the roamers.
    Active,
    /// Keeps the gateway ready and sends nothing to any roamer.
    Standby,
}

impl fmt::Display for HaRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HaRole::Active => "active",
            HaRole::Standby => "standby",
        })
    }
}

impl HaRole {
    /// keepalived's state name (`notify` gets MASTER, BACKUP, FAULT or STOP).
    pub fn from_keepalived(state: &str) -> Option<HaRole> {
        match state {
            "MASTER" => Some(HaRole::Active),
            "BACKUP" | "FAULT" | "STOP" => Some(HaRole::Standby),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HaError {
    #[error("{path}: {message}")]
    Settings { path: PathBuf, message: String },
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Replica(#[from] replicate::ReplicaError),
}

pub fn settings_path(store: &Store) -> PathBuf {
    store.dir().join(SETTINGS_FILE)
}

pub fn pair_key_path(store: &Store) -> PathBuf {
    store.dir().join(PAIR_KEY_FILE)
}

pub fn role_path(store: &Store) -> PathBuf {
    store.dir().join(ROLE_FILE)
}

/// This droplet's half of a pair; `None` for a droplet that is not in one.
pub fn settings(store: &Store) -> Result<Option<HaSettings>, HaError> {
    let path = settings_path(store);
    let text = match fsutil::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    HaSettings::from_toml(&text)
        .map(Some)
        .map_err(|e| HaError::Settings {
            path,
            message: e.to_string(),
        })
}

/// The role keepalived last gave; a droplet it has not spoken to yet is the standby (quiet
/// until elected).
pub fn saved_role(store: &Store) -> HaRole {
    match fsutil::read_to_string(&role_path(store)) {
        Ok(text) if text.trim() == "active" => HaRole::Active,
        _ => HaRole::Standby,
    }
}

pub fn save_role(store: &Store, role: HaRole) -> Result<(), HaError> {
    fsutil::write_private(&role_path(store), format!("{role}\n").as_bytes())?;
    Ok(())
}

/// Whether this droplet holds the reserved IP, as far as it knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Holding {
    /// Not asked yet (a standby never asks).
    Unknown,
    Claiming {
        since_ms: u64,
    },
    /// The provider said the claim completed, in `took_ms`.
    Held {
        took_ms: u64,
    },
    /// Another droplet (or none) holds it: split brain, or the peer claimed it later.
    Lost {
        holder: Option<u64>,
        /// When this droplet found out (Unix ms): only a word from the peer after it counts.
        since_ms: u64,
    },
    Failed {
        error: String,
        at_ms: u64,
    },
}

/// `roamgw ha status`: this droplet's half as its daemon sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaView {
    pub role: HaRole,
    pub reserved_ip: Ipv4Addr,
    pub droplet_id: u64,
    pub holding: Holding,
    pub peer_address: Ipv4Addr,
    pub peer: PeerSeen,
}

/// What a pair's command says on a droplet that is not one of a pair.
pub const NOT_PAIRED: &str =
    "this droplet is not one of a pair (no ha.toml): set it up with `roamgw ha setup`";

/// Why a change is refused on the standby, and where to make it.
pub fn standby_refusal(peer: Ipv4Addr) -> String {
    format!(
        "this droplet is the standby of a pair: make changes on the active one ({peer}); they reach this droplet within a second"
    )
}
