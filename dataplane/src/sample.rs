//! Sampling of blocked segments for the optional drop log (and for `monitor`, of the
//! segments that would have been dropped). A worker with a [`Sampler`] offers it every
//! segment policy blocked; the sampler keeps one in `every`, at most `rate` per second, and
//! truncates both addresses to the configured prefix lengths before the record leaves the
//! worker. The control side turns records into log lines.
//!
//! Invariants:
//! - Full addresses never leave the sampler when truncation is configured: the record holds
//!   only the masked network part (IPv4 /24 and IPv6 /48 by default).
//! - Nothing here allocates after construction: records go into a buffer sized to one burst
//!   and are taken by the worker's owner after each burst. The wall clock is read only for a
//!   record that is kept (bounded by `rate`).
//! - Only a frame policy blocked is ever offered; nothing beyond the destination port is
//!   read (the frame is parsed by the same parser as the verdict).

use crate::bucket::TokenBucket;
use crate::lpm::Bits;
use crate::policy::{Reason, Verdict};
use crate::wire::{self, Addrs, FlowKey};
use std::time::SystemTime;

/// How to sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleConfig {
    /// Keep one blocked segment in this many (1: every one).
    pub every: u32,
    /// Keep at most this many records per second (per worker).
    pub rate: u32,
    /// IPv4 prefix length kept of both addresses (32: the whole address).
    pub keep_v4: u8,
    /// IPv6 prefix length kept of both addresses (128: the whole address).
    pub keep_v6: u8,
}

/// One sampled blocked segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropRecord {
    /// When it was judged, in nanoseconds since the Unix epoch.
    pub unix_ns: u64,
    /// The policy generation that judged it.
    pub generation: u64,
    /// Why it was blocked.
    pub reason: Reason,
    /// What happened to it: `Drop`, `Reject`, or `Forward` under `monitor`.
    pub verdict: Verdict,
    /// Its addresses (truncated) and port.
    pub key: FlowKey,
    /// Position in the `dynamic` list of the prefix its source matched.
    pub dynamic: u32,
}

/// A worker's sampler: countdown, token bucket and a burst-sized record buffer.
#[derive(Debug)]
pub struct Sampler {
    cfg: SampleConfig,
    countdown: u32,
    bucket: TokenBucket,
    records: Vec<DropRecord>,
    /// Blocked segments picked by the countdown but refused by the rate limit.
    pub rate_limited: u64,
}

impl Sampler {
    /// A sampler for bursts of up to `burst` frames.
    pub fn new(cfg: SampleConfig, burst: usize) -> Self {
        let cfg = SampleConfig {
            every: cfg.every.max(1),
            keep_v4: cfg.keep_v4.min(32),
            keep_v6: cfg.keep_v6.min(128),
            ..cfg
        };
        Sampler {
            countdown: cfg.every,
            cfg,
            bucket: TokenBucket::default(),
            records: Vec::with_capacity(burst),
            rate_limited: 0,
        }
    }

    /// Counts one blocked segment judged at `now` (ns, on the worker's clock: see
    /// [`crate::bucket`]); true if it is to be recorded (one in `every`, within the rate):
    /// then call [`Sampler::record`] for it.
    #[inline]
    pub fn pick(&mut self, now: u64) -> bool {
        self.countdown -= 1;
        if self.countdown > 0 {
            return false;
        }
        self.countdown = self.cfg.every;
        if !self.bucket.take(self.cfg.rate, now) {
            self.rate_limited += 1;
            return false;
        }
        true
    }

    /// Records a picked segment (`frame` and what policy made of it), addresses truncated.
    pub fn record(
        &mut self,
        frame: &[u8],
        generation: u64,
        (reason, verdict, dynamic): (Reason, Verdict, u32),
    ) {
        let Ok(mut key) = wire::parse(frame) else {
            return; // cannot happen for a frame policy judged
        };
        key.addrs = match key.addrs {
            Addrs::V4 { src, dst } => {
                let m = u32::mask(self.cfg.keep_v4);
                Addrs::V4 {
                    src: src & m,
                    dst: dst & m,
                }
            }
            Addrs::V6 { src, dst } => {
                let m = u128::mask(self.cfg.keep_v6);
                Addrs::V6 {
                    src: src & m,
                    dst: dst & m,
                }
            }
        };
        if self.records.len() < self.records.capacity() {
            self.records.push(DropRecord {
                unix_ns: SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64),
                generation,
                reason,
                verdict,
                key,
                dynamic,
            });
        }
    }

    /// The records kept since the last call (the buffer is reused).
    pub fn drain(&mut self) -> std::vec::Drain<'_, DropRecord> {
        self.records.drain(..)
    }

    /// The prefix lengths kept (IPv4, IPv6).
    pub fn truncation(&self) -> (u8, u8) {
        (self.cfg.keep_v4, self.cfg.keep_v6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::build::FrameBuilder;

    fn cfg(every: u32, rate: u32) -> SampleConfig {
        SampleConfig {
            every,
            rate,
            keep_v4: 24,
            keep_v6: 48,
        }
    }

    const HIT: (Reason, Verdict, u32) = (Reason::Blocked, Verdict::Drop, 3);

    #[test]
    fn one_in_every_and_addresses_truncated() {
        let f4 = FrameBuilder::tcp(
            "10.1.2.3".parse().unwrap(),
            "198.51.100.7".parse().unwrap(),
            1,
            25,
        )
        .build();
        let f6 = FrameBuilder::tcp(
            "2001:db8:1:2:3::9".parse().unwrap(),
            "2001:db8:ffff:1::25".parse().unwrap(),
            1,
            25,
        )
        .build();
        let mut s = Sampler::new(cfg(3, 1000), 64);
        let now = 0;
        for i in 0..9 {
            if s.pick(now) {
                s.record(if i < 6 { &f4 } else { &f6 }, 7, HIT);
            }
        }
        let got: Vec<DropRecord> = s.drain().collect();
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[0].key.addrs,
            Addrs::V4 {
                src: 0x0a01_0200,
                dst: 0xc633_6400
            }
        );
        assert_eq!(
            got[2].key.addrs,
            Addrs::V6 {
                src: 0x2001_0db8_0001_u128 << 80,
                dst: 0x2001_0db8_ffff_u128 << 80
            }
        );
        assert_eq!((got[0].generation, got[0].dynamic), (7, 3));
        assert!(got[0].unix_ns > 1_700_000_000_000_000_000);
        assert_eq!(s.drain().count(), 0);
    }

    #[test]
    fn rate_limited_per_second() {
        let f = FrameBuilder::tcp(
            "10.1.2.3".parse().unwrap(),
            "198.51.100.7".parse().unwrap(),
            1,
            25,
        )
        .build();
        let mut s = Sampler::new(cfg(1, 5), 1000);
        let t0 = 1_000_000_000;
        for _ in 0..100 {
            if s.pick(t0) {
                s.record(&f, 1, HIT);
            }
        }
        assert_eq!((s.drain().count(), s.rate_limited), (5, 95));
        // Half a second later, half the rate is back.
        for _ in 0..100 {
            if s.pick(t0 + 500_000_000) {
                s.record(&f, 1, HIT);
            }
        }
        assert_eq!(s.drain().count(), 2);
    }
}
