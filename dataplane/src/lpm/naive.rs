//! The reference longest-prefix match: a linear scan over every prefix.
//!
//! Obviously correct and O(n) per lookup; property tests and the benchmark harness check
//! every fast table against it. Never used on the hot path.

use super::{Bits, Prefix};

/// A list of prefixes searched linearly.
#[derive(Clone, Debug, Default)]
pub struct NaiveLpm<K> {
    entries: Vec<(Prefix<K>, u32)>,
}

impl<K: Bits> NaiveLpm<K> {
    /// A reference table over these entries (later duplicates of a prefix are ignored).
    pub fn new(entries: &[(Prefix<K>, u32)]) -> Self {
        NaiveLpm {
            entries: entries.to_vec(),
        }
    }

    /// The value of the longest prefix containing `key` (the first listed among equals).
    pub fn lookup(&self, key: K) -> Option<u32> {
        let mut best: Option<(u8, u32)> = None;
        for &(p, v) in &self.entries {
            if p.contains(key) && best.is_none_or(|(len, _)| p.len > len) {
                best = Some((p.len, v));
            }
        }
        best.map(|(_, v)| v)
    }
}
