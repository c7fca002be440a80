//! The nftables backend: table `inet roamgw` and nothing else.
//!
//! desired (model) -> observed (observed) -> plan (diff, pure) -> apply (exec); [`NftPlane`]
//! (plane.rs) puts them together behind the `Backend` trait. Whole-table replaces are one text
//! transaction rendered from `nft-templates/roamgw.nft` (render); element
//! changes go through the nftables crate as one JSON transaction.
//!
//! On the firewalld backend, table `inet roamgw_count` (counting) holds the forwards' counters.

pub mod counting;
pub mod diff;
pub mod exec;
pub mod model;
pub mod observed;
pub mod others;
mod plane;
pub mod render;

pub use plane::{counters_by_forward, down, observe, observe_if_up, NftPlane};
