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
//! Needs root, iproute2, python3 and an `op25b` built with `--features af_xdp` (the
//! workspace's `--all-features` test run); says SKIPPED otherwise.

use op25b_testbed::{final_counters, op25b_binary, run_appliance, unavailable, Netns, Wire};
use std::process::Command;
use std::time::{Duration, Instant};

fn policy(action: &str, access: &str) -> String {
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
workers = 1

[control]
socket = "ctl.sock"
metrics = ""
"#
    )
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

fn setup(tag: &str) -> Option<(std::path::PathBuf, Wire)> {
    if let Some(why) = unavailable() {
        println!("SKIPPED: {why}");
        return None;
    }
    let dir = std::env::temp_dir().join(format!("op25b-xdp-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    if let Some(why) = no_af_xdp(&dir) {
        println!("SKIPPED: {why}");
        return None;
    }
    let wire = Wire::new(tag, "sub0", "net0", true);
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
    let Some((dir, wire)) = setup("xd") else {
        return;
    };
    let (sub, app, net) = (&wire.left, &wire.app, &wire.right);
    let cfg = dir.join("op25b.toml");
    std::fs::write(&cfg, policy("drop", "acc0")).unwrap();
    let _server = net.tcp_listener();
    let mut appliance = run_appliance(app, &cfg);
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

    let o = appliance.terminate();
    let (code, out, err) = (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("AF_XDP on acc0 and core0"), "{err}");
    let (rx, tx, dropped) = final_counters(&out, "access→core");
    assert_eq!(rx, tx + dropped, "{out}");
    assert!(dropped >= 2, "{out}");
    no_xdp_left(app);
    println!("{}\n{out}", err.lines().next().unwrap_or(""));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn af_xdp_reject_refuses_at_once_and_a_missing_interface_is_a_clear_error() {
    let Some((dir, wire)) = setup("xr") else {
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
    let mut appliance = run_appliance(app, &cfg);
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
    let o = appliance.terminate();
    let (code, out, err) = (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(final_counters(&out, "access→core").2 >= 2, "{out}");
    no_xdp_left(app);
    println!("{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
