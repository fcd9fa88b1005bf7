//! `op25b run` and the signals a service manager sends while it starts: a SIGHUP
//! (`kill -HUP`) or SIGTERM (`systemctl stop`) that arrives while the config is read
//! and the policy built must not end the process the default way (SIGHUP's default is
//! death with status 129, which systemd takes for a clean exit and does not restart).
//!
//! The start is made long with a 300,000-prefix pool file written here, and made to fail
//! at its next step with interfaces that do not exist, so no privilege is needed: a
//! SIGHUP while the pool is read must leave the start's own error (exit 1, "no such
//! interface"), and a SIGTERM then a clean stop (exit 0, the final counters).

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A slow-starting config ([`op25b_dataplane::testkit::slow_start_config`]) with
/// AF_PACKET between two interfaces that do not exist.
fn slow_start_config(name: &str) -> (PathBuf, PathBuf) {
    op25b_dataplane::testkit::slow_start_config(name, "op25b-nosuch0", "op25b-nosuch1")
}

/// Starts `op25b run --config CFG`, sends `signal` once the process catches SIGHUP and
/// SIGTERM (what a service manager can rely on once `op25b` runs at all: a signal before
/// that meets the kernel's defaults, whatever the program) and the start is still under
/// way (else the test proves nothing), and waits up to 60 s for the end.
fn run_and_signal(cfg: &Path, signal: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_op25b"))
        .args(["run", "--config", cfg.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Polled, not a fixed sleep: a loaded machine may take long to exec and link.
    assert!(
        op25b_dataplane::testkit::wait_until_it_catches_hup_and_term(child.id()),
        "op25b run did not catch SIGHUP and SIGTERM within 10 s (or ended)"
    );
    if let Some(status) = child.try_wait().unwrap() {
        let out = child.wait_with_output().unwrap();
        panic!(
            "the start ended ({status}) before the {signal} could reach it: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let kill = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("op25b run did not end within 60 s of the {signal}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_sighup_during_start_up_does_not_kill_op25b_run() {
    let (dir, cfg) = slow_start_config("sighup-start");
    let out = run_and_signal(&cfg, "HUP");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        None,
        "op25b run was killed by signal {:?}: {err}",
        out.status.signal()
    );
    // The start went on, and failed at its next step with its own error.
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("op25b-nosuch0: no such interface"), "{err}");
    assert!(
        err.contains("SIGHUP during start-up")
            && err.contains("reloaded as soon as the appliance runs"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_sigterm_during_start_up_stops_op25b_run_cleanly() {
    let (dir, cfg) = slow_start_config("sigterm-start");
    let out = run_and_signal(&cfg, "TERM");
    let err = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.signal(), None, "killed by the signal: {err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("SIGTERM during start-up")
            && err.contains("stopped before any frame was forwarded"),
        "{err}"
    );
    // It stopped before the ports, not because of them.
    assert!(!err.contains("no such interface"), "{err}");
    // The final counters, as after any stop.
    assert!(
        stdout.contains("access→core: rx 0 tx 0 dropped 0"),
        "{stdout}"
    );
    assert!(!dir.join("ctl.sock").exists(), "control socket left behind");
    let _ = std::fs::remove_dir_all(&dir);
}
