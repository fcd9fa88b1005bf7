//! `op25b-bench`: the benchmark harness CLI. `synth` writes reproducible synthetic captures
//! (the bundled sample is made with it); `extract-frames` turns captures into fuzzing seeds.
//!
//! Invariant: every figure or file it produces is reproducible from its command line.

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use op25b_bench::profile::{Encap, Generator, Pools, Profile};
use op25b_dataplane::lpm::Layout;
use op25b_dataplane::policy::AnyPrefix;
use op25b_dataplane::port::pcap::PcapWriter;
use std::io::{BufRead, BufWriter};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "op25b-bench", version, about = "op25b benchmark harness")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a synthetic Ethernet pcap drawn from prefix-list files.
    Synth {
        /// Dynamic pool prefix files (one prefix per line, `#` comments).
        #[arg(long, value_name = "FILE", required = true)]
        dynamic: Vec<PathBuf>,
        /// Exempt prefix files.
        #[arg(long, value_name = "FILE")]
        exempt: Vec<PathBuf>,
        /// Relay prefix files.
        #[arg(long, value_name = "FILE")]
        relays: Vec<PathBuf>,
        /// Frames to write.
        #[arg(long, default_value_t = 1000)]
        frames: u64,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Share of IPv6 frames.
        #[arg(long, default_value_t = 0.3)]
        v6_share: f64,
        /// Share of TCP port-25 frames.
        #[arg(long, default_value_t = 0.2)]
        smtp_share: f64,
        /// Payload bytes per TCP frame, or "imix".
        #[arg(long, default_value = "0")]
        payload: String,
        /// Encapsulations to draw from (comma-separated: plain,vlan,qinq,pppoe,pppoe-pfc,qinq-pppoe).
        #[arg(long, default_value = "plain,vlan,qinq,pppoe,pppoe-pfc,qinq-pppoe")]
        encap: String,
        /// Output pcap.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Longest-prefix-match throughput on a prefix file and an address file.
    Lpm {
        /// Prefixes, one per line (`#` comments).
        #[arg(long, value_name = "FILE")]
        prefixes: PathBuf,
        /// Addresses to look up, one per line (IPv4 and IPv6 are measured apart).
        #[arg(long, value_name = "FILE")]
        addrs: PathBuf,
        /// Passes over the addresses per repetition.
        #[arg(long, default_value_t = 3)]
        iters: u32,
        /// Repetitions (the median is reported).
        #[arg(long, default_value_t = 5)]
        reps: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Print each address's value (-1: no match) instead of measuring.
        #[arg(long)]
        dump: bool,
        /// First level of the IPv4 table: `auto` (as op25b builds it), `root` (root and
        /// leaves), `lines` (one cache line per 2^14 addresses) or `direct` (DIR-24-8).
        #[arg(long, default_value = "auto", value_parser = ["auto", "root", "lines", "direct"])]
        layout: String,
    },
    /// Full classification (parse + lookups + verdict) of in-memory bursts.
    Classify {
        /// Dynamic prefixes in the policy (1k..1M).
        #[arg(long, default_value_t = 100_000)]
        prefixes: usize,
        /// Distinct frames held in memory.
        #[arg(long, default_value_t = 1 << 20)]
        frames: usize,
        /// Frames per burst.
        #[arg(long, default_value_t = 64)]
        burst: usize,
        /// Worker threads.
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Passes over all frames per worker.
        #[arg(long, default_value_t = 10)]
        passes: u32,
        /// Share of IPv6 frames (and of IPv6 prefixes).
        #[arg(long, default_value_t = 0.3)]
        v6_share: f64,
        /// Share of TCP port-25 frames.
        #[arg(long, default_value_t = 0.2)]
        smtp_share: f64,
        /// Encapsulations (comma-separated: plain,vlan,qinq,pppoe,pppoe-pfc,qinq-pppoe).
        #[arg(long, default_value = "plain,vlan,qinq,pppoe,pppoe-pfc,qinq-pppoe")]
        encap: String,
        /// Payload bytes per TCP frame (0: 64-byte frames), or "imix".
        #[arg(long, default_value = "0")]
        payload: String,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Give the policy per-prefix hit counters, as `op25b run` and `replay` do.
        #[arg(long)]
        hit_counters: bool,
    },
    /// Our LPM against DPDK rte_lpm/rte_lpm6 (C harness), poptrie and prefix-trie on the same
    /// files, and op25b replay against tcpdump with a BPF filter; writes JSON, Markdown, SVG.
    Compare {
        /// Output folder (data files and results).
        #[arg(long, default_value = "out/compare")]
        out_dir: PathBuf,
        /// IPv4 table sizes (comma-separated; 0 skips them).
        #[arg(
            long,
            default_value = "1000,10000,100000,1000000",
            value_delimiter = ','
        )]
        v4_sizes: Vec<usize>,
        /// IPv6 table sizes (comma-separated; 0 skips them).
        #[arg(long, default_value = "100000", value_delimiter = ',')]
        v6_sizes: Vec<usize>,
        /// Addresses per key set.
        #[arg(long, default_value_t = 4_000_000)]
        addrs: usize,
        /// Repetitions per in-process measurement.
        #[arg(long, default_value_t = 5)]
        reps: u32,
        /// The C/DPDK harness (built by scripts/compare.sh); "none" skips DPDK.
        #[arg(long, default_value = "bench/c/lpm_bench")]
        c_harness: PathBuf,
        /// Frames in the replay comparison capture (0 skips it).
        #[arg(long, default_value_t = 2_000_000)]
        replay_frames: u64,
        /// The op25b binary for the replay comparison.
        #[arg(long, default_value = "target/release/op25b")]
        op25b: PathBuf,
        /// Policy sizes for full-classification runs (comma-separated; 0 skips them).
        #[arg(long, default_value = "1000,100000,1000000", value_delimiter = ',')]
        classify_sizes: Vec<usize>,
    },
    /// Worker stall while the control thread swaps in policies of N prefixes.
    Swap {
        /// Prefixes per policy.
        #[arg(long, default_value_t = 1_000_000)]
        prefixes: usize,
        /// Swaps to make.
        #[arg(long, default_value_t = 5)]
        swaps: usize,
        /// Frames per burst.
        #[arg(long, default_value_t = 64)]
        burst: usize,
        /// Publish without first pulling the new tables into cache.
        #[arg(long)]
        cold: bool,
        /// Warm the whole new policy only, not also the blocks the worker looked up while
        /// it was built (what `op25b run` did before hot-block warming).
        #[arg(long)]
        no_hot: bool,
        /// Distinct bursts the worker cycles through (1024: the table lines its traffic
        /// needs stay in the worker's cache between swaps; 16384, a million distinct frames,
        /// is more like a BNG's many subscribers).
        #[arg(long, default_value_t = 1024)]
        cycle: usize,
        /// Keep only the IPv4 pools of /24 or shorter (no IPv4 exempt hosts), so the
        /// policies' IPv4 source tables are built direct (DIR-24-8) instead of compact.
        #[arg(long)]
        coarse_pools: bool,
    },
    /// Send the frames of a capture out of an interface (AF_PACKET, sendmmsg batches).
    Blast {
        /// Interface to send on.
        #[arg(long)]
        iface: String,
        /// Capture whose frames are sent.
        #[arg(long)]
        input: PathBuf,
        /// Times to send the whole capture.
        #[arg(long, default_value_t = 1)]
        loops: u64,
        /// Frames per second (0: as fast as the kernel takes them).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Stamp each TCP frame's sequence number with the send time (for `sink --latency`).
        #[arg(long)]
        stamp: bool,
    },
    /// Count (and optionally record) the frames arriving on an interface.
    Sink {
        /// Interface to listen on.
        #[arg(long)]
        iface: String,
        /// Longest time to listen.
        #[arg(long, default_value_t = 30.0)]
        seconds: f64,
        /// Stop after this much silence once traffic has started.
        #[arg(long, default_value_t = 500)]
        idle_ms: u64,
        /// Record what arrives to this pcap (nanosecond timestamps).
        #[arg(long)]
        record: Option<PathBuf>,
        /// Measure one-way latency of frames stamped by `blast --stamp`.
        #[arg(long)]
        latency: bool,
    },
    /// The live path on the veth testbed: op25b (1 and 2 workers) against a Linux bridge
    /// with the same policy in nftables, 64-byte and IMIX frames (needs root).
    Veth {
        /// Scratch folder (captures, config, results).
        #[arg(long, default_value = "out/veth")]
        out_dir: PathBuf,
        /// Dynamic prefixes in the policy.
        #[arg(long, default_value_t = 10_000)]
        prefixes: usize,
        /// Distinct frames in the capture.
        #[arg(long, default_value_t = 100_000)]
        frames: usize,
        /// Times the capture is sent per run.
        #[arg(long, default_value_t = 10)]
        loops: u64,
        /// The op25b binary.
        #[arg(long, default_value = "target/release/op25b")]
        op25b: PathBuf,
        /// Also run the DPDK backend on net_af_packet devices (op25b built with --features dpdk).
        #[arg(long)]
        dpdk: bool,
    },
    /// The worker stall of a policy swap on the live AF_PACKET (or AF_XDP) path on the veth
    /// testbed, at full load: the first bursts under each new policy against the bursts
    /// before them (needs root).
    #[cfg(target_os = "linux")]
    LiveSwap {
        #[command(flatten)]
        args: op25b_bench::live_swap::Args,
        /// The worker side, which `live-swap` runs inside the appliance namespace.
        #[arg(long, hide = true)]
        worker: bool,
    },
    /// Frames per second per core of the whole pipeline on DPDK net_null ports (or frames
    /// from a capture, `--from-capture`), against the C rx → rte_lpm → tx baseline
    /// (bench/c/null_fwd) on the same devices and core.
    #[cfg(all(feature = "dpdk", target_os = "linux"))]
    DpdkNull {
        /// Scratch folder (prefixes, frames, result JSON).
        #[arg(long, default_value = "out/dpdk-null")]
        out_dir: PathBuf,
        /// Dynamic IPv4 prefixes in the policy.
        #[arg(long, default_value_t = 100_000)]
        prefixes: usize,
        /// Seconds per run.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Runs per side (the median is reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// The core both sides run on.
        #[arg(long, default_value_t = 1)]
        core: usize,
        /// The C baseline; "none" skips it.
        #[arg(long, default_value = "bench/c/null_fwd")]
        c_harness: PathBuf,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Give op25b's policy per-prefix hit counters, as `op25b run` does (the C harness
        /// counts nothing per prefix).
        #[arg(long)]
        hit_counters: bool,
        /// Share of the frames that go to TCP port 25 (the rest to 443).
        #[arg(long, default_value_t = 0.5)]
        smtp_share: f64,
        /// The forms of the C harness each op25b run is paired with: `arrival` sends the
        /// frames it forwards in the order they came, as op25b must; `class` those not to
        /// port 25 first, as the simplest loop does; `both` runs one of each after every
        /// op25b run.
        #[arg(long, default_value = "both", value_parser = ["both", "arrival", "class"])]
        c_order: String,
        /// Both sides receive the frames from a capture replayed in a loop (net_pcap,
        /// infinite_rx: copied into fresh mbufs in the capture's random order) instead of
        /// net_null's recycled pool mbufs (the same 64, in an order each side's own sending
        /// shapes).
        #[arg(long)]
        from_capture: bool,
        /// With --from-capture: how many of the workload's frames the capture holds
        /// (1 to 4096). Its loop repeats every this many frames; a short one lets the
        /// branch predictor learn each frame's outcome, a long one does not.
        #[arg(long, default_value_t = 1024, requires = "from_capture")]
        capture_frames: usize,
        /// Run it in this many processes of its own, one after another, and pool their
        /// op25b/C run pairs (each process has its own address-space layout, as each run
        /// of the C harness has).
        #[arg(long, default_value_t = 1)]
        rounds: usize,
    },
    /// The worker stall of a policy swap on the live DPDK path (net_null, at line rate):
    /// the first burst under each new policy against the bursts before it.
    #[cfg(all(feature = "dpdk", target_os = "linux"))]
    DpdkSwap {
        /// Prefixes per policy.
        #[arg(long, default_value_t = 1_000_000)]
        prefixes: usize,
        /// Swaps to make.
        #[arg(long, default_value_t = 15)]
        swaps: usize,
        /// The worker's core.
        #[arg(long, default_value_t = 1)]
        core: usize,
        /// The control thread's core.
        #[arg(long, default_value_t = 0)]
        control_core: usize,
        /// As `swap --coarse-pools`: direct IPv4 source tables.
        #[arg(long)]
        coarse_pools: bool,
    },
    /// Write every Ethernet frame of some captures as one file each (fuzzing seeds).
    /// Captures that are not Ethernet pcap/pcapng are skipped with a note.
    ExtractFrames {
        /// Folder to write `NAME-N.bin` files into.
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
        /// The captures.
        #[arg(required = true)]
        captures: Vec<PathBuf>,
    },
}

/// A result with the [`op25b_bench::provenance`] of this run added.
fn with_provenance(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(o) = v.as_object_mut() {
        o.insert("provenance".into(), op25b_bench::provenance());
    }
    v
}

fn extract_frames(out_dir: &Path, captures: &[PathBuf]) -> Result<(), String> {
    use op25b_dataplane::port::pcap::{CaptureReader, Next};
    std::fs::create_dir_all(out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let (mut files, mut frames) = (0, 0);
    for c in captures {
        let f = match std::fs::File::open(c) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("skipping {}: {e}", c.display());
                continue;
            }
        };
        let mut r = match CaptureReader::open(std::io::BufReader::new(f)) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("skipping {}: {e}", c.display());
                continue;
            }
        };
        files += 1;
        let stem = c
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut burst = op25b_dataplane::port::Burst::new(1);
        for n in 0.. {
            burst.clear();
            match r.next_into(&mut burst) {
                Ok(Next::Frame) => {
                    let p = out_dir.join(format!("{stem}-{n}.bin"));
                    std::fs::write(&p, burst.frame(0))
                        .map_err(|e| format!("{}: {e}", p.display()))?;
                    frames += 1;
                }
                Ok(Next::Meta) => {}
                Ok(Next::End) | Err(_) => break,
            }
        }
    }
    op25b_bench::sayln!(
        "{frames} frames from {files} captures written to {}",
        out_dir.display()
    );
    Ok(())
}

/// Reads prefix-list files: one prefix per line, `#` comments and blank lines ignored.
fn prefixes(files: &[PathBuf]) -> Result<Vec<AnyPrefix>, String> {
    let mut all = Vec::new();
    for path in files {
        let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
            let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
            let text = line.split('#').next().unwrap_or("").trim();
            if !text.is_empty() {
                all.push(
                    text.parse()
                        .map_err(|e| format!("{}:{}: {text:?}: {e}", path.display(), i + 1))?,
                );
            }
        }
    }
    Ok(all)
}

fn encaps(list: &str) -> Result<Vec<Encap>, String> {
    list.split(',')
        .map(|e| Encap::parse(e.trim()).ok_or(format!("unknown encapsulation {e:?}")))
        .collect()
}

fn payload_size(text: &str) -> Result<Option<usize>, String> {
    match text {
        "imix" => Ok(None),
        n => n
            .parse()
            .map(Some)
            .map_err(|_| format!("--payload {n:?}: a byte count or \"imix\"")),
    }
}

fn synth(pools: Pools, profile: Profile, frames: u64, seed: u64, out: &Path) -> Result<(), String> {
    let file = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut w = PcapWriter::new(BufWriter::new(file), false).map_err(|e| e.to_string())?;
    let mut g = Generator::new(&pools, profile, seed);
    for i in 0..frames {
        w.write(1_700_000_000_000_000_000 + i * 10_000, &g.frame())
            .map_err(|e| format!("{}: {e}", out.display()))?;
    }
    w.finish().map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Synth {
            dynamic,
            exempt,
            relays,
            frames,
            seed,
            v6_share,
            smtp_share,
            payload,
            encap,
            out,
        } => (|| {
            let pools = Pools {
                dynamic: prefixes(&dynamic)?,
                exempt: prefixes(&exempt)?,
                relays: prefixes(&relays)?,
            };
            let encaps = encap
                .split(',')
                .map(|e| Encap::parse(e.trim()).ok_or(format!("unknown encapsulation {e:?}")))
                .collect::<Result<Vec<_>, _>>()?;
            let payload = match payload.as_str() {
                "imix" => None,
                n => Some(
                    n.parse()
                        .map_err(|_| format!("--payload {n:?}: a byte count or \"imix\""))?,
                ),
            };
            let profile = Profile {
                v6_share,
                smtp_share,
                encaps,
                payload,
                ..Profile::default()
            };
            synth(pools, profile, frames, seed, &out)
        })(),
        Command::Swap {
            prefixes,
            swaps,
            burst,
            cold,
            no_hot,
            cycle,
            coarse_pools,
        } => [("--swaps", swaps), ("--burst", burst), ("--cycle", cycle)]
            .into_iter()
            .find(|&(_, v)| v == 0)
            .map_or(Ok(()), |(name, _)| {
                Err(format!(
                    "{name} 0: nothing would be measured; give at least 1"
                ))
            })
            .and_then(|()| {
                op25b_bench::swap::run(
                    prefixes,
                    swaps,
                    burst,
                    cycle,
                    !cold,
                    !cold && !no_hot,
                    coarse_pools,
                )
            })
            .map(with_provenance)
            .and_then(|v| serde_json::to_string_pretty(&v).map_err(|e| e.to_string()))
            .map(|t| op25b_bench::sayln!("{t}")),
        Command::Blast {
            iface,
            input,
            loops,
            rate,
            stamp,
        } => op25b_bench::wire_io::load_frames(&input)
            .and_then(|mut f| op25b_bench::wire_io::blast(&iface, &mut f, loops, rate, stamp))
            .map(|v| op25b_bench::sayln!("{v}")),
        Command::Sink {
            iface,
            seconds,
            idle_ms,
            record,
            latency,
        } => op25b_bench::wire_io::sink(&iface, seconds, idle_ms, record.as_deref(), latency)
            .map(|v| op25b_bench::sayln!("{v}")),
        #[cfg(all(feature = "dpdk", target_os = "linux"))]
        Command::DpdkNull {
            out_dir,
            prefixes,
            seconds,
            runs,
            core,
            c_harness,
            seed,
            hit_counters,
            smtp_share,
            c_order,
            from_capture,
            capture_frames,
            rounds,
        } => {
            let write = |v: serde_json::Value| {
                let p = out_dir.join("dpdk-null.json");
                std::fs::write(&p, format!("{v:#}\n")).map_err(|e| format!("{}: {e}", p.display()))
            };
            if rounds == 0 {
                Err("--rounds 0: nothing would run; give at least 1".to_string())
            } else if rounds > 1 && c_harness.as_os_str() == "none" {
                Err("--rounds pools op25b/C run pairs: it needs the C harness".to_string())
            } else if rounds > 1 {
                // This process's own arguments, after the program and subcommand names.
                let own: Vec<_> = std::env::args_os().skip(2).collect();
                op25b_bench::dpdk_null::rounds(&own, rounds, &out_dir)
                    .map(with_provenance)
                    .and_then(write)
            } else {
                let args = op25b_bench::dpdk_null::Args {
                    smtp_share,
                    out_dir: out_dir.clone(),
                    prefixes,
                    seconds,
                    runs,
                    core,
                    c_harness: (c_harness.as_os_str() != "none").then_some(c_harness),
                    seed,
                    hit_counters,
                    c_orders: {
                        use op25b_bench::dpdk_null::COrder;
                        match c_order.as_str() {
                            "arrival" => vec![COrder::Arrival],
                            "class" => vec![COrder::Class],
                            _ => vec![COrder::Arrival, COrder::Class],
                        }
                    },
                    from_capture,
                    capture_frames,
                };
                op25b_bench::dpdk_null::run(&args)
                    .map(with_provenance)
                    .and_then(write)
            }
        }
        #[cfg(all(feature = "dpdk", target_os = "linux"))]
        Command::DpdkSwap {
            prefixes,
            swaps,
            core,
            control_core,
            coarse_pools,
        } => {
            op25b_bench::dpdk_null::swap_run(&op25b_bench::dpdk_null::SwapArgs {
                prefixes,
                swaps,
                core,
                control_core,
                coarse_pools,
            })
        }
        .map(with_provenance)
        .map(|v| op25b_bench::sayln!("{v:#}")),
        #[cfg(target_os = "linux")]
        Command::LiveSwap { args, worker } => {
            if worker {
                op25b_bench::live_swap::worker(&args).map(|v| op25b_bench::sayln!("{v}"))
            } else {
                op25b_bench::live_swap::run(&args)
                    .map(with_provenance)
                    .map(|v| op25b_bench::sayln!("{v:#}"))
            }
        }
        Command::Veth {
            out_dir,
            prefixes,
            frames,
            loops,
            op25b,
            dpdk,
        } => {
            let args = op25b_bench::veth::VethArgs {
                out_dir: out_dir.clone(),
                prefixes,
                frames,
                loops,
                op25b,
                dpdk,
            };
            op25b_bench::veth::run(&args).and_then(|v| {
                let md = op25b_bench::veth::markdown(&v);
                std::fs::write(out_dir.join("veth.json"), v.to_string())
                    .map_err(|e| e.to_string())?;
                std::fs::write(out_dir.join("veth.md"), &md).map_err(|e| e.to_string())?;
                op25b_bench::sayln!("{md}");
                Ok(())
            })
        }
        Command::ExtractFrames { out_dir, captures } => extract_frames(&out_dir, &captures),
        Command::Classify {
            prefixes,
            frames,
            burst,
            workers,
            passes,
            v6_share,
            smtp_share,
            encap,
            payload,
            seed,
            hit_counters,
        } => (|| {
            let profile = Profile {
                v6_share,
                smtp_share,
                encaps: encaps(&encap)?,
                payload: payload_size(&payload)?,
                ..Profile::default()
            };
            let args = op25b_bench::classify::ClassifyArgs {
                prefixes,
                frames,
                burst,
                workers,
                passes,
                profile,
                seed,
                hit_counters,
            };
            let r = with_provenance(op25b_bench::classify::run(&args)?);
            op25b_bench::sayln!(
                "{}",
                serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?
            );
            Ok(())
        })(),
        Command::Compare {
            out_dir,
            v4_sizes,
            v6_sizes,
            addrs,
            reps,
            c_harness,
            replay_frames,
            op25b,
            classify_sizes,
        } => {
            let args = op25b_bench::compare::CompareArgs {
                out_dir,
                v4_sizes,
                v6_sizes,
                addrs,
                reps: reps.max(1),
                c_harness: (c_harness.as_os_str() != "none").then_some(c_harness),
                replay_frames,
                op25b: if op25b.is_file() {
                    Some(op25b)
                } else {
                    eprintln!(
                        "compare: {}: no such file, so the replay comparison is skipped (build it with `cargo build --release -p op25b`)",
                        op25b.display()
                    );
                    None
                },
                classify_sizes,
            };
            op25b_bench::compare::run(&args).map(|md| op25b_bench::sayln!("{md}"))
        }
        Command::Lpm {
            prefixes,
            addrs,
            iters,
            reps,
            json,
            dump,
            layout,
        } => {
            let layout = match layout.as_str() {
                "root" => Layout::Root,
                "lines" => Layout::Lines,
                "direct" => Layout::Direct,
                _ => Layout::Auto,
            };
            if dump {
                op25b_bench::lpmbench::dump(&prefixes, &addrs, layout)
            } else {
                op25b_bench::lpmbench::run(&prefixes, &addrs, iters, reps.max(1), layout).map(|results| {
                    if json {
                        op25b_bench::sayln!("{}", serde_json::Value::Array(results));
                    } else {
                        for r in results {
                            op25b_bench::sayln!(
                                "{}: {} prefixes ({} ranges, {} /{}), {:.1} MiB, built in {:.3} s; {:.1} M lookups/s batched, {:.1} M/s single, {:.1} M/s binary search",
                                r["family"].as_str().unwrap_or("?"),
                                r["prefixes"],
                                r["ranges"],
                                r["layout"].as_str().unwrap_or("?"),
                                r["root_bits"],
                                r["memory_bytes"].as_f64().unwrap_or(0.0) / 1048576.0,
                                r["build_s"].as_f64().unwrap_or(0.0),
                                r["batch_lookups_per_s"].as_f64().unwrap_or(0.0) / 1e6,
                                r["single_lookups_per_s"].as_f64().unwrap_or(0.0) / 1e6,
                                r["binary_search_lookups_per_s"].as_f64().unwrap_or(0.0) / 1e6,
                            );
                            if r["layout"] == "lines" {
                                let n = r["addresses"].as_f64().unwrap_or(0.0).max(1.0);
                                op25b_bench::sayln!(
                                    "  {} of 262144 lines point further, to {} extension lines and {} general entries; {:.2}% of the addresses need a second read, {:.3}% a third",
                                    r["extended_lines"],
                                    r["extension_lines"],
                                    r["general_entries"],
                                    r["keys_with_second_read"].as_f64().unwrap_or(0.0) * 100.0 / n,
                                    r["keys_with_third_read"].as_f64().unwrap_or(0.0) * 100.0 / n,
                                );
                            }
                        }
                    }
                })
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("op25b-bench: error: {e}");
            ExitCode::from(1)
        }
    }
}
