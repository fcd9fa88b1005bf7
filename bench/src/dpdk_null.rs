//! `op25b-bench dpdk-null` (`dpdk` feature): frames per second per core of the whole
//! op25b pipeline on DPDK — `net_null` RX (or `net_pcap`'s, `--from-capture`), parse,
//! policy verdict, TX on a `net_null` port, dropped mbufs freed — against the C baseline
//! `bench/c/null_fwd` (RX, `rte_lpm_lookup_bulk` of the source of TCP port-25 frames, TX)
//! on the same virtual devices, the same frames and prefixes, and the same core.
//!
//! Both sides see the same traffic: the mbuf pool is filled with the same 64-byte frames
//! (`net_null` hands out pool mbufs without touching their data). In steady state the
//! per-lcore mempool cache hands the same 64 mbufs back every burst, on both sides, so a
//! run judges the same 64 frames over and over: hot in cache and branch-predictable (the
//! equal drop shares, 19/64, show both sides saw the same ones). Runs alternate between
//! op25b and C so a change of background load hits both; the result is the median per
//! side and their ratio. op25b runs in this process (the EAL starts once per process), the
//! C harness as a subprocess per run. The C harness comes in two forms, and by default
//! each op25b run is followed by one run of each (`--c-order` picks one): in arrival
//! order, the order op25b must keep (DESIGN.md: every frame leaves in order), and by class
//! (the frames not to port 25 first, as the simplest loop sends them; frames of one flow
//! keep their order, frames of different classes do not). Each form gets its own ratio.
//!
//! net_null's bursts are shaped by each side's own sending: the pool's cache hands out
//! first what was freed last, so a burst comes sorted: what that side dropped (freed after
//! the send), then what it sent on, each reversed. With `--from-capture` both sides
//! receive instead from `net_pcap` replaying a capture of the workload's first 1024
//! frames (`--capture-frames`, up to 4096) in a loop (`infinite_rx`): every burst holds
//! other frames, in the capture's random order, copied into fresh mbufs by the receive (so
//! they are in the core's cache, as net_null's are; the pool's filling is then
//! overwritten). A run then ends anywhere in the capture's loop, so the two sides' drop
//! shares agree to about a capture's frames over the run's, not exactly. The loop repeats
//! every 16 bursts at 1024 frames, often enough for the branch predictor to learn much of
//! each frame's outcome; at 4096 (64 bursts) it learns far less.
//!
//! `op25b-bench dpdk-swap` uses the same devices to time the worker's bursts while a
//! control thread swaps policies in ([`swap_run`]): the swap stall where a burst is the
//! appliance's real one, RX and TX included.
//!
//! Invariant: every number printed was measured in this run; the drop shares of both
//! sides are printed so a reader can see they decided the same frames.

use crate::rng::Rng;
use op25b_dataplane::policy::{AnyPrefix, OutboundSpec, Policy};
use op25b_dataplane::port::dpdk::{Direction, Eal};
use op25b_dataplane::port::pcap::PcapWriter;
use op25b_dataplane::wire::build::FrameBuilder;
use op25b_dataplane::worker::Worker;
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// In what order the C harness sends on the frames it forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum COrder {
    /// In the order they came, as op25b must (DESIGN.md: every frame leaves in order):
    /// the parse picks the port-25 frames, the lookup marks the dynamic ones in a bit
    /// mask, and one pass hands each frame of a burst that drops any to the send or the
    /// drop list (`null_fwd ... arrival`).
    Arrival,
    /// By class, as the simplest loop sends them: the frames not to port 25 first (picked
    /// in the parse), then those to port 25 whose source is not dynamic. Frames of one
    /// flow stay in order; frames of different classes do not.
    Class,
}

impl COrder {
    /// Its name in the JSON and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            COrder::Arrival => "arrival",
            COrder::Class => "class",
        }
    }

    /// How a result line names the C harness in this form.
    fn label(self) -> &'static str {
        match self {
            COrder::Arrival => "C rx→rte_lpm→tx in arrival order",
            COrder::Class => "C rx→rte_lpm→tx by class",
        }
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Args {
    /// Scratch folder (prefix and frame files, results).
    pub out_dir: PathBuf,
    /// Dynamic IPv4 prefixes in the policy (/16 to /24).
    pub prefixes: usize,
    /// Seconds per run.
    pub seconds: f64,
    /// Runs per side.
    pub runs: usize,
    /// The core both sides run on.
    pub core: usize,
    /// The C harness (`make -C bench/c null_fwd`); `None`: op25b only.
    pub c_harness: Option<PathBuf>,
    /// Random seed.
    pub seed: u64,
    /// op25b's policy counts blocked segments per dynamic prefix, as `op25b run` does.
    pub hit_counters: bool,
    /// Share of the frames that go to TCP port 25.
    pub smtp_share: f64,
    /// The forms of the C harness each op25b run is paired with, one run of each after
    /// it, in this order (at least one when there is a harness).
    pub c_orders: Vec<COrder>,
    /// Both sides receive from a capture of the frames replayed in a loop by net_pcap
    /// instead of from net_null (see the module doc).
    pub from_capture: bool,
    /// Frames in that capture (1 to [`DISTINCT_FRAMES`]): the workload's first ones.
    pub capture_frames: usize,
}

/// Writes `frames` as a classic pcap file at `path` (1 µs apart).
fn write_capture(path: &Path, frames: &[Vec<u8>]) -> Result<(), String> {
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let file = std::fs::File::create(path).map_err(err)?;
    let mut w = PcapWriter::new(std::io::BufWriter::new(file), false).map_err(err)?;
    for (i, f) in frames.iter().enumerate() {
        w.write(i as u64 * 1000, f).map_err(err)?;
    }
    w.finish().map_err(err)?;
    Ok(())
}

const FRAME_LEN: usize = 64;
/// Distinct frames of the workload, and the most a capture (`--capture-frames`) holds:
/// net_pcap holds each of its frames in an mbuf of the pool for the whole run, so at most
/// about half the pool's mbufs (8191 on either side).
pub const DISTINCT_FRAMES: usize = 4096;
/// The receiving device: `net_pcap0` replaying a capture (`--from-capture`), else
/// `net_null0`.
fn receiver(from_capture: bool) -> &'static str {
    if from_capture {
        "net_pcap0"
    } else {
        "net_null0"
    }
}

/// The EAL arguments of a side: port 0 receives, port 1 sends. Port 0 is `net_null0`, or
/// with a `capture`, `net_pcap0` replaying it in a loop (`infinite_rx`: the frames are
/// loaded into mbufs once, and each receive copies them into fresh ones, in the
/// capture's order).
fn eal_args(core: usize, prefix: &str, mem_mb: u32, capture: Option<&Path>) -> Vec<String> {
    let rx = receiver(capture.is_some());
    let rx = match capture {
        Some(c) => format!("--vdev={rx},rx_pcap={},infinite_rx=1", c.display()),
        None => format!("--vdev={rx},size=64"),
    };
    [
        "--no-huge",
        "--no-pci",
        "--no-shconf",
        "--log-level=lib.eal:warning",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([rx, "--vdev=net_null1,size=64".to_string()])
    .chain([
        "-l".into(),
        core.to_string(),
        "-m".into(),
        mem_mb.to_string(),
        format!("--file-prefix={prefix}-{}", std::process::id()),
    ])
    .collect()
}

/// Random IPv4 prefixes of length 16..=24 (host bits clear), and frames of which half come
/// from inside one of them; a share `smtp_share` of all frames go to port 25, the rest to 443.
fn workload(a: &Args) -> (Vec<(u32, u8)>, Vec<Vec<u8>>) {
    let mut rng = Rng::new(a.seed);
    let prefixes: Vec<(u32, u8)> = (0..a.prefixes)
        .map(|_| {
            let len = 16 + rng.below(9) as u8;
            let net = (rng.next_u64() as u32) & (u32::MAX << (32 - len));
            (net, len)
        })
        .collect();
    let frames = (0..DISTINCT_FRAMES)
        .map(|i| {
            let src = if rng.chance(0.5) && !prefixes.is_empty() {
                let (net, len) = prefixes[rng.below(prefixes.len() as u64) as usize];
                net | (rng.next_u64() as u32 & !(u32::MAX << (32 - len)))
            } else {
                rng.next_u64() as u32
            };
            let dst = rng.next_u64() as u32;
            let dport = if rng.chance(a.smtp_share) { 25 } else { 443 };
            let mut f = FrameBuilder::tcp(
                IpAddr::V4(Ipv4Addr::from(src)),
                IpAddr::V4(Ipv4Addr::from(dst)),
                1024 + i as u16,
                dport,
            )
            .build();
            f.resize(FRAME_LEN, 0);
            f
        })
        .collect();
    (prefixes, frames)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One run of the C harness in form `order`; (Mpps, dropped share).
fn c_run(
    a: &Args,
    exe: &Path,
    order: COrder,
    (prefixes, frames, capture): (&Path, &Path, Option<&Path>),
) -> Result<(f64, f64), String> {
    let out = std::process::Command::new(exe)
        .args(eal_args(a.core, "op25b-bench-c", 512, capture))
        .arg("--")
        .arg(prefixes)
        .arg(frames)
        .arg(a.seconds.to_string())
        .arg("1")
        .args((order == COrder::Arrival).then_some("arrival"))
        .output()
        .map_err(|e| {
            format!(
                "{}: {e} (build it with `make -C bench/c null_fwd`)",
                exe.display()
            )
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}{}",
            exe.display(),
            text,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let line = text
        .lines()
        .find(|l| l.starts_with("run 1 "))
        .ok_or_else(|| format!("{}: no result line in {text:?}", exe.display()))?;
    let w: Vec<&str> = line.split_whitespace().collect();
    match (
        w.get(3).and_then(|x| x.parse().ok()),
        w.get(5).and_then(|x| x.parse().ok()),
    ) {
        (Some(mpps), Some(share)) => Ok((mpps, share)),
        _ => Err(format!("{}: cannot read {line:?}", exe.display())),
    }
}

/// Runs the benchmark; prints a line per run and returns the results as JSON.
pub fn run(a: &Args) -> Result<serde_json::Value, String> {
    // (NaN and infinity too: a run that never ends.)
    if a.runs == 0 || !(a.seconds > 0.0 && a.seconds.is_finite()) {
        return Err("--runs and --seconds must be positive (and --seconds finite)".into());
    }
    if a.from_capture && !(1..=DISTINCT_FRAMES).contains(&a.capture_frames) {
        return Err(format!(
            "--capture-frames {}: the capture holds 1 to {DISTINCT_FRAMES} frames",
            a.capture_frames
        ));
    }
    if !(0.0..=1.0).contains(&a.smtp_share) {
        return Err(format!(
            "--smtp-share {}: must be a share between 0 and 1",
            a.smtp_share
        ));
    }
    if a.c_harness.is_some() && a.c_orders.is_empty() {
        return Err("no form of the C harness to run".into());
    }
    // Before the first run, not after it.
    if let Some(exe) = &a.c_harness {
        if !exe.is_file() {
            return Err(format!(
                "--c-harness {}: no such file (build it with `make -C bench/c null_fwd`, or give --c-harness none)",
                exe.display()
            ));
        }
    }
    std::fs::create_dir_all(&a.out_dir).map_err(|e| format!("{}: {e}", a.out_dir.display()))?;
    let (prefixes, frames) = workload(a);
    let prefix_file = a.out_dir.join("prefixes.txt");
    let frame_file = a.out_dir.join("frames.bin");
    let text: String = prefixes
        .iter()
        .map(|(n, l)| format!("{}/{l}\n", Ipv4Addr::from(*n)))
        .collect();
    std::fs::write(&prefix_file, &text).map_err(|e| format!("{}: {e}", prefix_file.display()))?;
    std::fs::write(&frame_file, frames.concat())
        .map_err(|e| format!("{}: {e}", frame_file.display()))?;
    let capture = if a.from_capture {
        let path = a.out_dir.join("frames.pcap");
        write_capture(&path, &frames[..a.capture_frames.min(frames.len())])?;
        Some(path)
    } else {
        None
    };

    let dynamic = text
        .lines()
        .map(|l| l.parse::<AnyPrefix>())
        .collect::<Result<Vec<_>, _>>()?;
    let spec = OutboundSpec {
        ports: vec![25],
        dynamic,
        ..OutboundSpec::default()
    };
    // As `op25b run` builds it for backend = "dpdk": the IPv4 source table direct.
    let mut policy = Policy::build_direct(spec, 1).map_err(|e| e.to_string())?.0;
    if a.hit_counters {
        policy = policy.with_hit_counters(1);
    }
    policy.warm();
    let handle = op25b_dataplane::worker::PolicyHandle::from_pointee(policy);

    let mut eal = Eal::init(&eal_args(a.core, "op25b-bench", 128, capture.as_deref()))
        .map_err(|e| e.to_string())?;
    let mut wires = eal
        .open_wire(receiver(capture.is_some()), "net_null1", 1, 64, None)
        .map_err(|e| e.to_string())?;
    let mut wire = wires.pop().ok_or("no DPDK wire")?;
    wire.set_direction(Direction::AccessToCore);
    let filled = eal.fill_pool(&frames);
    if let Err(e) = op25b_dataplane::port::sys::pin_current_thread(a.core) {
        return Err(format!("cannot pin to core {}: {e}", a.core));
    }
    let mut worker = Worker::new(64);
    // Warm-up: caches, the pool's per-lcore cache, the policy's tables.
    let t = Instant::now();
    while t.elapsed().as_secs_f64() < 0.2 {
        wire.poll(&mut worker, &handle);
    }

    let files = (
        prefix_file.as_path(),
        frame_file.as_path(),
        capture.as_deref(),
    );
    let mut ours = Vec::new();
    // Per form of the C harness (a.c_orders): its runs' Mpps and last dropped share.
    let c_forms = if a.c_harness.is_some() {
        &a.c_orders[..]
    } else {
        &[]
    };
    let mut theirs: Vec<(Vec<f64>, f64)> = vec![(Vec::new(), 0.0); c_forms.len()];
    let mut frames_per_run = Vec::new();
    let mut our_share = 0.0;
    for r in 0..a.runs {
        let before = worker.counters().clone();
        let t = Instant::now();
        loop {
            for _ in 0..1024 {
                wire.poll(&mut worker, &handle);
            }
            if t.elapsed().as_secs_f64() >= a.seconds {
                break;
            }
        }
        let secs = t.elapsed().as_secs_f64();
        let c = worker.counters();
        let rx = c.rx - before.rx;
        let mpps = rx as f64 / secs / 1e6;
        our_share = (c.dropped - before.dropped) as f64 / rx.max(1) as f64;
        ours.push(mpps);
        frames_per_run.push(rx);
        // Progress on stderr: the results (JSON file, summary) come after every run.
        let mut line = format!(
            "run {}: op25b {mpps:.3} Mpps (dropped share {our_share:.4})",
            r + 1
        );
        if let Some(exe) = &a.c_harness {
            for (&order, (mpps, share)) in c_forms.iter().zip(&mut theirs) {
                let (m, s) = c_run(a, exe, order, files)?;
                line += &format!(", {} {m:.3} Mpps (dropped share {s:.4})", order.label());
                mpps.push(m);
                *share = s;
            }
        }
        eprintln!("{line}");
    }
    // Each run of op25b is followed by one of each form of the C harness: a pair sees
    // about the same machine, so the ratio within each pair is steadier than that of the
    // two medians.
    let our_median = median(&mut ours.clone());
    let mut summary = format!(
        "median of {} runs of {} s on core {}: op25b {our_median:.3} Mpps",
        a.runs, a.seconds, a.core
    );
    let mut c = serde_json::Map::new();
    for (&order, (mpps, share)) in c_forms.iter().zip(&theirs) {
        let pairs: Vec<f64> = ours.iter().zip(mpps).map(|(o, t)| o / t).collect();
        let pair_median = median(&mut pairs.clone());
        let their_median = median(&mut mpps.clone());
        summary += &format!(
            "; {} {their_median:.3} Mpps, ratio {:.3}x, {}",
            order.label(),
            our_median / their_median,
            pair_summary(&pairs, pair_median)
        );
        c.insert(
            order.name().into(),
            json!({
                "mpps": mpps,
                "median_mpps": their_median,
                "dropped_share": share,
                "ratio": our_median / their_median,
                "pair_ratios": pairs,
                "pair_ratio_median": pair_median,
            }),
        );
    }
    crate::sayln!("{summary}");
    Ok(json!({
        "bench": "dpdk-null",
        "prefixes": a.prefixes,
        "distinct_frames": DISTINCT_FRAMES,
        "frame_bytes": FRAME_LEN,
        "pool_mbufs_filled": filled,
        "rx_device": if a.from_capture { "net_pcap (infinite_rx)" } else { "net_null" },
        "capture_frames": a.from_capture.then_some(a.capture_frames),
        "seconds_per_run": a.seconds,
        "runs": a.runs,
        "core": a.core,
        "seed": a.seed,
        "smtp_share": a.smtp_share,
        "hit_counters": a.hit_counters,
        "op25b_mpps": ours,
        "op25b_frames": frames_per_run,
        "op25b_median_mpps": our_median,
        "op25b_dropped_share": our_share,
        // Per form of the C harness ("arrival", "class"), each run paired with op25b's.
        "c": c,
        "tx_refused": wire.tx_refused,
        // net_null's frames are in the core's cache: op25b does not ask for them ahead.
        "op25b_prefetches": wire.prefetches()[0],
    }))
}

/// "median of the N pairs R (lowest L, highest H)", ratios op25b / C.
fn pair_summary(pairs: &[f64], median: f64) -> String {
    let (lo, hi) = pairs
        .iter()
        .fold((f64::INFINITY, 0f64), |(l, h), &r| (l.min(r), h.max(r)));
    format!(
        "median of the {} pairs {median:.3}x (lowest {lo:.3}x, highest {hi:.3}x)",
        pairs.len()
    )
}

/// `dpdk-null --rounds N`: the benchmark in N processes of its own, one after another,
/// their run pairs pooled. The C harness starts a process per run, so its runs sample
/// many address-space layouts (ASLR) and its median averages over them; op25b's runs
/// share the one process's layout, which moves its rate by 1–2% from one process to the
/// next (bench/results/dpdk-null.md). Rounds give op25b several layouts too. `args` are
/// this process's own (after the program name), from which `--rounds` and `--out-dir`
/// are dropped; round k writes into `out_dir/round-k`. Returns the pooled results.
pub fn rounds(
    args: &[std::ffi::OsString],
    rounds: usize,
    out_dir: &Path,
) -> Result<serde_json::Value, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut keep = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let text = arg.to_string_lossy();
        if text == "--rounds" || text == "--out-dir" {
            it.next();
        } else if !(text.starts_with("--rounds=") || text.starts_with("--out-dir=")) {
            keep.push(arg.clone());
        }
    }
    // A pooled file left from an earlier run must not pass for this one's if a round fails.
    let _ = std::fs::remove_file(out_dir.join("dpdk-null.json"));
    // Per form of the C harness the first round ran, by name: (name, every pair, each
    // round's pair median).
    let mut forms: Vec<(String, Vec<f64>, Vec<f64>)> = Vec::new();
    let mut same = serde_json::Map::new();
    for k in 1..=rounds {
        let dir = out_dir.join(format!("round-{k}"));
        let status = std::process::Command::new(&exe)
            .arg("dpdk-null")
            .args(&keep)
            .arg("--out-dir")
            .arg(&dir)
            .status()
            .map_err(|e| format!("{}: {e}", exe.display()))?;
        if !status.success() {
            return Err(format!("round {k} of {rounds} failed ({status})"));
        }
        let file = dir.join("dpdk-null.json");
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        let c = v["c"].as_object().cloned().unwrap_or_default();
        if k == 1 {
            forms = c
                .keys()
                .map(|name| (name.clone(), Vec::new(), Vec::new()))
                .collect();
            if forms.is_empty() {
                return Err(format!(
                    "{}: no op25b/C pairs (rounds need the C harness)",
                    file.display()
                ));
            }
            // What every round ran against (the same arguments each time).
            for key in ["rx_device", "capture_frames", "smtp_share", "prefixes"] {
                same.insert(key.to_string(), v[key].clone());
            }
        }
        for (name, pairs, per_round) in &mut forms {
            let round: Vec<f64> = c
                .get(name.as_str())
                .and_then(|f| f["pair_ratios"].as_array())
                .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
                .unwrap_or_default();
            if round.is_empty() {
                return Err(format!(
                    "{}: no op25b/C pairs in {name} order (rounds need the C harness)",
                    file.display()
                ));
            }
            per_round.push(median(&mut round.clone()));
            pairs.extend(round);
        }
    }
    let mut c = serde_json::Map::new();
    for (name, pairs, per_round) in &forms {
        let pooled = median(&mut pairs.clone());
        crate::sayln!(
            "{rounds} rounds, C in {name} order: pair medians per round {}; pooled, {}",
            per_round
                .iter()
                .map(|r| format!("{r:.3}x"))
                .collect::<Vec<_>>()
                .join(" "),
            pair_summary(pairs, pooled)
        );
        c.insert(
            name.clone(),
            json!({
                "round_pair_ratio_medians": per_round,
                "pair_ratios": pairs,
                "pair_ratio_median": pooled,
            }),
        );
    }
    let mut v = json!({
        "bench": "dpdk-null",
        "rounds": rounds,
        "round_dirs": (1..=rounds).map(|k| format!("round-{k}")).collect::<Vec<_>>(),
        "c": c,
    });
    if let Some(o) = v.as_object_mut() {
        o.extend(same);
    }
    Ok(v)
}

/// What `dpdk-swap` runs.
#[derive(Clone, Debug)]
pub struct SwapArgs {
    /// Prefixes per policy (the same BNG-like pools as `swap`, 30% IPv6).
    pub prefixes: usize,
    /// Swaps to make.
    pub swaps: usize,
    /// The worker's core.
    pub core: usize,
    /// The control thread's core (building, warming, publishing, the reaper).
    pub control_core: usize,
    /// Policies of the coarse pools only (`--coarse-pools`: direct IPv4 source tables).
    pub coarse_pools: bool,
}

/// `op25b-bench dpdk-swap`: the worker stall of a policy swap on the live DPDK path, where
/// a burst is what the appliance's worker really does (net_null RX of 64 frames, judge,
/// TX, free), at line rate, while a control thread on another core builds, warms and swaps
/// in policies of N prefixes ([`crate::swap::on_live_path`]). net_null recycles the same
/// 64 mbufs, so every burst judges the same frames.
pub fn swap_run(a: &SwapArgs) -> Result<serde_json::Value, String> {
    use crate::swap::{on_live_path, LiveArgs};
    if a.swaps == 0 {
        return Err("--swaps 0: nothing would be measured; give at least 1".into());
    }
    let frames = crate::swap::live_frames(a.prefixes, DISTINCT_FRAMES, FRAME_LEN);
    let mut eal =
        Eal::init(&eal_args(a.core, "op25b-bench-swap", 128, None)).map_err(|e| e.to_string())?;
    let mut wires = eal
        .open_wire("net_null0", "net_null1", 1, 64, None)
        .map_err(|e| e.to_string())?;
    let mut wire = wires.pop().ok_or("no DPDK wire")?;
    wire.set_direction(Direction::AccessToCore);
    eal.fill_pool(&frames);
    if let Err(e) = op25b_dataplane::port::sys::pin_current_thread(a.core) {
        return Err(format!("cannot pin to core {}: {e}", a.core));
    }
    let live = LiveArgs {
        prefixes: a.prefixes,
        swaps: a.swaps,
        control_core: a.control_core,
        burst: 64,
        coarse_pools: a.coarse_pools,
        direct: true,
    };
    let mut v = on_live_path(&live, |w, h| (wire.poll(w, h), None))?;
    eprintln!(
        "{} swaps of {}-prefix policies on the DPDK path: first burst under the new policy {} bursts extra (median; p50 burst {} ns), control windows {}",
        v["swaps_measured"],
        a.prefixes,
        v["first_burst_extra_vs_bursts_before"]["swap"]["median"],
        v["burst_ns_p50"],
        v["first_burst_extra_vs_bursts_before"]["control"]["median"],
    );
    v["bench"] = json!("dpdk-swap");
    v["core"] = json!(a.core);
    v["frame_bytes"] = json!(FRAME_LEN);
    Ok(v)
}
