//! The live appliance in the path of real SMTP sessions: three network namespaces
//! (subscriber, appliance, internet) joined by veth pairs, `op25b run` bridging the
//! appliance's `acc0` and `core0` over AF_PACKET, a dual-stack SMTP-speaking server on
//! 25 and 587 (an external MX and the ISP relay), and kernel TCP clients.
//!
//! Proves, over IPv4 and IPv6: dynamic → MX:25 fails; dynamic → relay:25 and → MX:587
//! deliver a greeting; exempt → MX:25 delivers; ping and UDP 25 pass; a broken config on
//! SIGHUP is refused and the old policy keeps blocking; a good one exempting the dynamic
//! host lets its next connection through with no restart; SIGTERM prints counters that
//! add up.
//!
//! Needs root, iproute2, ethtool and python3; says SKIPPED otherwise.

use op25b_testbed::{available_or_skipped, ctl, final_counters, run_appliance, Netns, Wire};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Real SMTP servers (aiosmtpd) on 25 and 587, IPv4 and IPv6, plus an HTTP server and a
/// UDP echo on 25; every delivered message is printed.
const SERVER: &str = r#"
import socket, threading, http.server
from aiosmtpd.controller import Controller
class Mailbox:
    async def handle_DATA(self, server, session, envelope):
        print("delivered", session.peer[0], envelope.rcpt_tos[0], flush=True)
        return "250 Message accepted for delivery"
ctrls = [Controller(Mailbox(), hostname=h, port=p) for h in ("0.0.0.0", "::") for p in (25, 587)]
for c in ctrls:
    c.start()
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 25))
    while True:
        d, a = u.recvfrom(100); u.sendto(b"pong", a)
threading.Thread(target=udp, daemon=True).start()
web = http.server.ThreadingHTTPServer(("0.0.0.0", 80), http.server.SimpleHTTPRequestHandler)
threading.Thread(target=web.serve_forever, daemon=True).start()
print("ready", flush=True)
threading.Event().wait(300)
"#;

const UDP_CLIENT: &str = r#"
import socket, sys
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(2)
u.bind((sys.argv[1], 0)); u.sendto(b"ping", (sys.argv[2], 25))
sys.exit(0 if u.recvfrom(100)[0] == b"pong" else 1)
"#;

const POLICY: &str = r#"
[outbound]
dynamic = ["10.0.0.0/24", "2001:db8:1::/64"]
exempt = ["10.0.0.3", "2001:db8:1::3"]
exempt_files = ["unblock-requests.txt"]
relays = ["10.0.0.25", "2001:db8:1::25"]

[dataplane]
backend = "af_packet"
access = "acc0"
core = "core0"
workers = 1

[control]
socket = "ctl.sock"
metrics = "127.0.0.1:9725"
watch = true
"#;

const METRICS: &str = r#"
import sys, urllib.request, urllib.error
print(urllib.request.urlopen("http://127.0.0.1:9725/metrics", timeout=5).read().decode())
try:
    urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:9725/metrics", data=b"x", method="POST"), timeout=5)
    sys.exit(2)
except urllib.error.HTTPError as e:
    sys.exit(0 if e.code == 405 else 3)
"#;

fn have(tool: &str, arg: &str) -> bool {
    Command::new(tool).arg(arg).output().is_ok()
}

/// Sends one message with swaks from `src`; true when the server accepted it.
fn smtp(sub: &Netns, src: &str, dst: &str, port: u16) -> bool {
    let port = port.to_string();
    let mut args = vec![
        "swaks",
        "--silent",
        "2",
        "--timeout",
        "3",
        "--from",
        "bot@sub.example",
        "--to",
        "postmaster@mx.example",
        "--server",
        dst,
        "--port",
        &port,
        "--local-interface",
        src,
    ];
    if dst.contains(':') {
        args.push("-6");
    }
    sub.command(&args).output().unwrap().status.success()
}

#[test]
fn live_appliance_blocks_outbound_25_from_dynamic_pools() {
    if !available_or_skipped() {
        return;
    }
    let aiosmtpd = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !aiosmtpd || !have("swaks", "--version") || !have("ethtool", "--version") {
        op25b_dataplane::testkit::skipped(
            "python3 with aiosmtpd, swaks and ethtool are needed (scripts/setup.sh installs them)",
        );
        return;
    }
    let (dir, cfg) = op25b_dataplane::testkit::scratch_config("live", POLICY);
    // Lists nothing yet: every reload says so.
    std::fs::write(dir.join("unblock-requests.txt"), "# none open\n").unwrap();

    let wire = Wire::new("ls", "sub0", "net0", true);
    let (sub, app, net) = (&wire.left, &wire.app, &wire.right);
    // Jumbo frames: 9000-byte MTU all along the path.
    for (ns, i) in [(sub, "sub0"), (app, "acc0"), (app, "core0"), (net, "net0")] {
        ns.exec(&["ip", "link", "set", i, "mtu", "9000"]);
    }
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
    let server = net.spawn_ready(&["python3", "-c", SERVER]);

    let mut appliance = run_appliance(app, &cfg);
    let pid = appliance.child().id();
    sub.wait_for_ping("10.0.0.1", Duration::from_secs(10));

    let cases = [
        ("10.0.0.2", "10.0.0.1", 25, false),
        ("10.0.0.2", "10.0.0.25", 25, true),
        ("10.0.0.2", "10.0.0.1", 587, true),
        ("10.0.0.3", "10.0.0.1", 25, true),
        ("2001:db8:1::2", "2001:db8:1::1", 25, false),
        ("2001:db8:1::2", "2001:db8:1::25", 25, true),
        ("2001:db8:1::2", "2001:db8:1::1", 587, true),
        ("2001:db8:1::3", "2001:db8:1::1", 25, true),
    ];
    for (src, dst, port, want) in cases {
        assert_eq!(smtp(sub, src, dst, port), want, "{src} → {dst}:{port}");
    }
    assert!(
        sub.command(&["ping", "-c1", "-W2", "2001:db8:1::1"])
            .output()
            .unwrap()
            .status
            .success(),
        "ping6"
    );
    assert!(
        sub.command(&["python3", "-c", UDP_CLIENT, "10.0.0.2", "10.0.0.1"])
            .output()
            .unwrap()
            .status
            .success(),
        "UDP 25"
    );
    let jumbo = sub
        .command(&["ping", "-c1", "-W2", "-M", "do", "-s", "8972", "10.0.0.1"])
        .output()
        .unwrap();
    assert!(
        jumbo.status.success(),
        "a 9000-byte packet did not cross intact: {}",
        String::from_utf8_lossy(&jumbo.stdout)
    );
    // Larger than the 9000-byte MTU: IPv4 fragments, which cross as they are (the kernel
    // must not reassemble them for the packet sockets: the whole would not fit the link).
    let fragmented = sub
        .command(&["ping", "-c2", "-W2", "-s", "12000", "10.0.0.1"])
        .output()
        .unwrap();
    assert!(
        fragmented.status.success(),
        "a fragmented 12 kB ping did not cross: {}",
        String::from_utf8_lossy(&fragmented.stdout)
    );
    let http = sub
        .command(&[
            "python3",
            "-c",
            "import urllib.request; urllib.request.urlopen('http://10.0.0.1/', timeout=3).read()",
        ])
        .output()
        .unwrap();
    assert!(
        http.status.success(),
        "HTTP: {}",
        String::from_utf8_lossy(&http.stderr)
    );

    // The support desk's view of a blocked subscriber.
    let sock = dir.join("ctl.sock");
    let (ok, status) = ctl(&sock, &["status"]);
    assert!(ok && status.contains("policy generation 1"), "{status}");
    let (ok, why) = ctl(&sock, &["explain", "10.0.0.2", "10.0.0.1", "25"]);
    assert!(ok, "{why}");
    assert!(
        why.contains("verdict: drop (blocked)")
            && why.contains("dynamic 10.0.0.0/24")
            && why.contains("op25b.toml:3"),
        "{why}"
    );
    let (ok, why) = ctl(&sock, &["explain", "10.0.0.2", "10.0.0.25", "25"]);
    assert!(ok && why.contains("destination_relay"), "{why}");
    assert!(
        !ctl(&sock, &["exempt", "add", "10.0.0.2/8"]).0,
        "host bits must be refused"
    );
    // `op25b ctl` refuses that before it connects; the appliance checks the words itself
    // too, for a client that does not.
    let raw = {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        s.write_all(b"[\"exempt\",\"add\",\"10.0.0.2/8\"]\n")
            .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        reply
    };
    let reply: serde_json::Value = serde_json::from_str(raw.trim()).unwrap();
    assert_eq!(reply["ok"], false, "{raw}");
    assert!(
        reply["text"].as_str().unwrap().contains("host bits"),
        "{raw}"
    );

    // A broken config on reload is refused; the running policy keeps blocking.
    std::fs::write(&cfg, POLICY.replace("\"10.0.0.3\"", "\"10.0.0.3/8\"")).unwrap();
    let hup = || {
        Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
    };
    hup();
    let (ok, refused) = ctl(&sock, &["reload"]);
    assert!(
        !ok && refused.contains("reload refused") && refused.contains("host bits"),
        "{refused}"
    );
    assert!(
        !smtp(sub, "10.0.0.2", "10.0.0.1", 25),
        "blocked after a refused reload"
    );
    std::fs::write(&cfg, POLICY).unwrap();

    // A time-limited unblock ticket: open at once, survives a reload, closes by itself.
    let (ok, text) = ctl(&sock, &["exempt", "add", "10.0.0.2", "--ttl", "4s"]);
    assert!(ok, "{text}");
    assert!(
        smtp(sub, "10.0.0.2", "10.0.0.1", 25),
        "ticket did not open port 25"
    );
    let (ok, text) = ctl(&sock, &["reload"]);
    assert!(
        ok && text.contains(&format!(
            "\nwarning: {}: exempt_files: the file lists no prefix",
            dir.join("unblock-requests.txt").display()
        )),
        "{text}"
    );
    assert!(
        smtp(sub, "10.0.0.2", "10.0.0.1", 25),
        "ticket lost on reload"
    );
    assert!(ctl(&sock, &["exempt", "list"])
        .1
        .contains("10.0.0.2/32 expires in"));
    // The 4 s ticket expires by itself; a loaded machine gets up to 15 s to show it.
    let deadline = Instant::now() + Duration::from_secs(15);
    std::thread::sleep(Duration::from_secs(4));
    while smtp(sub, "10.0.0.2", "10.0.0.1", 25) {
        assert!(Instant::now() < deadline, "ticket did not expire");
        std::thread::sleep(Duration::from_millis(500));
    }

    // An unblock request filed into the exempt file that listed nothing takes effect with
    // no restart and no signal: the appliance watches its files, empty ones too, and
    // reloads once they have stayed unchanged for a second (SIGHUP reloads are exercised
    // by reload_under_load).
    std::fs::write(
        dir.join("unblock-requests.txt"),
        "# ticket 4711\n10.0.0.2\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !smtp(sub, "10.0.0.2", "10.0.0.1", 25) {
        assert!(Instant::now() < deadline, "exemption not applied by reload");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        !smtp(sub, "2001:db8:1::2", "2001:db8:1::1", 25),
        "IPv6 host still dynamic"
    );

    // Metrics: read-only, counters by reason, policy generation. The workers' counters
    // reach the control thread in snapshots every 250 ms: poll for up to 10 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (page, dropped) = loop {
        let m = app.command(&["python3", "-c", METRICS]).output().unwrap();
        let page = String::from_utf8_lossy(&m.stdout).to_string();
        assert!(
            m.status.success(),
            "metrics: {page} {}",
            String::from_utf8_lossy(&m.stderr)
        );
        let dropped: u64 = page
            .lines()
            .find(|l| l.starts_with("op25b_frames_dropped_total{direction=\"outbound\"}"))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
            .expect("dropped counter");
        if dropped >= 4 || Instant::now() > deadline {
            break (page, dropped);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(dropped >= 4, "{page}");
    assert!(page.contains("op25b_reason_total{direction=\"outbound\",reason=\"blocked\"}"));
    assert!(page.contains("op25b_policy_generation "));
    assert!(
        page.contains("op25b_link_up{side=\"access\",interface=\"acc0\"} 1\n")
            && page.contains("op25b_link_up{side=\"core\",interface=\"core0\"} 1\n")
            && page.contains("op25b_config_warnings 0\n")
            // A small policy: compact tables only.
            && page.contains("op25b_policy_table_bytes{layout=\"direct\"} 0\n")
            && !page.contains("op25b_policy_table_bytes{layout=\"compact\"} 0\n"),
        "{page}"
    );
    // The histogram is a histogram: cumulative buckets never fall, +Inf is the count, and
    // frames were judged.
    let series = |prefix: &str| -> Vec<f64> {
        page.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.split_whitespace().last()?.parse().ok())
            .collect()
    };
    let buckets = series("op25b_frame_processing_seconds_bucket{direction=\"outbound\"");
    let count = series("op25b_frame_processing_seconds_count{direction=\"outbound\"}");
    let sum = series("op25b_frame_processing_seconds_sum{direction=\"outbound\"}");
    assert!(
        buckets.len() > 2 && count.len() == 1 && sum.len() == 1,
        "{page}"
    );
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{page}");
    assert_eq!(*buckets.last().unwrap(), count[0], "{page}");
    assert!(count[0] >= 4.0 && sum[0] > 0.0, "{page}");
    assert!(
        page.contains(&format!(
            "\nop25b_build_info{{version=\"{}\",backend=\"af_packet\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )),
        "{page}"
    );
    // The page as Prometheus's own linter sees it: no errors, no warnings.
    match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(mut lint) => {
            use std::io::Write as _;
            lint.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
            let o = lint.wait_with_output().unwrap();
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            assert!(
                o.status.success() && said.trim().is_empty(),
                "promtool check metrics: {said}\n{page}"
            );
            println!("promtool check metrics: clean");
        }
        Err(e) => op25b_dataplane::testkit::skipped(format!(
            "the promtool lint of the metrics page (promtool: {e}; scripts/setup.sh installs the prometheus package)"
        )),
    }
    let (ok, stats) = ctl(&sock, &["stats"]);
    assert!(ok && stats.contains("blocked"), "{stats}");

    let out = String::from_utf8_lossy(&appliance.terminate().stdout).to_string();
    drop(server);
    let (rx, tx, dropped) = final_counters(&out, "access→core");
    assert_eq!(rx, tx + dropped, "{out}");
    assert!(dropped >= 4, "{out}");
    println!("{out}");
    let _ = std::fs::remove_dir_all(Path::new(&dir));
}
