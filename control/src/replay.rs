//! `op25b replay`: runs a capture file through the same worker the live appliance uses and
//! writes the passing and the dropped frames to two captures, plus an optional JSON report.
//! Every frame is judged by both policies (a capture has no direction): the outbound one
//! and, if the config has `[inbound]`, the inbound one; a frame is dropped if either drops
//! it, and the report counts each policy's reasons apart. Resets that `reject` calls for
//! go to `--resets-out` when given.
//!
//! Invariants:
//! - Outputs have the input's format, header, link type and timestamps; every input frame
//!   is in exactly one of them, unchanged, in input order.
//! - On a truncated or corrupt input, every frame before the damage is still judged and
//!   written, the outputs are flushed, the report (if asked for) says what happened, and
//!   the error names the frame and byte offset.
//! - An output (or the report) that is the input file, or the same file as another
//!   output, is refused before anything is opened for writing, whatever the spelling
//!   (symbolic or hard links, `..`); only `/dev/null` may be named more than once.
//! - Every output is opened before any is emptied, and the capture's link type is known
//!   first, so a replay refused before its first frame (another link type, an output that
//!   cannot be opened) leaves existing outputs as they were (and removes those it made).
//!   Outputs are written in place, keeping their mode, owner and links; after a write
//!   error they hold what was written before it.

use crate::config::Built;
use hdrhistogram::Histogram;
use op25b_dataplane::policy::{AnyPrefix, Policy, Reason, Verdict};
use op25b_dataplane::port::pcap::{CaptureError, CaptureReader, Format, PcapPort};
use op25b_dataplane::port::{Burst, Port, PortError};
use op25b_dataplane::worker::{Counters, Worker};
use serde_json::{json, Value};
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What to replay.
#[derive(Clone, Debug)]
pub struct ReplayArgs {
    /// The capture to read.
    pub input: PathBuf,
    /// Where passing frames go.
    pub pass_out: PathBuf,
    /// Where dropped frames go.
    pub drop_out: PathBuf,
    /// Where the JSON report goes, if anywhere.
    pub report: Option<PathBuf>,
    /// Where TCP resets go, if anywhere.
    pub resets_out: Option<PathBuf>,
    /// Frames per burst.
    pub burst: usize,
    /// How many dynamic prefixes (most blocked segments first) each policy's report lists.
    pub top: usize,
}

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A file could not be opened or created.
    #[error("{}: {what}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// "cannot open input", "cannot create output", …
        what: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An output would overwrite the input.
    #[error("{}: is the input file; refusing to overwrite it", .0.display())]
    OutputIsInput(PathBuf),
    /// Two outputs name one file.
    #[error("{first} {} and {second} {} are the same file; each output needs its own", first_path.display(), second_path.display())]
    SameOutput {
        /// The option named first (`--pass-out`, …).
        first: &'static str,
        /// Its path.
        first_path: PathBuf,
        /// The option naming the same file again.
        second: &'static str,
        /// Its path.
        second_path: PathBuf,
    },
    /// Writing an output failed part-way.
    #[error("{}: writing {what}: {source}", path.display())]
    Output {
        /// The output.
        path: PathBuf,
        /// "pass output", …
        what: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The input is not a readable Ethernet capture.
    #[error("{}: {source}", path.display())]
    Input {
        /// The input.
        path: PathBuf,
        /// Why.
        source: PortError,
    },
    /// Writing the report failed.
    #[error("{}: cannot write report: {source}", path.display())]
    Report {
        /// The report file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The result of a replay that ran (completely or up to an input error).
#[derive(Debug)]
pub struct Outcome {
    /// Final counters: rx, tx (passed), dropped; reasons as the outbound policy saw them.
    pub counters: Counters,
    /// The inbound policy's view of every frame.
    pub inbound: Counters,
    /// Resets written.
    pub resets: u64,
    /// Latency histogram (ns per frame).
    pub latency: Histogram<u64>,
    /// Wall time from first read to last write.
    pub elapsed_s: f64,
    /// The input error that stopped the replay early, if any.
    pub error: Option<ReplayError>,
    /// The JSON report.
    pub report: Value,
    /// An output or the report is this process's standard output (`-`, `/dev/stdout`):
    /// the summary must then go to standard error, or it would be written into it.
    pub stdout_taken: bool,
}

/// `-`: standard input or output, as for tcpdump and tshark.
fn is_dash(p: &Path) -> bool {
    p.as_os_str() == "-"
}

/// A file of this process's own standard input or output (a duplicate of the descriptor:
/// its offset, mode and kind are kept, a socket included).
fn std_file(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<File> {
    Ok(File::from(fd.try_clone_to_owned()?))
}

/// Device and inode of `/dev/null`.
fn null_node() -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata("/dev/null").ok()?;
    Some((m.dev(), m.ino()))
}

/// Device and inode of what this process's standard output is (a file, a pipe, a tty).
fn stdout_node() -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let m = std_file(std::io::stdout().as_fd()).ok()?.metadata().ok()?;
    Some((m.dev(), m.ino()))
}

/// Which file a path names, whatever its spelling: an existing file's device and inode
/// (so hard links are one file), else its canonical folder and name.
#[derive(Debug, PartialEq, Eq)]
enum FileId {
    Node(u64, u64),
    Path(PathBuf),
}

/// `-` is this process's standard input (`input`) or output, whatever it is.
fn file_id(p: &Path, input: bool) -> FileId {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let meta = if is_dash(p) {
        let fd = if input {
            std_file(std::io::stdin().as_fd())
        } else {
            std_file(std::io::stdout().as_fd())
        };
        fd.and_then(|f| f.metadata())
    } else {
        std::fs::metadata(p)
    };
    if let Ok(m) = meta {
        return FileId::Node(m.dev(), m.ino());
    }
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match (std::fs::canonicalize(dir), p.file_name()) {
        (Ok(d), Some(name)) => FileId::Path(d.join(name)),
        _ => FileId::Path(p.to_path_buf()),
    }
}

/// Refuses outputs that are the input or one another (see the module's invariants).
fn check_paths(args: &ReplayArgs) -> Result<(), ReplayError> {
    let outputs: Vec<(&'static str, &PathBuf)> = [
        ("--pass-out", Some(&args.pass_out)),
        ("--drop-out", Some(&args.drop_out)),
        ("--resets-out", args.resets_out.as_ref()),
        ("--report", args.report.as_ref()),
    ]
    .into_iter()
    .filter_map(|(o, p)| Some((o, p?)))
    .collect();
    let input = file_id(&args.input, true);
    let ids: Vec<FileId> = outputs.iter().map(|(_, p)| file_id(p, false)).collect();
    for (i, (_, path)) in outputs.iter().enumerate() {
        if ids[i] == input {
            return Err(ReplayError::OutputIsInput((*path).clone()));
        }
        let null = std::fs::canonicalize(path).is_ok_and(|c| c == Path::new("/dev/null"))
            || (is_dash(path) && stdout_node() == null_node());
        if let Some(j) = (0..i).find(|&j| ids[j] == ids[i]).filter(|_| !null) {
            return Err(ReplayError::SameOutput {
                first: outputs[j].0,
                first_path: outputs[j].1.clone(),
                second: outputs[i].0,
                second_path: (*path).clone(),
            });
        }
    }
    Ok(())
}

/// An output opened for writing but not yet emptied: an existing file keeps its contents
/// (and its mode, owner and links) until [`Output::start`], so a replay refused before
/// its first frame leaves it as it was; a file this replay created is removed again if
/// the replay is refused.
struct Output {
    path: PathBuf,
    file: Option<File>,
    created: bool,
    /// `-`: this process's standard output, written from where it stands, never emptied.
    stdout: bool,
}

impl Output {
    fn open(path: &Path) -> Result<Output, ReplayError> {
        if is_dash(path) {
            use std::os::fd::AsFd;
            let file = std_file(std::io::stdout().as_fd()).map_err(|source| ReplayError::Open {
                path: path.to_path_buf(),
                what: "cannot use standard output",
                source,
            })?;
            return Ok(Output {
                path: path.to_path_buf(),
                file: Some(file),
                created: false,
                stdout: true,
            });
        }
        let created = std::fs::symlink_metadata(path).is_err();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|source| ReplayError::Open {
                path: path.to_path_buf(),
                what: "cannot create output",
                source,
            })?;
        Ok(Output {
            path: path.to_path_buf(),
            file: Some(file),
            created,
            stdout: false,
        })
    }

    /// Whether this output is the process's standard output (`-`, or the same file by
    /// another name, such as `/dev/stdout`; not a device such as `/dev/null` that
    /// standard output also happens to be).
    fn is_stdout(&self) -> bool {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let node = self.file.as_ref().and_then(|f| f.metadata().ok());
        self.stdout
            || node.is_some_and(|m| {
                !m.file_type().is_char_device() && stdout_node() == Some((m.dev(), m.ino()))
            })
    }

    /// Empties the file (a FIFO or a device has nothing to empty) and hands it over for
    /// writing.
    fn start(&mut self) -> Result<BufWriter<File>, ReplayError> {
        let file = self.file.take().expect("started once");
        let regular = !self.stdout && file.metadata().is_ok_and(|m| m.is_file());
        if regular {
            file.set_len(0).map_err(|source| ReplayError::Open {
                path: self.path.clone(),
                what: "cannot empty output",
                source,
            })?;
        }
        self.created = false;
        Ok(BufWriter::with_capacity(1 << 20, file))
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        // Never started: the replay was refused; a file it made for nothing goes again.
        if self.created {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Whether the capture at `path` is refused before its first frame (a pcapng whose first
/// interface is not Ethernet, which only a read past the file header shows). Read apart
/// from the replay, and only for a regular file: a pipe can be read once.
fn refused_at_start(path: &Path) -> Option<CaptureError> {
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return None;
    }
    let f = File::open(path).ok()?;
    let mut reader = CaptureReader::open(BufReader::new(f)).ok()?;
    let mut scratch = Burst::new(1);
    loop {
        match reader.next_into(&mut scratch) {
            Ok(op25b_dataplane::port::pcap::Next::Meta) => continue,
            Err(e @ CaptureError::LinkType { .. }) => return Some(e),
            _ => return None,
        }
    }
}

/// Replays `args.input` through `built.policy`.
///
/// Returns `Err` only when nothing could be processed (input unopenable, not a capture,
/// wrong link type, outputs not creatable); an input that breaks part-way gives an
/// `Outcome` whose `error` is set.
pub fn replay(built: Built, args: &ReplayArgs) -> Result<Outcome, ReplayError> {
    check_paths(args)?;
    let input = if is_dash(&args.input) {
        use std::os::fd::AsFd;
        std_file(std::io::stdin().as_fd())
    } else {
        File::open(&args.input)
    }
    .map_err(|source| ReplayError::Open {
        path: args.input.clone(),
        what: "cannot open input",
        source,
    })?;
    let reader = CaptureReader::open(BufReader::with_capacity(1 << 20, input)).map_err(|e| {
        ReplayError::Input {
            path: args.input.clone(),
            source: e.into(),
        }
    })?;
    let format = reader.format();
    // Every output opened before any is emptied: one that cannot be opened, or a capture
    // refused before its first frame, leaves all of them as they were.
    let mut pass_out = Output::open(&args.pass_out)?;
    let mut drop_out = Output::open(&args.drop_out)?;
    let mut resets_out = args.resets_out.as_deref().map(Output::open).transpose()?;
    // The report too, so one that cannot be written stops the replay before it starts.
    let mut report_out = args.report.as_deref().map(Output::open).transpose()?;
    let stdout_taken = [
        Some(&pass_out),
        Some(&drop_out),
        resets_out.as_ref(),
        report_out.as_ref(),
    ]
    .into_iter()
    .flatten()
    .any(Output::is_stdout);
    if let Some(source) = refused_at_start(&args.input) {
        return Err(ReplayError::Input {
            path: args.input.clone(),
            source: source.into(),
        });
    }
    let (pass, dropped) = (pass_out.start()?, drop_out.start()?);
    let on_output = |e: PortError| match e {
        PortError::Write { what, source } => ReplayError::Output {
            path: match what {
                "pass output" => args.pass_out.clone(),
                "drop output" => args.drop_out.clone(),
                _ => args.resets_out.clone().unwrap_or_default(),
            },
            what,
            source,
        },
        e => ReplayError::Input {
            path: args.input.clone(),
            source: e,
        },
    };
    let mut port = PcapPort::new(reader, pass, dropped).map_err(on_output)?;
    if let Some(r) = &mut resets_out {
        port = port.with_resets(r.start()?).map_err(on_output)?;
    }
    let policy_summary = policy_json(&built.policy);
    let mut inbound_summary = policy_json(&built.inbound);
    // The inbound policy's scope is its protected hosts, and it has no relays.
    for fam in ["ipv4", "ipv6"] {
        if let Some(lists) = inbound_summary["prefixes"][fam].as_object_mut() {
            let protected = lists.remove("scope").unwrap_or_default();
            lists.remove("relays");
            lists.insert("protected".into(), protected);
        }
    }
    let (outbound, inbound) = (
        built.policy.with_hit_counters(1),
        built.inbound.with_hit_counters(1),
    );
    let mut out_w = Worker::new(args.burst);
    let mut in_w = Worker::new(args.burst);
    let mut burst = Burst::new(args.burst);
    let mut verdicts: Vec<Verdict> = Vec::with_capacity(args.burst);
    let mut totals = Counters::default();
    let start = Instant::now();
    let run = (|| -> Result<(), PortError> {
        loop {
            let n = port.rx_burst(&mut burst)?;
            if n == 0 {
                if port.is_finished() {
                    return Ok(());
                }
                continue;
            }
            verdicts.clear();
            verdicts.extend_from_slice(out_w.classify_capture(&outbound, &burst));
            for (v, w) in verdicts
                .iter_mut()
                .zip(in_w.classify_capture(&inbound, &burst))
            {
                if v.forwards() {
                    *v = *w;
                }
            }
            for v in &verdicts {
                match v {
                    Verdict::Forward => totals.tx += 1,
                    Verdict::Drop | Verdict::Reject => totals.dropped += 1,
                }
            }
            totals.rx += n as u64;
            totals.bursts += 1;
            port.tx_burst(&burst, &verdicts)?;
        }
    })();
    let flushed = port.flush();
    let elapsed_s = start.elapsed().as_secs_f64();
    let error = match (run, flushed) {
        (Err(e), _) | (Ok(()), Err(e)) => Some(on_output(e)),
        _ => None,
    };
    let resets = port.resets_sent;
    // An input that could not be read ahead (a pipe) refuses another link type only here:
    // still a refusal (nothing judged), though its outputs were emptied by then.
    if totals.rx == 0 {
        if let Some(
            e @ ReplayError::Input {
                source: PortError::Capture(CaptureError::LinkType { .. }),
                ..
            },
        ) = error
        {
            return Err(e);
        }
    }
    let o = out_w.counters();
    let counters = Counters {
        reasons: o.reasons,
        monitored: o.monitored,
        rejected: o.rejected,
        reset_limited: o.reset_limited,
        reset_unanswerable: o.reset_unanswerable,
        ..totals
    };
    let inbound_counters = in_w.counters().clone();
    // Each judge's own time per frame: added together, every frame would count twice.
    let latency = out_w.latency().clone();
    let inbound_latency = in_w.latency().clone();
    let mut report = report_json(
        args,
        format,
        &policy_summary,
        &counters,
        &latency,
        elapsed_s,
        error.as_ref(),
    );
    report["inbound"] = if !built.inbound_configured {
        Value::Null
    } else {
        json!({
        "policy": inbound_summary,
        "blocked": Reason::all().filter(|r| r.is_blocked()).map(|r| inbound_counters.reason(r)).sum::<u64>(),
        "monitored": inbound_counters.monitored,
        "rejected": inbound_counters.rejected,
        "reasons": reasons_json(&inbound_counters),
        "dynamic_prefixes_hit": inbound.dynamic_hits().len(),
        "top_dynamic_prefixes": hits_json(&top_prefixes(inbound.dynamic_hits(), args.top)),
        "latency_ns_per_frame": latency_json(&inbound_latency),
        })
    };
    report["dynamic_prefixes_hit"] = json!(outbound.dynamic_hits().len());
    report["top_dynamic_prefixes"] = hits_json(&top_prefixes(outbound.dynamic_hits(), args.top));
    // Every frame a `reject` policy blocked asked for a reset; each was unanswerable (no
    // reset is due: a reset, a fragment, a group address), rate limited, or answered
    // (written, with a resets output).
    let limited = counters.reset_limited + inbound_counters.reset_limited;
    let unanswerable = counters.reset_unanswerable + inbound_counters.reset_unanswerable;
    report["resets"] = json!({
        "asked": counters.rejected + inbound_counters.rejected + limited + unanswerable,
        "unanswerable": unanswerable,
        "rate_limited": limited,
        "written": args.resets_out.as_ref().map(|_| resets),
    });
    if let (Some(path), Some(out)) = (&args.report, &mut report_out) {
        let text = serde_json::to_string_pretty(&report).expect("a JSON value always serialises");
        let mut w = out.start()?;
        std::io::Write::write_all(&mut w, (text + "\n").as_bytes())
            .and_then(|()| std::io::Write::flush(&mut w))
            .map_err(|source| ReplayError::Report {
                path: path.clone(),
                source,
            })?;
    }
    Ok(Outcome {
        counters,
        inbound: inbound_counters,
        resets,
        latency,
        elapsed_s,
        error,
        report,
        stdout_taken,
    })
}

/// The `n` prefixes with the most blocked segments, most first (ties in address order,
/// so the same counts always give the same list, whatever order `hits` came in).
pub fn top_prefixes(mut hits: Vec<(AnyPrefix, u64)>, n: usize) -> Vec<(AnyPrefix, u64)> {
    hits.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    hits.truncate(n);
    hits
}

/// `[{"prefix": "10.0.0.0/8", "blocked": 12}, …]`.
pub fn hits_json(hits: &[(AnyPrefix, u64)]) -> Value {
    hits.iter()
        .map(|(p, n)| json!({"prefix": p.to_string(), "blocked": n}))
        .collect()
}

/// Counts by reason, every reason present (zeros included) so consumers need no defaults.
pub fn reasons_json(c: &Counters) -> Value {
    let mut m = serde_json::Map::new();
    for r in Reason::all() {
        m.insert(r.label().to_string(), json!(c.reason(r)));
    }
    Value::Object(m)
}

/// Latency quantiles in ns per frame.
pub fn latency_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return Value::Null;
    }
    json!({
        "samples": h.len(),
        "min": h.min(),
        "mean": (h.mean() * 10.0).round() / 10.0,
        "p50": h.value_at_quantile(0.50),
        "p90": h.value_at_quantile(0.90),
        "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999),
        "max": h.max(),
    })
}

/// What the policy holds.
pub fn policy_json(p: &Policy) -> Value {
    let s = p.sizes();
    let fam =
        |v: [usize; 4]| json!({"dynamic": v[0], "exempt": v[1], "relays": v[2], "scope": v[3]});
    json!({
        "generation": p.generation(),
        "action": p.action().label(),
        "ports": p.ports().to_vec(),
        "prefixes": {"ipv4": fam(s.v4), "ipv6": fam(s.v6)},
        "table_bytes": s.memory_bytes,
    })
}

fn report_json(
    args: &ReplayArgs,
    format: Format,
    policy: &Value,
    c: &Counters,
    latency: &Histogram<u64>,
    elapsed_s: f64,
    error: Option<&ReplayError>,
) -> Value {
    json!({
        "op25b_version": env!("CARGO_PKG_VERSION"),
        "input": args.input.display().to_string(),
        "format": match format { Format::Pcap { nanos: false, .. } => "pcap", Format::Pcap { nanos: true, .. } => "pcap-ns", Format::PcapNg => "pcapng" },
        "pass_out": args.pass_out.display().to_string(),
        "drop_out": args.drop_out.display().to_string(),
        "complete": error.is_none(),
        "error": error.map(|e| e.to_string()),
        "policy": policy,
        "frames": {"rx": c.rx, "pass": c.tx, "drop": c.dropped, "monitored": c.monitored},
        "reasons": reasons_json(c),
        "bursts": c.bursts,
        "elapsed_seconds": elapsed_s,
        "frames_per_second": if elapsed_s > 0.0 { (c.rx as f64 / elapsed_s).round() } else { 0.0 },
        "latency_ns_per_frame": latency_json(latency),
    })
}
