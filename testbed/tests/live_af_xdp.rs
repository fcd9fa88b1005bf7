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

use op25b_testbed::{op25b_binary, unavailable, Netns, Reaped, Wire};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Accepts TCP connections on 25 and 587, IPv4 and IPv6, and closes them.
const LISTENER: &str = r#"
import socket, threading
def serve(fam, host, port):
    s = socket.socket(fam); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((host, port)); s.listen(64)
    while True:
        c, _ = s.accept(); c.close()
for fam, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
    for port in (25, 587):
        threading.Thread(target=serve, args=(fam, host, port), daemon=True).start()
print("ready", flush=True)
threading.Event().wait(300)
"#;

/// Connects from argv[1] to argv[2]:argv[3]; prints the outcome.
const CONNECT: &str = r#"
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[2] else socket.AF_INET
s = socket.socket(fam); s.settimeout(3); s.bind((sys.argv[1], 0))
try:
    s.connect((sys.argv[2], int(sys.argv[3]))); print("connected")
except ConnectionRefusedError:
    print("refused")
except (socket.timeout, OSError):
    print("timeout")
"#;

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

fn connect(ns: &Netns, src: &str, dst: &str, port: u16) -> String {
    let out = ns
        .command(&["python3", "-c", CONNECT, src, dst, &port.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `op25b run` in `ns` with stdout and stderr captured.
fn start(ns: &Netns, cfg: &std::path::Path) -> Reaped {
    let bin = op25b_binary();
    Reaped(Some(
        ns.command(&[
            bin.to_str().unwrap(),
            "run",
            "--config",
            cfg.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
    ))
}

/// SIGTERM, wait, and return (exit status, stdout, stderr).
fn stop(r: &mut Reaped) -> (Option<i32>, String, String) {
    let mut child = r.take();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "op25b did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code(), out, err)
}

fn counter(line: &str, name: &str) -> u64 {
    let at = line
        .find(&format!(" {name} "))
        .unwrap_or_else(|| panic!("no {name} in {line}"));
    line[at + name.len() + 2..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
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
    for a in ["10.0.0.2/24", "10.0.0.3/24"] {
        wire.left.exec(&["ip", "addr", "add", a, "dev", "sub0"]);
    }
    for a in ["2001:db8:1::2/64", "2001:db8:1::3/64"] {
        wire.left
            .exec(&["ip", "addr", "add", a, "dev", "sub0", "nodad"]);
    }
    for a in ["10.0.0.1/24", "10.0.0.25/24"] {
        wire.right.exec(&["ip", "addr", "add", a, "dev", "net0"]);
    }
    for a in ["2001:db8:1::1/64", "2001:db8:1::25/64"] {
        wire.right
            .exec(&["ip", "addr", "add", a, "dev", "net0", "nodad"]);
    }
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
    let _server = net.spawn_ready(&["python3", "-c", LISTENER]);
    let mut appliance = start(app, &cfg);
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
        assert_eq!(connect(sub, src, dst, port), want, "{src} → {dst}:{port}");
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

    let (code, out, err) = stop(&mut appliance);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("AF_XDP on acc0 and core0"), "{err}");
    let outbound = out
        .lines()
        .find(|l| l.starts_with("access→core"))
        .expect("final counters");
    let (rx, tx, dropped) = (
        counter(outbound, "rx"),
        counter(outbound, "tx"),
        counter(outbound, "dropped"),
    );
    assert_eq!(rx, tx + dropped, "{outbound}");
    assert!(dropped >= 2, "{outbound}");
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
    let _server = net.spawn_ready(&["python3", "-c", LISTENER]);
    let mut appliance = start(app, &cfg);
    sub.wait_for_ping("10.0.0.1", Duration::from_secs(10));
    for (src, dst) in [("10.0.0.2", "10.0.0.1"), ("2001:db8:1::2", "2001:db8:1::1")] {
        let t = Instant::now();
        assert_eq!(connect(sub, src, dst, 25), "refused", "{src} → {dst}:25");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "refusal took {:?}",
            t.elapsed()
        );
    }
    assert_eq!(connect(sub, "10.0.0.3", "10.0.0.1", 25), "connected");
    let (code, out, err) = stop(&mut appliance);
    assert_eq!(code, Some(0), "{err}");
    let outbound = out
        .lines()
        .find(|l| l.starts_with("access→core"))
        .expect("final counters");
    assert!(counter(outbound, "dropped") >= 2, "{outbound}");
    no_xdp_left(app);
    println!("{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
