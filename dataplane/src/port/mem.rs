//! An in-memory port: replays a list of frames (optionally several rounds) and counts or
//! logs what is emitted. Used by tests, the benchmark harness and anywhere a port without
//! I/O is wanted.
//!
//! Invariants: frames come out in list order, round after round; `rx_burst` copies each
//! frame into the burst (as a NIC writes into a ring) and allocates nothing after warm-up
//! unless `log` is on.

use super::{Burst, Port, PortError};
use crate::policy::Verdict;

/// Frames held in memory.
#[derive(Clone, Debug, Default)]
pub struct MemPort {
    frames: Vec<Vec<u8>>,
    next: usize,
    rounds_left: u64,
    /// Frames emitted with [`Verdict::Forward`].
    pub forwarded: u64,
    /// Frames emitted with [`Verdict::Drop`].
    pub dropped: u64,
    /// Every verdict in emission order, when logging was asked for.
    pub log: Option<Vec<Verdict>>,
}

impl MemPort {
    /// A port delivering `frames` once per round for `rounds` rounds.
    pub fn new(frames: Vec<Vec<u8>>, rounds: u64) -> Self {
        MemPort {
            rounds_left: if frames.is_empty() { 0 } else { rounds },
            frames,
            ..MemPort::default()
        }
    }

    /// Also keeps every verdict in [`MemPort::log`].
    pub fn with_log(mut self) -> Self {
        self.log = Some(Vec::new());
        self
    }
}

impl Port for MemPort {
    fn rx_burst(&mut self, burst: &mut Burst) -> Result<usize, PortError> {
        burst.clear();
        while !burst.is_full() && self.rounds_left > 0 {
            burst.push(&self.frames[self.next]);
            self.next += 1;
            if self.next == self.frames.len() {
                self.next = 0;
                self.rounds_left -= 1;
            }
        }
        Ok(burst.len())
    }

    fn tx_burst(&mut self, burst: &Burst, verdicts: &[Verdict]) -> Result<(), PortError> {
        debug_assert_eq!(burst.len(), verdicts.len());
        for &v in verdicts {
            match v {
                Verdict::Forward => self.forwarded += 1,
                Verdict::Drop | Verdict::Reject => self.dropped += 1,
            }
        }
        if let Some(log) = &mut self.log {
            log.extend_from_slice(verdicts);
        }
        Ok(())
    }

    fn is_finished(&self) -> bool {
        self.rounds_left == 0
    }
}
