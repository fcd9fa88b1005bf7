//! op25b data plane: the hot path shared by live ports, pcap replay and the benchmark.
//!
//! Layers, each knowing only those below it: [`wire`] parses a frame to a [`wire::FlowKey`];
//! [`lpm`] holds longest-prefix-match tables (and knows nothing of packets); [`policy`]
//! combines tables into an immutable [`policy::Policy`] with the verdict function; [`port`]
//! moves frames in bursts; [`worker`] runs rx → classify → tx. [`hot`] lets workers note,
//! while a reload builds the next policy, which table blocks they use, so the control
//! thread warms exactly those in the new tables just before the swap.
//!
//! Invariants: nothing here parses configuration or allocates per packet; errors on the
//! per-packet path are verdicts plus counters, never early returns.

// `unsafe` is allowed only in `port::sys` (and the FFI backends): see DESIGN.md.
#![deny(unsafe_code)]

pub mod bucket;
pub mod clock;
pub mod hits;
pub mod hot;
pub mod lpm;
pub mod policy;
pub mod port;
pub mod sample;
#[doc(hidden)]
pub mod testkit;
pub mod wire;
pub mod worker;
