//! The DPDK backend (`dpdk` feature) in the path of real kernel TCP peers: the same
//! three-namespace testbed as the AF_PACKET tests, with `op25b run` attached to the
//! appliance's `acc0` and `core0` through DPDK's `net_af_packet` virtual devices
//! (`--no-huge --no-pci`, no NIC needed). Proves over IPv4 and IPv6: a dynamic subscriber
//! calling an external MX on 25 is refused at once (`reject`), while the same subscriber
//! reaches the relay on 25 and the MX on 587, an exempt host reaches the MX on 25, and
//! ping passes; the counters add up. A `net_af_packet` device with more queue pairs than
//! workers is refused at start: its unread sockets would keep their share of the flows.
//!
//! Needs root, iproute2, python3 and a build with the `dpdk` feature; says SKIPPED
//! otherwise.

use op25b_testbed::{run_appliance, unavailable, Wire};
use std::process::Command;
use std::time::Duration;

/// Why these tests cannot run here, if they cannot: no network namespaces (not root), or
/// an op25b built without DPDK.
fn cannot_run() -> Option<String> {
    unavailable().or_else(|| {
        (!cfg!(feature = "dpdk")).then(|| {
            "built without the dpdk feature (cargo test --all-features runs it)".to_string()
        })
    })
}

#[test]
fn dpdk_backend_blocks_and_passes_real_connections() {
    if let Some(why) = cannot_run() {
        op25b_dataplane::testkit::skipped(why);
        return;
    }
    let dir = op25b_dataplane::testkit::scratch_dir("dpdk-tb");
    let cfg = dir.join("op25b.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[outbound]
action = "reject"
dynamic = ["10.0.0.0/24", "2001:db8:1::/64"]
exempt = ["10.0.0.3", "2001:db8:1::3"]
relays = ["10.0.0.25", "2001:db8:1::25"]

[dataplane]
backend = "dpdk"
access = "net_af_packet0"
core = "net_af_packet1"
workers = 1
eal_args = ["--no-huge", "--no-pci", "--no-shconf", "-m", "256", "-l", "0",
            "--log-level=lib.eal:warning", "--file-prefix=op25b-tb-{pid}",
            "--vdev=net_af_packet0,iface=acc0", "--vdev=net_af_packet1,iface=core0"]

[control]
socket = "ctl.sock"
metrics = ""
"#,
            pid = std::process::id()
        ),
    )
    .unwrap();
    let wire = Wire::new("dk", "sub0", "net0", true);
    let (sub, app, net) = (&wire.left, &wire.app, &wire.right);
    sub.add_addresses(
        "sub0",
        &[
            "10.0.0.2/24",
            "10.0.0.3/24",
            "2001:db8:1::2/64",
            "2001:db8:1::3/64",
        ],
    );
    net.add_addresses(
        "net0",
        &[
            "10.0.0.1/24",
            "10.0.0.25/24",
            "2001:db8:1::1/64",
            "2001:db8:1::25/64",
        ],
    );
    let _servers = net.tcp_listener();
    // Promiscuous mode: core0's flag was set by hand before the start, acc0's was not.
    app.exec(&["ip", "link", "set", "dev", "core0", "promisc", "on"]);
    let promisc = |ifname: &str| {
        let out = app.exec(&["ip", "link", "show", "dev", ifname]);
        String::from_utf8_lossy(&out.stdout).contains("PROMISC")
    };
    assert!(!promisc("acc0"));
    let mut appliance = run_appliance(app, &cfg);
    sub.wait_for_ping("10.0.0.1", Duration::from_secs(20));
    sub.wait_for_ping("2001:db8:1::1", Duration::from_secs(10));
    let cases = [
        ("10.0.0.2", "10.0.0.1", 25, "refused"),
        ("10.0.0.2", "10.0.0.25", 25, "connected"),
        ("10.0.0.2", "10.0.0.1", 587, "connected"),
        ("10.0.0.3", "10.0.0.1", 25, "connected"),
        ("2001:db8:1::2", "2001:db8:1::1", 25, "refused"),
        ("2001:db8:1::2", "2001:db8:1::25", 25, "connected"),
        ("2001:db8:1::2", "2001:db8:1::1", 587, "connected"),
        ("2001:db8:1::3", "2001:db8:1::1", 25, "connected"),
    ];
    for (src, dst, port, want) in cases {
        let (got, secs) = sub.tcp_connect(src, dst, port);
        assert_eq!(got, want, "{src} → {dst}:{port} ({secs} s)");
        assert!(secs < 1.0, "{src} → {dst}:{port} took {secs} s");
    }
    let out = Command::new(op25b_testbed::op25b_binary())
        .args(["ctl", "--socket", dir.join("ctl.sock").to_str().unwrap()])
        .args(["stats", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let o = &v["outbound"];
    assert_eq!(o["reasons"]["blocked"], 2, "{v}");
    assert_eq!(o["rejected"], 2, "{v}");
    assert!(
        o["reasons"]["destination_relay"].as_u64().unwrap() >= 2,
        "{v}"
    );
    assert!(o["reasons"]["source_exempt"].as_u64().unwrap() >= 2, "{v}");
    for d in ["outbound", "inbound"] {
        let c = &v[d];
        assert_eq!(
            c["rx"].as_u64().unwrap(),
            c["tx"].as_u64().unwrap() + c["dropped"].as_u64().unwrap(),
            "{d}: {v}"
        );
    }
    // SIGTERM: a clean stop that prints the final counters.
    assert!(promisc("acc0") && promisc("core0"));
    let out = String::from_utf8_lossy(&appliance.terminate().stdout).to_string();
    assert!(out.contains("access→core: rx "), "{out}");
    // Each interface is left as it was found: the one it made promiscuous is not.
    assert!(!promisc("acc0"), "acc0 left promiscuous");
    assert!(promisc("core0"), "core0's promiscuous mode taken away");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dpdk_refuses_net_af_packet_queue_pairs_without_a_worker() {
    if let Some(why) = cannot_run() {
        op25b_dataplane::testkit::skipped(why);
        return;
    }
    let dir = op25b_dataplane::testkit::scratch_dir("dpdk-qp");
    let cfg = dir.join("op25b.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[outbound]
dynamic = ["10.0.0.0/24"]

[dataplane]
backend = "dpdk"
access = "net_af_packet0"
core = "net_af_packet1"
workers = 1
eal_args = ["--no-huge", "--no-pci", "--no-shconf", "-m", "256", "-l", "0",
            "--log-level=lib.eal:warning", "--file-prefix=op25b-qp-{pid}",
            "--vdev=net_af_packet0,iface=acc0,qpairs=2",
            "--vdev=net_af_packet1,iface=core0,qpairs=2"]

[control]
socket = "ctl.sock"
metrics = ""
"#,
            pid = std::process::id()
        ),
    )
    .unwrap();
    let wire = Wire::new("dq", "sub0", "net0", false);
    // Before the fix it started, and every flow hashed to the second socket was lost:
    // wait a while for the refusal, not for ever.
    let mut appliance = run_appliance(&wire.app, &cfg);
    let out = appliance.wait_for_end(
        Duration::from_secs(20),
        "op25b started with one worker on two queue pairs",
    );
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    // 3: not worth restarting until the operator changes something.
    assert_eq!(out.status.code(), Some(3), "{err}");
    for want in [
        "net_af_packet0",
        "has 2 queue pairs but there are only 1 workers",
        "qpairs=1, or set workers = 2",
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
