//! Fuzz target: any byte string through the frame parser and a policy with nested pools.
//! Invariants checked: no panic; a frame that parses keeps its verdict when a byte is
//! appended (the parser never depends on bytes past what it needs); and a burst judges the
//! frame (alone, and between two plain IPv4 frames) exactly as `classify` does one frame
//! at a time, whichever parser path (plain IPv4 or the general one) the burst takes; and
//! the same policy with its IPv4 source table built direct (DIR-24-8: 8192 more pools,
//! inside a dynamic /1 so they change no verdict) judges every frame alike; and the
//! in-place judge (`judge_indexed`) finds the same blocked frames and tally as the burst.

#![no_main]

use libfuzzer_sys::fuzz_target;
use op25b_dataplane::policy::{BurstScratch, IndexedScratch, OutboundSpec, Policy};
use op25b_dataplane::wire::build::FrameBuilder;
use std::cell::RefCell;
use std::sync::OnceLock;

fn spec() -> OutboundSpec {
    let p = |s: &str| s.parse().unwrap();
    OutboundSpec {
        ports: vec![25, 587],
        dynamic: vec![
            p("0.0.0.0/1"),
            p("10.20.30.32/28"),
            p("::/1"),
            p("2001:db8::/32"),
        ],
        exempt: vec![p("10.0.0.0/8"), p("10.20.30.0/24"), p("2001:db8:1::/48")],
        relays: vec![p("192.0.2.25"), p("2001:db8:ff::25")],
        ..OutboundSpec::default()
    }
}

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| Policy::build(spec(), 1).unwrap().0)
}

/// [`policy`] with a direct IPv4 source table: the extra pools lie in 100.64.0.0/11, inside
/// the dynamic 0.0.0.0/1 and outside every exempt prefix, so no verdict changes.
fn direct() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| {
        let mut s = spec();
        let n = op25b_dataplane::policy::DIRECT_SOURCE_PREFIXES as u32;
        s.dynamic.extend((0..n).map(|i| {
            op25b_dataplane::policy::AnyPrefix::V4(
                op25b_dataplane::lpm::Prefix::new(0x6440_0000 | i << 8, 24).unwrap(),
            )
        }));
        let p = Policy::build(s, 1).unwrap().0;
        assert!(
            p.sizes().direct_bytes > 0,
            "the fuzz policy's table is not direct"
        );
        p
    })
}

fuzz_target!(|data: &[u8]| {
    let (reason, verdict) = policy().classify(data);
    let key = op25b_dataplane::wire::parse(data);
    if key.is_ok() {
        let mut longer = data.to_vec();
        longer.push(0xa5);
        assert_eq!(policy().classify(&longer), (reason, verdict));
    }
    thread_local! {
        static SCRATCH: RefCell<(BurstScratch, Vec<op25b_dataplane::policy::Reason>)> =
            RefCell::new((BurstScratch::default(), Vec::new()));
        static INDEXED: RefCell<IndexedScratch> = RefCell::new(IndexedScratch::default());
        static PLAIN: Vec<u8> = FrameBuilder::tcp(
            "10.20.30.40".parse().unwrap(),
            "198.51.100.1".parse().unwrap(),
            1,
            25,
        )
        .build();
    }
    PLAIN.with(|plain| {
        SCRATCH.with_borrow_mut(|(scratch, reasons)| {
            let p = policy();
            let want = p.classify(plain).0;
            p.judge_burst([data].into_iter(), scratch, reasons);
            assert_eq!(reasons.as_slice(), &[reason]);
            let burst = [plain.as_slice(), data, plain.as_slice()];
            p.judge_burst(burst.into_iter(), scratch, reasons);
            assert_eq!(reasons.as_slice(), &[want, reason, want]);
            INDEXED.with_borrow_mut(|indexed| {
                p.judge_indexed(burst.len(), |i| burst[i], indexed);
                assert_eq!(indexed.blocked(), scratch.blocked());
                assert_eq!(indexed.tally(), scratch.tally());
            });
            // Starting with the fuzzed frame: a burst whose first frame is not plain is
            // judged whole.
            let first = [data, plain.as_slice()];
            p.judge_burst(first.into_iter(), scratch, reasons);
            assert_eq!(reasons.as_slice(), &[reason, want]);
            INDEXED.with_borrow_mut(|indexed| {
                p.judge_indexed(first.len(), |i| first[i], indexed);
                assert_eq!(indexed.blocked(), scratch.blocked());
                assert_eq!(indexed.tally(), scratch.tally());
            });
            let d = direct();
            assert_eq!(d.classify(data), (reason, verdict));
            d.judge_burst(burst.into_iter(), scratch, reasons);
            assert_eq!(reasons.as_slice(), &[want, reason, want]);
            INDEXED.with_borrow_mut(|indexed| {
                d.judge_indexed(burst.len(), |i| burst[i], indexed);
                assert_eq!(indexed.blocked(), scratch.blocked());
                assert_eq!(indexed.tally(), scratch.tally());
            });
        })
    });
});
