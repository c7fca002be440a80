//! The roamer: the laptop side of roamgw.

pub mod check;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod health;
pub mod metrics;
pub mod relay;
pub mod routing;
pub mod run;
pub mod status;
pub mod updown;
