//! The DPDK 22.11 backend (`dpdk` feature): the bump in the wire between two DPDK ethdev
//! ports (`access`, `core`), one RX and one TX queue per worker on each, frames kept in
//! mbufs from reception to transmission.
//!
//! [`Eal::init`] starts the EAL once per process (DPDK cannot be started twice) with the
//! configured arguments; [`Eal::open_wire`] resolves both ports (a port id or a device name
//! such as a `--vdev` `net_null0`), creates the mbuf pool, configures and starts both ports,
//! and returns one [`DpdkWire`] per worker. A wire's [`DpdkWire::poll`] receives a burst,
//! judges the mbufs' data in place with [`Worker::judge_indexed`] (no verdict per frame:
//! the blocked ones are listed), hands the forwarded mbufs to the other port's TX queue
//! and frees the dropped ones in bulk.
//!
//! Invariants:
//! - Zero copy: a frame's bytes are never copied; only a `reject` reset is built anew.
//! - Every received mbuf is, within the same poll, either accepted by a TX queue or freed:
//!   a frame the TX queue refuses is freed and counted in `tx_refused`, never leaked or
//!   retried forever. So is a frame for a side whose kernel interface was down at the
//!   worker's last look (`net_af_packet` would queue it and send it, stale, once the link
//!   came back).
//! - A queue is used by exactly one wire (one worker thread); the ports and the pool stay
//!   alive until the last wire and the [`Eal`] are gone, then the ports are stopped and
//!   closed (which flushes `net_pcap` output files) and the EAL is cleaned up.
//! - Nothing is allocated, locked or asked of the kernel per frame: the burst arrays are
//!   allocated once per wire.
//! - A frame of up to the configured MTU (two VLAN tags and FCS beyond it) fits one mbuf, so
//!   the parser sees all of it and TX sends it whole: the pool's data room follows the MTU
//!   (never below DPDK's 2048-byte default). A device that cannot carry the MTU stops the
//!   start with [`DpdkError::Mtu`]; nothing is clamped silently. A device that still hands
//!   over a segment chain (a `net_pcap` record larger than the MTU) has its first segment
//!   judged and the whole chain sent or freed.
//! - Every failure to start (EAL, port lookup, pool, port setup) is a [`DpdkError`] naming
//!   the step and what to do; nothing here panics.
//! - A poll asks for frames a few ahead only where its ingress port's driver does not put
//!   them in the polling core's cache ([`frames_arrive_in_cache`], decided once at
//!   [`Eal::open_wire`]): a NIC's yes, net_null's, net_pcap's, net_af_packet's and
//!   net_tap's not.

#![allow(unsafe_code)]

mod ffi;

pub use super::af_packet::Direction;
use super::link::{LinkEvent, LinkWatch};
use crate::policy::{Policy, Reason, Verdict};
use crate::worker::{PolicyHandle, Worker};
use ffi::{RteMbuf, RteMempool};
use std::ffi::{c_char, c_int, CStr, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// How many frames ahead of the one parsed a poll asks for a frame's first line, as
/// DPDK's l3fwd does: a NIC writes its frames into memory, so they are not in this core's
/// cache. Only for such devices (see [`frames_arrive_in_cache`]): where a driver's own
/// receive has just copied the frame on this core, the hint only costs (on net_null 3.3%
/// of the frame rate on an AMD EPYC, same binary with and without; an earlier Intel build
/// of this shape ran 2% slower in three pairs, which that VM's build-to-build layout
/// spread of ±2% cannot tell from a gain: bench/results/dpdk-null.md).
const PREFETCH_AHEAD: usize = 4;

/// The drivers whose receive writes each frame into its mbuf on the calling core (a copy
/// from a capture, a kernel socket's ring or a tap's read), or touches nothing (net_null,
/// whose frames are the pool's own, read over and over): a frame is then in this core's
/// cache when the burst is judged, and asking for it ahead is wasted work. Every other
/// driver is taken for one whose frames a device or another core wrote (a NIC, a ring,
/// shared memory).
const FRAMES_IN_CACHE: [&str; 4] = ["net_null", "net_pcap", "net_af_packet", "net_tap"];

/// Whether the frames `driver` receives are in the receiving core's cache already:
/// net_null (which never writes a frame), net_pcap, net_af_packet and net_tap (whose
/// receive copies each frame into its mbuf on the polling core). A poll asks for every
/// other driver's frames a few ahead, as for a NIC's, which a device wrote into memory.
pub fn frames_arrive_in_cache(driver: &str) -> bool {
    FRAMES_IN_CACHE.contains(&driver)
}

/// RX/TX descriptors per queue asked of a device (adjusted to its limits).
const RX_DESC: u16 = 1024;
const TX_DESC: u16 = 1024;
/// Per-lcore mbuf cache of the pool.
const POOL_CACHE: u32 = 256;
/// Frame bytes an mbuf holds without a configured MTU (DPDK's default data room).
const DEFAULT_FRAME_ROOM: u16 = 2048;
/// What a frame carries beyond its MTU: Ethernet header, two VLAN tags, FCS.
const FRAME_OVERHEAD: u16 = 14 + 8 + 4;
/// Most frames one poll moves (the configured burst is capped to this).
pub const MAX_BURST: usize = 256;

static EAL_STARTED: AtomicBool = AtomicBool::new(false);

/// Why the DPDK backend cannot start.
#[derive(Debug, thiserror::Error)]
pub enum DpdkError {
    /// The EAL was already started in this process (DPDK allows it once).
    #[error("the DPDK EAL is already initialised in this process; DPDK can be started once per process: run each DPDK data plane in its own process")]
    AlreadyStarted,
    /// An EAL argument holds a NUL byte.
    #[error("eal_args: {0:?} contains a NUL byte")]
    BadArg(String),
    /// `rte_eal_init` failed.
    #[error("DPDK EAL initialisation failed ({why}) with eal_args {args:?}: check eal_args; without hugepages or NICs use e.g. [\"--no-huge\", \"--no-pci\", \"--no-shconf\", \"-m\", \"256\", \"--vdev=net_null0\", \"--vdev=net_null1\"]; under systemd, install scripts/op25b.service.d/dpdk.conf (capabilities, hugepages, /dev/vfio); the EAL log above says more")]
    EalInit {
        /// The arguments given.
        args: Vec<String>,
        /// DPDK's reason.
        why: String,
        /// `rte_errno` (0 when the EAL set none).
        errno: c_int,
    },
    /// A configured port is not among the EAL's ports.
    #[error("DPDK port {name:?} ({side}) does not exist; the EAL has {available}: give a port id or a device name, and add virtual devices with --vdev=NAME in eal_args (a --vdev that is in eal_args but not here failed to start: the EAL log above says why, e.g. its iface= does not exist or this process may not open packet sockets)")]
    PortNotFound {
        /// `access` or `core`.
        side: &'static str,
        /// The configured name or id.
        name: String,
        /// The ports that exist, described.
        available: String,
    },
    /// Access and core resolve to the same port.
    #[error("access and core are the same DPDK port {0}: the wire needs two ports")]
    SamePort(u16),
    /// The mbuf pool could not be created.
    #[error("cannot create the DPDK mbuf pool of {mbufs} buffers of {room} bytes, about {mib} MiB ({why}): give the EAL more memory (-m MB in eal_args), use fewer workers or a smaller mtu")]
    Mempool {
        /// Buffers asked for.
        mbufs: u32,
        /// Data room of each, headroom included.
        room: u16,
        /// Memory the pool needs, roughly.
        mib: u64,
        /// DPDK's reason.
        why: String,
    },
    /// Configuring or starting a port failed.
    #[error("DPDK port {port} ({name}): {stage} failed: {why}")]
    PortSetup {
        /// Port id.
        port: u16,
        /// Port name.
        name: String,
        /// The step that failed.
        stage: String,
        /// DPDK's reason.
        why: String,
    },
    /// A port cannot carry the configured MTU.
    #[error("DPDK port {port} ({name}): mtu = {mtu} is outside what the device takes ({min}..={max}): set [dataplane] mtu within it, or use a device that carries frames of {frame} bytes")]
    Mtu {
        /// Port id.
        port: u16,
        /// Port name.
        name: String,
        /// The configured MTU.
        mtu: u16,
        /// Smallest MTU the device takes.
        min: u16,
        /// Largest MTU the device takes.
        max: u16,
        /// Largest frame of that MTU (two VLAN tags and FCS included).
        frame: u32,
    },
    /// More workers than a port can give queues.
    #[error("{workers} workers need {workers} DPDK queues per port; at most {max}")]
    TooManyQueues {
        /// Workers asked for.
        workers: usize,
        /// The limit.
        max: usize,
    },
}

impl DpdkError {
    /// Whether starting again later may succeed without anyone changing anything: a
    /// device or interface that may appear, memory that may free up, a port whose setup
    /// may go through next time. Not so for arguments, queue counts or MTUs that the
    /// devices do not take: those need the operator.
    pub fn retry_may_help(&self) -> bool {
        match self {
            DpdkError::AlreadyStarted
            | DpdkError::BadArg(_)
            | DpdkError::SamePort(_)
            | DpdkError::Mtu { .. }
            | DpdkError::TooManyQueues { .. } => false,
            // The shim's own refusal of a device's queue count (see op25b_port_setup).
            DpdkError::PortSetup { stage, .. } => !stage.starts_with("queue count"),
            // EINVAL is the EAL's answer to an argument it does not take (eal_parse_args),
            // and to IOVA as PA where physical addresses cannot be read (privileges):
            // only an edit of eal_args or of the privileges helps. Its other failures
            // (memory, devices, a lock another process holds) may pass.
            DpdkError::EalInit { errno, .. } => *errno != libc::EINVAL,
            DpdkError::PortNotFound { .. } | DpdkError::Mempool { .. } => true,
        }
    }
}

/// DPDK's description of an error number.
fn strerror(errnum: c_int) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated
    // string for any value; it is copied out at once.
    unsafe { CStr::from_ptr(ffi::rte_strerror(errnum.abs())) }
        .to_string_lossy()
        .into_owned()
}

/// The calling thread's last DPDK error number.
fn last_errno() -> c_int {
    // SAFETY: reads the calling thread's rte_errno; no arguments.
    unsafe { ffi::op25b_rte_errno() }
}

/// The name DPDK gives `port`.
fn port_name(port: u16) -> String {
    // SAFETY: `buf` has the RTE_ETH_NAME_MAX_LEN bytes the function may write, NUL included.
    c_name(|buf, _| unsafe { ffi::rte_eth_dev_get_name_by_port(port, buf) })
        .unwrap_or_else(|| format!("port {port}"))
}

/// A name a C call writes into a buffer of [`ffi::ETH_NAME_MAX_LEN`] bytes (given its
/// start and length), NUL-terminated when the call returns 0; `None` when it fails.
fn c_name(fill: impl FnOnce(*mut c_char, usize) -> c_int) -> Option<String> {
    let mut buf = [0 as c_char; ffi::ETH_NAME_MAX_LEN];
    if fill(buf.as_mut_ptr(), buf.len()) != 0 {
        return None;
    }
    // The last byte stays NUL whatever the call wrote before it.
    buf[ffi::ETH_NAME_MAX_LEN - 1] = 0;
    // SAFETY: `buf` is NUL-terminated (at its end at the latest).
    Some(
        unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// The name of `port`'s driver (empty if it names none or cannot be asked).
fn driver_name(port: u16) -> String {
    // SAFETY: the port id is valid (resolved by `Eal::port`); the shim writes at most the
    // length it is given, NUL included.
    c_name(|buf, len| unsafe { ffi::op25b_port_driver(port, buf, len) }).unwrap_or_default()
}

/// What the ports and the pool are; freed when the last user goes.
struct Shared {
    pool: *mut RteMempool,
    /// Frame bytes one mbuf of `pool` holds (its data room after the headroom).
    frame_room: u16,
    ports: Vec<u16>,
    /// Ports this process put into promiscuous mode (on a kernel interface: one that was
    /// not promiscuous before), to be put back at the end.
    promisc: Vec<u16>,
}

// SAFETY: the pool pointer is only passed to DPDK functions that are thread-safe for a
// mempool (alloc/free through per-lcore caches or the lock-free ring), and the port ids are
// plain numbers; teardown happens once, in Drop, when no wire is left.
unsafe impl Send for Shared {}
// SAFETY: see above; `Shared` has no interior mutability of its own.
unsafe impl Sync for Shared {}

impl Drop for Shared {
    fn drop(&mut self) {
        for &p in &self.ports {
            // SAFETY: the port was configured (and maybe started) by `open_wire`, and no
            // wire (queue user) is left; stop and close are control-path calls made from
            // this one thread, and stopping a port that never started only returns an error.
            unsafe {
                if self.promisc.contains(&p) {
                    // net_af_packet and net_tap set the kernel interface's IFF_PROMISC and
                    // would leave it set.
                    ffi::rte_eth_promiscuous_disable(p);
                }
                ffi::rte_eth_dev_stop(p);
                ffi::rte_eth_dev_close(p);
            }
        }
        if !self.pool.is_null() {
            // SAFETY: every mbuf went back to the pool (the ports are closed, no wire is
            // left), so the pool is no longer referenced.
            unsafe { ffi::rte_mempool_free(self.pool) };
        }
        // SAFETY: all DPDK resources this process made are released above; the EAL is
        // not used again (EAL_STARTED stays set, so it cannot be re-initialised).
        unsafe { ffi::rte_eal_cleanup() };
    }
}

/// The started DPDK environment.
pub struct Eal {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Eal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Eal").finish_non_exhaustive()
    }
}

impl Eal {
    /// Starts the EAL with `args` (as after the program name on a DPDK command line). The
    /// calling thread's CPU affinity is kept: the EAL would pin it to its main lcore, and
    /// every thread started later would inherit that.
    pub fn init(args: &[String]) -> Result<Eal, DpdkError> {
        if EAL_STARTED.swap(true, Ordering::SeqCst) {
            return Err(DpdkError::AlreadyStarted);
        }
        let mut owned = vec![CString::from(c"op25b")];
        for a in args {
            owned.push(CString::new(a.as_str()).map_err(|_| DpdkError::BadArg(a.clone()))?);
        }
        let mut argv: Vec<*mut c_char> = owned.iter().map(|c| c.as_ptr().cast_mut()).collect();
        argv.push(std::ptr::null_mut());
        let affinity = current_affinity();
        // SAFETY: argv is a NULL-terminated array of `owned.len()` valid C strings that
        // outlive the call; the EAL may permute the array (not the strings) and keeps no
        // pointer to it after returning.
        let r = unsafe { ffi::rte_eal_init(owned.len() as c_int, argv.as_mut_ptr()) };
        if let Some(set) = affinity {
            restore_affinity(&set);
        }
        if r < 0 {
            let errno = last_errno();
            return Err(DpdkError::EalInit {
                args: args.to_vec(),
                // Some failures set no rte_errno (strerror would say "Success"): the
                // commonest is the lock on the runtime config another primary holds.
                why: if errno == 0 {
                    "no reason given; if the EAL log above says \"Cannot create lock\", another DPDK process uses the same --file-prefix: give each its own, or add --no-shconf".into()
                } else {
                    strerror(errno)
                },
                errno,
            });
        }
        Ok(Eal {
            shared: Arc::new(Shared {
                pool: std::ptr::null_mut(),
                frame_room: DEFAULT_FRAME_ROOM,
                ports: Vec::new(),
                promisc: Vec::new(),
            }),
        })
    }

    /// Every port the EAL knows, as "id (name)".
    fn describe_ports() -> String {
        // SAFETY: the EAL is initialised (an `Eal` exists); plain query.
        let n = unsafe { ffi::rte_eth_dev_count_avail() };
        if n == 0 {
            return "no ports".into();
        }
        let list: Vec<String> = (0..u16::MAX)
            // SAFETY: plain query on any port id.
            .filter(|&p| unsafe { ffi::rte_eth_dev_is_valid_port(p) } == 1)
            .take(usize::from(n))
            .map(|p| format!("{p} ({})", port_name(p)))
            .collect();
        format!("ports {}", list.join(", "))
    }

    /// Resolves a port given by id ("0") or by device name ("net_null0", a PCI address).
    pub fn port(&self, side: &'static str, name: &str) -> Result<u16, DpdkError> {
        let missing = || DpdkError::PortNotFound {
            side,
            name: name.into(),
            available: Self::describe_ports(),
        };
        if let Ok(id) = name.parse::<u16>() {
            // SAFETY: plain query on any port id.
            return if unsafe { ffi::rte_eth_dev_is_valid_port(id) } == 1 {
                Ok(id)
            } else {
                Err(missing())
            };
        }
        let c = CString::new(name).map_err(|_| missing())?;
        let mut id = 0u16;
        // SAFETY: `c` is a valid C string and `id` a valid place for the result.
        let r = unsafe { ffi::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
        if r == 0 {
            Ok(id)
        } else {
            Err(missing())
        }
    }

    /// Sets up `access` and `core` with one RX and TX queue per worker, starts them, and
    /// returns one wire per worker (worker `i` owns queue `i` of both ports). Can be called
    /// once per process.
    ///
    /// `mtu`: `None` gives mbufs of DPDK's default 2048-byte data room and the largest MTU
    /// of such a frame the devices take. `Some(m)` makes every mbuf hold a whole frame of
    /// that MTU (two VLAN tags and FCS included, never less than the default), so a jumbo
    /// frame arrives in one segment and is judged and sent whole; a device that cannot
    /// take `m` is a [`DpdkError::Mtu`].
    pub fn open_wire(
        &mut self,
        access: &str,
        core: &str,
        workers: usize,
        burst: usize,
        mtu: Option<u16>,
    ) -> Result<Vec<DpdkWire>, DpdkError> {
        if workers == 0 || workers > 64 {
            return Err(DpdkError::TooManyQueues { workers, max: 64 });
        }
        let a = self.port("access", access)?;
        let c = self.port("core", core)?;
        if a == c {
            return Err(DpdkError::SamePort(a));
        }
        let burst = burst.clamp(1, MAX_BURST);
        // Whole frames of the MTU in one mbuf, in 64-byte steps (at most 16-bit sizes).
        let frame_room = match mtu {
            None => DEFAULT_FRAME_ROOM,
            Some(m) => m
                .saturating_add(FRAME_OVERHEAD)
                .div_ceil(64)
                .saturating_mul(64)
                .clamp(DEFAULT_FRAME_ROOM, u16::MAX - ffi::PKTMBUF_HEADROOM),
        };
        let mut port_mtu = [0u16; 2];
        for (slot, port) in port_mtu.iter_mut().zip([a, c]) {
            let (mut min, mut max) = (0u16, 0u16);
            // SAFETY: the port id is valid (resolved above); both out-pointers are valid.
            let r = unsafe { ffi::op25b_port_mtu_range(port, &mut min, &mut max) };
            if r != 0 {
                return Err(DpdkError::PortSetup {
                    port,
                    name: port_name(port),
                    stage: "rte_eth_dev_info_get".into(),
                    why: strerror(r),
                });
            }
            *slot = match mtu {
                Some(m) if m < min || m > max => {
                    return Err(DpdkError::Mtu {
                        port,
                        name: port_name(port),
                        mtu: m,
                        min,
                        max,
                        frame: u32::from(m) + u32::from(FRAME_OVERHEAD),
                    })
                }
                Some(m) => m,
                // Every frame that fits the default mbuf, not only the default 1500-byte
                // MTU: a bump in the wire must not drop a tagged full-size frame.
                None => (frame_room - FRAME_OVERHEAD).min(max).max(min),
            };
        }
        let Some(shared) = Arc::get_mut(&mut self.shared) else {
            return Err(DpdkError::PortSetup {
                port: a,
                name: port_name(a),
                stage: "open_wire".into(),
                why: "the ports are already open in this process".into(),
            });
        };
        let q = workers as u32;
        let mbufs = (2 * q * (u32::from(RX_DESC) + u32::from(TX_DESC))
            + q * (4 * burst as u32)
            + (q + 1) * POOL_CACHE * 2
            + 1024)
            .next_power_of_two()
            - 1;
        let data_room = frame_room + ffi::PKTMBUF_HEADROOM;
        let name = CString::from(c"op25b_mbufs");
        // SAFETY: the EAL is initialised; no arguments.
        let socket = unsafe { ffi::rte_socket_id() } as c_int;
        // SAFETY: the EAL is initialised; the name is a valid C string DPDK copies; a NULL
        // return is handled.
        let pool = unsafe {
            ffi::rte_pktmbuf_pool_create(name.as_ptr(), mbufs, POOL_CACHE, 0, data_room, socket)
        };
        if pool.is_null() {
            // Per buffer: the data room plus the mbuf header and the pool's object header.
            let bytes = u64::from(mbufs) * (u64::from(data_room) + 256);
            return Err(DpdkError::Mempool {
                mbufs,
                room: data_room,
                mib: bytes.div_ceil(1 << 20),
                why: strerror(last_errno()),
            });
        }
        // From here on `Shared` tears down the pool and whatever port was started, whether
        // or not both start.
        shared.pool = pool;
        shared.frame_room = frame_room;
        for (port, mtu) in [a, c].into_iter().zip(port_mtu) {
            // Closed at teardown even if its setup fails half-way.
            shared.ports.push(port);
            let mut stage: *const c_char = c"configuration".as_ptr();
            let mut promisc_set: c_int = 0;
            // A kernel interface whose IFF_PROMISC flag was set already (`ip link set
            // promisc on`) keeps it at the end. (A tcpdump's or a bridge's promiscuity is
            // counted apart by the kernel, and turning ours off leaves theirs.)
            let was_promisc = kernel_interface(port)
                .and_then(|(name, _)| crate::port::sys::promiscuous(&name))
                .unwrap_or(false);
            // SAFETY: the port id is valid (resolved above), `pool` is a live mbuf pool,
            // and `stage` and `promisc_set` are valid places for a pointer to a static or
            // thread-local string and an int.
            let r = unsafe {
                ffi::op25b_port_setup(
                    port,
                    q as u16,
                    RX_DESC,
                    TX_DESC,
                    mtu,
                    pool,
                    &mut stage,
                    &mut promisc_set,
                )
            };
            if r != 0 {
                return Err(DpdkError::PortSetup {
                    port,
                    name: port_name(port),
                    // SAFETY: the shim sets `stage` to a C string literal or to its
                    // thread-local text, which this thread does not change before here.
                    stage: unsafe { CStr::from_ptr(stage) }
                        .to_string_lossy()
                        .into_owned(),
                    why: strerror(r),
                });
            }
            if promisc_set != 0 && !was_promisc {
                shared.promisc.push(port);
            }
        }
        let shared = self.shared.clone();
        let sides = [watch_side(a), watch_side(c)];
        let drivers = [driver_name(a), driver_name(c)];
        Ok((0..workers)
            .map(|i| {
                let watch = LinkWatch::new(sides.clone());
                let ports = [(a, drivers[0].clone()), (c, drivers[1].clone())];
                DpdkWire::new(shared.clone(), ports, i as u16, burst, watch)
            })
            .collect())
    }
}

impl Eal {
    /// Writes `frames` (cycled) into every free mbuf of the pool, for benchmarks on
    /// `net_null`: that device hands out pool mbufs without touching their data, so the
    /// frames it "receives" are these. Returns the mbufs written (0 before `open_wire`).
    pub fn fill_pool(&self, frames: &[Vec<u8>]) -> usize {
        let pool = self.shared.pool;
        if pool.is_null() || frames.is_empty() {
            return 0;
        }
        let mut taken: Vec<*mut RteMbuf> = Vec::new();
        for frame in frames.iter().cycle() {
            let len = frame.len().min(usize::from(self.shared.frame_room));
            // SAFETY: the pool is live; the bytes are valid for `len`, which fits the
            // data room; a NULL return (pool empty) ends the loop.
            let m = unsafe { ffi::op25b_mbuf_from(pool, frame.as_ptr(), len as u16) };
            if m.is_null() {
                break;
            }
            taken.push(m);
        }
        free_all(pool, &mut taken);
        taken.len()
    }

    /// How many of the pool's mbufs are out of it (in no lcore's cache and not in the pool
    /// itself): 0 before `open_wire`. With every port idle, what a wire still holds; a
    /// count that grows from poll to poll is a leak.
    pub fn mbufs_in_use(&self) -> usize {
        let pool = self.shared.pool;
        if pool.is_null() {
            return 0;
        }
        // SAFETY: the pool is live (held by `shared`); a plain count.
        unsafe { ffi::op25b_pool_in_use(pool) as usize }
    }

    /// Checks, on the pool of the wires opened (one is needed), that the free used for
    /// dropped and refused frames hands back exactly once the mbufs it cannot put straight
    /// into the lcore's cache: one still referenced elsewhere (back only at its last
    /// free) and a chain of segments (back whole). Err names the step that went wrong.
    pub fn check_free(&self) -> Result<(), String> {
        let pool = self.shared.pool;
        if pool.is_null() {
            return Err("no pool yet: open a wire first".into());
        }
        // SAFETY: the pool is live (held by `shared`); the check takes 4 mbufs from it and
        // gives each back.
        match unsafe { ffi::op25b_free_to_check(pool) } {
            0 => Ok(()),
            -1 => Err("the pool had no 4 mbufs free".into()),
            1 => Err("cannot chain two mbufs".into()),
            2 => Err("freeing a twice-referenced mbuf, a 2-segment chain and a plain mbuf did not give back exactly the last two (3 mbufs)".into()),
            3 => Err("the twice-referenced mbuf did not go back at its last free".into()),
            r => Err(format!("op25b_free_to_check returned {r}")),
        }
    }
}

/// The calling thread's CPU affinity, if it can be read.
fn current_affinity() -> Option<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; 0 means the calling thread.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    (r == 0).then_some(set)
}

fn restore_affinity(set: &libc::cpu_set_t) {
    // SAFETY: `set` is a valid cpu_set_t of the size passed; 0 means the calling thread.
    // Failure only leaves the EAL's pinning in place, which is harmless.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
}

/// Registers the calling thread with DPDK as a non-EAL lcore for as long as the guard
/// lives, so the mbuf pool's per-lcore cache serves it (without, every mbuf alloc and free
/// goes to the shared ring).
#[derive(Debug)]
pub struct LcoreGuard {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl LcoreGuard {
    /// Registers the calling thread; the error says why it could not.
    pub fn register() -> Result<LcoreGuard, String> {
        // SAFETY: the EAL is initialised before any wire exists (only `Eal` makes wires);
        // registering the calling thread has no other precondition.
        if unsafe { ffi::rte_thread_register() } != 0 {
            return Err(strerror(last_errno()));
        }
        Ok(LcoreGuard {
            _not_send: std::marker::PhantomData,
        })
    }
}

impl Drop for LcoreGuard {
    fn drop(&mut self) {
        // SAFETY: the guard is !Send, so this is the thread that registered.
        unsafe { ffi::rte_thread_unregister() };
    }
}

/// A side of the wire for the link watch: the port's name and, for a virtual device on a
/// kernel interface (net_af_packet, net_tap, ...), that interface and its index. A device
/// that reports none (a NIC, net_null, or one whose info cannot be read) is watched by
/// its link state ([`DeviceLinks`]).
fn watch_side(port: u16) -> (String, Option<(String, i32)>) {
    let name = port_name(port);
    match kernel_interface(port) {
        Some((ifname, index)) => (format!("{name} ({ifname})"), Some((ifname, index))),
        None => (name, None),
    }
}

/// The kernel interface a virtual device is on (its name and index), if any. An index
/// whose name is already gone is named by its number (`#7`).
fn kernel_interface(port: u16) -> Option<(String, i32)> {
    // SAFETY: the port id is valid (resolved by `Eal::port`); dev_info_get is a
    // control-path call.
    let index = unsafe { ffi::op25b_port_ifindex(port) };
    if index <= 0 {
        return None;
    }
    let ifname = super::sys::ifname_of(index).unwrap_or_else(|| format!("#{index}"));
    Some((ifname, index))
}

/// Whether `port`'s link is up, as the device reports it without waiting (`None`: it
/// cannot tell).
fn device_link_up(port: u16) -> Option<bool> {
    // SAFETY: the port id is valid and started. rte_eth_link_get_nowait runs the driver's
    // link-update hook (register reads or an admin-queue command) and stores the result
    // atomically in the device data; ethdev allows it alongside RX/TX bursts on other
    // threads, and only the control thread makes it (`DeviceLinks`), so no two run at once.
    match unsafe { ffi::op25b_port_link_up(port) } {
        1 => Some(true),
        0 => Some(false),
        _ => None,
    }
}

/// The link state of a wire's ports that are not on a kernel interface (NICs), watched
/// by the control thread, the one thread that asks ethdev for it.
#[derive(Debug)]
pub struct DeviceLinks {
    ports: [u16; 2],
    /// Which sides are asked (those with no kernel interface: the workers watch the others'
    /// flags).
    asked: [bool; 2],
    watch: LinkWatch,
}

impl DeviceLinks {
    /// The device links of `wire`'s two ports.
    pub fn of(wire: &DpdkWire) -> DeviceLinks {
        let ports = [wire.access, wire.core];
        let sides = ports.map(|p| (port_name(p), None));
        DeviceLinks {
            ports,
            asked: ports.map(|p| watch_side(p).1.is_none()),
            watch: LinkWatch::new(sides),
        }
    }

    /// Whether any side is a NIC whose link this watches.
    pub fn any(&self) -> bool {
        self.asked.iter().any(|&a| a)
    }

    /// Whether each NIC link this watches (access, core) was up at the last look (true
    /// for a side it does not watch).
    pub fn links_up(&self) -> [bool; 2] {
        self.watch.links_up()
    }

    /// Asks the devices (for a periodic check of the control thread) and returns a change.
    pub fn check(&mut self) -> Option<LinkEvent> {
        let up = [0, 1].map(|i| {
            if self.asked[i] {
                device_link_up(self.ports[i])
            } else {
                None
            }
        });
        self.watch.check(up)
    }
}

/// One worker's queues on both ports.
pub struct DpdkWire {
    shared: Arc<Shared>,
    access: u16,
    core: u16,
    queue: u16,
    direction: Direction,
    /// A poll receives its burst into the first `burst` slots, and sends the forwarded
    /// frames from the start of it. [`MAX_BURST`] long, so an index taken modulo it needs
    /// no bounds check.
    rx: Box<[*mut RteMbuf; MAX_BURST]>,
    /// Frames a poll asks for (1..=[`MAX_BURST`]).
    burst: u16,
    /// Filled by index, the first `nd` (dropped) of a poll are freed. As `rx`.
    drop: Box<[*mut RteMbuf; MAX_BURST]>,
    resets: Vec<*mut RteMbuf>,
    reset_frame: Vec<u8>,
    /// Frames a TX queue did not accept (freed), and resets that could not be sent.
    pub tx_refused: u64,
    /// TCP resets sent back out of the ingress side (`reject`).
    pub resets_sent: u64,
    watch: LinkWatch,
    /// The (access, core) ports' driver names.
    drivers: [String; 2],
    /// Whether a poll asks ahead for the frames received on (access, core): unless their
    /// driver puts them in this core's cache ([`frames_arrive_in_cache`]).
    ahead: [bool; 2],
}

// SAFETY: a wire owns its queue pair exclusively (one wire per queue id), so moving it to
// the worker thread that alone uses it is sound; the mbuf pointers in its arrays are only
// meaningful within one `poll` call; `Shared` is Send + Sync.
unsafe impl Send for DpdkWire {}

impl std::fmt::Debug for DpdkWire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpdkWire")
            .field("access", &self.access)
            .field("core", &self.core)
            .field("queue", &self.queue)
            .field("tx_refused", &self.tx_refused)
            .field("resets_sent", &self.resets_sent)
            .finish_non_exhaustive()
    }
}

impl DpdkWire {
    /// `ports`: (access, core), each its port id and driver name.
    fn new(
        shared: Arc<Shared>,
        [(access, access_driver), (core, core_driver)]: [(u16, String); 2],
        queue: u16,
        burst: usize,
        watch: LinkWatch,
    ) -> Self {
        let drivers = [access_driver, core_driver];
        DpdkWire {
            shared,
            access,
            core,
            watch,
            queue,
            direction: Direction::AccessToCore,
            rx: Box::new([std::ptr::null_mut(); MAX_BURST]),
            burst: burst.clamp(1, MAX_BURST) as u16,
            drop: Box::new([std::ptr::null_mut(); MAX_BURST]),
            resets: Vec::with_capacity(burst),
            reset_frame: Vec::with_capacity(128),
            tx_refused: 0,
            resets_sent: 0,
            ahead: drivers.each_ref().map(|d| !frames_arrive_in_cache(d)),
            drivers,
        }
    }

    /// Sets the direction of the next `poll`.
    pub fn set_direction(&mut self, d: Direction) {
        self.direction = d;
    }

    /// Whether each link (access, core) was up at the last look.
    pub fn links_up(&self) -> [bool; 2] {
        self.watch.links_up()
    }

    /// Looks at both ports' kernel interfaces, for a virtual device on one (for the
    /// worker's periodic check, not per burst): its state (its flags: net_af_packet does
    /// not report link changes itself), and whether it is gone or made anew (the device's
    /// sockets are then bound to nothing, for good). A NIC's own link state is watched by
    /// the control thread instead ([`DeviceLinks`]): ethdev's link query may wait on the
    /// driver's admin queue, which a worker at line rate must not.
    pub fn check_links(&mut self) -> Option<LinkEvent> {
        self.watch.look()
    }

    /// The kernel interfaces the wire's virtual devices are on (name and index; none for
    /// a NIC, net_null or net_pcap).
    pub fn kernel_interfaces(&self) -> Vec<(String, i32)> {
        self.watch.kernel_interfaces()
    }

    /// The (access, core) port ids.
    pub fn ports(&self) -> (u16, u16) {
        (self.access, self.core)
    }

    /// The (access, core) ports' driver names (empty where a device names none).
    pub fn drivers(&self) -> [&str; 2] {
        [&self.drivers[0], &self.drivers[1]]
    }

    /// Whether a poll asks ahead for the frames received on each of (access, core): for a
    /// device whose frames do not arrive in this core's cache ([`frames_arrive_in_cache`]).
    pub fn prefetches(&self) -> [bool; 2] {
        self.ahead
    }

    /// One burst in the current direction: receive, judge with `worker` under the current
    /// policy (as the worker holds it, [`Worker::hold`]), send the forwarded frames on,
    /// free the dropped ones. Returns frames received.
    pub fn poll(&mut self, worker: &mut Worker, policy: &PolicyHandle) -> usize {
        let snapshot = worker.hold(policy);
        let route = route(self.direction, [self.access, self.core], self.ahead);
        // Whether frames are asked for ahead is decided here, once a burst, rather than
        // for every frame in the judge's loop: a poll is built for each (about 1% faster
        // on net_null, bench/results/dpdk-null.md).
        let n = if route.ahead {
            self.poll_with::<true>(worker, &snapshot, route)
        } else {
            self.poll_with::<false>(worker, &snapshot, route)
        };
        worker.give_back(snapshot);
        n
    }

    /// [`DpdkWire::poll`] under `snapshot` on `route`, whose `ahead` is `AHEAD`.
    #[inline(always)]
    fn poll_with<const AHEAD: bool>(
        &mut self,
        worker: &mut Worker,
        snapshot: &Policy,
        route: Route,
    ) -> usize {
        let Route {
            ingress,
            egress,
            egress_side,
            ..
        } = route;
        // SAFETY: the array holds MAX_BURST ≥ `burst` entries; the port is started and
        // queue `self.queue` is used by this wire alone.
        let n = usize::from(unsafe {
            ffi::op25b_rx_burst(ingress, self.queue, self.rx.as_mut_ptr(), self.burst)
        })
        .min(usize::from(self.burst));
        if n == 0 {
            return 0;
        }
        let rx = &self.rx[..n];
        let frame = |i: usize| {
            // SAFETY: `rx[i]` (and the one asked for ahead) were just received, so they are valid
            // mbufs; each is ours until sent or freed below, after the judge's last look,
            // and nothing writes its data.
            unsafe {
                // The frame a few ahead is asked for now, so its miss (a NIC's frame is
                // not in this core's cache) overlaps the parse of this one.
                if AHEAD {
                    if let Some(&next) = rx.get(i + PREFETCH_AHEAD) {
                        ffi::prefetch_frame(next);
                    }
                }
                ffi::mbuf_frame(rx[i])
            }
        };
        let up = self.watch.is_up(egress_side);
        let forwards = snapshot.verdict(Reason::Blocked).forwards();
        // Unless the blocked frames are answered with resets or sampled, the judge only
        // says which they are, as bits (Worker::judge_bits). A burst with nothing blocked
        // (real traffic's usual burst), or under `monitor`, is sent on as it came, unsplit
        // (bench/results/dpdk-null.md: +4-7% on net_null when no frame is blocked).
        let (nf, nd) = if let Some((&bits, nblocked)) = worker.judge_bits(snapshot, n, frame) {
            if nblocked == 0 || forwards {
                (n, 0)
            } else {
                split_bits(&mut self.rx, n, bits, &mut self.drop)
            }
        } else {
            let (blocked, verdicts) = worker.judge_indexed(snapshot, n, frame);
            if blocked.is_empty() || forwards {
                (n, 0)
            } else {
                let (nf, nd) = split(&mut self.rx, n, blocked, &mut self.drop);
                if snapshot.verdict(Reason::Blocked) == Verdict::Reject {
                    self.reset(ingress, nd, verdicts);
                }
                (nf, nd)
            }
        };
        let pool = self.shared.pool;
        self.tx_refused += send_if_up(pool, up, (egress, self.queue), &mut self.rx[..nf]);
        free_all(pool, &mut self.drop[..nd]);
        n
    }

    /// Builds and sends back out of `ingress` a TCP reset for each of the `nd` dropped
    /// frames whose verdict is `Reject` (`drop[k]`, still unfreed, is the blocked list's
    /// k-th frame, whose verdict is `verdicts[k]`).
    #[cold]
    #[inline(never)]
    fn reset(&mut self, ingress: u16, nd: usize, verdicts: &[Verdict]) {
        self.resets.clear();
        for (&m, &v) in self.drop[..nd].iter().zip(verdicts) {
            if v != Verdict::Reject {
                continue;
            }
            // SAFETY: as for `frame` in `poll`: the mbuf is still ours (in `drop`, freed
            // after this).
            let frame = unsafe { ffi::mbuf_frame(m) };
            if !crate::wire::rst::build_reset(frame, &mut self.reset_frame) {
                continue;
            }
            // SAFETY: the pool is live (held by `shared`); the bytes are valid for their
            // length, which fits u16 (a reset is < 100 bytes).
            let r = unsafe {
                ffi::op25b_mbuf_from(
                    self.shared.pool,
                    self.reset_frame.as_ptr(),
                    self.reset_frame.len() as u16,
                )
            };
            if r.is_null() {
                self.tx_refused += 1;
            } else {
                self.resets.push(r);
            }
        }
        if !self.resets.is_empty() {
            let refused = send_or_free(self.shared.pool, (ingress, self.queue), &mut self.resets);
            self.tx_refused += refused;
            self.resets_sent += self.resets.len() as u64 - refused;
        }
    }
}

/// Where one poll's frames come from and go, for a direction.
#[derive(Debug, PartialEq, Eq)]
struct Route {
    ingress: u16,
    egress: u16,
    /// The egress port's side: 0 access, 1 core (its link state is indexed so).
    egress_side: usize,
    /// Whether the frames received are asked for ahead: the ingress port's flag.
    ahead: bool,
}

/// The route of a poll in direction `d` between the (access, core) `ports`, whose frames
/// are each asked for ahead or not by `ahead` (access, core).
#[inline(always)]
fn route(d: Direction, [access, core]: [u16; 2], ahead: [bool; 2]) -> Route {
    match d {
        Direction::AccessToCore => Route {
            ingress: access,
            egress: core,
            egress_side: 1,
            ahead: ahead[0],
        },
        Direction::CoreToAccess => Route {
            ingress: core,
            egress: access,
            egress_side: 0,
            ahead: ahead[1],
        },
    }
}

/// Splits the burst `rx[..n]` by `blocked` (indexes in the burst, strictly rising): the
/// blocked frames go to `drop` in burst order (the list's), and the others move down to the
/// start of `rx`, in burst order; returns how many of each (kept, dropped). The blocked
/// ones become bits, then each word's frames are found by their bits: work per frame of
/// each kind, no branch on each frame's verdict. Both lists come from the bits, so a
/// frame is handed on exactly once whatever the list holds: an index repeated or past the
/// burst cannot free an mbuf twice or one not received. Both arrays are [`MAX_BURST`]
/// long, so an index taken modulo it needs no bounds check.
#[inline(always)]
fn split<T: Copy>(
    rx: &mut [T; MAX_BURST],
    n: usize,
    blocked: &[(u32, u32)],
    drop: &mut [T; MAX_BURST],
) -> (usize, usize) {
    let mut bits = [0u64; MAX_BURST / 64];
    for &(f, _) in blocked {
        let f = f as usize % MAX_BURST;
        bits[f / 64] |= 1 << (f % 64);
    }
    split_bits(rx, n, bits, drop)
}

/// A word of a burst's frames (see [`split_bits`]) whose verdict changes at most this
/// many times from one frame to the next (the frame before the first counts as kept) is
/// split run by run, each run one copy, instead of frame by frame. Blocked frames that
/// come together, as one source's flood does, so cost a few copies; scattered ones cost
/// one count of the changes (on net_null, whose recycled pool hands the dropped frames
/// back first in the next burst, 1.018x the poll; from a capture in random order, where
/// every burst is split frame by frame, 0.999x; in-process A/B,
/// bench/results/dpdk-null.md).
const RUN_CHANGES: u32 = 4;

/// Splits the burst `rx[..n]` by `bits` (bit `i % 64` of word `i / 64` set for each
/// blocked frame `i`), as [`split`] does.
#[inline(always)]
fn split_bits<T: Copy>(
    rx: &mut [T; MAX_BURST],
    n: usize,
    bits: [u64; MAX_BURST / 64],
    drop: &mut [T; MAX_BURST],
) -> (usize, usize) {
    let n = n.min(MAX_BURST);
    let (mut nf, mut nd) = (0usize, 0usize);
    for (w, &word) in bits.iter().enumerate().take(n.div_ceil(64)) {
        // The frames of this word that are in the burst.
        let in_burst = match n - w * 64 {
            r @ 0..64 => (1u64 << r) - 1,
            _ => u64::MAX,
        };
        if ((word ^ (word << 1)) & in_burst).count_ones() <= RUN_CHANGES {
            let runs = (word & in_burst, !word & in_burst);
            (nf, nd) = split_runs(rx, w * 64, runs, drop, (nf, nd));
            continue;
        }
        // This word's blocked frames first: the kept ones below may move over them (never
        // over a later word's, as a kept frame only moves down).
        let mut gone = word & in_burst;
        while gone != 0 {
            drop[nd % MAX_BURST] = rx[(w * 64 + gone.trailing_zeros() as usize) % MAX_BURST];
            nd += 1;
            gone &= gone - 1;
        }
        let mut keep = !word & in_burst;
        while keep != 0 {
            let i = w * 64 + keep.trailing_zeros() as usize;
            rx[nf % MAX_BURST] = rx[i % MAX_BURST];
            nf += 1;
            keep &= keep - 1;
        }
    }
    (nf, nd)
}

/// [`split_bits`] for the word of frames from `at`, whose blocked frames are the bits of
/// `gone` and kept ones those of `keep` (no frame in both), run by run: each run of blocked
/// frames is copied to `drop` from `nd`, then each run of kept ones moves down to `nf` (a
/// kept frame only moves down, so over frames already handed on). Returns the new
/// (`nf`, `nd`). Kept apart from the frame-by-frame loops, which stay as they were.
#[inline(never)]
fn split_runs<T: Copy>(
    rx: &mut [T; MAX_BURST],
    at: usize,
    (mut gone, mut keep): (u64, u64),
    drop: &mut [T; MAX_BURST],
    (mut nf, mut nd): (usize, usize),
) -> (usize, usize) {
    // The lowest run of set bits of `bits`: (first bit, length).
    let lowest_run = |bits: u64| {
        let first = bits.trailing_zeros() as usize;
        (first, (!(bits >> first)).trailing_zeros() as usize)
    };
    // `bits` without its lowest run: adding the lowest set bit carries through the run.
    let clear_lowest_run = |bits: u64| bits & bits.wrapping_add(bits & bits.wrapping_neg());
    while gone != 0 {
        let (first, len) = lowest_run(gone);
        let from = (at + first).min(MAX_BURST);
        let len = len.min(MAX_BURST - from).min(MAX_BURST - nd);
        drop[nd..nd + len].copy_from_slice(&rx[from..from + len]);
        nd += len;
        gone = clear_lowest_run(gone);
    }
    while keep != 0 {
        let (first, len) = lowest_run(keep);
        let from = (at + first).min(MAX_BURST);
        let len = len.min(MAX_BURST - from);
        // A run with nothing dropped before it is already in place.
        if from != nf {
            rx.copy_within(from..from + len, nf);
        }
        nf += len;
        keep = clear_lowest_run(keep);
    }
    (nf, nd)
}

/// Sends `mbufs` on (port, queue) if the egress link is `up`; else frees them all (refused
/// now, not sent stale when the link comes back) to `pool`. Returns how many were not sent.
fn send_if_up(pool: *mut RteMempool, up: bool, to: (u16, u16), mbufs: &mut [*mut RteMbuf]) -> u64 {
    if up {
        send_or_free(pool, to, mbufs)
    } else {
        free_all(pool, mbufs);
        mbufs.len() as u64
    }
}

/// Sends `mbufs` on (port, queue); frees what the queue does not take (to `pool`) and
/// returns how many.
fn send_or_free(
    pool: *mut RteMempool,
    (port, queue): (u16, u16),
    mbufs: &mut [*mut RteMbuf],
) -> u64 {
    if mbufs.is_empty() {
        return 0;
    }
    // SAFETY: `mbufs` holds valid mbufs owned by the caller; the queue is the caller's
    // alone; the driver takes ownership of the first `sent`.
    let sent = usize::from(unsafe {
        ffi::op25b_tx_burst(port, queue, mbufs.as_mut_ptr(), mbufs.len() as u16)
    });
    let rest = &mut mbufs[sent..];
    free_all(pool, rest);
    rest.len() as u64
}

/// Returns every mbuf of `mbufs` to its pool: straight to this lcore's cache of `pool`, the
/// wire's, for a single-segment mbuf of it (every frame received on its ports, and every
/// reset made), with no call into DPDK's libraries; any other through `rte_pktmbuf_free`
/// (shim.c, `op25b_free_to`). On net_null at half to port 25 this made the whole poll
/// about 2% faster than `rte_pktmbuf_free_bulk` (bench/results/dpdk-null.md).
fn free_all(pool: *mut RteMempool, mbufs: &mut [*mut RteMbuf]) {
    if !mbufs.is_empty() {
        // SAFETY: each pointer is a valid mbuf owned by the caller and not used again;
        // `pool` is the live pool of the wire's ports (held by `Shared`).
        unsafe { ffi::op25b_free_to(pool, mbufs.as_mut_ptr(), mbufs.len() as u32) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poll_prefetches_by_its_ingress_ports_driver_and_watches_its_egress_link() {
        // Access port 3 (net_null: not asked for ahead), core port 7 (a NIC's: asked for).
        let ahead = [false, true];
        assert_eq!(
            route(Direction::AccessToCore, [3, 7], ahead),
            Route {
                ingress: 3,
                egress: 7,
                egress_side: 1,
                ahead: false
            }
        );
        assert_eq!(
            route(Direction::CoreToAccess, [3, 7], ahead),
            Route {
                ingress: 7,
                egress: 3,
                egress_side: 0,
                ahead: true
            }
        );
    }

    /// Splits a burst of `n` frames by `blocked` (strictly rising) and checks both lists
    /// against the obvious filter; `what` names the case.
    fn check_split(n: usize, blocked: &[(u32, u32)], what: &str) {
        let frames: Vec<u32> = (0..n as u32).map(|i| 1000 + i).collect();
        let mut rx = [0u32; MAX_BURST];
        rx[..n].copy_from_slice(&frames);
        let mut drop = [0u32; MAX_BURST];
        let (nf, nd) = split(&mut rx, n, blocked, &mut drop);
        assert_eq!(nd, blocked.len(), "{what}");
        let want_kept: Vec<u32> = frames
            .iter()
            .enumerate()
            .filter(|(i, _)| !blocked.iter().any(|&(f, _)| f as usize == *i))
            .map(|(_, &m)| m)
            .collect();
        let want_dropped: Vec<u32> = blocked.iter().map(|&(f, _)| frames[f as usize]).collect();
        assert_eq!(rx[..nf], want_kept[..], "{what}");
        assert_eq!(drop[..nd], want_dropped[..], "{what}");
    }

    #[test]
    fn split_keeps_burst_order_and_lists_the_blocked_in_theirs() {
        let mut next = crate::testkit::xorshift(0x2545_f491_4f6c_dd1d);
        // Every burst size around the word edges, blocked shares from none to all.
        let sizes = [1, 2, 63, 64, 65, 127, 128, 129, 200, 255, 256];
        for (n, share) in sizes.into_iter().flat_map(|n| [0, 1, 3, 8].map(|s| (n, s))) {
            let blocked: Vec<(u32, u32)> = (0..n as u32)
                .filter(|_| share == 8 || (next() % 8) < share)
                .map(|i| (i, i * 7))
                .collect();
            check_split(n, &blocked, &format!("n={n} share={share}/8"));
        }
    }

    #[test]
    fn split_by_runs_hands_on_what_the_frame_by_frame_split_does() {
        let mut next = crate::testkit::xorshift(0x9e37_79b9_7f4a_7c15);
        let sizes = [1, 2, 5, 63, 64, 65, 100, 127, 128, 129, 255, 256];
        // Blocked frames in 1 to 3 runs anywhere (those that meet or reach past the burst
        // are cut there): a word has up to 6 changes of verdict, so both sides of
        // RUN_CHANGES are split, and runs start and end at word edges and burst ends.
        for n in sizes {
            for case in 0..400 {
                let mut is_blocked = vec![false; n];
                for _ in 0..=(case % 3) {
                    let first = (next() % n as u64) as usize;
                    let len = 1 + (next() % 70) as usize;
                    for b in is_blocked.iter_mut().skip(first).take(len) {
                        *b = true;
                    }
                }
                let blocked: Vec<(u32, u32)> = (0..n as u32)
                    .filter(|&i| is_blocked[i as usize])
                    .map(|i| (i, 0))
                    .collect();
                check_split(n, &blocked, &format!("n={n} blocked={blocked:?}"));
            }
        }
        // Two-frame runs: RUN_CHANGES changes in a word (split by runs) and two more
        // (frame by frame), in the first word and the second.
        for at in [0, 64] {
            let runs = |k: u32| -> Vec<(u32, u32)> {
                (0..k)
                    .flat_map(|r| [at + 10 * r, at + 10 * r + 1])
                    .map(|i| (i, 0))
                    .collect()
            };
            for k in [RUN_CHANGES / 2, RUN_CHANGES / 2 + 1] {
                check_split(128, &runs(k), &format!("{k} runs from {at}"));
            }
            // The first frame blocked: its change is counted against the kept frame before.
            let first = [(at, 0), (at + 5, 0), (at + 6, 0)];
            check_split(128, &first, &format!("from {at}, first blocked"));
        }
    }

    #[test]
    fn only_devices_that_copy_frames_on_the_receiving_core_skip_the_prefetch() {
        // The receive of these writes (or never moves) each frame on the polling core.
        for d in ["net_null", "net_pcap", "net_af_packet", "net_tap"] {
            assert!(frames_arrive_in_cache(d), "{d}");
        }
        // NICs (DMA), rings and shared memory (another core wrote the frame), and a device
        // that names no driver: asked for ahead.
        for d in [
            "net_ice",
            "net_i40e",
            "net_ixgbe",
            "mlx5_pci",
            "net_virtio",
            "net_ring",
            "net_memif",
            "net_af_xdp",
            "",
            "net_null ",
            "NET_NULL",
        ] {
            assert!(!frames_arrive_in_cache(d), "{d:?}");
        }
    }

    #[test]
    fn split_hands_each_frame_on_once_whatever_the_list_holds() {
        // A repeated index, one past the burst and one out of order: every frame still goes
        // exactly once to one side (no mbuf freed twice, none not received).
        let mut rx = [0u32; MAX_BURST];
        for (i, m) in rx.iter_mut().enumerate() {
            *m = 1000 + i as u32;
        }
        let mut drop = [0u32; MAX_BURST];
        let blocked = [(3, 0), (3, 0), (300, 0), (12, 0), (1, 0)];
        let (nf, nd) = split(&mut rx, 10, &blocked, &mut drop);
        assert_eq!(drop[..nd], [1001, 1003]);
        assert_eq!(rx[..nf], [1000, 1002, 1004, 1005, 1006, 1007, 1008, 1009]);
    }
}
