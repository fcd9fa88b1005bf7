//! The live appliance on the AF_XDP backend (`backend = "af_xdp"`, the `af_xdp` feature):
//! the same three-namespace wire as `live_smtp`, with `op25b run` attaching its XDP redirect
//! program and sockets to the appliance's veth ends (native XDP, copy-mode sockets: veth
//! has no zero-copy).
//!
//! Proves, over IPv4 and IPv6: dynamic → MX:25 is blocked; dynamic → relay:25 and → MX:587
//! connect; a non-pool (exempt) host → MX:25 connects; ping passes; with `action =
//! "reject"` the blocked connection is refused at once; SIGTERM prints counters that add
//! up and leaves no XDP program on the interfaces. And that a missing interface stops
//! `op25b run` with a one-line error and exit status 1.
//!
//! With a 9000-byte MTU on every interface (AF_XDP multi-buffer): jumbo ICMP with DF over
//! IPv4 and IPv6 and an 8 MiB kernel TCP transfer with jumbo segments pass intact (SHA-256
//! end to end); hand-built jumbo SYNs arrive bit for bit, except the one from a dynamic pool
//! to port 25, which is blocked.
//!
//! VLAN: receive tag stripping is off on both interfaces while the appliance runs and back
//! on after; 802.1Q and QinQ tagged frames cross bit for bit both ways; tagged SYNs from a
//! dynamic pool to port 25 are blocked.
//!
//! Two workers on a two-queue wire (veth with numrxqueues/numtxqueues 2): connections
//! spread over both queues, each worker forwards its queue's share, per-worker counters add
//! up and sum to the totals. One worker on that wire is refused at start, naming the
//! interface, its queue count and both fixes: the frames of the queue without a worker
//! would go to the kernel's stack and be lost.
//!
//! Root without CAP_BPF (its bounding set cut with `setpriv`, as systemd's
//! `CapabilityBoundingSet=` does) is refused with exit 3 and told it is root in a sandbox
//! and what to add, not to run as root.
//!
//! Needs root, iproute2, python3 and an `op25b` built with `--features af_xdp` (the
//! workspace's `--all-features` test run); says SKIPPED otherwise.

use op25b_testbed::{
    available_or_skipped, final_counters, op25b_binary, run_appliance, run_without_caps,
    tcp_syn_frame, Netns, Reaped, Wire,
};
use std::process::Command;
use std::time::{Duration, Instant};

fn policy(action: &str, access: &str) -> String {
    policy_workers(action, access, 1)
}

fn policy_workers(action: &str, access: &str, workers: usize) -> String {
    format!(
        r#"
[outbound]
action = "{action}"
dynamic = ["10.0.0.0/24", "2001:db8:1::/64"]
exempt = ["10.0.0.3", "2001:db8:1::3"]
relays = ["10.0.0.25", "2001:db8:1::25"]

[dataplane]
backend = "af_xdp"
access = "{access}"
core = "core0"
workers = {workers}

[control]
socket = "ctl.sock"
metrics = ""
"#
    )
}

/// Writes `text` as `op25b.toml` in `dir` and returns its path.
fn config_in(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let cfg = dir.join("op25b.toml");
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// Why this `op25b` cannot run the AF_XDP backend, if it cannot.
fn no_af_xdp(dir: &std::path::Path) -> Option<String> {
    let cfg = dir.join("probe.toml");
    std::fs::write(&cfg, policy("drop", "acc0")).unwrap();
    let out = Command::new(op25b_binary())
        .args(["check", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    err.contains("without AF_XDP support").then(|| {
        "op25b was built without the af_xdp feature (run `cargo test --workspace --all-features`)"
            .into()
    })
}

/// The testbed wire with the usual addresses, all four interfaces at `mtu` if given.
fn setup(tag: &str, mtu: Option<u32>) -> Option<(std::path::PathBuf, Wire)> {
    setup_queues(tag, mtu, 1)
}

/// [`setup`] with `queues` queues on every veth end.
fn setup_queues(tag: &str, mtu: Option<u32>, queues: u32) -> Option<(std::path::PathBuf, Wire)> {
    if !available_or_skipped() {
        return None;
    }
    let dir = op25b_dataplane::testkit::scratch_dir(&format!("xdp-{tag}"));
    if let Some(why) = no_af_xdp(&dir) {
        op25b_dataplane::testkit::skipped(why);
        return None;
    }
    let wire = Wire::with_queues(tag, "sub0", "net0", true, queues);
    if let Some(mtu) = mtu {
        wire.set_mtu("sub0", "net0", mtu);
    }
    wire.left.add_addresses(
        "sub0",
        &[
            "10.0.0.2/24",
            "10.0.0.3/24",
            "2001:db8:1::2/64",
            "2001:db8:1::3/64",
        ],
    );
    wire.right.add_addresses(
        "net0",
        &[
            "10.0.0.1/24",
            "10.0.0.25/24",
            "2001:db8:1::1/64",
            "2001:db8:1::25/64",
        ],
    );
    Some((dir, wire))
}

/// Stops the appliance and checks what every run must show: exit 0, `start` among its
/// start-up lines, and access→core rx = tx + dropped with at least `min_dropped` dropped.
/// Returns (stdout, stderr, access→core rx).
fn stop_and_check(mut appliance: Reaped, start: &str, min_dropped: u64) -> (String, String, u64) {
    let o = appliance.terminate();
    let (code, out, err) = (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains(start), "{err}");
    let (rx, tx, dropped) = final_counters(&out, "access→core");
    assert_eq!(rx, tx + dropped, "{out}");
    assert!(dropped >= min_dropped, "{out}");
    (out, err, rx)
}

fn no_xdp_left(app: &Netns) {
    for i in ["acc0", "core0"] {
        let link =
            String::from_utf8_lossy(&app.exec(&["ip", "link", "show", i]).stdout).to_string();
        assert!(
            !link.contains("prog/xdp"),
            "XDP program left on {i}: {link}"
        );
    }
}

#[test]
fn af_xdp_appliance_blocks_outbound_25_from_dynamic_pools() {
    let Some((dir, wire)) = setup("xd", None) else {
        return;
    };
    let (sub, app, net) = (&wire.left, &wire.app, &wire.right);
    let cfg = config_in(&dir, &policy("drop", "acc0"));
    let _server = net.tcp_listener();
    let appliance = run_appliance(app, &cfg);
    sub.wait_for_ping("10.0.0.1", Duration::from_secs(10));
    let link =
        String::from_utf8_lossy(&app.exec(&["ip", "link", "show", "acc0"]).stdout).to_string();
    assert!(
        link.contains("prog/xdp") && link.contains("op25b_xsk"),
        "{link}"
    );

    let cases = [
        ("10.0.0.2", "10.0.0.1", 25, "timeout"),
        ("10.0.0.2", "10.0.0.25", 25, "connected"),
        ("10.0.0.2", "10.0.0.1", 587, "connected"),
        ("10.0.0.3", "10.0.0.1", 25, "connected"),
        ("2001:db8:1::2", "2001:db8:1::1", 25, "timeout"),
        ("2001:db8:1::2", "2001:db8:1::25", 25, "connected"),
        ("2001:db8:1::2", "2001:db8:1::1", 587, "connected"),
        ("2001:db8:1::3", "2001:db8:1::1", 25, "connected"),
    ];
    for (src, dst, port, want) in cases {
        assert_eq!(
            sub.tcp_connect(src, dst, port).0,
            want,
            "{src} → {dst}:{port}"
        );
    }
    for dst in ["10.0.0.1", "2001:db8:1::1"] {
        assert!(
            sub.command(&["ping", "-c1", "-W2", dst])
                .output()
                .unwrap()
                .status
                .success(),
            "ping {dst}"
        );
    }

    let (out, err, _) = stop_and_check(appliance, "AF_XDP on acc0 and core0", 2);
    no_xdp_left(app);
    println!("{}\n{out}", err.lines().next().unwrap_or(""));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn af_xdp_reject_refuses_at_once_and_a_missing_interface_is_a_clear_error() {
    let Some((dir, wire)) = setup("xr", None) else {
        return;
    };
    let (sub, app, net) = (&wire.left, &wire.app, &wire.right);

    // A missing interface: one line naming it, exit status 1, nothing left attached.
    let cfg = dir.join("missing.toml");
    std::fs::write(&cfg, policy("drop", "nosuch0")).unwrap();
    let bin = op25b_binary();
    let out = app
        .command(&[
            bin.to_str().unwrap(),
            "run",
            "--config",
            cfg.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("interface \"nosuch0\" (access) does not exist"),
        "{err}"
    );
    no_xdp_left(app);

    let cfg = dir.join("reject.toml");
    std::fs::write(&cfg, policy("reject", "acc0")).unwrap();
    let _server = net.tcp_listener();
    let appliance = run_appliance(app, &cfg);
    sub.wait_for_ping("10.0.0.1", Duration::from_secs(10));
    for (src, dst) in [("10.0.0.2", "10.0.0.1"), ("2001:db8:1::2", "2001:db8:1::1")] {
        let t = Instant::now();
        assert_eq!(
            sub.tcp_connect(src, dst, 25).0,
            "refused",
            "{src} → {dst}:25"
        );
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "refusal took {:?}",
            t.elapsed()
        );
    }
    assert_eq!(sub.tcp_connect("10.0.0.3", "10.0.0.1", 25).0, "connected");
    let (out, _, _) = stop_and_check(appliance, "AF_XDP on acc0 and core0", 2);
    no_xdp_left(app);
    println!("{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Receives one TCP connection on port 4025 and answers with the byte count and SHA-256 of
/// what it read; prints "ready" once listening.
const SINK: &str = r#"
import socket, hashlib
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 4025)); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); h = hashlib.sha256(); n = 0
while True:
    b = c.recv(65536)
    if not b: break
    h.update(b); n += len(b)
c.sendall(f"{n} {h.hexdigest()}".encode()); c.close()
"#;

/// Sends 8 MiB of random bytes to argv[1]:4025 and prints the largest segment size the
/// connection used and whether the sink saw exactly these bytes ("intact").
const SOURCE: &str = r#"
import socket, hashlib, os, sys
d = os.urandom(8 << 20)
s = socket.create_connection((sys.argv[1], 4025), timeout=20)
mss = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
s.sendall(d); s.shutdown(socket.SHUT_WR)
r = s.recv(200).decode()
print(mss, "intact" if r == f"{len(d)} {hashlib.sha256(d).hexdigest()}" else "CORRUPT " + r)
"#;

#[test]
fn af_xdp_jumbo_frames_pass_intact_and_a_jumbo_syn_to_25_is_still_blocked() {
    let Some((dir, wire)) = setup("xj", Some(9000)) else {
        return;
    };
    let (sub, app, net) = (&wire.left, &wire.app, &wire.right);
    let cfg = config_in(&dir, &policy("drop", "acc0"));
    let appliance = run_appliance(app, &cfg);
    sub.wait_for_ping("10.0.0.1", Duration::from_secs(10));

    // ICMP with DF: 8028-byte IPv4 and 8048-byte IPv6 packets, three fragments each way.
    for dst in ["10.0.0.1", "2001:db8:1::1"] {
        let out = sub
            .command(&["ping", "-c3", "-W2", "-M", "do", "-s", "8000", dst])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "jumbo ping {dst}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    // A kernel TCP transfer whose segments are jumbo (MSS 8948), checked end to end.
    let mut sink = net.spawn_ready(&["python3", "-c", SINK]);
    let out = sub
        .command(&["python3", "-c", SOURCE, "10.0.0.1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.trim_end().ends_with("intact"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mss: u32 = text
        .split_whitespace()
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        mss > 8000,
        "the transfer did not use jumbo segments: {text}"
    );
    let _ = sink.take().wait();

    // Jumbo SYNs built by hand: dynamic → :25 must not arrive; dynamic → :587 and
    // exempt → :25 must arrive bit for bit.
    let macs = (sub.mac("sub0"), net.mac("net0"));
    let blocked = tcp_syn_frame(macs, &[], [10, 0, 0, 2], [10, 0, 0, 1], 25, 8000);
    let to_587 = tcp_syn_frame(macs, &[], [10, 0, 0, 2], [10, 0, 0, 1], 587, 8000);
    let exempt = tcp_syn_frame(macs, &[], [10, 0, 0, 3], [10, 0, 0, 1], 25, 8900);
    let capture = net.capture("net0", 2.0);
    sub.send_frames("sub0", &[blocked.clone(), to_587.clone(), exempt.clone()]);
    let seen = capture.frames();
    let big: Vec<usize> = seen.iter().map(Vec::len).filter(|&l| l > 1500).collect();
    assert!(
        seen.contains(&to_587),
        "jumbo SYN to 587 not received intact: {big:?}"
    );
    assert!(
        seen.contains(&exempt),
        "exempt jumbo SYN to 25 not received intact: {big:?}"
    );
    assert!(
        !seen.iter().any(|f| f.get(..60) == blocked.get(..60)),
        "a jumbo SYN from a dynamic pool to port 25 got through"
    );

    let (out, err, _) = stop_and_check(appliance, "multi-buffer", 1);
    no_xdp_left(app);
    println!("{}\n{out}", err.lines().next().unwrap_or(""));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whether `ns` reports ethtool feature `feature` (its `ethtool -k` name) of `dev` on.
fn feature_on(ns: &Netns, dev: &str, feature: &str) -> Option<bool> {
    let out = ns.command(&["ethtool", "-k", dev]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{feature}:")))?;
    Some(line.contains(": on"))
}

#[test]
fn af_xdp_vlan_tagged_frames_keep_their_tags_and_tagged_syns_to_25_are_blocked() {
    let Some((dir, wire)) = setup("xv", None) else {
        return;
    };
    let (sub, app, net) = (&wire.left, &wire.app, &wire.right);
    let features = ["rx-vlan-offload", "rx-vlan-stag-hw-parse"];
    if feature_on(app, "acc0", features[0]).is_none() {
        op25b_dataplane::testkit::skipped(
            "ethtool is not installed (needed to read the offload settings)",
        );
        return;
    }
    for dev in ["acc0", "core0"] {
        for f in features {
            assert_eq!(
                feature_on(app, dev, f),
                Some(true),
                "veth starts with {f} on"
            );
        }
    }
    let cfg = config_in(&dir, &policy("drop", "acc0"));
    let appliance = run_appliance(app, &cfg);
    sub.wait_for_ping("10.0.0.1", Duration::from_secs(10));
    for dev in ["acc0", "core0"] {
        for f in features {
            assert_eq!(
                feature_on(app, dev, f),
                Some(false),
                "{f} on {dev} while running"
            );
        }
    }

    // Tags in the frame, as on a wire: 802.1Q, and 802.1ad outside 802.1Q (QinQ).
    let (s_mac, n_mac) = (sub.mac("sub0"), net.mac("net0"));
    let q = [(0x8100, 100)];
    let qinq = [(0x88a8, 200), (0x8100, 100)];
    let out = |tags: &[(u16, u16)], src: [u8; 4], port: u16| {
        tcp_syn_frame((s_mac, n_mac), tags, src, [10, 0, 0, 1], port, 0)
    };
    let pass = [
        out(&q, [10, 0, 0, 2], 587),
        out(&qinq, [10, 0, 0, 2], 587),
        out(&q, [10, 0, 0, 3], 25),
    ];
    let blocked = [out(&q, [10, 0, 0, 2], 25), out(&qinq, [10, 0, 0, 2], 25)];
    let capture = net.capture("net0", 2.0);
    let mut all = pass.to_vec();
    all.extend(blocked.iter().cloned());
    sub.send_frames("sub0", &all);
    let seen = capture.frames();
    for f in &pass {
        assert!(
            seen.contains(f),
            "tagged frame not received as sent: {f:02x?}\nsaw {seen:02x?}"
        );
    }
    for f in &blocked {
        // The same frame with its tags gone would be a leak too: compare from the IP header.
        let ip = &f[f.len() - 40..];
        assert!(
            !seen.iter().any(|s| s.ends_with(ip)),
            "a tagged SYN from a dynamic pool to port 25 got through: {f:02x?}"
        );
    }
    // And back: a tagged frame from the core side arrives tagged at the subscriber.
    let back = tcp_syn_frame((n_mac, s_mac), &q, [10, 0, 0, 1], [10, 0, 0, 2], 587, 0);
    let capture = sub.capture("sub0", 1.5);
    net.send_frames("net0", std::slice::from_ref(&back));
    assert!(
        capture.frames().contains(&back),
        "core→access tagged frame lost its tag"
    );

    // Does veth strip in XDP mode at all? Turn the offload back on behind the appliance's
    // back and look at what crosses.
    app.exec(&[
        "ethtool",
        "-K",
        "acc0",
        "rxvlan",
        "on",
        "rx-vlan-stag-hw-parse",
        "on",
    ]);
    let capture = net.capture("net0", 1.5);
    sub.send_frames("sub0", std::slice::from_ref(&pass[0]));
    let veth_strips = !capture.frames().contains(&pass[0]);
    app.exec(&[
        "ethtool",
        "-K",
        "acc0",
        "rxvlan",
        "off",
        "rx-vlan-stag-hw-parse",
        "off",
    ]);

    let (out, err, _) = stop_and_check(
        appliance,
        "rx-vlan-hw-parse and rx-vlan-stag-hw-parse turned off until exit",
        2,
    );
    for dev in ["acc0", "core0"] {
        for f in features {
            assert_eq!(
                feature_on(app, dev, f),
                Some(true),
                "{f} on {dev} restored at exit"
            );
        }
    }
    no_xdp_left(app);
    if veth_strips {
        println!("veth in XDP mode strips tags with rx VLAN offload on: turning it off is what keeps them");
    } else {
        println!(
            "NOTE: veth in XDP mode kept the tag with rx VLAN offload on too, so this proves \
             tags pass and the offload is turned off and restored, not a NIC's stripping; a \
             tag a veth peer hands over as metadata (its tx-vlan offload) cannot be produced \
             here (no 8021q or act_vlan in this kernel)"
        );
    }
    println!("{}\n{out}", err.lines().next().unwrap_or(""));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn af_xdp_vlan_stripping_left_off_by_a_kill_is_turned_back_on_by_the_next_clean_stop() {
    let Some((dir, wire)) = setup("xk", None) else {
        return;
    };
    let app = &wire.app;
    let features = ["rx-vlan-offload", "rx-vlan-stag-hw-parse"];
    if feature_on(app, "acc0", features[0]).is_none() {
        op25b_dataplane::testkit::skipped(
            "ethtool is not installed (needed to read the offload settings)",
        );
        return;
    }
    let all_on = |want: bool, when: &str| {
        for dev in ["acc0", "core0"] {
            for f in features {
                assert_eq!(feature_on(app, dev, f), Some(want), "{f} on {dev} {when}");
            }
        }
    };
    // The ledger files, in the control socket's folder (the scratch directory here).
    let ledger = || {
        std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("rx-vlan-off."))
            .count()
    };
    let cfg = config_in(&dir, &policy("drop", "acc0"));

    let mut first = run_appliance(app, &cfg);
    wire.left.wait_for_ping("10.0.0.1", Duration::from_secs(10));
    all_on(false, "while the first appliance runs");
    assert_eq!(ledger(), 2, "one ledger file per interface while it runs");
    // kill -9: no Drop runs, so nothing is turned back on.
    let mut child = first.take();
    child.kill().unwrap();
    child.wait().unwrap();
    all_on(false, "after kill -9");
    assert_eq!(ledger(), 2, "the ledger outlives the kill");

    let second = run_appliance(app, &cfg);
    wire.left.wait_for_ping("10.0.0.1", Duration::from_secs(10));
    let (_, err, _) = stop_and_check(
        second,
        "rx-vlan-hw-parse and rx-vlan-stag-hw-parse turned off until exit \
         (rx-vlan-hw-parse and rx-vlan-stag-hw-parse found left off by an op25b that did not \
         stop cleanly)",
        0,
    );
    all_on(true, "after the second appliance's clean stop");
    assert_eq!(
        ledger(),
        0,
        "the ledger is gone once the features are back on"
    );
    no_xdp_left(app);
    println!("{}", err.lines().next().unwrap_or(""));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `worker N: access→core rx A tx B dropped C; core→access rx D tx E dropped F` lines of
/// the final counters, as (N, [A, B, C], [D, E, F]).
fn worker_counters(out: &str) -> Vec<(usize, [u64; 3], [u64; 3])> {
    out.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("worker ")?;
            let (n, rest) = rest.split_once(':')?;
            let nums: Vec<u64> = rest
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|w| w.parse().ok())
                .collect();
            let [a, b, c, d, e, f] = nums.as_slice() else {
                return None;
            };
            Some((n.parse().ok()?, [*a, *b, *c], [*d, *e, *f]))
        })
        .collect()
}

#[test]
fn af_xdp_two_workers_each_serve_one_queue_of_a_two_queue_wire() {
    let Some((dir, wire)) = setup_queues("xq", None, 2) else {
        return;
    };
    let (sub, app, net) = (&wire.left, &wire.app, &wire.right);
    let cfg = config_in(&dir, &policy_workers("drop", "acc0", 2));
    let _server = net.tcp_listener();
    let appliance = run_appliance(app, &cfg);
    sub.wait_for_ping("10.0.0.1", Duration::from_secs(10));
    // Each connection's TX queue on sub0 (and so RX queue on acc0) comes from its flow
    // hash: 16 connections land on both queues but with odds of 2^-15.
    for i in 0..16 {
        let (src, dst) = if i % 2 == 0 {
            ("10.0.0.2", "10.0.0.1")
        } else {
            ("2001:db8:1::2", "2001:db8:1::1")
        };
        assert_eq!(
            sub.tcp_connect(src, dst, 587).0,
            "connected",
            "{src} → {dst}:587"
        );
    }
    for (src, dst) in [("10.0.0.2", "10.0.0.1"), ("2001:db8:1::2", "2001:db8:1::1")] {
        assert_eq!(
            sub.tcp_connect(src, dst, 25).0,
            "timeout",
            "{src} → {dst}:25"
        );
    }
    let (out, err, rx) = stop_and_check(appliance, "2 queue(s) each", 2);
    let workers = worker_counters(&out);
    assert_eq!(workers.len(), 2, "{out}");
    for (w, o, i) in &workers {
        assert!(o[0] > 0 && i[0] > 0, "worker {w} saw no traffic: {out}");
        assert_eq!(o[0], o[1] + o[2], "worker {w}: {out}");
        assert_eq!(i[0], i[1] + i[2], "worker {w}: {out}");
    }
    assert_eq!(workers.iter().map(|w| w.1[0]).sum::<u64>(), rx, "{out}");
    no_xdp_left(app);
    println!("{}\n{out}", err.lines().next().unwrap_or(""));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn af_xdp_refuses_a_queue_without_a_worker() {
    let Some((dir, wire)) = setup_queues("xu", None, 2) else {
        return;
    };
    let app = &wire.app;
    let cfg = config_in(&dir, &policy_workers("drop", "acc0", 1));
    // Before the fix it started and served queue 0 only: wait a while, not for ever.
    let mut refused = run_appliance(app, &cfg);
    let out = refused.wait_for_end(
        Duration::from_secs(10),
        "op25b started with one worker on a two-queue interface",
    );
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    // 3: not worth restarting until the operator changes something.
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    for want in [
        "acc0 has 2 RX queues but [dataplane] workers = 1",
        "over queue 1 would go to the kernel's stack",
        // veth has RX-only channels, so `rx`, not `combined`.
        "`ethtool -L acc0 rx 1`",
        "[dataplane] workers = 2",
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
    no_xdp_left(app);
    // The advice works: with acc0 and core0 down to one RX queue each, it starts.
    for dev in ["acc0", "core0"] {
        app.exec(&["ethtool", "-L", dev, "rx", "1"]);
    }
    let appliance = run_appliance(app, &cfg);
    wire.left.wait_for_ping("10.0.0.1", Duration::from_secs(10));
    stop_and_check(appliance, "1 queue(s) each", 0);
    no_xdp_left(app);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn af_xdp_root_without_cap_bpf_is_told_about_the_sandbox() {
    let Some((dir, wire)) = setup("xc", None) else {
        return;
    };
    if Command::new("setpriv").arg("--help").output().is_err() {
        op25b_dataplane::testkit::skipped("setpriv (util-linux) is not installed");
        return;
    }
    let cfg = config_in(&dir, &policy("drop", "acc0"));
    let (code, err) = run_without_caps(&wire.app, "-bpf,-sys_admin", &cfg);
    assert_eq!(code, Some(3), "{err}");
    for want in [
        "AF_XDP on acc0: creating the XSKMAP failed: Operation not permitted",
        "op25b runs as root but without CAP_BPF",
        "install scripts/op25b.service.d/af_xdp.conf",
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
    assert!(!err.contains("run op25b as root"), "{err}");
    no_xdp_left(&wire.app);
    let _ = std::fs::remove_dir_all(&dir);
}
