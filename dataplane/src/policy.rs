//! The immutable policy snapshot and the verdict function.
//!
//! A [`Policy`] is built once from typed prefix lists ([`OutboundSpec`]) off the hot path,
//! published behind an `Arc`, and never changed: a new configuration is a new `Policy`
//! with a higher generation. Workers read it without locks.
//!
//! Outbound (OP25B) semantics, normative in DESIGN.md: a TCP segment is blocked exactly
//! when its destination port is in `ports` (or it is an IPv4 fragment at offset 1), the
//! longest prefix matching its source across `dynamic` and `exempt` is a `dynamic` one, its
//! destination matches no `relays` prefix, and `scope` is empty or matches the destination.
//!
//! Invariants:
//! - `dynamic` and `exempt` live in one LPM table per family, so "longest match across both
//!   lists" is a single lookup; the value's low bit says which list won.
//! - The same prefix in both `dynamic` and `exempt` is refused at build time (it has no
//!   defined meaning); a prefix repeated inside one list counts once.
//! - `judge` never allocates and never fails: every frame gets exactly one [`Reason`].
//!   `judge_burst` gives the same reasons, works in fixed chunk arrays, and allocates only
//!   while its output vectors grow to the largest burst seen. It takes untagged IPv4/TCP
//!   frames through [`wire::parse_plain_ipv4`] and every other frame through
//!   [`wire::parse`]; both give the same key for such a frame (tested, and fuzzed).
//! - `judge_indexed` finds the same blocked frames and tally as `judge_burst` without a
//!   reason per frame (tested in every table shape, and after sparse and dense bursts):
//!   a plain frame writes at most one lane slot, every other frame is handed to
//!   `judge_burst`.

use crate::hits::PrefixHits;
use crate::hot::{Family, HotBlocks};
use crate::lpm::{BuildError, Layout, Lpm4, Lpm6, LpmTable, Prefix, MAX_VALUE, NO_MATCH};
use crate::wire::{self, Addrs, FlowKey, Skip, Transport};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// A prefix of either family (ordered IPv4 first, then by address and length).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AnyPrefix {
    /// IPv4 prefix.
    V4(Prefix<u32>),
    /// IPv6 prefix.
    V6(Prefix<u128>),
}

impl std::str::FromStr for AnyPrefix {
    type Err = String;

    /// Parses `addr/len` or a bare address (a host prefix). Host bits set beyond the length
    /// are an error naming the network the text probably meant.
    fn from_str(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err("empty prefix".into());
        }
        let (addr_text, len_text) = match t.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (t, None),
        };
        // The value itself is quoted by whoever shows the error (with its place).
        let addr: std::net::IpAddr = addr_text.parse().map_err(|_| match len_text {
            None => "not an IPv4 or IPv6 address or prefix".to_string(),
            Some(_) => "the part before / is not an IPv4 or IPv6 address".to_string(),
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len_text {
            None => max,
            Some(l) => {
                let n: u8 = l
                    .parse()
                    .map_err(|_| format!("prefix length {l:?} is not a number"))?;
                if n > max {
                    return Err(format!(
                        "prefix length /{n} is too long for this address family"
                    ));
                }
                n
            }
        };
        if let std::net::IpAddr::V6(a) = addr {
            // No frame carries an IPv4-mapped address (RFC 4291 §2.5.5.2): such a prefix
            // would silently never match. It is the IPv4 prefix that was meant.
            if let (Some(v4), true) = (a.to_ipv4_mapped(), len >= 96) {
                return Err(format!(
                    "an IPv4-mapped IPv6 address, which no frame carries; write the IPv4 form, {v4}/{}",
                    len - 96
                ));
            }
        }
        let (prefix, network) = match addr {
            std::net::IpAddr::V4(a) => {
                let bits = u32::from(a);
                let net = bits & <u32 as crate::lpm::Bits>::mask(len);
                (
                    Prefix::new(bits, len).map(AnyPrefix::V4),
                    std::net::IpAddr::from(std::net::Ipv4Addr::from(net)),
                )
            }
            std::net::IpAddr::V6(a) => {
                let bits = u128::from(a);
                let net = bits & <u128 as crate::lpm::Bits>::mask(len);
                (
                    Prefix::new(bits, len).map(AnyPrefix::V6),
                    std::net::IpAddr::from(std::net::Ipv6Addr::from(net)),
                )
            }
        };
        prefix.map_err(|_| {
            format!("host bits are set beyond /{len}; the network is {network}/{len} (or did you mean /{max}?)")
        })
    }
}

impl fmt::Display for AnyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnyPrefix::V4(p) => p.fmt(f),
            AnyPrefix::V6(p) => p.fmt(f),
        }
    }
}

/// What happens to a blocked segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Action {
    /// Drop it silently.
    #[default]
    Drop,
    /// Forward it, but count it as blocked (dry run).
    Monitor,
    /// Drop it and answer the sender with a TCP reset out of the port it came in on, at
    /// most [`OutboundSpec::reject_rate`] resets per second per worker (beyond that: drop).
    Reject,
}

impl Action {
    /// The config spelling.
    pub fn label(self) -> &'static str {
        match self {
            Action::Drop => "drop",
            Action::Monitor => "monitor",
            Action::Reject => "reject",
        }
    }
}

/// Resets per second and worker when a section does not say (`reject_rate`).
pub const DEFAULT_REJECT_RATE: u32 = 1000;

/// What a frame leaving the worker does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Verdict {
    /// Sent on unchanged.
    Forward,
    /// Not sent on.
    Drop,
    /// Not sent on; a TCP reset goes back to the sender out of the ingress port.
    Reject,
}

impl Verdict {
    /// Whether the frame is sent on.
    #[inline]
    pub fn forwards(self) -> bool {
        self == Verdict::Forward
    }
}

/// Why a frame got its verdict: one counter each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The parser could not judge it (not TCP, not IP, truncated, …).
    Skip(Skip),
    /// TCP to a port that is not blocked.
    PortNotBlocked,
    /// The source's longest match is no dynamic prefix (or nothing matched).
    SourceNotDynamic,
    /// The source's longest match is an exempt prefix.
    SourceExempt,
    /// The destination is one of the ISP's relays.
    DestinationRelay,
    /// A scope is set and the destination is outside it.
    OutOfScope,
    /// Blocked: dynamic source to a blocked port outside the relays.
    Blocked,
    /// Blocked: an IPv4 TCP fragment at offset 1 from a dynamic source (RFC 1858).
    BlockedOverlapFragment,
}

const POLICY_REASONS: [(Reason, &str); 7] = [
    (Reason::PortNotBlocked, "port_not_blocked"),
    (Reason::SourceNotDynamic, "source_not_dynamic"),
    (Reason::SourceExempt, "source_exempt"),
    (Reason::DestinationRelay, "destination_relay"),
    (Reason::OutOfScope, "destination_out_of_scope"),
    (Reason::Blocked, "blocked"),
    (Reason::BlockedOverlapFragment, "blocked_overlap_fragment"),
];

impl Reason {
    /// Number of distinct reasons (size of a counter array).
    pub const COUNT: usize = Skip::COUNT + POLICY_REASONS.len();

    /// Dense index for counter arrays.
    #[inline]
    pub fn index(self) -> usize {
        match self {
            Reason::Skip(s) => s as usize,
            Reason::PortNotBlocked => Skip::COUNT,
            Reason::SourceNotDynamic => Skip::COUNT + 1,
            Reason::SourceExempt => Skip::COUNT + 2,
            Reason::DestinationRelay => Skip::COUNT + 3,
            Reason::OutOfScope => Skip::COUNT + 4,
            Reason::Blocked => Skip::COUNT + 5,
            Reason::BlockedOverlapFragment => Skip::COUNT + 6,
        }
    }

    /// Every reason in index order.
    pub fn all() -> impl Iterator<Item = Reason> {
        Skip::ALL
            .iter()
            .map(|&s| Reason::Skip(s))
            .chain(POLICY_REASONS.iter().map(|&(r, _)| r))
    }

    /// Stable snake_case name for reports and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Reason::Skip(s) => s.label(),
            r => POLICY_REASONS[r.index() - Skip::COUNT].1,
        }
    }

    /// Whether policy blocked the frame (whatever the action then does with it).
    #[inline]
    pub fn is_blocked(self) -> bool {
        matches!(self, Reason::Blocked | Reason::BlockedOverlapFragment)
    }
}

/// The set of blocked TCP destination ports: a 65536-bit bitmap, and the port itself when
/// it is the only one (OP25B's usual set, port 25: a compare instead of a bitmap read).
#[derive(Clone)]
pub struct PortSet {
    bits: Box<[u64; 1024]>,
    single: Option<u16>,
}

impl PortSet {
    /// A set of these ports.
    pub fn new(ports: &[u16]) -> Self {
        let mut bits = Box::new([0u64; 1024]);
        for &p in ports {
            bits[usize::from(p >> 6)] |= 1 << (p & 63);
        }
        let single = match ports {
            [p, rest @ ..] if rest.iter().all(|q| q == p) => Some(*p),
            _ => None,
        };
        PortSet { bits, single }
    }

    /// The only port of the set, if it has exactly one.
    #[inline]
    pub fn single(&self) -> Option<u16> {
        self.single
    }

    /// Whether `port` is in the set.
    #[inline]
    pub fn contains(&self, port: u16) -> bool {
        self.bits[usize::from(port >> 6)] & (1 << (port & 63)) != 0
    }

    /// The ports in ascending order.
    pub fn to_vec(&self) -> Vec<u16> {
        (0..=u16::MAX).filter(|&p| self.contains(p)).collect()
    }
}

impl fmt::Debug for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.to_vec()).finish()
    }
}

/// Typed input for the outbound policy. Positions in these lists are what build errors and
/// the match explanations refer to.
#[derive(Clone, Debug, Default)]
pub struct OutboundSpec {
    /// Blocked TCP destination ports.
    pub ports: Vec<u16>,
    /// What to do with a blocked segment.
    pub action: Action,
    /// Dynamic subscriber pools.
    pub dynamic: Vec<AnyPrefix>,
    /// Exemptions from the pools (static customers, approved unblock requests).
    pub exempt: Vec<AnyPrefix>,
    /// The ISP's own mail relays.
    pub relays: Vec<AnyPrefix>,
    /// If not empty, only destinations inside these prefixes are blocked.
    pub scope: Vec<AnyPrefix>,
    /// Most resets per second and worker under [`Action::Reject`]
    /// (`None`: [`DEFAULT_REJECT_RATE`]).
    pub reject_rate: Option<u32>,
}

/// Which list of an [`OutboundSpec`] an entry came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListName {
    /// `dynamic`.
    Dynamic,
    /// `exempt`.
    Exempt,
    /// `relays`.
    Relays,
    /// `scope`.
    Scope,
}

impl fmt::Display for ListName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ListName::Dynamic => "dynamic",
            ListName::Exempt => "exempt",
            ListName::Relays => "relays",
            ListName::Scope => "scope",
        })
    }
}

/// Why a policy cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The same prefix is both dynamic and exempt.
    #[error("{prefix} is listed in both dynamic (entry {dynamic}) and exempt (entry {exempt})")]
    DynamicAndExempt {
        /// The prefix.
        prefix: AnyPrefix,
        /// Its position in `dynamic`.
        dynamic: usize,
        /// Its position in `exempt`.
        exempt: usize,
    },
    /// No port is blocked.
    #[error("ports is empty: nothing could ever be blocked")]
    NoPorts,
    /// A table could not be built (an internal invariant broke).
    #[error("building the {0} table failed: {1}")]
    Table(ListName, BuildError),
}

/// A prefix listed more than once in the same list (kept once; reported as a warning).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Duplicate {
    /// The list.
    pub list: ListName,
    /// The prefix.
    pub prefix: AnyPrefix,
    /// Position of the first occurrence.
    pub first: usize,
    /// Position of the repeat.
    pub again: usize,
}

/// One address family's outbound tables.
#[derive(Clone, Debug)]
struct FamilyTables<K: crate::lpm::Bits> {
    /// dynamic ∪ exempt; value = (position << 1) | is_exempt.
    sources: LpmTable<K>,
    /// value = position in `relays`.
    relays: LpmTable<K>,
    /// value = position in `scope`.
    scope: LpmTable<K>,
}

impl<K: crate::lpm::Bits> FamilyTables<K> {
    #[inline]
    fn judge(&self, src: K, dst: K, scoped: bool, overlap: bool) -> Reason {
        let s = self.sources.lookup_raw(src);
        if s == NO_MATCH {
            return Reason::SourceNotDynamic;
        }
        if s & 1 == 1 {
            return Reason::SourceExempt;
        }
        if self.relays.lookup_raw(dst) != NO_MATCH {
            return Reason::DestinationRelay;
        }
        if scoped && self.scope.lookup_raw(dst) == NO_MATCH {
            return Reason::OutOfScope;
        }
        if overlap {
            Reason::BlockedOverlapFragment
        } else {
            Reason::Blocked
        }
    }

    fn matches(&self, src: K, dst: K) -> Matches {
        let pos = |v: u32| (v != NO_MATCH).then_some(v as usize);
        let s = self.sources.lookup_raw(src);
        Matches {
            source: (s != NO_MATCH).then(|| {
                let list = if s & 1 == 1 {
                    ListName::Exempt
                } else {
                    ListName::Dynamic
                };
                (list, (s >> 1) as usize)
            }),
            relay: pos(self.relays.lookup_raw(dst)),
            scope: pos(self.scope.lookup_raw(dst)),
        }
    }

    fn memory_bytes(&self) -> usize {
        self.sources.memory_bytes() + self.relays.memory_bytes() + self.scope.memory_bytes()
    }

    /// Reads the relay and scope tables again, each if at most [`SMALL_TABLE_BYTES`]
    /// (see [`Policy::warm_hot`]).
    fn warm_small_destinations(&self) {
        for t in [&self.relays, &self.scope] {
            if t.memory_bytes() <= SMALL_TABLE_BYTES {
                t.warm();
            }
        }
    }
}

/// IPv4 prefixes (dynamic and exempt) from which an outbound policy's source table is
/// built in the direct layout ([`Policy::build`]). Below it the root layout is under a
/// megabyte and stays in a core's cache, where it is nearly as fast for a whole parse of
/// mixed frames (`classify`), and 64 MiB would be out of all proportion to the list. On
/// the DPDK path it is not: [`Policy::build_direct`].
pub const DIRECT_SOURCE_PREFIXES: usize = 8192;

/// How an IPv4 source table is laid out ([`Policy::build_for`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SourceTable {
    /// Compact ([`Layout::Auto`]): sources from anywhere (the inbound check).
    Compact,
    /// Direct from [`DIRECT_SOURCE_PREFIXES`] prefixes, compact below.
    BySize,
    /// Direct whatever the size.
    Direct,
}

/// Table bytes from which every burst is judged cold ([`Policy::always_cold`]). Measured
/// (`op25b-bench classify`, alternating): on 1M prefixes (42 MiB) judging every burst cold
/// was faster on a million distinct frames; on 100k prefixes (6–8 MiB) it was within the
/// noise there and up to 5% slower on a few hot frames, so smaller tables keep it for the
/// first burst under a new policy only.
pub const COLD_TABLE_BYTES: usize = 16 << 20;

/// Destination tables up to this size are read again whole by [`Policy::warm_hot`].
const SMALL_TABLE_BYTES: usize = 1 << 20;

/// Cache lines [`Policy::warm_hot`] reads for the recorded blocks at most (2 MiB, twice a
/// core's private cache here). Measured with `op25b-bench swap`: the 1024 bursts of the
/// default run record about 8,400 IPv4 and 3,400 IPv6 blocks (8,800 and 78,000 lines),
/// and the IPv4 lines alone gave the whole gain; a million distinct frames record
/// 375,000 lines, and warming them all gained nothing over the whole-table warm.
pub const HOT_LINES_MAX: usize = 1 << 15;

/// Frames judged together: the lanes below are fixed arrays of this many slots, indexed
/// masked (`i % CHUNK`, free for a power of two), so the hot loops carry no grow or bounds
/// checks. A longer burst is judged chunk by chunk.
const CHUNK: usize = 256;

/// A parsed frame's reason before its lanes are judged: `Blocked` (provisional, settled by
/// [`Lanes::judge`]) when it kept a lane, else its port is not blocked.
#[inline(always)]
fn provisional(kept_lane: bool) -> Reason {
    if kept_lane {
        Reason::Blocked
    } else {
        Reason::PortNotBlocked
    }
}

/// Per-family lanes of a chunk that need table lookups.
///
/// A lane is written unconditionally at slot `n` and kept by advancing `n` by 0 or 1, so
/// which frames go on to a lookup is data, not a branch the CPU has to guess per frame.
#[derive(Debug)]
struct Lanes<K> {
    /// Lanes in use (at most the frames of the chunk, so below `CHUNK` while writing).
    n: usize,
    /// One allocation, so the hot loops address every array from one base register.
    a: Box<LaneArrays<K>>,
}

/// The arrays of [`Lanes`], by slot.
#[derive(Debug)]
struct LaneArrays<K> {
    frame: [u32; CHUNK],
    overlap: [bool; CHUNK],
    src: [K; CHUNK],
    dst: [K; CHUNK],
    /// Source values, then relay values of the kept lanes.
    value: [u32; CHUNK],
    /// Scope values of the kept lanes (only filled when a scope is set).
    scope: [u32; CHUNK],
    /// Position in `dynamic` of each kept lane's source match.
    pos: [u32; CHUNK],
}

impl<K: crate::lpm::Bits> Default for Lanes<K> {
    fn default() -> Self {
        Lanes {
            n: 0,
            a: Box::new(LaneArrays {
                frame: [0; CHUNK],
                overlap: [false; CHUNK],
                src: [K::ZERO; CHUNK],
                dst: [K::ZERO; CHUNK],
                value: [0; CHUNK],
                scope: [0; CHUNK],
                pos: [0; CHUNK],
            }),
        }
    }
}

/// Writes the lanes of one chunk: borrowed apart from [`Lanes`], so the count lives in a
/// register while the chunk is parsed; [`Policy::fill_chunk`] stores it back.
struct LaneWriter<'a, K> {
    n: usize,
    a: &'a mut LaneArrays<K>,
}

impl<K: Copy> LaneWriter<'_, K> {
    /// Writes a lane at slot `n` and keeps it when `keep` holds (`frame` < CHUNK).
    #[inline(always)]
    fn push_if(&mut self, keep: bool, frame: usize, src: K, dst: K, overlap: bool) {
        let n = self.n % CHUNK;
        self.a.frame[n] = frame as u32;
        self.a.overlap[n] = overlap;
        self.a.src[n] = src;
        self.a.dst[n] = dst;
        self.n += usize::from(keep);
    }
}

impl<K: crate::lpm::Bits> Lanes<K> {
    /// A writer of this chunk's lanes from the first slot on (the lanes are reset).
    fn writer(&mut self) -> LaneWriter<'_, K> {
        LaneWriter {
            n: 0,
            a: &mut self.a,
        }
    }

    /// Prefetches, for every written lane, the first line each of `t`'s tables will read
    /// for it (source, relay and scope), so a cold burst pays about one memory latency for
    /// all of them instead of one per table. Kept out of line: the warm path only tests
    /// the flag.
    #[inline(never)]
    fn prefetch_tables(&self, t: &FamilyTables<K>, scoped: bool) {
        let n = self.n.min(CHUNK);
        let a = &*self.a;
        for (&src, &dst) in a.src[..n].iter().zip(&a.dst[..n]) {
            t.sources.prefetch_first(src);
            if !t.relays.is_empty() {
                t.relays.prefetch_first(dst);
            }
            if scoped {
                t.scope.prefetch_first(dst);
            }
        }
    }

    /// Settles the provisional reasons of these lanes (`reasons` is the chunk's, indexed by
    /// frame in the chunk), with batched lookups per table, appends (base + frame, dynamic
    /// position) of every blocked lane to `blocked` (in frame order) and adds the reasons it
    /// settled to `tally`. No branch depends on a lane's outcome: reasons are selected and
    /// kept lanes compacted arithmetically.
    fn judge(
        &mut self,
        t: &FamilyTables<K>,
        scoped: bool,
        reasons: &mut [Reason; CHUNK],
        base: u32,
        blocked: &mut Vec<(u32, u32)>,
        tally: &mut [u32; Reason::COUNT],
    ) {
        let n = self.n.min(CHUNK);
        if n == 0 {
            return;
        }
        let a = &mut *self.a;
        t.sources.lookup_batch(&a.src[..n], &mut a.value[..n]);
        // Keep only lanes whose source is dynamic, compacting in place. NO_MATCH is odd,
        // so "even value" is exactly "a dynamic entry is the longest match".
        let (mut kept, mut exempt) = (0usize, 0u32);
        for i in 0..n {
            let v = a.value[i];
            let f = a.frame[i];
            let dynamic = v & 1 == 0;
            let is_exempt = !dynamic & (v != NO_MATCH);
            exempt += u32::from(is_exempt);
            reasons[f as usize % CHUNK] = if dynamic {
                Reason::Blocked // provisional: settled below
            } else if is_exempt {
                Reason::SourceExempt
            } else {
                Reason::SourceNotDynamic
            };
            let k = kept % CHUNK;
            a.frame[k] = f;
            a.overlap[k] = a.overlap[i];
            a.dst[k] = a.dst[i];
            a.pos[k] = v >> 1;
            kept += usize::from(dynamic);
        }
        tally[Reason::SourceExempt.index()] += exempt;
        tally[Reason::SourceNotDynamic.index()] += (n - kept) as u32 - exempt;
        if kept == 0 {
            return;
        }
        if t.relays.is_empty() {
            a.value[..kept].fill(NO_MATCH);
        } else {
            t.relays.lookup_batch(&a.dst[..kept], &mut a.value[..kept]);
        }
        if scoped {
            t.scope.lookup_batch(&a.dst[..kept], &mut a.scope[..kept]);
        }
        let (mut relay, mut out_of_scope, mut overlap) = (0u32, 0u32, 0u32);
        let first = blocked.len();
        blocked.resize(first + kept, (0, 0));
        let mut nb = first;
        for i in 0..kept {
            let f = a.frame[i];
            let is_relay = a.value[i] != NO_MATCH;
            // Without a scope every destination is in it.
            let in_scope = !scoped | (a.scope[i] != NO_MATCH);
            let is_blocked = !is_relay & in_scope;
            let ov = is_blocked & a.overlap[i];
            relay += u32::from(is_relay);
            out_of_scope += u32::from(!is_relay & !in_scope);
            overlap += u32::from(ov);
            reasons[f as usize % CHUNK] = if is_relay {
                Reason::DestinationRelay
            } else if !in_scope {
                Reason::OutOfScope
            } else if ov {
                Reason::BlockedOverlapFragment
            } else {
                Reason::Blocked
            };
            if let Some(b) = blocked.get_mut(nb) {
                *b = (base + f, a.pos[i]);
            }
            nb += usize::from(is_blocked);
        }
        blocked.truncate(nb);
        tally[Reason::DestinationRelay.index()] += relay;
        tally[Reason::OutOfScope.index()] += out_of_scope;
        tally[Reason::BlockedOverlapFragment.index()] += overlap;
        tally[Reason::Blocked.index()] += kept as u32 - relay - out_of_scope - overlap;
    }
}

/// Reusable buffers for [`Policy::judge_burst`], and what it found.
#[derive(Debug)]
pub struct BurstScratch {
    v4: Lanes<u32>,
    v6: Lanes<u128>,
    /// The current chunk's reasons, by frame in the chunk.
    chunk: Box<[Reason; CHUNK]>,
    blocked: Vec<(u32, u32)>,
    tally: [u32; Reason::COUNT],
    /// See [`BurstScratch::set_cold`].
    cold: bool,
    /// See [`BurstScratch::set_hot`].
    hot: Option<(Arc<HotBlocks>, usize)>,
}

impl Default for BurstScratch {
    fn default() -> Self {
        BurstScratch {
            v4: Lanes::default(),
            v6: Lanes::default(),
            chunk: Box::new([Reason::PortNotBlocked; CHUNK]),
            blocked: Vec::new(),
            tally: [0; Reason::COUNT],
            cold: false,
            hot: None,
        }
    }
}

impl BurstScratch {
    /// The frames of the last judged burst that policy blocked, as (index in the burst,
    /// position of the source's longest match in the `dynamic` list), in burst order.
    pub fn blocked(&self) -> &[(u32, u32)] {
        &self.blocked
    }

    /// Whether the next bursts are judged as cold: the policy's tables are probably not in
    /// this core's cache (the first burst under a newly published policy), so each chunk
    /// first prefetches every lane's first line in every table, and the misses of all
    /// tables overlap instead of following table by table. Verdicts are the same either
    /// way; on tables already in cache it only costs the extra prefetches, so it is off
    /// by default. Workers set it for the first burst under a new policy, and for every
    /// burst under a policy that is [`Policy::always_cold`].
    pub fn set_cold(&mut self, cold: bool) {
        self.cold = cold;
    }

    /// Records into slot `slot` of `hot`, while it is recording, the source-table blocks
    /// the lookups of each burst start in (see [`crate::hot`]).
    pub fn set_hot(&mut self, hot: Option<(Arc<HotBlocks>, usize)>) {
        self.hot = hot;
    }

    /// Frames of the last judged burst per [`Reason`], indexed by [`Reason::index`].
    pub fn tally(&self) -> &[u32; Reason::COUNT] {
        &self.tally
    }
}

/// Reusable buffers for [`Policy::judge_indexed`], and what it found.
#[derive(Debug)]
pub struct IndexedScratch {
    a: Box<PlainArrays>,
    /// Frames the plain parse did not take (index in the burst), for the general judge.
    others: Vec<u32>,
    /// The general judge's buffers and findings (for `others`).
    general: BurstScratch,
    /// Its per-frame reasons (not used, but [`Policy::judge_burst`] writes them).
    general_reasons: Vec<Reason>,
    blocked: Vec<(u32, u32)>,
    tally: [u32; Reason::COUNT],
    /// The last chunk's plain pass kept few frames (see [`FEW_TO_PORT`]): the next one
    /// branches on each frame's port instead of writing a lane slot for every frame.
    few_to_port: bool,
    /// See [`IndexedScratch::set_bits`].
    bits_mode: bool,
    /// The last burst was judged into `bits` (bits mode, and no longer than [`BITS_BURST`]).
    as_bits: bool,
    /// Bits mode: bit `i % 64` of word `i / 64` is set for each blocked frame `i`.
    bits: [u64; BITS_BURST / 64],
    /// Bits mode: how many bits are set.
    nbits: usize,
    /// Bits mode: the `dynamic` positions of the blocked plain frames are `a.pos[..npos]`
    /// (the burst is one chunk).
    npos: usize,
    /// Bits mode: the general judge ran on this burst, so its blocked list is this burst's.
    general_ran: bool,
}

/// Bursts of at most this many frames can be judged into bits
/// ([`IndexedScratch::set_bits`]): one chunk.
pub const BITS_BURST: usize = CHUNK;

/// A chunk's plain pass that keeps at most 1 frame in this many (to a blocked port) makes
/// the next chunk's pass branch on the port. Writing every plain frame's lane slot and
/// counting it kept or not costs work on every frame and ties each slot's address to the
/// frame before's port; a branch skips both, and with so few frames to the port it
/// mispredicts at most about twice per kept frame, whatever their order. The chunk after
/// one that kept more takes the branch-free pass, in whatever order its frames come; only
/// a dense chunk right after a sparse one is judged branching (traffic whose bursts
/// alternate so pays the branching pass's cost on every dense one). (`judge_indexed` on
/// 64-frame bursts of the `dpdk-null` workload's frames, drawn at random, in this
/// process's cache: always branching ran 1.31x the branch-free pass with 1% of the frames
/// to port 25, 0.70x with half; bench/results/dpdk-null.md.)
const FEW_TO_PORT: usize = 16;

/// The parse of one chunk's `m` frames from `base` in [`Policy::judge_plain`]: each untagged
/// IPv4 TCP frame's (source, index in the chunk) goes to `a.lane`, kept when
/// `blocked_port` says its destination port is blocked; every other frame's index in the
/// burst goes to `a.others`. Returns how many lanes were kept (the first ones) and how
/// many others there were. `BRANCH`: only the kept frames write a slot (a branch on the
/// port, see [`FEW_TO_PORT`]); else every plain frame writes one and the count says which
/// stay. Both lists are fixed arrays written by index, so the loop calls nothing and
/// keeps its counts in registers (a `Vec` push here, with its growth call, made LLVM keep
/// the kept count on the stack).
#[inline(always)]
fn plain_pass<'a, const BRANCH: bool>(
    (m, base, frame, blocked_port): (
        usize,
        usize,
        &impl Fn(usize) -> &'a [u8],
        &impl Fn(u16) -> bool,
    ),
    a: &mut PlainArrays,
) -> (usize, usize) {
    let (mut kept, mut others) = (0usize, 0usize);
    for i in 0..m {
        let Some((src, _, dport)) = wire::parse_plain_ipv4(frame(base + i)) else {
            a.others[others % CHUNK] = (base + i) as u32;
            others += 1;
            continue;
        };
        let hit = blocked_port(dport);
        if BRANCH && !hit {
            continue;
        }
        a.lane[kept % CHUNK] = (u64::from(src) << 32) | i as u64;
        kept += usize::from(hit);
    }
    (kept, others)
}

// keep_dynamic counts the lanes that matched nothing by the value's top bit.
const _: () = assert!(MAX_VALUE <= 1 << 31 && NO_MATCH >> 31 == 1);

/// Keeps the lanes of `lane[..k]` whose source is dynamic (`value(i, lane[i])` is the
/// source table's value for lane `i`): their `dynamic` positions go to the first slots of
/// `pos`, and `keep(slot, frame in the chunk, dynamic)` is called for every lane (its
/// slot is taken only if it is dynamic); returns (how many, how many lanes matched
/// nothing). NO_MATCH is odd, so "even value" is exactly "a dynamic entry is the longest
/// match". No branch depends on a lane's value.
#[inline(always)]
fn keep_dynamic(
    (lane, pos): (&[u64; CHUNK], &mut [u32; CHUNK]),
    k: usize,
    value: impl Fn(usize, u64) -> u32,
    mut keep: impl FnMut(usize, u32, bool),
) -> (usize, u32) {
    let (mut dynamic, mut unmatched) = (0usize, 0u32);
    for (i, &l) in lane[..k.min(CHUNK)].iter().enumerate() {
        let v = value(i, l);
        // Values are below MAX_VALUE (2^30, checked when a table is built): only NO_MATCH
        // has the top bit set. (Two instructions instead of a compare's five; about 1% of
        // the whole DPDK poll on net_null, bench/results/dpdk-null.md.)
        unmatched += v >> 31;
        let is_dynamic = v & 1 == 0;
        let d = dynamic % CHUNK;
        keep(d, l as u32, is_dynamic);
        pos[d] = v >> 1;
        dynamic += usize::from(is_dynamic);
    }
    (dynamic, unmatched)
}

/// The slots of one chunk's plain pass (its lanes, and the indexes of the frames it does
/// not take) and of its lanes' lookups, in one allocation (one base register).
#[derive(Debug)]
struct PlainArrays {
    /// (source << 32) | frame in the chunk: written for every plain frame and kept for
    /// those to a blocked port (the branch-free pass), or written for those only (the
    /// branching pass, see [`FEW_TO_PORT`]).
    lane: [u64; CHUNK],
    /// The burst indexes of the chunk's frames that are not plain, in order.
    others: [u32; CHUNK],
    /// Keys of the current lookup: sources, then destinations.
    keys: [u32; CHUNK],
    /// Values of the current lookup: sources, then relays.
    values: [u32; CHUNK],
    scope: [u32; CHUNK],
    /// Frame in the chunk and `dynamic` position of each lane whose source is dynamic.
    frame: [u32; CHUNK],
    pos: [u32; CHUNK],
}

impl Default for IndexedScratch {
    fn default() -> Self {
        IndexedScratch {
            a: Box::new(PlainArrays {
                lane: [0; CHUNK],
                others: [0; CHUNK],
                keys: [0; CHUNK],
                values: [0; CHUNK],
                scope: [0; CHUNK],
                frame: [0; CHUNK],
                pos: [0; CHUNK],
            }),
            others: Vec::new(),
            general: BurstScratch::default(),
            general_reasons: Vec::new(),
            blocked: Vec::new(),
            tally: [0; Reason::COUNT],
            few_to_port: false,
            bits_mode: false,
            as_bits: false,
            bits: [0; BITS_BURST / 64],
            nbits: 0,
            npos: 0,
            general_ran: false,
        }
    }
}

impl IndexedScratch {
    /// As [`BurstScratch::blocked`], for the last burst [`Policy::judge_indexed`] judged
    /// (empty if it was judged into bits, see [`IndexedScratch::set_bits`]).
    pub fn blocked(&self) -> &[(u32, u32)] {
        &self.blocked
    }

    /// Whether the next bursts of at most [`BITS_BURST`] frames give their blocked frames
    /// as bits ([`IndexedScratch::blocked_bits`]) and `dynamic` positions
    /// ([`IndexedScratch::blocked_positions`]) instead of a list of both: for a caller
    /// that only drops them, and counts them per prefix. The list is built in burst
    /// order, frame by frame, and read again to split the burst; the bits are set where
    /// each frame is found blocked. Longer bursts are still listed. Off by default.
    pub fn set_bits(&mut self, on: bool) {
        self.bits_mode = on;
    }

    /// The blocked frames of the last burst, if it was judged into bits (see
    /// [`IndexedScratch::set_bits`]): bit `i % 64` of word `i / 64` is set for each blocked
    /// frame `i`, and how many are set. `None` if it was listed ([`IndexedScratch::blocked`]).
    pub fn blocked_bits(&self) -> Option<(&[u64; BITS_BURST / 64], usize)> {
        self.as_bits.then_some((&self.bits, self.nbits))
    }

    /// The `dynamic` positions of the blocked frames of the last burst judged into bits,
    /// one per blocked frame, in no particular order (nothing if it was listed).
    pub fn blocked_positions(&self) -> impl Iterator<Item = u32> + '_ {
        let general: &[(u32, u32)] = if self.as_bits && self.general_ran {
            self.general.blocked()
        } else {
            &[]
        };
        let plain = if self.as_bits { self.npos } else { 0 };
        self.a.pos[..plain.min(CHUNK)]
            .iter()
            .copied()
            .chain(general.iter().map(|&(_, p)| p))
    }

    /// Sets the bits of the frames the general judge blocked (its list's indexes through
    /// `index`, into the burst).
    fn general_bits(&mut self, index: impl Fn(u32) -> u32) {
        self.general_ran = true;
        for &(f, _) in self.general.blocked() {
            let i = index(f) as usize % BITS_BURST;
            self.bits[i / 64] |= 1 << (i % 64);
        }
        self.nbits += self.general.blocked().len();
    }

    /// As [`BurstScratch::tally`].
    pub fn tally(&self) -> &[u32; Reason::COUNT] {
        &self.tally
    }

    /// As [`BurstScratch::set_cold`], except that for untagged IPv4 frames only the
    /// source table's first lines are prefetched (relays and scope are looked up for
    /// dynamic sources only, and are usually small). Kept in `general`, which judges
    /// the other frames, and read from there for the plain ones.
    pub fn set_cold(&mut self, cold: bool) {
        self.general.set_cold(cold);
    }

    /// As [`BurstScratch::set_hot`] (kept in `general`, as the cold flag).
    pub fn set_hot(&mut self, hot: Option<(Arc<HotBlocks>, usize)>) {
        self.general.set_hot(hot);
    }
}

/// Which list entries a source and destination match (positions in the [`OutboundSpec`]
/// lists), for explaining a verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Matches {
    /// The longest match for the source across dynamic and exempt.
    pub source: Option<(ListName, usize)>,
    /// The longest relay match for the destination.
    pub relay: Option<usize>,
    /// The longest scope match for the destination.
    pub scope: Option<usize>,
}

/// Sizes of a built policy, for `op25b check` and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicySizes {
    /// Distinct (dynamic, exempt, relays, scope) prefixes, IPv4.
    pub v4: [usize; 4],
    /// Distinct (dynamic, exempt, relays, scope) prefixes, IPv6.
    pub v6: [usize; 4],
    /// Bytes held by the lookup tables.
    pub memory_bytes: usize,
    /// Of `memory_bytes`, those of an IPv4 source table in the direct layout (0 when it
    /// is compact; see [`Policy::build`]).
    pub direct_bytes: usize,
}

/// An immutable, complete policy: what workers judge frames with.
#[derive(Clone, Debug)]
pub struct Policy {
    generation: u64,
    ports: PortSet,
    action: Action,
    scoped: bool,
    v4: FamilyTables<u32>,
    v6: FamilyTables<u128>,
    sizes: PolicySizes,
    spec: OutboundSpec,
    hits: Option<std::sync::Arc<PrefixHits>>,
}

impl Policy {
    /// Builds an outbound (OP25B) policy; also returns the prefixes repeated inside one
    /// list. The sources it looks up are the subscribers' own, inside the ISP's pools, so
    /// an IPv4 source table of at least [`DIRECT_SOURCE_PREFIXES`] prefixes is built in the
    /// direct layout ([`Layout::Direct`], 64 MiB or more), which is the fastest for such keys.
    pub fn build(
        spec: OutboundSpec,
        generation: u64,
    ) -> Result<(Policy, Vec<Duplicate>), PolicyError> {
        Policy::build_for(spec, generation, SourceTable::BySize)
    }

    /// [`Policy::build`] with the IPv4 source table in the direct layout whatever its size
    /// (64 MiB and more), as `op25b run` builds it for the DPDK backend; compact when the
    /// policy has no IPv4 source, or when the table cuts more /24s than [`Layout::Direct`]
    /// may hold (it falls back itself). There a burst's plain frames take a short path
    /// where the lookup weighs most: at 1000 prefixes the compact layout's lookup cost 29
    /// instructions a frame against 4.3 direct, and net_null ran 10% slower with it
    /// (bench/results/dpdk-null.md).
    pub fn build_direct(
        spec: OutboundSpec,
        generation: u64,
    ) -> Result<(Policy, Vec<Duplicate>), PolicyError> {
        Policy::build_for(spec, generation, SourceTable::Direct)
    }

    /// [`Policy::build`] for the inbound (IP25B) check, whose sources are anyone's: its
    /// tables keep the compact layouts ([`Layout::Auto`]), which are three times faster
    /// than the direct one on addresses spread over the whole space.
    pub fn build_inbound(
        spec: OutboundSpec,
        generation: u64,
    ) -> Result<(Policy, Vec<Duplicate>), PolicyError> {
        Policy::build_for(spec, generation, SourceTable::Compact)
    }

    fn build_for(
        spec: OutboundSpec,
        generation: u64,
        sources: SourceTable,
    ) -> Result<(Policy, Vec<Duplicate>), PolicyError> {
        if spec.ports.is_empty() {
            return Err(PolicyError::NoPorts);
        }
        let mut dups = Vec::new();
        let mut sizes = PolicySizes::default();
        // Sources: one table per family holding dynamic and exempt.
        let mut src4 = Vec::new();
        let mut src6 = Vec::new();
        let mut seen: HashMap<AnyPrefix, (ListName, usize)> = HashMap::new();
        for (list, entries, bit) in [
            (ListName::Dynamic, &spec.dynamic, 0u32),
            (ListName::Exempt, &spec.exempt, 1u32),
        ] {
            for (i, &p) in entries.iter().enumerate() {
                match seen.get(&p) {
                    Some(&(l, first)) if l == list => {
                        dups.push(Duplicate {
                            list,
                            prefix: p,
                            first,
                            again: i,
                        });
                        continue;
                    }
                    Some(&(_, first)) => {
                        return Err(PolicyError::DynamicAndExempt {
                            prefix: p,
                            dynamic: first,
                            exempt: i,
                        })
                    }
                    None => {
                        seen.insert(p, (list, i));
                    }
                }
                let v = ((i as u32) << 1) | bit;
                match p {
                    AnyPrefix::V4(q) => {
                        src4.push((q, v));
                        sizes.v4[bit as usize] += 1;
                    }
                    AnyPrefix::V6(q) => {
                        src6.push((q, v));
                        sizes.v6[bit as usize] += 1;
                    }
                }
            }
        }
        let layout = match sources {
            // (No IPv4 source: 64 MiB of no-match would be all it held.)
            SourceTable::Direct if !src4.is_empty() => Layout::Direct,
            SourceTable::BySize if src4.len() >= DIRECT_SOURCE_PREFIXES => Layout::Direct,
            _ => Layout::Auto,
        };
        let sources4 = Lpm4::build_layout(&src4, layout)
            .map_err(|e| PolicyError::Table(ListName::Dynamic, e))?;
        let sources6 = Lpm6::build(&src6).map_err(|e| PolicyError::Table(ListName::Dynamic, e))?;
        let mut set_tables = |list: ListName, entries: &[AnyPrefix], slot: usize| {
            let mut seen: HashMap<AnyPrefix, usize> = HashMap::new();
            let (mut t4, mut t6) = (Vec::new(), Vec::new());
            for (i, &p) in entries.iter().enumerate() {
                if let Some(&first) = seen.get(&p) {
                    dups.push(Duplicate {
                        list,
                        prefix: p,
                        first,
                        again: i,
                    });
                    continue;
                }
                seen.insert(p, i);
                match p {
                    AnyPrefix::V4(q) => t4.push((q, i as u32)),
                    AnyPrefix::V6(q) => t6.push((q, i as u32)),
                }
            }
            sizes.v4[slot] = t4.len();
            sizes.v6[slot] = t6.len();
            let t4 = Lpm4::build(&t4).map_err(|e| PolicyError::Table(list, e))?;
            let t6 = Lpm6::build(&t6).map_err(|e| PolicyError::Table(list, e))?;
            Ok::<_, PolicyError>((t4, t6))
        };
        let (relays4, relays6) = set_tables(ListName::Relays, &spec.relays, 2)?;
        let (scope4, scope6) = set_tables(ListName::Scope, &spec.scope, 3)?;
        let v4 = FamilyTables {
            sources: sources4,
            relays: relays4,
            scope: scope4,
        };
        let v6 = FamilyTables {
            sources: sources6,
            relays: relays6,
            scope: scope6,
        };
        sizes.memory_bytes = v4.memory_bytes() + v6.memory_bytes();
        if v4.sources.layout() == Layout::Direct {
            sizes.direct_bytes = v4.sources.memory_bytes();
        }
        let policy = Policy {
            generation,
            ports: PortSet::new(&spec.ports),
            action: spec.action,
            scoped: !spec.scope.is_empty(),
            v4,
            v6,
            sizes,
            spec,
            hits: None,
        };
        Ok((policy, dups))
    }

    /// A policy that blocks nothing: every frame is judged and forwarded.
    pub fn empty() -> Policy {
        Policy::empty_with_generation(0)
    }

    /// [`Policy::empty`] with a generation number.
    pub fn empty_with_generation(generation: u64) -> Policy {
        let spec = OutboundSpec {
            ports: vec![25],
            ..OutboundSpec::default()
        };
        Policy::build(spec, generation)
            .expect("the empty policy is valid")
            .0
    }

    /// Judges one parsed frame.
    #[inline]
    pub fn judge(&self, key: &FlowKey) -> Reason {
        let overlap = match key.transport {
            Transport::Tcp { dport } => {
                if !self.ports.contains(dport) {
                    return Reason::PortNotBlocked;
                }
                false
            }
            Transport::Ipv4OverlapFragment => true,
        };
        match key.addrs {
            Addrs::V4 { src, dst } => self.v4.judge(src, dst, self.scoped, overlap),
            Addrs::V6 { src, dst } => self.v6.judge(src, dst, self.scoped, overlap),
        }
    }

    /// The verdict for `key` and the list entries that decided it (what a support desk needs
    /// when a subscriber asks why their mail does not go out). Not for the hot path.
    pub fn explain(&self, key: &FlowKey) -> (Reason, Matches) {
        let m = match key.addrs {
            Addrs::V4 { src, dst } => self.v4.matches(src, dst),
            Addrs::V6 { src, dst } => self.v6.matches(src, dst),
        };
        (self.judge(key), m)
    }

    /// Parses and judges one frame.
    #[inline]
    pub fn classify(&self, frame: &[u8]) -> (Reason, Verdict) {
        let reason = match wire::parse(frame) {
            Ok(key) => self.judge(&key),
            Err(skip) => Reason::Skip(skip),
        };
        (reason, self.verdict(reason))
    }

    /// Judges a burst of frames: `reasons` is cleared and gets one reason per frame, in
    /// order. Equivalent to [`Policy::classify`] on each frame, but the table lookups of the
    /// whole burst are batched so their memory reads overlap. `scratch` is reused from burst
    /// to burst, so nothing is allocated once it has grown to the burst size.
    pub fn judge_burst<'a>(
        &self,
        frames: impl Iterator<Item = &'a [u8]>,
        scratch: &mut BurstScratch,
        reasons: &mut Vec<Reason>,
    ) {
        reasons.clear();
        let s = scratch;
        s.blocked.clear();
        s.tally = [0; Reason::COUNT];
        let mut frames = frames.fuse();
        let recording = s.hot.as_ref().is_some_and(|(h, _)| h.recording());
        loop {
            let base = reasons.len();
            let (m, skipped) = self.fill_chunk(&mut frames, s);
            if m == 0 {
                break;
            }
            if recording {
                self.record(s);
            }
            // Judged frames that kept no lane went to a port that is not blocked.
            s.tally[Reason::PortNotBlocked.index()] +=
                m as u32 - skipped - (s.v4.n + s.v6.n) as u32;
            if s.cold {
                s.v4.prefetch_tables(&self.v4, self.scoped);
                s.v6.prefetch_tables(&self.v6, self.scoped);
            }
            let first = s.blocked.len();
            s.v4.judge(
                &self.v4,
                self.scoped,
                &mut s.chunk,
                base as u32,
                &mut s.blocked,
                &mut s.tally,
            );
            let v4_blocked = s.blocked.len();
            s.v6.judge(
                &self.v6,
                self.scoped,
                &mut s.chunk,
                base as u32,
                &mut s.blocked,
                &mut s.tally,
            );
            if v4_blocked > first && s.blocked.len() > v4_blocked {
                // Both families blocked something: back into burst order (no allocation).
                s.blocked[first..].sort_unstable();
            }
            reasons.extend_from_slice(&s.chunk[..m]);
            if m < CHUNK {
                break;
            }
        }
    }

    /// Judges the `n` frames `frame(0)`, …, `frame(n - 1)` as [`Policy::judge_burst`] does
    /// (the same blocked list, in burst order, and the same tally in `s`), but writes no
    /// reason per frame, so a plain frame costs at most one 8-byte store: for a backend whose
    /// frames stay in its own buffers (DPDK mbufs), which needs only the blocked ones.
    /// `frame` must give the same bytes for an index each time it is asked (it is asked
    /// again for the destination of a dynamic source).
    ///
    /// Untagged IPv4 TCP frames ([`wire::parse_plain_ipv4`]) are judged here, each writing
    /// one lane slot (source and index) that only a frame to a blocked port keeps (after a
    /// chunk that kept at most 1 frame in 16, only those write one); every other frame goes
    /// to [`Policy::judge_burst`], and the two lists are merged. A burst
    /// whose first frame is not plain (a tagged link's) goes to `judge_burst` whole.
    pub fn judge_indexed<'a>(
        &self,
        n: usize,
        frame: impl Fn(usize) -> &'a [u8],
        s: &mut IndexedScratch,
    ) {
        s.blocked.clear();
        s.others.clear();
        s.as_bits = s.bits_mode && n <= BITS_BURST;
        if s.as_bits {
            s.bits = [0; BITS_BURST / 64];
            (s.nbits, s.npos, s.general_ran) = (0, 0, false);
        }
        if n > 0 && wire::parse_plain_ipv4(frame(0)).is_none() {
            // A link's frames mostly share one encapsulation (an access link's are
            // tagged): a burst that starts with another frame is judged whole, as
            // judge_burst does, instead of trying the plain parse on each frame first.
            self.judge_burst((0..n).map(&frame), &mut s.general, &mut s.general_reasons);
            s.tally = *s.general.tally();
            if s.as_bits {
                s.general_bits(|f| f);
            } else {
                s.blocked.extend_from_slice(s.general.blocked());
            }
            return;
        }
        s.tally = [0; Reason::COUNT];
        let recording = s.general.hot.as_ref().is_some_and(|(h, _)| h.recording());
        // One copy of the pass per kind of port test: with one blocked port (OP25B's
        // usual 25) a compare, else a read of the bitmap. The compare is of the port as
        // the frame holds it (network order): the parse's byte swap of each frame's port
        // and this one cancel, leaving one swap of `port` before the loop, and the loop
        // compares the frame's bytes in place (0.3-0.9% of the DPDK poll on net_null,
        // in-process A/B, bench/results/dpdk-null.md).
        match self.ports.single() {
            Some(port) => {
                let wire_order = port.swap_bytes();
                self.judge_plain(n, &frame, s, recording, |d| d.swap_bytes() == wire_order)
            }
            None => self.judge_plain(n, &frame, s, recording, |d| self.ports.contains(d)),
        }
        if s.others.is_empty() {
            return;
        }
        let others = std::mem::take(&mut s.others);
        self.judge_burst(
            others.iter().map(|&i| frame(i as usize)),
            &mut s.general,
            &mut s.general_reasons,
        );
        for (t, g) in s.tally.iter_mut().zip(s.general.tally()) {
            *t += g;
        }
        if s.as_bits {
            s.general_bits(|f| others[f as usize % others.len()]);
            s.others = others;
            return;
        }
        let first = s.blocked.len();
        s.blocked.extend(
            s.general
                .blocked()
                .iter()
                .map(|&(f, pos)| (others[f as usize], pos)),
        );
        if first > 0 && s.blocked.len() > first {
            // Both parts blocked something: back into burst order (no allocation).
            s.blocked.sort_unstable();
        }
        s.others = others;
    }

    /// The plain pass of [`Policy::judge_indexed`]: each chunk's untagged IPv4 TCP frames
    /// write a lane slot (source, index), kept when `blocked_port` says their destination
    /// port is blocked (after a chunk that kept few, see [`FEW_TO_PORT`], only those
    /// write one), and are settled by [`Policy::judge_plain_lanes`]; every other frame
    /// goes to `s.others`.
    #[inline(always)]
    fn judge_plain<'a>(
        &self,
        n: usize,
        frame: &impl Fn(usize) -> &'a [u8],
        s: &mut IndexedScratch,
        recording: bool,
        blocked_port: impl Fn(u16) -> bool,
    ) {
        let mut base = 0usize;
        while base < n {
            let m = (n - base).min(CHUNK);
            let pass = (m, base, frame, &blocked_port);
            let (kept, others) = if s.few_to_port {
                plain_pass::<true>(pass, &mut s.a)
            } else {
                plain_pass::<false>(pass, &mut s.a)
            };
            s.few_to_port = kept * FEW_TO_PORT <= m;
            if others > 0 {
                s.others.extend_from_slice(&s.a.others[..others.min(CHUNK)]);
            }
            let plain = m - others;
            s.tally[Reason::PortNotBlocked.index()] += (plain - kept) as u32;
            if kept > 0 {
                self.judge_plain_lanes(kept, base, frame, s, recording);
            }
            base += m;
        }
    }

    /// Settles the `kept` plain lanes of the chunk at `base` (sources and indexes in
    /// `s.a.lane`): batched lookups per table, as [`Lanes::judge`] does, adding to `s`'s
    /// tally and appending the blocked frames (index in the burst, dynamic position) in
    /// burst order.
    fn judge_plain_lanes<'a>(
        &self,
        kept: usize,
        base: usize,
        frame: &impl Fn(usize) -> &'a [u8],
        s: &mut IndexedScratch,
        recording: bool,
    ) {
        let t = &self.v4;
        let k = kept.min(CHUNK);
        let a = &mut *s.a;
        // A direct table is read once per key (twice in a cut /24): read it in the loop
        // that keeps the dynamic lanes, without a pass writing the keys first, unless the
        // keys are wanted for recording or prefetching.
        let fused =
            t.sources.layout() == crate::lpm::Layout::Direct && !recording && !s.general.cold;
        if !fused {
            for (key, &lane) in a.keys[..k].iter_mut().zip(&a.lane[..k]) {
                *key = (lane >> 32) as u32;
            }
            if recording {
                if let Some((hot, slot)) = &s.general.hot {
                    for &key in &a.keys[..k] {
                        hot.mark(*slot, Family::V4, t.sources.block_of(key));
                    }
                }
            }
            if s.general.cold {
                for &key in &a.keys[..k] {
                    t.sources.prefetch_first(key);
                }
            }
            t.sources.lookup_batch(&a.keys[..k], &mut a.values[..k]);
        }
        // Judged into bits without a destination list, a dynamic source to a blocked port
        // is blocked as it is found: its bit is set there, and only its position is kept.
        let bits_now = s.as_bits && t.relays.is_empty() && !self.scoped;
        let PlainArrays {
            lane,
            values,
            frame: lane_frame,
            pos,
            ..
        } = &mut *a;
        let direct = |_, lane: u64| t.sources.direct_lookup((lane >> 32) as u32);
        let batch = |i: usize, _| values[i % CHUNK];
        // Each dynamic lane's frame, compacted for the destination lookups, or (judged into
        // bits without a destination list) its bit set: it is blocked.
        let compact = |d: usize, f: u32, _| lane_frame[d] = f;
        let bits = &mut s.bits;
        let block = |_, f: u32, is_dynamic: bool| {
            let f = (base + f as usize) % BITS_BURST;
            bits[f / 64] |= u64::from(is_dynamic) << (f % 64);
        };
        let (dynamic_lanes, unmatched) = match (fused, bits_now) {
            (true, false) => keep_dynamic((lane, pos), k, direct, compact),
            (false, false) => keep_dynamic((lane, pos), k, batch, compact),
            (true, true) => keep_dynamic((lane, pos), k, direct, block),
            (false, true) => keep_dynamic((lane, pos), k, batch, block),
        };
        // The other non-dynamic lanes matched an exempt entry.
        s.tally[Reason::SourceNotDynamic.index()] += unmatched;
        s.tally[Reason::SourceExempt.index()] += (k - dynamic_lanes) as u32 - unmatched;
        let d = dynamic_lanes;
        if d == 0 {
            return;
        }
        let base32 = base as u32;
        if t.relays.is_empty() && !self.scoped {
            // No destination list: every dynamic source to a blocked port is blocked.
            s.tally[Reason::Blocked.index()] += d as u32;
            if s.as_bits {
                // keep_dynamic set their bits.
                s.nbits += d;
                s.npos = d;
                return;
            }
            s.blocked.extend(
                a.frame[..d]
                    .iter()
                    .zip(&a.pos[..d])
                    .map(|(&f, &p)| (base32 + f, p)),
            );
            return;
        }
        for (key, &f) in a.keys[..d].iter_mut().zip(&a.frame[..d]) {
            // A plain frame holds its destination at 30..34 (it is at least 38 bytes).
            let b = frame(base + f as usize);
            *key = b
                .get(30..34)
                .map_or(0, |d| u32::from_be_bytes([d[0], d[1], d[2], d[3]]));
        }
        if t.relays.is_empty() {
            a.values[..d].fill(NO_MATCH);
        } else {
            t.relays.lookup_batch(&a.keys[..d], &mut a.values[..d]);
        }
        if self.scoped {
            t.scope.lookup_batch(&a.keys[..d], &mut a.scope[..d]);
        }
        // Whether lane i's destination is a relay, and in scope (without a scope every
        // destination is in it).
        let dest = |i: usize| {
            (
                a.values[i % CHUNK] != NO_MATCH,
                !self.scoped | (a.scope[i % CHUNK] != NO_MATCH),
            )
        };
        let (mut relay, mut out_of_scope) = (0u32, 0u32);
        if s.as_bits {
            // The blocked lanes' positions move down in place (nb <= i).
            let mut nb = 0usize;
            for i in 0..d {
                let (is_relay, in_scope) = dest(i);
                let is_blocked = !is_relay & in_scope;
                relay += u32::from(is_relay);
                out_of_scope += u32::from(!is_relay & !in_scope);
                let f = (base32 + a.frame[i]) as usize % BITS_BURST;
                s.bits[f / 64] |= u64::from(is_blocked) << (f % 64);
                a.pos[nb % CHUNK] = a.pos[i];
                nb += usize::from(is_blocked);
            }
            s.nbits += nb;
            s.npos = nb;
        } else {
            let first = s.blocked.len();
            s.blocked.resize(first + d, (0, 0));
            let mut nb = first;
            for i in 0..d {
                let (is_relay, in_scope) = dest(i);
                relay += u32::from(is_relay);
                out_of_scope += u32::from(!is_relay & !in_scope);
                if let Some(b) = s.blocked.get_mut(nb) {
                    *b = (base32 + a.frame[i], a.pos[i]);
                }
                nb += usize::from(!is_relay & in_scope);
            }
            s.blocked.truncate(nb);
        }
        s.tally[Reason::DestinationRelay.index()] += relay;
        s.tally[Reason::OutOfScope.index()] += out_of_scope;
        s.tally[Reason::Blocked.index()] += d as u32 - relay - out_of_scope;
    }

    /// Marks in the scratch's hot blocks the source-table block of every lane of the chunk
    /// (the frames that go on to a lookup). Out of line: only while a recording is on.
    #[cold]
    #[inline(never)]
    fn record(&self, s: &BurstScratch) {
        let Some((hot, slot)) = &s.hot else {
            return;
        };
        for src in &s.v4.a.src[..s.v4.n.min(CHUNK)] {
            hot.mark(*slot, Family::V4, self.v4.sources.block_of(*src));
        }
        for src in &s.v6.a.src[..s.v6.n.min(CHUNK)] {
            hot.mark(*slot, Family::V6, self.v6.sources.block_of(*src));
        }
    }

    /// Parses up to [`CHUNK`] frames of `frames` into the chunk's reasons and the lanes of
    /// `s` (which it resets), tallying the skipped frames; returns (frames taken, skipped).
    /// The lanes are written through [`LaneWriter`]s, so their counts stay in registers
    /// instead of being stored and reloaded at every frame.
    #[inline(always)]
    fn fill_chunk<'a>(
        &self,
        frames: &mut impl Iterator<Item = &'a [u8]>,
        s: &mut BurstScratch,
    ) -> (usize, u32) {
        let BurstScratch {
            v4,
            v6,
            chunk,
            tally,
            ..
        } = s;
        let chunk: &mut [Reason; CHUNK] = chunk;
        let (mut w4, mut w6) = (v4.writer(), v6.writer());
        let mut m = 0usize;
        let mut skipped = 0u32;
        for frame in frames.take(CHUNK) {
            let i = m;
            m += 1;
            if let Some((src, dst, dport)) = wire::parse_plain_ipv4(frame) {
                let keep = self.ports.contains(dport);
                w4.push_if(keep, i, src, dst, false);
                chunk[i % CHUNK] = provisional(keep);
                continue;
            }
            chunk[i % CHUNK] = match wire::parse(frame) {
                Err(skip) => {
                    let r = Reason::Skip(skip);
                    tally[r.index()] += 1;
                    skipped += 1;
                    r
                }
                Ok(key) => {
                    // Every judged frame is written to a lane; only those to a blocked
                    // port (or overlap fragments) keep it. No branch on the port.
                    let (keep, overlap) = match key.transport {
                        Transport::Tcp { dport } => (self.ports.contains(dport), false),
                        Transport::Ipv4OverlapFragment => (true, true),
                    };
                    match key.addrs {
                        Addrs::V4 { src, dst } => w4.push_if(keep, i, src, dst, overlap),
                        Addrs::V6 { src, dst } => w6.push_if(keep, i, src, dst, overlap),
                    }
                    provisional(keep)
                }
            };
        }
        let (n4, n6) = (w4.n, w6.n);
        v4.n = n4;
        v6.n = n6;
        (m, skipped)
    }

    /// What the action makes of a reason.
    #[inline]
    pub fn verdict(&self, reason: Reason) -> Verdict {
        match self.action {
            _ if !reason.is_blocked() => Verdict::Forward,
            Action::Drop => Verdict::Drop,
            Action::Reject => Verdict::Reject,
            Action::Monitor => Verdict::Forward,
        }
    }

    /// Starts, all at once, the cache misses on this policy's own fields and the port set's
    /// first words (ports 0..1024), which a worker's first burst under a newly published
    /// policy would otherwise take one after another. Only prefetches (no read, no write):
    /// call it when a worker first sees a policy. Measured, not guessed: prefetching the
    /// small tables whole as well made that first burst slower (see bench/results/swap-prefetch).
    pub fn prefetch_fields(&self) {
        crate::port::sys::prefetch_all(self);
        crate::port::sys::prefetch(&self.ports.bits[0]);
        crate::port::sys::prefetch(&self.ports.bits[8]);
    }

    /// Pulls every lookup table into the shared cache, and pushes the tables, the hit
    /// counters and this struct itself out of the calling core's private caches
    /// ([`LpmTable::warm`], [`crate::port::sys::demote`]). Call it on the control thread
    /// on the policy exactly where it will be published (inside its `Arc`: moving the
    /// struct afterwards writes it anew), so the first bursts of the workers, on other
    /// cores, neither fetch the tables from memory nor snoop this core for them. Measured
    /// with `op25b-bench swap` (bench/results/swap-intel): on a CPU with `cldemote`, the
    /// first burst under a new 1M-prefix policy cost 0.64–0.74 bursts extra against
    /// 0.90–1.10 with the reads alone.
    pub fn warm(&self) -> u64 {
        let mut sum = 0u64;
        for t in [&self.v4.sources, &self.v4.relays, &self.v4.scope] {
            sum = sum.wrapping_add(t.warm());
        }
        for t in [&self.v6.sources, &self.v6.relays, &self.v6.scope] {
            sum = sum.wrapping_add(t.warm());
        }
        if let Some(h) = &self.hits {
            h.demote();
        }
        crate::port::sys::demote_all(self);
        std::hint::black_box(sum)
    }

    /// Warms, after [`Policy::warm`], the blocks of this policy's source tables that the
    /// workers looked up under `old` while this one was built (recorded in `hot`, see
    /// [`crate::hot`]), IPv4 first, at most [`HOT_LINES_MAX`] cache lines in all; then
    /// reads the destination tables again when they are small. The lines the workers'
    /// next bursts will read are then among the ones this core read last, so they are
    /// still in the shared cache even when the tables are much larger than it. Returns
    /// the reads made for the blocks (IPv4, IPv6; about one cache line each).
    ///
    /// Measured with `op25b-bench swap` on 1M prefixes (bench/results/swap-hot, the
    /// README's hot-swap section): the first burst under the new policy cost a third less
    /// than with the whole-table warm alone.
    pub fn warm_hot(&self, old: &Policy, hot: &HotBlocks) -> [usize; 2] {
        // A block of the old table covers at most this many first-level entries of the
        // new one (1 when both tables have the same shape).
        const CAP: usize = 64;
        let (mut v4, mut v6) = (0, 0);
        for b in hot.blocks(Family::V4) {
            if v4 >= HOT_LINES_MAX {
                break;
            }
            let (first, last) = old.v4.sources.block_keys(b);
            v4 += self.v4.sources.warm_block(first, last, CAP);
        }
        for b in hot.blocks(Family::V6) {
            if v4 + v6 >= HOT_LINES_MAX {
                break;
            }
            let (first, last) = old.v6.sources.block_keys(b);
            v6 += self.v6.sources.warm_block(first, last, CAP);
        }
        if v4 + v6 > 0 {
            self.v4.warm_small_destinations();
            self.v6.warm_small_destinations();
            crate::port::sys::demote_all(self);
        }
        [v4, v6]
    }

    /// The generation number (increases with every successful reload).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The action for blocked segments.
    pub fn action(&self) -> Action {
        self.action
    }

    /// Most resets per second and worker under [`Action::Reject`].
    pub fn reject_rate(&self) -> u32 {
        self.spec.reject_rate.unwrap_or(DEFAULT_REJECT_RATE)
    }

    /// The blocked ports.
    pub fn ports(&self) -> &PortSet {
        &self.ports
    }

    /// Whether every burst should be judged cold (see [`BurstScratch::set_cold`]), not only
    /// the first under this policy: its tables are so large ([`COLD_TABLE_BYTES`] or more)
    /// that a burst's first reads mostly miss the cache anyway, and prefetching them all
    /// at once pays for itself. A direct source table does not count: it is built for
    /// keys that gather in the subscribers' pools, whose few entries stay in cache. (On
    /// the DPDK benchmark the prefetch pass was 1.8% of the profile's samples; the frame
    /// rate without it was the same within the machine's noise.)
    pub fn always_cold(&self) -> bool {
        self.sizes.memory_bytes - self.sizes.direct_bytes >= COLD_TABLE_BYTES
    }

    /// Table sizes.
    pub fn sizes(&self) -> PolicySizes {
        self.sizes
    }

    /// The spec this policy was built from.
    pub fn spec(&self) -> &OutboundSpec {
        &self.spec
    }

    /// Gives this policy per-prefix hit counters for `workers` worker slots (zeroed,
    /// allocated here, off the hot path). A worker in slot `w` counts every segment it
    /// blocks against the dynamic prefix that matched its source.
    pub fn with_hit_counters(mut self, workers: usize) -> Policy {
        self.hits = Some(std::sync::Arc::new(PrefixHits::new(
            workers,
            self.spec.dynamic.len(),
        )));
        self
    }

    /// The per-prefix hit counters, if this policy has them.
    #[inline]
    pub fn hits(&self) -> Option<&PrefixHits> {
        self.hits.as_deref()
    }

    /// Blocked segments per dynamic prefix so far (prefixes with none left out), in list
    /// order; empty without hit counters.
    pub fn dynamic_hits(&self) -> Vec<(AnyPrefix, u64)> {
        self.hits().map_or_else(Vec::new, |h| {
            h.nonzero()
                .into_iter()
                .filter_map(|(i, n)| self.spec.dynamic.get(i).map(|&p| (p, n)))
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::build::FrameBuilder;
    use std::net::IpAddr;

    fn pfx(s: &str) -> AnyPrefix {
        let (a, l) = s.split_once('/').unwrap();
        let len: u8 = l.parse().unwrap();
        match a.parse::<IpAddr>().unwrap() {
            IpAddr::V4(x) => AnyPrefix::V4(Prefix::new(u32::from(x), len).unwrap()),
            IpAddr::V6(x) => AnyPrefix::V6(Prefix::new(u128::from(x), len).unwrap()),
        }
    }
    fn pfxs(v: &[&str]) -> Vec<AnyPrefix> {
        v.iter().map(|s| pfx(s)).collect()
    }

    fn spec() -> OutboundSpec {
        OutboundSpec {
            ports: vec![25],
            action: Action::Drop,
            dynamic: pfxs(&["10.0.0.0/8", "10.20.30.32/28", "2001:db8:100::/40"]),
            exempt: pfxs(&["10.20.30.0/24", "10.9.9.9/32", "2001:db8:100:1::/64"]),
            relays: pfxs(&["192.0.2.25/32", "2001:db8:ff::25/128"]),
            scope: vec![],
            reject_rate: None,
        }
    }

    #[test]
    fn only_policies_of_large_tables_judge_every_burst_cold() {
        let small = Policy::build(spec(), 1).unwrap().0;
        assert!(!small.always_cold());
        // 300k scattered hosts: far more ranges than a line-layout table needs, whose
        // lines alone are 16 MiB.
        let mut next = crate::testkit::xorshift(0x9e37_79b9_7f4a_7c15);
        let dynamic: Vec<AnyPrefix> = (0..300_000)
            .map(|_| AnyPrefix::V4(Prefix::new(next() as u32, 32).unwrap()))
            .collect();
        let large = Policy::build(OutboundSpec { dynamic, ..spec() }, 2)
            .unwrap()
            .0;
        assert!(large.sizes().memory_bytes >= COLD_TABLE_BYTES);
        assert!(large.always_cold());
    }

    /// An outbound policy of at least DIRECT_SOURCE_PREFIXES IPv4 sources builds its source
    /// table direct, an inbound one does not, a smaller one neither unless built for DPDK
    /// (`build_direct`); all of them judge alike (pools cut by exempt hosts and nested
    /// pools, keys in and out of them, one by one and in bursts).
    #[test]
    fn large_outbound_source_tables_are_direct_and_judge_alike() {
        let mut next = crate::testkit::xorshift(0x2545_f491_4f6c_dd1d);
        let mut dynamic = Vec::new();
        let mut exempt = Vec::new();
        for i in 0..DIRECT_SOURCE_PREFIXES as u32 {
            // Distinct /24 pools under 10/8 and 100.64/10; every 8th with an exempt host,
            // every 16th with a nested /28 pool inside an exempt /27.
            let net = if i.is_multiple_of(2) {
                0x0a00_0000
            } else {
                0x6440_0000
            } | (i << 8);
            dynamic.push(AnyPrefix::V4(Prefix::new(net, 24).unwrap()));
            if i % 8 == 0 {
                exempt.push(AnyPrefix::V4(Prefix::new(net | 77, 32).unwrap()));
            }
            if i % 16 == 1 {
                exempt.push(AnyPrefix::V4(Prefix::new(net | 0x80, 27).unwrap()));
                dynamic.push(AnyPrefix::V4(Prefix::new(net | 0x90, 28).unwrap()));
            }
        }
        let spec = OutboundSpec {
            dynamic,
            exempt,
            ..spec()
        };
        let out = Policy::build(spec.clone(), 1).unwrap().0;
        let inb = Policy::build_inbound(spec.clone(), 1).unwrap().0;
        let small_spec = OutboundSpec {
            dynamic: spec.dynamic[..1000].to_vec(),
            exempt: spec.exempt[..100].to_vec(),
            ..spec.clone()
        };
        let small = Policy::build(small_spec.clone(), 1).unwrap().0;
        // As `op25b run` builds it for DPDK: direct whatever the size.
        let small_direct = Policy::build_direct(small_spec, 1).unwrap().0;
        assert_eq!(out.v4.sources.layout(), Layout::Direct);
        assert!(out.sizes().direct_bytes >= 64 << 20);
        assert_eq!(inb.v4.sources.layout(), Layout::Root);
        assert_eq!(inb.sizes().direct_bytes, 0);
        assert_eq!(small.v4.sources.layout(), Layout::Root);
        assert_eq!(small_direct.v4.sources.layout(), Layout::Direct);
        assert!(small_direct.sizes().direct_bytes >= 64 << 20);
        assert_eq!(small_direct.sizes().v4, small.sizes().v4);
        assert_eq!(out.sizes().v4, inb.sizes().v4);
        let mut frames = Vec::new();
        for k in 0..3000u64 {
            let r = next();
            let pool = (r as u32 >> 8) % DIRECT_SOURCE_PREFIXES as u32;
            let base = if pool.is_multiple_of(2) {
                0x0a00_0000
            } else {
                0x6440_0000
            } | (pool << 8);
            let src = match k % 4 {
                0 => base | (r >> 40) as u32 & 0xff,
                1 => base | 77,
                2 => base | 0x80 | (r >> 40) as u32 & 0x1f,
                _ => r as u32,
            };
            let dport = if k % 5 == 0 { 587 } else { 25 };
            let f = FrameBuilder::tcp(
                std::net::Ipv4Addr::from(src).into(),
                "198.51.100.7".parse().unwrap(),
                40000,
                dport,
            )
            .build();
            frames.push(f);
        }
        let mut seen = std::collections::HashSet::new();
        for p in [&out, &inb, &small, &small_direct] {
            let mut scratch = BurstScratch::default();
            let mut reasons = Vec::new();
            for chunk in frames.chunks(64) {
                p.judge_burst(
                    chunk.iter().map(|f| f.as_slice()),
                    &mut scratch,
                    &mut reasons,
                );
                for (f, r) in chunk.iter().zip(&reasons) {
                    let want = if std::ptr::eq(p, &small) || std::ptr::eq(p, &small_direct) {
                        small.classify(f).0
                    } else {
                        inb.classify(f).0
                    };
                    assert_eq!(*r, want);
                    assert_eq!(p.classify(f).0, want);
                    seen.insert(want);
                }
            }
        }
        for r in [
            Reason::Blocked,
            Reason::SourceExempt,
            Reason::SourceNotDynamic,
            Reason::PortNotBlocked,
        ] {
            assert!(seen.contains(&r), "no frame judged {r:?}");
        }
    }

    fn judge(p: &Policy, src: &str, dst: &str, dport: u16) -> Reason {
        let f = FrameBuilder::tcp(src.parse().unwrap(), dst.parse().unwrap(), 40000, dport).build();
        p.classify(&f).0
    }

    #[test]
    fn design_md_semantics() {
        let (p, dups) = Policy::build(spec(), 1).unwrap();
        assert!(dups.is_empty());
        assert_eq!(judge(&p, "10.1.1.1", "198.51.100.1", 25), Reason::Blocked);
        assert_eq!(
            judge(&p, "10.1.1.1", "198.51.100.1", 587),
            Reason::PortNotBlocked
        );
        assert_eq!(
            judge(&p, "10.1.1.1", "192.0.2.25", 25),
            Reason::DestinationRelay
        );
        assert_eq!(
            judge(&p, "10.9.9.9", "198.51.100.1", 25),
            Reason::SourceExempt
        );
        // Exempt /24 inside the dynamic /8 …
        assert_eq!(
            judge(&p, "10.20.30.1", "198.51.100.1", 25),
            Reason::SourceExempt
        );
        // … and a dynamic /28 inside that exempt /24 blocks again.
        assert_eq!(
            judge(&p, "10.20.30.33", "198.51.100.1", 25),
            Reason::Blocked
        );
        assert_eq!(
            judge(&p, "11.0.0.1", "198.51.100.1", 25),
            Reason::SourceNotDynamic
        );
        assert_eq!(
            judge(&p, "2001:db8:100::5", "2001:db8:9::1", 25),
            Reason::Blocked
        );
        assert_eq!(
            judge(&p, "2001:db8:100:1::5", "2001:db8:9::1", 25),
            Reason::SourceExempt
        );
        assert_eq!(
            judge(&p, "2001:db8:100::5", "2001:db8:ff::25", 25),
            Reason::DestinationRelay
        );
        assert_eq!(
            judge(&p, "2001:db8:200::5", "2001:db8:9::1", 25),
            Reason::SourceNotDynamic
        );
        assert_eq!(p.verdict(Reason::Blocked), Verdict::Drop);
        assert_eq!(p.sizes().v4, [2, 2, 1, 0]);
        assert_eq!(p.sizes().v6, [1, 1, 1, 0]);
    }

    #[test]
    fn scope_and_monitor() {
        let mut s = spec();
        s.scope = pfxs(&["198.51.100.0/24"]);
        s.action = Action::Monitor;
        s.ports = vec![25, 2525];
        let (p, _) = Policy::build(s, 2).unwrap();
        assert_eq!(judge(&p, "10.1.1.1", "198.51.100.1", 2525), Reason::Blocked);
        assert_eq!(judge(&p, "10.1.1.1", "203.0.113.1", 25), Reason::OutOfScope);
        // A v4-only scope puts every IPv6 destination out of scope.
        assert_eq!(
            judge(&p, "2001:db8:100::5", "2001:db8:9::1", 25),
            Reason::OutOfScope
        );
        assert_eq!(p.verdict(Reason::Blocked), Verdict::Forward);
        assert_eq!(p.generation(), 2);
    }

    #[test]
    fn overlap_fragment_is_judged_as_blocked_port() {
        let (p, _) = Policy::build(spec(), 1).unwrap();
        let f = FrameBuilder::tcp(
            "10.1.1.1".parse().unwrap(),
            "198.51.100.1".parse().unwrap(),
            1,
            80,
        )
        .ipv4_fragment(1, false)
        .build();
        assert_eq!(
            p.classify(&f),
            (Reason::BlockedOverlapFragment, Verdict::Drop)
        );
        let f = FrameBuilder::tcp(
            "10.9.9.9".parse().unwrap(),
            "198.51.100.1".parse().unwrap(),
            1,
            80,
        )
        .ipv4_fragment(1, false)
        .build();
        assert_eq!(p.classify(&f).0, Reason::SourceExempt);
    }

    #[test]
    fn an_overlap_fragments_lane_leaves_no_mark_on_later_plain_frames() {
        // An overlap fragment's lane slot is written by plain frames again in the next
        // chunk and in the next burst; none of them may be judged an overlap fragment.
        // (5ebfe7a, reverted in f55ee79, stopped writing the flag for plain frames; its
        // version without clearing the flags between chunks failed this test.)
        let (p, _) = Policy::build(spec(), 1).unwrap();
        let tcp = |dport| {
            FrameBuilder::tcp(
                "10.1.1.1".parse().unwrap(),
                "198.51.100.1".parse().unwrap(),
                1,
                dport,
            )
        };
        let fragment = tcp(80).ipv4_fragment(1, false).build();
        let plain = tcp(25).build();
        assert!(wire::parse_plain_ipv4(&plain).is_some());
        let (mut scratch, mut reasons) = (BurstScratch::default(), Vec::new());
        let mut judge = |burst: &[Vec<u8>]| {
            p.judge_burst(burst.iter().map(|f| &f[..]), &mut scratch, &mut reasons);
            (
                reasons.clone(),
                scratch.tally()[Reason::BlockedOverlapFragment.index()],
            )
        };
        // Every source is dynamic, so every lane is kept where it was written: the
        // fragment's slot 0 is the first plain frame's in the second chunk.
        let mut burst = vec![fragment.clone(), plain.clone(), plain.clone()];
        burst.extend(std::iter::repeat_n(plain.clone(), CHUNK + 5));
        let (r, overlaps) = judge(&burst);
        assert_eq!(r[0], Reason::BlockedOverlapFragment);
        assert!(r[1..].iter().all(|&r| r == Reason::Blocked));
        assert_eq!(overlaps, 1);
        // A fragment in slot 1, then a burst of plain frames over the same slots.
        let (r, overlaps) = judge(&[plain.clone(), fragment, plain.clone()]);
        assert_eq!(
            r,
            [
                Reason::Blocked,
                Reason::BlockedOverlapFragment,
                Reason::Blocked
            ]
        );
        assert_eq!(overlaps, 1);
        let (r, overlaps) = judge(&[plain.clone(), plain.clone(), plain]);
        assert_eq!(r, [Reason::Blocked; 3]);
        assert_eq!(overlaps, 0);
    }

    #[test]
    fn conflicts_and_duplicates() {
        let mut s = spec();
        s.exempt.push(pfx("10.0.0.0/8"));
        assert_eq!(
            Policy::build(s, 1).unwrap_err(),
            PolicyError::DynamicAndExempt {
                prefix: pfx("10.0.0.0/8"),
                dynamic: 0,
                exempt: 3
            }
        );
        let mut s = spec();
        s.dynamic.push(pfx("10.0.0.0/8"));
        s.relays.push(pfx("192.0.2.25/32"));
        let (p, dups) = Policy::build(s, 1).unwrap();
        assert_eq!(dups.len(), 2);
        assert_eq!(
            dups[0],
            Duplicate {
                list: ListName::Dynamic,
                prefix: pfx("10.0.0.0/8"),
                first: 0,
                again: 3
            }
        );
        assert_eq!(p.sizes().v4[0], 2);
        let mut s = spec();
        s.ports.clear();
        assert_eq!(Policy::build(s, 1).unwrap_err(), PolicyError::NoPorts);
    }

    #[test]
    fn burst_judgement_equals_frame_by_frame() {
        let mut sp = spec();
        let mut next = crate::testkit::xorshift(0x9e37_79b9_7f4a_7c15);
        // Compact and direct IPv4 source tables: the pools far from the frames' sources
        // only make the table large enough to be built direct.
        let far: Vec<AnyPrefix> = (0..DIRECT_SOURCE_PREFIXES as u32)
            .map(|i| AnyPrefix::V4(Prefix::new(0x6440_0000 | i << 8, 24).unwrap()))
            .collect();
        let shapes = [(false, false), (true, false), (false, true), (true, true)];
        // Without relays too (unscoped, that is the indexed judge's shortest path); one
        // blocked port (a compare in the plain pass) and two (the bitmap).
        let cases = shapes
            .into_iter()
            .flat_map(|s| [(s, true), (s, false)])
            .flat_map(|c| [(c, vec![25]), (c, vec![25, 587])]);
        for (((scoped, direct), relays), ports) in cases {
            sp.ports = ports;
            sp.relays = if relays { spec().relays } else { vec![] };
            sp.scope = if scoped {
                pfxs(&["198.51.100.0/25", "2001:db8:9::/48"])
            } else {
                vec![]
            };
            sp.dynamic = spec().dynamic;
            if direct {
                sp.dynamic.extend(&far);
            }
            let (p, _) = Policy::build(sp.clone(), 1).unwrap();
            let want_layout = if direct { Layout::Direct } else { Layout::Root };
            assert_eq!(p.v4.sources.layout(), want_layout);
            let mut frames = Vec::new();
            for _ in 0..600 {
                let v4 = !next().is_multiple_of(3);
                let pick =
                    |r: u64, opts: &[&str]| opts[(r % opts.len() as u64) as usize].to_string();
                let (src, dst) = if v4 {
                    (
                        pick(
                            next(),
                            &[
                                "10.1.1.1",
                                "10.20.30.1",
                                "10.20.30.33",
                                "10.9.9.9",
                                "11.0.0.1",
                            ],
                        ),
                        pick(
                            next(),
                            &[
                                "198.51.100.1",
                                "198.51.100.200",
                                "192.0.2.25",
                                "203.0.113.5",
                            ],
                        ),
                    )
                } else {
                    (
                        pick(
                            next(),
                            &["2001:db8:100::5", "2001:db8:100:1::5", "2001:db8:200::5"],
                        ),
                        pick(
                            next(),
                            &["2001:db8:9::1", "2001:db8:ff::25", "2001:db8:a::1"],
                        ),
                    )
                };
                let dport = [25, 587, 443][(next() % 3) as usize];
                let mut b = FrameBuilder::tcp(src.parse().unwrap(), dst.parse().unwrap(), 1, dport);
                if v4 && next().is_multiple_of(5) {
                    b = b.ipv4_fragment(1, false);
                }
                // Plain frames (the parser's fast path) mixed with every other shape.
                b = match next() % 6 {
                    0 => b.vlan(0x8100, 7),
                    1 => b.vlan(0x88a8, 1).vlan(0x8100, 2).pppoe(3, true),
                    2 => b.pppoe(4, false),
                    3 if v4 => b.ipv4_options(1),
                    _ => b,
                };
                let mut f = b.build();
                if next().is_multiple_of(17) {
                    f.truncate(30);
                }
                frames.push(f);
            }
            let mut scratch = BurstScratch::default();
            let mut indexed = IndexedScratch::default();
            let mut reasons = Vec::new();
            // The whole 600 is judged in chunks of CHUNK frames.
            assert!(frames.len() > 2 * CHUNK);
            // Short bursts, then the whole 600, each judged cold and warm.
            let bursts = frames.chunks(37).chain([&frames[..]]);
            for (chunk, cold) in bursts.flat_map(|c| [(c, true), (c, false)]) {
                scratch.set_cold(cold);
                p.judge_burst(
                    chunk.iter().map(|f| f.as_slice()),
                    &mut scratch,
                    &mut reasons,
                );
                let want: Vec<Reason> = chunk.iter().map(|f| p.classify(f).0).collect();
                assert_eq!(reasons, want, "scoped={scoped} direct={direct} cold={cold}");
                // The tally counts exactly these reasons.
                for r in Reason::all() {
                    let n = reasons.iter().filter(|&&x| x == r).count() as u32;
                    assert_eq!(
                        scratch.tally()[r.index()],
                        n,
                        "{r:?} scoped={scoped} direct={direct}"
                    );
                }
                // Every blocked frame, and only those, with its source's dynamic entry, in
                // burst order.
                let got = scratch.blocked().to_vec();
                let want: Vec<(u32, u32)> = chunk
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| reasons[*i].is_blocked())
                    .map(|(i, f)| {
                        let (_, m) = p.explain(&wire::parse(f).unwrap());
                        let (list, pos) = m.source.unwrap();
                        assert_eq!(list, ListName::Dynamic);
                        (i as u32, pos as u32)
                    })
                    .collect();
                assert_eq!(got, want, "scoped={scoped} direct={direct}");
                // The indexed judge finds the same blocked frames and tally.
                indexed.set_cold(cold);
                p.judge_indexed(chunk.len(), |i| chunk[i].as_slice(), &mut indexed);
                assert_eq!(
                    indexed.blocked(),
                    scratch.blocked(),
                    "indexed: scoped={scoped} direct={direct} relays={relays} ports={:?} cold={cold}",
                    sp.ports
                );
                assert_eq!(
                    indexed.tally(),
                    scratch.tally(),
                    "indexed: scoped={scoped} direct={direct} relays={relays} ports={:?} cold={cold}",
                    sp.ports
                );
            }
        }
    }

    /// The plain pass branches on the port after a chunk that kept few frames, and writes
    /// a lane slot for every frame after one that kept more: both find what `judge_burst`
    /// finds, whichever pass a burst meets, in whatever order its frames come.
    #[test]
    fn the_indexed_judge_finds_the_same_after_sparse_and_dense_bursts() {
        let mut next = crate::testkit::xorshift(0x51ab_5e77_c0de_2026);
        // Destination lists or none; the source table direct (read in the lanes' loop,
        // except in cold bursts) or not.
        for (relays, scoped, direct) in [
            (false, false, false),
            (true, false, false),
            (false, true, false),
            (false, false, true),
            (true, true, true),
        ] {
            let sp = OutboundSpec {
                relays: if relays { spec().relays } else { vec![] },
                scope: if scoped {
                    pfxs(&["192.0.2.0/24", "198.51.100.0/24"])
                } else {
                    vec![]
                },
                ..spec()
            };
            let p = if direct {
                Policy::build_direct(sp, 1)
            } else {
                Policy::build(sp, 1)
            }
            .unwrap()
            .0;
            let case = format!("relays={relays} scoped={scoped} direct={direct}");
            let mut scratch = BurstScratch::default();
            let mut indexed = IndexedScratch::default();
            // The same judged into bits.
            let mut bits = IndexedScratch::default();
            bits.set_bits(true);
            let mut reasons = Vec::new();
            let mut passes = [0usize; 2];
            let mut blocked_bursts = 0;
            for burst in 0..400 {
                // Bursts of 1-64 frames with none, a few, or many to port 25 (from dynamic,
                // exempt and unlisted sources, to a relay or not), some with a tagged or
                // fragmented frame among the plain ones; every tenth is longer than two
                // chunks, each chunk of its own share, so the pass changes within it.
                let long = burst % 10 == 9;
                let n = if long {
                    2 * CHUNK + 1 + (next() % 64) as usize
                } else {
                    1 + (next() % 64) as usize
                };
                let mut share = 0;
                let frames: Vec<Vec<u8>> = (0..n)
                    .map(|i| {
                        if i % CHUNK == 0 {
                            share = [0, 1, 3, 32, 64][(next() % 5) as usize];
                        }
                        let src = ["10.1.2.3", "10.20.30.1", "10.20.30.40", "172.16.0.9"]
                            [(next() % 4) as usize];
                        let dst =
                            ["192.0.2.25", "198.51.100.7", "203.0.113.9"][(next() % 3) as usize];
                        let dport = if next() % 64 < share { 25 } else { 443 };
                        let b =
                            FrameBuilder::tcp(src.parse().unwrap(), dst.parse().unwrap(), 1, dport);
                        match next() % 40 {
                            0 => b.vlan(0x8100, 7).build(),
                            1 => b.ipv4_fragment(1, false).build(),
                            _ => b.build(),
                        }
                    })
                    .collect();
                passes[usize::from(indexed.few_to_port)] += 1;
                p.judge_burst(
                    frames.iter().map(|f| f.as_slice()),
                    &mut scratch,
                    &mut reasons,
                );
                let cold = next().is_multiple_of(8);
                indexed.set_cold(cold);
                bits.set_cold(cold);
                p.judge_indexed(n, |i| frames[i].as_slice(), &mut indexed);
                assert_eq!(indexed.blocked(), scratch.blocked(), "burst {burst} {case}");
                assert_eq!(indexed.tally(), scratch.tally(), "burst {burst} {case}");
                p.judge_indexed(n, |i| frames[i].as_slice(), &mut bits);
                assert_eq!(bits.tally(), scratch.tally(), "burst {burst} {case}");
                if n > BITS_BURST {
                    // Too long for the bits: listed.
                    assert_eq!(bits.blocked_bits(), None, "burst {burst} {case}");
                    assert_eq!(bits.blocked(), scratch.blocked(), "burst {burst} {case}");
                    assert_eq!(bits.blocked_positions().count(), 0);
                    continue;
                }
                let mut want = [0u64; BITS_BURST / 64];
                for &(f, _) in scratch.blocked() {
                    want[f as usize / 64] |= 1 << (f % 64);
                }
                let want_count = scratch.blocked().len();
                assert_eq!(
                    bits.blocked_bits(),
                    Some((&want, want_count)),
                    "burst {burst} {case}"
                );
                assert!(bits.blocked().is_empty());
                let mut got: Vec<u32> = bits.blocked_positions().collect();
                let mut want: Vec<u32> = scratch.blocked().iter().map(|&(_, p)| p).collect();
                got.sort_unstable();
                want.sort_unstable();
                assert_eq!(got, want, "burst {burst} {case}");
                blocked_bursts += usize::from(want_count > 0);
            }
            // Both passes were met, many times each, and bursts blocked frames.
            assert!(passes.iter().all(|&k| k > 50), "{passes:?} {case}");
            assert!(blocked_bursts > 100, "{blocked_bursts} {case}");
        }
    }

    /// A whole chunk of frames the plain pass does not take (tagged), between chunks of
    /// plain ones after a plain first frame: the chunk's list of others is full, and what
    /// the general judge blocks in it maps back to the right frames.
    #[test]
    fn the_indexed_judge_maps_a_whole_chunk_of_others_back() {
        let (p, _) = Policy::build(spec(), 1).unwrap();
        let n = 2 * CHUNK + 5;
        let frames: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                // Dynamic, unlisted, dynamic, exempt; two frames in three to port 25.
                let src = ["10.1.2.3", "172.16.0.9", "10.20.30.40", "10.9.9.9"][i % 4];
                let dport = if i % 3 == 1 { 443 } else { 25 };
                let b = FrameBuilder::tcp(
                    src.parse().unwrap(),
                    "198.51.100.7".parse().unwrap(),
                    1,
                    dport,
                );
                if (CHUNK..2 * CHUNK).contains(&i) {
                    b.vlan(0x8100, 7).build()
                } else {
                    b.build()
                }
            })
            .collect();
        let (mut scratch, mut reasons) = (BurstScratch::default(), Vec::new());
        p.judge_burst(
            frames.iter().map(|f| f.as_slice()),
            &mut scratch,
            &mut reasons,
        );
        let mut indexed = IndexedScratch::default();
        p.judge_indexed(n, |i| frames[i].as_slice(), &mut indexed);
        assert_eq!(indexed.blocked(), scratch.blocked());
        assert_eq!(indexed.tally(), scratch.tally());
        assert!(indexed.tally()[Reason::SourceExempt.index()] > 0);
        // Frames of every chunk are blocked, the tagged chunk's among them.
        let chunks: std::collections::BTreeSet<usize> = indexed
            .blocked()
            .iter()
            .map(|&(f, _)| f as usize / CHUNK)
            .collect();
        assert_eq!(chunks.into_iter().collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(indexed.others.len(), CHUNK);
    }

    #[test]
    fn explain_names_the_deciding_entries() {
        let (p, _) = Policy::build(spec(), 1).unwrap();
        let key = |s: &str, d: &str| {
            wire::parse(&FrameBuilder::tcp(s.parse().unwrap(), d.parse().unwrap(), 1, 25).build())
                .unwrap()
        };
        let (r, m) = p.explain(&key("10.20.30.40", "198.51.100.1"));
        assert_eq!(r, Reason::Blocked);
        assert_eq!(m.source, Some((ListName::Dynamic, 1)));
        let (r, m) = p.explain(&key("10.20.30.1", "192.0.2.25"));
        assert_eq!(
            (r, m.source, m.relay),
            (Reason::SourceExempt, Some((ListName::Exempt, 0)), Some(0))
        );
        let (_, m) = p.explain(&key("2001:db8:100::1", "2001:db8:ff::25"));
        assert_eq!((m.source, m.relay), (Some((ListName::Dynamic, 2)), Some(1)));
    }

    #[test]
    fn reason_indexes_are_dense_and_labelled() {
        let all: Vec<Reason> = Reason::all().collect();
        assert_eq!(all.len(), Reason::COUNT);
        for (i, r) in all.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert!(!r.label().is_empty());
        }
        let labels: std::collections::HashSet<_> = all.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), Reason::COUNT);
    }

    /// While a recording is on, a burst marks the source-table block of exactly the frames
    /// that go on to a lookup (to a blocked port); `warm_hot` then warms those blocks of a
    /// new policy, and nothing without them.
    #[test]
    fn bursts_record_the_blocks_they_look_up_and_warm_hot_reads_them() {
        let (p, _) = Policy::build(spec(), 1).unwrap();
        let hot = Arc::new(HotBlocks::new(2));
        let mut scratch = BurstScratch::default();
        scratch.set_hot(Some((hot.clone(), 1)));
        let mut reasons = Vec::new();
        let frame = |src: &str, dst: &str, dport| {
            FrameBuilder::tcp(src.parse().unwrap(), dst.parse().unwrap(), 40000, dport).build()
        };
        let frames = [
            frame("10.1.1.1", "203.0.113.5", 25),
            frame("11.0.0.1", "203.0.113.5", 25),
            frame("172.16.0.1", "203.0.113.5", 443),
            frame("2001:db8:100::5", "2001:db8:a::1", 25),
        ];
        let judge = |scratch: &mut BurstScratch, reasons: &mut Vec<Reason>| {
            p.judge_burst(frames.iter().map(|f| &f[..]), scratch, reasons);
        };
        // Not recording: nothing is marked.
        judge(&mut scratch, &mut reasons);
        assert_eq!(hot.blocks(Family::V4).count(), 0);
        hot.start();
        judge(&mut scratch, &mut reasons);
        hot.stop();
        let ip4 = |s: &str| u32::from(s.parse::<std::net::Ipv4Addr>().unwrap());
        let mut v4 = vec![
            p.v4.sources.block_of(ip4("10.1.1.1")),
            p.v4.sources.block_of(ip4("11.0.0.1")),
        ];
        v4.sort_unstable();
        v4.dedup();
        assert_eq!(hot.blocks(Family::V4).collect::<Vec<_>>(), v4);
        let six = u128::from("2001:db8:100::5".parse::<std::net::Ipv6Addr>().unwrap());
        assert_eq!(
            hot.blocks(Family::V6).collect::<Vec<_>>(),
            vec![p.v6.sources.block_of(six)]
        );
        // Stopped: later bursts add nothing.
        judge(&mut scratch, &mut reasons);
        assert_eq!(hot.blocks(Family::V4).count(), v4.len());
        let (next, _) = Policy::build(spec(), 2).unwrap();
        let [l4, l6] = next.warm_hot(&p, &hot);
        assert!(l4 >= v4.len() && l6 >= 1, "{l4} {l6}");
        hot.start();
        hot.stop();
        assert_eq!(next.warm_hot(&p, &hot), [0, 0]);
        // The in-place judge marks the same blocks: plain frames' and the others' (IPv6).
        let hot = Arc::new(HotBlocks::new(2));
        let mut indexed = IndexedScratch::default();
        indexed.set_hot(Some((hot.clone(), 0)));
        p.judge_indexed(frames.len(), |i| &frames[i], &mut indexed);
        assert_eq!(hot.blocks(Family::V4).count(), 0);
        hot.start();
        p.judge_indexed(frames.len(), |i| &frames[i], &mut indexed);
        hot.stop();
        assert_eq!(hot.blocks(Family::V4).collect::<Vec<_>>(), v4);
        assert_eq!(
            hot.blocks(Family::V6).collect::<Vec<_>>(),
            vec![p.v6.sources.block_of(six)]
        );
    }

    #[test]
    fn port_set() {
        let s = PortSet::new(&[0, 25, 63, 64, 65535]);
        assert_eq!(s.to_vec(), vec![0, 25, 63, 64, 65535]);
        assert!(!s.contains(26));
        assert_eq!(s.single(), None);
        // One port, however often it is listed, is the set's single port.
        let one = PortSet::new(&[25, 25]);
        assert_eq!((one.single(), one.to_vec()), (Some(25), vec![25]));
        assert_eq!(PortSet::new(&[]).single(), None);
    }
}
