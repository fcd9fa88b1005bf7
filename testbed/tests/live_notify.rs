//! `op25b run` under systemd's `Type=notify` (scripts/op25b.service): with `NOTIFY_SOCKET`
//! set it says READY=1 once it forwards (its control socket already answers then), a
//! STATUS= line naming the new policy generation after a reload, and STOPPING=1 when it
//! stops. The test plays systemd's part with a datagram socket of its own.
//!
//! Needs root and iproute2; says SKIPPED otherwise.

use op25b_testbed::{available_or_skipped, ctl, op25b_binary, Reaped, Wire};
use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::time::Duration;

/// The next notification, within 20 s.
fn next(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 1024];
    let n = sock
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no notification within 20 s: {e}"));
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn run_tells_systemd_when_it_is_ready_reloaded_and_stopping() {
    if !available_or_skipped() {
        return;
    }
    let (dir, cfg) = op25b_dataplane::testkit::scratch_config(
        "notify",
        "[outbound]\ndynamic = [\"10.0.0.0/8\"]\n\n[dataplane]\nbackend = \"af_packet\"\naccess = \"acc0\"\ncore = \"core0\"\n\n[control]\nsocket = \"ctl.sock\"\nmetrics = \"\"\n",
    );
    let notify = dir.join("notify");
    let listener = UnixDatagram::bind(&notify).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let wire = Wire::new("nt", "sub0", "net0", false);
    let bin = op25b_binary();
    let child = wire
        .app
        .command(&[
            bin.to_str().unwrap(),
            "run",
            "--config",
            cfg.to_str().unwrap(),
        ])
        .env("NOTIFY_SOCKET", &notify)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut appliance = Reaped(Some(child));
    let ready = next(&listener);
    assert_eq!(
        ready,
        "READY=1\nSTATUS=forwarding acc0 ↔ core0, 1 worker(s), policy generation 1"
    );
    // Ready means the control socket answers already.
    let sock = dir.join("ctl.sock");
    let (ok, status) = ctl(&sock, &["status"]);
    assert!(ok, "{status}");
    let (ok, said) = ctl(&sock, &["reload"]);
    assert!(ok, "{said}");
    assert_eq!(
        next(&listener),
        "STATUS=forwarding acc0 ↔ core0, 1 worker(s), policy generation 2"
    );
    let out = appliance.terminate();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(next(&listener), "STOPPING=1\nSTATUS=stopping");
    let _ = std::fs::remove_dir_all(&dir);
}
