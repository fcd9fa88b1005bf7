//! The burst clock: how long a worker spent on a burst, for its latency histogram.
//!
//! `Instant::now()` reads the clock through the vDSO, which orders itself behind every
//! load before it (`lfence; rdtsc`). Twice per burst, that wait showed in the frame rate
//! of DPDK on net_null (`bench/results/dpdk-null.md`). Where the CPU's time-stamp counter
//! ticks at one constant rate (the invariant TSC of x86_64 servers, usually passed on to
//! VMs), the burst clock reads the counter unordered and turns ticks into nanoseconds with
//! a factor measured once per process against the monotonic clock. Elsewhere it reads
//! `Instant`, as before.
//!
//! Invariants:
//! - It gives durations only, never points in time: the rate limits (resets, drop-log
//!   samples) stay on the monotonic clock.
//! - The counter is used only if CPUID calls it invariant and the kernel keeps time with
//!   it too (its clock source is `tsc`: the kernel has checked that all CPUs' counters
//!   agree, so a thread may move between CPUs).
//! - The factor is measured once per process, over [`CALIBRATION`], by the first
//!   [`BurstClock::get`] (a worker's creation, never a burst). It is used only if the
//!   counter's rate comes out between 1 MHz and 100 GHz; otherwise the clock reads
//!   `Instant`.
//! - An unordered read may land a few instructions early or late: a burst's time is off
//!   by nanoseconds out of its microseconds.
//! - A duration never goes negative or overflows: differences saturate at 0 and the
//!   conversion is done in 128 bits.

use crate::port::sys;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long the counter is compared with the monotonic clock to find its rate. The reads
/// at either end are tens of nanoseconds apart, so the rate is right to about 50 ppm,
/// far finer than the histogram's three significant digits.
pub const CALIBRATION: Duration = Duration::from_millis(2);

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
    /// This process's burst clock: the time-stamp counter if it is invariant and its rate
    /// measures sane, else `Instant`. The first call measures the rate (about
    /// [`CALIBRATION`]); later calls return the same clock.
    pub fn get() -> BurstClock {
        static CLOCK: OnceLock<BurstClock> = OnceLock::new();
        *CLOCK.get_or_init(|| {
            if sys::tsc_invariant() && kernel_trusts_tsc() {
                BurstClock::measured(CALIBRATION)
            } else {
                BurstClock::wall()
            }
        })
    }

    /// A clock that reads `Instant` (the fallback, and tests that compare the two).
    pub fn wall() -> BurstClock {
        BurstClock {
            ns_per_tick_q32: None,
        }
    }

    /// The time-stamp counter, its rate measured against `Instant` over `span`; `Instant`
    /// itself if there is no counter or its rate is not between 1 MHz and 100 GHz.
    pub fn measured(span: Duration) -> BurstClock {
        let (Some(t0), i0) = (sys::tsc(), Instant::now()) else {
            return BurstClock::wall();
        };
        std::thread::sleep(span);
        let (Some(t1), i1) = (sys::tsc(), Instant::now()) else {
            return BurstClock::wall();
        };
        let ticks = u128::from(t1.saturating_sub(t0));
        let ns = i1.duration_since(i0).as_nanos();
        // Ticks per second = ticks * 1e9 / ns.
        let sane = ns > 0 && (1_000_000..=100_000_000_000).contains(&(ticks * 1_000_000_000 / ns));
        if !sane {
            return BurstClock::wall();
        }
        BurstClock {
            ns_per_tick_q32: u64::try_from((ns << 32) / ticks).ok(),
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

    /// Nanoseconds since `since`, a mark of this clock (0 if the clock seems to have gone
    /// back).
    #[inline(always)]
    pub fn ns_since(&self, since: Mark) -> u64 {
        match (since, self.ns_per_tick_q32, sys::tsc()) {
            (Mark::Tsc(t0), Some(q), Some(t1)) => {
                let ns = (u128::from(t1.saturating_sub(t0)) * u128::from(q)) >> 32;
                u64::try_from(ns).unwrap_or(u64::MAX)
            }
            (Mark::Wall(i), ..) => i.elapsed().as_nanos() as u64,
            // A mark of another clock: cannot happen through this type's own use.
            _ => 0,
        }
    }
}

/// The kernel's own clock source, where it says which.
const CLOCKSOURCE: &str = "/sys/devices/system/clocksource/clocksource0/current_clocksource";

/// Whether the kernel keeps time with the TSC itself: it does so only after checking that
/// the counters of all CPUs agree and stay steady (it drops the TSC as soon as they do
/// not, e.g. in a VM whose host cannot keep them so), and the workers' threads may move
/// between CPUs. Unknown (no such file): trusted, on the CPUID flag alone.
fn kernel_trusts_tsc() -> bool {
    std::fs::read_to_string(CLOCKSOURCE).map_or(true, |s| s.trim() == "tsc")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_clocks_measure_a_sleep_alike() {
        let tsc = BurstClock::get();
        if !tsc.uses_tsc() {
            println!("SKIPPED (tsc part): this CPU has no invariant time-stamp counter; the burst clock reads Instant");
        }
        for clock in [tsc, BurstClock::wall()] {
            let m = clock.mark();
            let i = Instant::now();
            std::thread::sleep(Duration::from_millis(20));
            let wall = i.elapsed().as_nanos() as u64;
            let got = clock.ns_since(m);
            // The counter's reading brackets the Instant's: at least the sleep, and within
            // 1% (plus the two reads) of what Instant saw.
            assert!(got >= 20_000_000, "{clock:?}: {got} ns for a 20 ms sleep");
            assert!(
                got.abs_diff(wall) <= wall / 100 + 100_000,
                "{clock:?}: {got} ns against Instant's {wall}"
            );
        }
    }

    #[test]
    fn the_process_clock_is_measured_once() {
        assert_eq!(BurstClock::get(), BurstClock::get());
        assert!(!BurstClock::wall().uses_tsc());
    }

    #[test]
    fn a_short_burst_is_timed_in_nanoseconds_not_ticks() {
        // Instant's reads bracket the clock's: its 50 µs lie within the outer pair's span
        // and cover the inner pair's (1% and 2 µs of slack for the rate and the unordered
        // reads). Ticks (a few per ns) would fall far outside.
        let clock = BurstClock::get();
        let outer = Instant::now();
        let m = clock.mark();
        let inner = Instant::now();
        while inner.elapsed() < Duration::from_micros(50) {}
        let inner_ns = inner.elapsed().as_nanos() as u64;
        let ns = clock.ns_since(m);
        let outer_ns = outer.elapsed().as_nanos() as u64;
        assert!(
            ns + ns / 100 + 2_000 >= inner_ns && ns <= outer_ns + outer_ns / 100 + 2_000,
            "{clock:?}: {ns} ns, Instant saw {inner_ns}..{outer_ns}"
        );
    }
}
