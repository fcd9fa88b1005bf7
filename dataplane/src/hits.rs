//! Per-prefix hit counters for the `dynamic` list: how many blocked segments each dynamic
//! prefix produced. This is how an operator finds the pools (and so the subscribers) with
//! infected hosts, without keeping a record of any connection.
//!
//! Invariants:
//! - One row per worker slot; row `w` is written only by the worker in slot `w`, with a
//!   relaxed load and store (a plain `mov` on x86, no locked read-modify-write), so workers
//!   never share a written cache line except at row ends. Anyone may read any row at any
//!   time and sees each count only grow.
//! - Counts are indexed by position in the `dynamic` list of one policy generation; a
//!   position past the end (impossible for a table built from that list) is ignored.
//! - Nothing allocates after [`PrefixHits::new`].

use std::sync::atomic::{AtomicU64, Ordering};

/// Blocked-segment counts per `dynamic` list position, one row per worker.
#[derive(Debug)]
pub struct PrefixHits {
    rows: Box<[Box<[AtomicU64]>]>,
}

impl PrefixHits {
    /// Zeroed counters for `workers` workers and a `dynamic` list of `entries` prefixes.
    pub fn new(workers: usize, entries: usize) -> Self {
        let rows = (0..workers.max(1))
            .map(|_| (0..entries).map(|_| AtomicU64::new(0)).collect())
            .collect();
        PrefixHits { rows }
    }

    /// Demotes every counter line from this core's private caches to the shared cache
    /// (see [`crate::port::sys::demote`]): they were written here, zeroed, and a worker's
    /// first count in each would otherwise snoop this core for it.
    pub fn demote(&self) {
        for row in self.rows.iter() {
            for c in row.iter().step_by(8) {
                crate::port::sys::demote(c);
            }
        }
    }

    /// Number of worker slots.
    pub fn workers(&self) -> usize {
        self.rows.len()
    }

    /// Counts one blocked segment per position, in the row of worker `slot`. Only that
    /// worker may call this for that slot.
    #[inline]
    pub fn count(&self, slot: usize, positions: impl Iterator<Item = u32>) {
        let Some(row) = self.rows.get(slot) else {
            return;
        };
        for p in positions {
            if let Some(c) = row.get(p as usize) {
                c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            }
        }
    }

    /// Total over all workers for one position.
    pub fn total(&self, position: usize) -> u64 {
        self.rows
            .iter()
            .filter_map(|r| r.get(position))
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Every position with a non-zero total, in position order.
    pub fn nonzero(&self) -> Vec<(usize, u64)> {
        let entries = self.rows.first().map_or(0, |r| r.len());
        (0..entries)
            .map(|p| (p, self.total(p)))
            .filter(|&(_, n)| n > 0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_add_up_and_out_of_range_is_ignored() {
        let h = PrefixHits::new(2, 4);
        h.count(0, [1, 1, 3].into_iter());
        h.count(1, [1, 0, 9].into_iter());
        h.count(7, [2].into_iter());
        assert_eq!(h.total(1), 3);
        assert_eq!(h.nonzero(), vec![(0, 1), (1, 3), (3, 1)]);
        assert_eq!(h.workers(), 2);
    }

    #[test]
    fn readers_see_counts_while_a_worker_writes() {
        let h = std::sync::Arc::new(PrefixHits::new(1, 1));
        let w = h.clone();
        let t = std::thread::spawn(move || {
            for _ in 0..100_000 {
                w.count(0, std::iter::once(0));
            }
        });
        let mut last = 0;
        while !t.is_finished() {
            let now = h.total(0);
            assert!(now >= last, "a count went backwards");
            last = now;
        }
        t.join().unwrap();
        assert_eq!(h.total(0), 100_000);
    }
}
