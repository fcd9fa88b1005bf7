//! The burst clock: how long a worker spent on a burst, for its latency histogram, and
//! the live worker loop's snapshot timer.
//!
//! `Instant::now()` reads the kernel's clock through the vDSO: an ordered counter read
//! (`rdtscp`, or `lfence; rdtsc`), which waits for every instruction before it, and the
//! clock page's scale. Twice per burst, that showed in the frame rate of DPDK on net_null
//! (`bench/results/dpdk-null.md`). Where the CPU's time-stamp counter ticks at one
//! constant rate and the kernel keeps time with it, the burst clock reads the counter
//! unordered and turns ticks into nanoseconds with a factor measured once per process
//! against `Instant`. Elsewhere it reads `Instant`, as before.
//!
//! Invariants:
//! - It gives durations only, never points in time: the rate limits (resets, drop-log
//!   samples) stay on the monotonic clock.
//! - The counter is used only if CPUID calls it invariant (constant rate through frequency
//!   and sleep states) and the kernel's clock source is `tsc` at start: the kernel then
//!   reads the same counter for `Instant` on whichever CPU a thread runs, having judged
//!   the CPUs' counters fit for it. An unreadable clock source counts as not `tsc`.
//! - The factor is measured once per process by the first [`BurstClock::get`] (a worker's
//!   creation, never a burst): [`CALIBRATION_SAMPLES`] spans of [`CALIBRATION`], each end
//!   a counter read bracketed by two `Instant` reads at most [`BRACKET_NS`] apart (one
//!   an interrupt or preemption fell into is read again), and the median rate taken. If
//!   no clean span can be had, or the rate is not between 1 MHz and 100 GHz, the clock
//!   reads `Instant`.
//! - An unordered read may run ahead of or behind its neighbours by the CPU's reorder
//!   window: a burst's time is off by tens of nanoseconds at most.
//! - A duration never goes negative or overflows: differences saturate at 0 and the
//!   conversion is done in 128 bits.

use crate::port::sys;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long each calibration span lasts.
pub const CALIBRATION: Duration = Duration::from_millis(1);

/// Calibration spans measured; the median rate is taken.
pub const CALIBRATION_SAMPLES: usize = 3;

/// Widest bracket of `Instant` reads around a counter read that calibration accepts: each
/// end is then known to within this, so a span's rate to within 2 × this / 1 ms (0.2%,
/// finer than the histogram's three significant digits; a clean read takes well under).
pub const BRACKET_NS: u64 = 1_000;

/// Kernel's clock source.
const CLOCKSOURCE: &str = "/sys/devices/system/clocksource/clocksource0/current_clocksource";

/// The clock a worker times its bursts with: copied into each worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BurstClock {
    /// Nanoseconds per counter tick, as a 32.32 fixed-point number; `None`: read `Instant`.
    ns_per_tick_q32: Option<u64>,
}

/// A reading of a [`BurstClock`], to measure from.
#[derive(Clone, Copy, Debug)]
pub enum Mark {
    /// Time-stamp counter ticks.
    Tsc(u64),
    /// The monotonic clock.
    Wall(Instant),
}

impl BurstClock {
    /// This process's burst clock: the time-stamp counter if it is invariant, the kernel
    /// keeps time with it and its rate measures sane, else `Instant`. The first call
    /// measures the rate (a few ms); later calls return the same clock.
    pub fn get() -> BurstClock {
        static CLOCK: OnceLock<BurstClock> = OnceLock::new();
        *CLOCK.get_or_init(|| {
            let trusted = sys::tsc_invariant() && clock_source().is_some_and(|s| s == "tsc");
            if trusted {
                BurstClock::measured()
            } else {
                BurstClock::wall()
            }
        })
    }

    /// A clock that reads `Instant` (the fallback).
    pub fn wall() -> BurstClock {
        BurstClock {
            ns_per_tick_q32: None,
        }
    }

    /// The counter, its rate measured against `Instant` (see the module's invariants);
    /// `Instant` itself if no clean, sane rate can be had. Does not check whether the
    /// counter may be trusted: [`BurstClock::get`] does.
    fn measured() -> BurstClock {
        let mut rates: Vec<u64> = (0..CALIBRATION_SAMPLES)
            .filter_map(|_| span_rate(CALIBRATION))
            .collect();
        if rates.len() < CALIBRATION_SAMPLES {
            return BurstClock::wall();
        }
        rates.sort_unstable();
        BurstClock {
            ns_per_tick_q32: Some(rates[rates.len() / 2]),
        }
    }

    /// Whether this clock reads the time-stamp counter.
    pub fn uses_tsc(&self) -> bool {
        self.ns_per_tick_q32.is_some()
    }

    /// A reading to measure from.
    #[inline(always)]
    pub fn mark(&self) -> Mark {
        match (self.ns_per_tick_q32, sys::tsc()) {
            (Some(_), Some(t)) => Mark::Tsc(t),
            _ => Mark::Wall(Instant::now()),
        }
    }

    /// Nanoseconds since `since`, a mark of this clock (0 if the counter seems to have
    /// gone back).
    #[inline(always)]
    pub fn ns_since(&self, since: Mark) -> u64 {
        match (since, self.ns_per_tick_q32, sys::tsc()) {
            (Mark::Tsc(t0), Some(q), Some(t1)) => ticks_to_ns(t1.saturating_sub(t0), q),
            (Mark::Wall(i), ..) => i.elapsed().as_nanos() as u64,
            _ => {
                debug_assert!(false, "a mark of another clock");
                0
            }
        }
    }
}

/// The kernel's clock source (`tsc`, `kvm-clock`, …), if it says.
fn clock_source() -> Option<String> {
    std::fs::read_to_string(CLOCKSOURCE)
        .ok()
        .map(|s| s.trim().to_string())
}

/// `ticks` in nanoseconds at `q` (32.32 fixed-point ns per tick), saturating.
#[inline(always)]
fn ticks_to_ns(ticks: u64, q: u64) -> u64 {
    u64::try_from((u128::from(ticks) * u128::from(q)) >> 32).unwrap_or(u64::MAX)
}

/// The counter read between two `Instant` reads at most [`BRACKET_NS`] apart: (counter,
/// the bracket's middle). A few tries; `None` if every one was interrupted.
fn bracketed() -> Option<(u64, Instant)> {
    (0..16).find_map(|_| {
        let before = Instant::now();
        let t = sys::tsc()?;
        let after = Instant::now();
        let width = after.duration_since(before);
        (width.as_nanos() <= u128::from(BRACKET_NS)).then(|| (t, before + width / 2))
    })
}

/// One calibration span of about `span`: ns per tick as 32.32 fixed point, if both ends
/// read cleanly and the counter's rate is between 1 MHz and 100 GHz.
fn span_rate(span: Duration) -> Option<u64> {
    let (t0, i0) = bracketed()?;
    std::thread::sleep(span);
    let (t1, i1) = bracketed()?;
    let ticks = u128::from(t1.checked_sub(t0)?);
    let ns = i1.checked_duration_since(i0)?.as_nanos();
    let hz = ticks.checked_mul(1_000_000_000)?.checked_div(ns)?;
    if !(1_000_000..=100_000_000_000).contains(&hz) {
        return None;
    }
    u64::try_from((ns << 32) / ticks).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::skipped;

    /// The process's clock if it reads the counter; else says the test is skipped.
    fn tsc_clock() -> Option<BurstClock> {
        let c = BurstClock::get();
        if !c.uses_tsc() {
            skipped(format!(
                "the burst clock reads Instant here (invariant TSC: {}, clock source: {:?}, or no clean calibration)",
                sys::tsc_invariant(),
                clock_source()
            ));
        }
        c.uses_tsc().then_some(c)
    }

    #[test]
    fn ticks_become_nanoseconds_exactly_and_saturate() {
        // 3 GHz: a third of a ns per tick.
        let q = (1u64 << 32) / 3;
        assert_eq!(ticks_to_ns(3_000_000_000, q), 999_999_999);
        assert_eq!(ticks_to_ns(0, q), 0);
        // 1 ns per tick is the identity; the slowest rate taken (1 MHz) is 1000 ns a tick.
        assert_eq!(ticks_to_ns(12_345, 1 << 32), 12_345);
        assert_eq!(ticks_to_ns(7, 1000 << 32), 7_000);
        // The largest products saturate instead of wrapping.
        assert_eq!(ticks_to_ns(u64::MAX, 1000 << 32), u64::MAX);
        assert_eq!(ticks_to_ns(u64::MAX, 1 << 32), u64::MAX);
    }

    #[test]
    fn a_counter_that_went_back_gives_zero() {
        let Some(c) = tsc_clock() else { return };
        let Mark::Tsc(now) = c.mark() else {
            panic!("a counter clock marks ticks")
        };
        assert_eq!(c.ns_since(Mark::Tsc(now + (1 << 40))), 0);
    }

    /// Times `wait` with `c` and checks the result lies within the `Instant` reads around
    /// it, give or take 1% (the rate) and 2 µs (the unordered reads).
    fn agrees_with_instant(c: BurstClock, wait: impl FnOnce()) {
        let outer = Instant::now();
        let m = c.mark();
        let inner = Instant::now();
        wait();
        let inner_ns = inner.elapsed().as_nanos() as u64;
        let got = c.ns_since(m);
        let outer_ns = outer.elapsed().as_nanos() as u64;
        assert!(
            got + got / 100 + 2_000 >= inner_ns && got <= outer_ns + outer_ns / 100 + 2_000,
            "{c:?}: {got} ns, Instant saw {inner_ns}..{outer_ns}"
        );
    }

    #[test]
    fn a_sleep_is_timed_as_instant_times_it() {
        let Some(c) = tsc_clock() else { return };
        agrees_with_instant(c, || std::thread::sleep(Duration::from_millis(20)));
    }

    #[test]
    fn a_short_burst_is_timed_in_nanoseconds_not_ticks() {
        // 50 µs of spinning: ticks (a few per ns) would fall far outside.
        let Some(c) = tsc_clock() else { return };
        agrees_with_instant(c, || {
            let spin = Instant::now();
            while spin.elapsed() < Duration::from_micros(50) {}
        });
    }

    #[test]
    fn the_fallback_reads_instant() {
        let c = BurstClock::wall();
        assert!(!c.uses_tsc());
        assert!(matches!(c.mark(), Mark::Wall(_)));
        let m = c.mark();
        std::thread::sleep(Duration::from_millis(2));
        assert!(c.ns_since(m) >= 2_000_000);
    }
}
