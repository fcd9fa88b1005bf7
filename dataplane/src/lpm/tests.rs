//! Property tests of every LPM table against the naive reference, plus edge cases.

use super::naive::NaiveLpm;
use super::*;
use crate::testkit::xorshift;
use proptest::prelude::*;

fn p4(s: &str) -> Prefix<u32> {
    let (a, l) = s.split_once('/').unwrap();
    Prefix::new(
        u32::from(a.parse::<std::net::Ipv4Addr>().unwrap()),
        l.parse().unwrap(),
    )
    .unwrap()
}
fn ip4(s: &str) -> u32 {
    u32::from(s.parse::<std::net::Ipv4Addr>().unwrap())
}

#[test]
fn nested_exempt_and_dynamic() {
    let t = Lpm4::build(&[
        (p4("10.0.0.0/8"), 1),
        (p4("10.20.0.0/16"), 2),
        (p4("10.20.30.40/32"), 3),
        (p4("10.20.30.0/24"), 4),
        (p4("10.20.30.32/28"), 5),
    ])
    .unwrap();
    assert_eq!(t.lookup(ip4("9.255.255.255")), None);
    assert_eq!(t.lookup(ip4("10.0.0.0")), Some(1));
    assert_eq!(t.lookup(ip4("10.20.0.1")), Some(2));
    assert_eq!(t.lookup(ip4("10.20.30.1")), Some(4));
    assert_eq!(t.lookup(ip4("10.20.30.39")), Some(5));
    assert_eq!(t.lookup(ip4("10.20.30.40")), Some(3));
    assert_eq!(t.lookup(ip4("10.20.30.41")), Some(5));
    assert_eq!(t.lookup(ip4("10.20.30.48")), Some(4));
    assert_eq!(t.lookup(ip4("10.20.31.0")), Some(2));
    assert_eq!(t.lookup(ip4("10.21.0.0")), Some(1));
    assert_eq!(t.lookup(ip4("11.0.0.0")), None);
    assert_eq!(t.prefix_count(), 5);
}

#[test]
fn default_route_and_host_routes_at_the_edges() {
    let t = Lpm4::build(&[
        (p4("0.0.0.0/0"), 7),
        (p4("0.0.0.0/32"), 8),
        (p4("255.255.255.255/32"), 9),
    ])
    .unwrap();
    assert_eq!(t.lookup(0), Some(8));
    assert_eq!(t.lookup(1), Some(7));
    assert_eq!(t.lookup(u32::MAX - 1), Some(7));
    assert_eq!(t.lookup(u32::MAX), Some(9));
    let t6 = Lpm6::build(&[
        (Prefix::new(0u128, 0).unwrap(), 1),
        (Prefix::new(u128::MAX, 128).unwrap(), 2),
    ])
    .unwrap();
    assert_eq!(t6.lookup(0), Some(1));
    assert_eq!(t6.lookup(u128::MAX), Some(2));
    assert_eq!(Lpm6::default().lookup(5), None);
}

#[test]
fn duplicates_and_conflicts() {
    let same = Lpm4::build(&[(p4("10.0.0.0/8"), 1), (p4("10.0.0.0/8"), 1)]).unwrap();
    assert_eq!(same.prefix_count(), 1);
    assert_eq!(
        Lpm4::build(&[
            (p4("10.0.0.0/8"), 1),
            (p4("1.0.0.0/8"), 3),
            (p4("10.0.0.0/8"), 2)
        ])
        .unwrap_err(),
        BuildError::Conflict {
            first: 0,
            second: 2
        }
    );
    assert_eq!(
        Lpm4::build(&[(p4("10.0.0.0/8"), MAX_VALUE)]).unwrap_err(),
        BuildError::ReservedValue
    );
}

#[test]
fn prefix_validation() {
    assert_eq!(
        Prefix::new(ip4("10.1.0.0"), 8),
        Err(PrefixError::HostBitsSet)
    );
    assert_eq!(
        Prefix::new(0u32, 33),
        Err(PrefixError::LengthTooLong { len: 33, max: 32 })
    );
    assert!(Prefix::new(1u128 << 127, 1).is_ok());
    assert_eq!(p4("192.0.2.0/24").to_string(), "192.0.2.0/24");
    assert_eq!(
        Prefix::new(0x2001_0db8u128 << 96, 32).unwrap().to_string(),
        "2001:db8::/32"
    );
}

#[test]
fn adjacent_equal_values_merge() {
    let t = Lpm4::build(&[(p4("10.0.0.0/9"), 1), (p4("10.128.0.0/9"), 1)]).unwrap();
    assert_eq!(t.range_count(), 3);
    assert_eq!(
        ranges::Ranges::build(&[(p4("10.0.0.0/9"), 1), (p4("10.128.0.0/9"), 1)])
            .unwrap()
            .range_count(),
        3
    );
    assert_eq!(t.lookup(ip4("10.200.0.0")), Some(1));
}

/// Prefixes drawn from a few "clusters" so that nesting and adjacency are common.
fn prefixes<K: Bits>(
    bits: impl Strategy<Value = K> + Clone,
    max_len: u8,
) -> impl Strategy<Value = Vec<(Prefix<K>, u32)>> {
    proptest::collection::vec((bits, 0..=max_len, 0u32..6), 0..60).prop_map(move |raw| {
        raw.into_iter()
            .map(|(a, len, v)| {
                let addr = a.and(K::mask(len));
                (Prefix { addr, len }, v)
            })
            .collect()
    })
}

fn dedupe<K: Bits>(mut e: Vec<(Prefix<K>, u32)>) -> Vec<(Prefix<K>, u32)> {
    // Conflicting duplicates are an error by contract; keep the first of each prefix.
    let mut seen = std::collections::HashSet::new();
    e.retain(|(p, _)| seen.insert(*p));
    e
}

fn probes<K: Bits>(entries: &[(Prefix<K>, u32)]) -> Vec<K> {
    let mut keys = vec![K::ZERO];
    for (p, _) in entries {
        keys.push(p.addr);
        keys.push(p.last());
        if let Some(n) = p.last().succ() {
            keys.push(n);
        }
    }
    keys
}

/// Every key of `keys` looked up one by one and in one batch against the flat form.
fn agree_with_flat<K: Bits + std::fmt::LowerHex>(
    t: &LpmTable<K>,
    f: &ranges::Ranges<K>,
    keys: &[K],
    what: &str,
) {
    let mut out = vec![0; keys.len()];
    t.lookup_batch(keys, &mut out);
    for (k, o) in keys.iter().zip(&out) {
        let want = f.lookup_raw(*k);
        assert_eq!(*o, want, "{what}: batch key {k:#x}");
        assert_eq!(t.lookup_raw(*k), want, "{what}: key {k:#x}");
    }
}

/// Every key (the probes of `entries` plus `extra`) looked up one by one and in one batch
/// against the naive reference.
fn agree_with_naive<K: Bits + std::fmt::LowerHex>(
    t: &LpmTable<K>,
    entries: &[(Prefix<K>, u32)],
    extra: Vec<K>,
) -> Result<(), TestCaseError> {
    let r = NaiveLpm::new(entries);
    let mut keys = probes(entries);
    keys.extend(extra);
    let mut batch = vec![0; keys.len()];
    t.lookup_batch(&keys, &mut batch);
    for (k, b) in keys.iter().zip(batch) {
        prop_assert_eq!(t.lookup(*k), r.lookup(*k), "key {:#x}", k);
        prop_assert_eq!(b, r.lookup(*k).unwrap_or(NO_MATCH));
    }
    Ok(())
}

/// IPv4 addresses concentrated in 10.0.0.0/14 (dense nesting) with some anywhere.
fn v4_bits() -> impl Strategy<Value = u32> + Clone {
    prop_oneof![
        0x0a00_0000u32..0x0a04_0000,
        any::<u32>(),
        Just(0u32),
        Just(u32::MAX)
    ]
}
fn v6_bits() -> impl Strategy<Value = u128> + Clone {
    prop_oneof![
        (0u128..1 << 20).prop_map(|x| (0x2001_0db8u128 << 96) | (x << 80)),
        any::<u128>(),
        Just(0u128),
        Just(u128::MAX)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn v4_matches_reference(entries in prefixes(v4_bits(), 32), extra in proptest::collection::vec(v4_bits(), 50)) {
        let entries = dedupe(entries);
        let t = Lpm4::build(&entries).unwrap();
        let mut keys = probes(&entries);
        keys.extend(extra.iter().copied());
        agree_with_naive(&t, &entries, extra)?;
        let r = NaiveLpm::new(&entries);
        let flat = ranges::Ranges::build(&entries).unwrap();
        prop_assert_eq!(flat.starts[0], 0);
        for w in flat.starts.windows(2) {
            prop_assert!(w[0] < w[1]);
        }
        for w in flat.values.windows(2) {
            prop_assert!(w[0] != w[1]);
        }
        for k in &keys {
            prop_assert_eq!(flat.lookup(*k), r.lookup(*k));
        }
    }

    #[test]
    fn v6_matches_reference(entries in prefixes(v6_bits(), 128), extra in proptest::collection::vec(v6_bits(), 50)) {
        let entries = dedupe(entries);
        let t = Lpm6::build(&entries).unwrap();
        agree_with_naive(&t, &entries, extra)?;
    }
}

/// Dense sets deep enough to build child nodes several levels down, checked against the
/// flat form (itself checked against the naive reference above).
#[test]
fn dense_sets_build_nodes_and_agree_with_flat_ranges() {
    let mut next = xorshift(0x1234_5678_9abc_def0u64);
    for round in 0..4 {
        let mut e4 = Vec::new();
        let mut e6 = Vec::new();
        for i in 0..3000u32 {
            let len = 16 + (next() % 17) as u8;
            let a = 0x0a0a_0000 | (next() as u32 & 0xffff);
            e4.push((
                Prefix {
                    addr: a & u32::mask(len),
                    len,
                },
                i % 7,
            ));
            let len6 = 48 + (next() % 81) as u8;
            let a6 = (0x2001_0db8_0000u128 << 80)
                | (u128::from(next()) << 16)
                | u128::from(next() as u16);
            e6.push((
                Prefix {
                    addr: a6 & u128::mask(len6),
                    len: len6,
                },
                i % 5,
            ));
        }
        // Far-away prefixes, so the root spans the whole space (no common leading bits to
        // skip) and the dense /16 needs child nodes.
        e4.push((p4("1.0.0.0/8"), 8));
        e4.push((p4("200.0.0.0/8"), 9));
        e6.push((Prefix::new(1u128 << 120, 8).unwrap(), 6));
        e6.push((Prefix::new(0xfcu128 << 120, 8).unwrap(), 7));
        let e4 = dedupe(e4);
        let e6 = dedupe(e6);
        let (t4, f4) = (
            Lpm4::build(&e4).unwrap(),
            ranges::Ranges::build(&e4).unwrap(),
        );
        let (t6, f6) = (
            Lpm6::build(&e6).unwrap(),
            ranges::Ranges::build(&e6).unwrap(),
        );
        assert!(
            t4.entries.len() > 1 << t4.root_bits,
            "round {round}: no child node built"
        );
        assert!(
            t6.entries.len() > 1 << t6.root_bits,
            "round {round}: no child node built"
        );
        let mut keys4 = probes(&e4);
        let mut keys6 = probes(&e6);
        for _ in 0..20_000 {
            keys4.push(0x0a0a_0000 | (next() as u32 & 0xffff));
            keys4.push(next() as u32);
            keys6.push(
                (0x2001_0db8_0000u128 << 80)
                    | (u128::from(next()) << 16)
                    | u128::from(next() as u16),
            );
        }
        keys4.push(u32::MAX);
        keys6.push(u128::MAX);
        agree_with_flat(&t4, &f4, &keys4, "v4");
        agree_with_flat(&t6, &f6, &keys6, "v6");
    }
}

/// Tables large enough for leaves at the root, from the narrowest root that has them
/// (offsets of 15 bits, the widest a leaf lane holds) to the widest root; every range
/// boundary and its neighbours looked up one by one and in batches against the flat form.
#[test]
fn root_leaves_agree_with_flat_ranges() {
    let mut next = xorshift(0x0bad_cafe_f00d_d00du64);
    let mut classes = [false; 3];
    for (n, want_root) in [(2_500usize, 17u8), (9_000, 19), (60_000, 20)] {
        let mut e = Vec::new();
        for i in 0..n {
            let len = [16u8, 20, 24, 25, 27, 28, 30, 32][(next() % 8) as usize];
            e.push((
                Prefix {
                    addr: next() as u32 & u32::mask(len),
                    len,
                },
                (i % 1000) as u32,
            ));
        }
        // Boundaries at the last offset of a 15-bit chunk.
        e.push((p4("77.0.127.255/32"), 1001));
        e.push((p4("77.0.127.254/31"), 1002));
        let e = dedupe(e);
        let f = ranges::Ranges::build(&e).unwrap();
        let t = Lpm4::compile_layout(&f, Layout::Root);
        assert_eq!(t.root_bits, want_root, "{n} prefixes");
        let root = &t.entries[..1 << t.root_bits];
        let leaves = root.iter().filter(|&&x| x >> 30 == KIND_LEAF).count();
        assert!(leaves > n / 4, "{n} prefixes: only {leaves} root leaves");
        for &x in root.iter().filter(|&&x| x >> 30 == KIND_LEAF) {
            classes[((x >> LEAF_CLASS_SHIFT) & 3) as usize] = true;
        }
        let mut keys = Vec::new();
        for &s in f.starts.iter() {
            keys.extend([s.wrapping_sub(1), s, s.wrapping_add(1)]);
        }
        for _ in 0..50_000 {
            keys.push(next() as u32);
        }
        keys.extend([
            ip4("77.0.127.253"),
            ip4("77.0.127.254"),
            ip4("77.0.127.255"),
            u32::MAX,
        ]);
        agree_with_flat(&t, &f, &keys, &format!("{n} prefixes"));
    }
    assert_eq!(classes, [true; 3], "leaf size classes built at the root");
}

#[test]
fn leaf_lanes_count_bounds_at_or_below_the_offset() {
    // Class 0 at unit 1: bounds 0x10, 0x7fff; class 1 at units 2-3: bounds 1, 0x100, 0x7fff;
    // class 2 at units 4-7: bounds 1..=8.
    let units = [
        Unit::EMPTY,
        Unit([0x7fff_0010, 10, 11, 12]),
        Unit([0x0100_0001, 0x8000_7fff, 20, 21]),
        Unit([22, 23, NO_MATCH, NO_MATCH]),
        Unit([0x0002_0001, 0x0004_0003, 0x0006_0005, 0x0008_0007]),
        Unit([30, 31, 32, 33]),
        Unit([34, 35, 36, 37]),
        Unit([38, NO_MATCH, NO_MATCH, NO_MATCH]),
    ];
    let c0 = KIND_LEAF << 30 | 1;
    let c1 = KIND_LEAF << 30 | 1 << LEAF_CLASS_SHIFT | 2;
    let c2 = KIND_LEAF << 30 | 2 << LEAF_CLASS_SHIFT | 4;
    for (off, want) in [(0, 10), (0xf, 10), (0x10, 11), (0x7ffe, 11), (0x7fff, 12)] {
        assert_eq!(leaf_find(&units, c0, off), want, "class 0, offset {off:#x}");
    }
    for (off, want) in [(0, 20), (1, 21), (0xff, 21), (0x100, 22), (0x7fff, 23)] {
        assert_eq!(leaf_find(&units, c1, off), want, "class 1, offset {off:#x}");
    }
    for off in 0..12u64 {
        assert_eq!(
            leaf_find(&units, c2, off),
            30 + off.min(8) as u32,
            "class 2, offset {off}"
        );
    }
    assert_eq!(leaf_find(&units, LEAF_EMPTY_ENTRY, 0x7fff), NO_MATCH);
}

/// The line layout: chunk `c` of 2^14 addresses in 10.0.0.0/8 cut into exactly `c` ranges
/// (adjacent host routes), so lines with and without extension lines are built at every
/// size, with chunks 61.. cut at random offsets and chunk 120 into 401 ranges (a general
/// entry for its host routes); every boundary and its neighbours checked against the flat
/// form.
#[test]
fn line_layout_agrees_with_flat_ranges() {
    let mut next = xorshift(0x5eed_1e55_c0ff_ee00u64);
    let mut e = vec![(p4("10.0.0.0/8"), 1u32), (p4("0.0.0.0/0"), 0)];
    for c in 2..=60u32 {
        // Host routes at offsets 1..=c-2: boundaries 1..=c-1, so c ranges.
        let base = 0x0a00_0000 | c << 14;
        for j in 1..=c - 2 {
            e.push((Prefix::new(base | j, 32).unwrap(), 100 + c * 64 + j));
        }
    }
    for c in 61..120u32 {
        let base = 0x0a00_0000 | c << 14;
        for j in 0..c - 60 {
            let off = (next() as u32) & 0x3fff;
            e.push((Prefix::new(base | off, 32).unwrap(), 10_000 + c * 64 + j));
        }
    }
    for j in 0..200u32 {
        e.push((
            Prefix::new(0x0a00_0000 | 120 << 14 | (j * 2), 32).unwrap(),
            20_000 + j,
        ));
    }
    // Boundaries at both edges of chunks 0 and 1, and a range running across them.
    e.push((p4("10.0.63.255/32"), 9000));
    e.push((p4("10.0.64.0/32"), 9001));
    e.push((p4("10.0.60.0/22"), 9002));
    e.push((p4("255.255.255.255/32"), 9003));
    let e = dedupe(e);
    let f = ranges::Ranges::build(&e).unwrap();
    let t = Lpm4::compile_layout(&f, Layout::Lines);
    assert_eq!(t.layout(), Layout::Lines);
    let per_chunk = |c: u32| {
        let lo = 0x0a00_0000 | c << 14;
        f.starts
            .iter()
            .filter(|&&s| s > lo && s < lo + (1 << 14))
            .count()
            + 1
    };
    let sizes: Vec<usize> = (0..60).map(per_chunk).collect();
    assert!(
        sizes.contains(&LINE_RANGES),
        "a chunk of exactly 13 ranges: {sizes:?}"
    );
    assert!(
        sizes.contains(&(LINE_RANGES + 1)),
        "a chunk of exactly 14 ranges: {sizes:?}"
    );
    assert!(per_chunk(120) > DEEP_MIN, "a chunk with a general entry");
    let points = |l: &Line| (0..LINE_RANGES).any(|n| packed_code(&l.0, n) >= LINE_EXT);
    let extended = t.lines.iter().filter(|l| points(l)).count();
    // Chunks 14..=60 (47 of them) and most of 61..=120.
    assert!(extended >= 47 + 45, "{extended} lines with extension lines");
    assert!(
        !t.ext.iter().any(points),
        "extension lines hold values only"
    );
    let deep = |l: &Line| (0..LINE_RANGES).any(|n| packed_code(&l.0, n) == LINE_DEEP);
    assert!(t
        .lines
        .iter()
        .chain(t.ext.iter())
        .all(|l| deep(l) || l.0[63] == 0));
    assert_eq!(t.extension_counts(), (extended, t.ext.len(), 1));
    // Chunk 13's 13 ranges fit its line; chunk 120's host routes sit behind its general
    // entry (a node of 64-address children, each a node of single ranges), its wide range
    // after them does not.
    assert_eq!(t.extension_reads(0x0a00_0000 | 13 << 14 | 5), 0);
    let reads: Vec<u32> = (0..0x4000)
        .map(|o| t.extension_reads(0x0a00_0000 | 120 << 14 | o))
        .collect();
    assert_eq!(reads.iter().max(), Some(&2), "three reads at most");
    assert_eq!(reads[0x3000], 0, "the wide range after the host routes");
    let mut keys = vec![0, u32::MAX];
    for &s in f.starts.iter() {
        keys.extend([s.wrapping_sub(1), s, s.wrapping_add(1)]);
    }
    for c in 0..121u32 {
        let lo = 0x0a00_0000 | c << 14;
        keys.extend([lo, lo + 1, lo + 0x3ffe, lo + 0x3fff]);
        keys.extend((0..200).map(|_| lo | (next() as u32 & 0x3fff)));
    }
    keys.extend((0..20_000).map(|_| next() as u32));
    agree_with_flat(&t, &f, &keys, "lines");
    // The same table in the root layout answers the same.
    let r = Lpm4::compile_layout(&f, Layout::Root);
    assert_eq!(r.layout(), Layout::Root);
    agree_with_flat(&r, &f, &keys, "root");
    assert_eq!(r.extension_counts(), (0, 0, 0));
    assert_eq!(r.extension_reads(0x0a00_0000 | 120 << 14 | 7), 0);
}

/// `Auto` picks lines for IPv4 tables of many ranges and the root otherwise; lines are
/// never built for IPv6 or for values a line cannot hold.
#[test]
fn layout_choice() {
    let mut next = xorshift(0x1357_9bdf_2468_ace0u64);
    let big: Vec<(Prefix<u32>, u32)> = dedupe(
        (0..LINES_MIN_RANGES as u32)
            .map(|i| (Prefix::new(next() as u32, 32).unwrap(), i))
            .collect(),
    );
    let f = ranges::Ranges::build(&big).unwrap();
    assert!(f.range_count() >= LINES_MIN_RANGES);
    let t = Lpm4::compile(&f);
    assert_eq!(t.layout(), Layout::Lines);
    let keys: Vec<u32> = big
        .iter()
        .take(5_000)
        .flat_map(|(p, _)| [p.addr.wrapping_sub(1), p.addr, p.addr.wrapping_add(1)])
        .chain((0..5_000).map(|_| next() as u32))
        .collect();
    agree_with_flat(&t, &f, &keys, "auto lines");
    let small = Lpm4::build(&big[..1000]).unwrap();
    assert_eq!(small.layout(), Layout::Root);
    // A value a line cannot hold: the root layout is built even when asked for lines.
    let wide = [(p4("10.0.0.0/8"), LINE_VALUES), (p4("10.1.0.0/16"), 3)];
    let f = ranges::Ranges::build(&wide).unwrap();
    let t = Lpm4::compile_layout(&f, Layout::Lines);
    assert_eq!(t.layout(), Layout::Root);
    assert_eq!(t.lookup(ip4("10.2.0.0")), Some(LINE_VALUES));
    let six = ranges::Ranges::build(&[(Prefix::new(1u128 << 127, 1).unwrap(), 1)]).unwrap();
    assert_eq!(
        Lpm6::compile_layout(&six, Layout::Lines).layout(),
        Layout::Root
    );
}

#[test]
fn line_code_counts_bounds_at_or_below_the_offset() {
    let codes: Vec<u32> = (0..13).map(|i| 0x10_0000 + i).collect();
    let offsets = [
        0u64, 1, 2, 3, 0xff, 0x100, 0x101, 0x102, 0x1fff, 0x2000, 0x2fff, 0x3000, 0x3ffc, 0x3ffd,
        0x3ffe, 0x3fff,
    ];
    const ALL: [u64; 12] = [
        1, 2, 0x100, 0x101, 0x1000, 0x2000, 0x2001, 0x3000, 0x3ffc, 0x3ffd, 0x3ffe, 0x3fff,
    ];
    // Every lane used, and fewer lanes (the rest pads): a pad never counts.
    for used in [12usize, 11, 5, 1, 0] {
        let bounds = &ALL[..used];
        let l = pack(bounds.iter().copied(), &codes[..=bounds.len()]);
        assert_eq!(l.0[63], 0, "byte 63 stays zero");
        for off in offsets {
            let want = bounds.iter().filter(|&&b| b <= off).count();
            let what = format!("{} bounds, offset {off:#x}", bounds.len());
            assert_eq!(line_code(&l.0, off), codes[want], "{what}");
        }
    }
    // No match, the largest line value and the largest extension code read back as such.
    let top = LINE_EXT + (MAX_EXT_LINES - 1) as u32;
    assert_eq!(top, LINE_DEEP - 1);
    let codes = [
        value_code(NO_MATCH),
        8,
        value_code(LINE_VALUES - 1),
        top,
        LINE_CODE,
    ];
    let l = pack([5u64, 9, 0x3ffe, 0x3fff].into_iter(), &codes);
    for (off, want) in [
        (4, 0),
        (5, 8),
        (8, 8),
        (9, LINE_EXT - 1),
        (0x3ffd, LINE_EXT - 1),
        (0x3ffe, LINE_DEEP - 1),
        (0x3fff, LINE_CODE),
    ] {
        assert_eq!(line_code(&l.0, off), want, "offset {off}");
    }
    assert_eq!(code_value(line_code(&l.0, 4)), NO_MATCH);
    assert_eq!(code_value(line_code(&l.0, 9)), LINE_VALUES - 1);
}

/// A chunk of a few wide ranges and many host routes: the line keeps the wide ranges and
/// groups the host routes, so only the addresses of the grouped ranges need a second read;
/// groups are consecutive, cover every range once and fit one extension line each.
#[test]
fn grouping_keeps_the_widest_ranges_in_the_line() {
    // Ranges at 0, 0x1000, 0x2000, 40 short ones from 0x2010, then 0x2100 and 0x3000.
    let mut starts = vec![0u64, 0x1000, 0x2000];
    starts.extend((0..40).map(|i| 0x2010 + 4 * i));
    starts.push(0x2100);
    starts.push(0x3000);
    let end = 1u64 << 14;
    let groups = group_entries(&starts, end, LINE_RANGES, LINE_RANGES);
    let grouped = grouped_width(&starts, end, &groups, LINE_RANGES, LINE_RANGES);
    // The 40 short ranges span 0x2010..0x20b0, the range after them 0x20b0..0x2100.
    assert!(grouped <= 0x100, "{grouped} addresses grouped: {groups:?}");
    for wide in [0usize, 1, starts.len() - 2, starts.len() - 1] {
        assert!(
            groups.contains(&(wide, wide + 1)),
            "range {wide} single: {groups:?}"
        );
    }
    // Built into a line: every offset outside the short ranges is one read.
    let values: Vec<u32> = (0..starts.len() as u32).collect();
    let mut ext = Vec::new();
    let l = build_line(&starts, &values, end, &mut ext, None);
    assert!(!ext.is_empty());
    let second = (0..end)
        .filter(|&off| line_code(&l.0, off) >= LINE_EXT)
        .count();
    assert_eq!(second as u64, grouped, "offsets that need a second read");
    for off in 0..end {
        let want = starts.iter().filter(|&&s| s <= off).count() - 1;
        let mut c = line_code(&l.0, off);
        while c >= LINE_EXT {
            c = line_code(&ext[(c - LINE_EXT) as usize].0, off);
        }
        assert_eq!(code_value(c), values[want], "offset {off:#x}");
    }
}

/// The grouped width of a split, after checking it is one: at most `slots` entries of at
/// most `max` consecutive ranges, covering every range once.
fn grouped_width(
    starts: &[u64],
    end: u64,
    groups: &[(usize, usize)],
    max: usize,
    slots: usize,
) -> u64 {
    let m = starts.len();
    assert!(!groups.is_empty() && groups.len() <= slots, "{groups:?}");
    assert_eq!((groups[0].0, groups[groups.len() - 1].1), (0, m));
    assert!(groups.windows(2).all(|w| w[0].1 == w[1].0), "{groups:?}");
    assert!(groups.iter().all(|&(i, j)| j > i && j - i <= max));
    let at = |i: usize| starts.get(i).copied().unwrap_or(end);
    groups
        .iter()
        .filter(|&&(i, j)| j - i > 1)
        .map(|&(i, j)| at(j) - at(i))
        .sum()
}

/// `group_entries` (linear, with a monotonic queue) finds splits as good as a plain
/// dynamic program that tries every group length, on stretches of 14 to 400 ranges with
/// widths from one address to thousands, with groups of at most 13 ranges (up to 169) and
/// of any size.
#[test]
fn grouping_is_optimal() {
    let mut next = xorshift(0x0dd_ba11_cafe_f00du64);
    for round in 0..300 {
        let m = 14 + (next() % if round % 3 == 0 { 390 } else { 60 }) as usize;
        let mut starts = vec![0u64];
        while starts.len() < m {
            let w = match next() % 4 {
                0 => 1,
                1 => 1 + next() % 8,
                2 => 1 + next() % 256,
                _ => 1 + next() % 4096,
            };
            starts.push(starts[starts.len() - 1] + w);
        }
        let end = starts[m - 1] + 1 + next() % 4096;
        // As for a chunk's own line or an extension line, and as for a line with a
        // general entry.
        for (max, slots) in [(LINE_RANGES, LINE_RANGES), (m, LINE_RANGES - 1)] {
            if max * slots < m {
                continue;
            }
            let groups = group_entries(&starts, end, max, slots);
            let got = grouped_width(&starts, end, &groups, max, slots);
            // Reference: best[j][e] over every length of the last entry.
            let at = |i: usize| starts.get(i).copied().unwrap_or(end);
            let mut best = vec![[u64::MAX; LINE_RANGES + 1]; m + 1];
            best[0][0] = 0;
            for j in 1..=m {
                for e in 1..=slots {
                    for k in 1..=max.min(j) {
                        let prev = best[j - k][e - 1];
                        if prev != u64::MAX {
                            let c = prev + if k == 1 { 0 } else { at(j) - at(j - k) };
                            best[j][e] = best[j][e].min(c);
                        }
                    }
                }
            }
            let want = best[m].iter().min().copied().unwrap();
            assert_eq!(got, want, "{m} ranges, max {max}: {starts:?} end {end}");
        }
    }
}

/// An IPv4 table of `entries` built in `layout` (which it must keep) agrees with the naive
/// reference on every entry's edges and on `extra`.
fn layout_agrees_with_naive(
    entries: Vec<(Prefix<u32>, u32)>,
    extra: Vec<u32>,
    layout: Layout,
) -> Result<(), TestCaseError> {
    let entries = dedupe(entries);
    let t = Lpm4::compile_layout(&ranges::Ranges::build(&entries).unwrap(), layout);
    prop_assert_eq!(t.layout(), layout);
    agree_with_naive(&t, &entries, extra)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// The direct layout against the naive reference (fewer cases: each builds 64 MiB).
    #[test]
    fn v4_direct_matches_reference(entries in prefixes(v4_bits(), 32), extra in proptest::collection::vec(v4_bits(), 50)) {
        layout_agrees_with_naive(entries, extra, Layout::Direct)?;
    }

    /// The line layout against the naive reference (fewer cases: each builds 16 MiB).
    #[test]
    fn v4_lines_match_reference(entries in prefixes(v4_bits(), 32), extra in proptest::collection::vec(v4_bits(), 50)) {
        layout_agrees_with_naive(entries, extra, Layout::Lines)?;
    }

    /// Many prefixes inside one chunk of 2^14 addresses (one /18), so its line groups
    /// ranges into extension lines, and past 169 ranges points to a general entry.
    #[test]
    fn v4_dense_chunk_lines_match_reference(
        raw in proptest::collection::vec((0u32..1 << 14, 18u8..=32, 0u32..1000), 1..400),
        extra in proptest::collection::vec(0u32..1 << 14, 200),
    ) {
        let base = 0x0a40_0000u32;
        let entries = dedupe(
            raw.into_iter()
                .map(|(off, len, v)| (Prefix::new((base | off) & u32::mask(len), len).unwrap(), v))
                .collect(),
        );
        let t = Lpm4::compile_layout(&ranges::Ranges::build(&entries).unwrap(), Layout::Lines);
        prop_assert_eq!(t.layout(), Layout::Lines);
        agree_with_naive(&t, &entries, extra.into_iter().map(|o| base | o).collect())?;
    }
}

/// The direct layout at its edges: the first and last /24, a /24 cut by a host route at
/// either end and in the middle, nested prefixes inside one /24, a /0 under it all; a
/// table cut inside more /24s than it may hold is built as Auto would; IPv6 is never
/// direct, nor is anything Auto builds.
#[test]
fn direct_layout_edges_and_choice() {
    let e = dedupe(vec![
        (p4("0.0.0.0/0"), 1),
        (p4("0.0.0.0/32"), 2),
        (p4("255.255.255.255/32"), 3),
        (p4("10.1.2.0/24"), 4),
        (p4("10.1.2.128/25"), 5),
        (p4("10.1.2.200/30"), 6),
        (p4("10.1.2.255/32"), 7),
        (p4("10.1.3.0/32"), 8),
        (p4("192.0.2.0/23"), 9),
    ]);
    let f = ranges::Ranges::build(&e).unwrap();
    let t = Lpm4::compile_layout(&f, Layout::Direct);
    assert_eq!(t.layout(), Layout::Direct);
    assert_eq!(
        t.memory_bytes(),
        (1 << 26) + 5 * 1024,
        "64 MiB, dummy + 4 cut /24s"
    );
    let mut keys: Vec<u32> = vec![0, 1, 255, 256, u32::MAX, u32::MAX - 1, 0xffff_ff00];
    for p in [
        "10.1.2.0",
        "192.0.2.0",
        "192.0.3.255",
        "192.0.4.0",
        "10.1.4.0",
    ] {
        let k = ip4(p);
        keys.extend([k.wrapping_sub(1), k, k + 1]);
    }
    keys.extend((0..256).map(|j| ip4("10.1.2.0") + j));
    keys.extend((0..256).map(|j| ip4("10.1.3.0") + j));
    agree_with_flat(&t, &f, &keys, "direct edges");
    assert_eq!(t.lookup(ip4("10.1.2.201")), Some(6));
    assert_eq!(t.lookup(ip4("10.1.2.255")), Some(7));
    assert_eq!(t.lookup(ip4("10.1.3.1")), Some(1));
    assert_eq!(t.clone().lookup(u32::MAX), Some(3));
    // Cut inside more /24s than it may hold: built as Auto would.
    let many: Vec<(Prefix<u32>, u32)> = (0..DIRECT_MAX_BLOCKS as u32)
        .map(|i| (Prefix::new(0x0a00_0001 | i << 8, 32).unwrap(), i))
        .collect();
    let f = ranges::Ranges::build(&many).unwrap();
    assert_eq!(
        Lpm4::compile_layout(&f, Layout::Direct).layout(),
        Layout::Root
    );
    // One /24 fewer fits (with the dummy block 0, DIRECT_MAX_BLOCKS blocks).
    let f = ranges::Ranges::build(&many[1..]).unwrap();
    let t = Lpm4::compile_layout(&f, Layout::Direct);
    assert_eq!(t.layout(), Layout::Direct);
    assert_eq!(t.memory_bytes(), (1 << 26) + DIRECT_MAX_BLOCKS * 1024);
    assert_eq!(t.extension_reads(0x0a00_0101), 1);
    assert_eq!(t.extension_reads(0x0a00_0001), 0);
    // A /18 whose /24s are cut (63 of its 64): warming it reads at most `cap` lines of
    // each kind.
    let first = 0x0a00_0000u32;
    assert_eq!(t.warm_block(first, first + (1 << 14) - 1, 8), 4 + 8);
    // Auto never builds it.
    assert_eq!(Lpm4::compile(&f).layout(), Layout::Root);
    let six = ranges::Ranges::build(&[(Prefix::new(1u128 << 127, 1).unwrap(), 1)]).unwrap();
    assert_eq!(
        Lpm6::compile_layout(&six, Layout::Direct).layout(),
        Layout::Root
    );
}

/// Prefixes sharing leading bits (IPv6 pools under one /32, IPv4 under one /16, a single
/// host route): the root skips those bits and covers only their block; keys below and
/// above the block take the first and the last range's value.
#[test]
fn root_skips_the_bits_every_boundary_shares() {
    let mut next = xorshift(0x2001_0db8_0000_0001u64);
    let base6 = 0x2001_0db8u128 << 96;
    let mut e6 = vec![(Prefix::new(base6, 32).unwrap(), 1u32)];
    for i in 0..5_000u32 {
        let len = [40u8, 48, 56, 60, 64, 128][(next() % 6) as usize];
        let a = base6 | (u128::from(next()) << 32 | u128::from(next() as u32));
        e6.push((Prefix::new(a & u128::mask(len), len).unwrap(), 2 + i));
    }
    let e6 = dedupe(e6);
    let (t6, f6) = (
        Lpm6::build(&e6).unwrap(),
        ranges::Ranges::build(&e6).unwrap(),
    );
    assert!(t6.skip >= 32, "skip {}", t6.skip);
    let mut k6 = vec![0, base6 - 1, base6, base6 + 1, base6 | ((1 << 96) - 1)];
    k6.extend([(base6 | ((1 << 96) - 1)) + 1, u128::MAX]);
    for &s in f6.starts.iter() {
        k6.extend([s.wrapping_sub(1), s, s.wrapping_add(1)]);
    }
    for _ in 0..20_000 {
        let hi = u128::from(next());
        k6.push(base6 | hi << 32 | u128::from(next()));
    }
    for _ in 0..5_000 {
        let hi = u128::from(next());
        k6.push(hi << 64 | u128::from(next()));
    }
    agree_with_flat(&t6, &f6, &k6, "v6");
    // IPv4: a pool inside 10.20.0.0/16 with a covering /8 (keys outside the /16 but inside
    // the /8 must still find the /8), and a single host route.
    let mut e4 = vec![(p4("10.0.0.0/8"), 1u32)];
    for i in 0..3_000u32 {
        let len = 17 + (next() % 16) as u8;
        e4.push((
            Prefix::new(0x0a14_0000 | (next() as u32 & 0xffff), 32).unwrap(),
            10 + i,
        ));
        e4.push((
            Prefix::new(
                (0x0a14_0000 | (next() as u32 & 0xffff)) & u32::mask(len),
                len,
            )
            .unwrap(),
            5000 + i,
        ));
    }
    let e4 = dedupe(e4);
    let mut keys4: Vec<u32> = (0..20_000).map(|_| next() as u32).collect();
    keys4.extend((0..20_000).map(|_| 0x0a00_0000 | (next() as u32 & 0x00ff_ffff)));
    keys4.extend((0..20_000).map(|_| 0x0a14_0000 | (next() as u32 & 0xffff)));
    keys4.extend([
        0,
        0x09ff_ffff,
        0x0a00_0000,
        0x0a13_ffff,
        0x0a14_0000,
        0x0a14_ffff,
        0x0a15_0000,
        0x0aff_ffff,
        0x0b00_0000,
        u32::MAX,
    ]);
    let host = [(p4("192.0.2.25/32"), 4u32)];
    for (e, min_skip) in [(&e4[..], 8u8), (&host[..], 24)] {
        let (t, f) = (Lpm4::build(e).unwrap(), ranges::Ranges::build(e).unwrap());
        assert!(
            t.skip >= min_skip,
            "skip {} for {} prefixes",
            t.skip,
            e.len()
        );
        assert!(t.root_bits + t.skip <= 32);
        let mut keys = keys4.clone();
        for &s in f.starts.iter() {
            keys.extend([s.wrapping_sub(1), s, s.wrapping_add(1)]);
        }
        agree_with_flat(&t, &f, &keys, "v4");
    }
}

/// `n` random IPv4 prefixes with lengths in `lens` (duplicates dropped), valued `2i`.
fn random_v4(
    next: &mut impl FnMut() -> u64,
    n: u32,
    lens: std::ops::Range<u8>,
) -> Vec<(Prefix<u32>, u32)> {
    let span = u64::from(lens.end - lens.start);
    dedupe(
        (0..n)
            .map(|i| {
                let len = lens.start + (next() % span) as u8;
                let addr = (next() as u32) & u32::mask(len);
                (Prefix::new(addr, len).unwrap(), i * 2)
            })
            .collect(),
    )
}

#[test]
fn the_first_read_of_every_key_is_inside_the_table() {
    // Every layout: an empty table, a small root, a root that skips shared bits (IPv6 under
    // one /32), and lines.
    let mut next = xorshift(11);
    let v4 = random_v4(&mut next, 3000, 16..25);
    let v6: Vec<(Prefix<u128>, u32)> = dedupe(
        (0..500)
            .map(|i| {
                let len = 48 + (next() % 17) as u8;
                let a = (0x2001_0db8u128 << 96) | (u128::from(next()) << 32);
                (Prefix::new(a & u128::mask(len), len).unwrap(), i * 2)
            })
            .collect(),
    );
    let t4 = [
        LpmTable::<u32>::build(&[]).unwrap(),
        LpmTable::build(&v4).unwrap(),
        LpmTable::compile_layout(&ranges::Ranges::build(&v4).unwrap(), Layout::Lines),
        LpmTable::compile_layout(&ranges::Ranges::build(&v4).unwrap(), Layout::Direct),
    ];
    assert_eq!(t4[2].layout(), Layout::Lines);
    assert_eq!(t4[3].layout(), Layout::Direct);
    for t in &t4 {
        for k in [0, u32::MAX, 1 << 31]
            .into_iter()
            .chain((0..2000).map(|_| next() as u32))
        {
            let inside = if t.layout() == Layout::Lines {
                Lpm4::line_index(k) < t.lines.len()
            } else {
                t.root_index(k) < t.entries.len()
            };
            assert!(inside, "{k:#x} in a {:?} table", t.layout());
            t.prefetch_first(k);
        }
    }
    let t6 = LpmTable::build(&v6).unwrap();
    assert!(t6.skip >= 32, "skip {}", t6.skip);
    let mut keys = vec![0, u128::MAX, 0x2001_0db8u128 << 96];
    for _ in 0..2000 {
        keys.push((u128::from(next()) << 64) | u128::from(next()));
        keys.push((0x2001_0db8u128 << 96) | u128::from(next()));
    }
    for k in keys {
        assert!(t6.root_index(k) < t6.entries.len(), "{k:#x}");
        t6.prefetch_first(k);
    }
}

/// Hot blocks: every key lies in the keys of its own block, in every layout (an empty
/// table, a root, a root that skips shared bits, lines), and warming a block reads its
/// first-level entries, at most `cap` of them.
#[test]
fn hot_blocks_cover_their_keys_and_warming_one_is_bounded() {
    let mut next = xorshift(23);
    let v4 = random_v4(&mut next, 5000, 16..33);
    let f4 = ranges::Ranges::build(&v4).unwrap();
    let t4 = [
        LpmTable::<u32>::build(&[]).unwrap(),
        LpmTable::compile_layout(&f4, Layout::Root),
        LpmTable::compile_layout(&f4, Layout::Lines),
        Lpm4::build(&[(p4("10.20.0.0/16"), 1), (p4("10.20.30.0/24"), 2)]).unwrap(),
        LpmTable::compile_layout(&f4, Layout::Direct),
    ];
    assert_eq!(t4[2].layout(), Layout::Lines);
    assert_eq!(t4[4].layout(), Layout::Direct);
    assert!(t4[3].skip > 0);
    for t in &t4 {
        let keys = [0, u32::MAX, 0x0a14_1e01, t.lo, t.hi]
            .into_iter()
            .chain((0..3000).map(|_| next() as u32));
        for k in keys.filter(|&k| t.skip == 0 || (t.lo..=t.hi).contains(&k)) {
            let b = t.block_of(k);
            assert!(b < 1 << BLOCK_BITS);
            let (first, last) = t.block_keys(b);
            assert!(
                first <= k && k <= last,
                "{k:#x} not in block {b} ({first:#x}..={last:#x})"
            );
            assert_eq!((t.block_of(first), t.block_of(last)), (b, b));
            // Never finer than a /24.
            assert!(last - first >= 255, "block {b}: {first:#x}..={last:#x}");
            let n = t.warm_block(first, last, 8);
            // The first-level entries, and per entry at most its extension lines (lines)
            // or its leaf or run (root).
            assert!(n >= 1, "{k:#x}: nothing warmed");
            assert!(n <= 8 * (1 + LINE_RANGES + 64), "{n} lines for one block");
        }
        // The whole key space: at most `cap` first-level entries.
        let n = t.warm_block(0, u32::MAX, 4);
        assert!((1..=4 * (1 + LINE_RANGES + 64)).contains(&n), "{n}");
    }
    let v6: Vec<(Prefix<u128>, u32)> = dedupe(
        (0..3000)
            .map(|i| {
                let len = [40u8, 48, 56, 64, 128][(next() % 5) as usize];
                let a = (0x2001_0db8u128 << 96) | (u128::from(next()) << 32) | u128::from(next());
                (Prefix::new(a & u128::mask(len), len).unwrap(), i * 2)
            })
            .collect(),
    );
    let t6 = Lpm6::build(&v6).unwrap();
    assert!(t6.skip >= 32);
    for _ in 0..3000 {
        let k = (0x2001_0db8u128 << 96) | (u128::from(next()) << 32) | u128::from(next());
        let b = t6.block_of(k);
        let (first, last) = t6.block_keys(b);
        assert!(first <= k && k <= last, "{k:#x} not in block {b}");
        // Never finer than a /48.
        assert!(
            last - first >= (1 << 80) - 1,
            "block {b}: {first:#x}..={last:#x}"
        );
        assert!(t6.warm_block(first, last, 8) >= 1);
    }
    // Pools inside one /56: one block for the whole root, which tells nothing apart.
    let narrow = Lpm6::build(&[
        (Prefix::new(0x2001_0db8_0000_1200u128 << 64, 56).unwrap(), 1),
        (Prefix::new(0x2001_0db8_0000_1234u128 << 64, 64).unwrap(), 2),
    ])
    .unwrap();
    let k = 0x2001_0db8_0000_1234u128 << 64 | 7;
    assert_eq!(
        narrow.block_of(k),
        narrow.block_of(0x2001_0db8_0000_12ffu128 << 64)
    );
    let (first, last) = narrow.block_keys(narrow.block_of(k));
    let pool = 0x2001_0db8_0000_1200u128 << 64;
    assert!(first <= pool && last >= pool | ((1 << 72) - 1));
    // A span outside the root's block, or an empty one, reads nothing.
    assert_eq!(t6.warm_block(1 << 100, 1, 8), 0);
    assert_eq!(t6.warm_block(0, 1 << 64, 8), 0);
}
