//! IPv4 and IPv6 longest-prefix-match tables: built once off the hot path, immutable after,
//! read without locks from any number of threads.
//!
//! A table maps a key to the `u32` value of its longest matching prefix. Building has two
//! steps. First the prefixes are flattened into sorted disjoint ranges ([`ranges`]).
//! Then the ranges are compiled into a DXR-style lookup structure ([`LpmTable`]): a
//! direct-indexed root on the key's top bits whose entry is either the answer itself (a
//! chunk of the address space owned by one range), a leaf (a chunk of at most nine ranges
//! whose 16-bit boundaries are compared a word at a time, 16 to 64 bytes), a short sorted
//! run of range starts to binary-search, or, only where a chunk is cut by many ranges, a
//! child node indexed by the next 8 bits. Random keys mostly stop at the root or one leaf;
//! keys inside dense pools take one or two more reads.
//!
//! Large IPv4 tables use a second layout, [`Layout::Lines`]: no root at all, but one
//! 64-byte line per 2^14 addresses (2^18 lines, 16 MiB), each holding up to 13 ranges of
//! its chunk (16-bit boundaries and 24-bit values). A uniformly random key then costs one
//! memory read instead of two (root, then leaf), which is what decides speed once the table
//! no longer fits in cache, and one SIMD compare of the line's twelve boundaries. A chunk
//! cut into more ranges keeps in its line those that cover the most addresses and groups
//! the others (host routes, small pools) into extension lines its entries point to, so a
//! uniformly random key still almost always needs one read, and a key in the dense part
//! two. A chunk of more than 169 ranges points its dense groups to a general entry of the
//! root layout (nodes, leaves, runs) kept in its own line.
//!
//! A third layout, [`Layout::Direct`], is DIR-24-8 as DPDK's `rte_lpm` builds it: one
//! entry per /24 (64 MiB), each a value or a pointer to a block of 256 values. It is never
//! chosen by [`Layout::Auto`]: it wins only when keys gather inside the table's prefixes
//! (as an outbound policy's subscriber sources do), and its caller asks for it.
//!
//! Invariants:
//! - A prefix never has host bits set; a prefix listed twice must carry the same value.
//! - Values are below [`MAX_VALUE`]; [`NO_MATCH`] means no prefix matches.
//! - `lpm` knows nothing of packets or policy: values are opaque to it.
//! - A table in the line layout has every value below [`LINE_VALUES`] and exactly 2^18
//!   lines. Every line entry's code is 0 (no match), a value plus one (below `LINE_EXT`),
//!   `LINE_EXT` plus the index of an extension line covering that entry's stretch of the
//!   chunk (extension lines hold values only), or `LINE_DEEP`: the general entry for the
//!   whole chunk sits in bytes 60..64 of the chunk's own line, which then holds at most 12
//!   entries. Byte 63 of every other line is zero.
//! - A table in the direct layout has exactly 2^24 first-level entries (in `entries`),
//!   each a value, [`NO_MATCH`], or `DIRECT_EXT` plus a block number below the block
//!   count; block 0 of `tbl8` is all [`NO_MATCH`] and no entry points to it. Only this
//!   layout has a non-empty `tbl8`.
//!
//! [`naive::NaiveLpm`] is the reference every table is property-tested against.

pub mod naive;
pub mod ranges;
#[cfg(test)]
mod tests;

use crate::port::sys::{demote, lanes_above, prefetch, HugeSlice};
use std::fmt;

/// The unsigned integer behind an address family (u32 for IPv4, u128 for IPv6).
pub trait Bits:
    Copy + Ord + Eq + fmt::Debug + fmt::Display + std::hash::Hash + Send + Sync + 'static
{
    /// Width in bits.
    const BITS: u8;
    /// All zeroes.
    const ZERO: Self;
    /// The network mask of a prefix length (`len <= BITS`).
    fn mask(len: u8) -> Self;
    /// `self & other`.
    fn and(self, other: Self) -> Self;
    /// The last address of the prefix starting at `self` with length `len`.
    fn last(self, len: u8) -> Self;
    /// How many leading bits `self` and `other` share.
    fn common_len(self, other: Self) -> u8;
    /// `self - 1` (wrapping at zero).
    fn pred(self) -> Self;
    /// `self + 1`, or `None` at the top of the space.
    fn succ(self) -> Option<Self>;
    /// The `width` bits of `self` starting `shift` bits from the bottom, as an index.
    fn index(self, shift: u8, width: u8) -> usize;
    /// `self` with `c` placed at bit `shift` (the bits there must be zero).
    fn with_index(self, shift: u8, c: usize) -> Self;
    /// The address as a standard library IP address.
    fn to_ip(self) -> std::net::IpAddr;
}

macro_rules! impl_bits {
    ($t:ty, $ip:ty) => {
        impl Bits for $t {
            const BITS: u8 = <$t>::BITS as u8;
            const ZERO: Self = 0;
            #[inline]
            fn mask(len: u8) -> Self {
                if len == 0 {
                    0
                } else {
                    <$t>::MAX << u32::from(<Self as Bits>::BITS - len)
                }
            }
            #[inline]
            fn and(self, other: Self) -> Self {
                self & other
            }
            #[inline]
            fn last(self, len: u8) -> Self {
                self | !Self::mask(len)
            }
            #[inline]
            fn pred(self) -> Self {
                self.wrapping_sub(1)
            }
            #[inline]
            fn common_len(self, other: Self) -> u8 {
                (self ^ other).leading_zeros() as u8
            }
            #[inline]
            fn succ(self) -> Option<Self> {
                self.checked_add(1)
            }
            #[inline(always)]
            fn index(self, shift: u8, width: u8) -> usize {
                ((self >> shift) as usize) & ((1usize << width) - 1)
            }
            #[inline]
            fn with_index(self, shift: u8, c: usize) -> Self {
                self | ((c as $t) << shift)
            }
            #[inline]
            fn to_ip(self) -> std::net::IpAddr {
                <$ip>::from(self).into()
            }
        }
    };
}
impl_bits!(u32, std::net::Ipv4Addr);
impl_bits!(u128, std::net::Ipv6Addr);

/// A prefix: `addr/len` with no host bits set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix<K> {
    /// First address.
    pub addr: K,
    /// Length in bits.
    pub len: u8,
}

impl<K: Bits> Prefix<K> {
    /// A prefix, checked: `len <= K::BITS` and no host bits set.
    pub fn new(addr: K, len: u8) -> Result<Self, PrefixError> {
        if len > K::BITS {
            return Err(PrefixError::LengthTooLong { len, max: K::BITS });
        }
        if addr.and(K::mask(len)) != addr {
            return Err(PrefixError::HostBitsSet);
        }
        Ok(Prefix { addr, len })
    }

    /// Whether `key` lies inside this prefix.
    #[inline]
    pub fn contains(&self, key: K) -> bool {
        key.and(K::mask(self.len)) == self.addr
    }

    /// The last address inside the prefix.
    pub fn last(&self) -> K {
        self.addr.last(self.len)
    }
}

impl<K: Bits> fmt::Display for Prefix<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr.to_ip(), self.len)
    }
}

/// Why a prefix is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    /// The length exceeds the address width.
    #[error("prefix length {len} is longer than {max}")]
    LengthTooLong {
        /// Given length.
        len: u8,
        /// Address width.
        max: u8,
    },
    /// Bits beyond the prefix length are set.
    #[error("host bits are set beyond the prefix length")]
    HostBitsSet,
}

/// Why a table cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The same prefix appears twice with different values; the indexes are positions in
    /// the input list.
    #[error("the same prefix is listed at positions {first} and {second} with different values")]
    Conflict {
        /// Position of the first occurrence.
        first: usize,
        /// Position of the second occurrence.
        second: usize,
    },
    /// Values from [`MAX_VALUE`] up are reserved.
    #[error("values from {MAX_VALUE:#x} up are reserved")]
    ReservedValue,
}

/// The value reported for "no prefix matches".
pub const NO_MATCH: u32 = u32::MAX;
/// Values must be below this (the top two bits of an entry are its kind).
pub const MAX_VALUE: u32 = ENTRY_INDEX;

const ENTRY_INDEX: u32 = (1 << 30) - 1;
/// A run entry packs its length (6 bits) under its offset (24 bits).
const RUN_LEN_BITS: u32 = 6;
/// Most (start, value) pairs all runs of one table may hold together.
pub const MAX_RUN_PAIRS: usize = 1 << (30 - RUN_LEN_BITS);
const ENTRY_NONE: u32 = ENTRY_INDEX;
const KIND_VALUE: u32 = 0;
const KIND_NODE: u32 = 1;
const KIND_RUN: u32 = 2;
const KIND_LEAF: u32 = 3;
const RUN_LEN_MASK: u32 = (1 << RUN_LEN_BITS) - 1;
/// Runs up to this long are searched branch-free by [`LpmTable::lookup_batch`].
const SHORT_RUN: u32 = 16;
/// Most ranges a leaf holds.
const LEAF_RANGES: usize = 9;
/// Widest chunk offset a leaf boundary lane holds (its top bit is the lane's sign).
const LEAF_MAX_SHIFT: u8 = 15;
/// A leaf entry holds its size class (2 bits) above its first unit (28 bits).
const LEAF_CLASS_SHIFT: u32 = 28;
const LEAF_UNIT_MASK: u32 = (1 << LEAF_CLASS_SHIFT) - 1;
/// The entry of the empty leaf at unit 0 (class 0).
const LEAF_EMPTY_ENTRY: u32 = KIND_LEAF << 30;
/// The sign bit of every 16-bit lane.
const LANE_SIGNS: u64 = 0x8000_8000_8000_8000;
/// One in every 16-bit lane.
const LANE_ONES: u64 = 0x0001_0001_0001_0001;
/// An unused lane.
const LANE_PAD: u64 = 0x8000;
/// An unused lane of a line or double block: above every chunk offset (`< 2^14`) both as
/// unsigned and as signed 16-bit, so the borrow trick and a signed SIMD compare agree.
const LINE_PAD: u64 = 0x7fff;

/// Child nodes split their chunk by this many bits.
const NODE_STRIDE: u8 = 8;

/// Bits of the key that pick a line in the line layout (2^18 lines of 64 bytes).
const LINE_BITS: u8 = 18;
/// Lane words of a line (twelve 16-bit boundaries).
const LINE_WORDS: usize = 3;
/// Most entries a line holds.
const LINE_RANGES: usize = 4 * LINE_WORDS + 1;
/// A line entry is a 24-bit code: 0 for no match, `value + 1` below `LINE_EXT`, from
/// `LINE_EXT` up the index (plus `LINE_EXT`) of an extension line holding the ranges of
/// that entry's stretch of the chunk, and `LINE_DEEP` for "the general entry (node, leaf
/// or run, as in the root layout) in bytes 60..64 of this line", which answers every key
/// of the chunk.
const LINE_EXT: u32 = 0x00c0_0000;
/// The code of a line's general entry.
const LINE_DEEP: u32 = 0x00ff_ffff;
/// The 24 bits of a line entry.
const LINE_CODE: u32 = 0x00ff_ffff;
/// Most extension lines one table may have (their indexes fill the codes from `LINE_EXT`).
const MAX_EXT_LINES: usize = (LINE_DEEP - LINE_EXT) as usize;
/// Chunks of more ranges than this get a general entry: an address-indexed node splits a
/// chunk evenly cut by hundreds of host routes in fewer reads than lines of 13 ranges do
/// (measured on 1M adjacent host routes and on 100k host routes scattered over 64 /18
/// pools, see the README).
const DEEP_MIN: usize = LINE_RANGES * LINE_RANGES;
/// Line-layout values must be below this (stored one up, they stay below `LINE_EXT`).
pub const LINE_VALUES: u32 = LINE_EXT - 1;
/// Tables with at least this many ranges use the line layout when [`Layout::Auto`]:
/// below it the root-and-leaf layout is smaller than the 16 MiB of lines and stays in
/// cache (measured with `op25b-bench lpm --layout`, see the README).
pub const LINES_MIN_RANGES: usize = 1 << 19;

/// Bits of an IPv4 key the direct layout's first level is indexed by (one entry per /24).
const DIRECT_BITS: u8 = 24;
/// A direct-layout first-level entry pointing to a second-level block of 256 values: this
/// tag plus the block's number (values are below [`MAX_VALUE`], so a value never has it).
const DIRECT_EXT: u32 = KIND_RUN << 30;
/// Second-level blocks (1 KiB each) the direct layout may hold, the dummy block 0
/// included: 32 MiB beside the 64 MiB first level, for at most 32,767 cut /24s. A table
/// cut inside more /24s is built as [`Layout::Auto`] would.
pub const DIRECT_MAX_BLOCKS: usize = 1 << 15;

/// Blocks of a table's first level are at most 2^BLOCK_BITS ([`LpmTable::block_of`]).
pub const BLOCK_BITS: u8 = 18;
/// Child entries [`LpmTable::warm_block`] follows under one first-level entry at most.
const BELOW_BUDGET: usize = 32;

/// Which first level a table is built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// [`Layout::Lines`] for IPv4 tables of at least [`LINES_MIN_RANGES`] ranges whose
    /// values are below [`LINE_VALUES`], else [`Layout::Root`].
    Auto,
    /// A direct-indexed root of 32-bit entries sized to the table, with leaves, runs and
    /// child nodes below it: two reads for most keys, small enough to stay in cache for
    /// tables up to a few hundred thousand prefixes.
    Root,
    /// IPv4 with values below [`LINE_VALUES`] only (otherwise [`Layout::Root`] is built):
    /// one 64-byte line per 2^14 addresses, one read for nearly every key.
    Lines,
    /// IPv4 only, DIR-24-8 as DPDK's `rte_lpm`: one 32-bit entry per /24 (64 MiB),
    /// holding the value or pointing to a block of 256 values for a /24 that prefixes cut
    /// inside (at most [`DIRECT_MAX_BLOCKS`] − 1 of them); where it cannot be built (IPv6, too many
    /// cut /24s) the table is built as [`Layout::Auto`] would. One read, a shift and a
    /// compare per key: the fewest instructions of the layouts, for the most memory. Not
    /// chosen by [`Layout::Auto`]: it is the fastest for keys that gather in the table's
    /// own prefixes (1.8–2x the root layout on 100k prefixes, `op25b-bench lpm`) and the
    /// slower for keys spread over the whole space (0.6x: most of the 64 MiB is then read
    /// from memory), so the caller, who knows its keys, asks for it.
    Direct,
}

/// Packs one line: twelve 16-bit lanes holding the chunk offsets where entries 1.. begin
/// (unused lanes [`LINE_PAD`]), then the 24-bit little-endian codes of entries 0..=12 (0,
/// no match, past the last); byte 63 stays zero. The caller guarantees at most
/// [`LINE_RANGES`] codes, one offset fewer, rising offsets below 2^14.
fn pack(offsets: impl Iterator<Item = u64>, codes: &[u32]) -> Line {
    let mut b = [0u8; 64];
    for (dst, lane) in b[..8 * LINE_WORDS]
        .chunks_exact_mut(2)
        .zip(offsets.chain(std::iter::repeat(LINE_PAD)))
    {
        dst.copy_from_slice(&(lane as u16).to_le_bytes());
    }
    for (dst, c) in b[8 * LINE_WORDS..8 * LINE_WORDS + 3 * LINE_RANGES]
        .chunks_exact_mut(3)
        .zip(codes)
    {
        dst.copy_from_slice(&c.to_le_bytes()[..3]);
    }
    Line(b)
}

/// The code a line stores for a value below [`LINE_VALUES`] or [`NO_MATCH`]: one up, so
/// "no match" is 0 and [`code_value`] decodes it with one wrapping step.
#[inline(always)]
fn value_code(v: u32) -> u32 {
    v.wrapping_add(1)
}

/// The value of a code below `LINE_EXT`.
#[inline(always)]
fn code_value(c: u32) -> u32 {
    c.wrapping_sub(1)
}

/// The code of entry `n` of a line.
#[inline(always)]
fn packed_code(b: &[u8; 64], n: usize) -> u32 {
    let at = 8 * LINE_WORDS + 3 * n.min(LINE_RANGES - 1);
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(v) & LINE_CODE
}

/// The code of the entry holding chunk offset `off` (`off < 2^14`), with one SIMD compare
/// of the line's lanes: lanes rise and pads are above every offset (also as signed
/// 16-bit), so the lanes above the offset form a suffix and the first of them (bit 12
/// stands in when none is) is the entry's index. Bytes 24..32 hold codes, not lanes: their
/// compare only sets bits 12..15.
#[inline(always)]
fn line_code(b: &[u8; 64], off: u64) -> u32 {
    let mut lanes = [0u8; 32];
    lanes.copy_from_slice(&b[..32]);
    let n = (lanes_above(&lanes, off as i16) | 1 << 12).trailing_zeros();
    packed_code(b, n as usize)
}

/// One 64-byte line of the line layout (see [`pack`]): a whole chunk of 2^14 addresses
/// when it is listed in the table's lines, one stretch of a chunk when it is an extension
/// line. Byte 63 is zero, but in a chunk's line holding a general entry (bytes 60..64).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// The line for a stretch of a chunk cut into ranges: range `i` begins at chunk offset
/// `starts[i]` (`starts[0]` is the stretch's first offset) and has value `values[i]`; the
/// stretch ends just before `end`. Up to [`LINE_RANGES`] ranges fit the line itself. A
/// denser stretch keeps some ranges in the line and groups the others, each group of up to
/// [`LINE_RANGES`] ranges into one extension line appended to `ext`, chosen by
/// [`group_entries`] so that the grouped ranges cover as few addresses as possible: a
/// uniformly random key then rarely needs a second read. When `deep` is the general entry
/// for the whole chunk, the line holds at most 12 entries and the entry itself (bytes
/// 60..64), and groups of any size are allowed: the larger ones get the code `LINE_DEEP`.
fn build_line(
    starts: &[u64],
    values: &[u32],
    end: u64,
    ext: &mut Vec<Line>,
    deep: Option<u32>,
) -> Line {
    let m = values.len();
    if m <= LINE_RANGES {
        let mut codes = [0u32; LINE_RANGES];
        for (c, &v) in codes.iter_mut().zip(values) {
            *c = value_code(v);
        }
        return pack(starts[1..].iter().copied(), &codes[..m]);
    }
    let (max, slots) = deep.map_or((LINE_RANGES, LINE_RANGES), |_| (m, LINE_RANGES - 1));
    let groups = group_entries(starts, end, max, slots);
    let mut codes = [0u32; LINE_RANGES];
    for (c, &(i, j)) in codes.iter_mut().zip(&groups) {
        *c = match (j - i, deep) {
            (1, _) => value_code(values[i]),
            (n, Some(_)) if n > LINE_RANGES => LINE_DEEP,
            _ => {
                let stop = starts.get(j).copied().unwrap_or(end);
                let line = build_line(&starts[i..j], &values[i..j], stop, ext, None);
                ext.push(line);
                // Past MAX_EXT_LINES the code is wrong, and the caller builds no line table.
                LINE_EXT + (ext.len() - 1).min(MAX_EXT_LINES) as u32
            }
        };
    }
    let offsets = groups[1..].iter().map(|&(i, _)| starts[i]);
    let mut line = pack(offsets, &codes[..groups.len()]);
    if let Some(e) = deep {
        line.0[60..].copy_from_slice(&e.to_le_bytes());
    }
    line
}

/// The general entry of a line that has one (bytes 60..64).
#[inline(always)]
fn deep_entry(l: &Line) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&l.0[60..]);
    u32::from_le_bytes(b)
}

/// Splits the ranges of a stretch (as in [`build_line`]) into at most `slots` (up to
/// [`LINE_RANGES`]) entries of at most `max` consecutive ranges each, returned as index spans, minimising
/// the addresses covered by entries of more than one range (those need another read).
///
/// Dynamic programming over ranges and entries used: `cost[j][e]`, the least grouped width
/// covering ranges `0..j` with `e` entries, comes from a single range (`cost[j-1][e-1]`) or
/// a group `i..j` (`cost[i][e-1] + P[j] - P[i]`, `P` the prefix sums of the widths), whose
/// best `i` in the window `j - max ..= j - 2` a monotonic queue keeps, so the whole is
/// linear in the ranges. The caller guarantees `slots * max >= starts.len()`.
fn group_entries(starts: &[u64], end: u64, max: usize, slots: usize) -> Vec<(usize, usize)> {
    let m = starts.len();
    // Prefix sums of the widths: p[i] = starts[i] - starts[0], p[m] = end - starts[0].
    let p = |i: usize| starts.get(i).copied().unwrap_or(end) as i64 - starts[0] as i64;
    const NONE: i64 = i64::MAX;
    let mut cost = vec![[NONE; LINE_RANGES + 1]; m + 1];
    let mut take = vec![[0u32; LINE_RANGES + 1]; m + 1];
    cost[0][0] = 0;
    let mut window = std::collections::VecDeque::with_capacity(max);
    for e in 1..=slots {
        window.clear();
        for j in 1..=m {
            if cost[j - 1][e - 1] != NONE {
                cost[j][e] = cost[j - 1][e - 1];
                take[j][e] = 1;
            }
            // Group starts i in j - max ..= j - 2, by cost[i][e - 1] - p(i) rising.
            if j >= 2 && cost[j - 2][e - 1] != NONE {
                let i = j - 2;
                let key = cost[i][e - 1] - p(i);
                while window
                    .back()
                    .is_some_and(|&b: &usize| cost[b][e - 1] - p(b) >= key)
                {
                    window.pop_back();
                }
                window.push_back(i);
            }
            while window.front().is_some_and(|&f| f + max < j) {
                window.pop_front();
            }
            if let Some(&i) = window.front() {
                let c = cost[i][e - 1] - p(i) + p(j);
                if c < cost[j][e] {
                    cost[j][e] = c;
                    take[j][e] = (j - i) as u32;
                }
            }
        }
    }
    let mut e = (1..=slots)
        .filter(|&e| cost[m][e] != NONE)
        .min_by_key(|&e| cost[m][e])
        .expect("`slots` entries of `max` ranges cover the stretch");
    let mut groups = Vec::with_capacity(e);
    let mut j = m;
    while j > 0 {
        let k = take[j][e] as usize;
        groups.push((j - k, j));
        j -= k;
        e -= 1;
    }
    groups.reverse();
    groups
}

/// Sixteen bytes of leaf storage.
///
/// A leaf is a chunk cut into at most [`LEAF_RANGES`] ranges, stored in 1, 2 or 4 units
/// (size class 0, 1, 2: up to 3, 5 or 9 ranges) aligned to its own size, so it never
/// straddles a cache line. Its first `2^class` words hold the chunk offsets where ranges
/// 1.. begin, one per 16-bit lane (2, 4 or 8 lanes; unused lanes [`LANE_PAD`]); the values
/// of ranges 0.. follow. The number of lanes at or below a key's offset is the index of its
/// range, found with no branch: for an offset `k < 2^15` and a lane `b <= 2^15`,
/// `(2^15 + k) - b` never borrows from the next lane and has its sign bit set exactly when
/// `b <= k` (a pad lane leaves `k`, so it is never counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(16))]
struct Unit([u32; 4]);

impl Unit {
    /// The empty class-0 leaf: both lanes unused, every value "no match".
    const EMPTY: Unit = Unit([
        (LANE_PAD | LANE_PAD << 16) as u32,
        NO_MATCH,
        NO_MATCH,
        NO_MATCH,
    ]);
}

/// The value for chunk offset `off` (`off < 2^15`) in the leaf of entry `le`.
#[inline(always)]
fn leaf_find(units: &[Unit], le: u32, off: u64) -> u32 {
    let u = (le & LEAF_UNIT_MASK) as usize;
    let class = (le >> LEAF_CLASS_SHIFT) & 3;
    let w = units[u].0;
    let lo = u64::from(w[0]) | u64::from(w[1]) << 32;
    let hi = u64::from(w[2]) | u64::from(w[3]) << 32;
    // Class 0 has two lanes (word 1 is a value), class 2 has eight.
    let pads_hi = (LANE_PAD | LANE_PAD << 16) << 32;
    let lo = std::hint::select_unpredictable(class == 0, (lo & 0xffff_ffff) | pads_hi, lo);
    let hi = std::hint::select_unpredictable(class == 2, hi, LANE_SIGNS);
    let x = (off * LANE_ONES) | LANE_SIGNS;
    // One per counted lane in each lane's low bit; the multiply sums the lanes into the top
    // lane (at most 8, no carry out of it). Baseline x86-64 has no popcount instruction.
    let ones =
        ((x.wrapping_sub(lo) & LANE_SIGNS) >> 15) + ((x.wrapping_sub(hi) & LANE_SIGNS) >> 15);
    let n = ones.wrapping_mul(LANE_ONES) >> 48;
    let v = u * 4 + (1 << class) + n as usize;
    units[v >> 2].0[v & 3]
}

/// An immutable longest-prefix-match table over one address family.
pub struct LpmTable<K> {
    /// Bits of the key the root is indexed by.
    root_bits: u8,
    /// Leading bits shared by every range start from `starts[1]` to `starts[n - 1] - 1`
    /// (the last start may be `hi + 1`): the root is indexed by the `root_bits` below them
    /// and covers only `lo..=hi`, the block they fix (IPv6 pools under one /32 need no node
    /// levels for the /32 itself).
    skip: u8,
    lo: K,
    hi: K,
    /// Value entries for keys below `lo` (range 0) and above `hi` (the last range).
    outside: [u32; 2],
    /// The root (first `1 << root_bits` entries), then every child node.
    /// On huge pages when large (see [`HugeSlice`]).
    entries: HugeSlice<u32>,
    /// (range start, value) pairs of every run; a run entry holds its offset and length,
    /// so a run costs one memory read (usually one cache line).
    runs: HugeSlice<(K, u32)>,
    /// Leaves (see [`Unit`]); the first is [`Unit::EMPTY`], so a branch-free lookup can
    /// always read one.
    leaves: HugeSlice<Unit>,
    /// The line layout's lines (empty in the root layout, whose root is in `entries`).
    lines: HugeSlice<Line>,
    /// The line layout's extension lines (see [`build_line`]).
    ext: HugeSlice<Line>,
    /// The direct layout's second-level blocks of 256 values each, block 0 all
    /// [`NO_MATCH`] (empty in the other layouts; its first level is `entries`).
    tbl8: HugeSlice<u32>,
    prefixes: usize,
    ranges: usize,
}

impl<K: Bits> Clone for LpmTable<K> {
    fn clone(&self) -> Self {
        LpmTable {
            root_bits: self.root_bits,
            skip: self.skip,
            lo: self.lo,
            hi: self.hi,
            outside: self.outside,
            entries: self.entries.clone(),
            runs: self.runs.clone(),
            leaves: self.leaves.clone(),
            lines: self.lines.clone(),
            ext: self.ext.clone(),
            tbl8: self.tbl8.clone(),
            prefixes: self.prefixes,
            ranges: self.ranges,
        }
    }
}

impl<K: Bits> fmt::Debug for LpmTable<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LpmTable")
            .field("root_bits", &self.root_bits)
            .field("skip", &self.skip)
            .field("entries", &self.entries)
            .field("runs", &self.runs)
            .field("leaves", &self.leaves.len())
            .field("lines", &self.lines.len())
            .field("ext", &self.ext.len())
            .field("tbl8", &self.tbl8.len())
            .field("prefixes", &self.prefixes)
            .field("ranges", &self.ranges)
            .finish()
    }
}

/// IPv4 table.
pub type Lpm4 = LpmTable<u32>;
/// IPv6 table.
pub type Lpm6 = LpmTable<u128>;

impl<K: Bits> Default for LpmTable<K> {
    fn default() -> Self {
        LpmTable::compile(&ranges::Ranges::default())
    }
}

/// Most ranges a run may hold before its chunk is split by a child node: about two cache
/// lines of pairs, and below the 6-bit length field.
fn run_max<K: Bits>() -> usize {
    (128 / (std::mem::size_of::<K>() + 4)).clamp(4, 63)
}

struct Compiler<'a, K> {
    starts: &'a [K],
    values: &'a [u32],
    entries: Vec<u32>,
    runs: Vec<(K, u32)>,
    leaves: Vec<Unit>,
}

impl<K: Bits> Compiler<'_, K> {
    /// The entry for the chunk `lo .. lo + 2^shift` covered by ranges `i..j`
    /// (`starts[i] <= lo`, every other start inside the chunk).
    fn entry(&mut self, i: usize, j: usize, lo: K, shift: u8) -> u32 {
        if j - i == 1 {
            let v = self.values[i];
            return (KIND_VALUE << 30) | if v == NO_MATCH { ENTRY_NONE } else { v };
        }
        if j - i <= LEAF_RANGES
            && shift <= LEAF_MAX_SHIFT
            && self.leaves.len() + 8 <= LEAF_UNIT_MASK as usize
        {
            return self.leaf(i, j, shift);
        }
        if (j - i <= run_max::<K>() && self.runs.len() + (j - i) <= MAX_RUN_PAIRS) || shift == 0 {
            let at = self.runs.len() as u32;
            self.runs.extend(
                self.starts[i..j]
                    .iter()
                    .copied()
                    .zip(self.values[i..j].iter().copied()),
            );
            return (KIND_RUN << 30) | (at << RUN_LEN_BITS) | (j - i) as u32;
        }
        let stride = shift.min(NODE_STRIDE);
        let base = self.node(i, j, lo, shift, stride);
        (KIND_NODE << 30) | base as u32
    }

    /// Appends the leaf of a chunk of `2^shift` addresses covered by ranges `i..j` and
    /// returns its entry.
    fn leaf(&mut self, i: usize, j: usize, shift: u8) -> u32 {
        let class: u32 = match j - i {
            ..=3 => 0,
            4..=5 => 1,
            _ => 2,
        };
        let size = 1usize << class;
        // Aligned to its own size, so it never straddles a cache line.
        while !self.leaves.len().is_multiple_of(size) {
            self.leaves.push(Unit::EMPTY);
        }
        let at = self.leaves.len();
        let mut words = [NO_MATCH; 16];
        let mut lanes = [LANE_PAD; 8];
        for (lane, &start) in lanes.iter_mut().zip(&self.starts[i + 1..j]) {
            *lane = start.index(0, shift) as u64;
        }
        for (w, pair) in words[..size].iter_mut().zip(lanes.chunks(2)) {
            *w = (pair[0] | pair[1] << 16) as u32;
        }
        words[size..size + (j - i)].copy_from_slice(&self.values[i..j]);
        for u in words[..4 * size].chunks(4) {
            self.leaves.push(Unit([u[0], u[1], u[2], u[3]]));
        }
        (KIND_LEAF << 30) | (class << LEAF_CLASS_SHIFT) | at as u32
    }

    /// Appends a node splitting chunk `lo .. lo + 2^shift` by its top `stride` bits and
    /// returns its position.
    fn node(&mut self, i: usize, j: usize, lo: K, shift: u8, stride: u8) -> usize {
        let base = self.entries.len();
        let fan = 1usize << stride;
        self.entries.resize(base + fan, 0);
        let child_shift = shift - stride;
        let mut a = i;
        for c in 0..fan {
            let clo = lo.with_index(child_shift, c);
            while a + 1 < j && self.starts[a + 1] <= clo {
                a += 1;
            }
            // Ranges starting inside this child: up to the first start at or past the next
            // child's first address.
            let mut b = a + 1;
            if c + 1 < fan {
                let next = lo.with_index(child_shift, c + 1);
                while b < j && self.starts[b] < next {
                    b += 1;
                }
            } else {
                b = j;
            }
            let e = self.entry(a, b, clo, child_shift);
            self.entries[base + c] = e;
        }
        base
    }
}

/// The entry itself if it is a leaf, else the empty leaf's entry.
#[inline(always)]
fn leaf_of(e: u32) -> u32 {
    std::hint::select_unpredictable(e >> 30 == KIND_LEAF, e, LEAF_EMPTY_ENTRY)
}

/// The (offset, length) of the run an entry points to; `(0, 1)` (the dummy pair) for any
/// other kind.
#[inline(always)]
fn run_span(e: u32) -> (usize, usize) {
    let is_run = e >> 30 == KIND_RUN;
    (
        std::hint::select_unpredictable(is_run, ((e & ENTRY_INDEX) >> RUN_LEN_BITS) as usize, 0),
        std::hint::select_unpredictable(is_run, (e & RUN_LEN_MASK) as usize, 1),
    )
}

impl<K: Bits> LpmTable<K> {
    /// Builds a table. Values must be below [`MAX_VALUE`]; a prefix listed twice with the
    /// same value counts once, with different values it is a [`BuildError::Conflict`].
    pub fn build(entries: &[(Prefix<K>, u32)]) -> Result<Self, BuildError> {
        Self::build_layout(entries, Layout::Auto)
    }

    /// [`Self::build`] in the given layout (see [`Self::compile_layout`]).
    pub fn build_layout(entries: &[(Prefix<K>, u32)], layout: Layout) -> Result<Self, BuildError> {
        if entries.iter().any(|&(_, v)| v >= MAX_VALUE) {
            return Err(BuildError::ReservedValue);
        }
        Ok(Self::compile_layout(
            &ranges::Ranges::build(entries)?,
            layout,
        ))
    }

    /// Compiles flat ranges into the lookup structure, in the layout [`Layout::Auto`] picks.
    pub fn compile(r: &ranges::Ranges<K>) -> Self {
        Self::compile_layout(r, Layout::Auto)
    }

    /// Compiles flat ranges in the given layout ([`Layout::Lines`] falls back to
    /// [`Layout::Root`] where it cannot hold the table: IPv6, a value of [`LINE_VALUES`]
    /// or more, or more extension lines than codes for them; [`LpmTable::layout`] tells
    /// which was built).
    pub fn compile_layout(r: &ranges::Ranges<K>, layout: Layout) -> Self {
        if layout == Layout::Direct {
            if let Some(t) = Self::compile_direct(r) {
                return t;
            }
        }
        let fits = K::BITS == 32 && r.values.iter().all(|&v| v == NO_MATCH || v < LINE_VALUES);
        let lines = match layout {
            Layout::Auto | Layout::Direct => fits && r.range_count() >= LINES_MIN_RANGES,
            Layout::Root => false,
            Layout::Lines => fits,
        };
        if lines {
            if let Some(t) = Self::compile_lines(r) {
                return t;
            }
        }
        // Root size, chosen by measurement (op25b-bench lpm, BNG-like prefixes): 16 root
        // entries per range for IPv4 (4 per range for IPv6) make most chunks single-valued,
        // so most random keys end at the root; 100k IPv4 prefixes ran 2.5x faster than with
        // one entry per range. The cap keeps the root at 4 MiB: larger roots (up to 2^24)
        // were not reliably faster on 1M prefixes on this machine and cost up to 64 MiB.
        let n = r.range_count().max(1);
        let wanted = (usize::BITS - (n - 1).leading_zeros()) as u8;
        let extra = if K::BITS == 32 { 4 } else { 2 };
        // The block holding every boundary but the last, and the address just before the
        // last (so a pool's own /32 gives a /32 block: the range after it starts right past
        // the block and answers every key above it).
        let (skip, lo) = match r.starts.len() {
            0 | 1 => (0, K::ZERO),
            n => {
                // starts[n - 1] > starts[0] == 0, so its predecessor exists.
                let (a, b) = (r.starts[1], r.starts[n - 1].pred());
                let skip = a.common_len(b).min(K::BITS - 8);
                (skip, a.and(K::mask(skip)))
            }
        };
        let root_bits = (wanted + extra).clamp(8, 20).min(K::BITS - skip);
        let mut runs = Vec::with_capacity(r.range_count() + 1);
        // A dummy pair first, so a branch-free lookup can always read one.
        runs.push((K::ZERO, NO_MATCH));
        let mut c = Compiler {
            starts: &r.starts,
            values: &r.values,
            entries: Vec::with_capacity(1 << root_bits),
            runs,
            leaves: vec![Unit::EMPTY],
        };
        let n = r.starts.len();
        // The ranges starting inside the block (the last may start right past it).
        let hi = lo.last(skip);
        let inside = if r.starts[n - 1] > hi { n - 1 } else { n };
        c.node(0, inside, lo, K::BITS - skip, root_bits);
        let outside = [c.entry(0, 1, K::ZERO, 0), c.entry(n - 1, n, K::ZERO, 0)];
        LpmTable {
            root_bits,
            skip,
            lo,
            hi,
            outside,
            entries: HugeSlice::from_slice(&c.entries),
            runs: HugeSlice::from_slice(&c.runs),
            leaves: HugeSlice::from_slice(&c.leaves),
            lines: HugeSlice::from_slice(&[]),
            ext: HugeSlice::from_slice(&[]),
            tbl8: HugeSlice::from_slice(&[]),
            prefixes: r.prefix_count(),
            ranges: r.range_count(),
        }
    }

    /// The direct layout ([`Layout::Direct`]); `None` for IPv6 or when more than
    /// [`DIRECT_MAX_BLOCKS`] second-level blocks (the dummy one included) would be needed. Linear in the ranges
    /// plus the 2^24 entries, written in place (no second copy of the 64 MiB).
    fn compile_direct(r: &ranges::Ranges<K>) -> Option<Self> {
        if K::BITS != 32 {
            return None;
        }
        let shift = K::BITS - DIRECT_BITS;
        // A /24 needs a block exactly when a range starts inside it (not at its first key).
        let mut cut: Vec<usize> = r
            .starts
            .iter()
            .filter(|s| s.index(0, shift) != 0)
            .map(|s| s.index(shift, DIRECT_BITS))
            .collect();
        cut.dedup();
        if cut.len() + 1 > DIRECT_MAX_BLOCKS {
            return None;
        }
        let n = r.starts.len();
        let entries = HugeSlice::build(1 << DIRECT_BITS, NO_MATCH, |e| {
            // Range i covers the /24s from its start's to its end's: later ranges overwrite
            // a shared /24, which is then one of `cut` and overwritten below anyway.
            for i in 0..n {
                let first = r.starts[i].index(shift, DIRECT_BITS);
                let last = match r.starts.get(i + 1) {
                    Some(next) => next.pred().index(shift, DIRECT_BITS),
                    None => (1 << DIRECT_BITS) - 1,
                };
                e[first..=last].fill(r.values[i]);
            }
            for (k, &c) in cut.iter().enumerate() {
                e[c] = DIRECT_EXT | (k as u32 + 1);
            }
        });
        let tbl8 = HugeSlice::build((cut.len() + 1) << 8, NO_MATCH, |t| {
            for (k, &c) in cut.iter().enumerate() {
                let base = K::ZERO.with_index(shift, c);
                // The range holding the /24's first key, then each key's in turn.
                let mut i = r.starts.partition_point(|&s| s <= base) - 1;
                for (j, v) in t[(k + 1) << 8..(k + 2) << 8].iter_mut().enumerate() {
                    let key = base.with_index(0, j);
                    while i + 1 < n && r.starts[i + 1] <= key {
                        i += 1;
                    }
                    *v = r.values[i];
                }
            }
        });
        Some(LpmTable {
            root_bits: DIRECT_BITS,
            skip: 0,
            lo: K::ZERO,
            hi: K::ZERO.last(0),
            outside: [NO_MATCH; 2],
            entries,
            // Never read in this layout.
            runs: HugeSlice::from_slice(&[]),
            leaves: HugeSlice::from_slice(&[]),
            lines: HugeSlice::from_slice(&[]),
            ext: HugeSlice::from_slice(&[]),
            tbl8,
            prefixes: r.prefix_count(),
            ranges: r.range_count(),
        })
    }

    /// The line layout: one [`Line`] per chunk of 2^14 addresses, with extension lines
    /// for chunks of more than [`LINE_RANGES`] ranges ([`build_line`]) and a general entry
    /// for chunks of more than [`DEEP_MIN`]. `None` if the extension lines outnumber their
    /// codes.
    fn compile_lines(r: &ranges::Ranges<K>) -> Option<Self> {
        let shift = K::BITS - LINE_BITS;
        let mut c = Compiler {
            starts: &r.starts,
            values: &r.values,
            entries: Vec::new(),
            runs: vec![(K::ZERO, NO_MATCH)],
            leaves: vec![Unit::EMPTY],
        };

        let n = r.starts.len();
        let fan = 1usize << LINE_BITS;
        let mut lines = Vec::with_capacity(fan);
        let mut ext = Vec::new();
        let mut starts = Vec::with_capacity(LINE_RANGES);
        // Ranges a..b cover chunk `ch`: starts[a] <= its first address, starts[b] past it.
        let mut a = 0usize;
        for ch in 0..fan {
            let lo = K::ZERO.with_index(shift, ch);
            while a + 1 < n && r.starts[a + 1] <= lo {
                a += 1;
            }
            let mut b = a + 1;
            if ch + 1 < fan {
                let next = K::ZERO.with_index(shift, ch + 1);
                while b < n && r.starts[b] < next {
                    b += 1;
                }
            } else {
                b = n;
            }
            starts.clear();
            starts.push(0);
            starts.extend(r.starts[a + 1..b].iter().map(|s| s.index(0, shift) as u64));
            let general = (b - a > DEEP_MIN).then(|| c.entry(a, b, lo, shift));
            lines.push(build_line(
                &starts,
                &r.values[a..b],
                1 << shift,
                &mut ext,
                general,
            ));
        }
        if ext.len() > MAX_EXT_LINES {
            return None;
        }
        Some(LpmTable {
            root_bits: LINE_BITS,
            skip: 0,
            lo: K::ZERO,
            hi: K::ZERO.last(0),
            outside: [ENTRY_NONE; 2],
            entries: HugeSlice::from_slice(&c.entries),
            runs: HugeSlice::from_slice(&c.runs),
            leaves: HugeSlice::from_slice(&c.leaves),
            lines: HugeSlice::from_slice(&lines),
            ext: HugeSlice::from_slice(&ext),
            tbl8: HugeSlice::from_slice(&[]),
            prefixes: r.prefix_count(),
            ranges: r.range_count(),
        })
    }

    /// Which layout the table was built in.
    pub fn layout(&self) -> Layout {
        if !self.lines.is_empty() {
            Layout::Lines
        } else if !self.tbl8.is_empty() {
            Layout::Direct
        } else {
            Layout::Root
        }
    }

    /// The value for `key` in the direct layout: its /24's entry (a value or [`NO_MATCH`],
    /// whose top bits are never [`DIRECT_EXT`]'s), or the entry's block's value for the
    /// key's last 8 bits. A branch, not a select: predicted, it lets the core start the
    /// next keys' reads before this one's entry arrives (measured, `op25b-bench lpm`, 100k
    /// prefixes: 146–193 against 102 M lookups/s on keys spread over the whole space, and
    /// as fast on keys inside the prefixes).
    #[inline(always)]
    pub(crate) fn direct_lookup(&self, key: K) -> u32 {
        let e = self.entries[key.index(K::BITS - DIRECT_BITS, DIRECT_BITS)];
        if e >> 30 == KIND_RUN {
            return self.tbl8[(((e & ENTRY_INDEX) as usize) << 8) | key.index(0, 8)];
        }
        e
    }

    /// The value for `key` whose line entry has code `c`, following extension lines while
    /// the code points to one, and resolving a general entry.
    #[cold]
    #[inline(never)]
    fn ext_lookup(&self, mut c: u32, key: K) -> u32 {
        let shift = K::BITS - LINE_BITS;
        let off = key.index(0, shift) as u64;
        while c >= LINE_EXT {
            if c == LINE_DEEP {
                // Only a chunk's own line holds a general entry.
                let e = deep_entry(&self.lines[Self::line_index(key)]);
                return self.resolve_deep(e, shift, key);
            }
            c = line_code(&self.ext[(c - LINE_EXT) as usize].0, off);
        }
        code_value(c)
    }

    /// Prefetches what a code from `LINE_EXT` up in line `l` leads `key` to next: the
    /// extension line, or the first read under the line's general entry.
    #[inline(always)]
    fn prefetch_ext(&self, c: u32, l: &Line, key: K) {
        if c != LINE_DEEP {
            prefetch(&self.ext[(c - LINE_EXT) as usize]);
            return;
        }
        let e = deep_entry(l);
        let shift = K::BITS - LINE_BITS;
        match e >> 30 {
            KIND_NODE => {
                let s = shift.min(NODE_STRIDE);
                prefetch(&self.entries[(e & ENTRY_INDEX) as usize + key.index(shift - s, s)]);
            }
            KIND_LEAF => prefetch(&self.leaves[(e & LEAF_UNIT_MASK) as usize]),
            KIND_RUN => prefetch(&self.runs[run_span(e).0]),
            _ => {}
        }
    }

    /// The value for `key` in the line layout.
    #[inline(always)]
    fn line_lookup(&self, key: K) -> u32 {
        let off = key.index(0, K::BITS - LINE_BITS) as u64;
        let c = line_code(&self.lines[Self::line_index(key)].0, off);
        if c >= LINE_EXT {
            return self.ext_lookup(c, key);
        }
        code_value(c)
    }

    /// The value for `key` given the entry `e` of its chunk of `2^shift` addresses.
    #[inline(always)]
    fn resolve(&self, e: u32, shift: u8, key: K) -> u32 {
        // Most keys of most tables end at the root: test that first.
        if e >> 30 == KIND_VALUE {
            return if e == ENTRY_NONE { NO_MATCH } else { e };
        }
        self.resolve_deep(e, shift, key)
    }

    /// [`Self::resolve`] for an entry that is not a value.
    #[inline]
    fn resolve_deep(&self, mut e: u32, mut shift: u8, key: K) -> u32 {
        loop {
            match e >> 30 {
                KIND_VALUE => return if e == ENTRY_NONE { NO_MATCH } else { e },
                KIND_NODE => {
                    let s = shift.min(NODE_STRIDE);
                    shift -= s;
                    e = self.entries[(e & ENTRY_INDEX) as usize + key.index(shift, s)];
                }
                KIND_LEAF => return leaf_find(&self.leaves, e, key.index(0, shift) as u64),
                _ => {
                    let at = ((e & ENTRY_INDEX) >> RUN_LEN_BITS) as usize;
                    let len = (e & ((1 << RUN_LEN_BITS) - 1)) as usize;
                    let run = &self.runs[at..at + len];
                    // The run's first start is at or below every key routed to it.
                    let p = run.partition_point(|&(s, _)| s <= key);
                    return run[p - 1].1;
                }
            }
        }
    }

    /// The value of the longest prefix containing `key`, or [`NO_MATCH`].
    #[inline]
    pub fn lookup_raw(&self, key: K) -> u32 {
        if !self.lines.is_empty() {
            return self.line_lookup(key);
        }
        if !self.tbl8.is_empty() {
            return self.direct_lookup(key);
        }
        let shift = K::BITS - self.skip - self.root_bits;
        self.resolve(self.root_entry(key), shift, key)
    }

    /// The root entry for `key`.
    #[inline(always)]
    fn root_entry(&self, key: K) -> u32 {
        let e = self.entries[self.root_index(key)];
        if self.skip == 0 {
            return e;
        }
        let e = std::hint::select_unpredictable(key < self.lo, self.outside[0], e);
        std::hint::select_unpredictable(key > self.hi, self.outside[1], e)
    }

    /// Prefetches the first line a lookup of `key` reads (its line in the line layout,
    /// else its root entry, which in the direct layout is its /24's entry; for a key
    /// outside the root's block, the entry it would read, so the hint is only wasted).
    /// Only a hint: for a batch whose table is not in this core's cache, so the first
    /// reads of several tables overlap instead of following each other.
    #[inline]
    pub fn prefetch_first(&self, key: K) {
        if self.lines.is_empty() {
            if let Some(e) = self.entries.get(self.root_index(key)) {
                prefetch(e);
            }
        } else if let Some(l) = self.lines.get(Self::line_index(key)) {
            prefetch(l);
        }
    }

    /// The root entry a lookup of `key` reads (the root layout).
    #[inline(always)]
    fn root_index(&self, key: K) -> usize {
        key.index(K::BITS - self.skip - self.root_bits, self.root_bits)
    }

    /// The line a lookup of `key` reads (the line layout).
    #[inline(always)]
    fn line_index(key: K) -> usize {
        key.index(K::BITS - LINE_BITS, LINE_BITS)
    }

    /// The value of the longest prefix containing `key`.
    #[inline]
    pub fn lookup(&self, key: K) -> Option<u32> {
        match self.lookup_raw(key) {
            NO_MATCH => None,
            v => Some(v),
        }
    }

    /// Looks up a batch: `out[i]` gets the raw value for `keys[i]` ([`NO_MATCH`] for none).
    ///
    /// Every root entry is read first, so their cache misses overlap. If few keys go on past
    /// the root (a small table, or traffic outside the pools), each is then resolved with
    /// well-predicted branches. Otherwise two more passes follow, with no data-dependent
    /// branch on the common path: prefetch every leaf or run a key goes on to, then search
    /// them with a fixed number of selects. A key that ends at the root searches the empty
    /// leaf and keeps its root answer. Only keys routed through a child node or into a long
    /// run take the general path.
    ///
    /// In the line layout, keys go in groups of 64: every line of a group is prefetched
    /// first, then each is searched.
    pub fn lookup_batch(&self, keys: &[K], out: &mut [u32]) {
        if !self.lines.is_empty() {
            self.lines_batch(keys, out);
            return;
        }
        if !self.tbl8.is_empty() {
            // One read per key (two for a key in a cut /24), independent across keys, so
            // the core overlaps their misses without a prefetch pass.
            for (k, o) in keys.iter().zip(out.iter_mut()) {
                *o = self.direct_lookup(*k);
            }
            return;
        }
        let shift = K::BITS - self.skip - self.root_bits;
        // Keys going on to a run or leaf (kinds 2 and 3).
        let mut deep = 0usize;
        if self.skip == 0 {
            // The root spans the whole space: no key is outside it.
            for (k, o) in keys.iter().zip(out.iter_mut()) {
                *o = self.entries[self.root_index(*k)];
                deep += (*o >> 31) as usize;
            }
        } else {
            for (k, o) in keys.iter().zip(out.iter_mut()) {
                *o = self.root_entry(*k);
                deep += (*o >> 31) as usize;
            }
        }
        if deep * 8 <= keys.len() {
            for (k, o) in keys.iter().zip(out.iter_mut()) {
                *o = self.resolve(*o, shift, *k);
            }
            return;
        }
        for &e in out.iter() {
            prefetch(&self.leaves[(leaf_of(e) & LEAF_UNIT_MASK) as usize]);
            prefetch(&self.runs[run_span(e).0]);
        }
        // Root leaves exist only where the root's chunks are narrow enough.
        let off_bits = shift.min(LEAF_MAX_SHIFT);
        for (k, o) in keys.iter().zip(out.iter_mut()) {
            let e = *o;
            let kind = e >> 30;
            if (kind == KIND_VALUE) | (kind == KIND_LEAF) {
                let found = leaf_find(&self.leaves, leaf_of(e), k.index(0, off_bits) as u64);
                let direct = std::hint::select_unpredictable(e == ENTRY_NONE, NO_MATCH, e);
                *o = std::hint::select_unpredictable(kind == KIND_LEAF, found, direct);
                continue;
            }
            let (at, len) = run_span(e);
            if (kind == KIND_NODE) | (len > SHORT_RUN as usize) {
                *o = self.resolve(e, shift, *k);
                continue;
            }
            let run = &self.runs[at..at + len];
            // Invariant: run[base].0 <= key (a run's first start is at or below its keys).
            let mut base = 0usize;
            let mut h = SHORT_RUN as usize / 2;
            while h > 0 {
                let p = base + h;
                let ok = (p < len) & (run[p.min(len - 1)].0 <= *k);
                base = std::hint::select_unpredictable(ok, p, base);
                h /= 2;
            }
            *o = run[base].1;
        }
    }

    /// [`Self::lookup_batch`] in the line layout: prefetch every key's line, then search
    /// each; keys whose entry points to an extension line prefetch it and are resolved
    /// after the rest, so those second reads overlap too.
    fn lines_batch(&self, keys: &[K], out: &mut [u32]) {
        const GROUP: usize = 64;
        let shift = K::BITS - LINE_BITS;
        // Every line table has exactly 2^LINE_BITS lines: as an array, indexing by a
        // masked index needs no bounds check.
        let Ok(lines) = <&[Line; 1 << LINE_BITS]>::try_from(&self.lines[..]) else {
            unreachable!("a line table has 2^{LINE_BITS} lines");
        };
        for (keys, out) in keys.chunks(GROUP).zip(out.chunks_mut(GROUP)) {
            for k in keys {
                prefetch(&lines[Self::line_index(*k)]);
            }
            let mut later = [0u8; GROUP];
            let mut n = 0usize;
            for (i, (k, o)) in keys.iter().zip(out.iter_mut()).enumerate() {
                let l = &lines[Self::line_index(*k)];
                let c = line_code(&l.0, k.index(0, shift) as u64);
                // An extension's code is kept (one down) until it is resolved below.
                *o = code_value(c);
                if c >= LINE_EXT {
                    self.prefetch_ext(c, l, *k);
                    later[n] = i as u8;
                    n += 1;
                }
            }
            for &i in &later[..n] {
                let i = usize::from(i);
                out[i] = self.ext_lookup(value_code(out[i]), keys[i]);
            }
        }
    }

    /// The hot block a lookup of `key` starts in: the index of its first read at a
    /// granularity of at most 2^[`BLOCK_BITS`] blocks per table (in the line layout, its
    /// line; in the root layout, the top bits of its root index), and never telling apart two
    /// addresses of one IPv4 /24 or one IPv6 /48, so a block stands for many subscribers. What a
    /// worker records while a new table is built ([`crate::hot`]), so that
    /// [`Self::warm_block`] of the new table can warm the same keys' reads. Any key gives
    /// a block, inside the root or not.
    #[inline]
    pub fn block_of(&self, key: K) -> usize {
        self.root_index(key) >> (self.root_bits - self.block_bits())
    }

    /// Index bits of [`Self::block_of`].
    fn block_bits(&self) -> u8 {
        let finest: u8 = if K::BITS == 32 { 24 } else { 48 };
        self.root_bits
            .min(BLOCK_BITS)
            .min(finest.saturating_sub(self.skip))
    }

    /// The keys of block `b` of this table ([`Self::block_of`]), first and last; `b` is
    /// taken modulo the table's block count.
    pub fn block_keys(&self, b: usize) -> (K, K) {
        let bits = self.block_bits();
        let shift = K::BITS - self.skip - bits;
        if shift == K::BITS {
            return (K::ZERO, K::ZERO.last(0));
        }
        let first = self
            .lo
            .and(K::mask(self.skip))
            .with_index(shift, b & ((1 << bits) - 1));
        (first, first.last(K::BITS - shift))
    }

    /// Reads, and demotes from this core's private caches, what lookups of the keys
    /// `first..=last` read first and next in this table: the lines covering them and the
    /// extension lines their entries point to (line layout), the root entries covering
    /// them and the leaf, run or node line each points to (root layout), or the lines of
    /// entries covering them and of the blocks their cut /24s point to (direct layout). At
    /// most `cap` first-level entries (direct: `cap` lines of entries and `cap` of blocks)
    /// are read, so a span much wider than this table's blocks costs a bounded time. Returns the reads made, each of one cache line (in the root layout
    /// neighbouring entries share one). An empty span (`first > last`) reads nothing.
    pub fn warm_block(&self, first: K, last: K, cap: usize) -> usize {
        if first > last {
            return 0;
        }
        let mut lines = 0usize;
        let mut sum = 0u64;
        let mut touch = |word: u64| {
            sum = sum.wrapping_add(word);
            lines += 1;
        };
        if !self.lines.is_empty() {
            let (a, b) = (Self::line_index(first), Self::line_index(last));
            for l in self.lines[a..=b].iter().take(cap) {
                touch(u64::from(l.0[0]));
                demote(l);
                for n in 0..LINE_RANGES {
                    let c = packed_code(&l.0, n);
                    if (LINE_EXT..LINE_DEEP).contains(&c) {
                        if let Some(x) = self.ext.get((c - LINE_EXT) as usize) {
                            touch(u64::from(x.0[0]));
                            demote(x);
                        }
                    } else if c == LINE_DEEP {
                        let mut budget = BELOW_BUDGET;
                        self.warm_below(
                            deep_entry(l),
                            K::BITS - LINE_BITS,
                            &mut budget,
                            &mut touch,
                        );
                    }
                }
            }
        } else {
            let (first, last) = if self.skip == 0 {
                (first, last)
            } else {
                (first.max(self.lo), last.min(self.hi))
            };
            if first <= last && !self.tbl8.is_empty() {
                // Direct: the entries (16 to a line, at most `cap` lines), and the lines of
                // the blocks the cut /24s among them point to, at most `cap` lines in all
                // (a /18 of pools each cut by an exempt host would otherwise read 64 whole
                // blocks, 1,024 lines, and one such block would use up a swap's budget).
                let (a, b) = (self.root_index(first), self.root_index(last));
                let span = &self.entries[a..=b];
                for e in span.iter().step_by(16).take(cap) {
                    touch(u64::from(*e));
                    demote(e);
                }
                let cut = span.iter().take(cap * 16).filter(|&&e| e >> 30 == KIND_RUN);
                let blocks = cut.flat_map(|&e| {
                    let at = ((e & ENTRY_INDEX) as usize) << 8;
                    self.tbl8
                        .get(at..at + 256)
                        .unwrap_or_default()
                        .iter()
                        .step_by(16)
                });
                for x in blocks.take(cap) {
                    touch(u64::from(*x));
                    demote(x);
                }
            } else if first <= last {
                let shift = K::BITS - self.skip - self.root_bits;
                let (a, b) = (self.root_index(first), self.root_index(last));
                for e in self.entries[a..=b].iter().take(cap) {
                    touch(u64::from(*e));
                    demote(e);
                    let mut budget = BELOW_BUDGET;
                    self.warm_below(*e, shift, &mut budget, &mut touch);
                }
            }
        }
        std::hint::black_box(sum);
        lines
    }

    /// [`Self::warm_block`]'s levels under the general entry `e` of a chunk of `2^shift`
    /// keys: its leaf, its run, or its child node and, while `budget` lasts (one per entry
    /// followed), what the node's entries lead to.
    fn warm_below(&self, e: u32, shift: u8, budget: &mut usize, touch: &mut impl FnMut(u64)) {
        match e >> 30 {
            KIND_NODE => {
                let s = shift.min(NODE_STRIDE);
                let at = (e & ENTRY_INDEX) as usize;
                let node = self.entries.get(at..at + (1 << s)).unwrap_or_default();
                for x in node.iter().step_by(16) {
                    touch(u64::from(*x));
                    demote(x);
                }
                for &x in node {
                    if *budget == 0 {
                        return;
                    }
                    if x >> 30 != KIND_VALUE {
                        *budget -= 1;
                        self.warm_below(x, shift - s, budget, touch);
                    }
                }
            }
            KIND_LEAF => {
                let u = (e & LEAF_UNIT_MASK) as usize;
                // A leaf is one to four 16-byte units: at most two lines.
                for x in self
                    .leaves
                    .get(u..)
                    .unwrap_or_default()
                    .iter()
                    .take(4)
                    .step_by(3)
                {
                    touch(u64::from(x.0[0]));
                    demote(x);
                }
            }
            KIND_RUN => {
                let (at, len) = run_span(e);
                let step = (64 / std::mem::size_of::<(K, u32)>()).max(1);
                for x in self
                    .runs
                    .get(at..at + len)
                    .unwrap_or_default()
                    .iter()
                    .step_by(step)
                {
                    touch(u64::from(x.1));
                    demote(x);
                }
            }
            _ => {}
        }
    }

    /// Reads one word per cache line of the whole table, so a freshly built table is in the
    /// cache before workers first use it, and demotes each line read from this core's
    /// private caches to the shared cache ([`crate::port::sys::demote`]): the workers run
    /// on other cores, and a line left in this core's cache costs them a snoop of it,
    /// slower than a shared-cache hit. Returns a value to keep the reads alive.
    pub fn warm(&self) -> u64 {
        fn pass<T>(slice: &[T], read: impl Fn(&T) -> u64) -> u64 {
            // One element per 64 bytes touches every line of the slice once.
            let step = (64 / std::mem::size_of::<T>().max(1)).max(1);
            let mut sum = 0u64;
            for x in slice.iter().step_by(step) {
                sum = sum.wrapping_add(read(x));
                demote(x);
            }
            sum
        }
        pass(&self.entries, |e| u64::from(*e))
            .wrapping_add(pass(&self.runs, |(_, v)| u64::from(*v)))
            .wrapping_add(pass(&self.leaves, |l| u64::from(l.0[0])))
            .wrapping_add(pass(&self.lines, |l| u64::from(l.0[0])))
            .wrapping_add(pass(&self.ext, |l| u64::from(l.0[0])))
            .wrapping_add(pass(&self.tbl8, |v| u64::from(*v)))
    }

    /// How many more reads a lookup of `key` makes after its line (extension lines, or the
    /// nodes, leaf or run under its line's general entry; in the direct layout 1 for a key
    /// in a cut /24; 0 in the root layout): a diagnostic, so a key set's share of second
    /// reads can be counted.
    pub fn extension_reads(&self, key: K) -> u32 {
        if !self.tbl8.is_empty() {
            let e = self.entries[key.index(K::BITS - DIRECT_BITS, DIRECT_BITS)];
            return u32::from(e >> 30 == KIND_RUN);
        }
        if self.lines.is_empty() {
            return 0;
        }
        let mut shift = K::BITS - LINE_BITS;
        let off = key.index(0, shift) as u64;
        let mut c = line_code(&self.lines[Self::line_index(key)].0, off);
        let mut n = 0;
        while (LINE_EXT..LINE_DEEP).contains(&c) {
            n += 1;
            c = line_code(&self.ext[(c - LINE_EXT) as usize].0, off);
        }
        if c < LINE_DEEP {
            return n;
        }
        let mut e = deep_entry(&self.lines[Self::line_index(key)]);
        loop {
            match e >> 30 {
                KIND_VALUE => return n,
                KIND_NODE => {
                    n += 1;
                    let s = shift.min(NODE_STRIDE);
                    shift -= s;
                    e = self.entries[(e & ENTRY_INDEX) as usize + key.index(shift, s)];
                }
                _ => return n + 1,
            }
        }
    }

    /// In the line layout, how many of the 2^18 lines point further (their chunk holds more
    /// than 13 ranges), how many extension lines there are and how many lines hold a
    /// general entry (chunks of more than 169 ranges); zeros in the root layout.
    pub fn extension_counts(&self) -> (usize, usize, usize) {
        let points = |l: &Line| (0..LINE_RANGES).any(|n| packed_code(&l.0, n) >= LINE_EXT);
        (
            self.lines.iter().filter(|l| points(l)).count(),
            self.ext.len(),
            self.lines
                .iter()
                .filter(|l| (0..LINE_RANGES).any(|n| packed_code(&l.0, n) == LINE_DEEP))
                .count(),
        )
    }

    /// Number of distinct prefixes in the table.
    pub fn prefix_count(&self) -> usize {
        self.prefixes
    }

    /// Whether the table holds no prefix.
    pub fn is_empty(&self) -> bool {
        self.prefixes == 0
    }

    /// Number of disjoint ranges the prefixes flatten to.
    pub fn range_count(&self) -> usize {
        self.ranges
    }

    /// Bits of the key the root (or, in the line layout, the line) is indexed by.
    pub fn root_bits(&self) -> u8 {
        self.root_bits
    }

    /// Bytes of memory the lookup structure holds.
    pub fn memory_bytes(&self) -> usize {
        self.entries.len() * 4
            + self.runs.len() * std::mem::size_of::<(K, u32)>()
            + self.leaves.len() * std::mem::size_of::<Unit>()
            + self.lines.len() * std::mem::size_of::<Line>()
            + self.ext.len() * std::mem::size_of::<Line>()
            + self.tbl8.len() * 4
    }
}
