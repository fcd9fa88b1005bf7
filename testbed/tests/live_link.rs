//! What the live appliance does when an interface under it changes: a link that goes down
//! and up again is logged, costs no spinning core while down, and carries traffic again
//! afterwards; an interface that is deleted (its socket then serves nothing, ever) stops
//! the appliance with an error naming it and a non-zero exit, so the service manager
//! restarts it on the new interface instead of a silent black hole.
//!
//! Needs root and iproute2; says SKIPPED otherwise.

use op25b_testbed::{run_appliance, unavailable, Wire};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
[outbound]
dynamic = ["10.9.0.0/16"]
[dataplane]
backend = "af_packet"
access = "acc0"
core = "core0"
[control]
socket = "ctl.sock"
metrics = ""
"#;

/// CPU time (user + system, clock ticks) the process has used so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn a_flapped_link_recovers_and_a_deleted_interface_stops_the_appliance() {
    if let Some(why) = unavailable() {
        op25b_dataplane::testkit::skipped(why);
        return;
    }
    let dir = op25b_dataplane::testkit::scratch_dir("live-link");
    let cfg = dir.join("op25b.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let wire = Wire::new("lk", "lkl0", "lkr0", false);
    wire.left.add_addresses("lkl0", &["10.0.0.1/24"]);
    wire.right.add_addresses("lkr0", &["10.0.0.2/24"]);
    let mut appliance = run_appliance(&wire.app, &cfg);
    let pid = appliance.child().id();
    wire.left.wait_for_ping("10.0.0.2", Duration::from_secs(15));

    // Down for two seconds, then up: the worker does not spin meanwhile (the socket's
    // pending error is taken, so poll(2) sleeps again), and pings cross again after.
    wire.app.exec(&["ip", "link", "set", "dev", "acc0", "down"]);
    std::thread::sleep(Duration::from_millis(300));
    let (t, before) = (Instant::now(), cpu_ticks(pid));
    std::thread::sleep(Duration::from_secs(2));
    let used = (cpu_ticks(pid) - before) as f64 / 100.0 / t.elapsed().as_secs_f64();
    assert!(
        used < 0.5,
        "the appliance used {used:.2} of a core while a link was down"
    );
    wire.app.exec(&["ip", "link", "set", "dev", "acc0", "up"]);
    wire.left.wait_for_ping("10.0.0.2", Duration::from_secs(15));
    assert!(
        appliance.child().try_wait().unwrap().is_none(),
        "stopped after a flap"
    );

    // Deleted (the veth pair goes with it): the appliance stops by itself, non-zero, and
    // says which interface and why.
    wire.app.exec(&["ip", "link", "del", "acc0"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while appliance.child().try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "still running 10 s after its interface was deleted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = appliance.take().wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(log.contains("link went down: acc0:"), "{log}");
    assert!(
        log.contains("acc0: the interface this worker's socket was bound to (index")
            && log.contains("is gone")
            && log.contains("op25b: error: acc0:"),
        "{log}"
    );
    // The final counters are still printed.
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("access→core"),
        "{out:?}"
    );
    println!(
        "flap: {used:.2} of a core while down; deletion: {}",
        log.trim()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
