//! `op25b-bench lpm`: longest-prefix-match throughput on a prefix file and an address file
//! (one entry per line, the same files the C harness in `bench/c` feeds to DPDK's
//! `rte_lpm`/`rte_lpm6`), so both see identical data.
//!
//! Each prefix's value is its 0-based position among the file's prefixes (the C harness
//! uses the same numbering as next hop), so `--dump` output can be compared line by line.
//! Reported rates are medians over repetitions; every run also checks the fast table
//! against the flat binary-search form on every address and fails on any difference.

use op25b_dataplane::lpm::ranges::Ranges;
use op25b_dataplane::lpm::{Bits, Layout, LpmTable, Prefix, NO_MATCH};
use op25b_dataplane::policy::AnyPrefix;
use serde_json::{json, Value};
use std::io::BufRead;
use std::path::Path;
use std::time::Instant;

/// Reads `path` line by line, skipping blanks and `#` comments, parsing each line.
pub fn read_lines<T>(
    path: &Path,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::with_capacity(1 << 16, f)
        .lines()
        .enumerate()
    {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        let text = line.split('#').next().unwrap_or("").trim();
        if !text.is_empty() {
            out.push(
                parse(text).map_err(|e| format!("{}:{}: {text:?}: {e}", path.display(), i + 1))?,
            );
        }
    }
    Ok(out)
}

/// Reads an address file (one per line) into IPv4 and IPv6 keys, in file order.
pub fn read_keys(path: &Path) -> Result<(Vec<u32>, Vec<u128>), String> {
    let (mut k4, mut k6) = (Vec::new(), Vec::new());
    for a in read_lines(path, |t| {
        t.parse::<std::net::IpAddr>().map_err(|e| e.to_string())
    })? {
        match a {
            std::net::IpAddr::V4(x) => k4.push(u32::from(x)),
            std::net::IpAddr::V6(x) => k6.push(u128::from(x)),
        }
    }
    Ok((k4, k6))
}

/// The median of some measurements.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Looks `keys` up in batches of 64 (as a worker does) and sums the answers, so the work
/// cannot be optimised away and every lookup path can be checked against the others.
pub fn batched_sum<K: Bits>(table: &LpmTable<K>, keys: &[K]) -> u64 {
    let mut buf = [0u32; 64];
    let mut s = 0u64;
    for chunk in keys.chunks(64) {
        table.lookup_batch(chunk, &mut buf[..chunk.len()]);
        s = buf[..chunk.len()]
            .iter()
            .fold(s, |a, &v| a.wrapping_add(u64::from(v)));
    }
    s
}

/// Looks `keys` up one at a time and sums the answers.
pub fn single_sum<K: Bits>(table: &LpmTable<K>, keys: &[K]) -> u64 {
    keys.iter()
        .fold(0u64, |a, &k| a.wrapping_add(u64::from(table.lookup_raw(k))))
}

/// Measures one family; `entries` values are prefix positions.
fn measure<K: Bits>(
    family: &str,
    entries: &[(Prefix<K>, u32)],
    keys: &[K],
    iters: u32,
    reps: u32,
    layout: Layout,
) -> Result<Value, String> {
    let t = Instant::now();
    let flat = Ranges::build(entries).map_err(|e| e.to_string())?;
    let flat_s = t.elapsed().as_secs_f64();
    let table = LpmTable::compile_layout(&flat, layout);
    let build_s = t.elapsed().as_secs_f64();
    let mut out = vec![0u32; keys.len()];
    table.lookup_batch(keys, &mut out);
    let wrong = keys
        .iter()
        .zip(&out)
        .filter(|(k, o)| flat.lookup_raw(**k) != **o)
        .count();
    if wrong > 0 {
        return Err(format!(
            "{family}: {wrong} lookups differ from the flat reference"
        ));
    }
    let matched = out.iter().filter(|&&v| v != NO_MATCH).count();
    let reads: Vec<u32> = keys.iter().map(|&k| table.extension_reads(k)).collect();
    let (extended_lines, extension_lines, general_entries) = table.extension_counts();
    let rate = |f: &mut dyn FnMut() -> u64| -> (f64, u64) {
        let mut rates = Vec::new();
        let mut sum = 0u64;
        for _ in 0..reps {
            let t = Instant::now();
            for _ in 0..iters {
                sum = sum.wrapping_add(f());
            }
            rates.push((keys.len() as f64 * f64::from(iters)) / t.elapsed().as_secs_f64());
        }
        (median(rates), sum)
    };
    let (batch, c1) = rate(&mut || batched_sum(&table, keys));
    let (single, c2) = rate(&mut || single_sum(&table, keys));
    let (flat_rate, c3) = rate(&mut || {
        keys.iter()
            .fold(0u64, |a, &k| a.wrapping_add(u64::from(flat.lookup_raw(k))))
    });
    if c1 != c2 || c2 != c3 {
        return Err(format!("{family}: checksums differ between lookup paths"));
    }
    Ok(json!({
        "family": family,
        "prefixes": table.prefix_count(),
        "ranges": table.range_count(),
        "layout": match table.layout() {
            Layout::Lines => "lines",
            Layout::Direct => "direct",
            _ => "root",
        },
        "root_bits": table.root_bits(),
        "addresses": keys.len(),
        "matched": matched,
        "keys_with_second_read": reads.iter().filter(|&&r| r >= 1).count(),
        "keys_with_third_read": reads.iter().filter(|&&r| r >= 2).count(),
        "extended_lines": extended_lines,
        "extension_lines": extension_lines,
        "general_entries": general_entries,
        "flatten_s": flat_s,
        "build_s": build_s,
        "memory_bytes": table.memory_bytes(),
        "batch_lookups_per_s": batch,
        "single_lookups_per_s": single,
        "binary_search_lookups_per_s": flat_rate,
        "iters": iters,
        "reps": reps,
        "checksum": c1,
    }))
}

/// Runs the LPM benchmark: one result per address family present in the address file.
pub fn run(
    prefix_file: &Path,
    addr_file: &Path,
    iters: u32,
    reps: u32,
    layout: Layout,
) -> Result<Vec<Value>, String> {
    let (e4, e6) = entries(prefix_file)?;
    let (k4, k6) = read_keys(addr_file)?;
    let mut results = Vec::new();
    if !k4.is_empty() {
        results.push(measure("ipv4", &e4, &k4, iters, reps, layout)?);
    }
    if !k6.is_empty() {
        results.push(measure("ipv6", &e6, &k6, iters, reps, layout)?);
    }
    Ok(results)
}

/// Prefixes of both families with their positions as values (a repeated prefix keeps its
/// first position, as the later duplicate would conflict).
#[allow(clippy::type_complexity)]
pub fn entries(
    prefix_file: &Path,
) -> Result<(Vec<(Prefix<u32>, u32)>, Vec<(Prefix<u128>, u32)>), String> {
    let prefixes = read_lines(prefix_file, |t| t.parse::<AnyPrefix>())?;
    let mut seen = std::collections::HashSet::new();
    let (mut e4, mut e6) = (Vec::new(), Vec::new());
    for (i, p) in prefixes.iter().enumerate() {
        if !seen.insert(*p) {
            continue;
        }
        match *p {
            AnyPrefix::V4(q) => e4.push((q, i as u32)),
            AnyPrefix::V6(q) => e6.push((q, i as u32)),
        }
    }
    Ok((e4, e6))
}

/// Prints each address's value (-1 for no match), one per line, for comparison with the C
/// harness's dump mode.
pub fn dump(prefix_file: &Path, addr_file: &Path, layout: Layout) -> Result<(), String> {
    let (e4, e6) = entries(prefix_file)?;
    let t4 = LpmTable::compile_layout(&Ranges::build(&e4).map_err(|e| e.to_string())?, layout);
    let t6 = LpmTable::compile_layout(&Ranges::build(&e6).map_err(|e| e.to_string())?, layout);
    let addrs = read_lines(addr_file, |t| {
        t.parse::<std::net::IpAddr>().map_err(|e| e.to_string())
    })?;
    let mut out = String::new();
    for a in addrs {
        let v = match a {
            std::net::IpAddr::V4(x) => t4.lookup(u32::from(x)),
            std::net::IpAddr::V6(x) => t6.lookup(u128::from(x)),
        };
        out.push_str(&v.map_or("-1".to_string(), |v| v.to_string()));
        out.push('\n');
    }
    crate::say!("{out}");
    Ok(())
}
