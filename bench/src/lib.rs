//! The op25b benchmark harness library: a deterministic random source and synthetic
//! traffic profiles that every benchmark and the bundled sample capture are made from.
//!
//! Invariants: the same seed and profile always produce the same frames, on any machine,
//! so a capture or a benchmark run can be reproduced from its command line alone.

#![forbid(unsafe_code)]

pub mod classify;
pub mod compare;
#[cfg(all(feature = "dpdk", target_os = "linux"))]
pub mod dpdk_null;
pub mod lpmbench;
pub mod profile;
pub mod rng;
pub mod swap;
#[cfg(target_os = "linux")]
pub mod veth;
#[cfg(target_os = "linux")]
pub mod wire_io;
