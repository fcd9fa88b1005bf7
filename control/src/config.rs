//! The TOML configuration: parsing, prefix-list files, validation, and the typed
//! [`OutboundSpec`] the data plane builds a [`Policy`] from.
//!
//! Contract (DESIGN.md): every list may be inline or in files of one prefix per line (`#`
//! starts a comment, blank lines are ignored); an address without a length is a host
//! prefix. Relative file names are resolved against the directory of the config file.
//!
//! Invariants:
//! - Unknown sections and keys are errors, so a typo never silently disables a rule.
//! - Every error names the file, the line and the offending text.
//! - A prefix with host bits set (`10.1.2.3/8`) is an error, not silently truncated: it
//!   usually means a typo in either the address or the length, and guessing is how a pool
//!   ends up blocked or unblocked by accident.
//! - The same prefix in `dynamic` and `exempt` is an error naming both places; a prefix
//!   repeated within one list is a warning and counts once.

use op25b_dataplane::policy::{Action, AnyPrefix, ListName, OutboundSpec, Policy, PolicyError};
use serde::Deserialize;
use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

/// What to do about a file op25b may not read: `""` unless `e` is a refusal.
fn read_hint(path: &Path, e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        format!("; {}", permission_advice(path))
    } else {
        String::new()
    }
}

/// Why this process may not read `path`, and what to do. The systemd unit runs op25b as
/// root but without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (a process that parses
/// traffic has no business reading every file), so root reads a file only through its
/// mode bits, like any other user; a file another user owns with mode 0600 or 0640 (a
/// pool export written by another account) is refused.
pub fn permission_advice(path: &Path) -> String {
    #[cfg(unix)]
    let found = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).map_or(String::new(), |m| {
            format!(
                " (it is owned by uid {} gid {}, mode {:04o})",
                m.uid(),
                m.gid(),
                m.mode() & 0o7777
            )
        })
    };
    #[cfg(not(unix))]
    let found = String::new();
    #[cfg(target_os = "linux")]
    let who = op25b_dataplane::port::privilege::Privileges::current();
    #[cfg(target_os = "linux")]
    let (root, dac) = (
        who.is_some_and(|p| p.root),
        who.is_some_and(|p| p.has(&CAP_DAC_OVERRIDE) || p.has(&CAP_DAC_READ_SEARCH)),
    );
    #[cfg(not(target_os = "linux"))]
    let (root, dac) = (true, false);
    permission_advice_as(root, dac, &found)
}

/// [`permission_advice`] for a process that is `root` or not and holds a capability
/// that overrides file permissions (`dac`) or not; `found` describes the file.
fn permission_advice_as(root: bool, dac: bool, found: &str) -> String {
    if root && dac {
        return format!(
            "op25b runs as root and may override file permissions, so something else refuses{found}: a security module (SELinux, AppArmor), an ACL, or a network file system that squashes root"
        );
    }
    let who = if root {
        "op25b runs as root but without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (the systemd unit gives it neither), so it reads a file only as its mode allows root"
    } else {
        "op25b runs as a user other than root and reads a file only as its mode allows that user"
    };
    format!(
        "{who}{found}: make it readable that way — owned by root and readable by its owner (`chown root:GROUP FILE && chmod 0640 FILE` keeps it readable to GROUP, e.g. the account that exports it), or world-readable (`chmod o+r FILE`) — with every directory above it searchable (x) by root the same way; a job that replaces the file must create it so too"
    )
}

#[cfg(target_os = "linux")]
const CAP_DAC_OVERRIDE: op25b_dataplane::port::privilege::Need =
    op25b_dataplane::port::privilege::Need {
        name: "CAP_DAC_OVERRIDE",
        bits: &[1],
    };
#[cfg(target_os = "linux")]
const CAP_DAC_READ_SEARCH: op25b_dataplane::port::privilege::Need =
    op25b_dataplane::port::privilege::Need {
        name: "CAP_DAC_READ_SEARCH",
        bits: &[2],
    };

/// A place in a config or prefix file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The file.
    pub file: Arc<Path>,
    /// 1-based line.
    pub line: usize,
}

impl Origin {
    /// Where a run-time exemption ticket (`op25b ctl exempt add`) comes from: no file, so
    /// line 0, which [`Origin`]'s `Display` leaves out.
    pub fn ticket(prefix: &AnyPrefix) -> Origin {
        Origin {
            file: Arc::from(Path::new(&format!(
                "exemption ticket {prefix} (op25b ctl exempt add)"
            ))),
            line: 0,
        }
    }

    /// Whether this is a ticket's origin ([`Origin::ticket`]).
    pub fn is_ticket(&self) -> bool {
        self.line == 0
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_ticket() {
            return write!(f, "{}", self.file.display());
        }
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// The message of [`ConfigError::DynamicAndExempt`]: for a ticket, what the operator can
/// do about it.
fn dynamic_and_exempt(prefix: &AnyPrefix, dynamic_at: &Origin, exempt_at: &Origin) -> String {
    let remedy = if exempt_at.is_ticket() {
        format!("a ticket cannot exempt a whole dynamic entry: remove it from dynamic, or drop the ticket (op25b ctl exempt del {prefix}) and ticket the hosts inside it")
    } else {
        "remove one of them".to_string()
    };
    format!("{exempt_at}: exempt: {prefix} is also listed in dynamic at {dynamic_at}; {remedy}")
}

/// `s` quoted, cut to its first [`CLIP`] characters and then saying how long it was: a
/// megabyte of garbage on one line of a prefix file must not become a megabyte of error
/// message.
fn quoted(s: &str) -> String {
    match s.char_indices().nth(CLIP) {
        None => format!("{s:?}"),
        Some((end, _)) => format!("{:?}… ({} bytes in all)", &s[..end], s.len()),
    }
}

/// Characters of a value an error message quotes.
const CLIP: usize = 120;

/// Most warnings printed one by one; the rest are counted ([`shown_warnings`]).
pub const SHOWN_WARNINGS: usize = 20;

/// The warnings to print: the first [`SHOWN_WARNINGS`], then one line counting the rest
/// (a pool file listed twice would otherwise print a line per prefix).
pub fn shown_warnings(all: &[String]) -> Vec<String> {
    let mut shown: Vec<String> = all.iter().take(SHOWN_WARNINGS).cloned().collect();
    if all.len() > SHOWN_WARNINGS {
        shown.push(format!(
            "… and {} more warning(s) not shown",
            all.len() - SHOWN_WARNINGS
        ));
    }
    shown
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("{}: cannot read: {source}{}", path.display(), read_hint(path, source))]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key, or a value of the wrong type.
    #[error("{at}: {message}")]
    Syntax {
        /// Where.
        at: String,
        /// What toml said.
        message: String,
    },
    /// A bad value at a known place.
    #[error("{at}: {list}: {}: {why}", quoted(text))]
    Value {
        /// Where.
        at: Origin,
        /// The key or list.
        list: String,
        /// The text as written.
        text: String,
        /// What is wrong with it.
        why: String,
    },
    /// A prefix in both dynamic and exempt.
    #[error("{}", dynamic_and_exempt(prefix, dynamic_at, exempt_at))]
    DynamicAndExempt {
        /// The prefix.
        prefix: AnyPrefix,
        /// Where it is dynamic.
        dynamic_at: Origin,
        /// Where it is exempt.
        exempt_at: Origin,
    },
    /// The policy cannot be built for another reason.
    #[error("{at}: {source}")]
    Policy {
        /// The config file.
        at: String,
        /// Why.
        source: PolicyError,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    outbound: Spanned<RawOutbound>,
    #[serde(default)]
    inbound: Option<Spanned<RawInbound>>,
    #[serde(default)]
    dataplane: Option<Spanned<RawDataplane>>,
    #[serde(default)]
    control: Option<RawControl>,
    #[serde(default)]
    drop_log: Option<Spanned<RawDropLog>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDropLog {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    path: Option<Spanned<String>>,
    #[serde(default)]
    sample: Option<Spanned<u32>>,
    #[serde(default)]
    rate: Option<Spanned<u32>>,
    #[serde(default)]
    truncate_ipv4: Option<Spanned<u8>>,
    #[serde(default)]
    truncate_ipv6: Option<Spanned<u8>>,
    #[serde(default)]
    rotate: Option<Spanned<String>>,
    #[serde(default)]
    retention: Option<Spanned<String>>,
}

/// The `[drop_log]` section when `enabled = true`: a sampled, rate-limited JSON-lines log
/// of blocked segments (and of would-be blocked ones under `monitor`), addresses truncated
/// before anything is written, files rotated and deleted after `retention`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropLogConfig {
    /// The log file (rotated files are `PATH.YYYYMMDDTHHMMSSZ` beside it).
    pub path: PathBuf,
    /// One blocked segment in this many is logged (per worker and direction).
    pub sample: u32,
    /// At most this many records per second per worker and direction.
    pub rate: u32,
    /// IPv4 prefix length kept of both addresses (32: whole address).
    pub truncate_ipv4: u8,
    /// IPv6 prefix length kept of both addresses (128: whole address).
    pub truncate_ipv6: u8,
    /// How long one file is written before it is rotated.
    pub rotate: Duration,
    /// Rotated files whose last record is older than this are deleted.
    pub retention: Duration,
}

/// Drop-log defaults: where, one in 100, 10 records/s, /24 and /48, daily files, a week.
pub const DEFAULT_DROP_LOG: &str = "/var/log/op25b/drops.jsonl";
const DEFAULT_DROP_LOG_SAMPLE: u32 = 100;
const DEFAULT_DROP_LOG_RATE: u32 = 10;
const DEFAULT_TRUNCATE_IPV4: u8 = 24;
const DEFAULT_TRUNCATE_IPV6: u8 = 48;
const DEFAULT_ROTATE: &str = "1d";
const DEFAULT_RETENTION: &str = "7d";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    #[serde(default)]
    socket: Option<Spanned<String>>,
    #[serde(default)]
    metrics: Option<Spanned<String>>,
    #[serde(default)]
    watch: bool,
    #[serde(default)]
    metrics_top_prefixes: Option<Spanned<usize>>,
    #[serde(default)]
    tickets: Option<String>,
}

/// The `[control]` section: where `op25b ctl` and Prometheus reach a running appliance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlConfig {
    /// The control socket (mode 0600).
    pub socket: PathBuf,
    /// The metrics listen address (`None`: no metrics endpoint).
    pub metrics: Option<String>,
    /// Reload by itself when the config or a prefix file changes (checked every second).
    pub watch: bool,
    /// How many dynamic prefixes (those with the most blocked segments) per direction the
    /// metrics page lists with their own counter.
    pub metrics_top_prefixes: usize,
    /// Where exemption tickets are kept across restarts (`None`: in memory only).
    pub tickets: Option<PathBuf>,
}

/// Dynamic prefixes per direction with their own metrics series unless configured.
pub const DEFAULT_METRICS_TOP_PREFIXES: usize = 20;
/// Most per-prefix series per direction a metrics page may carry (label cardinality).
pub const MAX_METRICS_TOP_PREFIXES: usize = 1000;

/// Where the control socket is unless configured.
pub const DEFAULT_SOCKET: &str = "/run/op25b/op25b.sock";
/// Where metrics are served unless configured (loopback only).
pub const DEFAULT_METRICS: &str = "127.0.0.1:9725";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataplane {
    backend: Spanned<String>,
    access: Spanned<String>,
    core: Spanned<String>,
    #[serde(default)]
    workers: Option<Spanned<usize>>,
    #[serde(default)]
    cores: Option<Spanned<Vec<usize>>>,
    #[serde(default)]
    burst: Option<Spanned<usize>>,
    #[serde(default)]
    ring: Option<Spanned<String>>,
    #[serde(default)]
    eal_args: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    mtu: Option<Spanned<u32>>,
}

/// How `op25b run` reaches the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// AF_PACKET sockets on two kernel interfaces.
    AfPacket,
    /// Two DPDK ports (the `dpdk` build feature).
    Dpdk,
    /// AF_XDP sockets on two kernel interfaces (the `af_xdp` build feature).
    AfXdp,
}

/// Smallest `[dataplane] mtu` (the IPv4 minimum, RFC 791).
pub const MIN_MTU: u32 = 68;
/// Largest `[dataplane] mtu`: a frame of it, with two VLAN tags, still fits one mbuf (whose
/// data room is a 16-bit number) with room to spare.
pub const MAX_MTU: u32 = 16_000;

impl Backend {
    /// The name the config gives it (`backend = "…"`).
    pub fn name(self) -> &'static str {
        match self {
            Backend::AfPacket => "af_packet",
            Backend::Dpdk => "dpdk",
            Backend::AfXdp => "af_xdp",
        }
    }

    /// Who refuses a frame the backend hands on for sending (summary and metrics wording):
    /// the kernel's socket ring for AF_PACKET and AF_XDP, the device's TX queue for DPDK.
    pub fn tx_refuser(self) -> &'static str {
        match self {
            Backend::AfPacket | Backend::AfXdp => "the kernel",
            Backend::Dpdk => "the device",
        }
    }
}

/// The `[dataplane]` section: how `op25b run` attaches to the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataplaneConfig {
    /// Which backend moves the frames.
    pub backend: Backend,
    /// Subscriber-side interface (DPDK: a port id or device name).
    pub access: String,
    /// Upstream interface (DPDK: a port id or device name).
    pub core: String,
    /// DPDK EAL arguments (`backend = "dpdk"` only).
    pub eal_args: Vec<String>,
    /// The MTU the DPDK ports must carry (`backend = "dpdk"` only; `None`: frames up to
    /// the 2048-byte default mbuf, clamped to what the device takes). Jumbo MTUs get mbufs
    /// large enough for a whole frame, and a device that cannot take it is an error.
    pub mtu: Option<u16>,
    /// Worker threads.
    pub workers: usize,
    /// CPU cores to pin workers to (empty: not pinned).
    pub cores: Vec<usize>,
    /// Frames per burst.
    pub burst: usize,
    /// TPACKET_V2 per-frame rings (`ring = "v2"`: lowest latency) instead of TPACKET_V3
    /// block rings (`ring = "v3"`, the default: fewest wake-ups under load).
    pub per_frame_ring: bool,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum RawAction {
    Drop,
    Reject,
    Monitor,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutbound {
    #[serde(default)]
    ports: Option<Spanned<Vec<Spanned<u16>>>>,
    #[serde(default)]
    action: Option<Spanned<RawAction>>,
    #[serde(default)]
    reject_rate: Option<Spanned<u32>>,
    #[serde(default)]
    dynamic: Vec<Spanned<String>>,
    #[serde(default)]
    dynamic_files: Vec<Spanned<String>>,
    #[serde(default)]
    exempt: Vec<Spanned<String>>,
    #[serde(default)]
    exempt_files: Vec<Spanned<String>>,
    #[serde(default)]
    relays: Vec<Spanned<String>>,
    #[serde(default)]
    relays_files: Vec<Spanned<String>>,
    #[serde(default)]
    scope: Vec<Spanned<String>>,
    #[serde(default)]
    scope_files: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInbound {
    #[serde(default)]
    ports: Option<Spanned<Vec<Spanned<u16>>>>,
    #[serde(default)]
    action: Option<Spanned<RawAction>>,
    #[serde(default)]
    reject_rate: Option<Spanned<u32>>,
    #[serde(default)]
    protected: Vec<Spanned<String>>,
    #[serde(default)]
    protected_files: Vec<Spanned<String>>,
    #[serde(default)]
    dynamic: Vec<Spanned<String>>,
    #[serde(default)]
    dynamic_files: Vec<Spanned<String>>,
    #[serde(default)]
    exempt: Vec<Spanned<String>>,
    #[serde(default)]
    exempt_files: Vec<Spanned<String>>,
}

/// The `[inbound]` (IP25B) section: TCP to `ports` of a `protected` host (our MX) from a
/// source whose longest match across `dynamic` and `exempt` is dynamic is blocked. Held as
/// an [`OutboundSpec`] whose `scope` is `protected` and whose `relays` are empty, which is
/// exactly that rule, so both directions share one engine.
#[derive(Clone, Debug)]
pub struct InboundConfig {
    /// The rule (`scope` = protected hosts).
    pub spec: OutboundSpec,
    /// Where each entry came from (`scope` = protected).
    pub origins: ListOrigins,
}

/// A loaded, validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The config file.
    pub path: PathBuf,
    /// Outbound policy input.
    pub outbound: OutboundSpec,
    /// Where each entry of each list came from, parallel to the lists in `outbound`.
    pub origins: ListOrigins,
    /// The `[inbound]` section, if present.
    pub inbound: Option<InboundConfig>,
    /// The `[dataplane]` section, if present.
    pub dataplane: Option<DataplaneConfig>,
    /// The `[control]` section (defaults when absent).
    pub control: ControlConfig,
    /// The `[drop_log]` section, if present and enabled (off by default).
    pub drop_log: Option<DropLogConfig>,
    /// Warnings found while reading (a prefix file that lists nothing); [`Config::build`]
    /// reports them with its own.
    pub notes: Vec<String>,
    /// Every prefix file read, once each, in the order read (those that list nothing too:
    /// `[control] watch` must see them filled).
    pub files: Vec<PathBuf>,
}

/// Origins of the entries of each list.
#[derive(Clone, Debug, Default)]
pub struct ListOrigins {
    /// For `dynamic`.
    pub dynamic: Vec<Origin>,
    /// For `exempt`.
    pub exempt: Vec<Origin>,
    /// For `relays`.
    pub relays: Vec<Origin>,
    /// For `scope`.
    pub scope: Vec<Origin>,
}

impl ListOrigins {
    /// The origins of one list.
    pub fn of(&self, list: ListName) -> &[Origin] {
        match list {
            ListName::Dynamic => &self.dynamic,
            ListName::Exempt => &self.exempt,
            ListName::Relays => &self.relays,
            ListName::Scope => &self.scope,
        }
    }
}

/// A built policy with the warnings found on the way.
#[derive(Debug)]
pub struct Built {
    /// The outbound policy.
    pub policy: Policy,
    /// The inbound policy ([`Policy::empty`], which blocks nothing, without `[inbound]`).
    pub inbound: Policy,
    /// Human-readable warnings (repeated prefixes, …).
    pub warnings: Vec<String>,
    /// Whether the config has `[inbound]` (else `inbound` is the empty policy).
    pub inbound_configured: bool,
}

fn line_of(text: &str, byte: usize) -> usize {
    text.as_bytes()[..byte.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Parses one prefix as written in a config or prefix file (see [`AnyPrefix`]'s `FromStr`).
pub fn parse_prefix(text: &str) -> Result<AnyPrefix, String> {
    text.parse()
}

/// Reads a prefix file: one prefix per line, `#` comments, blank lines ignored, a UTF-8
/// byte-order mark at its start ignored (files saved by Windows tools). Returns how many
/// prefixes it listed.
pub fn read_prefix_file(
    path: &Path,
    list: &str,
    out: &mut Vec<AnyPrefix>,
    origins: &mut Vec<Origin>,
) -> Result<usize, ConfigError> {
    let file = std::fs::File::open(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let shared: Arc<Path> = Arc::from(path);
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut line = String::new();
    let mut number = 0;
    let before = out.len();
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        if n == 0 {
            return Ok(out.len() - before);
        }
        number += 1;
        let text = if number == 1 {
            line.strip_prefix('\u{feff}').unwrap_or(&line)
        } else {
            &line
        };
        let content = text.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let at = Origin {
            file: shared.clone(),
            line: number,
        };
        if content.split_whitespace().nth(1).is_some() {
            return Err(ConfigError::Value {
                at,
                list: list.to_string(),
                text: content.to_string(),
                why: "one prefix per line expected".into(),
            });
        }
        match parse_prefix(content) {
            Ok(p) => {
                out.push(p);
                origins.push(at);
            }
            Err(why) => {
                return Err(ConfigError::Value {
                    at,
                    list: list.to_string(),
                    text: content.to_string(),
                    why,
                })
            }
        }
    }
}

/// The control socket a config file names (`[control] socket`, relative to the file's
/// directory; [`DEFAULT_SOCKET`] when absent), read without checking the rest of the file:
/// `op25b ctl --config` must reach a running appliance even after an edit broke the
/// policy (or a prefix file) that the appliance refused to load.
pub fn control_socket(path: &Path) -> Result<PathBuf, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: not TOML: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    match table.get("control").and_then(|c| c.get("socket")) {
        None => Ok(PathBuf::from(DEFAULT_SOCKET)),
        Some(toml::Value::String(s)) if !s.is_empty() => Ok(base.join(s)),
        Some(v) => Err(format!(
            "{}: control.socket: {v}: a path is needed",
            path.display()
        )),
    }
}

/// Longest duration [`parse_duration`] takes: ten years (3650d). A ticket's expiry or a
/// drop log's retention is a point in time that must fit the clock.
pub const MAX_DURATION_SECS: u64 = 3650 * 86400;

/// Parses a duration like `90s`, `15m`, `2h` or `7d` (one second to [`MAX_DURATION_SECS`]).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{text:?}: a number followed by s, m, h or d"))?;
    let unit_secs: u64 = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (s, m, h or d)")),
    };
    let secs = n
        .checked_mul(unit_secs)
        .filter(|&s| s <= MAX_DURATION_SECS)
        .ok_or_else(|| format!("{text:?}: too long (at most 3650d, ten years)"))?;
    if secs == 0 {
        return Err(format!("{text:?}: must be at least one second"));
    }
    Ok(Duration::from_secs(secs))
}

fn drop_log(
    d: RawDropLog,
    base: &Path,
    at: &dyn Fn(std::ops::Range<usize>) -> Origin,
    notes: &mut Vec<String>,
) -> Result<Option<DropLogConfig>, ConfigError> {
    let bad =
        |span: std::ops::Range<usize>, key: &str, text: String, why: String| ConfigError::Value {
            at: at(span),
            list: format!("drop_log.{key}"),
            text,
            why,
        };
    let enabled = d.enabled == Some(true);
    // Settings under an explicit `enabled = false` are kept there on purpose (ready to
    // turn on); without the key, someone may think they turned the log on.
    let unsaid = d.enabled.is_none();
    let set = [
        d.path.is_some(),
        d.sample.is_some(),
        d.rate.is_some(),
        d.truncate_ipv4.is_some(),
        d.truncate_ipv6.is_some(),
        d.rotate.is_some(),
        d.retention.is_some(),
    ]
    .contains(&true);
    let path = match d.path {
        None => PathBuf::from(DEFAULT_DROP_LOG),
        Some(p) if p.get_ref().is_empty() => {
            return Err(bad(
                p.span(),
                "path",
                String::new(),
                "a file path is needed".into(),
            ))
        }
        Some(p) => base.join(p.get_ref()),
    };
    let positive = |v: Option<Spanned<u32>>, key: &str, default: u32| match v {
        None => Ok(default),
        Some(n) if *n.get_ref() == 0 => {
            Err(bad(n.span(), key, "0".into(), "must be at least 1".into()))
        }
        Some(n) => Ok(*n.get_ref()),
    };
    let sample = positive(d.sample, "sample", DEFAULT_DROP_LOG_SAMPLE)?;
    let rate = positive(d.rate, "rate", DEFAULT_DROP_LOG_RATE)?;
    let length = |v: Option<Spanned<u8>>, key: &str, default: u8, max: u8| match v {
        None => Ok(default),
        Some(n) if *n.get_ref() > max => Err(bad(
            n.span(),
            key,
            n.get_ref().to_string(),
            format!("a prefix length from 0 to {max} ({max} keeps whole addresses)"),
        )),
        Some(n) => Ok(*n.get_ref()),
    };
    let truncate_ipv4 = length(d.truncate_ipv4, "truncate_ipv4", DEFAULT_TRUNCATE_IPV4, 32)?;
    let truncate_ipv6 = length(d.truncate_ipv6, "truncate_ipv6", DEFAULT_TRUNCATE_IPV6, 128)?;
    let duration = |v: Option<Spanned<String>>, key: &str, default: &str| {
        let (text, span) = match v {
            Some(t) => (t.get_ref().clone(), t.span()),
            None => (default.to_string(), 0..0),
        };
        parse_duration(&text).map_err(|why| bad(span, key, text, why))
    };
    let rotate = duration(d.rotate, "rotate", DEFAULT_ROTATE)?;
    let retention = duration(d.retention, "retention", DEFAULT_RETENTION)?;
    if !enabled {
        if set && unsaid {
            notes.push(format!(
                "{}: [drop_log] has settings but no `enabled = true`, so it is off",
                at(0..0).file.display()
            ));
        }
        return Ok(None);
    }
    Ok(Some(DropLogConfig {
        path,
        sample,
        rate,
        truncate_ipv4,
        truncate_ipv6,
        rotate,
        retention,
    }))
}

fn dataplane(
    d: RawDataplane,
    at: &dyn Fn(std::ops::Range<usize>) -> Origin,
    notes: &mut Vec<String>,
) -> Result<DataplaneConfig, ConfigError> {
    let bad =
        |span: std::ops::Range<usize>, key: &str, text: String, why: String| ConfigError::Value {
            at: at(span),
            list: format!("dataplane.{key}"),
            text,
            why,
        };
    let backend = match d.backend.get_ref().as_str() {
        "af_packet" => Backend::AfPacket,
        "dpdk" if cfg!(feature = "dpdk") => Backend::Dpdk,
        "dpdk" => {
            return Err(bad(
                d.backend.span(),
                "backend",
                d.backend.get_ref().clone(),
                "this op25b was built without DPDK support: rebuild with `cargo build --release --features dpdk` (needs libdpdk-dev 22.11 and pkg-config), or use \"af_packet\"".into(),
            ))
        }
        "af_xdp" if cfg!(feature = "af_xdp") => Backend::AfXdp,
        "af_xdp" => {
            return Err(bad(
                d.backend.span(),
                "backend",
                d.backend.get_ref().clone(),
                "this op25b was built without AF_XDP support: rebuild with `cargo build --release --features af_xdp`, or use \"af_packet\"".into(),
            ))
        }
        other => {
            return Err(bad(
                d.backend.span(),
                "backend",
                other.into(),
                "unknown backend; use \"af_packet\", \"af_xdp\" or \"dpdk\"".into(),
            ))
        }
    };
    for iface in [&d.access, &d.core] {
        let name = iface.get_ref();
        let valid = match backend {
            Backend::AfPacket | Backend::AfXdp => {
                !(name.is_empty() || name.len() > 15 || name.contains(['/', ' ', '\0']))
            }
            // A port id or an ethdev name (vdev name, PCI address), at most 63 bytes.
            Backend::Dpdk => !(name.is_empty() || name.len() > 63 || name.contains(['\0', ' '])),
        };
        if !valid {
            let what = match backend {
                Backend::AfPacket | Backend::AfXdp => "not a valid interface name",
                Backend::Dpdk => "not a DPDK port id or device name",
            };
            return Err(bad(iface.span(), "access/core", name.clone(), what.into()));
        }
    }
    let eal_args = match (&d.eal_args, backend) {
        (None, _) => Vec::new(),
        (Some(a), Backend::Dpdk) => a.get_ref().clone(),
        (Some(a), Backend::AfPacket | Backend::AfXdp) => {
            return Err(bad(
                a.span(),
                "eal_args",
                format!("{:?}", a.get_ref()),
                "EAL arguments are for backend = \"dpdk\" only".into(),
            ))
        }
    };
    let mtu = match (&d.mtu, backend) {
        (None, _) => None,
        (Some(m), Backend::Dpdk) => {
            if !(MIN_MTU..=MAX_MTU).contains(m.get_ref()) {
                return Err(bad(
                    m.span(),
                    "mtu",
                    m.get_ref().to_string(),
                    format!("between {MIN_MTU} and {MAX_MTU} (bytes of IP packet per frame)"),
                ));
            }
            Some(*m.get_ref() as u16)
        }
        (Some(m), Backend::AfPacket | Backend::AfXdp) => {
            return Err(bad(
                m.span(),
                "mtu",
                m.get_ref().to_string(),
                "mtu is for backend = \"dpdk\" only (kernel interfaces take the MTU set with `ip link set dev IFACE mtu N`)".into(),
            ))
        }
    };
    if let (Some(r), Backend::Dpdk | Backend::AfXdp) = (&d.ring, backend) {
        return Err(bad(
            r.span(),
            "ring",
            r.get_ref().clone(),
            "ring is for backend = \"af_packet\" only".into(),
        ));
    }
    if d.access.get_ref() == d.core.get_ref() {
        return Err(bad(
            d.core.span(),
            "core",
            d.core.get_ref().clone(),
            "access and core must be different interfaces".into(),
        ));
    }
    let workers = d.workers.as_ref().map_or(1, |w| *w.get_ref());
    if let Some(w) = &d.workers {
        if !(1..=64).contains(w.get_ref()) {
            return Err(bad(
                w.span(),
                "workers",
                w.get_ref().to_string(),
                "between 1 and 64".into(),
            ));
        }
    }
    let usable = usable_cores();
    let cpus = usable.len().max(1);
    // DPDK workers spin without pause; AF_PACKET and AF_XDP ones sleep in poll(2) when
    // idle but spin under load, so sharing a core costs them only then.
    let spins = if backend == Backend::Dpdk {
        "each spins while the others wait"
    } else {
        "under load each spins while the others wait"
    };
    if workers > cpus {
        notes.push(format!(
            "{}: dataplane.workers: {workers} workers on the {cpus} core(s) this process may use: they take turns, and {spins}",
            at(d.workers.as_ref().map_or(0..0, |w| w.span()))
        ));
    }
    let cores = match d.cores {
        None => Vec::new(),
        Some(c) => {
            if c.get_ref().len() != workers {
                return Err(bad(
                    c.span(),
                    "cores",
                    format!("{:?}", c.get_ref()),
                    format!("list one core per worker ({workers})"),
                ));
            }
            if let Some(x) = c
                .get_ref()
                .iter()
                .enumerate()
                .find_map(|(i, x)| c.get_ref()[..i].contains(x).then_some(x))
            {
                let why = format!(
                    "core {x} is listed twice: two workers on one core take turns, and {spins}"
                );
                // Refused for DPDK, whose workers never sleep; for the others it is a choice.
                if backend == Backend::Dpdk {
                    return Err(bad(c.span(), "cores", x.to_string(), why));
                }
                notes.push(format!("{}: dataplane.cores: {why}", at(c.span())));
            }
            if let Some(x) = c.get_ref().iter().find(|x| !usable.contains(x)) {
                return Err(bad(
                    c.span(),
                    "cores",
                    x.to_string(),
                    format!(
                        "this process may use cores {} (its CPU affinity)",
                        core_list(usable)
                    ),
                ));
            }
            c.into_inner()
        }
    };
    let burst = d
        .burst
        .as_ref()
        .map_or(op25b_dataplane::worker::DEFAULT_BURST, |b| *b.get_ref());
    if let Some(b) = &d.burst {
        if !(1..=256).contains(b.get_ref()) {
            return Err(bad(
                b.span(),
                "burst",
                b.get_ref().to_string(),
                "between 1 and 256".into(),
            ));
        }
    }
    let per_frame_ring = match &d.ring {
        None => false,
        Some(r) => match r.get_ref().as_str() {
            "v3" => false,
            "v2" => true,
            other => {
                return Err(bad(
                    r.span(),
                    "ring",
                    other.into(),
                    "\"v3\" (block rings, default) or \"v2\" (per-frame rings, lowest latency)"
                        .into(),
                ))
            }
        },
    };
    Ok(DataplaneConfig {
        backend,
        access: d.access.into_inner(),
        core: d.core.into_inner(),
        eal_args,
        mtu,
        workers,
        cores,
        burst,
        per_frame_ring,
    })
}

impl Config {
    /// Reads and validates a config file and every prefix file it names.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_str(path, &text)
    }

    /// Parses config `text` as if read from `path` (prefix files resolve against its
    /// directory).
    pub fn from_str(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let file: Arc<Path> = Arc::from(path);
        let at = |span: std::ops::Range<usize>| Origin {
            file: file.clone(),
            line: line_of(text, span.start),
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let loc = match e.span() {
                Some(s) => {
                    let line = line_of(text, s.start);
                    let col = s.start
                        - text[..s.start.min(text.len())]
                            .rfind('\n')
                            .map_or(0, |i| i + 1)
                        + 1;
                    format!("{}:{line}:{col}", path.display())
                }
                None => path.display().to_string(),
            };
            let message = e.message().trim();
            // The toml crate cannot give spans into a table written with dotted keys
            // (toml-rs/toml#798) and says so in its own terms.
            let message = if message.contains("expected a borrowed string") {
                "a dotted key (such as outbound.dynamic = [...]) is not supported here: write the section header, [outbound], and the key under it".to_string()
            } else {
                message.to_string()
            };
            ConfigError::Syntax { at: loc, message }
        })?;
        let o = raw.outbound.into_inner();
        let base = path.parent().unwrap_or(Path::new("."));
        let mut spec = OutboundSpec::default();
        let mut read = FilesRead::default();
        ports_and_action(
            "outbound",
            &mut spec,
            o.ports,
            o.action,
            o.reject_rate,
            &at,
            &mut read.notes,
        )?;
        let mut origins = ListOrigins::default();
        read_lists(
            [
                (
                    "dynamic",
                    &o.dynamic,
                    &o.dynamic_files,
                    &mut spec.dynamic,
                    &mut origins.dynamic,
                ),
                (
                    "exempt",
                    &o.exempt,
                    &o.exempt_files,
                    &mut spec.exempt,
                    &mut origins.exempt,
                ),
                (
                    "relays",
                    &o.relays,
                    &o.relays_files,
                    &mut spec.relays,
                    &mut origins.relays,
                ),
                (
                    "scope",
                    &o.scope,
                    &o.scope_files,
                    &mut spec.scope,
                    &mut origins.scope,
                ),
            ],
            base,
            &at,
            &mut read,
        )?;
        let outbound_lint = read.notes.len();
        let outbound_files = !o.dynamic_files.is_empty();
        let inbound = match raw.inbound {
            None => None,
            Some(i) => {
                let span = i.span();
                let i = i.into_inner();
                let mut spec = OutboundSpec::default();
                ports_and_action(
                    "inbound",
                    &mut spec,
                    i.ports,
                    i.action,
                    i.reject_rate,
                    &at,
                    &mut read.notes,
                )?;
                let mut origins = ListOrigins::default();
                let none = Vec::new();
                read_lists(
                    [
                        (
                            "dynamic",
                            &i.dynamic,
                            &i.dynamic_files,
                            &mut spec.dynamic,
                            &mut origins.dynamic,
                        ),
                        (
                            "exempt",
                            &i.exempt,
                            &i.exempt_files,
                            &mut spec.exempt,
                            &mut origins.exempt,
                        ),
                        (
                            "protected",
                            &i.protected,
                            &i.protected_files,
                            &mut spec.scope,
                            &mut origins.scope,
                        ),
                        (
                            "relays",
                            &none,
                            &none,
                            &mut spec.relays,
                            &mut origins.relays,
                        ),
                    ],
                    base,
                    &at,
                    &mut read,
                )?;
                if spec.scope.is_empty() {
                    return Err(ConfigError::Value {
                        at: at(span),
                        list: "inbound.protected".into(),
                        text: String::new(),
                        why: "no protected host: list the MX addresses inbound checks guard (protected or protected_files), or remove [inbound]".into(),
                    });
                }
                let files = !i.dynamic_files.is_empty();
                lint_lists(
                    path,
                    "inbound",
                    "protected",
                    &spec,
                    &origins,
                    files,
                    &mut read.notes,
                );
                Some(InboundConfig { spec, origins })
            }
        };
        // Where the outbound notes belong (before the inbound section's); an inbound-only
        // config (a receiving ISP's IP25B check) blocks nothing outbound on purpose.
        let mut notes = Vec::new();
        lint_lists(
            path,
            "outbound",
            "scope",
            &spec,
            &origins,
            outbound_files || inbound.is_some(),
            &mut notes,
        );
        read.notes.splice(outbound_lint..outbound_lint, notes);
        let dataplane = match raw.dataplane {
            None => None,
            Some(d) => Some(dataplane(d.into_inner(), &at, &mut read.notes)?),
        };
        let mut control = ControlConfig {
            socket: PathBuf::from(DEFAULT_SOCKET),
            metrics: Some(DEFAULT_METRICS.to_string()),
            watch: false,
            metrics_top_prefixes: DEFAULT_METRICS_TOP_PREFIXES,
            tickets: None,
        };
        if let Some(c) = raw.control {
            control.watch = c.watch;
            control.tickets = c.tickets.filter(|t| !t.is_empty()).map(|t| base.join(t));
            if let Some(n) = c.metrics_top_prefixes {
                if *n.get_ref() > MAX_METRICS_TOP_PREFIXES {
                    return Err(ConfigError::Value {
                        at: at(n.span()),
                        list: "control.metrics_top_prefixes".into(),
                        text: n.get_ref().to_string(),
                        why: format!("at most {MAX_METRICS_TOP_PREFIXES} (each is a metrics series per direction; `op25b ctl stats --top N` lists more)"),
                    });
                }
                control.metrics_top_prefixes = *n.get_ref();
            }
            if let Some(sock) = c.socket {
                if sock.get_ref().is_empty() {
                    return Err(ConfigError::Value {
                        at: at(sock.span()),
                        list: "control.socket".into(),
                        text: String::new(),
                        why: "a path is needed".into(),
                    });
                }
                control.socket = base.join(sock.get_ref());
            }
            if let Some(m) = c.metrics {
                control.metrics = match m.get_ref().as_str() {
                    "" => None,
                    addr => {
                        if addr.parse::<std::net::SocketAddr>().is_err() {
                            return Err(ConfigError::Value {
                                at: at(m.span()),
                                list: "control.metrics".into(),
                                text: addr.into(),
                                why: "an address:port such as 127.0.0.1:9725, or \"\" for none"
                                    .into(),
                            });
                        }
                        Some(addr.to_string())
                    }
                };
            }
        }
        let drop_log = match raw.drop_log {
            None => None,
            Some(d) => drop_log(d.into_inner(), base, &at, &mut read.notes)?,
        };
        Ok(Config {
            path: path.to_path_buf(),
            outbound: spec,
            origins,
            inbound,
            dataplane,
            control,
            drop_log,
            notes: read.notes,
            files: read.files,
        })
    }

    /// Builds the outbound and inbound policies with this generation number, for the
    /// backend this config names (none: `op25b replay`).
    pub fn build(&self, generation: u64) -> Result<Built, ConfigError> {
        self.build_for(generation, self.dataplane.as_ref().map(|d| d.backend))
    }

    /// [`Config::build`] for the backend that moves the frames, which may differ from this
    /// config's (a reload builds for the backend in force: `[dataplane]` changes wait for
    /// the next start). With DPDK the outbound IPv4 source table is built direct
    /// ([`Policy::build_direct`]).
    pub fn build_for(
        &self,
        generation: u64,
        backend: Option<Backend>,
    ) -> Result<Built, ConfigError> {
        let outbound = if backend == Some(Backend::Dpdk) {
            Policy::build_direct
        } else {
            Policy::build
        };
        let (policy, built_warnings) = self.build_one(
            &self.outbound,
            &self.origins,
            generation,
            ("outbound", outbound),
        )?;
        let mut warnings = self.notes.clone();
        warnings.extend(built_warnings);
        let inbound = match &self.inbound {
            None => Policy::empty_with_generation(generation),
            Some(i) => {
                let (p, w) = self.build_one(
                    &i.spec,
                    &i.origins,
                    generation,
                    ("inbound", Policy::build_inbound),
                )?;
                warnings.extend(w);
                p
            }
        };
        Ok(Built {
            policy,
            inbound,
            warnings,
            inbound_configured: self.inbound.is_some(),
        })
    }

    fn build_one(
        &self,
        spec: &OutboundSpec,
        origins: &ListOrigins,
        generation: u64,
        (section, build): (&str, PolicyBuilder),
    ) -> Result<(Policy, Vec<String>), ConfigError> {
        let (policy, dups) = build(spec.clone(), generation).map_err(|e| match e {
            PolicyError::DynamicAndExempt {
                prefix,
                dynamic,
                exempt,
            } => ConfigError::DynamicAndExempt {
                prefix,
                dynamic_at: origins.dynamic[dynamic].clone(),
                exempt_at: origins.exempt[exempt].clone(),
            },
            source => ConfigError::Policy {
                at: format!("{} [{section}]", self.path.display()),
                source,
            },
        })?;
        let warnings = dups
            .iter()
            .map(|d| {
                let o = origins.of(d.list);
                let list = match (section, d.list) {
                    ("inbound", ListName::Scope) => "[inbound] protected".to_string(),
                    ("inbound", l) => format!("[inbound] {l}"),
                    (_, l) => l.to_string(),
                };
                format!(
                    "{}: {list}: {} repeats {}; counted once",
                    o[d.again], d.prefix, o[d.first]
                )
            })
            .collect();
        Ok((policy, warnings))
    }
}

/// One of [`Policy`]'s builders (outbound by size or direct, inbound).
type PolicyBuilder =
    fn(OutboundSpec, u64) -> Result<(Policy, Vec<op25b_dataplane::policy::Duplicate>), PolicyError>;

/// What [`read_lists`] gathers besides the lists.
#[derive(Default)]
struct FilesRead {
    notes: Vec<String>,
    files: Vec<PathBuf>,
}

type ListSlot<'a> = (
    &'static str,
    &'a Vec<Spanned<String>>,
    &'a Vec<Spanned<String>>,
    &'a mut Vec<AnyPrefix>,
    &'a mut Vec<Origin>,
);

/// Reads inline entries and prefix files of each list into the spec and its origins.
/// Every file read is added to `read.files`; one that lists no prefix adds a line to
/// `read.notes` (a pool file cut short by a failed export would otherwise quietly stop
/// blocking its pools).
fn read_lists<const N: usize>(
    lists: [ListSlot<'_>; N],
    base: &Path,
    at: &dyn Fn(std::ops::Range<usize>) -> Origin,
    read: &mut FilesRead,
) -> Result<(), ConfigError> {
    for (name, inline, files, out, orig) in lists {
        for item in inline {
            let origin = at(item.span());
            match parse_prefix(item.get_ref()) {
                Ok(p) => {
                    out.push(p);
                    orig.push(origin);
                }
                Err(why) => {
                    return Err(ConfigError::Value {
                        at: origin,
                        list: name.into(),
                        text: item.get_ref().clone(),
                        why,
                    })
                }
            }
        }
        for f in files {
            let p = base.join(f.get_ref());
            let why = match std::fs::metadata(&p) {
                Ok(m) if m.is_file() => None,
                Ok(m) if m.is_dir() => Some("is a folder, not a prefix file"),
                Ok(_) => Some("is not a regular file (a device, a FIFO or a socket)"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("no such file"),
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    Some("permission denied")
                }
                Err(_) => Some("cannot be read"),
            };
            let refused = |why: String| ConfigError::Value {
                at: at(f.span()),
                list: format!("{name}_files"),
                text: f.get_ref().clone(),
                why,
            };
            if let Some(why) = why {
                let advice = if why == "permission denied" {
                    format!("; {}", permission_advice(&p))
                } else {
                    String::new()
                };
                return Err(refused(format!("{why} ({}){advice}", p.display())));
            }
            if !read.files.contains(&p) {
                read.files.push(p.clone());
            }
            let listed = match read_prefix_file(&p, name, out, orig) {
                // Said where the file is named, as for a missing one.
                Err(ConfigError::Read { source, .. })
                    if source.kind() == std::io::ErrorKind::PermissionDenied =>
                {
                    return Err(refused(format!(
                        "permission denied ({}); {}",
                        p.display(),
                        permission_advice(&p)
                    )))
                }
                r => r?,
            };
            if listed == 0 {
                read.notes.push(format!(
                    "{}: {name}_files: the file lists no prefix (empty, or only blank lines and comments)",
                    p.display()
                ));
            }
        }
    }
    Ok(())
}

/// Fills `ports` (default [25]) and `action` (default drop) of a section.
fn ports_and_action(
    section: &str,
    spec: &mut OutboundSpec,
    ports: Option<Spanned<Vec<Spanned<u16>>>>,
    action: Option<Spanned<RawAction>>,
    reject_rate: Option<Spanned<u32>>,
    at: &dyn Fn(std::ops::Range<usize>) -> Origin,
    notes: &mut Vec<String>,
) -> Result<(), ConfigError> {
    spec.ports = vec![25];
    if let Some(ports) = ports {
        spec.ports.clear();
        if ports.get_ref().is_empty() {
            return Err(ConfigError::Value {
                at: at(ports.span()),
                list: "ports".into(),
                text: "[]".into(),
                why: "no port to block; leave ports out for the default [25]".into(),
            });
        }
        for p in ports.into_inner() {
            if *p.get_ref() == 0 {
                return Err(ConfigError::Value {
                    at: at(p.span()),
                    list: "ports".into(),
                    text: "0".into(),
                    why: "port 0 is not a TCP destination port".into(),
                });
            }
            if spec.ports.contains(p.get_ref()) {
                notes.push(format!(
                    "{}: [{section}] ports: {} is listed twice; counted once",
                    at(p.span()),
                    p.get_ref()
                ));
                continue;
            }
            spec.ports.push(p.into_inner());
        }
    }
    if let Some(action) = action {
        spec.action = match action.get_ref() {
            RawAction::Drop => Action::Drop,
            RawAction::Monitor => Action::Monitor,
            RawAction::Reject => Action::Reject,
        };
    }
    if let Some(rate) = reject_rate {
        if spec.action != Action::Reject {
            notes.push(format!(
                "{}: [{section}] reject_rate has no effect unless action = \"reject\"",
                at(rate.span())
            ));
        } else if *rate.get_ref() == 0 {
            return Err(ConfigError::Value {
                at: at(rate.span()),
                list: "reject_rate".into(),
                text: "0".into(),
                why:
                    "0 resets per second sends none: use action = \"drop\", or a rate of at least 1"
                        .into(),
            });
        }
        spec.reject_rate = Some(*rate.get_ref());
    }
    Ok(())
}

/// Notes on a section's lists that are valid but cannot be what was meant: no dynamic
/// prefix (nothing is blocked; not said when `quiet_if_empty`: its empty files were
/// named already, or the section is meant to block nothing), a relay covering every
/// destination of a family, an outbound scope without a family the dynamic pools have.
fn lint_lists(
    file: &Path,
    section: &str,
    scope_name: &str,
    spec: &OutboundSpec,
    origins: &ListOrigins,
    quiet_if_empty: bool,
    notes: &mut Vec<String>,
) {
    let family = |p: &AnyPrefix| {
        if matches!(p, AnyPrefix::V4(_)) {
            "IPv4"
        } else {
            "IPv6"
        }
    };
    if spec.dynamic.is_empty() && !quiet_if_empty {
        notes.push(format!(
            "{}: [{section}] lists no dynamic prefix (dynamic or dynamic_files): nothing is blocked",
            file.display()
        ));
    }
    for (p, o) in spec.relays.iter().zip(&origins.relays) {
        if matches!(p, AnyPrefix::V4(q) if q.len == 0)
            || matches!(p, AnyPrefix::V6(q) if q.len == 0)
        {
            notes.push(format!(
                "{o}: relays: {p} covers every destination: no {} segment is blocked",
                family(p)
            ));
        }
    }
    // Outbound only: an inbound check guards the MX hosts there are, and a dual-stack
    // feed of other networks' pools against IPv4-only MX hosts is the common case.
    if !spec.scope.is_empty() && section == "outbound" {
        for fam in ["IPv4", "IPv6"] {
            let pools = spec.dynamic.iter().any(|p| family(p) == fam);
            if pools && !spec.scope.iter().any(|p| family(p) == fam) {
                notes.push(format!(
                    "{}: [{section}] {scope_name} lists no {fam} prefix, so the {fam} dynamic prefixes never block",
                    file.display()
                ));
            }
        }
    }
}

/// The cores this process may use, as its CPU affinity said the first time a config was
/// checked: `op25b run` does that before it keeps its control thread off the workers'
/// cores (whose own affinity then no longer lists them), so a reload checks `cores`
/// against the same set as the start did.
fn usable_cores() -> &'static [usize] {
    static CORES: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();
    CORES.get_or_init(|| {
        op25b_dataplane::port::sys::allowed_cores().unwrap_or_else(|_| {
            (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect()
        })
    })
}

/// `0-3,6` style, as `taskset -c` and `/proc/*/status` write core lists.
pub(crate) fn core_list(cores: &[usize]) -> String {
    let mut v = cores.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        out.push(if j == i {
            v[i].to_string()
        } else {
            format!("{}-{}", v[i], v[j])
        });
        i = j + 1;
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    #[test]
    fn core_lists_are_written_as_taskset_writes_them() {
        assert_eq!(super::core_list(&[1]), "1");
        assert_eq!(super::core_list(&[3, 0, 1, 2, 6, 8, 7]), "0-3,6-8");
        assert_eq!(super::core_list(&[5, 5, 4]), "4-5");
        assert_eq!(super::core_list(&[]), "");
    }

    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_str(Path::new("/nonexistent/op25b.toml"), text)
    }
    fn err(text: &str) -> String {
        load(text).unwrap_err().to_string()
    }

    #[test]
    fn a_file_root_may_not_read_says_why_and_what_to_do() {
        let found = " (it is owned by uid 1000 gid 1000, mode 0600)";
        let sandboxed = permission_advice_as(true, false, found);
        assert!(
            sandboxed.starts_with("op25b runs as root but without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (the systemd unit gives it neither)")
                && sandboxed.contains(found)
                && sandboxed.contains("`chown root:GROUP FILE && chmod 0640 FILE`")
                && sandboxed.contains("a job that replaces the file must create it so too")
                && sandboxed.contains("searchable (x)"),
            "{sandboxed}"
        );
        assert!(permission_advice_as(false, false, "").contains("a user other than root"));
        assert!(permission_advice_as(true, true, "").contains("a security module"));
        // Only a refusal gets the advice.
        let e = ConfigError::Read {
            path: "/etc/op25b/op25b.toml".into(),
            source: std::io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert_eq!(
            e.to_string(),
            "/etc/op25b/op25b.toml: cannot read: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn full_inline_config() {
        let c = load(
            r#"
[outbound]
ports = [25, 2525]
action = "monitor"
dynamic = ["10.0.0.0/8", "2001:db8:100::/40"]
exempt = ["10.20.30.40"]
relays = ["192.0.2.25/32"]
scope = []
"#,
        )
        .unwrap();
        assert_eq!(c.outbound.ports, vec![25, 2525]);
        assert_eq!(c.outbound.action, Action::Monitor);
        assert_eq!(c.outbound.dynamic.len(), 2);
        assert_eq!(
            c.outbound.exempt[0],
            parse_prefix("10.20.30.40/32").unwrap()
        );
        assert_eq!(c.origins.exempt[0].line, 6);
        let b = c.build(1).unwrap();
        assert!(b.warnings.is_empty());
    }

    #[test]
    fn long_values_and_many_warnings_are_cut_short() {
        let junk = "x".repeat(1 << 20);
        let e = err(&format!("[outbound]\ndynamic = [\"{junk}\"]\n"));
        assert!(e.len() < 600, "{} bytes", e.len());
        assert!(e.contains("\"… (1048576 bytes in all): "), "{e}");
        let many: Vec<String> = (0..1000).map(|i| format!("w{i}")).collect();
        let shown = shown_warnings(&many);
        assert_eq!(shown.len(), SHOWN_WARNINGS + 1);
        assert_eq!(shown[SHOWN_WARNINGS], "… and 980 more warning(s) not shown");
        assert_eq!(shown_warnings(&many[..3]), &many[..3]);
    }

    #[test]
    fn dotted_keys_are_named_as_such() {
        assert!(err("outbound.dynamic = [\"10.0.0.0/8\"]\n").contains(
            ":1:10: a dotted key (such as outbound.dynamic = [...]) is not supported here"
        ));
    }

    #[test]
    fn settings_that_cannot_be_meant_are_noted() {
        let c = load(
            "[outbound]\nports = [25, 587, 25]\nreject_rate = 5\ndynamic = [\"10.0.0.0/8\", \"2001:db8::/32\"]\nrelays = [\"0.0.0.0/0\"]\nscope = [\"192.0.2.0/24\"]\n[inbound]\nprotected = [\"198.51.100.25\"]\n[drop_log]\nrotate = \"1h\"\n",
        )
        .unwrap();
        assert_eq!(c.outbound.ports, vec![25, 587]);
        let w = c.build(1).unwrap().warnings;
        let f = "/nonexistent/op25b.toml";
        assert_eq!(
            w,
            [
                format!("{f}:2: [outbound] ports: 25 is listed twice; counted once"),
                format!("{f}:3: [outbound] reject_rate has no effect unless action = \"reject\""),
                format!("{f}:5: relays: 0.0.0.0/0 covers every destination: no IPv4 segment is blocked"),
                format!("{f}: [outbound] scope lists no IPv6 prefix, so the IPv6 dynamic prefixes never block"),
                format!("{f}: [inbound] lists no dynamic prefix (dynamic or dynamic_files): nothing is blocked"),
                format!("{f}: [drop_log] has settings but no `enabled = true`, so it is off"),
            ]
        );
        // A reject that can send no reset is refused; a drop log that is off is still
        // checked, so turning it on later cannot fail on a typo made today.
        assert!(err("[outbound]\naction = \"reject\"\nreject_rate = 0\n")
            .contains(":3: reject_rate: \"0\": 0 resets per second sends none"));
        assert!(err("[outbound]\n[drop_log]\nrotate = \"banana\"\n").contains("drop_log.rotate"));
        // (A build without DPDK refuses the backend itself first.)
        let dpdk = err(
            "[outbound]\n[dataplane]\nbackend = \"dpdk\"\naccess = \"a\"\ncore = \"b\"\nworkers = 2\ncores = [0, 0]\n",
        );
        assert!(
            dpdk.contains(if cfg!(feature = "dpdk") {
                "core 0 is listed twice"
            } else {
                "built without DPDK support"
            }),
            "{dpdk}"
        );
        let shared = load(
            "[outbound]\ndynamic = [\"10.0.0.0/8\"]\n[dataplane]\nbackend = \"af_packet\"\naccess = \"a\"\ncore = \"b\"\nworkers = 2\ncores = [0, 0]\n",
        )
        .unwrap();
        let w = shared.build(1).unwrap().warnings;
        assert!(
            w.iter()
                .any(|w| w.contains(":8: dataplane.cores: core 0 is listed twice")),
            "{w:?}"
        );
    }

    #[test]
    fn dataplane_section() {
        let c = load("[outbound]\n[dataplane]\nbackend = \"af_packet\"\naccess = \"acc0\"\ncore = \"core0\"\nworkers = 1\ncores = [0]\n").unwrap();
        assert_eq!(
            c.dataplane,
            Some(DataplaneConfig {
                backend: Backend::AfPacket,
                access: "acc0".into(),
                core: "core0".into(),
                eal_args: Vec::new(),
                mtu: None,
                workers: 1,
                cores: vec![0],
                burst: op25b_dataplane::worker::DEFAULT_BURST,
                per_frame_ring: false,
            })
        );
        assert_eq!(Backend::AfPacket.tx_refuser(), "the kernel");
        assert_eq!(Backend::AfXdp.tx_refuser(), "the kernel");
        assert_eq!(Backend::Dpdk.tx_refuser(), "the device");
        assert!(err("[outbound]\n[dataplane]\nbackend = \"af_packet\"\naccess = \"a\"\ncore = \"b\"\nmtu = 9000\n")
            .contains(":6: dataplane.mtu: \"9000\": mtu is for backend = \"dpdk\" only"));
        let v2 = load("[outbound]\n[dataplane]\nbackend = \"af_packet\"\naccess = \"a\"\ncore = \"b\"\nring = \"v2\"\n").unwrap();
        assert!(v2.dataplane.unwrap().per_frame_ring);
        assert!(err("[outbound]\n[dataplane]\nbackend = \"af_packet\"\naccess = \"a\"\ncore = \"b\"\nring = \"v4\"\n").contains("dataplane.ring: \"v4\""));
        assert!(err(
            "[outbound]\n[dataplane]\nbackend = \"dpdkk\"\naccess = \"a\"\ncore = \"b\"\n"
        )
        .contains("unknown backend"));
        assert!(err("[outbound]\n[dataplane]\nbackend = \"af_packet\"\naccess = \"a\"\ncore = \"b\"\neal_args = [\"--no-huge\"]\n")
            .contains(":6: dataplane.eal_args: \"[\\\"--no-huge\\\"]\": EAL arguments are for backend = \"dpdk\" only"));
        assert!(err("[outbound]\n[dataplane]\nbackend = \"dpdk\"\naccess = \"a\"\ncore = \"b\"\neal_arg = []\n")
            .contains("unknown field `eal_arg`"));
        assert!(err(
            "[outbound]\n[dataplane]\nbackend = \"af_packet\"\naccess = \"a\"\ncore = \"a\"\n"
        )
        .contains("must be different"));
        assert!(err("[outbound]\n[dataplane]\nbackend = \"af_packet\"\naccess = \"a\"\ncore = \"b\"\nworkers = 2\ncores = [0]\n").contains("one core per worker"));
        // A core outside the process's affinity, named with the ones it may use.
        let e = err("[outbound]\n[dataplane]\nbackend = \"af_packet\"\naccess = \"a\"\ncore = \"b\"\nworkers = 1\ncores = [4000]\n");
        assert!(
            e.contains(&format!(
                "dataplane.cores: \"4000\": this process may use cores {} (its CPU affinity)",
                core_list(&op25b_dataplane::port::sys::allowed_cores().unwrap())
            )),
            "{e}"
        );
        assert!(err("[outbound]\n[dataplane]\nbackend = \"af_packet\"\naccess = \"a\"\ncore = \"b\"\nworkerz = 2\n").contains("unknown field `workerz`"));
    }

    #[test]
    fn drop_log_section() {
        // Off unless enabled; defaults when enabled.
        assert_eq!(load("[outbound]\n").unwrap().drop_log, None);
        assert_eq!(
            load("[outbound]\n[drop_log]\nsample = 5\n")
                .unwrap()
                .drop_log,
            None
        );
        let d = load("[outbound]\n[drop_log]\nenabled = true\n")
            .unwrap()
            .drop_log
            .unwrap();
        assert_eq!(
            d,
            DropLogConfig {
                path: PathBuf::from(DEFAULT_DROP_LOG),
                sample: 100,
                rate: 10,
                truncate_ipv4: 24,
                truncate_ipv6: 48,
                rotate: Duration::from_secs(86400),
                retention: Duration::from_secs(7 * 86400),
            }
        );
        let d = load("[outbound]\n[drop_log]\nenabled = true\npath = \"drops.jsonl\"\nsample = 1\nrate = 3\ntruncate_ipv4 = 32\ntruncate_ipv6 = 64\nrotate = \"1h\"\nretention = \"2d\"\n")
            .unwrap()
            .drop_log
            .unwrap();
        assert_eq!(d.path, PathBuf::from("/nonexistent/drops.jsonl"));
        assert_eq!(
            (d.sample, d.rate, d.truncate_ipv4, d.truncate_ipv6),
            (1, 3, 32, 64)
        );
        assert_eq!(
            (d.rotate.as_secs(), d.retention.as_secs()),
            (3600, 2 * 86400)
        );
        for (bad, want) in [
            ("sample = 0", "drop_log.sample"),
            ("truncate_ipv4 = 33", "drop_log.truncate_ipv4"),
            ("truncate_ipv6 = 129", "drop_log.truncate_ipv6"),
            ("retention = \"1w\"", "drop_log.retention"),
            ("rotate = \"0s\"", "drop_log.rotate"),
            ("path = \"\"", "drop_log.path"),
            ("sampel = 3", "unknown field `sampel`"),
        ] {
            let e = err(&format!("[outbound]\n[drop_log]\nenabled = true\n{bad}\n"));
            assert!(e.contains(want), "{bad}: {e}");
            assert!(e.contains(":4"), "{bad}: says where: {e}");
        }
    }

    #[test]
    fn the_dpdk_backend_builds_the_outbound_source_table_direct() {
        let lists = "[outbound]\ndynamic = [\"10.0.0.0/8\", \"100.64.0.0/10\"]\n[inbound]\nprotected = [\"198.51.100.25\"]\ndynamic = [\"203.0.113.0/24\"]\n";
        let direct_bytes = |c: &Config, backend: Option<Backend>| {
            let b = c.build_for(1, backend).unwrap();
            // The inbound check's sources are anyone's: always compact.
            assert_eq!(b.inbound.sizes().direct_bytes, 0, "{backend:?}");
            b.policy.sizes().direct_bytes
        };
        // Replay (no [dataplane]) and AF_PACKET: two prefixes stay compact.
        let replay = load(lists).unwrap();
        assert_eq!(direct_bytes(&replay, None), 0);
        assert_eq!(replay.build(1).unwrap().policy.sizes().direct_bytes, 0);
        let af_packet = load(&format!(
            "{lists}[dataplane]\nbackend = \"af_packet\"\naccess = \"a\"\ncore = \"b\"\n"
        ))
        .unwrap();
        assert_eq!(direct_bytes(&af_packet, Some(Backend::AfPacket)), 0);
        assert_eq!(direct_bytes(&af_packet, Some(Backend::AfXdp)), 0);
        // DPDK: direct, also when the file now names another backend (a reload builds for
        // the one in force).
        assert!(direct_bytes(&af_packet, Some(Backend::Dpdk)) >= 64 << 20);
        // `build` follows the config's own backend (here set in place; a file naming DPDK
        // parses only in the feature's build, below).
        let mut named_dpdk = af_packet.clone();
        named_dpdk.dataplane.as_mut().unwrap().backend = Backend::Dpdk;
        assert!(named_dpdk.build(1).unwrap().policy.sizes().direct_bytes >= 64 << 20);
        if cfg!(feature = "dpdk") {
            let dpdk = load(&format!(
                "{lists}[dataplane]\nbackend = \"dpdk\"\naccess = \"a\"\ncore = \"b\"\n"
            ))
            .unwrap();
            assert!(dpdk.build(1).unwrap().policy.sizes().direct_bytes >= 64 << 20);
            assert_eq!(direct_bytes(&dpdk, Some(Backend::AfPacket)), 0);
        } else {
            op25b_dataplane::testkit::skipped(
                "the config naming backend = \"dpdk\": built without the dpdk feature",
            );
        }
        // No IPv4 source at all: nothing to build direct.
        let v6 = load("[outbound]\ndynamic = [\"2001:db8::/32\"]\n").unwrap();
        assert_eq!(direct_bytes(&v6, Some(Backend::Dpdk)), 0);
    }

    #[test]
    fn dpdk_dataplane_section() {
        let text = "[outbound]\n[dataplane]\nbackend = \"dpdk\"\naccess = \"net_null0\"\ncore = \"1\"\neal_args = [\"--no-huge\", \"--vdev=net_null0\"]\nworkers = 2\n";
        if cfg!(feature = "dpdk") {
            let d = load(text).unwrap().dataplane.unwrap();
            assert_eq!(d.backend, Backend::Dpdk);
            assert_eq!(d.access, "net_null0");
            assert_eq!(d.core, "1");
            assert_eq!(d.eal_args, ["--no-huge", "--vdev=net_null0"]);
            assert_eq!(d.workers, 2);
            assert_eq!(d.mtu, None);
            let jumbo = load(&format!("{text}mtu = 9000\n")).unwrap();
            assert_eq!(jumbo.dataplane.unwrap().mtu, Some(9000));
            for bad in ["mtu = 67", "mtu = 16001", "mtu = 70000"] {
                let e = err(&format!("{text}{bad}\n"));
                assert!(e.contains(":8: dataplane.mtu: "), "{bad}: {e}");
                assert!(e.contains("between 68 and 16000"), "{bad}: {e}");
            }
            assert!(err("[outbound]\n[dataplane]\nbackend = \"dpdk\"\naccess = \"a\"\ncore = \"b\"\nring = \"v2\"\n")
                .contains("dataplane.ring: \"v2\": ring is for backend = \"af_packet\" only"));
            assert!(err(
                "[outbound]\n[dataplane]\nbackend = \"dpdk\"\naccess = \"\"\ncore = \"b\"\n"
            )
            .contains("not a DPDK port id or device name"));
        } else {
            assert!(err(text).contains(
                ":3: dataplane.backend: \"dpdk\": this op25b was built without DPDK support"
            ));
        }
    }

    #[test]
    fn af_xdp_dataplane_section() {
        let text = "[outbound]\n[dataplane]\nbackend = \"af_xdp\"\naccess = \"acc0\"\ncore = \"core0\"\nworkers = 2\n";
        if cfg!(feature = "af_xdp") {
            let d = load(text).unwrap().dataplane.unwrap();
            assert_eq!(d.backend, Backend::AfXdp);
            assert_eq!((d.access.as_str(), d.core.as_str()), ("acc0", "core0"));
            assert_eq!(d.workers, 2);
            assert!(err("[outbound]\n[dataplane]\nbackend = \"af_xdp\"\naccess = \"a\"\ncore = \"b\"\nring = \"v2\"\n")
                .contains("dataplane.ring: \"v2\": ring is for backend = \"af_packet\" only"));
            assert!(err("[outbound]\n[dataplane]\nbackend = \"af_xdp\"\naccess = \"a\"\ncore = \"b\"\neal_args = []\n")
                .contains("EAL arguments are for backend = \"dpdk\" only"));
            assert!(err(
                "[outbound]\n[dataplane]\nbackend = \"af_xdp\"\naccess = \"a/b\"\ncore = \"b\"\n"
            )
            .contains("not a valid interface name"));
        } else {
            assert!(err(text).contains(
                ":3: dataplane.backend: \"af_xdp\": this op25b was built without AF_XDP support: rebuild with `cargo build --release --features af_xdp`"
            ));
        }
    }

    #[test]
    fn the_control_socket_is_found_in_a_config_that_does_not_load() {
        let dir = op25b_dataplane::testkit::scratch_dir("socket-of");
        let f = dir.join("op25b.toml");
        // A host-bits typo and a missing prefix file: Config::load refuses it.
        std::fs::write(&f, "[outbound]\ndynamic = [\"10.0.0.1/8\"]\ndynamic_files = [\"gone.txt\"]\n[control]\nsocket = \"ctl.sock\"\n").unwrap();
        assert!(Config::load(&f).is_err());
        assert_eq!(control_socket(&f).unwrap(), dir.join("ctl.sock"));
        std::fs::write(&f, "[outbound]\n").unwrap();
        assert_eq!(control_socket(&f).unwrap(), PathBuf::from(DEFAULT_SOCKET));
        std::fs::write(&f, "[control]\nsocket = 5\n").unwrap();
        assert!(control_socket(&f)
            .unwrap_err()
            .contains("control.socket: 5: a path is needed"));
        std::fs::write(&f, "[control\n").unwrap();
        assert!(control_socket(&f).unwrap_err().contains("not TOML"));
        let missing = dir.join("missing.toml");
        assert!(control_socket(&missing)
            .unwrap_err()
            .contains("missing.toml"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn control_section() {
        let c = load(
            "[outbound]\n[control]\nsocket = \"ctl.sock\"\nmetrics = \"\"\nwatch = true\ntickets = \"state/tickets\"\n",
        )
        .unwrap();
        assert_eq!(
            c.control,
            ControlConfig {
                socket: PathBuf::from("/nonexistent/ctl.sock"),
                metrics: None,
                watch: true,
                metrics_top_prefixes: DEFAULT_METRICS_TOP_PREFIXES,
                tickets: Some(PathBuf::from("/nonexistent/state/tickets")),
            }
        );
        let c = load("[outbound]\n[control]\ntickets = \"\"\n").unwrap();
        assert_eq!(c.control.tickets, None);
        let c = load("[outbound]\n[control]\nmetrics_top_prefixes = 5\n").unwrap();
        assert_eq!(c.control.metrics_top_prefixes, 5);
        assert!(err("[outbound]\n[control]\nmetrics_top_prefixes = 5000\n")
            .contains("control.metrics_top_prefixes"));
        let d = load("[outbound]\n").unwrap();
        assert_eq!(d.control.socket, PathBuf::from(DEFAULT_SOCKET));
        assert!(!d.control.watch);
        assert_eq!(d.control.tickets, None, "in memory unless configured");
        assert!(err("[outbound]\n[control]\nmetrics = \"localhost\"\n").contains("control.metrics"));
    }

    #[test]
    fn defaults() {
        let c = load("[outbound]\n").unwrap();
        assert_eq!(c.outbound.ports, vec![25]);
        assert_eq!(c.outbound.action, Action::Drop);
    }

    #[test]
    fn errors_name_file_line_and_text() {
        assert_eq!(
            err("[outbound]\ndynamic = [\n  \"10.0.0.0/8\",\n  \"10.1.2.3/8\",\n]\n"),
            "/nonexistent/op25b.toml:4: dynamic: \"10.1.2.3/8\": host bits are set beyond /8; the network is 10.0.0.0/8 (or did you mean /32?)"
        );
        assert_eq!(
            err("[outbound]\nrelays = [\"192.0.2.256\"]\n"),
            "/nonexistent/op25b.toml:2: relays: \"192.0.2.256\": not an IPv4 or IPv6 address or prefix"
        );
        assert_eq!(
            err("[outbound]\nscope = [\"10.0.0.0/33\"]\n"),
            "/nonexistent/op25b.toml:2: scope: \"10.0.0.0/33\": prefix length /33 is too long for this address family"
        );
        assert!(err("[outbound]\ndynamik = []\n")
            .starts_with("/nonexistent/op25b.toml:2:1: unknown field `dynamik`"));
        assert!(err("[outbond]\n").contains("unknown field `outbond`"));
        assert!(err("[outbound]\nports = [70000]\n").starts_with("/nonexistent/op25b.toml:2:"));
        assert!(err("[outbound]\naction = \"block\"\n").contains("unknown variant `block`"));
        assert!(err("[outbound]\nports = []\n").contains(":2: ports"));
        assert!(err("[outbound]\nports = [0]\n").contains("port 0"));
        assert!(err("[outbound]\ndynamic_files = [\"nope.txt\"]\n")
            .contains(":2: dynamic_files: \"nope.txt\": no such file"));
        assert!(err("[outbound]\ndynamic_files = [\"/tmp\"]\n")
            .contains(":2: dynamic_files: \"/tmp\": is a folder, not a prefix file (/tmp)"));
        assert!(err("[outbound]\nexempt_files = [\"/dev/null\"]\n")
            .contains("is not a regular file (a device, a FIFO or a socket) (/dev/null)"));
        assert!(err("[outbound\n").starts_with("/nonexistent/op25b.toml:1:"));
    }

    #[test]
    fn dynamic_and_exempt_conflict_names_both_places() {
        let c =
            load("[outbound]\ndynamic = [\"10.0.0.0/8\"]\n\nexempt = [\"10.0.0.0/8\"]\n").unwrap();
        assert_eq!(
            c.build(1).unwrap_err().to_string(),
            "/nonexistent/op25b.toml:4: exempt: 10.0.0.0/8 is also listed in dynamic at /nonexistent/op25b.toml:2; remove one of them"
        );
    }

    /// The same 9000 pools give the outbound policy a direct IPv4 source table and the
    /// inbound one a compact table (its sources are anyone's).
    #[test]
    fn only_the_outbound_policy_builds_a_direct_source_table() {
        let pools: Vec<String> = (0..9000u32)
            .map(|i| format!("\"10.{}.{}.0/24\"", i >> 8, i & 255))
            .collect();
        let list = pools.join(", ");
        let c = load(&format!(
            "[outbound]\ndynamic = [{list}]\n[inbound]\nprotected = [\"198.51.100.25\"]\ndynamic = [{list}]\n"
        ))
        .unwrap();
        let b = c.build(1).unwrap();
        assert_eq!(b.policy.sizes().v4[0], 9000);
        assert_eq!(b.inbound.sizes().v4[0], 9000);
        assert!(b.policy.sizes().direct_bytes >= 64 << 20);
        assert_eq!(b.inbound.sizes().direct_bytes, 0);
        assert!(b.inbound.sizes().memory_bytes < 16 << 20);
    }

    #[test]
    fn inbound_section() {
        let c = load(
            "[outbound]\naction = \"reject\"\nreject_rate = 50\n[inbound]\nports = [25, 465]\naction = \"monitor\"\nprotected = [\"198.51.100.25\", \"2001:db8:ffff::25\"]\ndynamic = [\"203.0.113.0/24\"]\nexempt = [\"203.0.113.7\", \"203.0.113.7\"]\n",
        )
        .unwrap();
        assert_eq!(c.outbound.action, Action::Reject);
        assert_eq!(c.outbound.reject_rate, Some(50));
        let i = c.inbound.as_ref().unwrap();
        assert_eq!(i.spec.ports, vec![25, 465]);
        assert_eq!(i.spec.action, Action::Monitor);
        assert_eq!(i.spec.scope.len(), 2);
        assert!(i.spec.relays.is_empty());
        assert_eq!(i.origins.scope[0].line, 7);
        let b = c.build(3).unwrap();
        assert_eq!(b.inbound.generation(), 3);
        assert_eq!(b.inbound.sizes().v4, [1, 1, 0, 1]);
        assert_eq!(
            b.warnings,
            vec!["/nonexistent/op25b.toml:9: [inbound] exempt: 203.0.113.7/32 repeats /nonexistent/op25b.toml:9; counted once"]
        );
        // Without [inbound] the inbound policy blocks nothing.
        let b = load("[outbound]\n").unwrap().build(1).unwrap();
        assert_eq!(b.inbound.sizes().v4, [0, 0, 0, 0]);
        assert!(
            err("[outbound]\n[inbound]\ndynamic = [\"203.0.113.0/24\"]\n")
                .contains(":2: inbound.protected: \"\": no protected host")
        );
        assert!(err("[outbound]\n[inbound]\nrelays = [\"192.0.2.1\"]\n")
            .contains("unknown field `relays`"));
        assert!(
            err("[outbound]\n[inbound]\nprotected = [\"198.51.100.0/33\"]\n")
                .contains(":3: protected: \"198.51.100.0/33\"")
        );
        assert!(err("[outbound]\nreject_rate = -1\n").starts_with("/nonexistent/op25b.toml:2:"));
    }

    #[test]
    fn duplicates_warn() {
        let c = load("[outbound]\ndynamic = [\"10.0.0.0/8\",\n \"10.0.0.0/8\"]\n").unwrap();
        let b = c.build(1).unwrap();
        assert_eq!(
            b.warnings,
            vec!["/nonexistent/op25b.toml:3: dynamic: 10.0.0.0/8 repeats /nonexistent/op25b.toml:2; counted once"]
        );
    }

    #[test]
    fn prefix_files() {
        let dir = op25b_dataplane::testkit::scratch_dir("config-test");
        std::fs::write(
            dir.join("pools.txt"),
            "# pools\n10.0.0.0/8\n\n100.64.0.0/10   # CGNAT\n2001:db8::/32\n",
        )
        .unwrap();
        std::fs::write(dir.join("bad.txt"), "10.0.0.0/8\n10.0.0.0/8 11.0.0.0/8\n").unwrap();
        std::fs::write(dir.join("bad2.txt"), "\n\nfoo\n").unwrap();
        let cfg = dir.join("op25b.toml");
        let c = Config::from_str(&cfg, "[outbound]\ndynamic_files = [\"pools.txt\"]\n").unwrap();
        assert_eq!(c.outbound.dynamic.len(), 3);
        assert_eq!(c.origins.dynamic[1].line, 4);
        assert!(c.origins.dynamic[1].to_string().ends_with("pools.txt:4"));
        let e = Config::from_str(&cfg, "[outbound]\nexempt_files = [\"bad.txt\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with(
                "bad.txt:2: exempt: \"10.0.0.0/8 11.0.0.0/8\": one prefix per line expected"
            ),
            "{e}"
        );
        let e = Config::from_str(&cfg, "[outbound]\nrelays_files = [\"bad2.txt\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("bad2.txt:3: relays: \"foo\": not an IPv4 or IPv6 address or prefix"),
            "{e}"
        );
        // Saved by a Windows tool: byte-order mark, CRLF line ends, tabs.
        std::fs::write(
            dir.join("windows.txt"),
            "\u{feff}10.1.0.0/16\r\n10.2.0.0/16\t# pool B\r\n\r\n 10.3.0.0/16\r\n",
        )
        .unwrap();
        let c = Config::from_str(&cfg, "[outbound]\ndynamic_files = [\"windows.txt\"]\n").unwrap();
        assert_eq!(
            c.outbound.dynamic,
            ["10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16"].map(|p| parse_prefix(p).unwrap())
        );
        assert_eq!(c.origins.dynamic[2].line, 4);
        assert!(c.notes.is_empty(), "{:?}", c.notes);
        // A mark anywhere else is not whitespace.
        std::fs::write(dir.join("mark.txt"), "10.1.0.0/16\n\u{feff}10.2.0.0/16\n").unwrap();
        let e = Config::from_str(&cfg, "[outbound]\ndynamic_files = [\"mark.txt\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("mark.txt:2: dynamic: "), "{e}");
        // A file that lists nothing is a warning of the build, naming the file.
        std::fs::write(dir.join("empty.txt"), "").unwrap();
        std::fs::write(dir.join("comments.txt"), "# pools moved to pools.txt\n\n").unwrap();
        let c = Config::from_str(
            &cfg,
            "[outbound]\ndynamic_files = [\"pools.txt\", \"empty.txt\"]\n[inbound]\nprotected = [\"192.0.2.25\"]\ndynamic_files = [\"comments.txt\"]\n",
        )
        .unwrap();
        assert_eq!(
            c.files,
            ["pools.txt", "empty.txt", "comments.txt"].map(|f| dir.join(f))
        );
        let b = c.build(1).unwrap();
        assert_eq!(b.policy.sizes().v4[0], 2);
        assert_eq!(
            b.warnings,
            [
                format!(
                    "{}: dynamic_files: the file lists no prefix (empty, or only blank lines and comments)",
                    dir.join("empty.txt").display()
                ),
                format!(
                    "{}: dynamic_files: the file lists no prefix (empty, or only blank lines and comments)",
                    dir.join("comments.txt").display()
                ),
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn prefix_forms() {
        assert!(matches!(parse_prefix("2001:db8::1"), Ok(AnyPrefix::V6(p)) if p.len == 128));
        assert!(matches!(parse_prefix(" 0.0.0.0/0 "), Ok(AnyPrefix::V4(p)) if p.len == 0));
        assert!(parse_prefix("10.0.0.0/x")
            .unwrap_err()
            .contains("not a number"));
        assert!(parse_prefix("2001:db8::/129")
            .unwrap_err()
            .contains("too long"));
        // IPv4-mapped IPv6 prefixes would never match a frame: the IPv4 form is named.
        assert_eq!(
            parse_prefix("::ffff:10.0.0.0/104").unwrap_err(),
            "an IPv4-mapped IPv6 address, which no frame carries; write the IPv4 form, 10.0.0.0/8"
        );
        // Wider prefixes only contain that space; they are kept.
        assert!(parse_prefix("::/80").is_ok());
        assert!(parse_prefix("::/0").is_ok());
    }
}
