//! [`HugeSlice`]: an immutable slice of plain data, optionally in memory backed by 2 MiB
//! pages (transparent huge pages asked for with `madvise(MADV_HUGEPAGE)`, which works when
//! THP is `always` or `madvise`). Lookup tables live here. Huge pages are **on by
//! default**; the environment variable `OP25B_HUGEPAGES=0` turns them off. Measured on this
//! project's reference machine (a 2-vCPU VM), alternating runs of `op25b-bench lpm` on 1M
//! prefixes with uniformly random keys: 110–123 M lookups/s on huge pages against 46–96 on
//! 4 KiB pages (four pairs, huge pages ahead in each). The whole-pipeline `classify` on
//! 1M prefixes and the first burst after a swap (`op25b-bench swap`) showed no difference
//! beyond the VM's noise. (An earlier table format, with one lookup at a time, gained
//! nothing from them, which is why they were off before.)
//!
//! Invariants:
//! - Slices under 1 MiB are ordinary boxed slices (no rounding waste).
//! - A larger slice is its own anonymous mapping, aligned to and rounded up to 2 MiB,
//!   advised before its first write (so pages are faulted in huge), filled once (by one
//!   copy, or in place by [`HugeSlice::build`]'s initialiser), never written again, and
//!   unmapped whole on drop.
//! - If the allocation or the advice fails, the data is still there (ordinary memory or
//!   ordinary pages): huge pages are an optimisation, never a requirement.

use std::ops::Deref;
use std::ptr::NonNull;

/// Huge page size on x86-64 and arm64 (4 KiB base pages).
const HUGE: usize = 2 << 20;
/// Smallest slice put on huge pages.
const MIN_BYTES: usize = 1 << 20;

/// Whether tables go on huge pages: yes unless `OP25B_HUGEPAGES=0` (read once per process).
fn huge_pages_on() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("OP25B_HUGEPAGES").is_none_or(|v| v != "0"))
}

/// An immutable slice, on huge pages when large enough.
pub struct HugeSlice<T> {
    storage: Storage<T>,
}

enum Storage<T> {
    Boxed(Box<[T]>),
    Huge {
        ptr: NonNull<T>,
        len: usize,
        /// Bytes mapped at `ptr` (a multiple of 2 MiB).
        size: usize,
    },
}

// SAFETY: a HugeSlice owns its memory exclusively and never mutates it after construction,
// like a Box<[T]>; sending or sharing it is sound exactly when it is for T.
unsafe impl<T: Send> Send for HugeSlice<T> {}
// SAFETY: see Send: shared access only reads immutable memory.
unsafe impl<T: Sync> Sync for HugeSlice<T> {}

impl<T: Copy> HugeSlice<T> {
    /// Copies `data` into a new slice, on huge pages if it is large (unless `OP25B_HUGEPAGES=0`).
    pub fn from_slice(data: &[T]) -> Self {
        Self::with_pages(data, huge_pages_on())
    }

    /// Copies `data` into a new slice, on huge pages if `huge` and it is large.
    pub fn with_pages(data: &[T], huge: bool) -> Self {
        let Some((ptr, size)) = Self::map(data.len(), huge) else {
            return HugeSlice {
                storage: Storage::Boxed(data.into()),
            };
        };
        // SAFETY: the destination holds at least data.len() elements of T (`map`), is
        // aligned for T, and cannot overlap the borrowed source.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), ptr.as_ptr(), data.len());
        }
        HugeSlice {
            storage: Storage::Huge {
                ptr,
                len: data.len(),
                size,
            },
        }
    }

    /// A new slice of `len` copies of `fill`, then written by `init` in place (on huge
    /// pages if it is large, unless `OP25B_HUGEPAGES=0`): a large table is built where it
    /// will live instead of being built elsewhere and copied, which would need twice its
    /// memory for a moment.
    pub fn build(len: usize, fill: T, init: impl FnOnce(&mut [T])) -> Self {
        let Some((ptr, size)) = Self::map(len, huge_pages_on()) else {
            let mut data = vec![fill; len].into_boxed_slice();
            init(&mut data);
            return HugeSlice {
                storage: Storage::Boxed(data),
            };
        };
        // SAFETY: the mapping holds at least `len` elements of T, aligned (`map`), and is
        // ours alone; every element is written with `fill` before the slice is formed.
        let data = unsafe {
            for i in 0..len {
                ptr.as_ptr().add(i).write(fill);
            }
            std::slice::from_raw_parts_mut(ptr.as_ptr(), len)
        };
        init(data);
        HugeSlice {
            storage: Storage::Huge { ptr, len, size },
        }
    }

    /// A new mapping for `len` elements of T, aligned to and rounded up to 2 MiB and
    /// advised for huge pages, with its size; `None` when `huge` is off, the slice is
    /// small, or the mapping fails (the caller then uses ordinary memory).
    fn map(len: usize, huge: bool) -> Option<(NonNull<T>, usize)> {
        let bytes = len.checked_mul(std::mem::size_of::<T>())?;
        if !huge || bytes < MIN_BYTES || std::mem::align_of::<T>() > HUGE {
            return None;
        }
        let size = bytes.next_multiple_of(HUGE);
        // Our own mapping rather than the global allocator: glibc serves large blocks from
        // a thread's arena once earlier large blocks were freed (its mmap threshold rises),
        // and there the advice did not stick (seen under parallel tests: the block's
        // mapping had no `hg` flag and no huge page).
        // SAFETY: an anonymous private mapping of a non-zero size; the result is checked.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size + HUGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return None;
        }
        let start = raw as usize;
        let head = start.next_multiple_of(HUGE) - start;
        // SAFETY: both trims lie inside the mapping just made and nothing refers to them
        // (never touched, so no page is mapped there and unmapping flushes nothing);
        // [start + head, start + head + size) stays mapped, 2 MiB aligned.
        unsafe {
            if head > 0 {
                libc::munmap(raw, head);
            }
            if HUGE - head > 0 {
                libc::munmap((start + head + size) as *mut libc::c_void, HUGE - head);
            }
        }
        let aligned = (start + head) as *mut libc::c_void;
        // SAFETY: MADV_HUGEPAGE only changes how the mapping's pages are backed, never its
        // contents. A failure (THP off, old kernel) leaves ordinary pages, which is fine.
        unsafe {
            libc::madvise(aligned, size, libc::MADV_HUGEPAGE);
        }
        // Address 0 is never mapped without MAP_FIXED (were it, the mapping would leak:
        // a cost, never unsoundness). 2 MiB alignment suits any smaller power of two.
        NonNull::new(aligned.cast::<T>()).map(|p| (p, size))
    }

    /// Whether the slice sits in memory advised for huge pages.
    pub fn is_huge(&self) -> bool {
        matches!(self.storage, Storage::Huge { .. })
    }
}

impl<T> Deref for HugeSlice<T> {
    type Target = [T];

    #[inline(always)]
    fn deref(&self) -> &[T] {
        match &self.storage {
            Storage::Boxed(b) => b,
            // SAFETY: ptr points to len initialised elements (written in with_pages or build) that
            // live until drop and are never written again.
            Storage::Huge { ptr, len, .. } => unsafe {
                std::slice::from_raw_parts(ptr.as_ptr(), *len)
            },
        }
    }
}

impl<T> Drop for HugeSlice<T> {
    fn drop(&mut self) {
        // Only `with_pages` and `build` (T: Copy) fill one, so no element needs dropping.
        if let Storage::Huge { ptr, size, .. } = &self.storage {
            // SAFETY: mapped in `map` with exactly this address and size, unmapped once
            // here; no reference into it outlives self.
            unsafe {
                libc::munmap(ptr.as_ptr().cast(), *size);
            }
        }
    }
}

impl<T: Copy> Clone for HugeSlice<T> {
    fn clone(&self) -> Self {
        HugeSlice::with_pages(self, self.is_huge())
    }
}

impl<T: Copy + std::fmt::Debug> std::fmt::Debug for HugeSlice<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HugeSlice")
            .field("len", &self.len())
            .field("huge", &self.is_huge())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_large_slices_keep_their_contents() {
        let small: Vec<u32> = (0..1000).collect();
        let s = HugeSlice::with_pages(&small, true);
        assert!(!s.is_huge());
        assert_eq!(&*s, &small[..]);
        let large: Vec<(u128, u32)> = (0..200_000u32).map(|i| (u128::from(i) << 64, i)).collect();
        assert!(!HugeSlice::with_pages(&large, false).is_huge());
        let l = HugeSlice::with_pages(&large, true);
        assert!(l.is_huge());
        assert_eq!(l.as_ptr() as usize % HUGE, 0);
        assert_eq!(&*l, &large[..]);
        // Where the kernel offers THP, the table really is on huge pages.
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .unwrap_or_default();
        if thp.contains("[always]") || thp.contains("[madvise]") {
            let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
            let start = format!("{:x}-", l.as_ptr() as usize);
            let mapping = smaps
                .split_inclusive("VmFlags")
                .find(|m| {
                    m.lines().any(|line| {
                        line.split('-').next().is_some_and(|a| {
                            usize::from_str_radix(a, 16).is_ok_and(|lo| {
                                let hi = line
                                    .split(['-', ' '])
                                    .nth(1)
                                    .and_then(|h| usize::from_str_radix(h, 16).ok())
                                    .unwrap_or(0);
                                (lo..hi).contains(&(l.as_ptr() as usize))
                            })
                        })
                    })
                })
                .unwrap_or_else(|| panic!("no mapping for {start}"));
            let huge_kb: usize = mapping
                .lines()
                .find(|x| x.starts_with("AnonHugePages:"))
                .and_then(|x| x.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            println!("huge pages under the table: {huge_kb} kB");
            assert!(
                huge_kb >= 2048,
                "THP is offered ({thp:?}) but the table is not on it:\n{mapping}"
            );
        } else {
            crate::testkit::skipped(format!(
                "transparent huge pages are off here ({thp:?}); the huge-page check did not run"
            ));
        }
        let c = l.clone();
        drop(l);
        assert_eq!(&*c, &large[..]);
        assert_eq!(HugeSlice::<u8>::from_slice(&[]).len(), 0);
    }
}
