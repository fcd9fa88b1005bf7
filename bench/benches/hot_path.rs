//! Criterion micro-benchmarks of the hot path, so regressions show: frame parsing per
//! encapsulation, LPM lookups (single and batched) on a 100k-prefix table, and burst
//! judgement of 64 frames against a 100k-prefix policy.
//!
//! Run: `cargo bench -p op25b-bench --bench hot_path`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use op25b_bench::classify::synthetic_pools;
use op25b_bench::profile::{Encap, Generator, Profile};
use op25b_bench::rng::Rng;
use op25b_dataplane::lpm::{Lpm4, Prefix};
use op25b_dataplane::policy::{AnyPrefix, BurstScratch, Policy};
use op25b_dataplane::wire::{self, build::FrameBuilder};
use std::hint::black_box;

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    let base = || {
        FrameBuilder::tcp(
            "100.64.1.2".parse().unwrap(),
            "198.51.100.25".parse().unwrap(),
            40000,
            25,
        )
    };
    let base6 = || {
        FrameBuilder::tcp(
            "2001:db8:100::2".parse().unwrap(),
            "2001:db8:9::25".parse().unwrap(),
            40000,
            25,
        )
    };
    for (name, frame) in [
        ("ipv4", base().build()),
        (
            "ipv4_qinq_pppoe",
            base()
                .vlan(0x88a8, 1)
                .vlan(0x8100, 2)
                .pppoe(7, true)
                .build(),
        ),
        ("ipv6", base6().build()),
        (
            "ipv6_ext2",
            base6()
                .ipv6_ext(wire::build::Ext::HopByHop)
                .ipv6_ext(wire::build::Ext::DestOpts)
                .build(),
        ),
    ] {
        g.bench_function(name, |b| b.iter(|| wire::parse(black_box(&frame))));
    }
    g.finish();
}

fn lookup(c: &mut Criterion) {
    let pools = synthetic_pools(100_000, 0.0, 1);
    let entries: Vec<(Prefix<u32>, u32)> = pools
        .dynamic
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            if let AnyPrefix::V4(q) = p {
                Some((*q, i as u32))
            } else {
                None
            }
        })
        .collect();
    let table = Lpm4::build(&entries).unwrap();
    let mut rng = Rng::new(3);
    let keys: Vec<u32> = (0..4096).map(|_| rng.next_u64() as u32).collect();
    let mut out = vec![0u32; 64];
    let mut g = c.benchmark_group("lpm_v4_100k");
    g.throughput(Throughput::Elements(keys.len() as u64));
    g.bench_function("single", |b| {
        b.iter(|| {
            keys.iter()
                .fold(0u32, |a, &k| a ^ table.lookup_raw(black_box(k)))
        })
    });
    g.bench_function("batch64", |b| {
        b.iter(|| {
            for chunk in keys.chunks(64) {
                table.lookup_batch(black_box(chunk), &mut out);
            }
            out[0]
        })
    });
    g.bench_function("build", |b| {
        b.iter_batched(
            || entries.clone(),
            |e| Lpm4::build(&e).unwrap(),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn judge(c: &mut Criterion) {
    let pools = synthetic_pools(100_000, 0.3, 2);
    let spec = pools.spec();
    let (policy, _) = Policy::build(spec, 1).unwrap();
    let mut g = c.benchmark_group("judge_burst64_100k");
    g.throughput(Throughput::Elements(64));
    for (name, encaps) in [
        ("plain", vec![Encap::Plain]),
        ("mixed", Encap::ALL.to_vec()),
    ] {
        let mut gen = Generator::new(
            &pools,
            Profile {
                encaps,
                ..Profile::default()
            },
            5,
        );
        let frames: Vec<Vec<u8>> = (0..64).map(|_| gen.frame()).collect();
        let mut scratch = BurstScratch::default();
        let mut reasons = Vec::with_capacity(64);
        g.bench_function(name, |b| {
            b.iter(|| {
                policy.judge_burst(
                    frames.iter().map(|f| f.as_slice()),
                    &mut scratch,
                    &mut reasons,
                );
                reasons.len()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, parse, lookup, judge);
criterion_main!(benches);
