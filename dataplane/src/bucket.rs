//! A token bucket for rate limits on the hot path: at most `rate` events per second, in
//! bursts of at most one second's worth. It bounds the TCP resets a worker sends (so the
//! appliance cannot be used as a reflector) and the drop-log records it samples.
//!
//! Invariants: owned by one worker (no sharing, no atomics); the caller passes the time
//! in nanoseconds on a clock of its choice (live, the monotonic clock, read at most once
//! per burst; the capture's timestamps in a replay), so taking a token is arithmetic
//! only and a replay's resets do not depend on how fast it ran; time that goes backwards
//! adds nothing (more than a second back, the count starts again from there); the first
//! take fills the bucket; a change of `rate` takes effect at the next take. One bucket
//! stays on one clock.

/// Tokens left, the rate they were last refilled at, and when (ns).
#[derive(Debug, Default)]
pub struct TokenBucket {
    tokens: u64,
    rate: u64,
    last: Option<u64>,
}

impl TokenBucket {
    /// Takes one token at `now` (ns) under a limit of `rate` per second, refilling for the
    /// time since the last refill; false when none is left.
    pub fn take(&mut self, rate: u32, now: u64) -> bool {
        let rate = u64::from(rate);
        match self.last {
            None => self.tokens = rate,
            // Far back in time (a capture's clock set back, one record from the future
            // before it): start counting from here, adding nothing, rather than waiting
            // until the clock has caught up with that record.
            Some(t) if now.saturating_add(1_000_000_000) < t => {}
            Some(t) => {
                let ns = now.saturating_sub(t);
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
                    self.last = Some(t + add * 1_000_000_000 / rate);
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

    const MS: u64 = 1_000_000;

    #[test]
    fn a_steady_load_gets_the_rate_a_burst_gets_one_second_of_it() {
        let t0 = 1_700_000_000_000_000_000u64;
        // 100 takes a second for 10 s under a limit of 50/s.
        let mut b = TokenBucket::default();
        let taken = (0..1000).filter(|i| b.take(50, t0 + 10 * MS * i)).count();
        // The first second's full bucket, then 50 a second for the other 9.99 s.
        assert!((540..=550).contains(&taken), "{taken}");
        // At takes 3 ms apart (a refill of less than one token most times).
        let mut b = TokenBucket::default();
        let taken = (0..3334).filter(|i| b.take(50, t0 + 3 * MS * i)).count();
        assert!((540..=550).contains(&taken), "{taken}");
        // A burst: one second's worth, then nothing until time passes.
        let mut b = TokenBucket::default();
        assert_eq!((0..500).filter(|_| b.take(50, t0)).count(), 50);
        assert!(!b.take(50, t0 + 10 * MS));
        assert!(b.take(50, t0 + 20 * MS));
        // No limit at zero.
        let mut b = TokenBucket::default();
        assert!(!(0..10).any(|i| b.take(0, t0 + 1000 * MS * i)));
        // Time that goes backwards (a capture's timestamps out of order) adds nothing.
        let mut b = TokenBucket::default();
        assert_eq!((0..100).filter(|_| b.take(50, t0)).count(), 50);
        assert!(!b.take(50, t0 - 500 * MS));
        assert!(!b.take(50, t0 + 10 * MS));
        assert!(b.take(50, t0 + 20 * MS));
        // One record an hour in the future (it finds the bucket full) does not starve the
        // ten seconds of records after it, which count on from their own time: 49 left,
        // then 50 a second.
        let mut b = TokenBucket::default();
        assert_eq!((0..100).filter(|_| b.take(50, t0)).count(), 50);
        assert!(b.take(50, t0 + 3_600_000 * MS));
        let taken = (1..=1000).filter(|i| b.take(50, t0 + 10 * MS * i)).count();
        assert!((540..=550).contains(&taken), "{taken}");
    }
}
