//! Watching the two links of a running wire, the same way for every backend: a side whose
//! link goes down or comes back up is reported once per change, and a side whose kernel
//! interface is gone (deleted, or deleted and made anew under the same name with a new
//! index) is reported as [`LinkEvent::Gone`], since what was bound to the old interface
//! (a socket, an XDP program, a DPDK virtual device) can never carry frames again.
//!
//! The backends supply what only they know: which kernel interface each side is bound to
//! (none for a DPDK NIC), and whether each link is up now (`SIOCGIFFLAGS` for kernel
//! interfaces, the device's link status for DPDK).
//!
//! Invariants: a look costs a few syscalls and is for a periodic check (a worker's every
//! snapshot period), never per burst; one change is reported per look, and a change not yet
//! reported stays pending, so neither is lost when both sides change at once. A look sees
//! states, not transitions: a flap that is over before the next look is not seen here
//! (AF_PACKET reports it from its socket's error instead).

use super::sys;

/// Something a look at the links found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// A side's link went down; what is bound to it stays and carries frames again once
    /// the link is up.
    Down(String),
    /// A side's link came back up after a [`LinkEvent::Down`].
    Up(String),
    /// A side's interface is gone or was made anew: what was bound to it can never serve
    /// again, and only opening it anew (a restart) brings that side back.
    Gone(String),
}

/// One side of the wire as the watch knows it.
#[derive(Debug)]
struct Side {
    /// The side in messages: the interface name, or a DPDK port name with its interface.
    label: String,
    /// The kernel interface the side is bound to and the index it had when bound.
    kernel: Option<(String, i32)>,
    /// The link state at the last look (`None` before the first: a link found down then
    /// is reported as down at start).
    up: Option<bool>,
}

/// The watch over both sides (access, core) of one worker's wire.
#[derive(Debug)]
pub struct LinkWatch {
    sides: [Side; 2],
}

impl LinkWatch {
    /// A watch over `sides` (access, core): each a label for messages and, if the side is
    /// a kernel interface, its name and the index it was bound at.
    pub fn new(sides: [(String, Option<(String, i32)>); 2]) -> LinkWatch {
        LinkWatch {
            sides: sides.map(|(label, kernel)| Side {
                label,
                kernel,
                up: None,
            }),
        }
    }

    /// Whether each side's kernel interface is up with a carrier now (`None` for a side
    /// with no kernel interface, or one that cannot be asked).
    pub fn kernel_up(&self) -> [Option<bool>; 2] {
        [0, 1].map(|i| {
            self.sides[i]
                .kernel
                .as_ref()
                .and_then(|(name, _)| sys::link_running(name))
        })
    }

    /// [`LinkWatch::check`] with each kernel interface's state now ([`LinkWatch::kernel_up`]):
    /// the look of a backend whose sides are all kernel interfaces, or unknown.
    pub fn look(&mut self) -> Option<LinkEvent> {
        let up = self.kernel_up();
        self.check(up)
    }

    /// Looks at both sides: first whether a kernel interface is gone or was replaced
    /// (checked through its name's index now), then whether a link changed state, given
    /// `up`, each side's state now if known. Returns the first thing found.
    pub fn check(&mut self, up: [Option<bool>; 2]) -> Option<LinkEvent> {
        self.check_with(up, sys::ifindex_of)
    }

    fn check_with(
        &mut self,
        up: [Option<bool>; 2],
        index_of: impl Fn(&str) -> Option<i32>,
    ) -> Option<LinkEvent> {
        for side in &self.sides {
            if let Some((name, bound)) = &side.kernel {
                let now = index_of(name);
                if now != Some(*bound) {
                    return Some(LinkEvent::Gone(format!(
                        "{}: the interface {name} this side was bound to (index {bound}) {}",
                        side.label,
                        now.map_or("is gone".to_string(), |i| format!(
                            "was replaced by a new one (index {i})"
                        ))
                    )));
                }
            }
        }
        for (side, now) in self.sides.iter_mut().zip(up) {
            let Some(now) = now else { continue };
            let before = side.up.replace(now);
            match (before, now) {
                (Some(b), n) if b == n => {}
                (None, true) => {}
                (None, false) => {
                    return Some(LinkEvent::Down(format!(
                        "{}: down at start (administratively down or no carrier); frames flow once it is up",
                        side.label
                    )))
                }
                (Some(_), true) => return Some(LinkEvent::Up(side.label.clone())),
                (Some(_), false) => {
                    return Some(LinkEvent::Down(format!(
                        "{}: down or without carrier; frames resume when it is up",
                        side.label
                    )))
                }
            }
        }
        None
    }

    /// The kernel interfaces watched (name and the index it was bound at).
    pub fn kernel_interfaces(&self) -> Vec<(String, i32)> {
        self.sides.iter().filter_map(|s| s.kernel.clone()).collect()
    }

    /// Whether each side (access, core) was up at the last look (true before any, and for
    /// a side whose state cannot be asked).
    pub fn links_up(&self) -> [bool; 2] {
        [self.is_up(0), self.is_up(1)]
    }

    /// Whether side `i` (0 access, 1 core) was up at the last look (true before any).
    pub fn is_up(&self, i: usize) -> bool {
        self.sides[i].up != Some(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch() -> LinkWatch {
        LinkWatch::new([
            ("acc0".into(), Some(("acc0".into(), 7))),
            ("net_null1".into(), None),
        ])
    }

    #[test]
    fn each_change_is_reported_once_and_a_pending_one_is_not_lost() {
        let mut w = watch();
        let same = |n: &str| (n == "acc0").then_some(7);
        assert!(w.is_up(0) && w.is_up(1), "up until seen down");
        assert_eq!(w.check_with([Some(true), Some(true)], same), None);
        assert_eq!(
            w.check_with([None, None], same),
            None,
            "unknown is no change"
        );
        // Both go down at once: one per look, the second at the next.
        let first = w.check_with([Some(false), Some(false)], same);
        assert_eq!(
            first,
            Some(LinkEvent::Down(
                "acc0: down or without carrier; frames resume when it is up".into()
            ))
        );
        assert!(matches!(
            w.check_with([Some(false), Some(false)], same),
            Some(LinkEvent::Down(m)) if m.starts_with("net_null1: down")
        ));
        assert_eq!(w.check_with([Some(false), Some(false)], same), None);
        assert!(!w.is_up(0) && !w.is_up(1));
        assert_eq!(
            w.check_with([Some(true), Some(false)], same),
            Some(LinkEvent::Up("acc0".into()))
        );
        assert_eq!(w.check_with([Some(true), Some(false)], same), None);
    }

    #[test]
    fn a_link_down_at_the_first_look_is_down_at_start() {
        let mut w = watch();
        let same = |n: &str| (n == "acc0").then_some(7);
        assert_eq!(
            w.check_with([None, Some(false)], same),
            Some(LinkEvent::Down(
                "net_null1: down at start (administratively down or no carrier); frames flow once it is up"
                    .into()
            ))
        );
        assert_eq!(w.check_with([Some(true), Some(false)], same), None);
        assert_eq!(
            w.check_with([Some(true), Some(true)], same),
            Some(LinkEvent::Up("net_null1".into()))
        );
    }

    #[test]
    fn a_deleted_or_replaced_interface_is_gone_before_any_state_change() {
        let mut w = watch();
        assert_eq!(
            w.check_with([Some(false), None], |_| None),
            Some(LinkEvent::Gone(
                "acc0: the interface acc0 this side was bound to (index 7) is gone".into()
            ))
        );
        assert_eq!(
            w.check_with([Some(true), None], |_| Some(9)),
            Some(LinkEvent::Gone(
                "acc0: the interface acc0 this side was bound to (index 7) was replaced by a new one (index 9)"
                    .into()
            ))
        );
    }

    #[test]
    fn the_kernel_is_asked_about_real_interfaces_only() {
        let w = LinkWatch::new([
            ("lo".into(), Some(("lo".into(), 1))),
            ("op25b-no-such9".into(), Some(("op25b-no-such9".into(), 99))),
        ]);
        // The host's loopback is up (IFF_UP and IFF_RUNNING) wherever tests run.
        assert_eq!(w.kernel_up(), [Some(true), None]);
        assert_eq!(sys::link_running(""), None);
        assert_eq!(sys::link_running("a-name-longer-than-ifnamsiz"), None);
    }
}
