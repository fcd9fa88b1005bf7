//! `op25b-bench swap`: how long a worker stalls when the control thread publishes a new
//! policy of N prefixes while traffic flows.
//!
//! One worker classifies in-memory bursts in a loop, loading the policy once per burst as
//! the live path does, and times every burst. Meanwhile this thread builds fresh policies
//! of the same size (each from a different seed) and swaps them in, handing the old one to
//! the reaper. Reported: burst-time percentiles without swaps and the longest burst around
//! each swap; the stall is that longest burst minus the median one. Because a shared
//! machine has scheduling hiccups of its own, every swap window is paired with a control
//! window of the same length with no swap, and both per-window maxima are reported.
//!
//! The first burst judged under each new policy (found by the policy generation the
//! worker records for every burst: a burst that starts while the swap is still under way
//! is judged under the old one) is also compared with that same burst's own steady cost
//! (the worker cycles through a fixed list of bursts, so the median of its eight previous
//! passes), and the same is done for the first burst of every control window: the control
//! figures are what the metric reads when nothing is swapped, i.e. its noise.

use crate::classify::synthetic_pools;
use crate::profile::{Generator, Profile};
use arc_swap::ArcSwap;
use hdrhistogram::Histogram;
use op25b_dataplane::hot::{Family, HotBlocks};
use op25b_dataplane::policy::Policy;
use op25b_dataplane::port::Burst;
use op25b_dataplane::worker::{retire, Worker};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The policy of `n` synthetic BNG-like prefixes (30% IPv6) from `seed`, generation
/// `seed`.
pub(crate) fn policy(n: usize, seed: u64) -> Result<Policy, String> {
    let pools = synthetic_pools(n, 0.3, seed);
    let spec = pools.spec();
    Policy::build(spec, seed)
        .map(|(p, _)| p)
        .map_err(|e| e.to_string())
}

/// Runs `swaps` swaps of `prefixes`-prefix policies under traffic.
/// The worker is pinned to the last core and this thread (so also the reaper it starts) to
/// the first, as an appliance keeps its control plane off the worker cores.
pub fn run(
    prefixes: usize,
    swaps: usize,
    burst: usize,
    cycle: usize,
    warm: bool,
    hot: bool,
) -> Result<Value, String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let _ = op25b_dataplane::port::sys::pin_current_thread(0);
    let first = policy(prefixes, 1)?;
    let pools = synthetic_pools(prefixes, 0.3, 1);
    let mut g = Generator::new(&pools, Profile::default(), 7);
    let bursts: Vec<Burst> = (0..cycle)
        .map(|_| {
            let mut b = Burst::new(burst);
            for _ in 0..burst {
                b.push(&g.frame());
            }
            b
        })
        .collect();
    let cycle = bursts.len();
    let handle = Arc::new(ArcSwap::from_pointee(first));
    // The blocks the worker looks up while a policy is built, as `op25b run` records them.
    let blocks = Arc::new(HotBlocks::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let swapping = Arc::new(AtomicBool::new(false));
    let longest_in_swap = Arc::new(AtomicU64::new(0));
    // Every burst's (start, duration) in ns since `base`, so the bursts just before and just
    // after each swap can be compared (those share the machine's noise, unlike maxima).
    let base = Instant::now();
    let worker = {
        let recorder = hot.then(|| blocks.clone());
        let (handle, stop, swapping, longest) = (
            handle.clone(),
            stop.clone(),
            swapping.clone(),
            longest_in_swap.clone(),
        );
        std::thread::spawn(move || {
            let _ = op25b_dataplane::port::sys::pin_current_thread(cores - 1);
            let mut w = Worker::new(burst);
            if let Some(r) = recorder {
                w = w.record_hot(r);
            }
            let mut quiet =
                Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).expect("static bounds");
            // Entry i is burst i % cycle, so the capacity must outlast the run (about 30 s at
            // 2 µs per burst); later bursts are not traced.
            let mut trace: Vec<Traced> = Vec::with_capacity(16 << 20);
            'outer: loop {
                for b in &bursts {
                    if stop.load(Ordering::Relaxed) {
                        break 'outer;
                    }
                    let during = swapping.load(Ordering::Relaxed);
                    let t = Instant::now();
                    let p = handle.load();
                    std::hint::black_box(w.classify(&p, b));
                    let generation = p.generation();
                    drop(p);
                    let ns = t.elapsed().as_nanos() as u64;
                    if trace.len() < trace.capacity() {
                        trace.push(Traced {
                            start: (t - base).as_nanos() as u64,
                            ns: ns.min(u64::from(u32::MAX)) as u32,
                            generation: generation as u32,
                        });
                    }
                    if during {
                        longest.fetch_max(ns, Ordering::Relaxed);
                    } else {
                        let _ = quiet.record(ns.max(1));
                    }
                }
            }
            (quiet, trace)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let mut builds = Vec::new();
    let mut publishes = Vec::new();
    let mut hot_lines = Vec::new();
    let mut swap_max = Vec::new();
    let mut control_max = Vec::new();
    // (time the swap began, generation of the policy swapped in)
    let mut swap_at = Vec::new();
    let mut control_at = Vec::new();
    for i in 0..swaps {
        let t = Instant::now();
        let generation = 100 + i as u64;
        if hot {
            blocks.start();
        }
        let next = policy(prefixes, generation);
        blocks.stop();
        let next = Arc::new(next?);
        if warm {
            next.warm();
        }
        if hot {
            let t = Instant::now();
            let [v4, v6] = next.warm_hot(&handle.load(), &blocks);
            hot_lines.push(json!({
                "v4_blocks": blocks.blocks(Family::V4).count(),
                "v6_blocks": blocks.blocks(Family::V6).count(),
                "v4_lines": v4,
                "v6_lines": v6,
                "warm_hot_ms": t.elapsed().as_secs_f64() * 1e3,
            }));
        }
        builds.push(t.elapsed().as_secs_f64());
        // Swap window: the swap and the time the reaper needs to free the old policy.
        longest_in_swap.store(0, Ordering::Relaxed);
        swapping.store(true, Ordering::Relaxed);
        let window = Instant::now();
        let t = Instant::now();
        swap_at.push(((t - base).as_nanos() as u64, generation as u32));
        let old = handle.swap(next);
        publishes.push(t.elapsed().as_nanos() as u64);
        let watch = Arc::downgrade(&old);
        retire(old);
        while watch.strong_count() > 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
        let length = window.elapsed();
        swapping.store(false, Ordering::Relaxed);
        swap_max.push(longest_in_swap.load(Ordering::Relaxed));
        std::thread::sleep(Duration::from_millis(50));
        // Control window of the same length, nothing happening.
        longest_in_swap.store(0, Ordering::Relaxed);
        swapping.store(true, Ordering::Relaxed);
        control_at.push((Instant::now() - base).as_nanos() as u64);
        std::thread::sleep(length);
        swapping.store(false, Ordering::Relaxed);
        control_max.push(longest_in_swap.load(Ordering::Relaxed));
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let (quiet, trace) = worker.join().map_err(|_| "worker panicked".to_string())?;
    // Bursts starting in the 2 ms before and the 2 ms after each swap.
    let span = 2_000_000u64;
    let pct = |v: &mut Vec<u64>, q: f64| -> u64 {
        v.sort_unstable();
        v.get(((v.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0)
    };
    let mut around = Vec::new();
    let mut extra = Vec::new();
    let mut extra_same = Vec::new();
    let mut extra_same_ns = Vec::new();
    let mut under_old = Vec::new();
    for &(s, generation) in &swap_at {
        let mut before: Vec<u64> = trace
            .iter()
            .filter(|e| e.start + span >= s && e.start < s)
            .map(|e| u64::from(e.ns))
            .collect();
        let mut after: Vec<u64> = trace
            .iter()
            .filter(|e| e.start >= s && e.start < s + span)
            .map(|e| u64::from(e.ns))
            .collect();
        // The first burst judged under the new policy, and how many started after the swap
        // began but still ran under the old one.
        let from = trace.partition_point(|e| e.start < s);
        let first_new = trace[from..]
            .iter()
            .position(|e| e.generation == generation)
            .map(|k| from + k);
        let started_under_old = first_new.map(|i| i - from);
        under_old.push(started_under_old.unwrap_or(0));
        let first_after = first_new.map_or(0, |i| u64::from(trace[i].ns));
        let first_eight: Vec<u64> = first_new
            .map(|i| trace[i..].iter().take(8).map(|e| u64::from(e.ns)).collect())
            .unwrap_or_default();
        let typical = pct(&mut before.clone(), 0.5);
        extra.push(first_after.saturating_sub(typical) as f64 / typical.max(1) as f64);
        let same = first_new.and_then(|i| first_burst_extra(&trace, i, cycle));
        if let Some((ns, e)) = same {
            extra_same.push(e);
            extra_same_ns.push(ns);
        }
        around.push(json!({
            "bursts_before": before.len(), "bursts_after": after.len(),
            "p50_before": pct(&mut before, 0.5), "p50_after": pct(&mut after, 0.5),
            "p99_before": pct(&mut before, 0.99), "p99_after": pct(&mut after, 0.99),
            "max_before": pct(&mut before, 1.0), "max_after": pct(&mut after, 1.0),
            "first_burst_after": first_after,
            "bursts_started_after_the_swap_began_under_the_old_policy": started_under_old,
            "first_eight_bursts_after": first_eight,
            "first_burst_extra_vs_same_burst": same.map(|(_, e)| e),
            "first_burst_extra_vs_same_burst_ns": same.map(|(ns, _)| ns),
        }));
    }
    let (extra_control_ns, extra_control): (Vec<f64>, Vec<f64>) = control_at
        .iter()
        .filter_map(|&s| first_burst_extra(&trace, trace.partition_point(|e| e.start < s), cycle))
        .unzip();
    let longest = swap_max.iter().copied().max().unwrap_or(0);
    let p50 = quiet.value_at_quantile(0.5);
    let med = |v: &[u64]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        v[v.len() / 2]
    };
    builds.sort_by(f64::total_cmp);
    let build_median = builds[builds.len() / 2];
    let stall = longest.saturating_sub(p50);
    let stall_in_bursts = stall as f64 / p50.max(1) as f64;
    let extra_median = summary(&extra, true)["median"].clone();
    Ok(json!({
        "prefixes": prefixes,
        "swaps": swaps,
        "warmed_before_publish": warm,
        "hot_blocks_warmed": hot,
        "hot_blocks": hot_lines,
        "burst": burst,
        "distinct_bursts": cycle,
        "policy_build_s_median": build_median,
        "publish_ns_max": publishes.iter().max(),
        "burst_ns_quiet": {"p50": p50, "p99": quiet.value_at_quantile(0.99), "p999": quiet.value_at_quantile(0.999), "max": quiet.max()},
        "burst_ns_longest_during_swaps": longest,
        "window_max_burst_ns": {"swap": swap_max, "control": control_max},
        "window_max_burst_ns_median": {"swap": med(&swap_max), "control": med(&control_max)},
        "around_each_swap_ns": around,
        "first_burst_extra_in_bursts": extra,
        "first_burst_extra_in_bursts_median": extra_median,
        "swaps_with_bursts_started_under_the_old_policy": under_old.iter().filter(|&&k| k > 0).count(),
        "first_burst_extra_vs_same_burst": extra_json(&extra_same, &extra_control, true),
        "first_burst_extra_vs_same_burst_ns": extra_json(&extra_same_ns, &extra_control_ns, false),
        "stall_ns": stall,
        "stall_in_bursts": stall_in_bursts,
    }))
}

/// One traced burst: when it started (ns since the run began), how long it took, and the
/// generation of the policy it was judged under.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Traced {
    pub(crate) start: u64,
    pub(crate) ns: u32,
    pub(crate) generation: u32,
}

/// Trace entry `i` against that same burst's steady cost: its duration minus the median of
/// its eight previous passes (the worker cycles through `cycle` bursts, so trace entry `i`
/// is burst `i % cycle`), in ns and in units of the median burst over the cycle before.
/// `None` when the trace does not reach that far back or forward.
pub(crate) fn first_burst_extra(trace: &[Traced], i: usize, cycle: usize) -> Option<(f64, f64)> {
    const PASSES: usize = 8;
    let d = trace.get(i)?.ns;
    i.checked_sub(PASSES * cycle)?;
    let mut own: Vec<u32> = (1..=PASSES).map(|k| trace[i - k * cycle].ns).collect();
    own.sort_unstable();
    let own = own[PASSES / 2];
    // The unit: a typical burst of the cycle before.
    let mut unit: Vec<u32> = trace[i - cycle..i].iter().map(|e| e.ns).collect();
    unit.sort_unstable();
    let unit = unit[unit.len() / 2].max(1);
    let ns = f64::from(d) - f64::from(own);
    Some((ns, ns / f64::from(unit)))
}

/// The first-burst figures of the swaps and of the control windows: their summaries, and
/// (`bursts`: values in bursts) every value.
pub(crate) fn extra_json(swap: &[f64], control: &[f64], bursts: bool) -> Value {
    let mut v = json!({"swap": summary(swap, bursts), "control": summary(control, bursts)});
    if bursts {
        v["swap_values"] = json!(swap);
        v["control_values"] = json!(control);
    }
    v
}

/// Median, 75th and 90th percentile and largest value of `v`, and with `bursts` (values in
/// bursts) the share below one.
pub(crate) fn summary(v: &[f64], bursts: bool) -> Value {
    if v.is_empty() {
        return Value::Null;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let q = |p: f64| s[((s.len() - 1) as f64 * p).round() as usize];
    let mut out = json!({
        "n": s.len(),
        "median": q(0.5),
        "p75": q(0.75),
        "p90": q(0.9),
        "max": q(1.0),
    });
    if bursts {
        out["under_one"] = json!(s.iter().filter(|&&x| x < 1.0).count() as f64 / s.len() as f64);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cycle of 4 bursts costing 100, 110, 120, 130 ns, one burst every 1000 ns.
    fn trace(passes: usize) -> Vec<Traced> {
        (0..passes * 4)
            .map(|i| Traced {
                start: i as u64 * 1000,
                ns: 100 + 10 * (i as u32 % 4),
                generation: 1,
            })
            .collect()
    }

    #[test]
    fn first_burst_extra_is_against_the_same_burst_in_typical_bursts() {
        let mut t = trace(12);
        // Burst 2 of pass 10 (its own cost 120) takes 175: 55 ns extra; the cycle before
        // has median 120 (of 100, 110, 120, 130, the upper middle), so 55/120 bursts.
        let i = 10 * 4 + 2;
        t[i].ns = 175;
        let (ns, e) = first_burst_extra(&t, i, 4).expect("enough history");
        assert_eq!(ns, 55.0);
        assert!((e - 55.0 / 120.0).abs() < 1e-9, "{e}");
        // Nothing changed: zero. Not enough passes before, or nothing after: none.
        assert_eq!(first_burst_extra(&t, i + 1, 4), Some((0.0, 0.0)));
        assert_eq!(first_burst_extra(&t, 7 * 4, 4), None);
        assert_eq!(first_burst_extra(&t, t.len(), 4), None);
    }

    #[test]
    fn summary_reports_quantiles_and_the_share_under_one() {
        let v: Vec<f64> = (0..11).map(|i| i as f64 / 5.0).collect(); // 0.0 ..= 2.0
        let s = summary(&v, true);
        assert_eq!(s["n"], 11);
        assert_eq!(s["median"], 1.0);
        assert_eq!(s["max"], 2.0);
        assert_eq!(s["p90"], 1.8);
        assert!((s["under_one"].as_f64().unwrap() - 5.0 / 11.0).abs() < 1e-12);
        assert!(summary(&[], true).is_null());
        assert!(summary(&v, false).get("under_one").is_none());
    }
}
