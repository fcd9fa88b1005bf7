//! `op25b-bench classify`: full classification (parse + lookups + verdict) of in-memory
//! bursts on one or more worker threads, the hot path with no I/O.
//!
//! Frames are generated once from a traffic profile over synthetic subscriber pools of the
//! requested size, packed into bursts, and every worker classifies all bursts repeatedly
//! through `Worker::classify` (the same call the live and replay paths make). Reports Mpps
//! (total and per worker), ns per frame, and latency percentiles from the workers' merged
//! HDR histograms.

use crate::profile::{Generator, Pools, Profile};
use crate::rng::Rng;
use op25b_dataplane::lpm::{Bits, Prefix};
use op25b_dataplane::policy::{AnyPrefix, Policy};
use op25b_dataplane::port::Burst;
use op25b_dataplane::worker::{latency_histogram, Worker};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

/// Synthetic BNG-like pools: `n` dynamic prefixes (IPv4 /16–/32 weighted to /20–/28, IPv6
/// /32–/64 plus /128 hosts, `v6_share` of them IPv6), exemptions nested inside a tenth of
/// them, and two relays.
pub fn synthetic_pools(n: usize, v6_share: f64, seed: u64) -> Pools {
    let mut rng = Rng::new(seed);
    let mut seen = std::collections::HashSet::new();
    let mut pools = Pools::default();
    while pools.dynamic.len() < n {
        let p = if rng.chance(v6_share) {
            let len = [32u8, 40, 44, 48, 48, 56, 56, 60, 64, 64, 64, 128][rng.below(12) as usize];
            AnyPrefix::V6(Prefix {
                addr: (0x2001_0db8u128 << 96 | rng.next_u128() >> 32) & u128::mask(len),
                len,
            })
        } else {
            let len = [16u8, 18, 20, 21, 22, 23, 24, 24, 25, 26, 27, 28, 28, 32, 32]
                [rng.below(15) as usize];
            AnyPrefix::V4(Prefix {
                addr: rng.next_u64() as u32 & u32::mask(len),
                len,
            })
        };
        if seen.insert(p) {
            pools.dynamic.push(p);
        }
    }
    for i in (0..n).step_by(10) {
        let e = match pools.dynamic[i] {
            AnyPrefix::V4(p) if p.len < 32 => AnyPrefix::V4(Prefix {
                addr: p.addr | (rng.next_u64() as u32 & !u32::mask(p.len)),
                len: 32,
            }),
            AnyPrefix::V6(p) if p.len < 128 => AnyPrefix::V6(Prefix {
                addr: p.addr | (rng.next_u128() & !u128::mask(p.len)),
                len: 128,
            }),
            _ => continue,
        };
        if seen.insert(e) {
            pools.exempt.push(e);
        }
    }
    pools.relays = vec![
        "192.0.2.25".parse().expect("literal"),
        "2001:db8:ff::25".parse().expect("literal"),
    ];
    pools
}

/// What to run.
#[derive(Clone, Debug)]
pub struct ClassifyArgs {
    /// Dynamic prefixes in the policy.
    pub prefixes: usize,
    /// Distinct frames held in memory.
    pub frames: usize,
    /// Frames per burst.
    pub burst: usize,
    /// Worker threads.
    pub workers: usize,
    /// Passes over all frames per worker.
    pub passes: u32,
    /// Traffic mix.
    pub profile: Profile,
    /// Seed.
    pub seed: u64,
    /// Give the policy per-prefix hit counters (as the live appliance and replay do).
    pub hit_counters: bool,
}

/// Runs the benchmark and returns its JSON result.
pub fn run(a: &ClassifyArgs) -> Result<Value, String> {
    for (name, v) in [
        ("--frames", a.frames),
        ("--passes", a.passes as usize),
        ("--burst", a.burst),
        ("--workers", a.workers),
    ] {
        if v == 0 {
            return Err(format!(
                "{name} 0: nothing would be measured; give at least 1"
            ));
        }
    }
    for (name, v) in [
        ("--v6-share", a.profile.v6_share),
        ("--smtp-share", a.profile.smtp_share),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return Err(format!("{name} {v}: a share is between 0 and 1"));
        }
    }
    let t = Instant::now();
    let pools = synthetic_pools(a.prefixes, a.profile.v6_share, a.seed);
    let spec = pools.spec();
    let built_at = Instant::now();
    let (policy, _) = Policy::build(spec, 1).map_err(|e| e.to_string())?;
    let build_s = built_at.elapsed().as_secs_f64();
    let policy = Arc::new(if a.hit_counters {
        policy.with_hit_counters(a.workers)
    } else {
        policy
    });
    let mut g = Generator::new(&pools, a.profile.clone(), a.seed ^ 0x5eed);
    let mut bursts = Vec::new();
    let mut bytes = 0usize;
    for _ in 0..a.frames.div_ceil(a.burst) {
        let mut b = Burst::new(a.burst);
        for _ in 0..a.burst {
            let f = g.frame();
            bytes += f.len();
            b.push(&f);
        }
        bursts.push(b);
    }
    let bursts = Arc::new(bursts);
    let setup_s = t.elapsed().as_secs_f64();
    let handles: Vec<_> = (0..a.workers)
        .map(|slot| {
            let (policy, bursts, passes) = (policy.clone(), bursts.clone(), a.passes);
            let burst = a.burst;
            std::thread::spawn(move || {
                let mut w = Worker::new(burst).in_slot(slot);
                let t = Instant::now();
                for _ in 0..passes {
                    for b in bursts.iter() {
                        std::hint::black_box(w.classify(&policy, b));
                    }
                }
                (t, Instant::now(), w)
            })
        })
        .collect();
    let mut hist = latency_histogram();
    let mut per_worker = Vec::new();
    let (mut frames, mut dropped) = (0u64, 0u64);
    let mut span: Option<(Instant, Instant)> = None;
    for h in handles {
        let (start, end, mut w) = h
            .join()
            .map_err(|_| "a worker thread panicked".to_string())?;
        let c = w.counters();
        per_worker.push(c.rx as f64 / (end - start).as_secs_f64() / 1e6);
        span = Some(span.map_or((start, end), |(s, e)| (s.min(start), e.max(end))));
        frames += c.rx;
        dropped += c.dropped;
        hist.add(w.latency()).map_err(|e| e.to_string())?;
    }
    // All frames over the time from the first worker's start to the last one's end, not
    // the sum of each worker's own rate (which counts a worker that ran while another
    // waited for the core as if both had run at once).
    let total_mpps = span.map_or(0.0, |(s, e)| frames as f64 / (e - s).as_secs_f64() / 1e6);
    let s = policy.sizes();
    Ok(json!({
        "prefixes": {"ipv4": s.v4, "ipv6": s.v6},
        "policy_build_s": build_s,
        "setup_s": setup_s,
        "table_bytes": s.memory_bytes,
        "frames_in_memory": bursts.len() * a.burst,
        "mean_frame_bytes": bytes as f64 / (bursts.len() * a.burst) as f64,
        "burst": a.burst,
        "hit_counters": a.hit_counters,
        "workers": a.workers,
        "frames_classified": frames,
        "dropped_share": dropped as f64 / frames.max(1) as f64,
        "mpps_total": total_mpps,
        "mpps_per_worker": per_worker,
        "ns_per_frame_per_worker": 1e3 * a.workers as f64 / total_mpps,
        "latency_ns_per_frame": {
            "p50": hist.value_at_quantile(0.5),
            "p90": hist.value_at_quantile(0.9),
            "p99": hist.value_at_quantile(0.99),
            "p999": hist.value_at_quantile(0.999),
            "max": hist.max(),
        },
    }))
}
