//! `op25b-bench veth`: the live path on the veth testbed, op25b against the Linux kernel
//! doing the same policy with nftables, on the same topology in the same run.
//!
//! Topology: generator namespace → veth → appliance namespace (`acc0`, `core0`) → veth →
//! sink namespace. The generator sends a synthetic IPv4 capture (64-byte frames or IMIX)
//! as fast as the kernel takes it; the sink counts what arrives. In op25b mode
//! `op25b run` bridges `acc0`/`core0`; in nftables mode a Linux bridge joins them and a
//! `bridge` family forward chain applies the same policy with interval sets (dynamic pools
//! auto-merged, exemptions and relays accepted first, which equals longest-prefix match
//! for these lists because every exemption is a host inside a pool).
//!
//! Reported per run: frames offered (generator), frames forwarded per second at the sink,
//! frames dropped by policy, and the ratio op25b/nftables. Every process shares this
//! machine's cores, so the figures describe the whole testbed, not a NIC.

use crate::classify::synthetic_pools;
use crate::profile::{Encap, Generator, Profile};
use op25b_dataplane::policy::AnyPrefix;
use op25b_dataplane::port::pcap::PcapWriter;
use op25b_testbed::{Reaped, Wire};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// What to run.
#[derive(Clone, Debug)]
pub struct VethArgs {
    /// Scratch folder.
    pub out_dir: PathBuf,
    /// Dynamic prefixes in the policy.
    pub prefixes: usize,
    /// Distinct frames in the capture (sent `loops` times).
    pub frames: usize,
    /// Times the capture is sent.
    pub loops: u64,
    /// The `op25b` binary.
    pub op25b: PathBuf,
    /// Also run `backend = "dpdk"` on `net_af_packet` devices over the same interfaces
    /// (the binary must be built with the `dpdk` feature).
    pub dpdk: bool,
}

/// One op25b configuration the bench runs: label, workers, `[dataplane]` body.
fn modes(a: &VethArgs) -> Vec<(String, usize, String)> {
    let mut m = Vec::new();
    for (workers, ring) in [(1usize, "v3"), (2, "v3"), (1, "v2")] {
        let cores: Vec<String> = (0..workers).map(|c| c.to_string()).collect();
        m.push((
            format!("op25b, TPACKET_{}", ring.to_uppercase()),
            workers,
            format!(
                "backend = \"af_packet\"\naccess = \"acc0\"\ncore = \"core0\"\nring = \"{ring}\"\nworkers = {workers}\ncores = [{}]\n",
                cores.join(", ")
            ),
        ));
    }
    // AF_XDP: one worker (a veth has one queue), when this op25b was built with it.
    if has_af_xdp(&a.op25b, &a.out_dir) {
        m.push((
            "op25b, AF_XDP (native XDP, copy mode)".to_string(),
            1,
            "backend = \"af_xdp\"\naccess = \"acc0\"\ncore = \"core0\"\nworkers = 1\ncores = [0]\n"
                .to_string(),
        ));
    } else {
        eprintln!(
            "veth: no AF_XDP row: {} was built without --features af_xdp",
            a.op25b.display()
        );
    }
    if a.dpdk {
        m.push((
            "op25b, DPDK net_af_packet".to_string(),
            1,
            format!(
                "backend = \"dpdk\"\naccess = \"net_af_packet0\"\ncore = \"net_af_packet1\"\nworkers = 1\ncores = [0]\neal_args = [\"--no-huge\", \"--no-pci\", \"--no-shconf\", \"-m\", \"256\", \"-l\", \"0\", \"--log-level=lib.eal:warning\", \"--file-prefix=op25b-veth-{}\", \"--vdev=net_af_packet0,iface=acc0\", \"--vdev=net_af_packet1,iface=core0\"]\n",
                std::process::id()
            ),
        ));
    }
    m
}

fn ipv4_only(list: &[AnyPrefix]) -> Vec<AnyPrefix> {
    list.iter()
        .filter(|p| matches!(p, AnyPrefix::V4(_)))
        .copied()
        .collect()
}

fn nft_ruleset(dynamic: &[AnyPrefix], exempt: &[AnyPrefix], relays: &[AnyPrefix]) -> String {
    let elems = |l: &[AnyPrefix]| {
        l.iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "table bridge op25b {{\n  set pools {{ type ipv4_addr; flags interval; auto-merge; elements = {{ {} }} }}\n  set exempts {{ type ipv4_addr; flags interval; auto-merge; elements = {{ {} }} }}\n  set relayset {{ type ipv4_addr; flags interval; auto-merge; elements = {{ {} }} }}\n  chain forward {{\n    type filter hook forward priority 0; policy accept;\n    ip saddr @exempts accept\n    ip daddr @relayset accept\n    tcp dport 25 ip saddr @pools counter drop\n  }}\n}}\n",
        elems(dynamic),
        elems(exempt),
        elems(relays)
    )
}

fn num(v: &str, key: &str) -> f64 {
    serde_json::from_str::<Value>(v.trim())
        .ok()
        .and_then(|j| j[key].as_f64())
        .unwrap_or(0.0)
}

/// Offered frames per second for the latency runs.
const LATENCY_RATE: u64 = 100_000;

/// What one run measured.
struct Run {
    sent: f64,
    offered_fps: f64,
    forwarded_fps: f64,
    latency_ns: Value,
}

/// One measured run through whatever bridges `acc0`/`core0` in `wire.app` right now: the
/// generator stamps each frame with its send time, the sink takes one-way latency.
fn measure(
    wire: &Wire,
    bench: &Path,
    capture: &Path,
    loops: u64,
    rate: u64,
) -> Result<Run, String> {
    let bench = bench.to_str().unwrap_or("");
    let mut sink = Reaped(Some(
        wire.right
            .command(&[
                bench,
                "sink",
                "--iface",
                "snk0",
                "--seconds",
                "120",
                "--idle-ms",
                "1000",
                "--latency",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?,
    ));
    let mut out = BufReader::new(sink.child().stdout.take().ok_or("sink stdout")?);
    let mut line = String::new();
    out.read_line(&mut line).map_err(|e| e.to_string())?;
    let (loops, rate) = (loops.to_string(), rate.to_string());
    let blast = wire
        .left
        .command(&[
            bench,
            "blast",
            "--iface",
            "gen0",
            "--input",
            capture.to_str().unwrap_or(""),
            "--loops",
            &loops,
            "--rate",
            &rate,
            "--stamp",
        ])
        .output()
        .map_err(|e| e.to_string())?;
    let blast = String::from_utf8_lossy(&blast.stdout).to_string();
    let mut child = sink.take();
    child.wait().map_err(|e| e.to_string())?;
    let mut res = String::new();
    out.read_to_string(&mut res).map_err(|e| e.to_string())?;
    let latency_ns = serde_json::from_str::<Value>(res.trim())
        .map(|v| v["latency_ns"].clone())
        .unwrap_or(Value::Null);
    Ok(Run {
        sent: num(&blast, "frames"),
        offered_fps: num(&blast, "frames_per_second"),
        forwarded_fps: num(&res, "frames") / num(&res, "active_seconds").max(1e-9),
        latency_ns,
    })
}

/// Whether `op25b` accepts `backend = "af_xdp"` (built with the `af_xdp` feature).
fn has_af_xdp(op25b: &Path, dir: &Path) -> bool {
    let probe = dir.join("veth-xdp-probe.toml");
    if std::fs::write(
        &probe,
        "[outbound]\n[dataplane]\nbackend = \"af_xdp\"\naccess = \"acc0\"\ncore = \"core0\"\n",
    )
    .is_err()
    {
        return false;
    }
    Command::new(op25b)
        .args(["check", "--config"])
        .arg(&probe)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs op25b (1 and 2 workers; AF_XDP with 1 when built with it) and nftables for
/// 64-byte and IMIX frames.
pub fn run(a: &VethArgs) -> Result<Value, String> {
    if let Some(why) = op25b_testbed::unavailable() {
        return Err(format!("the veth benchmark {why}"));
    }
    if Command::new("nft").arg("--version").output().is_err() {
        return Err(
            "nft is not installed (apt-get install nftables; scripts/veth-bench.sh does)".into(),
        );
    }
    std::fs::create_dir_all(&a.out_dir).map_err(|e| e.to_string())?;
    let bench = std::env::current_exe().map_err(|e| e.to_string())?;
    let pools = synthetic_pools(a.prefixes, 0.0, 11);
    let dynamic = ipv4_only(&pools.dynamic);
    let exempt = ipv4_only(&pools.exempt);
    let relays = ipv4_only(&pools.relays);
    let list = |name: &str, l: &[AnyPrefix]| -> Result<(), String> {
        std::fs::write(
            a.out_dir.join(name),
            l.iter().map(|p| format!("{p}\n")).collect::<String>(),
        )
        .map_err(|e| e.to_string())
    };
    list("veth.dynamic", &dynamic)?;
    list("veth.exempt", &exempt)?;
    list("veth.relays", &relays)?;
    let nft = a.out_dir.join("veth.nft");
    std::fs::write(&nft, nft_ruleset(&dynamic, &exempt, &relays)).map_err(|e| e.to_string())?;
    let wire = Wire::new("vb", "gen0", "snk0", false);
    let mut rows = Vec::new();
    for (size, payload) in [("64B", Some(0usize)), ("IMIX", None)] {
        let capture = a.out_dir.join(format!("veth-{size}.pcap"));
        {
            let profile = Profile {
                v6_share: 0.0,
                encaps: vec![Encap::Plain],
                payload,
                odd_share: 0.0,
                non_tcp_share: 0.0,
                ..Profile::default()
            };
            let pools4 = crate::profile::Pools {
                dynamic: dynamic.clone(),
                exempt: exempt.clone(),
                relays: relays.clone(),
            };
            let mut g = Generator::new(&pools4, profile, 3);
            let mut w = PcapWriter::new(
                std::io::BufWriter::new(
                    std::fs::File::create(&capture).map_err(|e| e.to_string())?,
                ),
                false,
            )
            .map_err(|e| e.to_string())?;
            for i in 0..a.frames {
                w.write(i as u64 * 1000, &g.frame())
                    .map_err(|e| e.to_string())?;
            }
            w.finish().map_err(|e| e.to_string())?;
        }
        for (label, workers, dataplane) in modes(a) {
            eprintln!("veth: {label}, {workers} worker(s), {size}");
            let cfg = a.out_dir.join("veth.toml");
            std::fs::write(
                &cfg,
                format!(
                    "[outbound]\ndynamic_files = [\"veth.dynamic\"]\nexempt_files = [\"veth.exempt\"]\nrelays_files = [\"veth.relays\"]\n[dataplane]\n{dataplane}[control]\nsocket = \"veth.sock\"\nmetrics = \"\"\n"
                ),
            )
            .map_err(|e| e.to_string())?;
            let mut app = Reaped(Some(
                wire.app
                    .command(&[
                        a.op25b.to_str().unwrap_or(""),
                        "run",
                        "--config",
                        cfg.to_str().unwrap_or(""),
                    ])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(|e| e.to_string())?,
            ));
            std::thread::sleep(Duration::from_millis(500));
            let run = measure(&wire, &bench, &capture, a.loops, 0)?;
            // Latency at a pace both paths sustain: queueing under overload measures ring
            // sizes, not forwarding.
            let paced = measure(&wire, &bench, &capture, 2, LATENCY_RATE)?;
            let pid = app.child().id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let mut child = app.take();
            let _ = child.wait();
            let mut counters = String::new();
            if let Some(mut o) = child.stdout.take() {
                let _ = o.read_to_string(&mut counters);
            }
            let dropped = counters
                .lines()
                .find(|l| l.starts_with("access→core"))
                .and_then(|l| l.split(" dropped ").nth(1))
                .and_then(|t| t.split_whitespace().next())
                .and_then(|t| t.parse::<u64>().ok());
            rows.push(json!({"mode": label, "workers": workers, "frames": size, "sent": run.sent, "offered_fps": run.offered_fps, "forwarded_fps": run.forwarded_fps, "latency_ns": paced.latency_ns, "latency_ns_saturated": run.latency_ns, "policy_dropped": dropped}));
        }
        eprintln!("veth: nftables bridge, {size}");
        let app = &wire.app;
        app.exec(&["ip", "link", "add", "br0", "type", "bridge"]);
        app.exec(&["ip", "link", "set", "acc0", "master", "br0"]);
        app.exec(&["ip", "link", "set", "core0", "master", "br0"]);
        app.exec(&["ip", "link", "set", "br0", "up"]);
        app.exec(&["nft", "-f", nft.to_str().unwrap_or("")]);
        let run = measure(&wire, &bench, &capture, a.loops, 0)?;
        let paced = measure(&wire, &bench, &capture, 2, LATENCY_RATE)?;
        let counter = app
            .command(&["nft", "list", "chain", "bridge", "op25b", "forward"])
            .output()
            .map_err(|e| e.to_string())?;
        let counter = String::from_utf8_lossy(&counter.stdout).to_string();
        let dropped = counter
            .split("packets ")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
            .and_then(|t| t.parse::<u64>().ok());
        app.exec(&["nft", "delete", "table", "bridge", "op25b"]);
        app.exec(&["ip", "link", "del", "br0"]);
        rows.push(json!({"mode": "nftables", "workers": 0, "frames": size, "sent": run.sent, "offered_fps": run.offered_fps, "forwarded_fps": run.forwarded_fps, "latency_ns": paced.latency_ns, "latency_ns_saturated": run.latency_ns, "policy_dropped": dropped}));
    }
    Ok(
        json!({"prefixes": dynamic.len(), "machine": crate::compare::machine_description(), "rows": rows}),
    )
}

fn us(v: &Value) -> String {
    v.as_f64()
        .map_or("–".into(), |ns| format!("{:.0}", ns / 1e3))
}

/// The Markdown table of a run, with op25b/nftables ratios.
pub fn markdown(v: &Value) -> String {
    let mut md = format!(
        "Machine: {}; policy: {} IPv4 dynamic prefixes\n\n| frames | path | workers | offered Mfps | forwarded Mfps | dropped by policy | vs nftables | latency at 100k fps: p50 µs | p99 µs | p99.9 µs |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        v["machine"].as_str().unwrap_or(""),
        v["prefixes"]
    );
    let rows = v["rows"].as_array().cloned().unwrap_or_default();
    for r in &rows {
        let nft = rows
            .iter()
            .find(|x| x["mode"] == "nftables" && x["frames"] == r["frames"])
            .and_then(|x| x["forwarded_fps"].as_f64());
        let f = r["forwarded_fps"].as_f64().unwrap_or(0.0);
        md += &format!(
            "| {} | {} | {} | {:.3} | {:.3} | {} | {} | {} | {} | {} |\n",
            r["frames"].as_str().unwrap_or(""),
            r["mode"].as_str().unwrap_or(""),
            if r["workers"] == 0 {
                "kernel".to_string()
            } else {
                r["workers"].to_string()
            },
            r["offered_fps"].as_f64().unwrap_or(0.0) / 1e6,
            f / 1e6,
            r["policy_dropped"],
            nft.map_or("–".into(), |n| format!("{:.2}x", f / n)),
            us(&r["latency_ns"]["p50"]),
            us(&r["latency_ns"]["p99"]),
            us(&r["latency_ns"]["p999"]),
        );
    }
    md
}
