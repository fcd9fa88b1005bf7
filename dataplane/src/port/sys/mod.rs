//! Linux system interfaces for live ports: an AF_PACKET socket with a TPACKET_V3
//! memory-mapped receive ring, batched transmission with `sendmmsg`, PACKET_FANOUT, and
//! promiscuous mode; also the CPU intrinsics the lookup tables use (cache-line prefetch
//! and demotion hints, and `lanes_above`, a 16-lane SIMD compare), the time-stamp counter
//! the workers time bursts with ([`tsc`]), and the `flock(2)` the
//! control plane holds a state file with (`try_lock_exclusive`). This is the only
//! module of the data plane with `unsafe` code; every block says why it is sound.
//!
//! Invariants:
//! - The ring mapping lives exactly as long as the socket ([`PacketSocket`] owns both and
//!   unmaps before closing).
//! - A ring block is read only while its status word says it belongs to user space, and is
//!   handed back (status = kernel) only after every frame in it has been copied out.
//! - Nothing here allocates per frame; `send_batch` uses caller-provided scratch vectors.

#![allow(unsafe_code)]

mod huge;
pub use huge::HugeSlice;

/// Bit `i` (0..16) set when 16-bit lane `i` of `lanes` (little-endian, signed) is above
/// `key`: sixteen compares in two SSE2 instructions on x86_64, a loop elsewhere.
#[inline(always)]
pub fn lanes_above(lanes: &[u8; 32], key: i16) -> u32 {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    // SAFETY: SSE2 is enabled (the cfg), and both unaligned 16-byte loads lie inside
    // `lanes` (offsets 0 and 16 of 32 bytes).
    unsafe {
        use std::arch::x86_64::{
            _mm_cmpgt_epi16, _mm_loadu_si128, _mm_movemask_epi8, _mm_packs_epi16, _mm_set1_epi16,
        };
        let p = lanes.as_ptr().cast::<std::arch::x86_64::__m128i>();
        let k = _mm_set1_epi16(key);
        let lo = _mm_cmpgt_epi16(_mm_loadu_si128(p), k);
        let hi = _mm_cmpgt_epi16(_mm_loadu_si128(p.add(1)), k);
        // Saturating packs keep each lane's all-ones or zero as one byte.
        _mm_movemask_epi8(_mm_packs_epi16(lo, hi)) as u32
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    lanes_above_scalar(lanes, key)
}

/// [`lanes_above`] one lane at a time: the fallback without SSE2, and its test's reference.
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
fn lanes_above_scalar(lanes: &[u8; 32], key: i16) -> u32 {
    let mut m = 0u32;
    for (i, l) in lanes.chunks_exact(2).enumerate() {
        m |= u32::from(i16::from_le_bytes([l[0], l[1]]) > key) << i;
    }
    m
}

/// The CPU's time-stamp counter, read without ordering (`rdtsc`): unlike the `rdtscp` or
/// `lfence; rdtsc` of `clock_gettime`, it does not wait for the instructions before it to
/// complete. `None` off x86_64. Ticks are comparable only on a CPU with
/// [`tsc_invariant`].
#[inline(always)]
pub fn tsc() -> Option<u64> {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: RDTSC only reads the counter; it is in every x86_64 CPU, and Linux leaves it
    // enabled in user mode (CR4.TSD clear) unless a process asks otherwise with
    // prctl(PR_SET_TSC), which op25b never does.
    return Some(unsafe { std::arch::x86_64::_rdtsc() });
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// Whether the time-stamp counter ticks at one constant rate whatever the core's
/// frequency or sleep state (CPUID 0x8000_0007, EDX bit 8, "invariant TSC"; Linux's
/// `constant_tsc` and `nonstop_tsc`).
pub fn tsc_invariant() -> bool {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: CPUID is in every x86_64 CPU and only reads identification registers; the
    // leaf is asked for only if the highest extended leaf reaches it. (`__cpuid` is a
    // safe function in recent Rust, an unsafe one in older releases down to our
    // rust-version, 1.88.)
    #[allow(unused_unsafe)]
    unsafe {
        use std::arch::x86_64::__cpuid;
        __cpuid(0x8000_0000).eax >= 0x8000_0007 && __cpuid(0x8000_0007).edx & (1 << 8) != 0
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Runs `f` with the process's file-mode creation mask set to `mask`, then restores the
/// previous mask. For creating a file that must never exist with looser permissions, even
/// for a moment (a control socket: `bind` then `chmod` leaves a window). The mask is
/// process-wide: call it while no other thread creates files (at start).
pub fn with_umask<T>(mask: u32, f: impl FnOnce() -> T) -> T {
    // SAFETY: umask only swaps the process's creation mask (it cannot fail), and the
    // previous one is put back below.
    let old = unsafe { libc::umask(mask as libc::mode_t) };
    let out = f();
    // SAFETY: as above.
    unsafe {
        libc::umask(old);
    }
    out
}

/// [`prefetch`] for every cache line `r` spans (a struct larger than one line).
#[inline]
pub fn prefetch_all<T>(r: &T) {
    each_line(r, prefetch_at);
}

/// Calls `hint` with the address of every 64-byte step through `r`, so every cache line
/// `r` spans gets one call.
#[inline(always)]
fn each_line<T>(r: &T, hint: fn(*const u8)) {
    let start = (r as *const T).cast::<u8>();
    for off in (0..std::mem::size_of::<T>()).step_by(64) {
        hint(start.wrapping_add(off));
    }
}

/// Asks the CPU to bring the cache line holding `r` into all cache levels; a hint only.
#[inline(always)]
pub fn prefetch<T>(r: &T) {
    prefetch_at((r as *const T).cast::<u8>());
}

/// Pushes the cache line holding `r` out of this core's private caches into the shared
/// cache, so that another core's next read of it is a shared-cache hit instead of a snoop
/// of this core (`cldemote` on x86_64; a hint only, and a NOP on processors without it and
/// on other architectures). For data one core prepares and another then reads: a
/// freshly built policy, demoted by the control thread before it is published.
#[inline(always)]
pub fn demote<T>(r: &T) {
    demote_at((r as *const T).cast::<u8>());
}

/// [`demote`] for every cache line `r` spans.
pub fn demote_all<T>(r: &T) {
    each_line(r, demote_at);
}

#[inline(always)]
fn demote_at(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: CLDEMOTE (NP 0F 1C /0) only moves a line between cache levels: it does not
    // read or write memory architecturally, cannot fault on any address, and executes as
    // a NOP on processors that lack it (the opcode is in the reserved-NOP hint space).
    unsafe {
        std::arch::asm!(
            "cldemote byte ptr [{0}]",
            in(reg) p,
            options(nostack, preserves_flags, readonly)
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// A prefetch hint for the line holding `p`.
#[inline(always)]
fn prefetch_at(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch does not access memory architecturally: it cannot fault or change
    // any value, whatever the address (callers pass addresses inside live objects).
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{fence, AtomicU32, Ordering};

// From <linux/if_packet.h> and <linux/if_ether.h> (checked against Debian 12's headers).
const SOL_PACKET: libc::c_int = 263;
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_RX_RING: libc::c_int = 5;
const PACKET_VERSION: libc::c_int = 10;
const PACKET_FANOUT: libc::c_int = 18;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_MR_PROMISC: libc::c_ushort = 1;
const PACKET_FANOUT_HASH: u32 = 0;
const TPACKET_V2: libc::c_int = 1;
const TPACKET_V3: libc::c_int = 2;
/// TPACKET_V2 slot size for an interface: its MTU plus Ethernet, two VLAN tags and the
/// 32-byte slot header, rounded up to the 16-byte ring alignment; 2048 at least.
fn v2_slot(ifname: &str) -> u32 {
    let mtu = mtu_of(ifname).unwrap_or(9000);
    ((mtu + 14 + 8 + 32 + 15) & !15).max(2048)
}
const ETH_P_ALL: u16 = 0x0003;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;

#[repr(C)]
struct TpacketReq3 {
    tp_block_size: u32,
    tp_block_nr: u32,
    tp_frame_size: u32,
    tp_frame_nr: u32,
    tp_retire_blk_tov: u32,
    tp_sizeof_priv: u32,
    tp_feature_req_word: u32,
}

#[repr(C)]
struct TpacketReq {
    tp_block_size: u32,
    tp_block_nr: u32,
    tp_frame_size: u32,
    tp_frame_nr: u32,
}

#[repr(C)]
struct PacketMreq {
    mr_ifindex: libc::c_int,
    mr_type: libc::c_ushort,
    mr_alen: libc::c_ushort,
    mr_address: [u8; 8],
}

/// How to open a packet socket.
#[derive(Clone, Debug)]
pub struct SocketOptions {
    /// Bytes per ring block (a power of two, multiple of the page size).
    pub block_size: u32,
    /// Blocks in the ring.
    pub block_count: u32,
    /// A block is handed to user space after this many milliseconds even if not full.
    pub block_timeout_ms: u32,
    /// Join this fanout group (hash by flow, defragmenting), so several sockets share the
    /// interface's traffic the way RSS queues share a NIC's.
    pub fanout_group: Option<u16>,
    /// Put the interface in promiscuous mode for the socket's lifetime.
    pub promiscuous: bool,
    /// Use a TPACKET_V2 ring (one slot per frame, handed over as soon as it is written:
    /// lowest latency) instead of TPACKET_V3 (frames packed in blocks handed over when
    /// full or when the block timer, counted in kernel jiffies, fires: best throughput).
    pub per_frame: bool,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            block_size: 1 << 20,
            block_count: 16,
            block_timeout_ms: 2,
            fanout_group: None,
            promiscuous: true,
            per_frame: false,
        }
    }
}

/// A frame in a ring block: its bytes and the VLAN tag the kernel took off, if any.
#[derive(Clone, Copy, Debug)]
pub struct RingFrame<'a> {
    /// The frame as captured (without a stripped VLAN tag).
    pub data: &'a [u8],
    /// (TPID, TCI) of a VLAN tag the kernel removed and must be put back.
    pub vlan: Option<(u16, u16)>,
}

/// An AF_PACKET socket bound to one interface, with a TPACKET_V3 receive ring.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ring: *mut u8,
    ring_len: usize,
    block_size: usize,
    block_count: usize,
    block: usize,
    /// Next frame to read in the current block: (index, byte offset).
    cursor: Option<(u32, usize)>,
    /// TPACKET_V2: every "block" is one frame slot whose status word comes first.
    per_frame: bool,
    /// Bytes per kernel ring block (TPACKET_V2 slots are laid out within these).
    ring_block: usize,
    ifindex: libc::c_int,
}

// SAFETY: the ring pointer is owned by this socket alone (never shared or aliased), and the
// kernel's side of the ring is synchronised through the block status words; moving the
// socket to another thread moves that sole ownership with it.
unsafe impl Send for PacketSocket {}

fn last_error(what: &str, ifname: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{ifname}: {what}: {e}"))
}

fn setsockopt<T>(fd: libc::c_int, level: libc::c_int, name: libc::c_int, value: &T) -> libc::c_int {
    // SAFETY: `value` points to a live, initialised T of the size passed; the kernel only
    // reads it.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    }
}

impl PacketSocket {
    /// Opens a socket on interface `ifname` with a receive ring.
    pub fn open(ifname: &str, opts: &SocketOptions) -> io::Result<PacketSocket> {
        let name = CString::new(ifname).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "interface name contains NUL")
        })?;
        // SAFETY: `name` is a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) } as libc::c_int;
        if ifindex == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{ifname}: no such interface"),
            ));
        }
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_ALL.to_be()),
            )
        };
        if raw < 0 {
            let e = io::Error::last_os_error();
            let p = super::privilege::Privileges::current();
            let (kind, hint) = match e.raw_os_error() {
                Some(libc::EPERM | libc::EACCES) => (
                    io::ErrorKind::PermissionDenied,
                    super::privilege::permission_hint(p, &[super::privilege::CAP_NET_RAW], ""),
                ),
                // Refused by a seccomp filter (or a kernel without CONFIG_PACKET): no
                // retry will change that.
                Some(libc::EAFNOSUPPORT) => (
                    io::ErrorKind::Unsupported,
                    super::privilege::family_hint(p, "AF_PACKET", "CONFIG_PACKET", ""),
                ),
                _ => (e.kind(), String::new()),
            };
            return Err(io::Error::new(
                kind,
                format!("{ifname}: cannot open an AF_PACKET socket: {e}{hint}"),
            ));
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let f = fd.as_raw_fd();
        let version = if opts.per_frame {
            TPACKET_V2
        } else {
            TPACKET_V3
        };
        if setsockopt(f, SOL_PACKET, PACKET_VERSION, &version) < 0 {
            return Err(last_error("this TPACKET version is refused", ifname));
        }
        let one: libc::c_int = 1;
        // Frames we send must not come back to our own receive rings.
        if setsockopt(f, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one) < 0 {
            return Err(last_error("PACKET_IGNORE_OUTGOING refused", ifname));
        }
        // Sending straight to the driver skips the qdisc layer; best effort.
        let _ = setsockopt(f, SOL_PACKET, PACKET_QDISC_BYPASS, &one);
        let (slot_size, slot_count) = if opts.per_frame {
            let slot = v2_slot(ifname);
            let v2 = TpacketReq {
                tp_block_size: opts.block_size,
                tp_block_nr: opts.block_count,
                tp_frame_size: slot,
                tp_frame_nr: opts.block_size / slot * opts.block_count,
            };
            if setsockopt(f, SOL_PACKET, PACKET_RX_RING, &v2) < 0 {
                return Err(last_error("cannot set up the receive ring", ifname));
            }
            (slot as usize, v2.tp_frame_nr as usize)
        } else {
            let v3 = TpacketReq3 {
                tp_block_size: opts.block_size,
                tp_block_nr: opts.block_count,
                tp_frame_size: 2048,
                tp_frame_nr: opts.block_size / 2048 * opts.block_count,
                tp_retire_blk_tov: opts.block_timeout_ms,
                tp_sizeof_priv: 0,
                tp_feature_req_word: 0,
            };
            if setsockopt(f, SOL_PACKET, PACKET_RX_RING, &v3) < 0 {
                return Err(last_error("cannot set up the receive ring", ifname));
            }
            (opts.block_size as usize, opts.block_count as usize)
        };
        let ring_len = opts.block_size as usize * opts.block_count as usize;
        // SAFETY: mapping the ring the kernel just allocated for this socket; the result is
        // checked, and the mapping is released in Drop before the socket closes.
        let ring = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f,
                0,
            )
        };
        if ring == libc::MAP_FAILED {
            return Err(last_error("cannot map the receive ring", ifname));
        }
        let sock = PacketSocket {
            fd,
            ring: ring.cast(),
            ring_len,
            block_size: slot_size,
            block_count: slot_count,
            block: 0,
            cursor: None,
            per_frame: opts.per_frame,
            ring_block: opts.block_size as usize,
            ifindex,
        };
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ETH_P_ALL.to_be();
        addr.sll_ifindex = ifindex;
        // SAFETY: `addr` is a valid sockaddr_ll of the size passed.
        let r = unsafe {
            libc::bind(
                f,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(last_error("cannot bind", ifname));
        }
        if opts.promiscuous {
            let m = PacketMreq {
                mr_ifindex: ifindex,
                mr_type: PACKET_MR_PROMISC,
                mr_alen: 0,
                mr_address: [0; 8],
            };
            if setsockopt(f, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &m) < 0 {
                return Err(last_error("cannot enable promiscuous mode", ifname));
            }
        }
        if let Some(group) = opts.fanout_group {
            // No PACKET_FANOUT_FLAG_DEFRAG: with it the kernel reassembles IPv4 fragments
            // before the group sees them, so a bridge would get one frame larger than the
            // link (refused on send) instead of the fragments, and the RFC 1858 offset-1
            // fragment would never be judged. The fanout hash of a fragment is taken from
            // its addresses only, so every fragment of a datagram reaches the same worker.
            let arg: u32 = u32::from(group) | (PACKET_FANOUT_HASH << 16);
            if setsockopt(f, SOL_PACKET, PACKET_FANOUT, &arg) < 0 {
                return Err(last_error("cannot join the fanout group", ifname));
            }
        }
        Ok(sock)
    }

    /// The interface index.
    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }

    fn status_word(&self, block: usize) -> &AtomicU32 {
        // SAFETY: the block descriptor starts every block; its status word is at byte 8
        // (struct tpacket_block_desc: version, offset_to_priv, then tpacket_hdr_v1 whose
        // first field is block_status), 4-byte aligned inside the page-aligned mapping,
        // and lives as long as `self`. The kernel writes it concurrently, hence atomic.
        // (TPACKET_V2: tp_status is the first word of each frame slot, also 4-byte aligned
        // since slots are 16-byte multiples.)
        let at = self.offset_of(block) + if self.per_frame { 0 } else { 8 };
        unsafe { &*(self.ring.add(at) as *const AtomicU32) }
    }

    fn block_bytes(&self, block: usize) -> &[u8] {
        // SAFETY: the block lies inside the mapping, and while its status says "user" the
        // kernel does not write it (the caller checked that with Acquire ordering).
        unsafe { std::slice::from_raw_parts(self.ring.add(self.offset_of(block)), self.block_size) }
    }

    /// Byte offset of block (TPACKET_V3) or frame slot (TPACKET_V2) `i` in the mapping: V2
    /// slots never straddle a ring block, so a block's tail that fits no whole slot is
    /// skipped.
    fn offset_of(&self, i: usize) -> usize {
        if self.per_frame {
            let per_block = self.ring_block / self.block_size;
            (i / per_block) * self.ring_block + (i % per_block) * self.block_size
        } else {
            i * self.block_size
        }
    }

    /// Calls `f` for up to `max` received frames, in arrival order, and returns how many.
    /// Frames are handed out of the current ring block; a block is returned to the kernel
    /// as soon as its last frame has been handed out.
    pub fn recv(&mut self, max: usize, mut f: impl FnMut(RingFrame<'_>)) -> usize {
        if self.per_frame {
            return self.recv_per_frame(max, f);
        }
        let mut n = 0;
        while n < max {
            let (index, offset) = match self.cursor {
                Some(c) => c,
                None => {
                    if self.status_word(self.block).load(Ordering::Acquire) & TP_STATUS_USER == 0 {
                        return n;
                    }
                    let b = self.block_bytes(self.block);
                    let first = u32::from_ne_bytes([b[16], b[17], b[18], b[19]]) as usize;
                    (0, first)
                }
            };
            let b = self.block_bytes(self.block);
            let num = u32::from_ne_bytes([b[12], b[13], b[14], b[15]]);
            if index >= num {
                self.release();
                continue;
            }
            let h = &b[offset..offset + 40];
            let rd32 = |o: usize| u32::from_ne_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
            let next = rd32(0) as usize;
            let snaplen = rd32(12) as usize;
            let status = rd32(20);
            let mac = usize::from(u16::from_ne_bytes([h[24], h[25]]));
            let tci = rd32(32) as u16;
            let tpid = u16::from_ne_bytes([h[36], h[37]]);
            let vlan = if status & TP_STATUS_VLAN_VALID != 0 {
                Some((
                    if status & TP_STATUS_VLAN_TPID_VALID != 0 {
                        tpid
                    } else {
                        0x8100
                    },
                    tci,
                ))
            } else {
                None
            };
            let start = offset + mac;
            let data = &b[start.min(b.len())..(start + snaplen).min(b.len())];
            f(RingFrame { data, vlan });
            n += 1;
            if index + 1 >= num {
                self.release();
            } else {
                self.cursor = Some((index + 1, offset + next));
            }
        }
        n
    }

    /// TPACKET_V2: one frame per slot (struct tpacket2_hdr: tp_status, tp_len, tp_snaplen,
    /// tp_mac, tp_net, tp_sec, tp_nsec, tp_vlan_tci, tp_vlan_tpid).
    fn recv_per_frame(&mut self, max: usize, mut f: impl FnMut(RingFrame<'_>)) -> usize {
        let mut n = 0;
        while n < max {
            let status = self.status_word(self.block).load(Ordering::Acquire);
            if status & TP_STATUS_USER == 0 {
                break;
            }
            let b = self.block_bytes(self.block);
            let snaplen = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]) as usize;
            let mac = usize::from(u16::from_ne_bytes([b[12], b[13]]));
            let tci = u16::from_ne_bytes([b[24], b[25]]);
            let tpid = u16::from_ne_bytes([b[26], b[27]]);
            let vlan = (status & TP_STATUS_VLAN_VALID != 0).then_some((
                if status & TP_STATUS_VLAN_TPID_VALID != 0 {
                    tpid
                } else {
                    0x8100
                },
                tci,
            ));
            let data = &b[mac.min(b.len())..(mac + snaplen).min(b.len())];
            f(RingFrame { data, vlan });
            n += 1;
            self.release();
        }
        n
    }

    fn release(&mut self) {
        fence(Ordering::Release);
        self.status_word(self.block)
            .store(TP_STATUS_KERNEL, Ordering::Release);
        self.block = (self.block + 1) % self.block_count;
        self.cursor = None;
    }

    /// Whether a frame is ready to be read without waiting.
    fn ready(&self) -> bool {
        self.cursor.is_some()
            || self.status_word(self.block).load(Ordering::Acquire) & TP_STATUS_USER != 0
    }

    /// Waits up to `timeout_ms` for the ring to have a frame.
    pub fn wait(&self, timeout_ms: i32) {
        let _ = wait_any(&[self], timeout_ms);
    }

    /// Takes the socket's pending error (`SO_ERROR`), which also clears it: the kernel
    /// sets ENETDOWN when the interface goes down (or away), and until it is taken every
    /// poll(2) returns at once with POLLERR.
    pub fn take_error(&self) -> Option<io::Error> {
        let mut err: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `err`, a c_int we own.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut err as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if r != 0 {
            return Some(io::Error::last_os_error());
        }
        (err != 0).then(|| io::Error::from_raw_os_error(err))
    }

    /// Sends every frame in `frames` out of this socket's interface with as few `sendmmsg`
    /// calls as the kernel allows, using `scratch` for the message headers. Returns the
    /// number of frames the kernel refused. `mtu` is the interface's MTU as last read
    /// (`None`: unknown), for [`SendScratch::oversized_tagged`].
    pub fn send_batch(
        &self,
        frames: &[&[u8]],
        scratch: &mut SendScratch,
        mtu: Option<u32>,
    ) -> usize {
        scratch.oversized_tagged = 0;
        if frames.is_empty() {
            return 0;
        }
        let SendScratch {
            iov,
            msgs,
            oversized_tagged,
        } = scratch;
        iov.clear();
        msgs.clear();
        for f in frames {
            iov.push(libc::iovec {
                iov_base: f.as_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            });
        }
        for v in iov.iter_mut() {
            // SAFETY: msghdr is plain data; zeroed is a valid empty header (no name, no
            // control data); only the iovec fields are set.
            let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
            h.msg_iov = v;
            h.msg_iovlen = 1;
            msgs.push(libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            });
        }
        let (mut sent, mut refused, mut retries) = (0, 0, 0);
        while sent < msgs.len() {
            // SAFETY: `msgs[sent..]` are valid headers whose iovecs point into `frames`,
            // which outlive this call; the kernel only reads the frame bytes.
            let r = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    msgs.as_mut_ptr().add(sent),
                    (msgs.len() - sent) as libc::c_uint,
                    0,
                )
            };
            if r > 0 {
                sent += r as usize;
                retries = 0;
                continue;
            }
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => {}
                // The device queue is full: give it a moment, a bounded number of times.
                Some(libc::EAGAIN | libc::ENOBUFS) if retries < 1000 => {
                    retries += 1;
                    std::thread::yield_now();
                }
                // A frame above the MTU, a link that went down, a queue that stays full:
                // that frame is refused, the rest still go.
                errno => {
                    if errno == Some(libc::EMSGSIZE) && refused_for_its_tags(frames[sent], mtu) {
                        *oversized_tagged += 1;
                    }
                    sent += 1;
                    refused += 1;
                    retries = 0;
                }
            }
        }
        iov.clear();
        msgs.clear();
        refused
    }
}

/// Creates `path` (0600, never over an existing file or through a symlink), writes `bytes`
/// and flushes them to disk; a file it created but could not fill is removed again.
pub fn write_new(path: &std::path::Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    if written.is_err() {
        let _ = std::fs::remove_file(path);
    }
    written
}

/// Takes an exclusive `flock(2)` lock on `file` without waiting: `Ok(true)` once taken,
/// `Ok(false)` when another open file description holds a lock on the same file (another
/// process, or another `open` of it in this one). The lock is released when the last
/// descriptor of this open file description closes, however the process ends, so a lock
/// never outlives its holder.
pub fn try_lock_exclusive(file: &std::fs::File) -> io::Result<bool> {
    loop {
        // SAFETY: flock only reads the descriptor number, which `file` keeps open for the
        // duration of the call.
        let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(e),
        }
    }
}

/// The index interface `name` has now (`None`: there is no such interface).
pub fn ifindex_of(name: &str) -> Option<i32> {
    let name = CString::new(name).ok()?;
    // SAFETY: `name` is a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(name.as_ptr()) } as libc::c_int;
    (i != 0).then_some(i)
}

/// The name of interface `index` now (`None`: there is no such interface).
pub fn ifname_of(index: i32) -> Option<String> {
    let index = u32::try_from(index).ok().filter(|&i| i != 0)?;
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has the IF_NAMESIZE bytes if_indextoname may write, NUL included.
    let r = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if r.is_null() {
        return None;
    }
    // SAFETY: on success `buf` holds a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

/// Whether interface `name` is up with a carrier (`IFF_UP` and `IFF_RUNNING`), asked with
/// `SIOCGIFFLAGS` on a throwaway datagram socket (three syscalls: for a periodic check,
/// never per burst). `None` when it cannot be asked: no such interface, a name too long,
/// or no socket.
pub fn link_running(name: &str) -> Option<bool> {
    let req = interface_ioctl(name, libc::SIOCGIFFLAGS)?;
    // SAFETY: SIOCGIFFLAGS succeeded, so the union holds the flags.
    let flags = libc::c_int::from(unsafe { req.ifr_ifru.ifru_flags });
    Some(flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0)
}

/// Whether interface `name` is in promiscuous mode (`IFF_PROMISC`, as set with `ip link
/// set promisc on` or by a program that set the flag). `None` when it cannot be asked.
pub fn promiscuous(name: &str) -> Option<bool> {
    let req = interface_ioctl(name, libc::SIOCGIFFLAGS)?;
    // SAFETY: SIOCGIFFLAGS succeeded, so the union holds the flags.
    let flags = libc::c_int::from(unsafe { req.ifr_ifru.ifru_flags });
    Some(flags & libc::IFF_PROMISC != 0)
}

/// The MTU of interface `name` (`SIOCGIFMTU`: the process's own network namespace, which
/// `/sys/class/net` need not show). `None` when it cannot be asked.
pub fn mtu_of(name: &str) -> Option<u32> {
    let req = interface_ioctl(name, libc::SIOCGIFMTU)?;
    // SAFETY: SIOCGIFMTU succeeded, so the union holds the MTU.
    u32::try_from(unsafe { req.ifr_ifru.ifru_mtu }).ok()
}

/// An interface-information ioctl (`SIOCGIF…`, which fills one field of an `ifreq`) on
/// interface `name`, asked on a throwaway datagram socket; `None` when it fails (no such
/// interface, a name too long, no socket).
fn interface_ioctl(name: &str, request: libc::c_ulong) -> Option<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return None;
    }
    // SAFETY: plain socket(2) with constant arguments; the descriptor is owned at once
    // below, so it is closed on every path.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is a descriptor socket(2) just returned, owned by nothing else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `ifreq` is plain data (a name array and a union of integers and a pointer
    // nobody follows here), for which all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *d = *s as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq whose name is NUL-terminated (checked shorter than
    // IFNAMSIZ, rest zero); the SIOCGIF requests used here write one integer field of it,
    // while it lives.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), request as _, &mut req) };
    (r >= 0).then_some(req)
}

/// Waits up to `timeout_ms` until any of `socks` has a frame, with one `poll` over all of
/// them (waiting on them one after the other would let a frame on one side sit out the
/// other side's whole timeout). Returns a bit per socket (bit i: `socks[i]`) that reported
/// an error or hang-up: take its error ([`PacketSocket::take_error`]), or every later
/// poll returns at once.
pub fn wait_any(socks: &[&PacketSocket], timeout_ms: i32) -> u32 {
    if socks.iter().any(|s| s.ready()) {
        return 0;
    }
    let mut fds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 8];
    let n = socks.len().min(fds.len());
    for (p, s) in fds.iter_mut().zip(socks) {
        *p = libc::pollfd {
            fd: s.fd.as_raw_fd(),
            events: libc::POLLIN | libc::POLLERR,
            revents: 0,
        };
    }
    // SAFETY: `fds[..n]` are valid pollfd structures owned by this frame.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), n as libc::nfds_t, timeout_ms) };
    if r <= 0 {
        return 0;
    }
    fds[..n]
        .iter()
        .enumerate()
        .filter(|(_, p)| p.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0)
        .fold(0, |m, (i, _)| m | 1 << i)
}

/// Reusable message headers for [`PacketSocket::send_batch`], and what the last call
/// could not send for a reason worth telling apart.
#[derive(Debug, Default)]
pub struct SendScratch {
    iov: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    /// Frames of the last `send_batch` refused with EMSGSIZE for their tags
    /// ([`refused_for_its_tags`]).
    oversized_tagged: usize,
}

impl SendScratch {
    /// How many frames of the last [`PacketSocket::send_batch`] the kernel refused as
    /// longer than the interface allows although they carry tags it does not allow for:
    /// the packet socket send path (`packet_snd`) gives a frame 4 bytes beyond MTU + 14
    /// only when its outer tag is 802.1Q (`packet_extra_vlan_len_allowed`), so a
    /// full-size 802.1ad or 0x9100 frame, or any full-size frame with two tags, is refused
    /// although a NIC or a bridge would carry it.
    /// A frame longer than the egress MTU allows even for its tags is not counted here
    /// ([`refused_for_its_tags`]).
    pub fn oversized_tagged(&self) -> usize {
        self.oversized_tagged
    }
}

/// Whether `frame`, refused by the packet socket as too long (EMSGSIZE) on an interface of
/// MTU `mtu`, was refused only for its tags: it carries more VLAN tag than one 802.1Q tag
/// ([`tagged_beyond_one_8021q`]) and is no longer than a wire of that MTU carries with its
/// tags (MTU + 14 + 4 per tag, at most two). A longer frame is simply over the MTU. With
/// the MTU unknown, every such tagged frame counts.
pub fn refused_for_its_tags(frame: &[u8], mtu: Option<u32>) -> bool {
    if !tagged_beyond_one_8021q(frame) {
        return false;
    }
    let inner = frame.get(16..18).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let tags = if matches!(inner, Some(0x8100 | 0x88a8 | 0x9100)) {
        2
    } else {
        1
    };
    mtu.is_none_or(|m| frame.len() <= m as usize + 14 + 4 * tags)
}

/// Whether `frame` carries more VLAN tag than one 802.1Q tag: an outer 802.1ad (0x88a8)
/// or 0x9100 tag, or two tags of any of the three TPIDs.
pub fn tagged_beyond_one_8021q(frame: &[u8]) -> bool {
    let tpid = |at: usize| {
        frame
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    let vlan = |t: Option<u16>| matches!(t, Some(0x8100 | 0x88a8 | 0x9100));
    match tpid(12) {
        Some(0x88a8 | 0x9100) => true,
        Some(0x8100) => vlan(tpid(16)),
        _ => false,
    }
}

// SAFETY: the raw pointers in these vectors exist only during one send_batch call, which
// clears both vectors before returning; between calls they hold nothing, so moving the
// scratch space to another thread cannot carry a dangling pointer.
unsafe impl Send for SendScratch {}

impl Drop for PacketSocket {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping created in open(), exactly once, before the
        // descriptor closes (OwnedFd drops after this).
        unsafe { libc::munmap(self.ring.cast(), self.ring_len) };
    }
}

/// The CPU cores the calling thread may run on (its affinity mask), ascending.
pub fn allowed_cores() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed; 0 means the calling
    // thread.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: `c` is below CPU_SETSIZE, so CPU_ISSET reads inside `set`.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// Restricts the calling thread to `cores` (threads it starts afterwards inherit the
/// mask). An empty list, or a core at or above `CPU_SETSIZE`, is refused.
pub fn restrict_current_thread(cores: &[usize]) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if cores.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no core given"));
    }
    for &core in cores {
        if core >= libc::CPU_SETSIZE as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("core {core} is out of range"),
            ));
        }
        // SAFETY: `core` is below CPU_SETSIZE (checked), so CPU_SET writes inside `set`.
        unsafe { libc::CPU_SET(core, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed; 0 means the calling thread.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Pins the calling thread to one CPU core.
pub fn pin_current_thread(core: usize) -> io::Result<()> {
    restrict_current_thread(&[core])
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_restricted_thread_keeps_to_its_cores_and_hands_them_down() {
        std::thread::spawn(|| {
            let all = super::allowed_cores().expect("sched_getaffinity");
            assert!(!all.is_empty());
            let last = *all.last().expect("one core at least");
            super::restrict_current_thread(&[last]).expect("restrict to an allowed core");
            assert_eq!(super::allowed_cores().expect("read back"), vec![last]);
            // A thread started now inherits the mask.
            let child = std::thread::spawn(super::allowed_cores)
                .join()
                .expect("child thread");
            assert_eq!(child.expect("child's mask"), vec![last]);
            // Nothing, or a core past CPU_SETSIZE, is refused and changes nothing.
            assert!(super::restrict_current_thread(&[]).is_err());
            assert!(super::restrict_current_thread(&[1 << 20]).is_err());
            assert_eq!(super::allowed_cores().expect("unchanged"), vec![last]);
        })
        .join()
        .expect("test thread");
    }

    #[test]
    fn tags_beyond_one_8021q_are_told_apart() {
        let frame = |tpids: &[u16]| {
            let mut f = vec![0u8; 12];
            for t in tpids {
                f.extend_from_slice(&t.to_be_bytes());
                f.extend_from_slice(&[0, 100]);
            }
            f.extend_from_slice(&[0x08, 0x00]);
            f.resize(f.len() + 20, 0);
            f
        };
        // The kernel allows for these: nothing to tell.
        assert!(!super::tagged_beyond_one_8021q(&frame(&[])));
        assert!(!super::tagged_beyond_one_8021q(&frame(&[0x8100])));
        // It does not for these.
        assert!(super::tagged_beyond_one_8021q(&frame(&[0x88a8])));
        assert!(super::tagged_beyond_one_8021q(&frame(&[0x9100])));
        assert!(super::tagged_beyond_one_8021q(&frame(&[0x88a8, 0x8100])));
        assert!(super::tagged_beyond_one_8021q(&frame(&[0x8100, 0x8100])));
        // Too short to say: no.
        assert!(!super::tagged_beyond_one_8021q(&[0u8; 13]));
        assert!(!super::tagged_beyond_one_8021q(&frame(&[0x8100])[..17]));
        // Refused for its tags only up to MTU + 14 + 4 per tag; longer is over the MTU.
        let full = |tpids: &[u16], ip: usize| {
            let mut f = frame(tpids);
            f.resize(f.len() - 20 + ip, 0);
            f
        };
        let ad = full(&[0x88a8], 1500);
        assert_eq!(ad.len(), 1518);
        assert!(super::refused_for_its_tags(&ad, Some(1500)));
        assert!(super::refused_for_its_tags(&ad, None));
        assert!(!super::refused_for_its_tags(
            &full(&[0x88a8], 1501),
            Some(1500)
        ));
        assert!(!super::refused_for_its_tags(&ad, Some(1400)));
        let qinq = full(&[0x88a8, 0x8100], 1500);
        assert!(super::refused_for_its_tags(&qinq, Some(1500)));
        assert!(!super::refused_for_its_tags(
            &full(&[0x88a8, 0x8100], 1501),
            Some(1500)
        ));
        assert!(!super::refused_for_its_tags(
            &full(&[0x8100], 1500),
            Some(1500)
        ));
        assert!(super::refused_for_its_tags(
            &frame(&[0x88a8])[..16],
            Some(1500)
        ));
    }

    #[test]
    fn interface_questions_answer_for_loopback_and_nothing_else() {
        // Every network namespace has a loopback interface, up, with an MTU of its own.
        let lo = super::mtu_of("lo").expect("lo has an MTU");
        assert!(lo >= 1280, "{lo}");
        assert_eq!(super::link_running("lo"), Some(true));
        for name in ["", "no-such-if0", "a-name-longer-than-ifnamsiz", "a\0b"] {
            assert_eq!(super::mtu_of(name), None, "{name:?}");
            assert_eq!(super::link_running(name), None, "{name:?}");
        }
    }

    #[test]
    fn lanes_above_sets_the_bit_of_every_lane_above_the_key() {
        let lanes: [i16; 16] = [
            -32768, -1, 0, 1, 2, 100, 0x3fff, 0x4000, 0x7ffe, 0x7fff, 5, 5, 6, 4, -5, 0,
        ];
        let mut bytes = [0u8; 32];
        for (b, l) in bytes.chunks_exact_mut(2).zip(lanes) {
            b.copy_from_slice(&l.to_le_bytes());
        }
        for key in [-32768i16, -2, -1, 0, 1, 4, 5, 6, 0x3fff, 0x7ffe, 0x7fff] {
            let want = lanes
                .iter()
                .enumerate()
                .fold(0u32, |m, (i, &l)| m | u32::from(l > key) << i);
            assert_eq!(super::lanes_above(&bytes, key), want, "key {key}");
            assert_eq!(
                super::lanes_above_scalar(&bytes, key),
                want,
                "scalar, key {key}"
            );
        }
    }

    #[test]
    fn prefetch_all_covers_any_size() {
        #[repr(C)]
        struct Odd([u8; 1000], u16);
        let big = Box::new(Odd([7; 1000], 3));
        super::prefetch_all(&*big);
        super::prefetch_all(&[0u64; 4096]);
        super::prefetch_all(&());
        super::prefetch_all(&0u8);
        // A hint only: nothing it touched changed.
        assert_eq!((big.0[999], big.1), (7, 3));
    }

    #[test]
    fn demote_leaves_every_value_as_it_was() {
        #[repr(C)]
        struct Odd([u8; 1000], u16);
        let mut big = Box::new(Odd([7; 1000], 3));
        big.0[500] = 9; // a line this core has just written
        super::demote_all(&*big);
        super::demote(&big.1);
        super::demote_all(&[1u64; 4096]);
        super::demote_all(&());
        super::demote(&0u8);
        // Demoted lines read back (from wherever they went) unchanged, and can be written.
        assert_eq!((big.0[499], big.0[500], big.0[999], big.1), (7, 9, 7, 3));
        big.1 = 4;
        assert_eq!(big.1, 4);
    }
}
