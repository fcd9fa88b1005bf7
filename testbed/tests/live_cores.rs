//! Where `op25b run` puts its threads when `cores` pins the workers: each worker on its
//! own core, and the control thread with everything it starts (the control socket and
//! metrics servers, the reaper that frees old policies, the builds of reloads, the
//! signal thread) on the
//! other cores, so that a reload's seconds of building never take turns with a worker on
//! its core. With no core left over, the appliance says so at start.
//!
//! Needs root, iproute2 and at least two cores this process may use; says SKIPPED
//! otherwise.

use op25b_testbed::{available_or_skipped, ctl, run_appliance, wait_for_control, Wire};
use std::collections::BTreeSet;

fn config(workers: usize, cores: &[usize]) -> String {
    let cores: Vec<String> = cores.iter().map(|c| c.to_string()).collect();
    format!(
        r#"
[outbound]
dynamic = ["10.9.0.0/16"]
[dataplane]
backend = "af_packet"
access = "acc0"
core = "core0"
workers = {workers}
cores = [{}]
[control]
socket = "ctl.sock"
metrics = "127.0.0.1:0"
"#,
        cores.join(", ")
    )
}

/// `0-3,6` → {0, 1, 2, 3, 6}.
fn parse_list(list: &str) -> BTreeSet<usize> {
    list.trim()
        .split(',')
        .filter(|p| !p.is_empty())
        .flat_map(|p| match p.split_once('-') {
            Some((a, b)) => a.parse::<usize>().unwrap()..=b.parse::<usize>().unwrap(),
            None => p.parse::<usize>().unwrap()..=p.parse::<usize>().unwrap(),
        })
        .collect()
}

/// Every thread of `pid`: its name and the cores it may run on.
fn threads(pid: u32) -> Vec<(String, BTreeSet<usize>)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .map(|t| {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap();
            let status = std::fs::read_to_string(t.path().join("status")).unwrap();
            let list = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .unwrap();
            (comm.trim().to_string(), parse_list(list))
        })
        .collect()
}

#[test]
fn pinned_workers_keep_their_cores_and_the_control_plane_keeps_off_them() {
    if !available_or_skipped() {
        return;
    }
    let all = op25b_dataplane::port::sys::allowed_cores().unwrap();
    if all.len() < 2 {
        op25b_dataplane::testkit::skipped(format!(
            "this process may use {} core(s); keeping the control plane off a worker's core needs two",
            all.len()
        ));
        return;
    }
    let worker_core = *all.last().unwrap();
    let dir = op25b_dataplane::testkit::scratch_dir("live-cores");
    let cfg = dir.join("op25b.toml");
    let sock = dir.join("ctl.sock");
    let wire = Wire::new("cr", "crl0", "crr0", false);

    std::fs::write(&cfg, config(1, &[worker_core])).unwrap();
    let mut appliance = run_appliance(&wire.app, &cfg);
    let pid = appliance.child().id();
    wait_for_control(&sock);
    // A reload builds a policy on the control thread and hands the old one to the reaper
    // (started at the first reload), so both are there to be looked at afterwards.
    let (ok, said) = ctl(&sock, &["reload"]);
    assert!(ok, "{said}");
    let seen = threads(pid);
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "op25b-worker-0",
        "op25b-ctl",
        "op25b-metrics",
        "op25b-reaper",
        "op25b-signals",
    ] {
        assert!(names.contains(&want), "no thread {want} among {names:?}");
    }
    for (name, cores) in &seen {
        if name == "op25b-worker-0" {
            assert_eq!(cores, &BTreeSet::from([worker_core]), "{name}");
        } else {
            assert!(
                !cores.contains(&worker_core) && !cores.is_empty(),
                "{name} may run on {cores:?}, including the worker's core {worker_core}"
            );
        }
    }
    let out = appliance.terminate();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("op25b: control thread on cores "), "{err}");
    assert!(err.contains(&format!("workers on {worker_core}")), "{err}");

    // Every core a worker's: said at start, and the appliance runs as before.
    std::fs::write(&cfg, config(all.len(), &all)).unwrap();
    let mut appliance = run_appliance(&wire.app, &cfg);
    wait_for_control(&sock);
    let out = appliance.terminate();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("every core this process may run on has a worker"),
        "{err}"
    );
    assert!(out.status.success(), "{err}");
}
