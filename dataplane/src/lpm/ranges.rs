//! The flat form of a prefix set: sorted disjoint address ranges, each carrying the value
//! of the most specific prefix that covers it (the DXR observation: nested prefixes
//! partition the address space into intervals).
//!
//! Invariants:
//! - `starts[0] == 0`, `starts` strictly increasing, `starts.len() == values.len()`;
//!   `values[i]` is the answer for every key in `starts[i]..starts[i+1]`.
//! - Adjacent ranges never hold the same value (they are merged at build time).
//! - A prefix listed twice must carry the same value.
//!
//! Building is a sort plus one sweep with a stack of open prefixes, O(n log n) with no
//! per-prefix insertion cost. [`Ranges::lookup`] is a plain binary search; the fast
//! [`super::LpmTable`] is compiled from this form.

use super::{Bits, BuildError, Prefix, NO_MATCH};

/// Prefixes flattened to sorted disjoint ranges, searched by binary search.
#[derive(Clone, Debug)]
pub struct Ranges<K> {
    pub(crate) starts: Box<[K]>,
    pub(crate) values: Box<[u32]>,
    prefixes: usize,
}

impl<K: Bits> Default for Ranges<K> {
    fn default() -> Self {
        Ranges {
            starts: vec![K::ZERO].into_boxed_slice(),
            values: vec![NO_MATCH].into_boxed_slice(),
            prefixes: 0,
        }
    }
}

impl<K: Bits> Ranges<K> {
    /// Builds a table. Values must be below `u32::MAX`; a prefix listed twice with the same
    /// value counts once, with different values it is a [`BuildError::Conflict`].
    pub fn build(entries: &[(Prefix<K>, u32)]) -> Result<Self, BuildError> {
        let mut order: Vec<u32> = (0..entries.len() as u32).collect();
        // Outer prefixes before the ones they contain: by first address, then shortest.
        order.sort_unstable_by_key(|&i| {
            let (p, _) = entries[i as usize];
            (p.addr, p.len, i)
        });
        let mut starts: Vec<K> = Vec::with_capacity(entries.len() * 2 + 1);
        let mut values: Vec<u32> = Vec::with_capacity(entries.len() * 2 + 1);
        starts.push(K::ZERO);
        values.push(NO_MATCH);
        // Emits "from `start` on, the answer is `value`", keeping the arrays canonical.
        let mut emit = |start: K, value: u32| {
            let n = starts.len();
            if starts[n - 1] == start {
                values[n - 1] = value;
                // Merging may now make this range equal to its predecessor.
                if n >= 2 && values[n - 2] == value {
                    starts.pop();
                    values.pop();
                }
            } else if values[n - 1] != value {
                starts.push(start);
                values.push(value);
            }
        };
        // Stack of open prefixes: (last address, value, input position).
        let mut stack: Vec<(K, u32)> = Vec::with_capacity(K::BITS as usize + 1);
        let mut prev: Option<(Prefix<K>, u32, usize)> = None;
        let mut distinct = 0usize;
        for &i in &order {
            let (p, v) = entries[i as usize];
            if v == NO_MATCH {
                return Err(BuildError::ReservedValue);
            }
            if let Some((pp, pv, pi)) = prev {
                if pp == p {
                    if pv != v {
                        return Err(BuildError::Conflict {
                            first: pi.min(i as usize),
                            second: pi.max(i as usize),
                        });
                    }
                    continue;
                }
            }
            prev = Some((p, v, i as usize));
            distinct += 1;
            Self::close_before(&mut stack, p.addr, &mut emit);
            emit(p.addr, v);
            stack.push((p.last(), v));
        }
        // Close everything.
        while let Some((last, _)) = stack.pop() {
            let parent = stack.last().map_or(NO_MATCH, |&(_, v)| v);
            if let Some(next) = last.succ() {
                emit(next, parent);
            }
        }
        Ok(Ranges {
            starts: starts.into_boxed_slice(),
            values: values.into_boxed_slice(),
            prefixes: distinct,
        })
    }

    /// Pops every open prefix that ends before `addr`, emitting the parent's value after it.
    fn close_before(stack: &mut Vec<(K, u32)>, addr: K, emit: &mut impl FnMut(K, u32)) {
        while let Some(&(last, _)) = stack.last() {
            if last >= addr {
                break;
            }
            stack.pop();
            let parent = stack.last().map_or(NO_MATCH, |&(_, v)| v);
            if let Some(next) = last.succ() {
                emit(next, parent);
            }
        }
    }

    /// The value of the longest prefix containing `key`, or [`NO_MATCH`].
    #[inline]
    pub fn lookup_raw(&self, key: K) -> u32 {
        // starts[0] == 0 <= key, so the partition point is at least 1.
        let i = self.starts.partition_point(|&s| s <= key);
        self.values[i - 1]
    }

    /// The value of the longest prefix containing `key`.
    #[inline]
    pub fn lookup(&self, key: K) -> Option<u32> {
        match self.lookup_raw(key) {
            NO_MATCH => None,
            v => Some(v),
        }
    }

    /// Looks up a batch: `out[i]` gets the raw value for `keys[i]` ([`NO_MATCH`] for none).
    /// Both slices must have the same length.
    pub fn lookup_batch(&self, keys: &[K], out: &mut [u32]) {
        for (k, o) in keys.iter().zip(out.iter_mut()) {
            *o = self.lookup_raw(*k);
        }
    }

    /// Number of distinct prefixes in the table.
    pub fn prefix_count(&self) -> usize {
        self.prefixes
    }

    /// Whether the table holds no prefix.
    pub fn is_empty(&self) -> bool {
        self.prefixes == 0
    }

    /// Number of disjoint ranges the prefixes flatten to.
    pub fn range_count(&self) -> usize {
        self.starts.len()
    }

    /// Bytes of memory the lookup structure holds.
    pub fn memory_bytes(&self) -> usize {
        self.starts.len() * std::mem::size_of::<K>() + self.values.len() * 4
    }
}
