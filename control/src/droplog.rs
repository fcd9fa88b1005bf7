//! The optional drop log (`[drop_log] enabled = true`): one JSON line per sampled blocked
//! segment — and, under `monitor`, per sampled segment that would have been blocked — so an
//! operator can see what the policy does without a packet capture.
//!
//! What a line holds: time, policy (outbound/inbound), action taken (drop, reject, monitor),
//! reason, source and destination truncated to the configured prefix lengths (done in the
//! worker, before the record leaves it: see `op25b_dataplane::sample`), destination port, the
//! dynamic pool prefix that matched and the policy generation. Nothing else of the frame.
//!
//! Invariants:
//! - Off by default; when on, at most `rate` lines per second per worker and direction, one
//!   in `sample` blocked segments.
//! - A full queue or a write error loses log lines (counted), never frames: workers hand
//!   records over with a non-blocking send and the writer runs on its own thread.
//! - The file in use is rotated every `rotate` to `PATH.YYYYMMDDTHHMMSSZ` (a name already
//!   taken is never overwritten: the stamp moves on a second), and at every start when it
//!   holds lines, so restarts cannot keep one file open forever (a file that received no
//!   line is not rotated); rotated files (exactly `PATH.YYYYMMDDTHHMMSSZ`, regular files:
//!   nothing else in the folder is touched) whose last line is older than `retention` are
//!   deleted, checked every second, so no line is kept much longer than `retention` +
//!   `rotate`.
//! - A line is counted written once it is in the file, and lost (counted once) if writing
//!   it fails; lost lines are dropped, not retried, so a full disk cannot hold up
//!   rotation and retention. Errors are said at most once a minute, and the end of a
//!   failure that was said is said once, with the lines it lost. A log that cannot be opened at start is off for that run
//!   (said, and shown by `status`); the appliance runs without it.
//! - Files are created 0640 and the directory, if op25b creates it, 0750 (subscriber
//!   data: not for every local user); a live file found with looser permissions is
//!   tightened to 0640. Only a regular file is ever appended to or renamed at the path.
//! - A live file deleted or moved away under the writer (an operator purging, logrotate),
//!   or its folder, is noticed before the next write and a new one is started at the path.
//! - A line and its newline are written together, so a failed write never glues two
//!   lines; the matched pool is cut to the configured prefix length like the addresses.

use crate::config::DropLogConfig;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use op25b_dataplane::policy::{AnyPrefix, Verdict};
use op25b_dataplane::sample::{DropRecord, SampleConfig};
use op25b_dataplane::wire::{Addrs, Transport};
use op25b_dataplane::worker::PolicyHandle;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A record and the direction (0 outbound, 1 inbound) whose worker sampled it.
pub type Entry = (usize, DropRecord);

/// Records a worker may queue before the writer catches up (beyond: counted, lost).
pub const QUEUE: usize = 4096;

/// Counts the writer keeps for metrics, and its trouble for `status`.
#[derive(Debug, Default)]
pub struct LogStats {
    /// Lines written.
    pub written: AtomicU64,
    /// Lines lost to write errors.
    pub write_errors: AtomicU64,
    /// Since when writing fails, and the last error, while it does (`None`: it works).
    pub failing: std::sync::Mutex<Option<(SystemTime, String)>>,
}

impl LogStats {
    /// Since when writing fails and why, while it does.
    pub fn failing(&self) -> Option<(SystemTime, String)> {
        self.failing.lock().map_or(None, |f| f.clone())
    }

    fn set_failing(&self, to: Option<(SystemTime, String)>) {
        if let Ok(mut f) = self.failing.lock() {
            *f = to;
        }
    }
}

/// What the writer says of its write errors on stderr: an error at most once a minute (a
/// full disk must not flood the journal), and once writing works again (lines reach the
/// file), that it does, with the lines lost meanwhile. Only a recovery from an error that
/// was said is said, so the two alternate and the last word is right within a minute.
#[derive(Debug)]
struct Health {
    path: String,
    /// When an error was last said.
    told_at: Option<SystemTime>,
    /// Whether an error has been said since writing last worked.
    told: bool,
    /// Since when writing fails, with the counts (written, lost) when it last worked.
    failing: Option<(SystemTime, u64, u64)>,
    /// Lines lost to write errors when writing last worked.
    lost_at_ok: u64,
}

impl Health {
    fn new(path: &Path) -> Health {
        Health {
            path: path.display().to_string(),
            told_at: None,
            told: false,
            failing: None,
            lost_at_ok: 0,
        }
    }

    /// Notes a failed write (or rotation); returns the line to log, if one is due.
    fn error(&mut self, e: &std::io::Error, stats: &LogStats, now: SystemTime) -> Option<String> {
        let since = match self.failing {
            Some((since, ..)) => since,
            None => {
                // Lost from the last write that worked: this failure's lines are counted
                // already.
                let written = stats.written.load(Ordering::Relaxed);
                self.failing = Some((now, written, self.lost_at_ok));
                now
            }
        };
        stats.set_failing(Some((since, e.to_string())));
        let due = self
            .told_at
            .is_none_or(|t| now.duration_since(t).unwrap_or_default() >= Duration::from_secs(60));
        if !due {
            return None;
        }
        self.told_at = Some(now);
        self.told = true;
        Some(format!(
            "op25b: drop log {}: {e} (lines are being lost; traffic is not affected)",
            self.path
        ))
    }

    /// Notes a write that worked; returns the line to log when that ends a failure that
    /// was said (a line reached the file since it began).
    fn ok(&mut self, stats: &LogStats) -> Option<String> {
        let Some((since, written, lost)) = self.failing else {
            self.lost_at_ok = stats.write_errors.load(Ordering::Relaxed);
            return None;
        };
        if stats.written.load(Ordering::Relaxed) <= written {
            return None;
        }
        self.lost_at_ok = stats.write_errors.load(Ordering::Relaxed);
        self.failing = None;
        stats.set_failing(None);
        let told = std::mem::take(&mut self.told);
        told.then(|| {
            format!(
                "op25b: drop log {}: writing again; {} line(s) lost to write errors since {}",
                self.path,
                stats
                    .write_errors
                    .load(Ordering::Relaxed)
                    .saturating_sub(lost),
                rfc3339_seconds(since)
            )
        })
    }
}

impl DropLogConfig {
    /// What the workers' samplers need.
    pub fn sample_config(&self) -> SampleConfig {
        SampleConfig {
            every: self.sample,
            rate: self.rate,
            keep_v4: self.truncate_ipv4,
            keep_v6: self.truncate_ipv6,
        }
    }
}

/// The log file being written, with rotation and retention.
#[derive(Debug)]
pub struct DropLog {
    cfg: DropLogConfig,
    file: File,
    /// Lines not yet written to the file, and how many.
    buf: Vec<u8>,
    pending: u64,
    opened: SystemTime,
    /// When the path was last checked to still name the open file (and old files pruned).
    checked: SystemTime,
    stats: Arc<LogStats>,
    /// Rotated files that could not be deleted, each said once.
    undeletable: std::collections::HashSet<PathBuf>,
}

/// Mode of log files.
const FILE_MODE: u32 = 0o640;
/// Mode of a log directory op25b creates.
const DIR_MODE: u32 = 0o750;
/// How often the writer checks that the path still names its open file, and deletes
/// rotated files past retention.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Buffered bytes that make the writer write at once.
const BUFFER: usize = 64 << 10;

impl DropLog {
    /// Opens (appends to) the log, rotating it first if it holds lines from an earlier
    /// run, and deletes rotated files past retention.
    pub fn open(cfg: DropLogConfig, now: SystemTime) -> Result<Self, String> {
        let p = &cfg.path;
        make_dir(p)?;
        if let Ok(m) = std::fs::symlink_metadata(p) {
            if !m.file_type().is_file() {
                return Err(format!(
                    "drop_log.path: {} exists and is not a regular file",
                    p.display()
                ));
            }
            // Lines from an earlier run start their own file: `rotate` counts from the
            // start of a file, so frequent restarts must not keep one growing forever.
            if m.len() > 0 {
                let at = m.modified().unwrap_or(now);
                restrict(p, &m)?;
                std::fs::rename(p, free_rotated_name(p, at))
                    .map_err(|e| format!("drop_log.path: cannot rotate {}: {e}", p.display()))?;
            }
        }
        let file = open_append(p)?;
        let mut log = DropLog {
            file,
            buf: Vec::with_capacity(BUFFER),
            pending: 0,
            opened: now,
            checked: now,
            cfg,
            stats: Arc::new(LogStats::default()),
            undeletable: Default::default(),
        };
        log.prune(now);
        Ok(log)
    }

    /// The counts of lines written and lost, for metrics.
    pub fn stats(&self) -> Arc<LogStats> {
        self.stats.clone()
    }

    /// Takes one line, rotating first when the file has been in use for `rotate`. It is
    /// counted written once it is in the file, lost if writing it fails.
    pub fn write(&mut self, line: &str, now: SystemTime) -> std::io::Result<()> {
        let kept = self.keep_up(now);
        self.buf.extend_from_slice(line.as_bytes());
        self.buf.push(b'\n');
        self.pending += 1;
        let flushed = if self.buf.len() >= BUFFER {
            self.flush()
        } else {
            Ok(())
        };
        kept.and(flushed)
    }

    /// Rotates when due, and deletes old files, even without new lines (called when the
    /// queue is idle).
    pub fn tick(&mut self, now: SystemTime) -> std::io::Result<()> {
        let flushed = self.flush();
        self.keep_up(now).and(flushed)
    }

    /// Rotates when due; at most once per [`CHECK_EVERY`], starts a new file when the path
    /// no longer names the open one and deletes rotated files past retention.
    fn keep_up(&mut self, now: SystemTime) -> std::io::Result<()> {
        if now.duration_since(self.opened).unwrap_or_default() >= self.cfg.rotate {
            return self.rotate(now);
        }
        if now.duration_since(self.checked).unwrap_or_default() >= CHECK_EVERY {
            self.checked = now;
            self.prune(now);
            return self.follow_path();
        }
        Ok(())
    }

    /// Starts a new file at the path if it no longer names the open one (deleted or moved
    /// away: an operator purging, logrotate), making its folder again if that went too.
    fn follow_path(&mut self) -> std::io::Result<()> {
        let open = self.file.metadata()?;
        let same = std::fs::metadata(&self.cfg.path)
            .is_ok_and(|m| (m.dev(), m.ino()) == (open.dev(), open.ino()));
        if !same {
            make_dir(&self.cfg.path).map_err(std::io::Error::other)?;
            self.file = open_append(&self.cfg.path).map_err(std::io::Error::other)?;
        }
        Ok(())
    }

    /// Starts a new file; one that holds no line is kept as it is (no empty rotated files).
    fn rotate(&mut self, now: SystemTime) -> std::io::Result<()> {
        let flushed = self.flush();
        self.opened = now;
        self.checked = now;
        let empty = self.file.metadata().is_ok_and(|m| m.len() == 0);
        let moved = if empty {
            self.follow_path()
        } else {
            // Tightened through the descriptor before it leaves under its rotated name
            // (a live file someone loosened would otherwise keep that mode).
            let _ = self
                .file
                .set_permissions(std::fs::Permissions::from_mode(FILE_MODE));
            // Only the open file is renamed: whatever else is at the path now (a folder,
            // a link, a file logrotate made) is not ours to move.
            let open = self.file.metadata()?;
            let ours = std::fs::symlink_metadata(&self.cfg.path).is_ok_and(|m| {
                m.file_type().is_file() && (m.dev(), m.ino()) == (open.dev(), open.ino())
            });
            if ours {
                std::fs::rename(&self.cfg.path, free_rotated_name(&self.cfg.path, now))
            } else {
                Ok(())
            }
            .and_then(|()| {
                make_dir(&self.cfg.path).map_err(std::io::Error::other)?;
                self.file = open_append(&self.cfg.path).map_err(std::io::Error::other)?;
                Ok(())
            })
        };
        self.prune(now);
        // A rotation that failed keeps appending to the open file.
        flushed.and(moved)
    }

    /// Deletes rotated files (`PATH.YYYYMMDDTHHMMSSZ`, regular files only: nothing else in
    /// the folder is ever touched) last written more than `retention` ago.
    fn prune(&mut self, now: SystemTime) {
        let p = &self.cfg.path;
        let (Some(dir), Some(name)) = (p.parent(), p.file_name().and_then(|n| n.to_str())) else {
            return;
        };
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let stem = format!("{name}.");
        for e in entries.flatten() {
            let file_name = e.file_name();
            let Some(n) = file_name.to_str() else {
                continue;
            };
            if !n.strip_prefix(&stem).is_some_and(is_rotation_stamp) {
                continue;
            }
            let Ok(m) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            let old = m
                .modified()
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > self.cfg.retention);
            if !(m.file_type().is_file() && old) {
                continue;
            }
            if let Err(err) = std::fs::remove_file(e.path()) {
                if self.undeletable.insert(e.path()) {
                    eprintln!(
                        "op25b: drop log: cannot delete {} past retention: {err}",
                        e.path().display()
                    );
                }
            }
        }
    }

    /// Writes the buffered lines: counted written if that works, lost (and dropped, so a
    /// full disk cannot hold rotation and retention up) if not.
    pub fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        // Lines go to the file at the path: one deleted since the last look would take
        // them with it.
        let followed = self.follow_path();
        let start = self.file.metadata().map(|m| m.len());
        let mut done = 0;
        let written = followed.and_then(|()| {
            while done < self.buf.len() {
                match self.file.write(&self.buf[done..]) {
                    Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                    Ok(n) => done += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        });
        let n = std::mem::take(&mut self.pending);
        // After a write that failed part-way (a full disk), whole lines that reached the
        // file count as written; a cut last line is taken back out of the file, so the
        // next line is not glued to it.
        let whole = self.buf[..done]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let in_file = self.buf[..whole].iter().filter(|&&b| b == b'\n').count() as u64;
        if whole < done {
            if let Ok(start) = start {
                let _ = self.file.set_len(start + whole as u64);
            }
        }
        self.buf.clear();
        self.stats.written.fetch_add(in_file, Ordering::Relaxed);
        self.stats
            .write_errors
            .fetch_add(n.saturating_sub(in_file), Ordering::Relaxed);
        written
    }
}

impl Drop for DropLog {
    /// Lines still buffered go to the file (a stopping appliance keeps its last lines).
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// Whether `s` is a rotation stamp, `YYYYMMDDTHHMMSSZ` (see [`compact_time`]).
fn is_rotation_stamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit)
}

/// Makes the log's folder (0750) if it is missing. A file where the folder, or one
/// above it, must be is named as such (making the folder would only say "File exists" or
/// "Not a directory").
fn make_dir(p: &Path) -> Result<(), String> {
    match p.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) if !dir.is_dir() => {
            let not_dir = dir.ancestors().find(|a| {
                !a.as_os_str().is_empty() && std::fs::metadata(a).is_ok_and(|m| !m.is_dir())
            });
            if let Some(f) = not_dir {
                return Err(format!(
                    "drop_log.path: {} is not a directory (the log {} goes in it)",
                    f.display(),
                    p.display()
                ));
            }
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)
                .map_err(|e| format!("drop_log.path: cannot create {}: {e}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// Opens `p` for appending (created 0640), tightening a looser existing file to 0640.
fn open_append(p: &Path) -> Result<File, String> {
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(p)
        .map_err(|e| format!("drop_log.path: cannot open {}: {e}", p.display()))?;
    let m = f
        .metadata()
        .map_err(|e| format!("drop_log.path: {}: {e}", p.display()))?;
    if !m.file_type().is_file() {
        return Err(format!(
            "drop_log.path: {} is not a regular file",
            p.display()
        ));
    }
    if m.permissions().mode() & !FILE_MODE & 0o777 != 0 {
        // Through the descriptor: the path may name something else by now.
        f.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
            .map_err(|e| format!("drop_log.path: cannot restrict {}: {e}", p.display()))?;
    }
    Ok(f)
}

/// Sets log file `p` (whose metadata is `m`) to [`FILE_MODE`] if it allows more: group
/// write, or anything for others.
fn restrict(p: &Path, m: &std::fs::Metadata) -> Result<(), String> {
    if m.permissions().mode() & !FILE_MODE & 0o777 == 0 {
        return Ok(());
    }
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(FILE_MODE))
        .map_err(|e| format!("drop_log.path: cannot restrict {}: {e}", p.display()))
}

/// [`rotated_name`] for `at`, or for the next second that names no existing file: a
/// rotated file is never overwritten (two rotations in one second, a clock set back).
fn free_rotated_name(p: &Path, at: SystemTime) -> PathBuf {
    (0..3600)
        .map(|k| rotated_name(p, at + Duration::from_secs(k)))
        .find(|n| std::fs::symlink_metadata(n).is_err())
        .unwrap_or_else(|| rotated_name(p, at))
}

fn rotated_name(p: &Path, at: SystemTime) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".");
    s.push(compact_time(at));
    PathBuf::from(s)
}

/// (year, month, day, hour, minute, second, nanosecond) in UTC.
fn civil(t: SystemTime) -> (i64, u32, u32, u32, u32, u32, u32) {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400) as u32);
    // Days since 1970-01-01 to a Gregorian date (H. Hinnant's civil_from_days).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos(),
    )
}

/// RFC 3339 UTC with microseconds: `2026-11-23T10:04:05.123456Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, ns) = civil(t);
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:06}Z",
        ns / 1000
    )
}

/// RFC 3339 UTC to the second: `2026-11-23T10:04:05Z`.
pub fn rfc3339_seconds(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, _) = civil(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

fn compact_time(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, _) = civil(t);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

fn net_text(addr: String, len: u8, full: u8) -> String {
    if len == full {
        addr
    } else {
        format!("{addr}/{len}")
    }
}

/// `p` cut to at most the logged prefix lengths (IPv4, IPv6): a host or per-subscriber
/// pool entry must not put back what the addresses' truncation took out.
fn cut(p: AnyPrefix, (v4, v6): (u8, u8)) -> AnyPrefix {
    match p {
        AnyPrefix::V4(x) if x.len > v4 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(v4)).unwrap_or(0);
            AnyPrefix::V4(op25b_dataplane::lpm::Prefix {
                addr: x.addr & mask,
                len: v4,
            })
        }
        AnyPrefix::V6(x) if x.len > v6 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(v6)).unwrap_or(0);
            AnyPrefix::V6(op25b_dataplane::lpm::Prefix {
                addr: x.addr & mask,
                len: v6,
            })
        }
        p => p,
    }
}

/// One JSON line for a record. `truncation` is (IPv4, IPv6) prefix lengths the sampler
/// kept; `pool` is the dynamic prefix at the record's list position, if still known.
pub fn line(
    direction: usize,
    r: &DropRecord,
    pool: Option<AnyPrefix>,
    truncation: (u8, u8),
) -> String {
    let (src, dst) = match r.key.addrs {
        Addrs::V4 { src, dst } => (
            net_text(Ipv4Addr::from(src).to_string(), truncation.0, 32),
            net_text(Ipv4Addr::from(dst).to_string(), truncation.0, 32),
        ),
        Addrs::V6 { src, dst } => (
            net_text(Ipv6Addr::from(src).to_string(), truncation.1, 128),
            net_text(Ipv6Addr::from(dst).to_string(), truncation.1, 128),
        ),
    };
    let dport = match r.key.transport {
        Transport::Tcp { dport } => serde_json::json!(dport),
        Transport::Ipv4OverlapFragment => serde_json::Value::Null,
    };
    let time = SystemTime::UNIX_EPOCH + Duration::from_nanos(r.unix_ns);
    serde_json::json!({
        "time": rfc3339(time),
        "policy": if direction == 0 { "outbound" } else { "inbound" },
        "action": match r.verdict {
            Verdict::Drop => "drop",
            Verdict::Reject => "reject",
            Verdict::Forward => "monitor",
        },
        "reason": r.reason.label(),
        "src": src,
        "dst": dst,
        "dport": dport,
        "pool": pool.map(|p| cut(p, truncation).to_string()),
        "generation": r.generation,
    })
    .to_string()
}

/// Runs the writer until every sender is gone: formats and writes what the workers
/// sampled, flushes when the queue is idle, rotates and prunes on time.
pub fn run_writer(mut log: DropLog, rx: Receiver<Entry>, policies: [Arc<PolicyHandle>; 2]) {
    let truncation = (log.cfg.truncate_ipv4, log.cfg.truncate_ipv6);
    let mut health = Health::new(&log.cfg.path);
    let stats = log.stats();
    // The log counts its own lines (written once in the file, lost if that fails).
    let mut outcome = |r: std::io::Result<()>| {
        let said = match r {
            Ok(()) => health.ok(&stats),
            Err(e) => health.error(&e, &stats, SystemTime::now()),
        };
        if let Some(line) = said {
            eprintln!("{line}");
        }
    };
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok((dir, r)) => {
                let p = policies[dir.min(1)].load();
                let pool = (p.generation() == r.generation)
                    .then(|| p.spec().dynamic.get(r.dynamic as usize).copied())
                    .flatten();
                let text = line(dir, &r, pool, truncation);
                outcome(log.write(&text, SystemTime::now()));
                if rx.is_empty() {
                    outcome(log.flush());
                }
            }
            Err(RecvTimeoutError::Timeout) => outcome(log.tick(SystemTime::now())),
            Err(RecvTimeoutError::Disconnected) => {
                let _ = log.flush();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use op25b_dataplane::policy::Reason;
    use op25b_dataplane::wire::FlowKey;

    fn cfg(dir: &Path) -> DropLogConfig {
        DropLogConfig {
            path: dir.join("drops.jsonl"),
            sample: 1,
            rate: 10,
            truncate_ipv4: 24,
            truncate_ipv6: 48,
            rotate: Duration::from_secs(3600),
            retention: Duration::from_secs(2 * 3600),
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let d = op25b_dataplane::testkit::scratch_dir(&format!("droplog-{name}"));
        d
    }

    #[test]
    fn times_are_utc_rfc3339() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_micros(1_795_435_445_123_456);
        assert_eq!(rfc3339(t), "2026-11-23T12:04:05.123456Z");
        assert_eq!(compact_time(t), "20261123T120405Z");
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000000Z"
        );
    }

    #[test]
    fn a_line_holds_truncated_addresses_and_the_pool() {
        let r = DropRecord {
            unix_ns: 1_795_435_445_000_000_000,
            generation: 3,
            reason: Reason::Blocked,
            verdict: Verdict::Forward,
            key: FlowKey {
                addrs: Addrs::V4 {
                    src: 0x0a01_0200,
                    dst: 0xc633_6400,
                },
                transport: Transport::Tcp { dport: 25 },
            },
            dynamic: 0,
        };
        let pool: AnyPrefix = "10.0.0.0/8".parse().unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&line(0, &r, Some(pool), (24, 48))).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"time": "2026-11-23T12:04:05.000000Z", "policy": "outbound",
                "action": "monitor", "reason": "blocked", "src": "10.1.2.0/24",
                "dst": "198.51.100.0/24", "dport": 25, "pool": "10.0.0.0/8", "generation": 3})
        );
        let r6 = DropRecord {
            key: FlowKey {
                addrs: Addrs::V6 {
                    src: 0x2001_0db8_0001_u128 << 80,
                    dst: 0x2001_0db8_00ff_u128 << 80,
                },
                transport: Transport::Ipv4OverlapFragment,
            },
            verdict: Verdict::Reject,
            ..r
        };
        let v: serde_json::Value = serde_json::from_str(&line(1, &r6, None, (32, 48))).unwrap();
        assert_eq!(
            (
                &v["src"],
                &v["dst"],
                &v["dport"],
                &v["pool"],
                &v["action"],
                &v["policy"]
            ),
            (
                &serde_json::json!("2001:db8:1::/48"),
                &serde_json::json!("2001:db8:ff::/48"),
                &serde_json::Value::Null,
                &serde_json::Value::Null,
                &serde_json::json!("reject"),
                &serde_json::json!("inbound")
            )
        );
        // A host or per-subscriber pool entry is cut like the addresses.
        let host: AnyPrefix = "10.1.2.7/32".parse().unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&line(0, &r, Some(host), (24, 48))).unwrap();
        assert_eq!(v["pool"], "10.1.2.0/24");
        let sub: AnyPrefix = "2001:db8:1:200::/56".parse().unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&line(1, &r6, Some(sub), (24, 48))).unwrap();
        assert_eq!(v["pool"], "2001:db8:1::/48");
        // Whole addresses when the configured length keeps them.
        let v: serde_json::Value = serde_json::from_str(&line(0, &r, None, (32, 128))).unwrap();
        assert_eq!(v["src"], "10.1.2.0");
    }

    #[test]
    fn files_rotate_and_old_ones_are_deleted() {
        let dir = scratch("rotate");
        let c = cfg(&dir);
        let t0 = SystemTime::now();
        let mut log = DropLog::open(c.clone(), t0).unwrap();
        log.write("one", t0).unwrap();
        log.flush().unwrap();
        // Files carry the times the test pretends, not the wall clock.
        let stamp = |p: &Path, t: SystemTime| {
            File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(t)
                .unwrap()
        };
        stamp(&c.path, t0);
        // An hour later the file rotates before the next line.
        let t1 = t0 + Duration::from_secs(3600);
        log.write("two", t1).unwrap();
        log.flush().unwrap();
        let rotated = rotated_name(&c.path, t1);
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "one\n");
        assert_eq!(std::fs::read_to_string(&c.path).unwrap(), "two\n");
        stamp(&c.path, t1);
        // A stranger's file beside it is never touched.
        let other = dir.join("drops.jsonl.keep");
        std::fs::write(&other, "x").unwrap();
        // Two hours on (past the 2 h retention of the file last written at t0, not of the
        // one last written at t1), an idle tick rotates again and deletes the first.
        let t2 = t0 + Duration::from_secs(2 * 3600 + 60);
        log.tick(t2).unwrap();
        assert!(!rotated.exists(), "past retention");
        let kept = rotated_name(&c.path, t2);
        assert_eq!(std::fs::read_to_string(&kept).unwrap(), "two\n");
        assert!(other.exists());
        // Reopening a file last written long ago rotates it away first.
        drop(log);
        let log = DropLog::open(c.clone(), t2 + Duration::from_secs(7200)).unwrap();
        drop(log);
        assert_eq!(std::fs::read_to_string(&c.path).unwrap(), "");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn files_are_for_root_and_its_group_only() {
        let dir = scratch("modes");
        let mut c = cfg(&dir);
        c.path = dir.join("sub").join("drops.jsonl");
        let t0 = SystemTime::now();
        let mut log = DropLog::open(c.clone(), t0).unwrap();
        log.write("one", t0).unwrap();
        log.flush().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        // Nothing beyond rwxr-x--- and rw-r----- (the umask may take more, never give).
        let (d, f) = (mode(&dir.join("sub")), mode(&c.path));
        assert!(d & !0o750 == 0 && d & 0o700 == 0o700, "directory {d:o}");
        assert!(f & !0o640 == 0 && f & 0o600 == 0o600, "file {f:o}");
        drop(log);
        // A file someone opened up is tightened, whether it is rotated away at start (it
        // holds lines) or kept (empty).
        std::fs::set_permissions(&c.path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let empty = dir.join("sub").join("empty.jsonl");
        std::fs::write(&empty, "").unwrap();
        std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o644)).unwrap();
        let t1 = t0 + Duration::from_secs(60);
        drop(DropLog::open(c.clone(), t1).unwrap());
        let old = std::fs::read_dir(dir.join("sub"))
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with("drops.jsonl."))
            .expect("the earlier run's file, rotated");
        assert_eq!(mode(&old.path()), 0o640);
        c.path = empty.clone();
        drop(DropLog::open(c, t1).unwrap());
        assert_eq!(mode(&empty), 0o640);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn restarts_deletions_and_taken_names_lose_nothing() {
        let dir = scratch("restart");
        let c = cfg(&dir);
        let t0 = SystemTime::now();
        // Each start puts the previous run's lines in a file of their own, however soon.
        let mut log = DropLog::open(c.clone(), t0).unwrap();
        log.write("one", t0).unwrap();
        drop(log);
        let log = DropLog::open(c.clone(), t0 + Duration::from_secs(5)).unwrap();
        drop(log);
        assert_eq!(std::fs::read_to_string(&c.path).unwrap(), "");
        let rotated: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("drops.jsonl."))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect();
        assert_eq!(rotated, ["one\n"]);
        // The live file deleted under the writer: a new one at the path within a second.
        let mut log = DropLog::open(c.clone(), t0).unwrap();
        log.write("a", t0).unwrap();
        log.flush().unwrap();
        std::fs::remove_file(&c.path).unwrap();
        log.write("b", t0 + Duration::from_secs(2)).unwrap();
        log.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&c.path).unwrap(), "b\n");
        // Deleted again, and then due for rotation: still a new file, not lost lines.
        std::fs::remove_file(&c.path).unwrap();
        let t1 = t0 + Duration::from_secs(3600);
        let taken = rotated_name(&c.path, t1);
        std::fs::write(&taken, "earlier\n").unwrap();
        log.write("c", t1).unwrap();
        log.write("d", t1).unwrap();
        log.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&c.path).unwrap(), "c\nd\n");
        // A rotated name already taken is not overwritten: the stamp moves on a second.
        std::fs::write(&c.path, "e\n").unwrap();
        log.rotate(t1).unwrap();
        assert_eq!(std::fs::read_to_string(&taken).unwrap(), "earlier\n");
        assert_eq!(
            std::fs::read_to_string(rotated_name(&c.path, t1 + Duration::from_secs(1))).unwrap(),
            "e\n"
        );
        drop(log);
        // Only a regular file is used: a directory or a symlink at the path is refused.
        for (what, make) in [
            (
                "dir",
                Box::new(|p: &Path| std::fs::create_dir(p).unwrap()) as Box<dyn Fn(&Path)>,
            ),
            (
                "link",
                Box::new(|p: &Path| std::os::unix::fs::symlink("/dev/null", p).unwrap()),
            ),
        ] {
            let mut c = cfg(&dir);
            c.path = dir.join(what);
            make(&c.path);
            let e = DropLog::open(c, t0).unwrap_err();
            assert!(
                e.contains("exists and is not a regular file"),
                "{what}: {e}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn lost_lines_are_counted_and_never_hold_up_rotation_or_retention() {
        let dir = scratch("lost");
        let c = cfg(&dir);
        let t0 = SystemTime::now();
        let mut log = DropLog::open(c.clone(), t0).unwrap();
        let stats = log.stats();
        log.write("kept", t0).unwrap();
        log.flush().unwrap();
        assert_eq!(stats.written.load(Ordering::Relaxed), 1);
        // Writes fail from now on (as on a full disk): the lines are counted lost, once
        // each, and dropped rather than retried forever.
        log.file = File::open(&c.path).unwrap();
        for l in ["a", "b", "c"] {
            log.write(l, t0).unwrap();
        }
        assert!(log.flush().is_err());
        assert_eq!(stats.write_errors.load(Ordering::Relaxed), 3);
        assert!(log.flush().is_ok(), "nothing left to write");
        assert_eq!(stats.write_errors.load(Ordering::Relaxed), 3);
        assert_eq!(stats.written.load(Ordering::Relaxed), 1);
        // Rotation goes on regardless, and so does retention.
        let t1 = t0 + c.rotate;
        log.write("d", t1).unwrap();
        log.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&c.path).unwrap(), "d\n");
        assert_eq!(
            std::fs::read_to_string(rotated_name(&c.path, t1)).unwrap(),
            "kept\n"
        );
        drop(log);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn retention_deletes_only_rotated_files_and_idle_logs_rotate_nothing() {
        let dir = scratch("retention");
        let c = cfg(&dir);
        let t0 = SystemTime::now();
        let old = t0 - c.retention - Duration::from_secs(60);
        // Files that look almost like rotated ones, a rotated name that is not a file,
        // and one real rotated file, all old.
        let keep = [
            "drops.jsonl.INCIDENT-HOLD-0Z",
            "drops.jsonl.20200101t000000Z",
            "drops.jsonl.2020010100000000",
            "drops.jsonl.20200101T000000Z.gz",
            "other.jsonl.20200101T000000Z",
        ];
        for k in keep {
            std::fs::write(dir.join(k), "x").unwrap();
        }
        std::fs::create_dir(dir.join("drops.jsonl.20200102T000000Z")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.join("drops.jsonl.20200103T000000Z"))
            .unwrap();
        let gone = dir.join("drops.jsonl.20200104T000000Z");
        std::fs::write(&gone, "old line\n").unwrap();
        let stamp = format!(
            "@{}",
            old.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        );
        for f in std::fs::read_dir(&dir).unwrap().flatten() {
            // `-h`: the symlink itself, never the file it names.
            let done = std::process::Command::new("touch")
                .args(["-h", "-d", &stamp])
                .arg(f.path())
                .status()
                .unwrap();
            assert!(done.success());
        }
        let mut log = DropLog::open(c.clone(), t0).unwrap();
        assert!(!gone.exists(), "a rotated file past retention is deleted");
        for k in keep {
            assert!(dir.join(k).exists(), "{k} was deleted");
        }
        assert!(dir.join("drops.jsonl.20200102T000000Z").is_dir());
        assert!(dir.join("drops.jsonl.20200103T000000Z").is_symlink());
        // A log that received no line rotates into no file.
        let before = std::fs::read_dir(&dir).unwrap().count();
        log.tick(t0 + c.rotate).unwrap();
        log.tick(t0 + c.rotate * 2).unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), before);
        drop(log);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_where_the_folder_must_be_is_named() {
        let dir = scratch("not-dir");
        let file = dir.join("logs");
        std::fs::write(&file, "x").unwrap();
        for path in [file.join("drops.jsonl"), file.join("deeper/drops.jsonl")] {
            let mut c = cfg(&dir);
            c.path = path.clone();
            let e = DropLog::open(c, SystemTime::now()).unwrap_err();
            assert_eq!(
                e,
                format!(
                    "drop_log.path: {} is not a directory (the log {} goes in it)",
                    file.display(),
                    path.display()
                )
            );
        }
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unwritable_path_is_a_clear_error() {
        let mut c = cfg(Path::new("/proc/op25b-no/such"));
        c.path = PathBuf::from("/proc/op25b-no/such/drops.jsonl");
        let e = DropLog::open(c, SystemTime::now()).unwrap_err();
        assert!(
            e.starts_with("drop_log.path: cannot create /proc/op25b-no/such"),
            "{e}"
        );
    }

    #[test]
    fn write_errors_are_said_sparingly_and_their_end_once() {
        let stats = LogStats::default();
        let mut h = Health::new(Path::new("/var/log/op25b/drops.jsonl"));
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_435_445);
        let full = || std::io::Error::from_raw_os_error(libc::ENOSPC);
        stats.written.store(10, Ordering::Relaxed);
        // Nothing to say while writing works.
        assert_eq!(h.ok(&stats), None);
        // A failure (its 3 lines counted lost by the log first) is said at once...
        stats.write_errors.store(3, Ordering::Relaxed);
        let said = h.error(&full(), &stats, t0).unwrap();
        assert!(
            said.starts_with("op25b: drop log /var/log/op25b/drops.jsonl: No space left on device"),
            "{said}"
        );
        assert_eq!(
            stats.failing(),
            Some((t0, "No space left on device (os error 28)".to_string()))
        );
        // ...then at most once a minute.
        stats.write_errors.store(5, Ordering::Relaxed);
        assert_eq!(h.error(&full(), &stats, t0 + Duration::from_secs(30)), None);
        // A flush with nothing to write is no recovery.
        assert_eq!(h.ok(&stats), None);
        assert!(stats.failing().is_some());
        // A line in the file is, said once with what was lost since the failure began.
        stats.written.store(11, Ordering::Relaxed);
        assert_eq!(
            h.ok(&stats).as_deref(),
            Some("op25b: drop log /var/log/op25b/drops.jsonl: writing again; 5 line(s) lost to write errors since 2026-11-23T12:04:05Z")
        );
        assert_eq!(stats.failing(), None);
        stats.written.store(12, Ordering::Relaxed);
        assert_eq!(h.ok(&stats), None);
        // A failure within the minute is not said, nor is its end; one after it is.
        stats.write_errors.store(6, Ordering::Relaxed);
        assert_eq!(h.error(&full(), &stats, t0 + Duration::from_secs(40)), None);
        stats.written.store(13, Ordering::Relaxed);
        assert_eq!(h.ok(&stats), None);
        assert!(h
            .error(&full(), &stats, t0 + Duration::from_secs(61))
            .is_some());
    }
}
