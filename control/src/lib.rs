//! The op25b control plane: configuration, policy building, the live appliance's control
//! loop and the offline replay driver.
//! The `op25b` binary (`main.rs`) is a thin CLI over these modules.
//!
//! Invariants: nothing here touches frames except through `op25b_dataplane`'s worker and
//! ports; every error carries enough context (file, line, text, frame) to act on.

#![forbid(unsafe_code)]

#[cfg(target_os = "linux")]
pub mod claim;
pub mod config;
#[cfg(target_os = "linux")]
pub mod ctl;
#[cfg(target_os = "linux")]
pub mod droplog;
#[cfg(target_os = "linux")]
pub mod live;
#[cfg(target_os = "linux")]
pub mod notify;
pub mod replay;
#[cfg(target_os = "linux")]
pub mod tickets;
