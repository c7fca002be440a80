//! Shared building blocks of roamgw (gateway) and roamer (laptop): keys, names, port specs,
//! the typed state and configs, wg-quick files and crash-safe file handling.

pub mod cli;
pub mod clock;
pub mod doctor;
pub mod fsutil;
pub mod hash;
pub mod keys;
pub mod metrics;
pub mod names;
pub mod networkd;
pub mod nm;
pub mod portspec;
pub mod replies;
pub mod routes;
pub mod state;
pub mod tool;
pub mod wgquick;

pub use keys::{PresharedKey, PrivateKey, PublicKey};
pub use names::{Endpoint, InterfaceName, RoamerName};
pub use portspec::{PortRange, PortSpec, Protocol, Protocols};
