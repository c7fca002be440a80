//! The roamer: the laptop side of roamgw.

pub mod check;
pub mod cli;
pub mod run;
