//! The AF_XDP backend (`af_xdp` feature): the bump in the wire between two kernel
//! interfaces (`access`, `core`) with XDP sockets, one per interface per worker queue, each
//! with its own UMEM.
//!
//! [`open_wire`] does, per interface: create an XSKMAP with one entry per queue; load a
//! six-instruction XDP program, assembled here by hand and loaded with raw `bpf(2)` calls
//! (no clang, no libbpf), that redirects every frame of queue *q* to the socket in entry
//! *q* (and passes it to the stack when the entry is empty); open and bind one socket per
//! queue (zero-copy if the driver supports it, else copy mode); fill the map; attach the
//! program through a BPF link, in native (driver) mode if the driver has it, else in
//! generic (skb) mode. veth has native XDP but no zero-copy, so the testbed runs in native
//! mode with copying sockets.
//!
//! Frames longer than one 4 KiB UMEM frame (a jumbo MTU) use AF_XDP multi-buffer: the
//! program is loaded with `BPF_F_XDP_HAS_FRAGS`, sockets are bound with `XDP_USE_SG`, and a
//! packet arrives as a chain of RX descriptors marked `XDP_PKT_CONTD` but the last. It is
//! judged by its first fragment (which holds every header the parser reads) and forwarded
//! as the same chain. When the larger MTU of the two interfaces needs multi-buffer and the
//! kernel or driver refuses it at any step, start-up fails with [`XdpError::MultiBuffer`]
//! instead of losing the large frames; otherwise multi-buffer is used when available.
//!
//! A wire's [`XdpWire::poll`] peeks a burst from the ingress socket's RX ring, judges the
//! frames in place in the UMEM with [`Worker::judge_indexed`], copies each forwarded
//! frame into the egress socket's UMEM and TX ring (the two interfaces have separate
//! UMEMs, so forwarding is one copy per frame even when both sockets are zero-copy), builds
//! resets for `reject` into the ingress socket's TX ring, returns every received frame to
//! the fill ring, and kicks each TX ring with at most one `sendto`.
//!
//! NICs that strip VLAN tags on receive (rx VLAN offload) hand XDP the frame without its
//! tag, and forwarding it from the UMEM would drop the tag. So before attaching, the
//! backend turns `rx-vlan-hw-parse` and `rx-vlan-stag-hw-parse` off on both interfaces
//! (SIOCETHTOOL, ETHTOOL_SFEATURES), says so in its start-up line, and turns them back on
//! when the wire is torn down; a driver that will not turn them off stops start-up. Given
//! a ledger directory, it writes down what it turns off until it is back on, so a start
//! after a kill turns back on what the killed process left off. (veth
//! strips nothing from a frame, but a tag its peer's stack handed over as metadata —
//! tx-vlan offload on the peer — is not in the frame XDP sees; a real wire has no such
//! metadata.)
//!
//! Invariants:
//! - Every RX queue of both interfaces has a worker's socket: an interface with more
//!   queues than workers (or fewer) is refused at start ([`XdpError::UnservedQueues`]),
//!   because the program hands a frame of a queue without a socket to the kernel's stack,
//!   which on a bump in the wire forwards none of them and counts them nowhere.
//! - Every received packet (one or more UMEM frames) is judged once and either copied
//!   whole, all fragments in order, to the egress TX ring or not at all (dropped, or
//!   refused for lack of free TX frames or because the egress link was down at the
//!   worker's last look: counted in `tx_refused`); its UMEM frames go back to the fill
//!   ring in the same poll. A poll takes whole packets only.
//! - Nothing is allocated or locked per frame; a poll makes at most one syscall per
//!   interface (the TX kick), none when nothing was received.
//! - The program is attached only while the wires (through their shared attachment) live;
//!   on every error path what was set up is torn down again (BPF links detach on close).
//! - Every failure to start is an [`XdpError`] naming the interface, the step and what to
//!   do; nothing here panics.

mod sys;

pub use super::af_packet::Direction;
use super::link::{LinkEvent, LinkWatch};
use super::privilege::{
    family_hint, permission_hint, Privileges, CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW,
};
use crate::policy::Verdict;
use crate::worker::{PolicyHandle, Worker};
use std::sync::Arc;
pub use sys::BindMode;
use sys::{
    Promisc, RxVlanOff, VlanOffloadError, XdpLink, XdpProgram, Xsk, XskMap, FRAME_SIZE,
    RX_FRAME_ROOM,
};

/// Most frames one poll moves (the configured burst is capped to this).
pub const MAX_BURST: usize = 256;

/// Why the AF_XDP backend cannot start.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// The interface does not exist here.
    #[error("interface {name:?} ({side}) does not exist in this network namespace: check [dataplane] {side}")]
    NoInterface {
        /// `access` or `core`.
        side: &'static str,
        /// The configured name.
        name: String,
    },
    /// More workers than the interface has queues.
    #[error("{workers} workers need {workers} RX queues on {name}, which has {queues}: lower [dataplane] workers or add queues (`ethtool -L {name} combined {workers}`; veth: create it with numrxqueues/numtxqueues)")]
    TooManyQueues {
        /// The interface.
        name: String,
        /// Workers asked for.
        workers: usize,
        /// Queues it has.
        queues: usize,
    },
    /// More RX queues than workers: frames the NIC steers to a queue without a socket
    /// would go to the kernel's stack, which forwards none of them on a bump in the wire.
    #[error("{name} has {queues} RX queues but [dataplane] workers = {workers}: AF_XDP gives worker i queue i only, so the frames the NIC spreads (RSS) over {unserved} would go to the kernel's stack, which forwards none of them and counts them nowhere (about {lost}% of the flows lost); make the queues match the workers (`{fix}`) or the workers match the queues ({workers_fix})", unserved = unserved(*.workers, *.queues), lost = (.queues - .workers) * 100 / .queues, workers_fix = workers_fix(*.queues))]
    UnservedQueues {
        /// The interface.
        name: String,
        /// Workers asked for.
        workers: usize,
        /// Queues it has.
        queues: usize,
        /// The command that gives it `workers` queues.
        fix: String,
    },
    /// How many RX queues the interface has cannot be found out.
    #[error("cannot count the RX queues of {name} (/sys/class/net/{name}/queues is not readable and the driver does not report its channels to `ethtool -l`): AF_XDP serves only {served} and would lose the frames of any other, so op25b does not start blind; make /sys readable to op25b, or use backend = \"af_packet\"", served = served(*.workers))]
    UnknownQueues {
        /// The interface.
        name: String,
        /// Workers asked for.
        workers: usize,
    },
    /// The MTU needs frames longer than one UMEM frame, and the kernel or driver refused
    /// AF_XDP multi-buffer at some step.
    #[error("AF_XDP on {name}: an MTU of {mtu} bytes means frames of up to {frame} bytes, more than one {FRAME_SIZE}-byte UMEM frame holds ({RX_FRAME_ROOM} bytes), so AF_XDP multi-buffer is needed, and {step} with multi-buffer failed: {source}; use Linux 6.6 or newer and a driver with XDP multi-buffer support, or lower the MTU of both interfaces to {max_mtu} or less (`ip link set dev IFACE mtu {max_mtu}`), or use backend = \"af_packet\"", max_mtu = max_single_buffer_mtu())]
    MultiBuffer {
        /// The interface.
        name: String,
        /// The larger MTU of the two interfaces.
        mtu: u32,
        /// The longest frame that MTU allows (Ethernet header and two VLAN tags included).
        frame: u32,
        /// What was being done.
        step: &'static str,
        /// The kernel's answer.
        source: std::io::Error,
    },
    /// Receive VLAN tag stripping is on and could not be turned off.
    #[error("AF_XDP on {name}: {what}; with it on, the NIC removes VLAN tags before XDP sees the frame and op25b would forward tagged frames untagged: turn it off yourself (`ethtool -K {name} rxvlan off rx-vlan-stag-hw-parse off`) or use backend = \"af_packet\"")]
    RxVlan {
        /// The interface.
        name: String,
        /// What went wrong.
        what: String,
    },
    /// A setup step failed.
    #[error("AF_XDP on {name}: {step} failed: {source}{hint}")]
    Step {
        /// The interface.
        name: String,
        /// What was being done.
        step: &'static str,
        /// The kernel's answer.
        source: std::io::Error,
        /// What to do about it (empty, or "; " and advice).
        hint: String,
    },
}

impl XdpError {
    /// Whether starting again later may succeed without anyone changing anything: an
    /// interface that may appear, another XDP program that may go, memory that may free
    /// up. Not so for a queue count, an MTU, a driver's or kernel's refusal, or missing
    /// privileges: those need the operator.
    pub fn retry_may_help(&self) -> bool {
        match self {
            XdpError::NoInterface { .. } => true,
            XdpError::TooManyQueues { .. }
            | XdpError::UnservedQueues { .. }
            | XdpError::UnknownQueues { .. }
            | XdpError::MultiBuffer { .. }
            | XdpError::RxVlan { .. } => false,
            XdpError::Step { source, .. } => !matches!(
                source.raw_os_error(),
                Some(
                    libc::EPERM
                        | libc::EACCES
                        | libc::EAFNOSUPPORT
                        | libc::ENOSYS
                        | libc::EINVAL
                        | libc::ERANGE
                        | libc::EOPNOTSUPP
                )
            ),
        }
    }
}

/// The drop-in that gives the systemd unit what AF_XDP needs.
const UNIT_DROPIN: &str = "scripts/op25b.service.d/af_xdp.conf";

/// What to do about a failed step, from its errno and, for a refusal, what this process
/// holds (`p`): root in a sandbox is told about the sandbox, not to become root.
fn hint(e: &std::io::Error, p: Option<Privileges>) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => {
            permission_hint(p, &[CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF], UNIT_DROPIN)
        }
        Some(libc::EAFNOSUPPORT) => family_hint(p, "AF_XDP", "CONFIG_XDP_SOCKETS", UNIT_DROPIN)
            + "; or use backend = \"af_packet\"",
        Some(libc::ENOSYS) => "; this kernel has no bpf() system call (CONFIG_BPF_SYSCALL), or a seccomp filter (systemd SystemCallFilter=, a container) hides it: use backend = \"af_packet\"".into(),
        Some(libc::EBUSY | libc::EEXIST) => "; another XDP program or socket holds this interface/queue: see it with `ip link show dev IFACE` (`xdp`/`xdpdrv` native, `xdpgeneric` generic mode) and detach it with `ip link set dev IFACE xdp off` or, for a generic one, `ip link set dev IFACE xdpgeneric off`, or stop the other program".into(),
        Some(libc::ENOMEM | libc::ENOBUFS) => "; the UMEM could not be locked: raise the locked-memory limit (`ulimit -l`, LimitMEMLOCK=) or give op25b CAP_IPC_LOCK".into(),
        Some(libc::ERANGE | libc::EINVAL) => "; the driver refused XDP for this interface (some refuse it above an MTU of about 3500 bytes): lower the MTU or use backend = \"af_packet\"".into(),
        _ => String::new(),
    }
}

fn step<'a>(name: &'a str, step: &'static str) -> impl FnOnce(std::io::Error) -> XdpError + 'a {
    move |source| XdpError::Step {
        name: name.into(),
        step,
        hint: hint(&source, Privileges::current()),
        source,
    }
}

/// Bytes on the wire beyond the MTU: the Ethernet header and up to two VLAN tags.
const L2_OVERHEAD: u32 = 14 + 2 * 4;

/// The largest MTU whose frames fit one UMEM frame.
const fn max_single_buffer_mtu() -> u32 {
    RX_FRAME_ROOM - L2_OVERHEAD
}

/// A step that needs multi-buffer when `mb` says it must have it (`Some((mtu, frame))`).
fn mb_step<'a>(
    name: &'a str,
    what: &'static str,
    mb: Option<(u32, u32)>,
) -> impl FnOnce(std::io::Error) -> XdpError + 'a {
    move |source| match mb {
        // A refusal of the socket or the program itself is no multi-buffer matter.
        Some(_)
            if matches!(
                source.raw_os_error(),
                Some(libc::EPERM | libc::EACCES | libc::EAFNOSUPPORT | libc::ENOSYS)
            ) =>
        {
            step(name, what)(source)
        }
        Some((mtu, frame)) => XdpError::MultiBuffer {
            name: name.into(),
            mtu,
            frame,
            step: what,
            source,
        },
        None => step(name, what)(source),
    }
}

/// One interface's XDP setup, shared by every worker's socket on it.
#[derive(Debug)]
struct Attachment {
    // Field order is drop order: detach first, then restore VLAN stripping (no frame
    // reaches the sockets stripped), then the program and map go.
    _link: XdpLink,
    vlan: RxVlanOff,
    _prog: XdpProgram,
    _map: XskMap,
    _promisc: Promisc,
    native: bool,
    /// The interface and the index it had when attached, for the link watch.
    name: String,
    ifindex: u32,
}

/// What frames a wire must carry.
#[derive(Clone, Copy, Debug)]
struct Frames {
    /// The larger MTU of the two interfaces.
    mtu: u32,
    /// The longest frame it allows.
    frame: u32,
}

impl Frames {
    /// `Some((mtu, frame))` when such frames do not fit one UMEM frame.
    fn need_multi_buffer(self) -> Option<(u32, u32)> {
        (self.frame > RX_FRAME_ROOM).then_some((self.mtu, self.frame))
    }
}

/// How many RX queues `name` has (sysfs: the queues the kernel set up, as `ethtool -L`
/// left them), if that can be read.
fn rx_queues(name: &str) -> Option<usize> {
    let dir = std::fs::read_dir(format!("/sys/class/net/{name}/queues")).ok()?;
    Some(
        dir.filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
            .count(),
    )
}

/// The queues `workers` sockets serve, for messages: "queue 0", "queues 0..3".
fn served(workers: usize) -> String {
    match workers {
        0 | 1 => "queue 0".into(),
        w => format!("queues 0..{}", w - 1),
    }
}

/// The queues of `queues` that `workers` sockets leave without one: "queue 1",
/// "queues 2..15".
fn unserved(workers: usize, queues: usize) -> String {
    if queues == workers + 1 {
        format!("queue {workers}")
    } else {
        format!("queues {workers}..{}", queues - 1)
    }
}

/// The `[dataplane] workers` advice for an interface with `queues` RX queues.
fn workers_fix(queues: usize) -> String {
    if queues <= 64 {
        format!("[dataplane] workers = {queues}")
    } else {
        format!("[dataplane] workers is at most 64, fewer than its {queues} queues, so lower the queues")
    }
}

/// Checks that `workers` sockets (queues `0..workers`) cover every RX queue of `name`:
/// `queues` from sysfs, `channels` from ethtool (the fallback count, and which `ethtool
/// -L` form the advice gives).
fn check_queues(
    name: &str,
    workers: usize,
    queues: Option<usize>,
    channels: Option<sys::Channels>,
) -> Result<(), XdpError> {
    let queues = queues
        .filter(|&q| q > 0)
        .or_else(|| channels.map(|c| c.rx_queues() as usize).filter(|&q| q > 0));
    let Some(queues) = queues else {
        return Err(XdpError::UnknownQueues {
            name: name.into(),
            workers,
        });
    };
    if workers > queues {
        return Err(XdpError::TooManyQueues {
            name: name.into(),
            workers,
            queues,
        });
    }
    if queues > workers {
        // Drivers with combined channels take `combined N`; those with RX-only channels
        // (veth, some NICs) `rx N`.
        let kind = match channels {
            Some(c) if c.max_combined == 0 && c.rx > 0 => "rx",
            _ => "combined",
        };
        return Err(XdpError::UnservedQueues {
            name: name.into(),
            workers,
            queues,
            fix: format!("ethtool -L {name} {kind} {workers}"),
        });
    }
    Ok(())
}

/// Sets up `name` with one socket per queue `0..workers`; returns the attachment and the
/// sockets in queue order.
fn attach(
    side: &'static str,
    name: &str,
    workers: usize,
    frames: Frames,
    ledger: Option<&std::path::Path>,
) -> Result<(Attachment, Vec<Xsk>), XdpError> {
    let ifindex = super::sys::ifindex_of(name)
        .and_then(|i| u32::try_from(i).ok())
        .ok_or_else(|| XdpError::NoInterface {
            side,
            name: name.into(),
        })?;
    let mb = frames.need_multi_buffer();
    // The program passes a frame of a queue without a socket to the kernel's stack (it
    // must: XDP_DROP would be no better), so every queue needs its worker.
    check_queues(name, workers, rx_queues(name), sys::channels(name))?;
    let map = XskMap::create(workers as u32).map_err(step(name, "creating the XSKMAP"))?;
    // Always multi-buffer aware when the kernel allows (5.18+), so the driver hands over
    // large frames; without it only if the frames fit one UMEM frame anyway.
    let prog = match XdpProgram::load(&map, true) {
        Ok(p) => p,
        Err(e) if mb.is_none() && e.raw_os_error() == Some(libc::EINVAL) => {
            XdpProgram::load(&map, false).map_err(step(name, "loading the XDP redirect program"))?
        }
        Err(e) => {
            return Err(mb_step(
                name,
                "loading the XDP redirect program (BPF_F_XDP_HAS_FRAGS)",
                mb,
            )(e))
        }
    };
    let mut socks = Vec::with_capacity(workers);
    for q in 0..workers as u32 {
        let x = Xsk::open(ifindex, q, true, mb.is_some()).map_err(mb_step(
            name,
            "binding an AF_XDP socket (XDP_USE_SG)",
            mb,
        ))?;
        map.insert(q, &x)
            .map_err(step(name, "adding the socket to the XSKMAP"))?;
        socks.push(x);
    }
    let promisc = Promisc::on(ifindex).map_err(step(name, "enabling promiscuous mode"))?;
    // Before the program attaches, so no frame reaches a socket with its tag stripped.
    let vlan = RxVlanOff::apply(name, ifindex, ledger).map_err(|e| XdpError::RxVlan {
        name: name.into(),
        what: match e {
            VlanOffloadError::Ethtool(what, err) => {
                format!("turning off receive VLAN stripping ({what}) failed: {err}")
            }
            VlanOffloadError::Fixed(f) => {
                format!("{f} is on and the driver does not let it be turned off")
            }
            VlanOffloadError::Stuck(f) => format!("{f} stays on after being turned off"),
        },
    })?;
    let (link, native) = match XdpLink::attach(&prog, ifindex, sys::XDP_FLAGS_DRV_MODE) {
        Ok(l) => (l, true),
        Err(native_err) => match XdpLink::attach(&prog, ifindex, sys::XDP_FLAGS_SKB_MODE) {
            Ok(l) => (l, false),
            // A refusal of both modes: report the native one unless generic says more.
            Err(e) if e.raw_os_error() == native_err.raw_os_error() => {
                return Err(mb_step(name, "attaching the XDP program", mb)(native_err))
            }
            Err(e) => return Err(mb_step(name, "attaching the XDP program", mb)(e)),
        },
    };
    Ok((
        Attachment {
            _link: link,
            vlan,
            _prog: prog,
            _map: map,
            _promisc: promisc,
            native,
            name: name.to_string(),
            ifindex,
        },
        socks,
    ))
}

/// Attaches to `access` and `core` with one queue per worker and returns one wire per
/// worker (worker `i` owns queue `i` of both interfaces). `ledger`: a directory that
/// outlives a crash (the appliance's runtime directory), where the receive VLAN stripping
/// turned off is written down until it is back on, so a start after a crash restores it.
pub fn open_wire(
    access: &str,
    core: &str,
    workers: usize,
    burst: usize,
    ledger: Option<&std::path::Path>,
) -> Result<Vec<XdpWire>, XdpError> {
    let burst = burst.clamp(1, MAX_BURST);
    // Frames cross from one interface to the other, so both must carry the larger MTU's.
    let mtu = crate::port::sys::mtu_of(access)
        .max(crate::port::sys::mtu_of(core))
        .unwrap_or(1500);
    let frames = Frames {
        mtu,
        frame: mtu.saturating_add(L2_OVERHEAD),
    };
    let (a, a_socks) = attach("access", access, workers, frames, ledger)?;
    let (c, c_socks) = attach("core", core, workers, frames, ledger)?;
    let side = |a: &Attachment| {
        (
            a.name.clone(),
            i32::try_from(a.ifindex).ok().map(|i| (a.name.clone(), i)),
        )
    };
    let sides = [side(&a), side(&c)];
    let shared = Arc::new([a, c]);
    Ok(a_socks
        .into_iter()
        .zip(c_socks)
        .map(|(access, core)| XdpWire {
            shared: shared.clone(),
            access,
            core,
            direction: Direction::AccessToCore,
            burst: burst as u32,
            reset_frame: Vec::with_capacity(128),
            tx_refused: 0,
            resets_sent: 0,
            watch: LinkWatch::new(sides.clone()),
        })
        .collect())
}

/// One worker's sockets on both interfaces.
#[derive(Debug)]
pub struct XdpWire {
    shared: Arc<[Attachment; 2]>,
    access: Xsk,
    core: Xsk,
    direction: Direction,
    burst: u32,
    reset_frame: Vec<u8>,
    /// Forwarded frames (and resets) with no free TX frame or slot, or too long for one.
    pub tx_refused: u64,
    /// TCP resets sent back out of the ingress side (`reject`).
    pub resets_sent: u64,
    watch: LinkWatch,
}

impl XdpWire {
    /// Sets the direction of the next `poll`.
    pub fn set_direction(&mut self, d: Direction) {
        self.direction = d;
    }

    /// How each side is attached, e.g. "access: native XDP, copy mode; core: …".
    pub fn describe(&self) -> String {
        let side = |a: &Attachment, x: &Xsk| {
            let off: Vec<&str> = a.vlan.turned_off().collect();
            let vlan = if off.is_empty() {
                String::new()
            } else {
                format!(", {} turned off until exit", off.join(" and "))
            };
            let inherited = a.vlan.inherited();
            let vlan = if inherited.is_empty() {
                vlan
            } else {
                format!(
                    "{vlan} ({} found left off by an op25b that did not stop cleanly)",
                    inherited.join(" and ")
                )
            };
            let vlan = if off.is_empty() || a.vlan.recorded() {
                vlan
            } else {
                format!("{vlan}, not written down: a kill would leave them off")
            };
            format!(
                "{} XDP, {} sockets, {}{vlan}",
                if a.native { "native" } else { "generic (skb)" },
                match x.mode {
                    BindMode::ZeroCopy => "zero-copy",
                    BindMode::Copy => "copy-mode",
                },
                if x.multi_buffer {
                    "multi-buffer"
                } else {
                    "single-buffer"
                },
            )
        };
        format!(
            "access: {}; core: {}",
            side(&self.shared[0], &self.access),
            side(&self.shared[1], &self.core)
        )
    }

    /// One burst in the current direction: receive, judge with `worker` under the current
    /// policy, send the forwarded frames on and resets back. Returns frames received.
    pub fn poll(&mut self, worker: &mut Worker, policy: &PolicyHandle) -> usize {
        let (ingress, egress, egress_side) = match self.direction {
            Direction::AccessToCore => (&mut self.access, &mut self.core, 1),
            Direction::CoreToAccess => (&mut self.core, &mut self.access, 0),
        };
        // A frame for a side whose link was down at the last look is refused (the kernel
        // would take it and drop it uncounted).
        let egress_up = self.watch.is_up(egress_side);
        let n = ingress.rx_peek(self.burst);
        if n == 0 {
            return 0;
        }
        egress.reap();
        let snapshot = policy.load();
        let rx: &Xsk = ingress;
        let (blocked, verdicts) =
            worker.judge_indexed(&snapshot, n as usize, |i| rx.rx_frame(i as u32));
        // Only the blocked frames are listed (in burst order); every other is forwarded.
        let mut listed = blocked.iter().zip(verdicts).peekable();
        let mut resets = 0u32;
        for i in 0..n {
            let v = match listed.peek() {
                Some(&(&(f, _), &v)) if f == i => {
                    listed.next();
                    v
                }
                _ => Verdict::Forward,
            };
            match v {
                Verdict::Forward => {
                    if !egress_up || !egress.tx_copy_packet(ingress.rx_frags(i)) {
                        self.tx_refused += 1;
                    }
                }
                Verdict::Drop => {}
                Verdict::Reject => {
                    if crate::wire::rst::build_reset(ingress.rx_frame(i), &mut self.reset_frame) {
                        if ingress.tx_copy(&self.reset_frame) {
                            resets += 1;
                            self.resets_sent += 1;
                        } else {
                            self.tx_refused += 1;
                        }
                    }
                }
            }
        }
        ingress.rx_release();
        egress.kick();
        if resets > 0 {
            ingress.kick();
        }
        n as usize
    }

    /// Looks at both interfaces (a few syscalls; for the worker's periodic check, not per
    /// burst): a link that changed state, or an interface gone or made anew, which leaves
    /// the sockets and the XDP program bound to nothing for good.
    pub fn check_links(&mut self) -> Option<LinkEvent> {
        self.watch.look()
    }

    /// Whether each link (access, core) was up at the last look.
    pub fn links_up(&self) -> [bool; 2] {
        self.watch.links_up()
    }

    /// Waits up to `timeout_ms` for a frame on either side; first retries sends a full
    /// device queue refused and takes back completed TX frames.
    pub fn wait(&mut self, timeout_ms: i32) {
        self.access.flush();
        self.core.flush();
        if self.access.rx_ready() || self.core.rx_ready() {
            return;
        }
        sys::wait_any(&[self.access.raw_fd(), self.core.raw_fd()], timeout_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_interface_is_named() {
        let e = open_wire("op25b-no-such0", "op25b-no-such1", 1, 32, None).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("\"op25b-no-such0\" (access) does not exist"),
            "{text}"
        );
    }

    #[test]
    fn a_jumbo_mtu_needs_multi_buffer_and_its_refusal_says_what_to_do() {
        let f = |mtu: u32| Frames {
            mtu,
            frame: mtu + L2_OVERHEAD,
        };
        assert_eq!(f(1500).need_multi_buffer(), None);
        assert_eq!(f(max_single_buffer_mtu()).need_multi_buffer(), None);
        assert_eq!(
            f(max_single_buffer_mtu() + 1).need_multi_buffer(),
            Some((3819, 3841))
        );
        assert_eq!(f(9000).need_multi_buffer(), Some((9000, 9022)));
        let e = mb_step(
            "eth9",
            "binding an AF_XDP socket (XDP_USE_SG)",
            Some((9000, 9022)),
        )(std::io::Error::from_raw_os_error(libc::EINVAL));
        assert_eq!(
            e.to_string(),
            "AF_XDP on eth9: an MTU of 9000 bytes means frames of up to 9022 bytes, more than one \
             4096-byte UMEM frame holds (3840 bytes), so AF_XDP multi-buffer is needed, and \
             binding an AF_XDP socket (XDP_USE_SG) with multi-buffer failed: Invalid argument \
             (os error 22); use Linux 6.6 or newer and a driver with XDP multi-buffer support, \
             or lower the MTU of both interfaces to 3818 or less (`ip link set dev IFACE mtu \
             3818`), or use backend = \"af_packet\""
        );
    }

    #[test]
    fn every_queue_needs_a_worker_and_the_refusal_names_the_fix() {
        let nic = |combined| {
            Some(sys::Channels {
                max_combined: 64,
                rx: 0,
                combined,
            })
        };
        let veth = |rx| {
            Some(sys::Channels {
                max_combined: 0,
                rx,
                combined: 0,
            })
        };
        assert!(check_queues("eth1", 2, Some(2), nic(2)).is_ok());
        assert!(check_queues("eth1", 1, Some(1), None).is_ok());
        // sysfs unreadable: ethtool's count stands in.
        assert!(check_queues("eth1", 4, None, nic(4)).is_ok());
        let e = check_queues("eth1", 2, Some(16), nic(16)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "eth1 has 16 RX queues but [dataplane] workers = 2: AF_XDP gives worker i queue i \
             only, so the frames the NIC spreads (RSS) over queues 2..15 would go to the \
             kernel's stack, which forwards none of them and counts them nowhere (about 87% \
             of the flows lost); make the queues match the workers (`ethtool -L eth1 combined \
             2`) or the workers match the queues ([dataplane] workers = 16)"
        );
        let e = check_queues("acc0", 1, Some(2), veth(2))
            .unwrap_err()
            .to_string();
        assert!(e.contains("over queue 1 would go"), "{e}");
        assert!(e.contains("`ethtool -L acc0 rx 1`"), "{e}");
        let e = check_queues("eth1", 1, Some(128), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("(`ethtool -L eth1 combined 1`)")
                && e.contains("workers is at most 64, fewer than its 128 queues"),
            "{e}"
        );
        assert!(matches!(
            check_queues("eth1", 4, Some(2), nic(2)),
            Err(XdpError::TooManyQueues { queues: 2, .. })
        ));
        let e = check_queues("eth1", 2, None, None).unwrap_err().to_string();
        assert!(
            e.starts_with("cannot count the RX queues of eth1") && e.contains("queues 0..1"),
            "{e}"
        );
    }

    #[test]
    fn errno_hints_say_what_to_do() {
        let error = |errno, p| {
            let source = std::io::Error::from_raw_os_error(errno);
            XdpError::Step {
                name: "eth9".into(),
                step: "attaching the XDP program",
                hint: hint(&source, p),
                source,
            }
        };
        let user = Privileges {
            root: false,
            effective: 0,
            seccomp: false,
        };
        assert_eq!(
            error(libc::EPERM, Some(user)).to_string(),
            "AF_XDP on eth9: attaching the XDP program failed: Operation not permitted (os error 1); run op25b as root (or give it CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF; it runs as a user without them: under systemd, CapabilityBoundingSet=/AmbientCapabilities= (install scripts/op25b.service.d/af_xdp.conf); with `setcap` on the binary otherwise); kernels before 5.8 have no CAP_BPF and need CAP_SYS_ADMIN instead"
        );
        // Root under systemd's default unit: CAP_NET_RAW and CAP_NET_ADMIN only, and the
        // seccomp filter of RestrictAddressFamilies=.
        let unit = Privileges {
            root: true,
            effective: (1 << 12) | (1 << 13),
            seccomp: true,
        };
        let e = error(libc::EPERM, Some(unit)).to_string();
        assert!(
            e.contains("runs as root but without CAP_BPF")
                && e.contains("CapabilityBoundingSet=/AmbientCapabilities= (install scripts/op25b.service.d/af_xdp.conf)")
                && e.contains("in a container"),
            "{e}"
        );
        let e = error(libc::EAFNOSUPPORT, Some(unit)).to_string();
        assert!(
            e.contains("AF_XDP sockets are refused and a seccomp filter is on")
                && e.contains("RestrictAddressFamilies= must list AF_XDP")
                && e.contains("CONFIG_XDP_SOCKETS")
                && e.ends_with("or use backend = \"af_packet\""),
            "{e}"
        );
        assert!(!error(libc::EPERM, Some(unit)).retry_may_help());
        assert!(error(libc::EBUSY, Some(unit)).retry_may_help());
        // A refused socket under a jumbo MTU is a permission matter, not multi-buffer.
        let e = mb_step(
            "eth9",
            "binding an AF_XDP socket (XDP_USE_SG)",
            Some((9000, 9022)),
        )(std::io::Error::from_raw_os_error(libc::EAFNOSUPPORT));
        assert!(matches!(e, XdpError::Step { .. }), "{e}");
    }
}
