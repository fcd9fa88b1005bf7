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
//! A wire's [`XdpWire::poll`] peeks a burst from the ingress socket's RX ring, judges the
//! frames in place in the UMEM with [`Worker::classify_frames`], copies each forwarded
//! frame into the egress socket's UMEM and TX ring (the two interfaces have separate
//! UMEMs, so forwarding is one copy per frame even when both sockets are zero-copy), builds
//! resets for `reject` into the ingress socket's TX ring, returns every received frame to
//! the fill ring, and kicks each TX ring with at most one `sendto`.
//!
//! Invariants:
//! - Every received frame is judged once and either copied to the egress TX ring or not
//!   (dropped, or refused for lack of a free TX frame: counted in `tx_refused`); its UMEM
//!   frame goes back to the fill ring in the same poll.
//! - Nothing is allocated or locked per frame; a poll makes at most one syscall per
//!   interface (the TX kick), none when nothing was received.
//! - The program is attached only while the wires (through their shared attachment) live;
//!   on every error path what was set up is torn down again (BPF links detach on close).
//! - Every failure to start is an [`XdpError`] naming the interface, the step and what to
//!   do; nothing here panics.

mod sys;

pub use super::af_packet::Direction;
use crate::policy::Verdict;
use crate::worker::{PolicyHandle, Worker};
use std::sync::Arc;
pub use sys::BindMode;
use sys::{Promisc, XdpLink, XdpProgram, Xsk, XskMap};

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
        hint: &'static str,
    },
}

/// What to do about a failed step, from its errno.
fn hint(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => "; run op25b as root (or with CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF and CAP_IPC_LOCK)",
        Some(libc::EAFNOSUPPORT) => "; this kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS): use backend = \"af_packet\"",
        Some(libc::ENOSYS) => "; this kernel has no bpf() system call (CONFIG_BPF_SYSCALL): use backend = \"af_packet\"",
        Some(libc::EBUSY | libc::EEXIST) => "; another XDP program or socket holds this interface/queue: detach it (`ip link set dev IFACE xdp off`) or stop the other program",
        Some(libc::ENOMEM | libc::ENOBUFS) => "; the UMEM could not be locked: raise the locked-memory limit (`ulimit -l`, LimitMEMLOCK=) or run as root",
        Some(libc::ERANGE | libc::EINVAL) => "; the driver refused XDP for this interface (an MTU above about 3500 bytes is too large for native XDP): lower the MTU or use backend = \"af_packet\"",
        _ => "",
    }
}

fn step<'a>(name: &'a str, step: &'static str) -> impl FnOnce(std::io::Error) -> XdpError + 'a {
    move |source| XdpError::Step {
        name: name.into(),
        step,
        hint: hint(&source),
        source,
    }
}

/// One interface's XDP setup, shared by every worker's socket on it.
#[derive(Debug)]
struct Attachment {
    // Field order is drop order: detach first, then the program and map go.
    _link: XdpLink,
    _prog: XdpProgram,
    _map: XskMap,
    _promisc: Promisc,
    native: bool,
}

/// How many RX queues `name` has (sysfs), if that can be read.
fn rx_queues(name: &str) -> Option<usize> {
    let dir = std::fs::read_dir(format!("/sys/class/net/{name}/queues")).ok()?;
    Some(
        dir.filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
            .count(),
    )
}

/// Sets up `name` with one socket per queue `0..workers`; returns the attachment and the
/// sockets in queue order.
fn attach(
    side: &'static str,
    name: &str,
    workers: usize,
) -> Result<(Attachment, Vec<Xsk>), XdpError> {
    let ifindex = sys::ifindex(name).ok_or_else(|| XdpError::NoInterface {
        side,
        name: name.into(),
    })?;
    if let Some(queues) = rx_queues(name) {
        if queues > 0 && workers > queues {
            return Err(XdpError::TooManyQueues {
                name: name.into(),
                workers,
                queues,
            });
        }
    }
    let map = XskMap::create(workers as u32).map_err(step(name, "creating the XSKMAP"))?;
    let prog = XdpProgram::load(&map).map_err(step(name, "loading the XDP redirect program"))?;
    let mut socks = Vec::with_capacity(workers);
    for q in 0..workers as u32 {
        let x = Xsk::open(ifindex, q, true).map_err(step(name, "opening an AF_XDP socket"))?;
        map.insert(q, &x)
            .map_err(step(name, "adding the socket to the XSKMAP"))?;
        socks.push(x);
    }
    let promisc = Promisc::on(ifindex).map_err(step(name, "enabling promiscuous mode"))?;
    let (link, native) = match XdpLink::attach(&prog, ifindex, sys::XDP_FLAGS_DRV_MODE) {
        Ok(l) => (l, true),
        Err(native_err) => match XdpLink::attach(&prog, ifindex, sys::XDP_FLAGS_SKB_MODE) {
            Ok(l) => (l, false),
            // A refusal of both modes: report the native one unless generic says more.
            Err(e) if e.raw_os_error() == native_err.raw_os_error() => {
                return Err(step(name, "attaching the XDP program")(native_err))
            }
            Err(e) => return Err(step(name, "attaching the XDP program")(e)),
        },
    };
    Ok((
        Attachment {
            _link: link,
            _prog: prog,
            _map: map,
            _promisc: promisc,
            native,
        },
        socks,
    ))
}

/// Attaches to `access` and `core` with one queue per worker and returns one wire per
/// worker (worker `i` owns queue `i` of both interfaces).
pub fn open_wire(
    access: &str,
    core: &str,
    workers: usize,
    burst: usize,
) -> Result<Vec<XdpWire>, XdpError> {
    let burst = burst.clamp(1, MAX_BURST);
    let (a, a_socks) = attach("access", access, workers)?;
    let (c, c_socks) = attach("core", core, workers)?;
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
}

impl XdpWire {
    /// Sets the direction of the next `poll`.
    pub fn set_direction(&mut self, d: Direction) {
        self.direction = d;
    }

    /// How each side is attached, e.g. "access: native XDP, copy mode; core: …".
    pub fn describe(&self) -> String {
        let side = |a: &Attachment, x: &Xsk| {
            format!(
                "{} XDP, {} sockets",
                if a.native { "native" } else { "generic (skb)" },
                match x.mode {
                    BindMode::ZeroCopy => "zero-copy",
                    BindMode::Copy => "copy-mode",
                }
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
        let (ingress, egress) = match self.direction {
            Direction::AccessToCore => (&mut self.access, &mut self.core),
            Direction::CoreToAccess => (&mut self.core, &mut self.access),
        };
        let n = ingress.rx_peek(self.burst);
        if n == 0 {
            return 0;
        }
        egress.reap();
        let snapshot = policy.load();
        let rx: &Xsk = ingress;
        let verdicts = worker.classify_frames(&snapshot, (0..n).map(|i| rx.rx_frame(i)));
        let mut resets = 0u32;
        for (i, v) in (0..n).zip(verdicts) {
            match v {
                Verdict::Forward => {
                    if !egress.tx_copy(ingress.rx_frame(i)) {
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
        let e = open_wire("op25b-no-such0", "op25b-no-such1", 1, 32).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("\"op25b-no-such0\" (access) does not exist"),
            "{text}"
        );
    }

    #[test]
    fn errno_hints_say_what_to_do() {
        let e = step("eth9", "attaching the XDP program")(std::io::Error::from_raw_os_error(
            libc::EPERM,
        ));
        assert_eq!(
            e.to_string(),
            "AF_XDP on eth9: attaching the XDP program failed: Operation not permitted (os error 1); run op25b as root (or with CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF and CAP_IPC_LOCK)"
        );
    }
}
