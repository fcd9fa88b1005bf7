//! A token bucket for rate limits on the hot path: at most `rate` events per second, in
//! bursts of at most one second's worth. It bounds the TCP resets a worker sends (so the
//! appliance cannot be used as a reflector) and the drop-log records it samples.
//!
//! Invariants: owned by one worker (no sharing, no atomics); the caller passes the clock
//! (read once per burst), so taking a token is arithmetic only; the first take fills the
//! bucket; a change of `rate` takes effect at the next take.

use std::time::Instant;

/// Tokens left, the rate they were last refilled at, and when.
#[derive(Debug, Default)]
pub struct TokenBucket {
    tokens: u64,
    rate: u64,
    last: Option<Instant>,
}

impl TokenBucket {
    /// Takes one token at `now` under a limit of `rate` per second, refilling for the time
    /// since the last refill; false when none is left.
    pub fn take(&mut self, rate: u32, now: Instant) -> bool {
        let rate = u64::from(rate);
        match self.last {
            None => self.tokens = rate,
            Some(t) => {
                let ns = now.saturating_duration_since(t).as_nanos() as u64;
                let add = ns.saturating_mul(rate) / 1_000_000_000;
                if add == 0 && self.rate == rate {
                    return self.spend();
                }
                self.tokens = self.tokens.saturating_add(add).min(rate);
            }
        }
        self.rate = rate;
        self.last = Some(now);
        self.spend()
    }

    fn spend(&mut self) -> bool {
        if self.tokens > 0 {
            self.tokens -= 1;
            true
        } else {
            false
        }
    }
}
