//! `op25b-bench compare`: one run that puts op25b's LPM next to DPDK's `rte_lpm`/`rte_lpm6`
//! (through the C harness in `bench/c`, when it is built), and the Rust crates `poptrie` and
//! `prefix-trie`, on the same generated prefix and address files; then op25b's pcap replay
//! next to `tcpdump -r IN -w OUT FILTER` with the same policy written as a BPF filter.
//!
//! Writes `compare.json`, `compare.md` (medians and ratios) and `lpm.svg` (lookups/s
//! against table size) into the output folder, and prints the Markdown.
//!
//! Invariants: every structure is fed the same files; op25b's answers are checked against
//! rte_lpm's on a sample of addresses whenever rte_lpm inserted every prefix (a mismatch
//! fails the run); a missing tool is reported as missing, never as a number.

use crate::classify::synthetic_pools;
use crate::lpmbench::{self, median};
use crate::rng::Rng;
use op25b_dataplane::lpm::{Bits, LpmTable, Prefix};
use op25b_dataplane::policy::AnyPrefix;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// What to compare.
#[derive(Clone, Debug)]
pub struct CompareArgs {
    /// Where data files and results go.
    pub out_dir: PathBuf,
    /// IPv4 table sizes.
    pub v4_sizes: Vec<usize>,
    /// IPv6 table sizes.
    pub v6_sizes: Vec<usize>,
    /// Addresses per key set.
    pub addrs: usize,
    /// Repetitions per in-process measurement (median reported).
    pub reps: u32,
    /// The C harness binary (`bench/c/lpm_bench`), if built.
    pub c_harness: Option<PathBuf>,
    /// Frames in the replay comparison's capture (0 skips it).
    pub replay_frames: u64,
    /// The `op25b` binary for the replay comparison.
    pub op25b: Option<PathBuf>,
    /// Policy sizes for the full-classification runs (empty skips them).
    pub classify_sizes: Vec<usize>,
}

/// Writes `n` prefixes of one family (BNG-like lengths) and returns them.
fn write_prefixes(path: &Path, v6: bool, n: usize, seed: u64) -> std::io::Result<Vec<AnyPrefix>> {
    let pools = synthetic_pools(n, if v6 { 1.0 } else { 0.0 }, seed);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for p in &pools.dynamic {
        writeln!(f, "{p}")?;
    }
    f.flush()?;
    Ok(pools.dynamic)
}

/// Writes `n` addresses: uniformly random, or (with `hit`) inside a random listed prefix.
fn write_addrs(
    path: &Path,
    v6: bool,
    n: usize,
    within: Option<&[AnyPrefix]>,
    seed: u64,
) -> std::io::Result<()> {
    let mut rng = Rng::new(seed);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for _ in 0..n {
        let inside = within.and_then(|ps| ps.get(rng.below(ps.len() as u64) as usize));
        match (v6, inside) {
            (false, Some(AnyPrefix::V4(p))) => writeln!(
                f,
                "{}",
                std::net::Ipv4Addr::from(p.addr | (rng.next_u64() as u32 & !u32::mask(p.len)))
            )?,
            (true, Some(AnyPrefix::V6(p))) => writeln!(
                f,
                "{}",
                std::net::Ipv6Addr::from(p.addr | (rng.next_u128() & !u128::mask(p.len)))
            )?,
            (false, _) => writeln!(f, "{}", std::net::Ipv4Addr::from(rng.next_u64() as u32))?,
            (true, _) => writeln!(f, "{}", std::net::Ipv6Addr::from(rng.next_u128()))?,
        }
    }
    f.flush()
}

/// Lookups/s of a closure over all keys, median of `reps` timed passes.
fn rate<K: Copy>(keys: &[K], reps: u32, mut f: impl FnMut(&[K]) -> u64) -> (f64, u64) {
    let mut sum = 0u64;
    let mut rates = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        sum = sum.wrapping_add(f(keys));
        rates.push(keys.len() as f64 / t.elapsed().as_secs_f64());
    }
    (median(rates), sum)
}

/// In-process structures on one data set.
fn rust_structures<K>(entries: &[(Prefix<K>, u32)], keys: &[K], reps: u32) -> Vec<Value>
where
    K: Bits + poptrie::Address,
    (K, u8): prefix_trie::Prefix,
{
    let mut out = Vec::new();
    let t = Instant::now();
    let table = LpmTable::build(entries).expect("generated prefixes are distinct");
    let build = t.elapsed().as_secs_f64();
    let (batched, _) = rate(keys, reps, |ks| lpmbench::batched_sum(&table, ks));
    let (single, _) = rate(keys, reps, |ks| lpmbench::single_sum(&table, ks));
    out.push(json!({"lib": "op25b", "build_s": build, "memory_bytes": table.memory_bytes(), "lookups_per_s": batched, "single_lookups_per_s": single}));

    let t = Instant::now();
    let pop: poptrie::Poptrie<(K, u8), u32> =
        entries.iter().map(|&(p, v)| ((p.addr, p.len), v)).collect();
    let build = t.elapsed().as_secs_f64();
    let (r, _) = rate(keys, reps, |ks| {
        ks.iter().fold(0u64, |a, &k| {
            a.wrapping_add(u64::from(pop.lookup(k).copied().unwrap_or(u32::MAX)))
        })
    });
    out.push(json!({"lib": "poptrie", "build_s": build, "lookups_per_s": r}));

    let t = Instant::now();
    let mut pt: prefix_trie::PrefixMap<(K, u8), u32> = prefix_trie::PrefixMap::new();
    for &(p, v) in entries {
        pt.insert((p.addr, p.len), v);
    }
    let build = t.elapsed().as_secs_f64();
    let full = <K as Bits>::BITS;
    let (r, _) = rate(keys, reps.min(3), |ks| {
        ks.iter().fold(0u64, |a, &k| {
            a.wrapping_add(u64::from(
                pt.get_lpm(&(k, full)).map_or(u32::MAX, |(_, v)| *v),
            ))
        })
    });
    out.push(json!({"lib": "prefix-trie", "build_s": build, "lookups_per_s": r}));
    out
}

/// Compares op25b's answers with the C harness's dump on the first `n` addresses.
fn cross_check(
    bin: &Path,
    mode: &str,
    pfx: &Path,
    addrs: &Path,
    dir: &Path,
    n: usize,
) -> Result<usize, String> {
    let text = std::fs::read_to_string(addrs).map_err(|e| e.to_string())?;
    let sample: String = text.lines().take(n).map(|l| format!("{l}\n")).collect();
    let sample_path = dir.join("sample.addrs");
    std::fs::write(&sample_path, &sample).map_err(|e| e.to_string())?;
    let theirs = Command::new(bin)
        .arg(format!("{mode}-dump"))
        .arg(pfx)
        .arg(&sample_path)
        .output()
        .map_err(|e| e.to_string())?;
    if !theirs.status.success() {
        return Err(String::from_utf8_lossy(&theirs.stderr).to_string());
    }
    let (e4, e6) = lpmbench::entries(pfx)?;
    let t4 = LpmTable::build(&e4).map_err(|e| e.to_string())?;
    let t6 = LpmTable::build(&e6).map_err(|e| e.to_string())?;
    let mut differ = 0;
    for (addr, their) in sample
        .lines()
        .zip(String::from_utf8_lossy(&theirs.stdout).lines())
    {
        let ours = match addr
            .parse::<std::net::IpAddr>()
            .map_err(|e| e.to_string())?
        {
            std::net::IpAddr::V4(a) => t4.lookup(u32::from(a)),
            std::net::IpAddr::V6(a) => t6.lookup(u128::from(a)),
        };
        let ours = ours.map_or(-1i64, i64::from);
        if their.trim().parse::<i64>().ok() != Some(ours) {
            differ += 1;
        }
    }
    Ok(differ)
}

fn lib_rate(results: &[Value], lib: &str) -> Option<f64> {
    results
        .iter()
        .find(|r| r["lib"] == lib)
        .and_then(|r| r["lookups_per_s"].as_f64())
}

/// The library a C harness mode measures.
fn dpdk_lib(mode: &str) -> &'static str {
    match mode {
        "v4" => "rte_lpm",
        "v6" => "rte_lpm6",
        "fib4" => "rte_fib",
        _ => "rte_fib6",
    }
}

/// The C harness in serve mode: it builds its table once and then measures one address
/// file per request, so its measurements can alternate with op25b's and each pair shares
/// the machine's momentary load (this VM's memory speed moves by 2x within minutes).
struct Served {
    mode: &'static str,
    child: std::process::Child,
    out: std::io::BufReader<std::process::ChildStdout>,
    log: PathBuf,
}

impl Served {
    fn start(
        bin: &Path,
        mode: &'static str,
        pfx: &Path,
        files: &str,
        log: PathBuf,
    ) -> Result<Served, String> {
        let err = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut child = Command::new(bin)
            .arg(format!("{mode}-serve"))
            .arg(pfx)
            .arg(files)
            .arg("3")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(err)
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        let out = std::io::BufReader::new(child.stdout.take().expect("stdout is piped"));
        Ok(Served {
            mode,
            child,
            out,
            log,
        })
    }

    fn line(&mut self) -> Result<Value, String> {
        use std::io::BufRead as _;
        let mut l = String::new();
        let got = self.out.read_line(&mut l).map_err(|e| e.to_string())?;
        if got == 0 {
            let err = std::fs::read_to_string(&self.log).unwrap_or_default();
            return Err(format!("the C harness ended early: {}", err.trim()));
        }
        serde_json::from_str(&l).map_err(|e| format!("{e}: {l}"))
    }

    /// Waits until the table is built; returns the build time in seconds.
    fn wait_ready(&mut self) -> Result<f64, String> {
        let v = self.line()?;
        v["build_s"]
            .as_f64()
            .ok_or_else(|| format!("no build time in {v}"))
    }

    /// Measures address file `k` (its position in the list given at start).
    fn measure(&mut self, k: usize) -> Result<Value, String> {
        let stdin = self.child.stdin.as_mut().expect("stdin is piped");
        writeln!(stdin, "{k}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("{}: {e}", self.mode))?;
        self.line()
    }

    /// Ends the harness; returns its mode and what it wrote on stderr.
    fn finish(mut self) -> (&'static str, String) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
        (
            self.mode,
            std::fs::read_to_string(&self.log).unwrap_or_default(),
        )
    }
}

/// op25b's batched lookups/s over `keys`: three passes, as the C harness times them.
fn pass_rate<K: Bits + Sync>(table: &LpmTable<K>, keys: &[K]) -> f64 {
    // On core 0, where the C harness's EAL runs (`-l 0`), so the paired rounds compare
    // the two on one core; on a thread of its own, so nothing else is pinned.
    std::thread::scope(|s| {
        s.spawn(|| {
            if let Err(e) = op25b_dataplane::port::sys::pin_current_thread(0) {
                eprintln!("compare: warning: cannot pin to core 0 as the C harness is ({e})");
            }
            pass_rate_here(table, keys)
        })
        .join()
        .expect("a lookup pass does not panic")
    })
}

fn pass_rate_here<K: Bits>(table: &LpmTable<K>, keys: &[K]) -> f64 {
    // One untimed pass first, as the C harness does before each timed request.
    let mut sum = lpmbench::batched_sum(table, keys);
    let t = Instant::now();
    for _ in 0..3 {
        sum = sum.wrapping_add(lpmbench::batched_sum(table, keys));
    }
    std::hint::black_box(sum);
    3.0 * keys.len() as f64 / t.elapsed().as_secs_f64()
}

/// `a.reps` rounds; in each, every key set is measured by op25b and then by each ready
/// DPDK table, one after the other. Reported per case: medians of each side and, as the
/// ratio, the median of the per-round ratios (each taken under the same load).
fn paired_rounds(
    a: &CompareArgs,
    v6: bool,
    e4: &[(Prefix<u32>, u32)],
    e6: &[(Prefix<u128>, u32)],
    key_files: &[PathBuf],
    cases: &mut [Value],
    ready: &mut [(Served, f64)],
) -> Result<(), String> {
    let keys = key_files
        .iter()
        .map(|p| lpmbench::read_keys(p))
        .collect::<Result<Vec<_>, _>>()?;
    let t4 = LpmTable::build(e4).map_err(|e| e.to_string())?;
    let t6 = LpmTable::build(e6).map_err(|e| e.to_string())?;
    let mut ours = vec![Vec::new(); keys.len()];
    let mut theirs = vec![vec![Vec::<Value>::new(); ready.len()]; keys.len()];
    for _ in 0..a.reps {
        for (k, (k4, k6)) in keys.iter().enumerate() {
            ours[k].push(if v6 {
                pass_rate(&t6, k6)
            } else {
                pass_rate(&t4, k4)
            });
            for (j, (s, _)) in ready.iter_mut().enumerate() {
                theirs[k][j].push(s.measure(k)?);
            }
        }
    }
    for (k, case) in cases.iter_mut().enumerate() {
        let mut paired = Vec::new();
        let results = case["results"].as_array_mut().expect("results is an array");
        if let Some(op) = results.iter_mut().find(|r| r["lib"] == "op25b") {
            op["unpaired_lookups_per_s"] = op["lookups_per_s"].clone();
            op["lookups_per_s"] = json!(median(ours[k].clone()));
            op["rounds"] = json!(ours[k]);
        }
        for (j, (s, build_s)) in ready.iter().enumerate() {
            let runs = &theirs[k][j];
            let field =
                |f: &str| -> Vec<f64> { runs.iter().filter_map(|r| r[f].as_f64()).collect() };
            let bulk = field("bulk_lookups_per_s");
            let lib = dpdk_lib(s.mode);
            results.push(json!({
                "lib": lib,
                "build_s": build_s,
                "lookups_per_s": median(bulk.clone()),
                "single_lookups_per_s": median(field("single_lookups_per_s")),
                "inserted": runs[0]["inserted"],
                "failed": runs[0]["failed"],
                "rounds": bulk,
            }));
            let ratios: Vec<f64> = ours[k].iter().zip(&bulk).map(|(o, b)| o / b).collect();
            let key = if s.mode.starts_with("fib") {
                "op25b_vs_fib"
            } else {
                "op25b_vs_dpdk"
            };
            paired.push((key, ratios));
        }
        for (key, ratios) in paired {
            case[key] = json!(median(ratios.clone()));
            case[format!("{key}_rounds")] = json!(ratios);
        }
    }
    Ok(())
}

/// One prefix set with two key sets (uniform, every key inside a prefix), every structure. The
/// C harness builds each DPDK table once and measures both key files.
fn lpm_set(
    a: &CompareArgs,
    v6: bool,
    n: usize,
    notes: &mut Vec<String>,
) -> Result<Vec<Value>, String> {
    let fam = if v6 { "v6" } else { "v4" };
    let pfx = a.out_dir.join(format!("{fam}-{n}.prefixes"));
    let prefixes = write_prefixes(&pfx, v6, n, n as u64 ^ 0x0025).map_err(|e| e.to_string())?;
    let kinds = [
        ("uniformly random", "uniform"),
        ("every key inside a prefix", "hit"),
    ];
    let mut key_files = Vec::new();
    for (i, (_, tag)) in kinds.iter().enumerate() {
        let path = a.out_dir.join(format!("{fam}-{n}-{tag}.addrs"));
        // Every key inside a listed prefix (a random one each time).
        let within = if i == 1 {
            Some(prefixes.as_slice())
        } else {
            None
        };
        write_addrs(&path, v6, a.addrs, within, n as u64 ^ 0x5eed ^ i as u64)
            .map_err(|e| e.to_string())?;
        key_files.push(path);
    }
    let (e4, e6) = lpmbench::entries(&pfx)?;
    let mut cases = Vec::new();
    for (path, (label, _)) in key_files.iter().zip(kinds) {
        eprintln!("compare: {fam} {n} prefixes, {label} keys: op25b, poptrie, prefix-trie");
        let (k4, k6) = lpmbench::read_keys(path)?;
        let results = if v6 {
            rust_structures(&e6, &k6, a.reps)
        } else {
            rust_structures(&e4, &k4, a.reps)
        };
        cases.push(json!({"family": if v6 { "ipv6" } else { "ipv4" }, "prefixes": n, "keys": label, "addresses": a.addrs, "results": results, "cross_check": Value::Null}));
    }
    if let Some(bin) = &a.c_harness {
        let files = key_files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(",");
        let (lpm_mode, fib_mode) = if v6 { ("v6", "fib6") } else { ("v4", "fib4") };
        eprintln!(
            "compare: {fam} {n} prefixes: DPDK {lpm_mode} and {fib_mode} build their tables once"
        );
        // Both DPDK tables are built at the same time (rte_lpm takes minutes for 1M
        // prefixes); nothing is measured until both are ready.
        let mut served = Vec::new();
        for mode in [lpm_mode, fib_mode] {
            let log = a.out_dir.join(format!("{mode}-{n}.stderr"));
            match Served::start(bin, mode, &pfx, &files, log) {
                Ok(s) => served.push(s),
                Err(e) => notes.push(format!("{mode} {}: {e}", pfx.display())),
            }
        }
        let mut ready = Vec::new();
        for mut s in served {
            match s.wait_ready() {
                Ok(build_s) => ready.push((s, build_s)),
                Err(e) => notes.push(format!("{} {}: {e}", s.mode, pfx.display())),
            }
        }
        if !ready.is_empty() {
            eprintln!(
                "compare: {fam} {n} prefixes: {} paired rounds of op25b and DPDK, alternating",
                a.reps
            );
            paired_rounds(a, v6, &e4, &e6, &key_files, &mut cases, &mut ready)?;
        }
        for (s, _) in ready {
            let (mode, err) = s.finish();
            if !err.trim().is_empty() {
                notes.push(format!(
                    "{mode} {}: {}",
                    pfx.display(),
                    err.trim().replace('\n', "; ")
                ));
            }
        }
        // Same answers as DPDK on a sample (rte_fib agrees with rte_lpm and builds in
        // seconds, so it stands in for rte_lpm on the largest sets).
        let mode = if n >= 1_000_000 { fib_mode } else { lpm_mode };
        for (case, path) in cases.iter_mut().zip(&key_files) {
            let differ = cross_check(bin, mode, &pfx, path, &a.out_dir, 20_000)?;
            if differ > 0 {
                return Err(format!("{fam} {n}: op25b and DPDK {mode} disagree on {differ} of 20000 addresses of {}", path.display()));
            }
            case["cross_check"] = json!({"against": mode, "addresses": 20_000, "differ": 0});
        }
    }
    for case in &mut cases {
        let results = case["results"].as_array().cloned().unwrap_or_default();
        let ours = lib_rate(&results, "op25b").unwrap_or(0.0);
        // Paired rounds set the ratios as medians of per-round ratios; otherwise (no DPDK)
        // they stay null.
        for (key, lib) in [
            ("op25b_vs_dpdk", if v6 { "rte_lpm6" } else { "rte_lpm" }),
            ("op25b_vs_fib", if v6 { "rte_fib6" } else { "rte_fib" }),
        ] {
            if case[key].is_null() {
                case[key] = json!(lib_rate(&results, lib).map(|b| ours / b));
            }
        }
    }
    Ok(cases)
}

/// BPF for "blocked" with plain Ethernet framing: TCP to port 25 from a dynamic prefix,
/// not from an exempt one, not to a relay.
fn bpf_blocked(dynamic: &[AnyPrefix], exempt: &[AnyPrefix], relays: &[AnyPrefix]) -> String {
    let nets = |ps: &[AnyPrefix], dir: &str| {
        ps.iter()
            .map(|p| format!("{dir} net {p}"))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let mut f = format!("tcp dst port 25 and ({})", nets(dynamic, "src"));
    if !exempt.is_empty() {
        f += &format!(" and not ({})", nets(exempt, "src"));
    }
    if !relays.is_empty() {
        f += &format!(" and not ({})", nets(relays, "dst"));
    }
    f
}

fn time_cmd(cmd: &mut Command, timeout: Duration) -> Result<f64, String> {
    let t = Instant::now();
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let secs = t.elapsed().as_secs_f64();
            if status.success() {
                return Ok(secs);
            }
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            return Err(err.lines().last().unwrap_or("failed").to_string());
        }
        if t.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("gave up after {} s", timeout.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// op25b replay against tcpdump with a BPF filter, as the policy grows.
fn replay_case(a: &CompareArgs, notes: &mut Vec<String>) -> Result<Value, String> {
    let Some(op25b) = &a.op25b else {
        notes.push("replay comparison skipped: no op25b binary (see the message at start)".into());
        return Ok(Value::Null);
    };
    let have_tcpdump = Command::new("tcpdump").arg("--version").output().is_ok();
    if !have_tcpdump {
        notes.push("tcpdump is not installed: replay comparison runs op25b alone".into());
    }
    let dir = &a.out_dir;
    let mut rows = Vec::new();
    for n in [100usize, 1_000, 10_000, 100_000, 1_000_000] {
        let pools = synthetic_pools(n, 0.0, 77);
        let dynamic = pools.dynamic.clone();
        // Exempt and relays kept tiny so BPF sees the same policy op25b does.
        let exempt: Vec<AnyPrefix> = pools.exempt.iter().take(5).copied().collect();
        let relays = pools
            .relays
            .iter()
            .filter(|p| matches!(p, AnyPrefix::V4(_)))
            .copied()
            .collect::<Vec<_>>();
        let write_list = |name: &str, ps: &[AnyPrefix]| -> Result<PathBuf, String> {
            let p = dir.join(name);
            let text: String = ps.iter().map(|x| format!("{x}\n")).collect();
            std::fs::write(&p, text).map_err(|e| e.to_string())?;
            Ok(p)
        };
        write_list(&format!("replay-{n}.dynamic"), &dynamic)?;
        write_list(&format!("replay-{n}.exempt"), &exempt)?;
        write_list(&format!("replay-{n}.relays"), &relays)?;
        let cfg = dir.join(format!("replay-{n}.toml"));
        std::fs::write(
            &cfg,
            format!("[outbound]\ndynamic_files = [\"replay-{n}.dynamic\"]\nexempt_files = [\"replay-{n}.exempt\"]\nrelays_files = [\"replay-{n}.relays\"]\n"),
        )
        .map_err(|e| e.to_string())?;
        let cap = dir.join(format!("replay-{n}.pcap"));
        let profile = crate::profile::Profile {
            v6_share: 0.0,
            encaps: vec![crate::profile::Encap::Plain],
            odd_share: 0.0,
            ..Default::default()
        };
        let pools_for_traffic = crate::profile::Pools {
            dynamic: dynamic.clone(),
            exempt: exempt.clone(),
            relays: relays.clone(),
        };
        {
            let file = std::fs::File::create(&cap).map_err(|e| e.to_string())?;
            let mut w =
                op25b_dataplane::port::pcap::PcapWriter::new(std::io::BufWriter::new(file), false)
                    .map_err(|e| e.to_string())?;
            let mut g = crate::profile::Generator::new(&pools_for_traffic, profile, 9);
            for i in 0..a.replay_frames {
                w.write(1_700_000_000_000_000_000 + i * 1000, &g.frame())
                    .map_err(|e| e.to_string())?;
            }
            w.finish().map_err(|e| e.to_string())?;
        }
        let mut ours = Vec::new();
        for _ in 0..3 {
            let secs = time_cmd(
                Command::new(op25b)
                    .arg("replay")
                    .arg("--config")
                    .arg(&cfg)
                    .arg("--input")
                    .arg(&cap)
                    .arg("--pass-out")
                    .arg(dir.join("op25b-pass.pcap"))
                    .arg("--drop-out")
                    .arg(dir.join("op25b-drop.pcap")),
                Duration::from_secs(300),
            )?;
            ours.push(secs);
        }
        let ours = median(ours);
        let mut row = json!({"prefixes": n, "frames": a.replay_frames, "op25b_s": ours, "op25b_fps": a.replay_frames as f64 / ours});
        if have_tcpdump {
            let filter = format!("not ({})", bpf_blocked(&dynamic, &exempt, &relays));
            let filter_file = dir.join(format!("replay-{n}.bpf"));
            std::fs::write(&filter_file, &filter).map_err(|e| e.to_string())?;
            let mut times = Vec::new();
            let mut failure = None;
            for _ in 0..if n <= 1000 { 3 } else { 1 } {
                match time_cmd(
                    Command::new("tcpdump")
                        .arg("-r")
                        .arg(&cap)
                        .arg("-w")
                        .arg(dir.join("tcpdump-pass.pcap"))
                        .arg("-F")
                        .arg(&filter_file),
                    Duration::from_secs(120),
                ) {
                    Ok(s) => times.push(s),
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            match failure {
                None => {
                    let t = median(times);
                    row["tcpdump_s"] = json!(t);
                    row["speedup"] = json!(t / ours);
                    // Same frames passed?
                    let count = |p: &Path| -> Option<u64> {
                        let o = Command::new("tcpdump")
                            .arg("--count")
                            .arg("-r")
                            .arg(p)
                            .output()
                            .ok()?;
                        String::from_utf8_lossy(&o.stdout)
                            .split_whitespace()
                            .next()?
                            .parse()
                            .ok()
                    };
                    row["same_pass_count"] = json!(
                        count(&dir.join("tcpdump-pass.pcap"))
                            == count(&dir.join("op25b-pass.pcap"))
                    );
                }
                Some(e) => row["tcpdump_error"] = json!(e),
            }
            let _ = std::fs::remove_file(dir.join("tcpdump-pass.pcap"));
        }
        rows.push(row);
        let _ = std::fs::remove_file(&cap);
    }
    Ok(Value::Array(rows))
}

fn classify_markdown(rows: &[Value]) -> String {
    let mut md = String::new();
    if rows.is_empty() {
        return md;
    }
    let _ = writeln!(md, "\n| policy prefixes (70% IPv4) | framing | workers | Mpps total | ns/frame/worker | scaling | p50 ns | p99 ns | policy build s | table MiB |");
    let _ = writeln!(md, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let one = rows
            .iter()
            .find(|x| {
                x["table_prefixes"] == r["table_prefixes"]
                    && x["framing"] == r["framing"]
                    && x["workers"] == 1
            })
            .and_then(|x| x["mpps_total"].as_f64());
        let total = r["mpps_total"].as_f64().unwrap_or(0.0);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.1} | {:.1} | {} | {} | {} | {:.2} | {:.1} |",
            r["table_prefixes"],
            r["framing"].as_str().unwrap_or(""),
            r["workers"],
            total,
            r["ns_per_frame_per_worker"].as_f64().unwrap_or(0.0),
            one.map_or("–".into(), |o| format!("{:.2}x", total / o)),
            r["latency_ns_per_frame"]["p50"],
            r["latency_ns_per_frame"]["p99"],
            r["policy_build_s"].as_f64().unwrap_or(0.0),
            r["table_bytes"].as_f64().unwrap_or(0.0) / 1048576.0,
        );
    }
    md
}

fn fmt_rate(v: &Value) -> String {
    v.as_f64().map_or("–".into(), |r| format!("{:.1}", r / 1e6))
}

fn markdown(lpm: &[Value], replay: &Value, notes: &[String], machine: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "Machine: {machine}\n");
    let _ = writeln!(md, "| family | prefixes | keys | op25b M/s | rte_lpm(6) M/s | rte_fib(6) M/s | poptrie M/s | prefix-trie M/s | op25b / rte_lpm(6) | op25b / rte_fib(6) | op25b build s | DPDK build s | op25b MiB |");
    let _ = writeln!(
        md,
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for c in lpm {
        let r = c["results"].as_array().cloned().unwrap_or_default();
        let get = |lib: &str, f: &str| {
            r.iter()
                .find(|x| x["lib"] == lib)
                .map(|x| x[f].clone())
                .unwrap_or(Value::Null)
        };
        let dpdk = if c["family"] == "ipv6" {
            "rte_lpm6"
        } else {
            "rte_lpm"
        };
        let fib = if c["family"] == "ipv6" {
            "rte_fib6"
        } else {
            "rte_fib"
        };
        let failed = get(dpdk, "failed")
            .as_u64()
            .filter(|&f| f > 0)
            .map_or(String::new(), |f| format!(" ({f} not inserted)"));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {}{} | {} | {} | {} | {} | {} | {} | {} | {:.1} |",
            c["family"].as_str().unwrap_or(""),
            c["prefixes"],
            c["keys"].as_str().unwrap_or(""),
            fmt_rate(&get("op25b", "lookups_per_s")),
            fmt_rate(&get(dpdk, "lookups_per_s")),
            failed,
            fmt_rate(&get(fib, "lookups_per_s")),
            fmt_rate(&get("poptrie", "lookups_per_s")),
            fmt_rate(&get("prefix-trie", "lookups_per_s")),
            c["op25b_vs_dpdk"]
                .as_f64()
                .map_or("–".into(), |x| format!("{x:.2}x")),
            c["op25b_vs_fib"]
                .as_f64()
                .map_or("–".into(), |x| format!("{x:.2}x")),
            get("op25b", "build_s")
                .as_f64()
                .map_or("–".into(), |x| format!("{x:.3}")),
            get(dpdk, "build_s")
                .as_f64()
                .map_or("–".into(), |x| format!("{x:.2}")),
            get("op25b", "memory_bytes").as_f64().unwrap_or(0.0) / 1048576.0,
        );
    }
    let paired: Vec<&Value> = lpm
        .iter()
        .filter(|c| c["op25b_vs_dpdk_rounds"].is_array())
        .collect();
    if !paired.is_empty() {
        let _ = writeln!(
            md,
            "\nop25b and DPDK were measured in paired rounds: in each round op25b, then each \
             DPDK table, one after the other on the same key file. Their columns are medians \
             over the rounds; the ratios are medians of the per-round ratios, which were:\n"
        );
        for c in paired {
            let list = |key: &str| {
                c[key]
                    .as_array()
                    .map(|v| {
                        v.iter()
                            .filter_map(Value::as_f64)
                            .map(|x| format!("{x:.2}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_else(|| "–".into())
            };
            let _ = writeln!(
                md,
                "- {} {} {}: vs rte_lpm(6) {}; vs rte_fib(6) {}",
                c["family"].as_str().unwrap_or(""),
                c["prefixes"],
                c["keys"].as_str().unwrap_or(""),
                list("op25b_vs_dpdk_rounds"),
                list("op25b_vs_fib_rounds"),
            );
        }
    }
    if let Some(rows) = replay.as_array() {
        let _ = writeln!(md, "\n| policy prefixes | frames | op25b replay s | tcpdump+BPF s | speedup | same frames passed |");
        let _ = writeln!(md, "|---:|---:|---:|---:|---:|---|");
        for r in rows {
            let _ = writeln!(
                md,
                "| {} | {} | {:.3} | {} | {} | {} |",
                r["prefixes"],
                r["frames"],
                r["op25b_s"].as_f64().unwrap_or(0.0),
                r["tcpdump_s"].as_f64().map_or_else(
                    || format!(
                        "failed: {}",
                        r["tcpdump_error"].as_str().unwrap_or("not run")
                    ),
                    |t| format!("{t:.3}")
                ),
                r["speedup"]
                    .as_f64()
                    .map_or("–".into(), |x| format!("{x:.1}x")),
                r["same_pass_count"]
                    .as_bool()
                    .map_or("–", |b| if b { "yes" } else { "NO" }),
            );
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(md, "\nNotes:");
        for n in notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    md
}

/// A log-log line chart of lookups/s against table size, one line per structure.
fn svg(lpm: &[Value], family: &str, keys: &str) -> String {
    let libs = [
        "op25b",
        "rte_lpm",
        "rte_lpm6",
        "rte_fib",
        "rte_fib6",
        "poptrie",
        "prefix-trie",
    ];
    let colours = [
        "#d62728", "#1f77b4", "#1f77b4", "#17becf", "#17becf", "#2ca02c", "#9467bd",
    ];
    let cases: Vec<&Value> = lpm
        .iter()
        .filter(|c| c["family"] == family && c["keys"] == keys)
        .collect();
    let (w, h, l, b) = (720.0, 420.0, 70.0, 50.0);
    let xs: Vec<f64> = cases
        .iter()
        .filter_map(|c| c["prefixes"].as_f64())
        .collect();
    let (xmin, xmax) = (
        xs.iter().cloned().fold(f64::MAX, f64::min).log10(),
        xs.iter().cloned().fold(0.0, f64::max).log10(),
    );
    let ys: Vec<f64> = cases
        .iter()
        .flat_map(|c| c["results"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["lookups_per_s"].as_f64())
        .filter(|v| *v > 0.0)
        .collect();
    let (ymin, ymax) = (
        ys.iter().cloned().fold(f64::MAX, f64::min).log10().floor(),
        ys.iter().cloned().fold(0.0, f64::max).log10().ceil(),
    );
    let px = |x: f64| l + (x.log10() - xmin) / (xmax - xmin).max(1e-9) * (w - l - 150.0);
    let py = |y: f64| h - b - (y.log10() - ymin) / (ymax - ymin).max(1e-9) * (h - b - 30.0);
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
    let _ = writeln!(s, "<text x=\"{l}\" y=\"18\" font-size=\"14\">{family} longest-prefix match, {keys} keys: lookups/s (log) vs prefixes (log)</text>");
    let _ = writeln!(s, "<line x1=\"{l}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/><line x1=\"{l}\" y1=\"30\" x2=\"{l}\" y2=\"{}\" stroke=\"black\"/>", h - b, w - 150.0, h - b, h - b);
    let mut e = ymin;
    while e <= ymax {
        let y = py(10f64.powf(e));
        let _ = writeln!(s, "<text x=\"5\" y=\"{:.0}\">{:.0} M/s</text><line x1=\"{l}\" y1=\"{y:.0}\" x2=\"{}\" y2=\"{y:.0}\" stroke=\"#ddd\"/>", y + 4.0, 10f64.powf(e) / 1e6, w - 150.0);
        e += 1.0;
    }
    for &x in &xs {
        let _ = writeln!(
            s,
            "<text x=\"{:.0}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            px(x),
            h - b + 18.0,
            x
        );
    }
    for (i, lib) in libs.iter().enumerate() {
        let pts: Vec<(f64, f64)> = cases
            .iter()
            .filter_map(|c| {
                let r = c["results"].as_array()?.iter().find(|r| r["lib"] == *lib)?;
                Some((c["prefixes"].as_f64()?, r["lookups_per_s"].as_f64()?))
            })
            .collect();
        if pts.is_empty() {
            continue;
        }
        let path: Vec<String> = pts
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>",
            colours[i],
            path.join(" ")
        );
        let (lx, ly) = (w - 140.0, 40.0 + 18.0 * i as f64);
        let _ = writeln!(s, "<line x1=\"{lx}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{}\" stroke-width=\"2\"/><text x=\"{}\" y=\"{}\">{lib}</text>", lx + 20.0, colours[i], lx + 25.0, ly + 4.0);
    }
    s.push_str("</svg>\n");
    s
}

/// Full classification of in-memory 64-byte-frame bursts: table sizes × workers × framing.
fn classify_rows(sizes: &[usize]) -> Result<Vec<Value>, String> {
    let mut rows = Vec::new();
    for &n in sizes {
        for (framing, encaps) in [
            ("plain", vec![crate::profile::Encap::Plain]),
            ("mixed", crate::profile::Encap::ALL.to_vec()),
        ] {
            for workers in [1, 2] {
                eprintln!("compare: classify {n} prefixes, {framing} framing, {workers} worker(s)");
                let args = crate::classify::ClassifyArgs {
                    prefixes: n,
                    frames: 1 << 16,
                    burst: 64,
                    workers,
                    passes: 60,
                    profile: crate::profile::Profile {
                        encaps: encaps.clone(),
                        payload: Some(0),
                        ..Default::default()
                    },
                    seed: 1,
                    hit_counters: false,
                };
                let mut r = crate::classify::run(&args)?;
                r["framing"] = json!(framing);
                r["table_prefixes"] = json!(n);
                rows.push(r);
            }
        }
    }
    Ok(rows)
}

/// Runs everything and writes the results; returns the Markdown table.
pub fn run(a: &CompareArgs) -> Result<String, String> {
    std::fs::create_dir_all(&a.out_dir).map_err(|e| format!("{}: {e}", a.out_dir.display()))?;

    let mut notes = Vec::new();
    match &a.c_harness {
        Some(p) if p.is_file() => {}
        Some(p) => {
            notes.push(format!(
                "{} is missing: DPDK columns are empty (scripts/compare.sh builds it)",
                p.display()
            ));
        }
        None => notes.push("--c-harness none: DPDK columns are empty".into()),
    }
    let a = CompareArgs {
        c_harness: a.c_harness.clone().filter(|p| p.is_file()),
        ..a.clone()
    };
    let mut lpm = Vec::new();
    for &n in a.v4_sizes.iter().filter(|&&n| n > 0) {
        lpm.extend(lpm_set(&a, false, n, &mut notes)?);
    }
    for &n in a.v6_sizes.iter().filter(|&&n| n > 0) {
        lpm.extend(lpm_set(&a, true, n, &mut notes)?);
    }
    let replay = if a.replay_frames > 0 {
        eprintln!("compare: replay against tcpdump");
        replay_case(&a, &mut notes)?
    } else {
        Value::Null
    };
    let sizes: Vec<usize> = a
        .classify_sizes
        .iter()
        .copied()
        .filter(|&n| n > 0)
        .collect();
    let classify = classify_rows(&sizes)?;
    let machine = machine_description();
    let mut md = markdown(&lpm, &replay, &notes, &machine);
    md += &classify_markdown(&classify);
    let all = json!({"provenance": crate::provenance(), "machine": machine, "lpm": lpm, "replay": replay, "classify": classify, "notes": notes});
    let write = |name: &str, text: String| {
        std::fs::write(a.out_dir.join(name), text).map_err(|e| format!("{name}: {e}"))
    };
    write(
        "compare.json",
        serde_json::to_string_pretty(&all).map_err(|e| e.to_string())?,
    )?;
    write("compare.md", md.clone())?;
    write(
        "lpm-ipv4-uniform.svg",
        svg(&lpm, "ipv4", "uniformly random"),
    )?;
    write(
        "lpm-ipv4-hit.svg",
        svg(&lpm, "ipv4", "every key inside a prefix"),
    )?;
    Ok(md)
}

/// CPU model, cores and memory, from /proc.
pub fn machine_description() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map_or("? GiB".into(), |k| format!("{:.0} GiB", k / 1048576.0));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores, {mem} RAM")
}
