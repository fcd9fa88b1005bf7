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
use hdrhistogram::Histogram;
use op25b_dataplane::hot::{Family, HotBlocks};
use op25b_dataplane::policy::{AnyPrefix, Policy};
use op25b_dataplane::port::Burst;
use op25b_dataplane::worker::PolicyHandle;
use op25b_dataplane::worker::{retire, Worker};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The policy of `n` synthetic BNG-like prefixes (30% IPv6) from `seed`, generation
/// `seed`. `coarse` (`--coarse-pools`) keeps only the IPv4 prefixes of /24 or shorter:
/// they cut no /24, so the outbound IPv4 source table is built direct (DIR-24-8; the full
/// synthetic pools cut more /24s than it may hold). The frames are drawn from all the
/// pools either way.
/// `direct`: the IPv4 source table direct whatever its size, as `op25b run` builds it for
/// DPDK ([`Policy::build_direct`]).
pub(crate) fn policy(n: usize, seed: u64, coarse: bool, direct: bool) -> Result<Policy, String> {
    let pools = synthetic_pools(n, 0.3, seed);
    let mut spec = pools.spec();
    if coarse {
        let coarse = |p: &AnyPrefix| !matches!(p, AnyPrefix::V4(q) if q.len > 24);
        spec.dynamic.retain(coarse);
        spec.exempt.retain(coarse);
    }
    if direct {
        Policy::build_direct(spec, seed)
    } else {
        Policy::build(spec, seed)
    }
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
    coarse_pools: bool,
) -> Result<Value, String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let _ = op25b_dataplane::port::sys::pin_current_thread(0);
    let first = policy(prefixes, 1, coarse_pools, false)?;
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
    let handle = Arc::new(PolicyHandle::from_pointee(first));
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
        let next = policy(prefixes, generation, coarse_pools, false);
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
        "coarse_pools": coarse_pools,
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

/// What a swap run on a live path needs besides its wire: see [`on_live_path`].
#[derive(Clone, Debug)]
pub struct LiveArgs {
    /// Prefixes per policy (the same BNG-like pools as `swap`, 30% IPv6).
    pub prefixes: usize,
    /// Swaps to make.
    pub swaps: usize,
    /// The control thread's core (building, warming, publishing, the reaper).
    pub control_core: usize,
    /// Frames per burst.
    pub burst: usize,
    /// Policies of the coarse pools only (see `policy`).
    pub coarse_pools: bool,
    /// IPv4 source tables direct whatever their size, as `op25b run` builds them for DPDK.
    pub direct: bool,
}

/// `count` frames of `len` bytes (at least 64) for the live-path swap benches: plain
/// Ethernet/IPv4/TCP, the source inside one of the IPv4 pools of `policy(prefixes, 1, _)`
/// half the time (else anywhere), half of them to port 25 (else 443).
pub fn live_frames(prefixes: usize, count: usize, len: usize) -> Vec<Vec<u8>> {
    use op25b_dataplane::policy::AnyPrefix;
    use op25b_dataplane::wire::build::FrameBuilder;
    use std::net::{IpAddr, Ipv4Addr};
    let pools = synthetic_pools(prefixes, 0.3, 1);
    let v4: Vec<(u32, u8)> = pools
        .dynamic
        .iter()
        .filter_map(|p| match p {
            AnyPrefix::V4(p) => Some((p.addr, p.len)),
            AnyPrefix::V6(_) => None,
        })
        .collect();
    let mut rng = crate::rng::Rng::new(7);
    (0..count)
        .map(|i| {
            let src = match v4.get(rng.below(v4.len().max(1) as u64) as usize) {
                Some(&(net, len)) if rng.chance(0.5) => {
                    net | (rng.next_u64() as u32
                        & !u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0))
                }
                _ => rng.next_u64() as u32,
            };
            let dport = if rng.chance(0.5) { 25 } else { 443 };
            let mut f = FrameBuilder::tcp(
                IpAddr::V4(Ipv4Addr::from(src)),
                IpAddr::V4(Ipv4Addr::from(rng.next_u64() as u32)),
                1024 + i as u16,
                dport,
            )
            .build();
            f.resize(len.max(64), 0);
            f
        })
        .collect()
}

/// Bursts a live-path run traces: about 60 s of 1 µs bursts (AF_XDP on veth hands over a
/// frame or two per poll); 1.25 GiB of address space with the judge times, reserved up
/// front, its pages touched only as the trace grows.
const TRACE_CAPACITY: usize = 64 << 20;

/// Bursts each swap's first bursts are judged against: the median of this many bursts
/// of the same kind just before.
const BEFORE: usize = 16;
/// Bursts under a new policy looked at for the worst one (the first few pay the misses).
const AFTER: usize = 8;
/// An idle stretch this long before a burst makes it the first of a train: on a kernel
/// path frames arrive in trains (a TPACKET_V3 block, a generator's batch), and the first
/// burst of a train costs more than the others (its ring memory was just written by
/// another core), whatever the policy.
const TRAIN_GAP_NS: u64 = 50_000;

/// Whether trace entry `i` starts a train (see [`TRAIN_GAP_NS`]).
fn starts_train(trace: &[Traced], i: usize) -> bool {
    i.checked_sub(1).is_some_and(|j| {
        let end = trace[j].start + u64::from(trace[j].ns);
        trace[i].start.saturating_sub(end) >= TRAIN_GAP_NS
    })
}

/// The last [`BEFORE`] bursts before `from` of the kind of entry `i` (first of a train or
/// not), looking back at most 2^20 bursts, or when there are not that many of its kind,
/// the last [`BEFORE`] of any kind; `None` when there are fewer than that before `from`.
fn same_kind_before(trace: &[Traced], from: usize, i: usize) -> Option<Vec<usize>> {
    let kind = starts_train(trace, i);
    let same: Vec<usize> = (1..=from.min(1 << 20))
        .map(|k| from - k)
        .filter(|&j| starts_train(trace, j) == kind)
        .take(BEFORE)
        .collect();
    if same.len() == BEFORE {
        return Some(same);
    }
    from.checked_sub(BEFORE).map(|s| (s..from).collect())
}

/// The median of `value` over `at` (at least 1).
fn median_of(at: &[usize], value: impl Fn(usize) -> u32) -> f64 {
    let mut v: Vec<u32> = at.iter().map(|&j| value(j)).collect();
    v.sort_unstable();
    f64::from(v[v.len() / 2].max(1))
}

/// The typical cost of a burst of the kind of entry `i` just before `from`: the median of
/// [`same_kind_before`].
fn typical_before(trace: &[Traced], from: usize, i: usize) -> Option<f64> {
    Some(median_of(&same_kind_before(trace, from, i)?, |j| {
        trace[j].ns
    }))
}

/// Trace entry `i` against the bursts of its kind just before it ([`typical_before`]):
/// its duration minus their median, in ns and in units of that median.
pub(crate) fn extra_vs_before(trace: &[Traced], i: usize) -> Option<(f64, f64)> {
    let d = f64::from(trace.get(i)?.ns);
    let typical = typical_before(trace, i, i)?;
    Some((d - typical, (d - typical) / typical))
}

/// The first burst from trace entry `i` on and the worst of the [`AFTER`] from it, each
/// against the bursts of its own kind before `i`, in bursts: `(first, worst)`.
fn first_and_worst(trace: &[Traced], i: usize) -> Option<(f64, f64)> {
    let (_, first) = extra_vs_before(trace, i)?;
    let worst = (i..trace.len().min(i + AFTER))
        .filter_map(|j| {
            let typical = typical_before(trace, i, j)?;
            Some((f64::from(trace[j].ns) - typical) / typical)
        })
        .fold(first, f64::max);
    Some((first, worst))
}

/// The worker stall of policy swaps on a live path: the calling thread (pinned by the
/// caller to the worker's core) polls with `poll` — one receive, judge, transmit round of
/// the real port, returning the frames moved and, when it timed the judge apart, the
/// judge's ns — and times every round that moved frames,
/// while a control thread on `a.control_core` builds policies of `a.prefixes` prefixes,
/// warms them as `op25b run` does (the whole tables, then the blocks the worker looked up
/// while the policy was built) and swaps them in. For each swap, the first burst judged
/// under the new policy's generation, and the worst of the first eight, are compared
/// with the sixteen bursts of their kind before it. Each swap is followed by a control round that
/// builds and warms a policy the same way but frees it instead of swapping it in; its
/// figures, taken at the moment the swap would have been, are the measure's own noise.
pub fn on_live_path(
    a: &LiveArgs,
    mut poll: impl FnMut(&mut Worker, &op25b_dataplane::worker::PolicyHandle) -> (usize, Option<u32>),
) -> Result<Value, String> {
    if a.swaps == 0 {
        return Err("--swaps 0: nothing would be measured; give at least 1".into());
    }
    let first = policy(a.prefixes, 1, a.coarse_pools, a.direct)?;
    first.warm();
    let handle = Arc::new(PolicyHandle::from_pointee(first));
    let blocks = Arc::new(HotBlocks::new(1));
    let mut worker = Worker::new(a.burst).record_hot(blocks.clone());
    let stop = AtomicBool::new(false);
    let base = Instant::now();
    // Later bursts are not traced, and their swaps not counted (`swaps_measured` shows it).
    let mut trace: Vec<Traced> = Vec::with_capacity(TRACE_CAPACITY);
    // The judge's own time in each traced burst, where the poll timed it apart (0: not).
    let mut judges: Vec<u32> = Vec::with_capacity(TRACE_CAPACITY);
    let (mut bursts, mut full) = (0u64, 0u64);
    let (swap_at, control_at, builds) = std::thread::scope(|s| {
        let control = s.spawn(|| -> Result<_, String> {
            if let Err(e) = op25b_dataplane::port::sys::pin_current_thread(a.control_core) {
                eprintln!(
                    "swap: warning: the control thread stays unpinned (core {}: {e})",
                    a.control_core
                );
            }
            let (mut swap_at, mut control_at, mut builds) = (Vec::new(), Vec::new(), Vec::new());
            let result = (|| {
                std::thread::sleep(Duration::from_millis(500));
                // Every swap is followed by a control round that does all the same (build,
                // warm, retire, wait) except the swap itself, so that what the control
                // thread's work does to the machine (a generator sharing its core, the
                // memory bus) is in the control figures too.
                for i in 0..2 * a.swaps {
                    let generation = 100 + i as u64;
                    let t = Instant::now();
                    blocks.start();
                    let next = policy(a.prefixes, generation, a.coarse_pools, a.direct);
                    blocks.stop();
                    let next = Arc::new(next?);
                    next.warm();
                    next.warm_hot(&handle.load(), &blocks);
                    builds.push(t.elapsed().as_secs_f64());
                    let at = (Instant::now() - base).as_nanos() as u64;
                    let old = if i % 2 == 0 {
                        swap_at.push((at, generation as u32));
                        handle.swap(next)
                    } else {
                        control_at.push(at);
                        next
                    };
                    let gone = Arc::downgrade(&old);
                    retire(old);
                    while gone.strong_count() > 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    std::thread::sleep(Duration::from_millis(70));
                }
                Ok(())
            })();
            stop.store(true, Ordering::Relaxed);
            result.map(|()| (swap_at, control_at, builds))
        });
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            let (n, judge) = poll(&mut worker, &handle);
            let ns = t.elapsed().as_nanos() as u64;
            if n > 0 {
                bursts += 1;
                full += u64::from(n >= a.burst);
                if trace.len() < trace.capacity() {
                    judges.push(judge.unwrap_or(0));
                    trace.push(Traced {
                        start: (t - base).as_nanos() as u64,
                        ns: ns.min(u64::from(u32::MAX)) as u32,
                        generation: worker.last_generation() as u32,
                    });
                }
            }
        }
        control
            .join()
            .map_err(|_| "the control thread panicked".to_string())?
    })?;
    let elapsed = base.elapsed().as_secs_f64();
    if trace.len() <= BEFORE {
        return Err(format!(
            "only {} bursts arrived in {elapsed:.1} s: no traffic reached the worker",
            trace.len()
        ));
    }
    let (mut first, mut worst, mut first_ns) = (Vec::new(), Vec::new(), Vec::new());
    let mut around = Vec::new();
    for &(swap_start, generation) in &swap_at {
        // Generations are unique: the first burst judged under this one, wherever it
        // started (a poll that began just before the swap may load the new policy after
        // its receive).
        let i = trace.iter().position(|e| e.generation == generation);
        if let Some(i) = i.filter(|&i| i >= BEFORE) {
            let ns = |r: std::ops::Range<usize>| -> Vec<u32> {
                trace[r.start..r.end.min(trace.len())]
                    .iter()
                    .map(|e| e.ns)
                    .collect()
            };
            let at = |r: std::ops::Range<usize>| -> Vec<i64> {
                trace[r.start..r.end.min(trace.len())]
                    .iter()
                    .map(|e| e.start as i64 - swap_start as i64)
                    .collect()
            };
            around.push(
                json!({"before": ns(i - BEFORE..i), "after": ns(i..i + AFTER),
                "start_before": at(i - BEFORE..i), "start_after": at(i..i + AFTER)}),
            );
        }
        if let Some(((f, w), (ns, _))) =
            i.and_then(|i| first_and_worst(&trace, i).zip(extra_vs_before(&trace, i)))
        {
            first.push(f);
            worst.push(w);
            first_ns.push(ns);
        }
    }
    let (mut c_first, mut c_worst, mut c_first_ns) = (Vec::new(), Vec::new(), Vec::new());
    for &s in &control_at {
        let i = trace.partition_point(|e| e.start < s);
        if let Some(((f, w), (ns, _))) = first_and_worst(&trace, i).zip(extra_vs_before(&trace, i))
        {
            c_first.push(f);
            c_worst.push(w);
            c_first_ns.push(ns);
        }
    }
    // The judge's extra time in the first burst under each new policy (and at each control
    // point), against the median judge of the bursts of its kind before, in ns and in
    // units of the typical whole burst of that kind: the part of a burst's extra that
    // the judge, where a swap's own cost lies, accounts for.
    let judge_extra = |i: usize| -> Option<(f64, f64)> {
        let d = f64::from(*judges.get(i).filter(|&&j| j > 0)?);
        let same = same_kind_before(&trace, i, i)?;
        let ns = d - median_of(&same, |j| judges[j]);
        Some((ns, ns / median_of(&same, |j| trace[j].ns)))
    };
    let (judge_ns, judge_bursts): (Vec<f64>, Vec<f64>) = swap_at
        .iter()
        .filter_map(|&(_, g)| trace.iter().position(|e| e.generation == g))
        .filter_map(judge_extra)
        .unzip();
    let (c_judge_ns, c_judge_bursts): (Vec<f64>, Vec<f64>) = control_at
        .iter()
        .filter_map(|&s| judge_extra(trace.partition_point(|e| e.start < s)))
        .unzip();
    let mut quiet: Vec<u32> = trace.iter().map(|e| e.ns).collect();
    quiet.sort_unstable();
    let p50 = quiet[quiet.len() / 2];
    let frames_moved = worker.counters().rx;
    Ok(json!({
        "prefixes": a.prefixes,
        "swaps": a.swaps,
        "swaps_measured": first.len(),
        "control_core": a.control_core,
        "burst": a.burst,
        "coarse_pools": a.coarse_pools,
        "mpps": frames_moved as f64 / elapsed / 1e6,
        "bursts": bursts,
        "full_burst_share": full as f64 / bursts.max(1) as f64,
        "train_start_share": (0..trace.len()).filter(|&i| starts_train(&trace, i)).count() as f64 / trace.len() as f64,
        "burst_ns_p50": p50,
        "burst_ns_p99": quiet[(quiet.len() - 1) * 99 / 100],
        "policy_build_and_warm_s": builds,
        "first_burst_extra_vs_bursts_before": extra_json(&first, &c_first, true),
        "worst_of_first_8_bursts_extra_vs_bursts_before": extra_json(&worst, &c_worst, true),
        "first_burst_extra_ns": extra_json(&first_ns, &c_first_ns, false),
        "burst_ns_around_each_swap": around,
        "first_burst_judge_extra_ns": extra_json(&judge_ns, &c_judge_ns, false),
        "first_burst_judge_extra_in_bursts": extra_json(&judge_bursts, &c_judge_bursts, true),
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
    fn live_path_extras_are_against_the_bursts_just_before() {
        // 20 bursts of 1000 ns, then 2500, 1100, 1000...: the first is 1.5 bursts extra,
        // the worst of the eight from it the same; one later is 0.1.
        let mut t: Vec<Traced> = (0..30)
            .map(|i| Traced {
                start: i * 2000,
                ns: 1000,
                generation: 1,
            })
            .collect();
        t[20].ns = 2500;
        t[21].ns = 1100;
        assert_eq!(extra_vs_before(&t, 20), Some((1500.0, 1.5)));
        assert_eq!(first_and_worst(&t, 20), Some((1.5, 1.5)));
        // The worst may come after the first: from burst 19 on, the first is 0, the worst 1.5.
        assert_eq!(first_and_worst(&t, 19), Some((0.0, 1.5)));
        // Not enough bursts before: none.
        assert_eq!(extra_vs_before(&t, BEFORE - 1), None);
        assert_eq!(first_and_worst(&t, 3), None);
        assert_eq!(extra_vs_before(&t, t.len()), None);
    }

    #[test]
    fn the_first_burst_of_a_train_is_judged_against_first_bursts() {
        // Trains of four bursts 100 µs apart: the first of each costs 2000 ns, the others
        // 1000 (back to back).
        let mut t = Vec::new();
        let mut at = 0u64;
        for train in 0..40u64 {
            for k in 0..4u64 {
                let ns = if k == 0 { 2000 } else { 1000 };
                t.push(Traced {
                    start: at,
                    ns,
                    generation: 1 + u32::from(train >= 30),
                });
                at += u64::from(ns);
            }
            at += 100_000;
        }
        let i = 30 * 4;
        assert!(starts_train(&t, i) && !starts_train(&t, i + 1) && !starts_train(&t, 0));
        t[i].ns = 2200;
        let (ns, e) = extra_vs_before(&t, i).expect("history");
        assert_eq!(ns, 200.0);
        assert!((e - 0.1).abs() < 1e-12, "{e}");
        // The bursts after it are judged against the in-train ones: nothing extra.
        assert_eq!(
            first_and_worst(&t, i).map(|(_, w)| (w * 1e9).round()),
            Some(0.1e9)
        );
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
