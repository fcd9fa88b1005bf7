//! `action = "reject"` on the live appliance, both directions: a real kernel TCP client
//! whose SYN is blocked gets "connection refused" at once (the appliance's reset) instead
//! of a timeout — a subscriber in a dynamic pool calling an external MX (OP25B), and a host
//! in another network's dynamic range calling our protected MX (IP25B, `[inbound]`) — while
//! hosts outside the pools connect normally. Also checks that `op25b ctl explain` names the
//! policy that decided and the metrics count the resets.
//!
//! Needs root, iproute2 and python3; says SKIPPED otherwise.

use op25b_testbed::{available_or_skipped, run_appliance, Wire};
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

const POLICY: &str = r#"
[outbound]
action = "reject"
dynamic = ["10.0.0.0/28"]

[inbound]
action = "reject"
protected = ["10.0.0.50"]
dynamic = ["10.0.0.64/26"]

[dataplane]
backend = "af_packet"
access = "acc0"
core = "core0"
workers = 1

[control]
socket = "ctl.sock"
metrics = "127.0.0.1:9726"

[drop_log]
enabled = true
path = "drops.jsonl"
sample = 1
truncate_ipv4 = 24
"#;

#[test]
fn rejected_connections_are_refused_at_once_in_both_directions() {
    if !available_or_skipped() {
        return;
    }
    let (dir, cfg) = op25b_dataplane::testkit::scratch_config("reject", POLICY);
    let wire = Wire::new("lr", "sub0", "net0", false);
    let (sub, app, net) = (&wire.left, &wire.app, &wire.right);
    // Subscriber side: a dynamic subscriber (.2) and our MX (.50, protected).
    sub.add_addresses("sub0", &["10.0.0.2/24", "10.0.0.50/24"]);
    // Internet side: an external MX (.1) and a host in another network's dynamic range (.77).
    net.add_addresses("net0", &["10.0.0.1/24", "10.0.0.77/24"]);
    let _mx_out = net.tcp_listener();
    let _mx_in = sub.tcp_listener();
    let _appliance = run_appliance(app, &cfg);
    sub.wait_for_ping("10.0.0.1", Duration::from_secs(10));
    let cases = [
        (sub, "10.0.0.2", "10.0.0.1", "refused"),
        (sub, "10.0.0.50", "10.0.0.1", "connected"),
        (net, "10.0.0.77", "10.0.0.50", "refused"),
        (net, "10.0.0.1", "10.0.0.50", "connected"),
    ];
    for (ns, src, dst, want) in cases {
        let (got, secs) = ns.tcp_connect(src, dst, 25);
        assert_eq!(got, want, "{src} → {dst}:25 ({secs} s)");
        assert!(secs < 1.0, "{src} → {dst}:25 took {secs} s");
    }
    let sock = dir.join("ctl.sock");
    let out = Command::new(op25b_testbed::op25b_binary())
        .args([
            "ctl",
            "--socket",
            sock.to_str().unwrap(),
            "explain",
            "10.0.0.77",
            "10.0.0.50",
            "25",
        ])
        .output()
        .unwrap();
    let why = String::from_utf8_lossy(&out.stdout);
    assert!(
        why.contains("arriving on the core side (internet → our network), by the inbound (IP25B) policy: reject (blocked)")
            && why.contains("arriving on the access side (subscriber → internet), by the outbound (OP25B) policy: pass (")
            && why.contains("protected 10.0.0.50/32"),
        "{why}"
    );
    let ctl = |words: &[&str]| -> String {
        let out = Command::new(op25b_testbed::op25b_binary())
            .args(["ctl", "--socket", sock.to_str().unwrap()])
            .args(words)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ctl {words:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let metrics = || -> String {
        let out = app
            .command(&[
                "python3",
                "-c",
                "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9726/metrics', timeout=5).read().decode())",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let read = |m: &str, name: &str| -> Option<u64> {
        m.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    let value = |m: &str, name: &str| -> u64 {
        read(m, name).unwrap_or_else(|| panic!("no {name} in {m}"))
    };
    // Snapshots reach the control thread every 250 ms: poll for up to 10 s until the
    // two resets and both directions' rejections show.
    let deadline = Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = metrics();
        let shown = |name: &str, n: u64| read(&m, name).is_some_and(|v| v >= n);
        let all = shown("op25b_resets_sent_total", 2)
            && shown("op25b_frames_rejected_total{direction=\"outbound\"}", 1)
            && shown("op25b_frames_rejected_total{direction=\"inbound\"}", 1);
        if all || Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(value(&m, "op25b_resets_sent_total") >= 2, "{m}");
    assert!(value(&m, "op25b_frames_rejected_total{direction=\"outbound\"}") >= 1);
    assert!(value(&m, "op25b_frames_rejected_total{direction=\"inbound\"}") >= 1);
    // Per-prefix hit counters: exactly one SYN was blocked from each pool. A reload starts
    // a new policy generation; the counts carry over, before and after the old policy is
    // folded into the totals (the control thread does that within a second).
    let out_pool =
        "op25b_dynamic_prefix_blocked_total{direction=\"outbound\",prefix=\"10.0.0.0/28\"}";
    let in_pool =
        "op25b_dynamic_prefix_blocked_total{direction=\"inbound\",prefix=\"10.0.0.64/26\"}";
    assert_eq!((value(&m, out_pool), value(&m, in_pool)), (1, 1), "{m}");
    assert!(ctl(&["reload"]).contains("generation 2"));
    // Status shows the inbound (IP25B) lists too: one dynamic range, one protected host.
    let status = ctl(&["status"]);
    assert!(
        status.contains("inbound prefixes ipv4 dynamic/exempt/protected: [1, 0, 1]"),
        "{status}"
    );
    for _ in 0..2 {
        let m = metrics();
        assert_eq!((value(&m, out_pool), value(&m, in_pool)), (1, 1), "{m}");
        std::thread::sleep(Duration::from_millis(1200));
    }
    let text = ctl(&["stats", "--top", "5"]);
    assert!(text.contains("resets sent: "), "{text}");
    // AF_PACKET: the socket ring the kernel keeps is what refuses a frame.
    assert!(text.contains("\ntx refused by the kernel: "), "{text}");
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("1  10.0.0.0/28") && l.contains("op25b.toml:")),
        "{text}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&ctl(&["stats", "--json", "--top", "5"])).unwrap();
    assert_eq!(
        v["outbound"]["top_dynamic_prefixes"][0]["prefix"], "10.0.0.0/28",
        "{v}"
    );
    assert_eq!(
        v["outbound"]["top_dynamic_prefixes"][0]["blocked"], 1,
        "{v}"
    );
    assert_eq!(
        v["inbound"]["top_dynamic_prefixes"][0]["prefix"], "10.0.0.64/26",
        "{v}"
    );
    assert!(v["outbound"]["rejected"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["resets_sent"].as_u64().unwrap() >= 2, "{v}");
    // The drop log: one line per blocked SYN (sample = 1), addresses cut to /24, and so
    // are the pools (a /28 or /26 pool entry would say more than the cut addresses).
    let log = std::fs::read_to_string(dir.join("drops.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{log}");
    for (l, policy, pool) in [
        (&lines[0], "outbound", "10.0.0.0/24"),
        (&lines[1], "inbound", "10.0.0.0/24"),
    ] {
        assert_eq!(
            (
                &l["policy"],
                &l["action"],
                &l["reason"],
                &l["src"],
                &l["dst"],
                &l["dport"],
                &l["pool"]
            ),
            (
                &json!(policy),
                &json!("reject"),
                &json!("blocked"),
                &json!("10.0.0.0/24"),
                &json!("10.0.0.0/24"),
                &json!(25),
                &json!(pool)
            ),
            "{log}"
        );
    }
    assert!(
        !log.contains("10.0.0.2\"") && !log.contains("10.0.0.77"),
        "no whole address: {log}"
    );
    let m = metrics();
    assert_eq!(
        value(&m, "op25b_drop_log_records_total{result=\"written\"}"),
        2,
        "{m}"
    );
    // Monitoring sees the log on, and `status` says where it is and what it lost.
    assert_eq!(value(&m, "op25b_drop_log_enabled"), 1, "{m}");
    let status = ctl(&["status"]);
    assert!(
        status.contains(&format!(
            "\ndrop log: {}: 2 line(s) written, 0 lost (0 to a full queue, 0 to write errors), 0 over the rate limit\n",
            dir.join("drops.jsonl").display()
        )),
        "{status}"
    );
    // A drop log that cannot be opened (something other than a file at its path) keeps
    // the appliance from nothing: it starts without the log, says so, and forwards.
    drop(_appliance);
    let off = dir.join("off.toml");
    std::fs::write(
        &off,
        POLICY
            .replace("path = \"drops.jsonl\"", "path = \"a-folder\"")
            .replace("ctl.sock", "ctl-off.sock"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("a-folder")).unwrap();
    let _second = run_appliance(app, &off);
    let sock = dir.join("ctl-off.sock");
    op25b_testbed::wait_for_control(&sock);
    let (_, status) = op25b_testbed::ctl(&sock, &["status"]);
    assert!(
        status.contains(&format!(
            "\ndrop log: {}: OFF this run: drop_log.path: ",
            dir.join("a-folder").display()
        )) && status.contains("a-folder exists and is not a regular file"),
        "{status}"
    );
    // Configured but off is visible to monitoring too.
    let m = metrics();
    assert_eq!(value(&m, "op25b_drop_log_enabled"), 0, "{m}");
    assert_eq!(read(&m, "op25b_drop_log_records_total"), None, "{m}");
    sub.wait_for_ping("10.0.0.1", Duration::from_secs(10));
}
