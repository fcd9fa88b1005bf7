//! systemd's readiness protocol (`sd_notify(3)`) for `op25b run` under `Type=notify`: one
//! datagram to the socket systemd names in `NOTIFY_SOCKET` when the appliance forwards
//! (`READY=1`), a `STATUS=` line after each reload, and `STOPPING=1` when it stops. So
//! `systemctl start` returns once frames flow (or fails with the start's error), and a
//! `systemctl reload` asked during a long start waits for it instead of failing to reach
//! a control socket that does not exist yet.
//!
//! Invariants: without `NOTIFY_SOCKET` (not under systemd) nothing is sent and nothing
//! fails; a notification that cannot be sent is said once on stderr and never stops the
//! appliance. Messages carry no newline inside a value.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Where the notifications go, if anywhere.
pub struct Notifier {
    to: Option<(UnixDatagram, SocketAddr)>,
    warned: bool,
}

impl Notifier {
    /// The notifier `NOTIFY_SOCKET` asks for: a path, or an abstract name after `@`.
    /// A socket that cannot be made is said once; the notifier then sends nothing.
    pub fn from_env() -> Notifier {
        let to = std::env::var_os("NOTIFY_SOCKET").and_then(|v| {
            let v = v.to_string_lossy().into_owned();
            let addr = match v.strip_prefix('@') {
                Some(name) => {
                    use std::os::linux::net::SocketAddrExt;
                    SocketAddr::from_abstract_name(name.as_bytes())
                }
                None => SocketAddr::from_pathname(&v),
            };
            match (addr, UnixDatagram::unbound()) {
                (Ok(a), Ok(s)) => Some((s, a)),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("op25b: warning: NOTIFY_SOCKET={v}: {e}; systemd is not told when op25b is ready");
                    None
                }
            }
        });
        Notifier { to, warned: false }
    }

    /// Sends `lines` (`KEY=value` each) as one notification.
    fn send(&mut self, lines: &[String]) {
        let Some((sock, addr)) = &self.to else {
            return;
        };
        let text = lines.join("\n");
        if let Err(e) = sock.send_to_addr(text.as_bytes(), addr) {
            if !self.warned {
                self.warned = true;
                eprintln!(
                    "op25b: warning: cannot notify systemd ({e}); it keeps its last view of op25b"
                );
            }
        }
    }

    /// The appliance forwards: `READY=1` with `status`.
    pub fn ready(&mut self, status: &str) {
        self.send(&["READY=1".into(), format!("STATUS={}", one_line(status))]);
    }

    /// A new `STATUS=` line (after a reload).
    pub fn status(&mut self, status: &str) {
        self.send(&[format!("STATUS={}", one_line(status))]);
    }

    /// The appliance stops: `STOPPING=1`.
    pub fn stopping(&mut self) {
        self.send(&["STOPPING=1".into(), "STATUS=stopping".into()]);
    }
}

/// `s` with line breaks as spaces (a value may not span lines).
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_the_socket_and_none_is_sent_without_one() {
        let dir = op25b_dataplane::testkit::scratch_dir("notify");
        let path = dir.join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let mut n = Notifier {
            to: Some((
                UnixDatagram::unbound().unwrap(),
                SocketAddr::from_pathname(&path).unwrap(),
            )),
            warned: false,
        };
        let mut buf = [0u8; 512];
        n.ready("forwarding a ↔ b\nsecond line");
        let k = listener.recv(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..k]).unwrap(),
            "READY=1\nSTATUS=forwarding a ↔ b second line"
        );
        n.status("generation 2");
        let k = listener.recv(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..k]).unwrap(),
            "STATUS=generation 2"
        );
        n.stopping();
        let k = listener.recv(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..k]).unwrap(),
            "STOPPING=1\nSTATUS=stopping"
        );
        // The listener is gone: said once, never a failure.
        drop(listener);
        n.status("x");
        n.status("y");
        assert!(n.warned);
        // No NOTIFY_SOCKET: nothing to send to.
        let mut quiet = Notifier {
            to: None,
            warned: false,
        };
        quiet.ready("x");
        assert!(!quiet.warned);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
