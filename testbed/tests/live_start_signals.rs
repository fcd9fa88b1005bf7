//! A SIGHUP (`kill -HUP`; the unit's `systemctl reload` uses `op25b ctl reload` instead) that reaches `op25b run` while it is still starting — the
//! config read, a 300,000-prefix pool built, the AF_PACKET ports not yet open — is not
//! lost: the appliance starts, then reloads the configuration once it runs (the start
//! may have read the files before the edit the reload announces), and keeps forwarding.
//! (`control/tests/run_signals.rs` covers the same signals without root: a SIGHUP does
//! not kill a start, a SIGTERM stops it cleanly.)
//!
//! Needs root and iproute2; says SKIPPED otherwise.

use op25b_testbed::{available_or_skipped, ctl, run_appliance, wait_for_control, Wire};
use std::process::Command;

#[test]
fn a_sighup_during_start_up_reloads_once_running() {
    if !available_or_skipped() {
        return;
    }
    let (dir, cfg) = op25b_dataplane::testkit::slow_start_config("startsig", "acc0", "core0");
    let wire = Wire::new("sg", "sub0", "net0", false);
    let mut appliance = run_appliance(&wire.app, &cfg);
    // Once it catches the signals (polled: a loaded machine may take long to start it).
    assert!(
        op25b_dataplane::testkit::wait_until_it_catches_hup_and_term(appliance.child().id()),
        "op25b run did not catch SIGHUP within 10 s (or ended)"
    );
    assert!(
        appliance.child().try_wait().unwrap().is_none(),
        "the start ended before the SIGHUP could reach it"
    );
    let pid = appliance.child().id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let sock = dir.join("ctl.sock");
    wait_for_control(&sock);
    // The reload comes before the first `ctl` answer, so this shows its generation.
    let (ok, status) = ctl(&sock, &["status"]);
    assert!(ok, "{status}");
    assert!(
        status.contains("running: policy generation 2 from"),
        "{status}"
    );
    let o = appliance.terminate();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("SIGHUP during start-up")
            && err.contains("(SIGHUP during start-up): generation 2"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
