//! What the live appliance does when an interface under it changes, on each backend
//! (AF_PACKET; AF_XDP; DPDK through net_af_packet): a link that goes down and up again,
//! set down itself or losing its carrier, is logged once each way, costs no spinning core
//! while down, and carries traffic again afterwards; an interface that is deleted (its sockets, XDP program or virtual device
//! then serve nothing, ever) stops the appliance with an error naming it and a non-zero
//! exit, so the service manager restarts it on the new interface instead of a silent
//! black hole.
//!
//! A second appliance on the same interfaces is refused, naming the first.
//!
//! Needs root and iproute2, and for AF_XDP and DPDK an `op25b` built with those features
//! (the `--all-features` test run); says SKIPPED otherwise.

use op25b_testbed::{available_or_skipped, run_appliance, Wire};
use std::time::{Duration, Instant};

/// The config of appliance `n` (each its own control socket and DPDK file prefix).
fn config(backend: &str, n: u32) -> String {
    let dataplane = match backend {
        "dpdk" => format!(
            r#"backend = "dpdk"
access = "net_af_packet0"
core = "net_af_packet1"
eal_args = ["--no-huge", "--no-pci", "--no-shconf", "-m", "256", "-l", "0",
            "--log-level=lib.eal:warning", "--file-prefix=op25b-lk-{pid}-{n}",
            "--vdev=net_af_packet0,iface=acc0", "--vdev=net_af_packet1,iface=core0"]"#,
            pid = std::process::id()
        ),
        b => format!("backend = \"{b}\"\naccess = \"acc0\"\ncore = \"core0\""),
    };
    format!(
        r#"
[outbound]
ports = [25, 25]
dynamic = ["10.9.0.0/16"]
[dataplane]
{dataplane}
[control]
socket = "ctl{n}.sock"
metrics = ""
"#
    )
}

/// Waits until `ifname` in `ns` is in operational state UP: frames cross as soon as the
/// carrier is on, but the kernel marks the link running (`IFF_RUNNING`, what the link
/// watch reads) only once its link-watch work has run, up to a second later.
fn wait_running(ns: &op25b_testbed::Netns, ifname: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&ns.exec(&["ip", "-o", "link", "show", ifname]).stdout)
        .contains("state UP")
    {
        assert!(Instant::now() < deadline, "{ifname} never reached state UP");
        std::thread::sleep(Duration::from_millis(50));
    }
}

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
fn af_packet_a_flapped_link_recovers_and_a_deleted_interface_stops_the_appliance() {
    flap_and_delete("af_packet", "lk");
}

#[test]
fn af_xdp_a_flapped_link_recovers_and_a_deleted_interface_stops_the_appliance() {
    flap_and_delete("af_xdp", "lx");
}

#[test]
fn dpdk_a_flapped_link_recovers_and_a_deleted_interface_stops_the_appliance() {
    flap_and_delete("dpdk", "ld");
}

fn flap_and_delete(backend: &str, tag: &str) {
    if !available_or_skipped() {
        return;
    }
    let (dir, cfg) = op25b_dataplane::testkit::scratch_config(
        &format!("live-link-{backend}"),
        config(backend, 1),
    );
    let probe = std::process::Command::new(op25b_testbed::op25b_binary())
        .args(["check", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let why = String::from_utf8_lossy(&probe.stderr);
    if !probe.status.success() {
        assert!(why.contains("without"), "{why}");
        op25b_dataplane::testkit::skipped(format!(
            "this op25b cannot run backend {backend}: {} (cargo test --all-features runs it)",
            why.trim()
        ));
        return;
    }
    let wire = Wire::new(tag, &format!("{tag}l0"), &format!("{tag}r0"), false);
    wire.left
        .add_addresses(&format!("{tag}l0"), &["10.0.0.1/24"]);
    wire.right
        .add_addresses(&format!("{tag}r0"), &["10.0.0.2/24"]);
    // An interface whose MTU is above the other side's (AF_PACKET, AF_XDP), or above what
    // the DPDK device on it is set up for, is named at start (its larger frames are lost).
    wire.app
        .exec(&["ip", "link", "set", "dev", "core0", "mtu", "9000"]);
    // Fresh veths are marked running (what the watch reads) only once the kernel's
    // link-watch work has run; start once they are, or the first look says "down at start".
    wait_running(&wire.app, "acc0");
    wait_running(&wire.app, "core0");
    let mut appliance = run_appliance(&wire.app, &cfg);
    let pid = appliance.child().id();
    wire.left.wait_for_ping("10.0.0.2", Duration::from_secs(15));

    // A second appliance on the same interfaces (it would forward every frame again, and
    // on AF_XDP replace the first one's program) is refused, naming the first; the first
    // serves on, once per frame.
    let second_cfg = dir.join("second.toml");
    std::fs::write(&second_cfg, config(backend, 2)).unwrap();
    let second = wire
        .app
        .command(&[
            op25b_testbed::op25b_binary().to_str().unwrap(),
            "run",
            "--config",
            second_cfg.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let refusal = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{refusal}");
    assert!(
        refusal.contains(&format!("is already served by process {pid} (")),
        "{refusal}"
    );
    let ping = wire
        .left
        .exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.0.0.2"]);
    let ping = String::from_utf8_lossy(&ping.stdout);
    assert!(
        ping.contains("3 received") && !ping.contains("duplicates"),
        "{ping}"
    );

    // Down for two seconds, then up: the worker does not spin meanwhile (AF_PACKET: the
    // socket's pending error is taken, so poll(2) sleeps again; DPDK naps when idle), both
    // changes are logged, and pings cross again after.
    wire.app.exec(&["ip", "link", "set", "dev", "acc0", "down"]);
    std::thread::sleep(Duration::from_millis(300));
    let (t, before) = (Instant::now(), cpu_ticks(pid));
    std::thread::sleep(Duration::from_secs(2));
    let used = (cpu_ticks(pid) - before) as f64 / 100.0 / t.elapsed().as_secs_f64();
    assert!(
        used < 0.5,
        "the appliance used {used:.2} of a core while a link was down"
    );
    // `status` shows it (and the config's warning: the port listed twice).
    let sock = dir.join("ctl1.sock");
    let access = if backend == "dpdk" {
        "net_af_packet0"
    } else {
        "acc0"
    };
    let core = if backend == "dpdk" {
        "net_af_packet1"
    } else {
        "core0"
    };
    let (_, status) = op25b_testbed::ctl(&sock, &["status"]);
    assert!(
        status.contains(&format!("\nlinks: access {access} DOWN, core {core} up\n"))
            && status.contains("\nconfig warnings (1):\n  ")
            && status.contains("ports: 25 is listed twice")
            && status.contains(&format!("\nworkers: 1 ({backend} backend)\n")),
        "{status}"
    );
    // Frames for the side that is down are refused and counted (AF_XDP's kernel would
    // drop them uncounted; DPDK's net_af_packet would hold them and send them, stale,
    // once the link came back).
    let refused = || -> u64 {
        let (ok, text) = op25b_testbed::ctl(&sock, &["stats", "--json"]);
        assert!(ok, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["tx_refused"].as_u64().unwrap()
    };
    let before = refused();
    // (It fails: nothing answers.)
    let _ = wire
        .right
        .command(&["ping", "-c", "3", "-i", "0.2", "-W", "1", "10.0.0.1"])
        .output();
    let deadline = Instant::now() + Duration::from_secs(5);
    while refused() < before + 3 {
        assert!(
            Instant::now() < deadline,
            "{backend}: frames towards a down link not counted as refused ({before} before, {} after)",
            refused()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wire.app.exec(&["ip", "link", "set", "dev", "acc0", "up"]);
    wire.left.wait_for_ping("10.0.0.2", Duration::from_secs(15));
    assert!(
        appliance.child().try_wait().unwrap().is_none(),
        "stopped after a flap"
    );
    // The watch looks within 250 ms of the link running again: let it see that.
    wait_running(&wire.app, "acc0");
    std::thread::sleep(Duration::from_millis(600));
    let (_, status) = op25b_testbed::ctl(&sock, &["status"]);
    assert!(
        status.contains(&format!("\nlinks: access {access} up, core {core} up\n")),
        "{status}"
    );

    // The carrier lost alone (the far end of acc0's cable, here its veth peer, goes down;
    // acc0 stays administratively up and no socket error is raised): logged both ways too.
    let peer = format!("{tag}l0");
    wire.left.exec(&["ip", "link", "set", "dev", &peer, "down"]);
    std::thread::sleep(Duration::from_millis(1200));
    wire.left.exec(&["ip", "link", "set", "dev", &peer, "up"]);
    wire.left.wait_for_ping("10.0.0.2", Duration::from_secs(15));
    wait_running(&wire.app, "acc0");
    std::thread::sleep(Duration::from_millis(600));

    // Deleted (the veth pair goes with it): the appliance stops by itself, non-zero, and
    // says which interface and why.
    wire.app.exec(&["ip", "link", "del", "acc0"]);
    let deleted = Instant::now();
    let out = appliance.wait_for_end(
        Duration::from_secs(10),
        "op25b did not stop after its interface was deleted",
    );
    let stopped_after = deleted.elapsed();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{log}");
    // DPDK names its device and the interface under it.
    let side = if backend == "dpdk" {
        "net_af_packet0 (acc0)"
    } else {
        "acc0"
    };
    // The two flaps: one line each way each. (Deleting the interface takes it down first,
    // which may be logged too, before it is gone.)
    let up_again = format!("link is up again: {side}\n");
    let ups: Vec<usize> = log.match_indices(&up_again).map(|(i, _)| i).collect();
    assert_eq!(ups.len(), 2, "{log}");
    let flaps = &log[..ups[1]];
    assert_eq!(flaps.matches("link went down").count(), 2, "{log}");
    assert_eq!(
        flaps
            .matches(&format!("link went down: {side}: down or without carrier"))
            .count(),
        2,
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "{side}: the interface acc0 this side was bound to (index"
        )) && log.contains("is gone")
            && log.contains(&format!("op25b: error: {side}:")),
        "{log}"
    );
    if backend == "dpdk" {
        assert!(
            log.contains("warning: core0 has MTU 9000, but the DPDK device on it is set up for 1500: larger frames are lost"),
            "{log}"
        );
    } else {
        assert!(
            log.contains("warning: core0 has MTU 9000 but acc0 only 1500: frames from core0 larger than 1500 bytes of IP cannot leave through acc0"),
            "{log}"
        );
    }
    // The final counters are still printed.
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("access→core"),
        "{out:?}"
    );
    println!(
        "{backend} flap: {used:.2} of a core while down; stopped {:.0} ms after the deletion (polled every 100 ms); log: {}",
        stopped_after.as_secs_f64() * 1e3,
        log.trim()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
