//! Raw Linux interfaces of the AF_XDP backend: the `bpf(2)` calls that create the XSKMAP,
//! load the hand-assembled redirect program and attach it with a BPF link, and the XDP
//! socket itself (UMEM registration, the four mapped rings, bind, wake-ups). This module and
//! `port::sys` are the only places of the AF_XDP path with `unsafe` code; every block says
//! why it is sound.
//!
//! Invariants:
//! - Every mapping (UMEM, rings) lives exactly as long as its [`Xsk`], which unmaps it in
//!   `Drop` before the descriptor closes.
//! - A UMEM frame is in exactly one place at a time: the fill ring or RX ring (kernel's), a
//!   burst being judged (ours, between [`Xsk::rx_peek`] and [`Xsk::rx_release`]), the free
//!   list, or the TX/completion rings (kernel's until completed). Frames are only read or
//!   written while they are ours.
//! - Ring indices are free-running `u32`s compared with wrapping arithmetic; producer
//!   stores are `Release` after the descriptors are written, consumer loads are `Acquire`.
//! - The XDP program stays attached exactly as long as its [`XdpLink`] descriptor is open
//!   (a BPF link, not a netlink attachment): dropping it, an error path, or the process
//!   dying detaches it.
//! - With multi-buffer (`XDP_USE_SG`) a packet is a chain of descriptors, all but the last
//!   marked `XDP_PKT_CONTD`; RX peeks and TX sends whole chains only, never part of one.
//! - Nothing here allocates per frame.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

use super::MAX_BURST;

/// Bytes per UMEM frame (one page). A received frame longer than [`RX_FRAME_ROOM`] arrives
/// as several UMEM frames (AF_XDP multi-buffer) when the socket is bound with `XDP_USE_SG`.
pub const FRAME_SIZE: u32 = 4096;
/// Headroom the kernel leaves before received data in each UMEM frame (`XDP_PACKET_HEADROOM`).
const XDP_PACKET_HEADROOM: u32 = 256;
/// Bytes of a received frame one UMEM frame holds (copy mode; zero-copy drivers hold at
/// least this much): a longer frame needs multi-buffer.
pub const RX_FRAME_ROOM: u32 = FRAME_SIZE - XDP_PACKET_HEADROOM;
/// Most UMEM frames one packet may span. Copy mode allows `MAX_SKB_FRAGS + 1`, at least 18
/// on any kernel (af_xdp.rst, "Multi-Buffer Support"); a 9000-byte MTU needs 3.
pub const MAX_FRAGS: u32 = 18;
/// Entries of each ring; also the UMEM frames given to receiving (the fill ring) and to
/// sending (the free list) each.
pub const RING_SIZE: u32 = 2048;

// From <linux/bpf.h>.
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const BPF_PSEUDO_MAP_FD: u8 = 1;
/// `BPF_F_XDP_HAS_FRAGS` (prog_flags): the program copes with multi-buffer frames, which
/// lets drivers run it on frames larger than a page (the "xdp.frags" section of libbpf).
const BPF_F_XDP_HAS_FRAGS: u32 = 1 << 5;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
const XDP_PASS: i32 = 2;
/// `XDP_FLAGS_SKB_MODE` / `XDP_FLAGS_DRV_MODE` from <linux/if_link.h>.
pub const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// Native (driver) XDP.
pub const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
// From <linux/if_packet.h>.
const SOL_PACKET: libc::c_int = 263;
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_MR_PROMISC: libc::c_ushort = 1;

/// One eBPF instruction (struct bpf_insn).
#[repr(C)]
#[derive(Clone, Copy)]
struct BpfInsn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> BpfInsn {
    BpfInsn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

/// The redirect program, hand-assembled (no compiler needed at build time):
///
/// ```text
/// r2 = *(u32 *)(r1 + 16)      ; ctx->rx_queue_index
/// r1 = map_fd ll              ; the XSKMAP (two-slot load of a map reference)
/// r3 = XDP_PASS               ; no socket on this queue: hand the frame to the stack
/// call bpf_redirect_map
/// exit
/// ```
fn redirect_program(map_fd: RawFd) -> [BpfInsn; 6] {
    [
        insn(0x61, 2, 1, 16, 0),                     // BPF_LDX | BPF_MEM | BPF_W
        insn(0x18, 1, BPF_PSEUDO_MAP_FD, 0, map_fd), // BPF_LD | BPF_IMM | BPF_DW
        insn(0, 0, 0, 0, 0),                         // second half of the 64-bit load
        insn(0xb7, 3, 0, 0, XDP_PASS),               // BPF_ALU64 | BPF_MOV | BPF_K
        insn(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),  // BPF_JMP | BPF_CALL
        insn(0x95, 0, 0, 0, 0),                      // BPF_JMP | BPF_EXIT
    ]
}

/// `union bpf_attr`, big enough for every command used here (the kernel accepts a shorter
/// size than its own as long as the rest would be zero; 128 bytes covers these commands).
#[repr(C, align(8))]
struct BpfAttr([u8; 128]);

impl BpfAttr {
    fn new() -> Self {
        BpfAttr([0; 128])
    }
    fn u32_at(&mut self, off: usize, v: u32) -> &mut Self {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64_at(&mut self, off: usize, v: u64) -> &mut Self {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
}

fn bpf(cmd: libc::c_long, attr: &mut BpfAttr) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, writable bpf_attr of the size passed; every pointer stored
    // in it (instructions, license, log buffer, key, value) points to memory the caller
    // keeps alive for the duration of this call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.0.as_mut_ptr(),
            std::mem::size_of::<BpfAttr>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: `fd` is a descriptor the kernel just returned to us and nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

/// An XSKMAP with one entry per queue.
#[derive(Debug)]
pub struct XskMap {
    fd: OwnedFd,
}

impl XskMap {
    /// Creates a map for queues `0..queues`.
    pub fn create(queues: u32) -> io::Result<XskMap> {
        let mut a = BpfAttr::new();
        // struct { map_type, key_size, value_size, max_entries, map_flags }
        a.u32_at(0, BPF_MAP_TYPE_XSKMAP)
            .u32_at(4, 4)
            .u32_at(8, 4)
            .u32_at(12, queues);
        Ok(XskMap {
            fd: owned(bpf(BPF_MAP_CREATE, &mut a)?),
        })
    }

    /// Points entry `queue` at socket `xsk`.
    pub fn insert(&self, queue: u32, xsk: &Xsk) -> io::Result<()> {
        let key = queue;
        let value = xsk.fd.as_raw_fd() as u32;
        let mut a = BpfAttr::new();
        // struct { map_fd, pad, key, value, flags }
        a.u32_at(0, self.fd.as_raw_fd() as u32)
            .u64_at(8, &key as *const u32 as u64)
            .u64_at(16, &value as *const u32 as u64);
        bpf(BPF_MAP_UPDATE_ELEM, &mut a).map(|_| ())
    }
}

/// The loaded redirect program.
#[derive(Debug)]
pub struct XdpProgram {
    fd: OwnedFd,
}

impl XdpProgram {
    /// Loads the redirect program for `map`, marked multi-buffer aware when `frags` is set
    /// (it never reads past the first fragment: it reads only the context). On a verifier
    /// refusal the error carries the verifier's log.
    pub fn load(map: &XskMap, frags: bool) -> io::Result<XdpProgram> {
        let insns = redirect_program(map.fd.as_raw_fd());
        let license = c"Apache-2.0";
        let mut log = vec![0u8; 0];
        for attempt in 0..2 {
            if attempt == 1 {
                log = vec![0u8; 16 * 1024];
            }
            let mut a = BpfAttr::new();
            // struct { prog_type, insn_cnt, insns, license, log_level, log_size, log_buf,
            // kern_version, prog_flags, prog_name[16], ... }
            a.u32_at(0, BPF_PROG_TYPE_XDP)
                .u32_at(4, insns.len() as u32)
                .u64_at(8, insns.as_ptr() as u64)
                .u64_at(16, license.as_ptr() as u64);
            if frags {
                a.u32_at(44, BPF_F_XDP_HAS_FRAGS);
            }
            if attempt == 1 {
                a.u32_at(24, 1)
                    .u32_at(28, log.len() as u32)
                    .u64_at(32, log.as_mut_ptr() as u64);
            }
            a.0[48..48 + 11].copy_from_slice(b"op25b_xsk\0\0");
            match bpf(BPF_PROG_LOAD, &mut a) {
                Ok(fd) => return Ok(XdpProgram { fd: owned(fd) }),
                Err(e) if attempt == 1 || e.raw_os_error() != Some(libc::EACCES) => {
                    let text = String::from_utf8_lossy(&log);
                    let text = text.trim_end_matches('\0').trim();
                    if text.is_empty() {
                        return Err(e);
                    }
                    return Err(io::Error::new(e.kind(), format!("{e}; verifier: {text}")));
                }
                Err(_) => {}
            }
        }
        Err(io::Error::other("unreachable: program load loop"))
    }
}

/// The program attached to an interface through a BPF link; detached when dropped.
#[derive(Debug)]
pub struct XdpLink {
    _fd: OwnedFd,
}

impl XdpLink {
    /// Attaches `prog` to `ifindex` in the mode `flags` names (`XDP_FLAGS_DRV_MODE` or
    /// `XDP_FLAGS_SKB_MODE`).
    pub fn attach(prog: &XdpProgram, ifindex: u32, flags: u32) -> io::Result<XdpLink> {
        let mut a = BpfAttr::new();
        // struct { prog_fd, target_ifindex, attach_type, flags, ... }
        a.u32_at(0, prog.fd.as_raw_fd() as u32)
            .u32_at(4, ifindex)
            .u32_at(8, BPF_XDP)
            .u32_at(12, flags);
        Ok(XdpLink {
            _fd: owned(bpf(BPF_LINK_CREATE, &mut a)?),
        })
    }
}

/// Keeps an interface in promiscuous mode while it lives: a packet socket that receives
/// nothing (protocol 0) holding a PACKET_MR_PROMISC membership, which the kernel drops with
/// the socket (so a crash cannot leave the interface promiscuous).
#[derive(Debug)]
pub struct Promisc {
    _fd: OwnedFd,
}

impl Promisc {
    /// Turns promiscuous mode on for `ifindex`.
    pub fn on(ifindex: u32) -> io::Result<Promisc> {
        // SAFETY: plain socket creation; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = owned(fd.into());
        let m = libc::packet_mreq {
            mr_ifindex: ifindex as libc::c_int,
            mr_type: PACKET_MR_PROMISC,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        setsockopt(fd.as_raw_fd(), SOL_PACKET, PACKET_ADD_MEMBERSHIP, &m)?;
        Ok(Promisc { _fd: fd })
    }
}

// From <linux/ethtool.h>.
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
const ETHTOOL_SFEATURES: u32 = 0x3b;
const ETHTOOL_GCHANNELS: u32 = 0x3c;
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;

/// The receive-side VLAN tag stripping features (802.1Q and 802.1ad), by their ethtool
/// names: with either on, a NIC hands XDP the frame without its tag.
pub const RX_VLAN_FEATURES: [&str; 2] = ["rx-vlan-hw-parse", "rx-vlan-stag-hw-parse"];

/// `struct ifreq` as SIOCETHTOOL reads it: the name and a pointer to the ethtool command.
#[repr(C)]
struct IfreqData {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

/// One SIOCETHTOOL call on `name` with the command buffer `cmd` (u32 words, the command
/// first).
fn ethtool(sock: &OwnedFd, name: &str, cmd: &mut [u32]) -> io::Result<libc::c_int> {
    let mut req = IfreqData {
        name: [0; libc::IFNAMSIZ],
        data: cmd.as_mut_ptr().cast(),
        _pad: [0; 16],
    };
    let n = name.len().min(libc::IFNAMSIZ - 1);
    req.name[..n].copy_from_slice(&name.as_bytes()[..n]);
    // SAFETY: `req` is a valid ifreq naming the interface, whose data pointer points to
    // `cmd`, a writable buffer sized for the command it holds (the callers size it from
    // the string count the kernel reported), alive for the call.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL as _, &mut req) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// An interface's channel (queue) counts as `ethtool -l` shows them (ETHTOOL_GCHANNELS).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Channels {
    /// Most combined (RX and TX) channels the driver allows; 0 when it has separate RX and
    /// TX channels only (veth, some NICs).
    pub max_combined: u32,
    /// Current RX-only channels.
    pub rx: u32,
    /// Current combined channels.
    pub combined: u32,
}

impl Channels {
    /// RX queues: every combined channel has one, and so has every RX-only channel.
    pub fn rx_queues(self) -> u32 {
        self.rx.saturating_add(self.combined)
    }
}

/// The channel counts of `name`, or `None` when its driver does not report them (or the
/// question cannot be asked). Needs no privilege.
pub fn channels(name: &str) -> Option<Channels> {
    // SAFETY: plain socket creation; the result is checked before it is owned.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    let sock = owned(fd.into());
    // struct ethtool_channels { cmd, max_rx, max_tx, max_other, max_combined, rx_count,
    // tx_count, other_count, combined_count }
    let mut cmd = [ETHTOOL_GCHANNELS, 0, 0, 0, 0, 0, 0, 0, 0];
    ethtool(&sock, name, &mut cmd).ok()?;
    Some(Channels {
        max_combined: cmd[4],
        rx: cmd[5],
        combined: cmd[8],
    })
}

/// Which of an interface's ethtool features are available (changeable) and active.
struct Features {
    count: usize,
    names: Vec<u8>,
    /// `ethtool_get_features_block`s: available, requested, active, never_changed.
    blocks: Vec<[u32; 4]>,
}

impl Features {
    fn read(sock: &OwnedFd, name: &str) -> io::Result<Features> {
        // struct ethtool_sset_info { cmd, reserved, u64 sset_mask, u32 data[] }
        let mask = (1u64 << ETH_SS_FEATURES).to_ne_bytes();
        let word = |i: usize| u32::from_ne_bytes([mask[i], mask[i + 1], mask[i + 2], mask[i + 3]]);
        let mut info = [ETHTOOL_GSSET_INFO, 0, word(0), word(4), 0];
        ethtool(sock, name, &mut info)?;
        // The kernel clears the mask bits of string sets it does not have.
        if info[2] | info[3] == 0 {
            return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        }
        let count = info[4] as usize;
        // struct ethtool_gstrings { cmd, string_set, len, u8 data[len * 32] }
        let mut strings = vec![0u32; 3 + count * ETH_GSTRING_LEN / 4];
        strings[..3].copy_from_slice(&[ETHTOOL_GSTRINGS, ETH_SS_FEATURES, count as u32]);
        ethtool(sock, name, &mut strings)?;
        let names = strings[3..].iter().flat_map(|w| w.to_ne_bytes()).collect();
        let words = count.div_ceil(32);
        // struct ethtool_gfeatures { cmd, size, ethtool_get_features_block features[size] }
        let mut get = vec![0u32; 2 + 4 * words];
        get[..2].copy_from_slice(&[ETHTOOL_GFEATURES, words as u32]);
        ethtool(sock, name, &mut get)?;
        let blocks = get[2..]
            .chunks_exact(4)
            .map(|b| [b[0], b[1], b[2], b[3]])
            .collect();
        Ok(Features {
            count,
            names,
            blocks,
        })
    }

    /// The bit of the feature called `feature`, if the interface has it.
    fn index(&self, feature: &str) -> Option<usize> {
        (0..self.count).find(|&i| {
            let raw = &self.names[i * ETH_GSTRING_LEN..(i + 1) * ETH_GSTRING_LEN];
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            &raw[..end] == feature.as_bytes()
        })
    }

    fn block(&self, bit: usize) -> ([u32; 4], u32) {
        (
            self.blocks.get(bit / 32).copied().unwrap_or_default(),
            1 << (bit % 32),
        )
    }

    fn active(&self, bit: usize) -> bool {
        let (b, m) = self.block(bit);
        b[2] & m != 0
    }

    fn changeable(&self, bit: usize) -> bool {
        let (b, m) = self.block(bit);
        b[0] & m != 0 && b[3] & m == 0
    }
}

/// Requests feature `bit` of `name` on or off.
fn set_feature(sock: &OwnedFd, name: &str, words: usize, bit: usize, on: bool) -> io::Result<()> {
    // struct ethtool_sfeatures { cmd, size, ethtool_set_features_block { valid, requested }[size] }
    let mut set = vec![0u32; 2 + 2 * words];
    set[..2].copy_from_slice(&[ETHTOOL_SFEATURES, words as u32]);
    let (w, m) = (bit / 32, 1u32 << (bit % 32));
    if let Some(block) = set.get_mut(2 + 2 * w..4 + 2 * w) {
        block[0] = m;
        block[1] = if on { m } else { 0 };
    }
    ethtool(sock, name, &mut set).map(|_| ())
}

/// Why receive VLAN tag stripping could not be turned off.
#[derive(Debug)]
pub enum VlanOffloadError {
    /// Reading or changing the features failed.
    Ethtool(&'static str, io::Error),
    /// The feature is on and the driver does not let it be turned off.
    Fixed(&'static str),
    /// It was asked to go off and is still on.
    Stuck(&'static str),
}

/// Keeps an interface's receive VLAN tag stripping ([`RX_VLAN_FEATURES`]) off while it
/// lives, so frames reach XDP with their tags; turns back on, when dropped, what it turned
/// off.
///
/// A process killed outright (kill -9, a crash) cannot turn them back on. So, given a
/// ledger directory (owned by this process's user, writable by it alone), it first writes
/// there which features it is about to turn off (one file per interface, see `Ledger`),
/// and removes the file once they are back on.
/// The next one on that interface finds the file, takes those features, still off, as
/// its own to turn back on, and says so ([`RxVlanOff::inherited`]). Without a ledger, or
/// if the file cannot be written, a crash leaves them off (`ethtool -K IFACE rxvlan on`
/// restores).
#[derive(Debug)]
pub struct RxVlanOff {
    sock: OwnedFd,
    name: String,
    words: usize,
    /// Feature bits to turn back on when dropped, with their names.
    turned_off: Vec<(usize, &'static str)>,
    /// Of those, the ones an earlier process left off (found in the ledger).
    inherited: Vec<&'static str>,
    /// The ledger file that names `turned_off` (removed when they are back on).
    ledger: Option<Ledger>,
}

/// The ledger file of one interface (see [`RxVlanOff`]): `dir/rx-vlan-off.COOKIE.INDEX`,
/// named after the network namespace's cookie (`SO_NETNS_COOKIE`, never reused while the
/// host is up, unlike the namespace's inode number) and the interface's index, which
/// together name one interface on this host. The file's first line names the interface,
/// and a file naming another is ignored.
#[derive(Debug)]
struct Ledger {
    path: std::path::PathBuf,
    name: String,
}

impl Ledger {
    /// The ledger of interface `name` in `dir`, asked on socket `sock` (for the cookie);
    /// `None` when `dir` is not a folder this process's user owns and only it may write
    /// (a file others can plant or replace is no record), or the cookie or the index
    /// cannot be read (kernels before 5.14 have no cookie).
    fn at(dir: &std::path::Path, sock: &OwnedFd, name: &str, index: u32) -> Option<Ledger> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(dir).ok()?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        if !meta.is_dir() || meta.uid() != euid || meta.mode() & 0o022 != 0 {
            return None;
        }
        let mut cookie = 0u64;
        let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
        // SAFETY: `cookie` is a writable u64 of the length passed; the kernel writes at
        // most `len` bytes and the new length.
        let r = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_NETNS_COOKIE,
                (&mut cookie as *mut u64).cast(),
                &mut len,
            )
        };
        if r != 0 || len as usize != std::mem::size_of::<u64>() {
            return None;
        }
        Some(Ledger {
            path: dir.join(format!("rx-vlan-off.{cookie}.{index}")),
            name: name.to_string(),
        })
    }

    /// The features the file lists, if it is a regular file (not followed through a
    /// symbolic link) about this interface; none otherwise.
    fn read(&self) -> Vec<String> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let mut text = String::new();
        let read = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.path)
            .and_then(|mut f| f.read_to_string(&mut text));
        let mut lines = text.lines();
        if read.is_err() || lines.next() != Some(&format!("interface {}", self.name)) {
            return Vec::new();
        }
        lines.map(|l| l.trim().to_string()).collect()
    }

    /// Replaces the file with one listing `features`, whole or not at all: written to a
    /// fresh file beside it (mode 0600, not through a link) and renamed over it.
    fn write(&self, features: &[&str]) -> io::Result<()> {
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".new");
        let tmp = std::path::PathBuf::from(tmp);
        // Left by a kill between its creation and its rename: never the record.
        let _ = std::fs::remove_file(&tmp);
        let mut text = format!("interface {}\n", self.name);
        for feature in features {
            text.push_str(feature);
            text.push('\n');
        }
        crate::port::sys::write_new(&tmp, text.as_bytes())?;
        std::fs::rename(&tmp, &self.path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }

    /// Removes the file (best effort).
    fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl RxVlanOff {
    /// Turns receive VLAN stripping off on `name`, keeping a ledger in `ledger` if given
    /// (see the type's documentation). An interface without these features (or without
    /// ethtool feature support, e.g. loopback-like devices) is left alone.
    pub fn apply(
        name: &str,
        ifindex: u32,
        ledger: Option<&std::path::Path>,
    ) -> Result<RxVlanOff, VlanOffloadError> {
        // SAFETY: plain socket creation; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(VlanOffloadError::Ethtool(
                "opening a socket for ethtool",
                io::Error::last_os_error(),
            ));
        }
        let mut guard = RxVlanOff {
            sock: owned(fd.into()),
            name: name.into(),
            words: 0,
            turned_off: Vec::new(),
            inherited: Vec::new(),
            ledger: None,
        };
        let f = match Features::read(&guard.sock, name) {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(guard),
            Err(e) => return Err(VlanOffloadError::Ethtool("reading its ethtool features", e)),
        };
        guard.words = f.count.div_ceil(32);
        let file = ledger.and_then(|dir| Ledger::at(dir, &guard.sock, name, ifindex));
        // What an earlier process wrote down and did not turn back on, if still off.
        let left_off = file.as_ref().map(Ledger::read).unwrap_or_default();
        let mut to_turn_off = Vec::new();
        for feature in RX_VLAN_FEATURES {
            let Some(bit) = f.index(feature) else {
                continue;
            };
            if !f.active(bit) {
                if f.changeable(bit) && left_off.iter().any(|l| l == feature) {
                    guard.turned_off.push((bit, feature));
                    guard.inherited.push(feature);
                }
                continue;
            }
            if !f.changeable(bit) {
                return Err(VlanOffloadError::Fixed(feature));
            }
            to_turn_off.push((bit, feature));
        }
        if let Some(l) = file {
            let names: Vec<&str> = (guard.turned_off.iter().chain(&to_turn_off))
                .map(|&(_, f)| f)
                .collect();
            if names.is_empty() {
                // A stale file (the features are on again): nothing to keep.
                l.remove();
            } else if l.write(&names).is_ok() {
                // Written before anything is turned off, so a kill at any point after
                // leaves a file naming at least what is off.
                guard.ledger = Some(l);
            }
        }
        for (bit, feature) in to_turn_off {
            set_feature(&guard.sock, name, guard.words, bit, false)
                .map_err(|e| VlanOffloadError::Ethtool(feature, e))?;
            guard.turned_off.push((bit, feature));
        }
        if !guard.turned_off.is_empty() {
            let now = Features::read(&guard.sock, name)
                .map_err(|e| VlanOffloadError::Ethtool("reading its ethtool features", e))?;
            if let Some(&(_, feature)) = guard.turned_off.iter().find(|&&(b, _)| now.active(b)) {
                return Err(VlanOffloadError::Stuck(feature));
            }
        }
        Ok(guard)
    }

    /// The features turned off here, or found left off by an earlier process (empty: they
    /// were off already, or absent): all are turned back on when this is dropped.
    pub fn turned_off(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.turned_off.iter().map(|&(_, f)| f)
    }

    /// The features an earlier process turned off and did not turn back on (it was
    /// killed), found in the ledger: turned back on when this is dropped.
    pub fn inherited(&self) -> &[&'static str] {
        &self.inherited
    }

    /// Whether features are off that a ledger names (false: none are off, or no ledger
    /// could be kept, so a kill would leave them off).
    pub fn recorded(&self) -> bool {
        self.ledger.is_some()
    }
}

impl Drop for RxVlanOff {
    fn drop(&mut self) {
        let mut all_on = true;
        for &(bit, _) in &self.turned_off {
            // Best effort: nothing to report to at teardown; a failure leaves it off (and
            // the ledger file, for the next process to try again).
            all_on &= set_feature(&self.sock, &self.name, self.words, bit, true).is_ok();
        }
        if let Some(l) = self.ledger.as_ref().filter(|_| all_on) {
            l.remove();
        }
    }
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: `v` is a valid value of the size passed, read by the kernel during the call.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// One mapped ring: producer, consumer and flags words and the descriptor array.
struct Ring {
    map: *mut libc::c_void,
    map_len: usize,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    desc: *mut u8,
    /// Our copy of the index we advance (producer for fill/TX, consumer for RX/completion).
    head: u32,
}

impl Ring {
    /// Maps ring `pgoff` of `fd` with `entry` bytes per descriptor.
    fn map(fd: RawFd, off: &libc::xdp_ring_offset, pgoff: u64, entry: usize) -> io::Result<Ring> {
        let map_len = off.desc as usize + RING_SIZE as usize * entry;
        // SAFETY: mapping the ring the kernel allocated for this socket at the documented
        // page offset; the result is checked and unmapped in Drop.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff as libc::off_t,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = map.cast::<u8>();
        // SAFETY: the offsets come from XDP_MMAP_OFFSETS for this very ring and lie inside
        // the mapping; the index words are 4-byte aligned (the kernel lays them out so).
        let ring = unsafe {
            Ring {
                map,
                map_len,
                producer: base.add(off.producer as usize).cast(),
                consumer: base.add(off.consumer as usize).cast(),
                flags: base.add(off.flags as usize).cast(),
                desc: base.add(off.desc as usize),
                head: 0,
            }
        };
        Ok(ring)
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into the live mapping (see `map`); the kernel updates it
        // concurrently, hence atomic access only.
        unsafe { &*self.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { &*self.consumer }
    }

    fn needs_wakeup(&self) -> bool {
        // SAFETY: as for `producer`.
        unsafe { &*self.flags }.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    /// Consumer side: entries ready to read.
    fn available(&self) -> u32 {
        self.producer()
            .load(Ordering::Acquire)
            .wrapping_sub(self.head)
    }

    /// Consumer side: hands `n` entries back.
    fn release(&mut self, n: u32) {
        self.head = self.head.wrapping_add(n);
        self.consumer().store(self.head, Ordering::Release);
    }

    /// Producer side: entries that can be written.
    fn room(&self) -> u32 {
        RING_SIZE
            - self
                .head
                .wrapping_sub(self.consumer().load(Ordering::Acquire))
    }

    /// Producer side: publishes `n` written entries.
    fn submit(&mut self, n: u32) {
        self.head = self.head.wrapping_add(n);
        self.producer().store(self.head, Ordering::Release);
    }

    fn u64_slot(&self, i: u32) -> *mut u64 {
        // SAFETY: the index is masked into the ring; u64 entries are 8-byte aligned.
        unsafe { self.desc.cast::<u64>().add((i & (RING_SIZE - 1)) as usize) }
    }

    fn desc_slot(&self, i: u32) -> *mut libc::xdp_desc {
        // SAFETY: as for `u64_slot`, with 16-byte xdp_desc entries.
        unsafe {
            self.desc
                .cast::<libc::xdp_desc>()
                .add((i & (RING_SIZE - 1)) as usize)
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping made in `map`, once.
        unsafe { libc::munmap(self.map, self.map_len) };
    }
}

/// How a socket ended up bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindMode {
    /// The driver DMAs straight into the UMEM.
    ZeroCopy,
    /// The kernel copies each frame into and out of the UMEM.
    Copy,
}

/// An AF_XDP socket bound to one queue of one interface, with its own UMEM.
pub struct Xsk {
    rx: Ring,
    tx: Ring,
    fill: Ring,
    comp: Ring,
    umem: *mut u8,
    umem_len: usize,
    /// UMEM frames (base addresses) free for sending.
    free: Vec<u64>,
    /// RX descriptors taken by the last `rx_peek` (whole packets only).
    peeked: u32,
    /// Packet `i` of the last peek spans RX descriptors `starts[i]..starts[i + 1]`
    /// (relative to the ring's consumer index); `starts[0] == 0`.
    starts: Box<[u32; MAX_BURST + 1]>,
    /// Packets in the last peek.
    packets: u32,
    /// Frames written to the TX ring since the last kick.
    unkicked: u32,
    /// How it is bound.
    pub mode: BindMode,
    /// Bound with `XDP_USE_SG`: receives and sends frames spread over several UMEM frames.
    pub multi_buffer: bool,
    // Declared last: closes after the rings and UMEM are unmapped.
    fd: OwnedFd,
}

// SAFETY: the socket, its mappings and its UMEM are owned by this value alone; the raw
// pointers point into those mappings, which move with it. One thread uses it at a time.
unsafe impl Send for Xsk {}

impl std::fmt::Debug for Xsk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Xsk")
            .field("fd", &self.fd)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Xsk {
    /// Creates a socket with a fresh UMEM and binds it to (`ifindex`, `queue`), trying
    /// zero-copy first when `zero_copy` is set and falling back to copy mode, each with
    /// multi-buffer (`XDP_USE_SG`) first. With `need_multi_buffer` a binding without it is
    /// not tried (frames larger than one UMEM frame would be lost); the error is then the
    /// copy-mode multi-buffer bind's.
    pub fn open(
        ifindex: u32,
        queue: u32,
        zero_copy: bool,
        need_multi_buffer: bool,
    ) -> io::Result<Xsk> {
        let sg = libc::XDP_USE_SG;
        let tries: [(bool, u16); 4] = [
            (zero_copy, libc::XDP_ZEROCOPY | sg),
            (zero_copy && !need_multi_buffer, libc::XDP_ZEROCOPY),
            (true, libc::XDP_COPY | sg),
            (!need_multi_buffer, libc::XDP_COPY),
        ];
        let mut last = io::Error::from_raw_os_error(libc::EINVAL);
        for (_, flags) in tries.into_iter().filter(|t| t.0) {
            match Xsk::open_as(ifindex, queue, flags) {
                Ok(x) => return Ok(x),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn open_as(ifindex: u32, queue: u32, bind_flags: u16) -> io::Result<Xsk> {
        // SAFETY: plain socket creation; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = owned(fd.into());
        let raw = fd.as_raw_fd();
        let frames = 2 * RING_SIZE;
        let umem_len = (frames * FRAME_SIZE) as usize;
        // SAFETY: a fresh private anonymous mapping; the result is checked.
        let umem = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                umem_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if umem == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let guard = UmemGuard(umem, umem_len);
        let reg = libc::xdp_umem_reg {
            addr: umem as u64,
            len: umem_len as u64,
            chunk_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(raw, libc::SOL_XDP, libc::XDP_UMEM_REG, &reg)?;
        for opt in [
            libc::XDP_UMEM_FILL_RING,
            libc::XDP_UMEM_COMPLETION_RING,
            libc::XDP_RX_RING,
            libc::XDP_TX_RING,
        ] {
            setsockopt(raw, libc::SOL_XDP, opt, &RING_SIZE)?;
        }
        // SAFETY: xdp_mmap_offsets is plain data; zeroed is valid and the kernel fills it.
        let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
        // SAFETY: `off` is writable for `len` bytes.
        let r = unsafe {
            libc::getsockopt(
                raw,
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                (&mut off as *mut libc::xdp_mmap_offsets).cast(),
                &mut len,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let rx = Ring::map(raw, &off.rx, libc::XDP_PGOFF_RX_RING as u64, 16)?;
        let tx = Ring::map(raw, &off.tx, libc::XDP_PGOFF_TX_RING as u64, 16)?;
        let fill = Ring::map(raw, &off.fr, libc::XDP_UMEM_PGOFF_FILL_RING, 8)?;
        let comp = Ring::map(raw, &off.cr, libc::XDP_UMEM_PGOFF_COMPLETION_RING, 8)?;
        std::mem::forget(guard);
        let mut x = Xsk {
            rx,
            tx,
            fill,
            comp,
            umem: umem.cast(),
            umem_len,
            free: (RING_SIZE..frames)
                .map(|i| u64::from(i) * u64::from(FRAME_SIZE))
                .collect(),
            peeked: 0,
            starts: Box::new([0; MAX_BURST + 1]),
            packets: 0,
            unkicked: 0,
            mode: if bind_flags & libc::XDP_ZEROCOPY != 0 {
                BindMode::ZeroCopy
            } else {
                BindMode::Copy
            },
            multi_buffer: bind_flags & libc::XDP_USE_SG != 0,
            fd,
        };
        // The first half of the UMEM goes to the fill ring for receiving.
        for i in 0..RING_SIZE {
            // SAFETY: the fill ring is ours to produce into and has RING_SIZE free slots.
            unsafe { *x.fill.u64_slot(i) = u64::from(i) * u64::from(FRAME_SIZE) };
        }
        x.fill.submit(RING_SIZE);
        let sa = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: bind_flags | libc::XDP_USE_NEED_WAKEUP,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: `sa` is a valid sockaddr_xdp of the size passed.
        let r = unsafe {
            libc::bind(
                raw,
                (&sa as *const libc::sockaddr_xdp).cast(),
                std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(x)
    }

    /// The socket's descriptor (for the XSKMAP and poll).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Looks at up to `max` (at most `MAX_BURST`) received packets, each one or more RX
    /// descriptors (call [`Xsk::rx_release`] before the next peek); returns how many.
    ///
    /// The kernel publishes a multi-buffer packet's descriptors together (af_xdp.rst:
    /// "only a complete packet is sent to the application"), so a packet cut by the end of
    /// what is available is left for the next peek. A descriptor chain longer than
    /// `MAX_FRAGS` is cut there so a broken ring cannot stall the socket.
    pub fn rx_peek(&mut self, max: u32) -> u32 {
        let avail = self.rx.available();
        let max = max.min(MAX_BURST as u32);
        let (mut packets, mut start, mut d) = (0u32, 0u32, 0u32);
        while d < avail && packets < max {
            // SAFETY: descriptor `d` lies between our consumer index and the producer index
            // loaded with Acquire: written by the kernel, ours until released.
            let options = unsafe { (*self.rx.desc_slot(self.rx.head.wrapping_add(d))).options };
            d += 1;
            if options & libc::XDP_PKT_CONTD == 0 || d - start >= MAX_FRAGS {
                packets += 1;
                self.starts[packets as usize] = d;
                start = d;
            }
        }
        self.packets = packets;
        self.peeked = start;
        packets
    }

    /// RX descriptor `d` of the current peek as a slice of the UMEM.
    fn rx_desc_frame(&self, d: u32) -> &[u8] {
        // SAFETY: descriptor `d` of the peek lies between our consumer index and the
        // producer index we loaded with Acquire, so the kernel wrote it and will not touch
        // it until we release it.
        let desc = unsafe { *self.rx.desc_slot(self.rx.head.wrapping_add(d)) };
        let addr = (desc.addr as usize).min(self.umem_len);
        let len = (desc.len as usize).min(self.umem_len - addr);
        // SAFETY: the frame is clamped into the UMEM, and it is ours (see above) until
        // `rx_release` hands it back to the fill ring.
        unsafe { std::slice::from_raw_parts(self.umem.add(addr), len) }
    }

    /// The first (or only) UMEM frame of received packet `i` (`i < rx_peek()`): all the
    /// headers the parser reads (a first fragment holds `RX_FRAME_ROOM` bytes).
    pub fn rx_frame(&self, i: u32) -> &[u8] {
        self.rx_desc_frame(self.starts[(i as usize).min(MAX_BURST)])
    }

    /// How many UMEM frames received packet `i` spans.
    pub fn rx_frag_count(&self, i: u32) -> u32 {
        let i = (i as usize).min(MAX_BURST - 1);
        self.starts[i + 1].saturating_sub(self.starts[i])
    }

    /// The UMEM frames of received packet `i`, in order.
    pub fn rx_frags(&self, i: u32) -> impl Iterator<Item = &[u8]> + Clone + '_ {
        let first = self.starts[(i as usize).min(MAX_BURST)];
        (first..first + self.rx_frag_count(i)).map(move |d| self.rx_desc_frame(d))
    }

    /// Hands every peeked descriptor back: the RX ring slots to the kernel, the UMEM frames
    /// to the fill ring (room is certain: only RING_SIZE frames ever circulate there).
    pub fn rx_release(&mut self) {
        let n = self.peeked;
        if n == 0 {
            return;
        }
        let room = self.fill.room().min(n);
        for i in 0..room {
            // SAFETY: RX entry `i` of the peek is still ours (released below), and fill
            // slot `head + i` is free (counted by `room`).
            unsafe {
                let d = *self.rx.desc_slot(self.rx.head.wrapping_add(i));
                *self.fill.u64_slot(self.fill.head.wrapping_add(i)) =
                    d.addr & !u64::from(FRAME_SIZE - 1);
            }
        }
        self.fill.submit(room);
        self.rx.release(n);
        self.peeked = 0;
        self.packets = 0;
    }

    /// Queues a copy of the single-buffer `frame` for sending (see [`Xsk::tx_copy_packet`]).
    pub fn tx_copy(&mut self, frame: &[u8]) -> bool {
        self.tx_copy_packet(std::iter::once(frame))
    }

    /// Queues a copy of a packet made of the fragments `frags` (in order), one UMEM frame
    /// each, the descriptors of all but the last marked `XDP_PKT_CONTD`. False, and nothing
    /// queued, when there are not enough free UMEM frames and TX slots, a fragment is empty
    /// or larger than a UMEM frame, there are more than `MAX_FRAGS`, or there are several
    /// and the socket is not bound for multi-buffer (the kernel would take the chain as
    /// invalid).
    pub fn tx_copy_packet<'a>(&mut self, frags: impl Iterator<Item = &'a [u8]> + Clone) -> bool {
        let mut count = 0u32;
        for f in frags.clone() {
            if f.is_empty() || f.len() > FRAME_SIZE as usize {
                return false;
            }
            count += 1;
        }
        if count == 0 || count > MAX_FRAGS || (count > 1 && !self.multi_buffer) {
            return false;
        }
        if (self.free.len() as u32) < count {
            self.reap();
        }
        if self.tx.room() < count || (self.free.len() as u32) < count {
            return false;
        }
        for (k, frag) in (1..=count).zip(frags) {
            // Never empty: `free` held at least `count` frames above.
            let Some(addr) = self.free.pop() else {
                return false;
            };
            // SAFETY: `addr` is a free UMEM frame (ours: not in any ring) of FRAME_SIZE bytes, which the fragment fits (checked
            // above); TX slot `head + k - 1` is free (`room` counted `count` of them).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    frag.as_ptr(),
                    self.umem.add(addr as usize),
                    frag.len(),
                );
                *self.tx.desc_slot(self.tx.head.wrapping_add(k - 1)) = libc::xdp_desc {
                    addr,
                    len: frag.len() as u32,
                    options: if k < count { libc::XDP_PKT_CONTD } else { 0 },
                };
            }
        }
        self.tx.submit(count);
        self.unkicked += count;
        true
    }

    /// Takes completed TX frames back into the free list.
    pub fn reap(&mut self) {
        let n = self.comp.available();
        for i in 0..n {
            // SAFETY: entries between our consumer index and the producer are written.
            let addr = unsafe { *self.comp.u64_slot(self.comp.head.wrapping_add(i)) };
            self.free.push(addr & !u64::from(FRAME_SIZE - 1));
        }
        self.comp.release(n);
    }

    /// Tells the kernel to send what was queued, with one `sendto` when it asks for it
    /// (always in copy mode). Transient refusals leave the frames queued for the next kick.
    pub fn kick(&mut self) {
        if self.unkicked == 0 && !self.tx_pending() {
            return;
        }
        self.unkicked = 0;
        if self.mode == BindMode::ZeroCopy && !self.tx.needs_wakeup() {
            return;
        }
        // SAFETY: a zero-length sendto on our socket: no buffers are passed.
        unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
    }

    /// Whether frames still sit in the TX ring (a kick was refused for lack of room).
    fn tx_pending(&self) -> bool {
        self.tx.head != self.tx.consumer().load(Ordering::Acquire)
    }

    /// Whether a frame is waiting in the RX ring.
    pub fn rx_ready(&self) -> bool {
        self.rx.available() > 0
    }

    /// Retries sends left in the TX ring by a refused kick.
    pub fn flush(&mut self) {
        if self.tx_pending() {
            self.unkicked = self.unkicked.max(1);
            self.kick();
        }
        self.reap();
    }
}

impl Drop for Xsk {
    fn drop(&mut self) {
        // SAFETY: unmapping the UMEM mapped in `open_as`, once; the rings (fields) unmap
        // themselves and the descriptor closes after, so the kernel stops using it first
        // only in the sense that it holds its own page references until the socket closes.
        unsafe { libc::munmap(self.umem.cast(), self.umem_len) };
    }
}

/// Unmaps a UMEM on an error path of `open_as`.
struct UmemGuard(*mut libc::c_void, usize);

impl Drop for UmemGuard {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `open_as` and not handed to an `Xsk` (forgotten then).
        unsafe { libc::munmap(self.0, self.1) };
    }
}

/// Waits up to `timeout_ms` until any of `fds` is readable (one `poll` for all). `poll` on
/// an XDP socket also wakes a driver that waits for the fill ring.
pub fn wait_any(fds: &[RawFd], timeout_ms: i32) {
    let mut p = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 8];
    let n = fds.len().min(p.len());
    for (slot, &fd) in p.iter_mut().zip(fds) {
        *slot = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
    }
    // SAFETY: `p[..n]` are valid pollfd structures owned by this frame.
    unsafe { libc::poll(p.as_mut_ptr(), n as libc::nfds_t, timeout_ms) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ethtool_features_are_read_and_loopback_strips_no_tags() {
        // Reading features needs no privilege; loopback has the VLAN features off and
        // fixed, so nothing is turned off (and nothing needs restoring).
        // SAFETY: plain socket creation; checked before it is owned.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        assert!(fd >= 0, "{}", io::Error::last_os_error());
        let sock = owned(fd.into());
        let f = Features::read(&sock, "lo").expect("ethtool features of lo");
        assert!(f.count > 32 && f.blocks.len() == f.count.div_ceil(32));
        let bit = f
            .index("rx-vlan-hw-parse")
            .expect("the kernel names rx-vlan-hw-parse");
        assert!(!f.active(bit));
        assert!(f.index("no-such-feature").is_none());
        let lo = crate::port::sys::ifindex_of("lo").expect("lo has an index") as u32;
        let off = RxVlanOff::apply("lo", lo, None).expect("nothing to turn off on lo");
        assert_eq!(off.turned_off().count(), 0);
    }

    #[test]
    fn a_ledger_is_kept_only_in_a_private_folder_and_names_its_interface() {
        use std::os::unix::fs::PermissionsExt;
        let dir = crate::testkit::scratch_dir("ledger");
        let mode = |m| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(m));
        mode(0o700).unwrap();
        // SAFETY: plain socket creation; checked before it is owned.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        assert!(fd >= 0, "{}", io::Error::last_os_error());
        let sock = owned(fd.into());
        let lo = crate::port::sys::ifindex_of("lo").expect("lo has an index") as u32;
        let Some(l) = Ledger::at(&dir, &sock, "lo", lo) else {
            crate::testkit::skipped("this kernel has no SO_NETNS_COOKIE (Linux 5.14+)");
            return;
        };
        assert!(l.read().is_empty(), "no file yet");
        l.write(&["rx-vlan-hw-parse", "rx-vlan-stag-hw-parse"])
            .unwrap();
        assert_eq!(l.read(), ["rx-vlan-hw-parse", "rx-vlan-stag-hw-parse"]);
        let meta = std::fs::metadata(&l.path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // A file about another interface (an index reused) is no record of this one.
        std::fs::write(&l.path, "interface eth9\nrx-vlan-hw-parse\n").unwrap();
        assert!(l.read().is_empty());
        // Nor is one reached through a symbolic link; writing replaces the link, not its
        // target.
        let target = dir.join("elsewhere");
        std::fs::write(&target, "interface lo\nrx-vlan-hw-parse\n").unwrap();
        std::fs::remove_file(&l.path).unwrap();
        std::os::unix::fs::symlink(&target, &l.path).unwrap();
        assert!(l.read().is_empty());
        l.write(&["rx-vlan-hw-parse"]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "interface lo\nrx-vlan-hw-parse\n"
        );
        assert!(!std::fs::symlink_metadata(&l.path).unwrap().is_symlink());
        l.remove();
        assert!(!l.path.exists());
        // A folder others may write to keeps no ledger.
        mode(0o770).unwrap();
        assert!(Ledger::at(&dir, &sock, "lo", lo).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn channel_counts_are_read_without_privilege() {
        // Loopback has no channels to report: asking is answered, not a crash or a guess.
        assert_eq!(channels("lo"), None);
        assert_eq!(channels("op25b-no-such0"), None);
        let c = Channels {
            max_combined: 16,
            rx: 0,
            combined: 8,
        };
        assert_eq!(c.rx_queues(), 8);
    }

    #[test]
    fn the_program_is_the_documented_six_instructions() {
        let p = redirect_program(7);
        let raw: Vec<(u8, u8, i16, i32)> =
            p.iter().map(|i| (i.code, i.regs, i.off, i.imm)).collect();
        assert_eq!(
            raw,
            vec![
                (0x61, 0x12, 16, 0),
                (0x18, 0x11, 0, 7),
                (0, 0, 0, 0),
                (0xb7, 0x03, 0, 2),
                (0x85, 0, 0, 51),
                (0x95, 0, 0, 0)
            ]
        );
        assert_eq!(std::mem::size_of::<BpfInsn>(), 8);
    }
}
