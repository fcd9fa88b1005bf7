//! The live bump-in-the-wire port over two interfaces (`access`, `core`) with AF_PACKET
//! sockets: TPACKET_V3 (or, for lowest latency, TPACKET_V2) mapped receive rings, batched `sendmmsg` transmission, fanout so
//! several workers share an interface, promiscuous mode.
//!
//! One [`WirePort`] belongs to one worker and carries both directions; the worker flips
//! [`WirePort::set_direction`] between polls. Frames received on one side leave on the
//! other, unchanged: a VLAN tag the kernel stripped on receive is put back first, so what
//! the policy sees and what is sent on are the frame as it was on the wire.
//!
//! Invariants: frames keep their order within a direction; dropped frames are simply not
//! sent; frames the kernel refuses to send are counted in `tx_refused`, never retried
//! forever (those refused as too long although a wire at this MTU carries them — more
//! VLAN tag than one 802.1Q tag, and no longer than the MTU allows with those tags — also
//! in `tx_refused_tagged`, by interface); nothing is allocated per frame after warm-up.

pub use super::link::LinkEvent;
use super::link::LinkWatch;
use super::sys::{mtu_of, wait_any, PacketSocket, SendScratch, SocketOptions};
use super::{Burst, Port, PortError};
use crate::policy::Verdict;

/// Which way frames flow through the port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Subscriber side to upstream (outbound policy applies).
    AccessToCore,
    /// Upstream to subscriber side.
    CoreToAccess,
}

/// Both sides of the wire for one worker.
#[derive(Debug)]
pub struct WirePort {
    access: PacketSocket,
    core: PacketSocket,
    /// The interface names, for [`WirePort::check_links`].
    names: [String; 2],
    /// Their MTUs (access, core), read at open and at every [`WirePort::check_links`]:
    /// a frame refused as too long counts as refused for its tags only within them.
    mtu: [Option<u32>; 2],
    watch: LinkWatch,
    /// Socket errors taken but not yet told (see [`WirePort::check_links`]).
    flaps: [Option<String>; 2],
    direction: Direction,
    scratch: SendScratch,
    /// Frames the kernel refused to send (oversized, link down, queue full).
    pub tx_refused: u64,
    /// Of those, frames refused as too long that carry more VLAN tag than one 802.1Q tag
    /// ([`SendScratch::oversized_tagged`]), by the interface they were to leave through
    /// (access, core): at an MTU of 1500, a 1518-byte 802.1ad frame, which a NIC carries.
    pub tx_refused_tagged: [u64; 2],
    /// TCP resets sent back out of the ingress side (`reject`).
    pub resets_sent: u64,
    resets: Vec<Vec<u8>>,
}

impl WirePort {
    /// Opens both sides. `fanout` joins each side's fanout group (the same id on every
    /// worker of one appliance); `per_frame` picks TPACKET_V2 rings (lowest latency)
    /// instead of TPACKET_V3 (block-batched).
    pub fn open(
        access: &str,
        core: &str,
        fanout: Option<u16>,
        per_frame: bool,
    ) -> std::io::Result<WirePort> {
        let opts = |g: Option<u16>| SocketOptions {
            fanout_group: g,
            per_frame,
            ..SocketOptions::default()
        };
        let a = PacketSocket::open(access, &opts(fanout))?;
        let c = PacketSocket::open(core, &opts(fanout.map(|g| g.wrapping_add(1))))?;
        let side = |name: &str, s: &PacketSocket| {
            (name.to_string(), Some((name.to_string(), s.ifindex())))
        };
        Ok(WirePort {
            watch: LinkWatch::new([side(access, &a), side(core, &c)]),
            flaps: [None, None],
            access: a,
            core: c,
            names: [access.to_string(), core.to_string()],
            mtu: [mtu_of(access), mtu_of(core)],
            direction: Direction::AccessToCore,
            scratch: SendScratch::default(),
            tx_refused: 0,
            tx_refused_tagged: [0, 0],
            resets_sent: 0,
            resets: Vec::new(),
        })
    }

    /// Sets the direction of the next `rx_burst`/`tx_burst`.
    pub fn set_direction(&mut self, d: Direction) {
        self.direction = d;
    }

    /// Waits up to `timeout_ms` for a frame on either side; a side that reported an error
    /// is looked at at once ([`WirePort::check_links`]).
    pub fn wait(&mut self, timeout_ms: i32) -> Option<LinkEvent> {
        if wait_any(&[&self.access, &self.core], timeout_ms) != 0 {
            return self.check_links();
        }
        None
    }

    /// Whether each link (access, core) was up at the last look.
    pub fn links_up(&self) -> [bool; 2] {
        self.watch.links_up()
    }

    /// Looks at both sides (a few syscalls each; for the worker's periodic check, not per
    /// burst): takes a pending socket error, which also ends the poll(2) wake-ups it
    /// causes, then asks the [`LinkWatch`] whether an interface is gone or a link changed
    /// state. A link that went down keeps its socket, which carries frames again once the
    /// link is up; an interface deleted (or deleted and made anew: a new index) leaves the
    /// socket bound to nothing, for good. A socket error on a side whose link is up again
    /// by now (a flap shorter than the check period) is reported as a `Down` of its own.
    pub fn check_links(&mut self) -> Option<LinkEvent> {
        // Errors wait here until they are told or explained: a look reports one thing, and
        // an error must not be lost behind the other side's change.
        for (slot, sock) in self.flaps.iter_mut().zip([&self.access, &self.core]) {
            if let Some(e) = sock.take_error() {
                slot.get_or_insert(e.to_string());
            }
        }
        self.mtu = [mtu_of(&self.names[0]), mtu_of(&self.names[1])];
        let before = [self.watch.is_up(0), self.watch.is_up(1)];
        let event = self.watch.look();
        let after = [self.watch.is_up(0), self.watch.is_up(1)];
        tell(&mut self.flaps, before, after, event, &self.names)
    }
}

/// What one look reports: the watch's `event` if any (dropping the pending socket error of
/// a side whose state it just reported, `before` → `after`), else a pending error of a side
/// that is up (a flap shorter than the look); an error on a side known down is dropped.
fn tell(
    flaps: &mut [Option<String>; 2],
    before: [bool; 2],
    after: [bool; 2],
    event: Option<LinkEvent>,
    names: &[String; 2],
) -> Option<LinkEvent> {
    if event.is_some() {
        for (i, slot) in flaps.iter_mut().enumerate() {
            if after[i] != before[i] {
                *slot = None;
            }
        }
        return event;
    }
    for (i, slot) in flaps.iter_mut().enumerate() {
        let Some(e) = slot.take() else {
            continue;
        };
        if after[i] {
            return Some(LinkEvent::Down(format!(
                "{}: {e}, and it was up again by the next look (a flap shorter than 250 ms); the socket stays bound",
                names[i]
            )));
        }
    }
    None
}

impl Port for WirePort {
    fn rx_burst(&mut self, burst: &mut Burst) -> Result<usize, PortError> {
        burst.clear();
        let room = burst.capacity();
        let sock = match self.direction {
            Direction::AccessToCore => &mut self.access,
            Direction::CoreToAccess => &mut self.core,
        };
        sock.recv(room, |f| {
            let extra = if f.vlan.is_some() { 4 } else { 0 };
            let len = f.data.len() + extra;
            let r: Result<(), ()> = burst.push_with(len, |buf| {
                match f.vlan {
                    Some((tpid, tci)) if f.data.len() >= 12 => {
                        buf[..12].copy_from_slice(&f.data[..12]);
                        buf[12..14].copy_from_slice(&tpid.to_be_bytes());
                        buf[14..16].copy_from_slice(&tci.to_be_bytes());
                        buf[16..].copy_from_slice(&f.data[12..]);
                    }
                    _ => buf[..f.data.len()].copy_from_slice(f.data),
                }
                Ok(0..len)
            });
            debug_assert!(r.is_ok());
        });
        Ok(burst.len())
    }

    fn tx_burst(&mut self, burst: &Burst, verdicts: &[Verdict]) -> Result<(), PortError> {
        let mut out: [&[u8]; 256] = [&[]; 256];
        let mut n = 0;
        let (sock, side) = match self.direction {
            Direction::AccessToCore => (&self.core, 1),
            Direction::CoreToAccess => (&self.access, 0),
        };
        let mut rejects = 0;
        for (i, v) in verdicts.iter().enumerate() {
            rejects += usize::from(*v == Verdict::Reject);
            if *v == Verdict::Forward {
                out[n] = burst.frame(i);
                n += 1;
                if n == out.len() {
                    self.tx_refused +=
                        sock.send_batch(&out[..n], &mut self.scratch, self.mtu[side]) as u64;
                    self.tx_refused_tagged[side] += self.scratch.oversized_tagged() as u64;
                    n = 0;
                }
            }
        }
        self.tx_refused += sock.send_batch(&out[..n], &mut self.scratch, self.mtu[side]) as u64;
        self.tx_refused_tagged[side] += self.scratch.oversized_tagged() as u64;
        if rejects == 0 {
            return Ok(());
        }
        // Resets go back out of the side the blocked frames came in on, one batch per
        // burst; the worker has already rate-limited how many are asked for.
        let mut r = 0;
        for (i, v) in verdicts.iter().enumerate() {
            if *v == Verdict::Reject && r < out.len() {
                if self.resets.len() == r {
                    self.resets.push(Vec::with_capacity(128));
                }
                if crate::wire::rst::build_reset(burst.frame(i), &mut self.resets[r]) {
                    r += 1;
                }
            }
        }
        let ingress = match self.direction {
            Direction::AccessToCore => &self.access,
            Direction::CoreToAccess => &self.core,
        };
        for (slot, reset) in out.iter_mut().zip(&self.resets[..r]) {
            *slot = reset;
        }
        let refused = ingress.send_batch(&out[..r], &mut self.scratch, self.mtu[1 - side]);
        self.tx_refused += refused as u64;
        // (Resets are small: never refused as too long.)
        self.resets_sent += (r - refused) as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_flap_is_told_once_and_never_lost_behind_the_other_side() {
        let names = ["acc0".to_string(), "core0".to_string()];
        let up = [true, true];
        let down = LinkEvent::Down("core0: down".into());
        // acc0 flapped while core0 went down: core0 first, acc0's flap at the next look.
        let mut flaps = [Some("Network is down".to_string()), Some("x".to_string())];
        assert_eq!(
            tell(&mut flaps, up, [true, false], Some(down.clone()), &names),
            Some(down)
        );
        assert_eq!(flaps, [Some("Network is down".to_string()), None]);
        assert_eq!(
            tell(&mut flaps, [true, false], [true, false], None, &names),
            Some(LinkEvent::Down(
                "acc0: Network is down, and it was up again by the next look (a flap shorter than 250 ms); the socket stays bound"
                    .into()
            ))
        );
        assert_eq!(tell(&mut flaps, up, up, None, &names), None);
        // An error on a side known down says nothing new, and is gone.
        let mut flaps = [None, Some("Network is down".to_string())];
        assert_eq!(
            tell(&mut flaps, [true, false], [true, false], None, &names),
            None
        );
        assert_eq!(flaps, [None, None]);
    }
}
