//! Hot blocks: which blocks of the current policy's source tables the workers look up
//! while the control thread builds the next policy, so that the control thread can warm
//! exactly those blocks of the new tables ([`crate::policy::Policy::warm_hot`]) before it
//! publishes them.
//!
//! Why: a policy of a million prefixes holds about 42 MiB of tables, more than this
//! machine's shared cache, so warming all of it leaves most of what the workers' traffic
//! needs in memory, and every burst after a swap paid a memory read per lookup
//! (`op25b-bench swap`: the first bursts under the new policy each cost about 1 µs more
//! than the same bursts before). The blocks a worker used under the old policy are the
//! blocks its next bursts will use under the new one: a block is a stretch of the address
//! space, so it translates from the old table to the new whatever changed
//! ([`crate::lpm::LpmTable::block_keys`]). Measured (bench/results/swap-hot): the first
//! burst under a new 1M-prefix policy cost 761 ns more than the same burst before the
//! swap, against 1101 ns with the whole-table warm alone (medians of 75 swaps).
//!
//! Invariants:
//! - Each worker writes only its own slot, only while a recording is on, with plain
//!   (unlocked) atomic loads and stores: no shared write and no locked instruction on the
//!   hot path, and nothing at all while no recording is on but one relaxed load per burst.
//! - What is kept is one bit per block of a source table's first level (at most 2^18 per
//!   family: in the 1M-prefix IPv4 table, one per 2^14 addresses; a block never tells
//!   apart two addresses of one IPv4 /24 or IPv6 /48), set by the lookups of frames to a
//!   blocked port. No address, destination, port, time or count is kept; the
//!   bits are cleared when a recording starts and never leave the process: it is what
//!   the CPU cache holds anyway, written down for the next table.
//! - A bit is a hint: a missing, stale or foreign bit costs time, never a verdict.

use crate::lpm::BLOCK_BITS;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Words of one family's bitmap.
const WORDS: usize = (1 << BLOCK_BITS) / 64;

/// One worker's bitmaps, on cache lines of their own.
#[derive(Debug)]
#[repr(align(64))]
struct Slot {
    v4: Box<[AtomicU64]>,
    v6: Box<[AtomicU64]>,
}

impl Slot {
    /// This slot's bitmap of `family`.
    fn map(&self, family: Family) -> &[AtomicU64] {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }
}

/// The recording of one direction's workers (see the module documentation).
#[derive(Debug)]
pub struct HotBlocks {
    on: AtomicBool,
    slots: Box<[Slot]>,
}

/// An address family's bitmap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// IPv4 source table.
    V4,
    /// IPv6 source table.
    V6,
}

impl HotBlocks {
    /// Bitmaps for `workers` workers (slots `0..workers`), not recording.
    pub fn new(workers: usize) -> Self {
        let bitmap = || (0..WORDS).map(|_| AtomicU64::new(0)).collect();
        HotBlocks {
            on: AtomicBool::new(false),
            slots: (0..workers.max(1))
                .map(|_| Slot {
                    v4: bitmap(),
                    v6: bitmap(),
                })
                .collect(),
        }
    }

    /// Clears every bitmap, then turns recording on.
    pub fn start(&self) {
        for s in self.slots.iter() {
            for w in s.v4.iter().chain(s.v6.iter()) {
                w.store(0, Ordering::Relaxed);
            }
        }
        self.on.store(true, Ordering::Release);
    }

    /// Turns recording off (a burst already under way may still add its bits).
    pub fn stop(&self) {
        self.on.store(false, Ordering::Release);
    }

    /// Whether workers record now: one relaxed load, once per burst.
    #[inline(always)]
    pub fn recording(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Sets `block`'s bit in `slot`'s bitmap of `family` (`slot` and `block` are taken
    /// modulo the slots and blocks). Only the worker owning `slot` may call this.
    #[inline]
    pub fn mark(&self, slot: usize, family: Family, block: usize) {
        let w = &self.slots[slot % self.slots.len()].map(family)[(block / 64) % WORDS];
        // One writer per slot: a plain load and store, no locked read-modify-write.
        w.store(
            w.load(Ordering::Relaxed) | 1 << (block % 64),
            Ordering::Relaxed,
        );
    }

    /// Every block some worker marked in `family`, ascending (nothing is allocated: the
    /// control thread calls this just before a swap, and freeing a large buffer then
    /// would interrupt the workers' cores for its unmapping).
    pub fn blocks(&self, family: Family) -> impl Iterator<Item = usize> + '_ {
        (0..WORDS).flat_map(move |i| {
            let mut w = self
                .slots
                .iter()
                .fold(0u64, |a, s| a | s.map(family)[i].load(Ordering::Relaxed));
            std::iter::from_fn(move || {
                let bit = (w != 0).then(|| w.trailing_zeros() as usize)?;
                w &= w - 1;
                Some(i * 64 + bit)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_unioned_over_slots_and_cleared_by_start() {
        let h = HotBlocks::new(2);
        assert!(!h.recording());
        h.start();
        assert!(h.recording());
        h.mark(0, Family::V4, 5);
        h.mark(1, Family::V4, 5);
        h.mark(1, Family::V4, (1 << BLOCK_BITS) - 1);
        h.mark(0, Family::V6, 64);
        // Out-of-range slots and blocks wrap instead of panicking.
        h.mark(3, Family::V6, (1 << BLOCK_BITS) + 1);
        h.stop();
        assert!(!h.recording());
        assert_eq!(
            h.blocks(Family::V4).collect::<Vec<_>>(),
            vec![5, (1 << BLOCK_BITS) - 1]
        );
        assert_eq!(h.blocks(Family::V6).collect::<Vec<_>>(), vec![1, 64]);
        h.start();
        assert_eq!(h.blocks(Family::V4).count(), 0);
        assert_eq!(h.blocks(Family::V6).count(), 0);
    }
}
