//! The DPDK backend end to end (`dpdk` feature), each scenario in its own `op25b run`
//! process (the EAL starts once per process), on virtual devices so no NIC or hugepage is
//! needed (`--no-huge --no-pci --no-shconf`):
//! - `net_pcap` ports replay captures through the real DPDK path in both directions; what
//!   leaves each port must be, frame for frame and in order, what `op25b replay` passes for
//!   the same capture and config;
//! - with `action = "reject"`, the TCP resets leave through the ingress port and are the
//!   resets `op25b replay --resets-out` writes;
//! - `net_null` ports with two workers (two queues per port) move traffic, and the counters
//!   add up;
//! - a `net_null` access port with a `net_ring` core port: the start line says the core
//!   port's frames are prefetched and the access port's not, and traffic moves both ways
//!   through the one worker (which poll uses which side's flag is a unit test of the
//!   backend);
//! - with `mtu = 9000`, jumbo frames of every shape (and an IPv6 segment whose TCP header
//!   lies 4 KiB in) leave the `net_pcap` port whole and exactly as replay passes them;
//! - a port name that does not exist, bad EAL arguments, and an MTU the device or the
//!   memory cannot carry stop `op25b run` with an error that names the problem, never a
//!   panic.

#![cfg(feature = "dpdk")]

mod common;

use common::*;
use op25b_dataplane::port::pcap::{CaptureReader, Next};
use op25b_dataplane::port::Burst;
use op25b_dataplane::wire::build::{FrameBuilder, L4};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const POLICY: &str = r#"
[outbound]
ports = [25]
action = "drop"
dynamic = ["10.0.0.0/8", "2001:db8:100::/40"]
exempt = ["10.9.9.9"]
relays = ["192.0.2.25/32"]

[inbound]
ports = [25]
action = "drop"
protected = ["198.51.100.25"]
dynamic = ["203.0.113.0/24"]
"#;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Subscriber traffic (access side): blocked and passing TCP over every encapsulation,
/// fragments, UDP, IPv6, a runt and a full-size frame. None of it is inbound-relevant.
fn outbound_frames() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for i in 0..60u16 {
        let dport = [25, 587, 443, 25, 80][usize::from(i % 5)];
        let src = ["10.0.0.7", "10.9.9.9", "192.168.1.1", "10.200.1.1"][usize::from(i % 4)];
        let dst = if i % 7 == 0 { "192.0.2.25" } else { "8.8.4.4" };
        let f = FrameBuilder::tcp(ip(src), ip(dst), 40000 + i, dport);
        let f = match i % 6 {
            0 => f,
            1 => f.vlan(0x8100, 100 + i),
            2 => f.vlan(0x88a8, 10).vlan(0x8100, 20),
            3 => f.pppoe(7, false),
            4 => f.pppoe(8, true),
            _ => f.payload(&[0xab; 1400]),
        };
        v.push(f.build());
    }
    for i in 0..10u16 {
        v.push(FrameBuilder::tcp(ip("2001:db8:100::5"), ip("2001:db8:9::1"), 5000 + i, 25).build());
        v.push(FrameBuilder::tcp(ip("2001:db8:200::5"), ip("2001:db8:9::1"), 5000 + i, 25).build());
        v.push(
            FrameBuilder::new(
                ip("10.0.0.8"),
                ip("8.8.8.8"),
                L4::Udp {
                    sport: 53,
                    dport: 25,
                },
            )
            .build(),
        );
        v.push(
            FrameBuilder::tcp(ip("10.0.0.9"), ip("8.8.8.8"), 1, 80)
                .ipv4_fragment(1, true)
                .build(),
        );
    }
    v.push(vec![0xff; 5]);
    v
}

/// Internet traffic towards our MX host (core side): other networks' dynamic ranges are
/// refused on port 25 only when the destination is protected.
fn inbound_frames() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for i in 0..50u16 {
        let src = ["203.0.113.9", "198.18.0.1"][usize::from(i % 2)];
        let dst = if i % 3 == 0 {
            "198.51.100.25"
        } else {
            "198.51.100.80"
        };
        let dport = if i % 5 == 0 { 443 } else { 25 };
        v.push(
            FrameBuilder::tcp(ip(src), ip(dst), 30000 + i, dport)
                .vlan(0x8100, 5)
                .build(),
        );
    }
    v
}

/// The Ethernet frames of a capture, in order.
fn frames_of(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut r = CaptureReader::open(&data[..]).unwrap();
    let mut b = Burst::new(1);
    let mut out = Vec::new();
    loop {
        b.clear();
        match r.next_into(&mut b).unwrap() {
            Next::Frame => out.push(b.frame(0).to_vec()),
            Next::Meta => {}
            Next::End => return out,
        }
    }
}

/// What `op25b replay` passes of `frames` under `config`.
fn replay_pass(config: &Path, frames: &[Vec<u8>], dir: &Path) -> Vec<Vec<u8>> {
    let input = dir.join("replay-in.pcap");
    write_pcap(&input, frames, false);
    let out = replay(config, &input, dir, &[]);
    assert!(
        out.status.success(),
        "replay: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    frames_of(&dir.join("pass.out"))
}

/// Writes `dir/op25b.toml` for two net_pcap ports: access reads `dir/access_in` and writes
/// `dir/access-out.pcap`, core reads `dir/core_in` and writes `dir/core-out.pcap`.
/// `dataplane` holds extra `[dataplane]` lines; the EAL gets `mem_mb` MB. Returns the config
/// and control socket paths.
fn pcap_config(
    dir: &Path,
    name: &str,
    policy: &str,
    (access_in, core_in): (&str, &str),
    dataplane: &str,
    mem_mb: u32,
) -> (PathBuf, PathBuf) {
    let socket = dir.join("ctl.sock");
    let vdevs = [
        format!(
            "--vdev=net_pcap0,rx_pcap={},tx_pcap={}",
            dir.join(access_in).display(),
            dir.join("access-out.pcap").display()
        ),
        format!(
            "--vdev=net_pcap1,rx_pcap={},tx_pcap={}",
            dir.join(core_in).display(),
            dir.join("core-out.pcap").display()
        ),
    ];
    let eal = eal_args(name, &vdevs).replace("\"128\"", &format!("\"{mem_mb}\""));
    let config = dir.join("op25b.toml");
    std::fs::write(
        &config,
        format!(
            "{policy}\n[dataplane]\nbackend = \"dpdk\"\naccess = \"net_pcap0\"\ncore = \"net_pcap1\"\n{dataplane}eal_args = {eal}\n\n[control]\nsocket = {:?}\nmetrics = \"\"\n",
            socket.display().to_string()
        ),
    )
    .unwrap();
    (config, socket)
}

/// EAL arguments for a virtual-device run private to this test process (`name` makes its
/// file prefix: each test gives its own).
fn eal_args(name: &str, vdevs: &[String]) -> String {
    format!("{:?}", op25b_dataplane::testkit::eal_args(name, vdevs))
}

fn start(config: &Path) -> Child {
    op25b()
        .arg("run")
        .arg("--config")
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `op25b ctl stats --json` of a running appliance, if it answers.
fn stats(socket: &Path) -> Option<serde_json::Value> {
    let out = op25b()
        .args(["ctl", "--socket"])
        .arg(socket)
        .args(["stats", "--json"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

/// Waits until `done(stats)` holds (or the child exits, or 60 s pass); returns the stats.
fn wait_stats(
    child: &mut Child,
    socket: &Path,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = std::mem::replace(child, Command::new("true").spawn().unwrap());
            let out = out.wait_with_output().unwrap();
            panic!(
                "op25b run exited early ({status}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if let Some(s) = stats(socket) {
            if done(&s) {
                return s;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "op25b run made no progress"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGTERM, then the exit status and both outputs.
fn stop(child: Child) -> (bool, String, String) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill failed");
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts `op25b run`, waits until `done(stats)` holds, stops it with SIGTERM and asserts
/// it exited cleanly; returns the stats and both outputs.
fn run_until(
    config: &Path,
    socket: &Path,
    done: impl Fn(&serde_json::Value) -> bool,
) -> (serde_json::Value, String, String) {
    let mut child = start(config);
    let s = wait_stats(&mut child, socket, done);
    let (ok, stdout, stderr) = stop(child);
    assert!(ok, "op25b run failed: {stderr}");
    (s, stdout, stderr)
}

#[test]
fn pcap_vdevs_forward_exactly_what_replay_passes_in_both_directions() {
    let dir = scratch("dpdk-pcap");
    let out_frames = outbound_frames();
    let in_frames = inbound_frames();
    write_pcap(&dir.join("access-in.pcap"), &out_frames, false);
    write_pcap(&dir.join("core-in.pcap"), &in_frames, true);
    let (config, socket) = pcap_config(
        &dir,
        "pcap",
        POLICY,
        ("access-in.pcap", "core-in.pcap"),
        "burst = 16\n",
        128,
    );

    let (n_out, n_in) = (out_frames.len() as u64, in_frames.len() as u64);
    let (s, stdout, stderr) = run_until(&config, &socket, |s| {
        s["outbound"]["rx"] == n_out && s["inbound"]["rx"] == n_in
    });
    // net_pcap copies each frame into its mbuf on the polling core: not asked for ahead.
    assert!(
        stderr.contains("(net_pcap)") && stderr.contains("not prefetched"),
        "{stderr}"
    );

    counters_add_up(&s);
    assert_eq!(s["tx_refused"], 0);

    let want_core = replay_pass(&config, &out_frames, &dir);
    let want_access = replay_pass(&config, &in_frames, &dir);
    // The policy blocks some frames each way, so the comparison means something.
    assert!(want_core.len() < out_frames.len() && !want_core.is_empty());
    assert!(want_access.len() < in_frames.len() && !want_access.is_empty());
    assert_eq!(s["outbound"]["tx"], want_core.len() as u64);
    assert_eq!(s["inbound"]["tx"], want_access.len() as u64);

    let got_core = frames_of(&dir.join("core-out.pcap"));
    let got_access = frames_of(&dir.join("access-out.pcap"));
    for (name, got, want) in [
        ("core (access→core)", &got_core, &want_core),
        ("access (core→access)", &got_access, &want_access),
    ] {
        assert_eq!(got.len(), want.len(), "{name}: frame count");
        for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
            assert!(g == w, "{name}: frame {i} differs from what replay passes");
        }
    }
    assert!(
        stdout.contains(&format!("access→core: rx {n_out} tx {}", want_core.len())),
        "{stdout}"
    );
    // A DPDK TX queue belongs to the device, not to the kernel.
    assert!(stdout.contains("\ntx refused by the device: 0"), "{stdout}");
    assert!(!stdout.contains("kernel"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn reject_sends_the_resets_replay_writes_out_of_the_ingress_port() {
    let dir = scratch("dpdk-reject");
    let frames = outbound_frames();
    write_pcap(&dir.join("access-in.pcap"), &frames, false);
    write_pcap(&dir.join("empty.pcap"), &[], false);
    let policy = "[outbound]\nports = [25]\naction = \"reject\"\nreject_rate = 100000\ndynamic = [\"10.0.0.0/8\", \"2001:db8:100::/40\"]\nrelays = [\"192.0.2.25/32\"]\n";
    let (config, socket) = pcap_config(
        &dir,
        "reject",
        policy,
        ("access-in.pcap", "empty.pcap"),
        "",
        128,
    );
    let n = frames.len() as u64;
    let (s, _, _) = run_until(&config, &socket, |s| s["outbound"]["rx"] == n);

    let input = dir.join("replay-in.pcap");
    write_pcap(&input, &frames, false);
    let resets = dir.join("resets.pcap");
    let out = replay(
        &config,
        &input,
        &dir,
        &["--resets-out", resets.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "replay: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want_resets = frames_of(&resets);
    let want_pass = frames_of(&dir.join("pass.out"));
    assert!(!want_resets.is_empty());
    // Fragments with offset 1 are dropped without a reset (they carry no TCP header).
    assert_eq!(s["outbound"]["dropped"], report(&dir)["frames"]["drop"]);
    assert!(s["outbound"]["dropped"].as_u64().unwrap() > want_resets.len() as u64);
    assert_eq!(frames_of(&dir.join("access-out.pcap")), want_resets);
    assert_eq!(frames_of(&dir.join("core-out.pcap")), want_pass);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes into `dir` a config of the test policy on the virtual devices `vdevs` (created
/// by the EAL in this order), with the ports named (access, core) and `workers` workers,
/// and a control socket; returns the config's and the socket's paths. `name` makes the
/// EAL's file prefix (each test its own).
fn vdev_config(
    dir: &Path,
    name: &str,
    vdevs: [&str; 2],
    [access, core]: [&str; 2],
    workers: usize,
) -> (PathBuf, PathBuf) {
    let socket = dir.join("ctl.sock");
    let vdevs = vdevs.map(|v| format!("--vdev={v}"));
    let config = dir.join("op25b.toml");
    std::fs::write(
        &config,
        format!(
            "{POLICY}\n[dataplane]\nbackend = \"dpdk\"\naccess = {access:?}\ncore = {core:?}\nworkers = {workers}\neal_args = {}\n\n[control]\nsocket = {:?}\nmetrics = \"\"\n",
            eal_args(name, &vdevs),
            socket.display().to_string()
        ),
    )
    .unwrap();
    (config, socket)
}

/// Both directions judged every frame once: each frame received was sent on or dropped.
fn counters_add_up(s: &serde_json::Value) {
    for dir in ["outbound", "inbound"] {
        let c = &s[dir];
        assert_eq!(
            c["rx"].as_u64().unwrap(),
            c["tx"].as_u64().unwrap() + c["dropped"].as_u64().unwrap(),
            "{dir}: {c}"
        );
    }
}

#[test]
fn null_vdevs_with_two_workers_move_traffic_and_counters_add_up() {
    let dir = scratch("dpdk-null");
    let (config, socket) = vdev_config(
        &dir,
        "null",
        ["net_null0", "net_null1"],
        ["0", "net_null1"],
        2,
    );
    let (s, stdout, stderr) = run_until(&config, &socket, |s| {
        s["outbound"]["rx"].as_u64().unwrap_or(0) > 100_000
            && s["inbound"]["rx"].as_u64().unwrap_or(0) > 100_000
    });
    assert!(stdout.contains("\ntx refused by the device: "), "{stdout}");
    counters_add_up(&s);
    assert!(stderr.contains("2 queue(s) each"), "{stderr}");
    // The ports' drivers are named, and net_null's frames (the pool's own, never written
    // by a device) are not asked for ahead.
    assert!(
        stderr.contains("access 0 = port 0 (net_null), core net_null1 = port 1 (net_null)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("frames arrive in the worker's cache, not prefetched"),
        "{stderr}"
    );
    // net_null's links are up from the start: the control thread's device link watch
    // (the NIC path) reports no change.
    assert!(!stderr.contains("link went down"), "{stderr}");
    // The final summary covers at least what the last snapshot saw.
    let line = stdout
        .lines()
        .find(|l| l.starts_with("access→core: rx "))
        .unwrap_or_else(|| panic!("no summary: {stdout}"));
    let rx: u64 = line["access→core: rx ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rx >= s["outbound"]["rx"].as_u64().unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mixed_drivers_are_prefetched_per_side_and_move_traffic_both_ways() {
    // net_null on the access side (its frames are the pool's own: not asked for ahead),
    // net_ring on the core side (its frames were written by another poll: asked for
    // ahead, as a NIC's). net_ring loops what is sent to it back to its receive queue, so
    // the outbound frames come back inbound and both directions of the one worker poll
    // a frame source of each kind.
    let dir = scratch("dpdk-mixed");
    let (config, socket) = vdev_config(
        &dir,
        "mixed",
        ["net_null0", "net_ring0"],
        ["net_null0", "net_ring0"],
        1,
    );
    let (s, _, stderr) = run_until(&config, &socket, |s| {
        s["outbound"]["rx"].as_u64().unwrap_or(0) > 100_000
            && s["inbound"]["rx"].as_u64().unwrap_or(0) > 10_000
    });
    assert!(
        stderr.contains("access net_null0 = port 0 (net_null), core net_ring0 = port 1 (net_ring)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("; the core port's frames prefetched, the access port's not"),
        "{stderr}"
    );
    counters_add_up(&s);
    // No more came in on the core side than was sent to it (net_ring's loop; the rest is
    // still in the ring or was refused).
    assert!(
        s["inbound"]["rx"].as_u64().unwrap() <= s["outbound"]["tx"].as_u64().unwrap(),
        "{s}"
    );
    assert!(!stderr.contains("link went down"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `op25b run` with this `[dataplane]`, expecting it to stop by itself with an error
/// and exit `code`: 1 for what a later start may get past (a missing port, the EAL, the
/// pool's memory), 3 for what it cannot until the operator acts (queues, an MTU).
fn refused(name: &str, code: i32, dataplane: &str) -> String {
    let dir = scratch(name);
    let config = dir.join("op25b.toml");
    std::fs::write(
        &config,
        format!(
            "{POLICY}\n[dataplane]\n{dataplane}\n\n[control]\nsocket = {:?}\nmetrics = \"\"\n",
            dir.join("ctl.sock").display().to_string()
        ),
    )
    .unwrap();
    let mut child = start(&config);
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("{name}: op25b run did not stop by itself");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{name}: exit status {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
    stderr
}

#[test]
fn a_missing_port_or_bad_eal_arguments_stop_with_a_clear_error() {
    let vdevs = [
        "--vdev=net_null0".to_string(),
        "--vdev=net_null1".to_string(),
    ];
    let e = refused(
        "dpdk-noport",
        1,
        &format!(
            "backend = \"dpdk\"\naccess = \"net_null0\"\ncore = \"net_null7\"\neal_args = {}",
            eal_args("noport", &vdevs)
        ),
    );
    assert!(
        e.contains("op25b: error: DPDK port \"net_null7\" (core) does not exist; the EAL has ports 0 (net_null0), 1 (net_null1)"),
        "{e}"
    );
    let e = refused(
        "dpdk-noid",
        1,
        &format!(
            "backend = \"dpdk\"\naccess = \"5\"\ncore = \"net_null1\"\neal_args = {}",
            eal_args("noid", &vdevs)
        ),
    );
    assert!(e.contains("DPDK port \"5\" (access) does not exist"), "{e}");
    // An argument the EAL does not take: exit 3, which systemd does not restart.
    let e = refused(
        "dpdk-badeal",
        3,
        "backend = \"dpdk\"\naccess = \"net_null0\"\ncore = \"net_null1\"\neal_args = [\"--no-huge\", \"--no-such-eal-option\"]",
    );
    assert!(
        e.contains("op25b: error: DPDK EAL initialisation failed (Invalid argument)"),
        "{e}"
    );
    assert!(e.contains("check eal_args"), "{e}");
    // More workers than the device has queues: how many it has, and how to give it more.
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/sample.pcap");
    let out = scratch("dpdk-queues-out");
    let pcap_vdev = |i: u32| {
        format!(
            "--vdev=net_pcap{i},rx_pcap={},tx_pcap={}",
            sample.display(),
            out.join(format!("{i}.pcap")).display()
        )
    };
    let e = refused(
        "dpdk-queues",
        3,
        &format!(
            "backend = \"dpdk\"\naccess = \"net_pcap0\"\ncore = \"net_pcap1\"\nworkers = 2\neal_args = {}",
            eal_args("queues", &[pcap_vdev(0), pcap_vdev(1)])
        ),
    );
    assert!(
        e.contains("queue count (the device has 1 RX and 1 TX queues, fewer than the 2 workers: give it more, e.g. qpairs=2 in a net_af_packet --vdev"),
        "{e}"
    );
}

/// An IPv6 TCP segment whose TCP header lies beyond the first 4 KiB of the frame, behind a
/// 2048-byte hop-by-hop and a 2048-byte destination-options header (Pad1 filled), with
/// `payload` bytes after it: judging it needs the whole frame, not a 2 KiB first segment.
fn deep_ipv6_frame(src: &str, dst: &str, dport: u16, payload: usize) -> Vec<u8> {
    let (src, dst): (std::net::Ipv6Addr, std::net::Ipv6Addr) =
        (src.parse().unwrap(), dst.parse().unwrap());
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x86, 0xdd];
    let plen = (2 * 2048 + 20 + payload) as u16;
    f.extend([0x60, 0, 0, 0]);
    f.extend(plen.to_be_bytes());
    f.extend([0, 64]); // next header: hop-by-hop
    f.extend(src.octets());
    f.extend(dst.octets());
    for next in [60u8, 6] {
        let mut ext = vec![0u8; 2048];
        (ext[0], ext[1]) = (next, 255);
        f.extend(ext);
    }
    f.extend(40000u16.to_be_bytes());
    f.extend(dport.to_be_bytes());
    f.extend([0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    f.resize(f.len() + payload, 0xcd);
    f
}

/// Jumbo frames (MTU 9000) of every shape, blocked and passing, with small frames between.
fn jumbo_frames() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for (i, dport) in [25u16, 443].into_iter().cycle().take(10).enumerate() {
        let i = i as u16;
        let v4 = |p: usize| {
            FrameBuilder::tcp(ip("10.0.0.7"), ip("8.8.4.4"), 1000 + i, dport)
                .payload(&vec![0xab; p])
        };
        let f = match i / 2 {
            // IP packets of exactly 9000 bytes (PPPoE: 8992, so its payload is 9000).
            0 => v4(8960).build(),
            1 => v4(8960).vlan(0x8100, 7).build(),
            2 => v4(8960).vlan(0x88a8, 10).vlan(0x8100, 20).build(),
            3 => v4(8952).vlan(0x8100, 9).pppoe(3, false).build(),
            _ => FrameBuilder::tcp(ip("2001:db8:100::5"), ip("2001:db8:9::1"), 1000 + i, dport)
                .payload(&vec![0xab; 8940])
                .vlan(0x8100, 11)
                .build(),
        };
        v.push(f);
        v.push(FrameBuilder::tcp(ip("10.0.0.8"), ip("8.8.8.8"), 2000 + i, dport).build());
    }
    v.push(deep_ipv6_frame("2001:db8:100::5", "2001:db8:9::1", 25, 100));
    v.push(deep_ipv6_frame(
        "2001:db8:100::5",
        "2001:db8:9::1",
        443,
        4000,
    ));
    v
}

#[test]
fn jumbo_frames_pass_whole_and_are_judged_whole_with_mtu_9000() {
    let dir = scratch("dpdk-jumbo");
    let frames = jumbo_frames();
    let largest = frames.iter().map(Vec::len).max().unwrap();
    assert!(
        largest >= 9018,
        "a 9000-byte packet with a VLAN tag: {largest}"
    );
    write_pcap(&dir.join("access-in.pcap"), &frames, false);
    write_pcap(&dir.join("core-in.pcap"), &inbound_frames(), false);
    // 8191 mbufs of 9 KiB need more than the default 128 MB.
    let (config, socket) = pcap_config(
        &dir,
        "jumbo",
        POLICY,
        ("access-in.pcap", "core-in.pcap"),
        "mtu = 9000\n",
        256,
    );
    let n = frames.len() as u64;
    let (s, stdout, stderr) = run_until(&config, &socket, |s| s["outbound"]["rx"] == n);
    assert!(stderr.contains(", mtu 9000"), "{stderr}");
    assert_eq!(s["tx_refused"], 0, "{s}");

    let want = replay_pass(&config, &frames, &dir);
    // Replay drops the deep IPv6 segment to port 25 (its TCP header is 4 KiB in) and
    // passes the other: a judge that saw only a 2 KiB first segment would pass both.
    assert!(want.contains(&frames[frames.len() - 1]));
    assert!(!want.contains(&frames[frames.len() - 2]));
    assert!(want.iter().any(|f| f.len() >= 9018));
    let got = frames_of(&dir.join("core-out.pcap"));
    assert_eq!(got.len(), want.len(), "frame count: {stdout}");
    for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
        assert!(
            g == w,
            "frame {i} ({} bytes, want {}) differs from what replay passes",
            g.len(),
            w.len()
        );
    }
    assert_eq!(s["outbound"]["tx"], want.len() as u64);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_mtu_the_device_or_memory_cannot_carry_stops_with_a_clear_error() {
    // Pool memory: 16000-byte MTU mbufs do not fit 128 MB.
    let vdevs = [
        "--vdev=net_null0".to_string(),
        "--vdev=net_null1".to_string(),
    ];
    let e = refused(
        "dpdk-mtu-mem",
        1,
        &format!(
            "backend = \"dpdk\"\naccess = \"net_null0\"\ncore = \"net_null1\"\nmtu = 16000\neal_args = {}",
            eal_args("mtumem", &vdevs)
        ),
    );
    assert!(
        e.contains("op25b: error: cannot create the DPDK mbuf pool of 8191 buffers of 16192 bytes"),
        "{e}"
    );
    assert!(e.contains("-m MB in eal_args"), "{e}");
    // The device: net_af_packet takes frames of at most 1518 bytes (MTU 1500).
    if !op25b_dataplane::testkit::is_root() {
        op25b_dataplane::testkit::skipped("the net_af_packet part needs root");
        return;
    }
    let vdevs = [
        "--vdev=net_af_packet0,iface=lo".to_string(),
        "--vdev=net_null0".to_string(),
    ];
    let e = refused(
        "dpdk-mtu-dev",
        3,
        &format!(
            "backend = \"dpdk\"\naccess = \"net_af_packet0\"\ncore = \"net_null0\"\nmtu = 9000\neal_args = {}",
            eal_args("mtudev", &vdevs)
        ),
    );
    assert!(
        e.contains("op25b: error: DPDK port 0 (net_af_packet0): mtu = 9000 is outside what the device takes (")
            && e.contains("..=1500)"),
        "{e}"
    );
}
