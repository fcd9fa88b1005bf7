//! IPv4 and IPv6 longest-prefix-match tables: built once off the hot path, immutable after,
//! read without locks from any number of threads.
//!
//! A table maps a key to the `u32` value of its longest matching prefix. It is built from
//! a list of `(Prefix, value)` pairs by flattening the prefix tree into a sorted array of
//! disjoint ranges (the DXR idea: a set of nested prefixes is a partition of the address
//! space into intervals, each owned by the most specific prefix covering it); a lookup is
//! one binary search over the range starts.
//!
//! Invariants:
//! - `starts[0] == 0`, `starts` strictly increasing, `starts.len() == values.len()`;
//!   `values[i]` is the answer for every key in `starts[i]..starts[i+1]`.
//! - Adjacent ranges never hold the same value (they are merged at build time).
//! - A prefix never has host bits set; a prefix listed twice must carry the same value.
//! - `lpm` knows nothing of packets or policy: values are opaque to it.
//!
//! [`naive::NaiveLpm`] is the reference every table is property-tested against.

pub mod naive;
#[cfg(test)]
mod tests;

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
    /// `self + 1`, or `None` at the top of the space.
    fn succ(self) -> Option<Self>;
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
            fn succ(self) -> Option<Self> {
                self.checked_add(1)
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
    /// The value `u32::MAX` is reserved for "no match".
    #[error("value u32::MAX is reserved")]
    ReservedValue,
}

/// The value stored for "no prefix matches".
pub const NO_MATCH: u32 = u32::MAX;

/// An immutable longest-prefix-match table over one address family.
#[derive(Clone, Debug)]
pub struct LpmTable<K> {
    starts: Box<[K]>,
    values: Box<[u32]>,
    prefixes: usize,
}

/// IPv4 table.
pub type Lpm4 = LpmTable<u32>;
/// IPv6 table.
pub type Lpm6 = LpmTable<u128>;

impl<K: Bits> Default for LpmTable<K> {
    fn default() -> Self {
        LpmTable {
            starts: vec![K::ZERO].into_boxed_slice(),
            values: vec![NO_MATCH].into_boxed_slice(),
            prefixes: 0,
        }
    }
}

impl<K: Bits> LpmTable<K> {
    /// Builds a table. Values must be below `u32::MAX`; a prefix listed twice with the same
    /// value counts once, with different values it is a [`BuildError::Conflict`].
    pub fn build(entries: &[(Prefix<K>, u32)]) -> Result<Self, BuildError> {
        let mut order: Vec<u32> = (0..entries.len() as u32).collect();
        // Outer prefixes before the ones they contain: by first address, then shortest.
        order.sort_unstable_by_key(|&i| {
            let (p, _) = entries[i as usize];
            (p.addr, p.len, i)
        });
        let mut starts: Vec<K> = Vec::with_capacity(entries.len() * 2 + 1);
        let mut values: Vec<u32> = Vec::with_capacity(entries.len() * 2 + 1);
        starts.push(K::ZERO);
        values.push(NO_MATCH);
        // Emits "from `start` on, the answer is `value`", keeping the arrays canonical.
        let mut emit = |start: K, value: u32| {
            let n = starts.len();
            if starts[n - 1] == start {
                values[n - 1] = value;
                // Merging may now make this range equal to its predecessor.
                if n >= 2 && values[n - 2] == value {
                    starts.pop();
                    values.pop();
                }
            } else if values[n - 1] != value {
                starts.push(start);
                values.push(value);
            }
        };
        // Stack of open prefixes: (last address, value, input position).
        let mut stack: Vec<(K, u32)> = Vec::with_capacity(K::BITS as usize + 1);
        let mut prev: Option<(Prefix<K>, u32, usize)> = None;
        let mut distinct = 0usize;
        for &i in &order {
            let (p, v) = entries[i as usize];
            if v == NO_MATCH {
                return Err(BuildError::ReservedValue);
            }
            if let Some((pp, pv, pi)) = prev {
                if pp == p {
                    if pv != v {
                        return Err(BuildError::Conflict {
                            first: pi.min(i as usize),
                            second: pi.max(i as usize),
                        });
                    }
                    continue;
                }
            }
            prev = Some((p, v, i as usize));
            distinct += 1;
            Self::close_before(&mut stack, p.addr, &mut emit);
            emit(p.addr, v);
            stack.push((p.last(), v));
        }
        // Close everything.
        while let Some((last, _)) = stack.pop() {
            let parent = stack.last().map_or(NO_MATCH, |&(_, v)| v);
            if let Some(next) = last.succ() {
                emit(next, parent);
            }
        }
        Ok(LpmTable {
            starts: starts.into_boxed_slice(),
            values: values.into_boxed_slice(),
            prefixes: distinct,
        })
    }

    /// Pops every open prefix that ends before `addr`, emitting the parent's value after it.
    fn close_before(stack: &mut Vec<(K, u32)>, addr: K, emit: &mut impl FnMut(K, u32)) {
        while let Some(&(last, _)) = stack.last() {
            if last >= addr {
                break;
            }
            stack.pop();
            let parent = stack.last().map_or(NO_MATCH, |&(_, v)| v);
            if let Some(next) = last.succ() {
                emit(next, parent);
            }
        }
    }

    /// The value of the longest prefix containing `key`, or [`NO_MATCH`].
    #[inline]
    pub fn lookup_raw(&self, key: K) -> u32 {
        // starts[0] == 0 <= key, so the partition point is at least 1.
        let i = self.starts.partition_point(|&s| s <= key);
        self.values[i - 1]
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
    /// Both slices must have the same length.
    pub fn lookup_batch(&self, keys: &[K], out: &mut [u32]) {
        for (k, o) in keys.iter().zip(out.iter_mut()) {
            *o = self.lookup_raw(*k);
        }
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
        self.starts.len()
    }

    /// Bytes of memory the lookup structure holds.
    pub fn memory_bytes(&self) -> usize {
        self.starts.len() * std::mem::size_of::<K>() + self.values.len() * 4
    }
}
