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
                let full = self.tokens.saturating_add(add) >= rate;
                self.tokens = self.tokens.saturating_add(add).min(rate);
                // The clock moves on by the time the whole tokens took, so the part of a
                // token earned beyond them is kept (moving it to `now` lost up to one
                // token per refill: a fifth of the rate under steady load). A full bucket
                // keeps nothing.
                if !full && self.rate == rate && rate > 0 {
                    self.last =
                        Some(t + std::time::Duration::from_nanos(add * 1_000_000_000 / rate));
                    return self.spend();
                }
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

#[cfg(test)]
mod tests {
    use super::TokenBucket;
    use std::time::{Duration, Instant};

    #[test]
    fn a_steady_load_gets_the_rate_a_burst_gets_one_second_of_it() {
        let t0 = Instant::now();
        // 100 takes a second for 10 s under a limit of 50/s.
        let mut b = TokenBucket::default();
        let taken = (0..1000)
            .filter(|i| b.take(50, t0 + Duration::from_millis(10 * i)))
            .count();
        // The first second's full bucket, then 50 a second for the other 9.99 s.
        assert!((540..=550).contains(&taken), "{taken}");
        // At takes 3 ms apart (a refill of less than one token most times).
        let mut b = TokenBucket::default();
        let taken = (0..3334)
            .filter(|i| b.take(50, t0 + Duration::from_millis(3 * i)))
            .count();
        assert!((540..=550).contains(&taken), "{taken}");
        // A burst: one second's worth, then nothing until time passes.
        let mut b = TokenBucket::default();
        assert_eq!((0..500).filter(|_| b.take(50, t0)).count(), 50);
        assert!(!b.take(50, t0 + Duration::from_millis(10)));
        assert!(b.take(50, t0 + Duration::from_millis(20)));
        // No limit at zero.
        let mut b = TokenBucket::default();
        assert!(!(0..10).any(|i| b.take(0, t0 + Duration::from_secs(i))));
    }
}
