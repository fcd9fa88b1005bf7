//! Golden replay tests: captures built here, run through the `op25b` binary, outputs
//! checked frame by frame and byte for byte, counters checked against the expectation.

mod common;

use common::*;
use op25b_dataplane::wire::build::{Ext, FrameBuilder, L4};
use std::net::IpAddr;
use std::path::Path;

const CONFIG: &str = r#"
[outbound]
ports = [25]
action = "drop"
dynamic = ["10.0.0.0/8", "10.20.30.32/28", "2001:db8:100::/40"]
exempt = ["10.20.30.0/24", "10.9.9.9", "2001:db8:100:1::/64"]
relays = ["192.0.2.25/32", "2001:db8:ff::25"]
"#;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn tcp(src: &str, dst: &str, dport: u16) -> FrameBuilder {
    FrameBuilder::tcp(ip(src), ip(dst), 40000, dport).payload(b"EHLO bot.example\r\n")
}

/// A layer-2 wrapping applied to a frame under construction.
type Wrap = fn(FrameBuilder) -> FrameBuilder;

/// (frame, expected dropped, expected reason label)
fn golden() -> Vec<(Vec<u8>, bool, &'static str)> {
    let wraps: Vec<(&str, Wrap)> = vec![
        ("plain", |b| b),
        ("vlan", |b| b.vlan(0x8100, 100)),
        ("qinq", |b| b.vlan(0x88a8, 200).vlan(0x8100, 100)),
        ("9100", |b| b.vlan(0x9100, 5)),
        ("pppoe", |b| b.pppoe(0x0042, false)),
        ("pppoe-pfc", |b| b.pppoe(0x0042, true)),
        ("qinq-pppoe", |b| {
            b.vlan(0x88a8, 200).vlan(0x8100, 100).pppoe(7, true)
        }),
    ];
    let mut v = Vec::new();
    for (_, w) in &wraps {
        v.push((
            w(tcp("10.1.1.1", "198.51.100.25", 25)).build(),
            true,
            "blocked",
        ));
        v.push((
            w(tcp("2001:db8:100::9", "2001:db8:9::25", 25)).build(),
            true,
            "blocked",
        ));
        v.push((
            w(tcp("10.1.1.1", "192.0.2.25", 25)).build(),
            false,
            "destination_relay",
        ));
        v.push((
            w(tcp("2001:db8:100::9", "2001:db8:ff::25", 25)).build(),
            false,
            "destination_relay",
        ));
        v.push((
            w(tcp("10.1.1.1", "198.51.100.25", 587)).build(),
            false,
            "port_not_blocked",
        ));
        v.push((
            w(tcp("10.9.9.9", "198.51.100.25", 25)).build(),
            false,
            "source_exempt",
        ));
        v.push((
            w(tcp("10.20.30.1", "198.51.100.25", 25)).build(),
            false,
            "source_exempt",
        ));
        v.push((
            w(tcp("10.20.30.40", "198.51.100.25", 25)).build(),
            true,
            "blocked",
        ));
        v.push((
            w(tcp("2001:db8:100:1::9", "2001:db8:9::25", 25)).build(),
            false,
            "source_exempt",
        ));
        v.push((
            w(tcp("172.16.0.1", "198.51.100.25", 25)).build(),
            false,
            "source_not_dynamic",
        ));
        v.push((
            w(tcp("10.1.1.1", "198.51.100.25", 25).ipv4_options(3)).build(),
            true,
            "blocked",
        ));
        v.push((
            w(tcp("2001:db8:100::9", "2001:db8:9::25", 25)
                .ipv6_ext(Ext::HopByHop)
                .ipv6_ext(Ext::DestOpts))
            .build(),
            true,
            "blocked",
        ));
    }
    // Fragments.
    v.push((
        tcp("10.1.1.1", "198.51.100.25", 25)
            .ipv4_fragment(0, true)
            .build(),
        true,
        "blocked",
    ));
    v.push((
        tcp("10.1.1.1", "198.51.100.25", 80)
            .ipv4_fragment(1, true)
            .build(),
        true,
        "blocked_overlap_fragment",
    ));
    v.push((
        tcp("10.1.1.1", "192.0.2.25", 80)
            .ipv4_fragment(1, true)
            .build(),
        false,
        "destination_relay",
    ));
    v.push((
        tcp("10.1.1.1", "198.51.100.25", 25)
            .ipv4_fragment(2, false)
            .build(),
        false,
        "non_first_fragment",
    ));
    let f0 = Ext::Fragment {
        offset: 0,
        more: true,
    };
    let f5 = Ext::Fragment {
        offset: 5,
        more: false,
    };
    v.push((
        tcp("2001:db8:100::9", "2001:db8:9::25", 25)
            .ipv6_ext(f0)
            .build(),
        true,
        "blocked",
    ));
    v.push((
        tcp("2001:db8:100::9", "2001:db8:9::25", 25)
            .ipv6_ext(f5)
            .build(),
        false,
        "non_first_fragment",
    ));
    // Not judged.
    let udp = FrameBuilder::new(
        ip("10.1.1.1"),
        ip("198.51.100.25"),
        L4::Udp {
            sport: 1,
            dport: 25,
        },
    );
    v.push((udp.build(), false, "not_tcp"));
    let mut arp = vec![0xff; 12];
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.resize(60, 0);
    v.push((arp, false, "not_ip"));
    let full = tcp("10.1.1.1", "198.51.100.25", 25).build();
    v.push((full[..10].to_vec(), false, "truncated_l2"));
    v.push((full[..30].to_vec(), false, "truncated_l3"));
    v.push((full[..36].to_vec(), false, "truncated_l4"));
    // Cut right after the destination port: still judged.
    v.push((full[..38].to_vec(), true, "blocked"));
    let mut jumbo = tcp("10.1.1.1", "198.51.100.25", 25)
        .payload(&[0xab; 8900])
        .build();
    jumbo.truncate(9000);
    v.push((jumbo, true, "blocked"));
    v
}

fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    let p = dir.join("op25b.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn expect_labels(report: &serde_json::Value, golden: &[(Vec<u8>, bool, &str)]) {
    let mut want = std::collections::BTreeMap::new();
    for (_, _, l) in golden {
        *want.entry(l.to_string()).or_insert(0u64) += 1;
    }
    for (label, count) in report["reasons"].as_object().unwrap() {
        assert_eq!(
            count.as_u64().unwrap(),
            want.get(label).copied().unwrap_or(0),
            "reason {label}"
        );
    }
}

#[test]
fn golden_pcap_every_encapsulation_and_rule() {
    let dir = scratch("golden");
    let cfg = write_config(&dir, CONFIG);
    let g = golden();
    let frames: Vec<Vec<u8>> = g.iter().map(|(f, _, _)| f.clone()).collect();
    for nanos in [false, true] {
        let input = dir.join("in.pcap");
        write_pcap(&input, &frames, nanos);
        for burst in ["1", "3", "64"] {
            let out = replay(&cfg, &input, &dir, &["--burst", burst]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let (inp, in_layout) = records(&input);
            let (pass, pass_layout) = records(&dir.join("pass.out"));
            let (drop, _) = records(&dir.join("drop.out"));
            let verdicts = check_partition(&inp, &pass, &drop);
            let want: Vec<bool> = g.iter().map(|(_, d, _)| *d).collect();
            assert_eq!(verdicts, want, "nanos={nanos} burst={burst}");
            // Same header (format, link type, snap length) on both outputs.
            assert_eq!(pass_layout[0], in_layout[0]);
            let bytes = std::fs::read(dir.join("drop.out")).unwrap();
            assert_eq!(&bytes[..24], &std::fs::read(&input).unwrap()[..24]);
            let r = report(&dir);
            assert_eq!(r["frames"]["rx"], g.len());
            assert_eq!(
                r["frames"]["rx"].as_u64(),
                Some(r["frames"]["pass"].as_u64().unwrap() + r["frames"]["drop"].as_u64().unwrap())
            );
            assert_eq!(
                r["frames"]["drop"].as_u64().unwrap(),
                want.iter().filter(|d| **d).count() as u64
            );
            assert_eq!(r["complete"], true);
            assert_eq!(r["format"], if nanos { "pcap-ns" } else { "pcap" });
            assert!(
                r["latency_ns_per_frame"]["p99"].as_u64().unwrap()
                    >= r["latency_ns_per_frame"]["p50"].as_u64().unwrap()
            );
            assert!(r["frames_per_second"].as_f64().unwrap() > 0.0);
            // One sample per frame (the outbound judge's), and no inbound block without
            // [inbound].
            assert_eq!(r["latency_ns_per_frame"]["samples"], g.len());
            assert!(r["inbound"].is_null(), "{}", r["inbound"]);
            expect_labels(&r, &g);
        }
    }
}

#[test]
fn payload_bytes_never_change_a_verdict() {
    let dir = scratch("privacy");
    let cfg = write_config(&dir, CONFIG);
    let g = golden();
    let frames: Vec<Vec<u8>> = g.iter().map(|(f, _, _)| f.clone()).collect();
    let input = dir.join("in.pcap");
    write_pcap(&input, &frames, false);
    assert!(replay(&cfg, &input, &dir, &[]).status.success());
    let before = report(&dir)["reasons"].clone();
    // Overwrite the payload of every frame that carries one (the parser's own tests cover
    // the TCP header bytes after the port).
    let payload = b"EHLO bot.example\r\n";
    let mut changed = 0;
    let scrambled: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut f = f.clone();
            if f.ends_with(payload) {
                changed += 1;
                let n = f.len();
                for (i, b) in f[n - payload.len()..].iter_mut().enumerate() {
                    *b = (i as u8).wrapping_mul(31) ^ 0x5a;
                }
            }
            f
        })
        .collect();
    assert!(changed > 80, "{changed}");
    write_pcap(&input, &scrambled, false);
    assert!(replay(&cfg, &input, &dir, &[]).status.success());
    assert_eq!(report(&dir)["reasons"], before);
}

#[test]
fn scope_and_monitor() {
    let dir = scratch("scope");
    let cfg = write_config(
        &dir,
        r#"
[outbound]
action = "monitor"
dynamic = ["10.0.0.0/8"]
scope = ["198.51.100.0/24"]
"#,
    );
    let frames = vec![
        tcp("10.1.1.1", "198.51.100.25", 25).build(),
        tcp("10.1.1.1", "203.0.113.25", 25).build(),
    ];
    let input = dir.join("in.pcap");
    write_pcap(&input, &frames, false);
    let out = replay(&cfg, &input, &dir, &[]);
    assert!(out.status.success());
    let r = report(&dir);
    assert_eq!(r["frames"]["drop"], 0);
    assert_eq!(r["frames"]["monitored"], 1);
    assert_eq!(r["reasons"]["blocked"], 1);
    assert_eq!(r["reasons"]["destination_out_of_scope"], 1);
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 would have been dropped: monitor"));
}

#[test]
fn pcapng_both_byte_orders_sections_and_blocks_survive() {
    let dir = scratch("pcapng");
    let cfg = write_config(&dir, CONFIG);
    let bad = tcp("10.1.1.1", "198.51.100.25", 25).build();
    let good = tcp("10.1.1.1", "198.51.100.25", 443).build();
    for be in [false, true] {
        let nrb = ng_block(be, 4, &[0, 0, 0, 0]); // name resolution block, end of records
        let mut file = Vec::new();
        let mut pass_want = Vec::new();
        let mut drop_want = Vec::new();
        let both = |b: Vec<u8>, file: &mut Vec<u8>, p: &mut Vec<u8>, d: &mut Vec<u8>| {
            file.extend_from_slice(&b);
            p.extend_from_slice(&b);
            d.extend_from_slice(&b);
        };
        both(ng_shb(be), &mut file, &mut pass_want, &mut drop_want);
        both(ng_idb(be, 1), &mut file, &mut pass_want, &mut drop_want);
        both(ng_idb(be, 1), &mut file, &mut pass_want, &mut drop_want);
        for i in 0..5u64 {
            let b = ng_epb(be, (i % 2) as u32, 1_700_000_000_000_000 + i, &bad);
            file.extend_from_slice(&b);
            drop_want.extend_from_slice(&b);
            let g = ng_epb(be, 1, 1_700_000_000_000_000 + i, &good);
            file.extend_from_slice(&g);
            pass_want.extend_from_slice(&g);
        }
        both(nrb.clone(), &mut file, &mut pass_want, &mut drop_want);
        let s = ng_spb(be, &bad);
        file.extend_from_slice(&s);
        drop_want.extend_from_slice(&s);
        // A second section, whose interface numbering starts again.
        both(ng_shb(be), &mut file, &mut pass_want, &mut drop_want);
        both(ng_idb(be, 1), &mut file, &mut pass_want, &mut drop_want);
        let g = ng_epb(be, 0, 42, &good);
        file.extend_from_slice(&g);
        pass_want.extend_from_slice(&g);
        let input = dir.join("in.pcapng");
        std::fs::write(&input, &file).unwrap();
        for burst in ["1", "4", "64"] {
            let out = replay(&cfg, &input, &dir, &["--burst", burst]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                std::fs::read(dir.join("pass.out")).unwrap(),
                pass_want,
                "be={be} burst={burst}"
            );
            assert_eq!(
                std::fs::read(dir.join("drop.out")).unwrap(),
                drop_want,
                "be={be} burst={burst}"
            );
            let r = report(&dir);
            assert_eq!(r["format"], "pcapng");
            assert_eq!(r["frames"]["rx"], 12);
            assert_eq!(r["frames"]["drop"], 6);
        }
    }
}

/// Ten frames from a pool address to an outside server, to port 25 and to `other` in
/// turn: five blocked under `CONFIG`, five passed.
fn alternating(other: u16) -> Vec<Vec<u8>> {
    (0..10)
        .map(|i| {
            tcp(
                "10.1.1.1",
                "198.51.100.25",
                if i % 2 == 0 { 25 } else { other },
            )
            .build()
        })
        .collect()
}

#[test]
fn truncated_capture_keeps_what_came_before() {
    let dir = scratch("truncated");
    let cfg = write_config(&dir, CONFIG);
    let frames = alternating(80);
    let input = dir.join("in.pcap");
    write_pcap(&input, &frames, false);
    let mut bytes = std::fs::read(&input).unwrap();
    let rec = 16 + frames[0].len();
    // Cut inside frame 8's data.
    bytes.truncate(24 + 7 * rec + 16 + 5);
    std::fs::write(&input, &bytes).unwrap();
    let out = replay(&cfg, &input, &dir, &["--burst", "4"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("frame 8"), "{err}");
    assert!(err.contains("truncated"), "{err}");
    assert!(err.contains(&format!("byte {}", 24 + 7 * rec)), "{err}");
    let (pass, _) = records(&dir.join("pass.out"));
    let (drop, _) = records(&dir.join("drop.out"));
    assert_eq!((pass.len(), drop.len()), (3, 4));
    let r = report(&dir);
    assert_eq!(r["complete"], false);
    assert_eq!(r["frames"]["rx"], 7);
    assert!(r["error"].as_str().unwrap().contains("frame 8"));

    // A cut inside a record header, and a corrupt length.
    bytes.truncate(24 + 2 * rec + 7);
    std::fs::write(&input, &bytes).unwrap();
    let out = replay(&cfg, &input, &dir, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("frame 3"));
    let mut bytes = std::fs::read(&input).unwrap();
    bytes.truncate(24 + 2 * rec);
    let mut hdr = vec![0u8; 16];
    hdr[8..12].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    bytes.extend_from_slice(&hdr);
    std::fs::write(&input, &bytes).unwrap();
    let out = replay(&cfg, &input, &dir, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("corrupt record") && err.contains("frame 3"),
        "{err}"
    );
    assert_eq!(
        records(&dir.join("pass.out")).0.len() + records(&dir.join("drop.out")).0.len(),
        2
    );
}

#[test]
fn clear_errors_for_bad_inputs() {
    let dir = scratch("bad-inputs");
    let cfg = write_config(&dir, CONFIG);
    let one_line = |out: &std::process::Output| {
        let e = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(e.starts_with("op25b: error: "), "{e}");
        e
    };
    // Missing file.
    let out = replay(&cfg, &dir.join("missing.pcap"), &dir, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line(&out).contains("missing.pcap: cannot open input"));
    // Not a capture.
    let txt = dir.join("notes.txt");
    std::fs::write(&txt, "hello, this is not a capture\n").unwrap();
    let out = replay(&cfg, &txt, &dir, &[]);
    assert!(one_line(&out).contains("not a pcap or pcapng capture"));
    // Empty file.
    let empty = dir.join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    assert!(one_line(&replay(&cfg, &empty, &dir, &[])).contains("too short"));
    // Another link type (Linux cooked capture), pcap and pcapng.
    let sll = dir.join("sll.pcap");
    write_pcap(&sll, &[vec![0; 60]], false);
    let mut b = std::fs::read(&sll).unwrap();
    b[20..24].copy_from_slice(&113u32.to_le_bytes());
    std::fs::write(&sll, &b).unwrap();
    let out = replay(&cfg, &sll, &dir, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line(&out).contains("link type 113 (Linux cooked (SLL))"));
    let ng = dir.join("wifi.pcapng");
    let mut f = ng_shb(false);
    f.extend_from_slice(&ng_idb(false, 105));
    std::fs::write(&ng, &f).unwrap();
    assert!(one_line(&replay(&cfg, &ng, &dir, &[]))
        .contains("interface 0 (block at byte 28) has link type 105 (IEEE 802.11)"));
    // Output over input.
    let input = dir.join("in.pcap");
    write_pcap(
        &input,
        &[tcp("10.1.1.1", "198.51.100.25", 25).build()],
        false,
    );
    let out = op25b()
        .args(["replay", "--config"])
        .arg(&cfg)
        .arg("--input")
        .arg(&input)
        .arg("--pass-out")
        .arg(&input)
        .arg("--drop-out")
        .arg(dir.join("d"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line(&out).contains("is the input file"));
    assert_eq!(records(&input).0.len(), 1);
    // Whatever the spelling: a hard link to the input, the report over the input, two
    // outputs naming one file. Only /dev/null may be named twice.
    let before = std::fs::read(&input).unwrap();
    let hard = dir.join("hard.pcap");
    std::fs::hard_link(&input, &hard).unwrap();
    let with = |pass: &Path, drop: &Path, report: &Path| {
        op25b()
            .args(["replay", "--config"])
            .arg(&cfg)
            .arg("--input")
            .arg(&input)
            .arg("--pass-out")
            .arg(pass)
            .arg("--drop-out")
            .arg(drop)
            .arg("--report")
            .arg(report)
            .output()
            .unwrap()
    };
    let (p, d, r) = (dir.join("p.pcap"), dir.join("d.pcap"), dir.join("r.json"));
    let dotted = dir.join(".").join("p.pcap");
    for (pass, drop, report, says) in [
        (&hard, &d, &r, "hard.pcap: is the input file"),
        (&p, &d, &input, "in.pcap: is the input file"),
        (&p, &d, &p, "--pass-out"),
        (
            &p,
            &dotted,
            &r,
            "are the same file; each output needs its own",
        ),
    ] {
        let out = with(pass, drop, report);
        assert_eq!(out.status.code(), Some(1), "{says}");
        assert!(one_line(&out).contains(says), "{says}");
        assert_eq!(std::fs::read(&input).unwrap(), before);
    }
    let null = Path::new("/dev/null");
    assert!(with(null, null, &r).status.success());
    let r_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&r).unwrap()).unwrap();
    assert_eq!(r_json["frames"]["drop"], 1);
    // A write error names the output, not the input.
    let full = with(Path::new("/dev/full"), &d, &r);
    assert_eq!(full.status.code(), Some(1));
    let e = String::from_utf8_lossy(&full.stderr);
    assert!(
        e.starts_with("op25b: error: /dev/full: writing pass output:")
            && e.contains("the outputs are incomplete"),
        "{e}"
    );
    // A refused capture leaves existing outputs as they were (pcap and pcapng alike).
    std::fs::write(&p, b"kept").unwrap();
    for refused in [&sll, &ng] {
        let out = op25b()
            .args(["replay", "--config"])
            .arg(&cfg)
            .arg("--input")
            .arg(refused)
            .arg("--pass-out")
            .arg(&p)
            .arg("--drop-out")
            .arg(&d)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(std::fs::read(&p).unwrap(), b"kept");
    }
    // An output that cannot be opened: the other, existing, is untouched, and one this
    // replay would have made is not left behind.
    let fresh = dir.join("fresh.pcap");
    for pass in [&p, &fresh] {
        let out = with(pass, &dir.join("no/such/folder/d.pcap"), &r);
        assert_eq!(out.status.code(), Some(1));
        assert!(one_line(&out).contains("cannot create output"));
    }
    assert_eq!(std::fs::read(&p).unwrap(), b"kept");
    assert!(!fresh.exists());
    // So does a report that cannot be written, before the replay runs.
    let out = with(&p, &d, &dir.join("no/such/folder/r.json"));
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line(&out).contains("r.json: cannot create output"));
    assert_eq!(std::fs::read(&p).unwrap(), b"kept");
    // Written in place: an output's mode (and links) stay.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(with(&p, &d, &r).status.success());
    assert_eq!(records(&p).0.len(), 0, "the one frame is dropped");
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // A bad config: exit 2, file and line named.
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[outbound]\ndynamic = [\"10.0.0.1/8\"]\n").unwrap();
    let out = replay(&bad, &input, &dir, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_line(&out).contains("bad.toml:2: dynamic: \"10.0.0.1/8\": host bits"));
}

#[test]
fn run_refuses_a_config_with_exit_2_before_opening_anything() {
    let dir = scratch("run-config");
    let run = |text: &str| {
        let cfg = dir.join("op25b.toml");
        std::fs::write(&cfg, text).unwrap();
        let out = op25b()
            .arg("run")
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        )
    };
    let dataplane = "[dataplane]\nbackend = \"af_packet\"\naccess = \"nope0\"\ncore = \"nope1\"\n[control]\nsocket = \"ctl.sock\"\nmetrics = \"\"\n";
    // Loads, but its policy does not build: the same prefix dynamic and exempt.
    let (code, e) = run(&format!(
        "[outbound]\ndynamic = [\"10.0.0.0/8\"]\nexempt = [\"10.0.0.0/8\"]\n{dataplane}"
    ));
    assert_eq!(code, Some(2), "{e}");
    assert!(e.contains("10.0.0.0/8") && e.contains("dynamic"), "{e}");
    // No [dataplane] section.
    let (code, e) = run("[outbound]\ndynamic = [\"10.0.0.0/8\"]\n");
    assert_eq!(code, Some(2), "{e}");
    assert!(e.contains("needs a [dataplane] section"), "{e}");
    // A good config whose interfaces do not exist: that is a failure to start, exit 1.
    let (code, e) = run(&format!(
        "[outbound]\ndynamic = [\"10.0.0.0/8\"]\n{dataplane}"
    ));
    assert_eq!(code, Some(1), "{e}");
    assert!(e.contains("nope0"), "{e}");
}

#[test]
fn ctl_names_a_bad_word_before_it_connects() {
    let dir = scratch("ctl-words");
    let socket = dir.join("nobody-listens.sock");
    let ctl = |args: &[&str]| {
        let out = op25b()
            .arg("ctl")
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        )
    };
    // Bad words: exit 2 and the word named, although no appliance is running.
    assert_eq!(
        ctl(&["exempt", "add", "100.64.1.7/33", "--ttl", "1h"]),
        (
            Some(2),
            "op25b: error: exempt add: \"100.64.1.7/33\": prefix length /33 is too long for this address family".into()
        )
    );
    assert_eq!(
        ctl(&["explain", "100.64.1.7", "192.0.2.1", "99999"]),
        (
            Some(2),
            "op25b: error: explain: port \"99999\" is not a number from 0 to 65535".into()
        )
    );
    // A TTL the clock cannot hold: exit 2 here, instead of reaching the appliance.
    let (code, e) = ctl(&["exempt", "add", "100.64.1.7", "--ttl", "200000000000000d"]);
    assert_eq!(code, Some(2));
    assert!(e.contains("too long (at most 3650d"), "{e}");
    // Good words: exit 1, the socket named.
    let (code, e) = ctl(&["exempt", "add", "100.64.1.7", "--ttl", "1h"]);
    assert_eq!(code, Some(1));
    assert!(e.contains("nobody-listens.sock: cannot connect"), "{e}");
    // The options may follow the words; given twice, or both, they are refused.
    let bare = |args: &[&str]| {
        let out = op25b().arg("ctl").args(args).output().unwrap();
        let e = String::from_utf8_lossy(&out.stderr).trim().to_string();
        (out.status.code(), e)
    };
    let s = socket.to_str().unwrap();
    for args in [
        &["status", "--socket", s][..],
        &["status", &format!("--socket={s}")],
    ] {
        let (code, e) = bare(args);
        assert_eq!(code, Some(1));
        assert!(e.contains("nobody-listens.sock: cannot connect"), "{e}");
    }
    assert_eq!(
        bare(&["--socket", s, "status", "--config", "x.toml"]),
        (
            Some(2),
            "op25b: error: give --socket or --config, not both".into()
        )
    );
    // A folder where the socket should be is named as such.
    let (code, e) = bare(&["--socket", dir.to_str().unwrap(), "status"]);
    assert_eq!(code, Some(1));
    assert!(
        e.ends_with(
            "is a folder, not op25b's control socket (check --socket, or [control] socket)"
        ),
        "{e}"
    );
}

#[test]
fn check_prints_table_sizes() {
    let dir = scratch("check");
    std::fs::write(
        dir.join("pools.txt"),
        "# pools\n100.64.0.0/10\n2001:db8:100::/40\n100.64.0.0/10\n",
    )
    .unwrap();
    let cfg = write_config(
        &dir,
        "[outbound]\ndynamic_files = [\"pools.txt\"]\nexempt = [\"100.64.1.1\"]\n",
    );
    let check = |cfg: &Path| {
        let out = op25b()
            .arg("check")
            .arg("--config")
            .arg(cfg)
            .output()
            .unwrap();
        assert!(out.status.success());
        out
    };
    let out = check(&cfg);
    let s = String::from_utf8_lossy(&out.stdout);
    let row = |name: &str| {
        s.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|w| w.first() == Some(&name))
            .unwrap_or_default()
    };
    assert_eq!(row("dynamic"), ["dynamic", "1", "1"], "{s}");
    assert_eq!(row("exempt"), ["exempt", "1", "0"], "{s}");
    assert!(s.contains("[inbound]: none"), "{s}");
    assert!(s.contains("1 warning(s)"), "{s}");
    assert!(s.contains("lookup tables: ") && s.contains(" KiB;"), "{s}");
    assert!(!s.contains("direct"), "{s}");
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("pools.txt:4: dynamic: 100.64.0.0/10 repeats"),
        "{e}"
    );
    // 9000 pools: the outbound IPv4 source table is direct, and check says so in MiB.
    let pools: String = (0..9000u32)
        .map(|i| format!("10.{}.{}.0/24\n", i >> 8, i & 255))
        .collect();
    std::fs::write(dir.join("pools.txt"), pools).unwrap();
    let cfg = write_config(&dir, "[outbound]\ndynamic_files = [\"pools.txt\"]\n");
    let s = String::from_utf8_lossy(&check(&cfg).stdout).into_owned();
    assert!(
        s.contains(
            " MiB (64.0 MiB of it the outbound IPv4 source table, direct: one read per lookup)"
        ),
        "{s}"
    );
    let out = op25b()
        .args(["check", "--config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn check_reports_saved_tickets_and_never_fails_for_them() {
    let dir = scratch("check-tickets");
    let cfg = write_config(
        &dir,
        "[outbound]\ndynamic = [\"10.9.0.0/16\"]\n[control]\ntickets = \"tickets\"\n",
    );
    let check = || {
        let out = op25b()
            .args(["check", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let file = dir.join("tickets");
    assert!(check().0.contains(&format!(
        "exemption tickets: {}: none saved yet",
        file.display()
    )));
    std::fs::write(
        &file,
        "10.9.1.1/32 never\n10.9.2.2/32 1000000000\n10.9.3.3 someday\n",
    )
    .unwrap();
    let (out, err) = check();
    assert!(
        out.contains(&format!(
            "exemption tickets: {}: 1 readable and unexpired (a start applies those the config allows), 1 expired, 1 unreadable line(s)",
            file.display()
        )),
        "{out}"
    );
    assert!(
        err.contains(&format!("{}:3: 10.9.3.3 someday: ", file.display())),
        "{err}"
    );
    // `check` only reads: the file is as it was.
    assert!(std::fs::read_to_string(&file).unwrap().contains("someday"));
    assert!(!dir.join("tickets.refused").exists());
}

#[test]
fn inbound_rules_nesting_reject_resets_and_monitor() {
    let dir = scratch("inbound");
    let cfg = write_config(
        &dir,
        r#"
[outbound]
action = "reject"
dynamic = ["10.0.0.0/8"]
relays = ["192.0.2.25"]

[inbound]
action = "reject"
protected = ["198.51.100.25", "2001:db8:ffff::25"]
dynamic = ["203.0.113.0/24", "2001:db8:bad::/48"]
exempt = ["203.0.113.64/26"]
"#,
    );
    // (frame, dropped, outbound reason, inbound reason)
    let cases: Vec<(Vec<u8>, bool, &str, &str)> = vec![
        // Another network's dynamic host → our MX: IP25B blocks.
        (
            tcp("203.0.113.5", "198.51.100.25", 25).build(),
            true,
            "source_not_dynamic",
            "blocked",
        ),
        (
            tcp("2001:db8:bad::9", "2001:db8:ffff::25", 25)
                .vlan(0x8100, 7)
                .build(),
            true,
            "source_not_dynamic",
            "blocked",
        ),
        // An exempt block nested in the external pool, and a dynamic /28 nested in it again.
        (
            tcp("203.0.113.70", "198.51.100.25", 25).build(),
            false,
            "source_not_dynamic",
            "source_exempt",
        ),
        // Not to a protected host, or not port 25.
        (
            tcp("203.0.113.5", "198.51.100.26", 25).build(),
            false,
            "source_not_dynamic",
            "destination_out_of_scope",
        ),
        (
            tcp("203.0.113.5", "198.51.100.25", 587).build(),
            false,
            "port_not_blocked",
            "port_not_blocked",
        ),
        // Our own subscriber → external MX: OP25B blocks, IP25B does not care.
        (
            tcp("10.1.2.3", "198.51.100.99", 25).pppoe(3, false).build(),
            true,
            "blocked",
            "source_not_dynamic",
        ),
        (
            tcp("10.1.2.3", "192.0.2.25", 25).build(),
            false,
            "destination_relay",
            "source_not_dynamic",
        ),
    ];
    let frames: Vec<Vec<u8>> = cases.iter().map(|c| c.0.clone()).collect();
    let input = dir.join("in.pcap");
    write_pcap(&input, &frames, false);
    let resets = dir.join("resets.pcap");
    let out = replay(
        &cfg,
        &input,
        &dir,
        &["--resets-out", resets.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (inp, _) = records(&input);
    let (pass, _) = records(&dir.join("pass.out"));
    let (drop, _) = records(&dir.join("drop.out"));
    let verdicts = check_partition(&inp, &pass, &drop);
    assert_eq!(verdicts, cases.iter().map(|c| c.1).collect::<Vec<_>>());
    let r = report(&dir);
    let count = |v: &serde_json::Value, label: &str| v[label].as_u64().unwrap();
    // Each policy's reasons, counted over every frame, match the table above.
    for (col, section) in [(2, &r["reasons"]), (3, &r["inbound"]["reasons"])] {
        let mut want = std::collections::BTreeMap::new();
        for c in &cases {
            *want.entry(if col == 2 { c.2 } else { c.3 }).or_insert(0u64) += 1;
        }
        for (label, n) in section.as_object().unwrap() {
            assert_eq!(
                n.as_u64().unwrap(),
                want.get(label.as_str()).copied().unwrap_or(0),
                "column {col}: {label}"
            );
        }
    }
    let _ = count;
    assert_eq!(r["inbound"]["policy"]["action"], "reject");
    // Its scope is its protected hosts, and it has no relays.
    let v4 = &r["inbound"]["policy"]["prefixes"]["ipv4"];
    assert!(
        v4["protected"].as_u64().unwrap() > 0 && v4.get("relays").is_none(),
        "{v4}"
    );
    assert_eq!(r["resets"]["written"], 3);
    assert_eq!(r["resets"]["rate_limited"], 0);
    // One reset per rejected frame, in order, each answering it: addresses and ports
    // swapped, same encapsulation (the rst module's tests check every header field).
    let (rst, _) = records(&resets);
    assert_eq!(rst.len(), 3);
    let blocked: Vec<&Vec<u8>> = cases.iter().filter(|c| c.1).map(|c| &c.0).collect();
    let blocked_recs: Vec<&Vec<u8>> = inp
        .iter()
        .zip(&cases)
        .filter(|(_, c)| c.1)
        .map(|(r, _)| r)
        .collect();
    for ((f, r), orig) in blocked.iter().zip(&rst).zip(blocked_recs) {
        assert_eq!(
            &r[..8],
            &orig[..8],
            "stamped with the time of the frame it answers"
        );
        let r = &r[16..]; // classic pcap record header
        let k = op25b_dataplane::wire::parse(f).unwrap();
        let a = op25b_dataplane::wire::parse(r).unwrap();
        use op25b_dataplane::wire::Addrs::*;
        match (k.addrs, a.addrs) {
            (V4 { src, dst }, V4 { src: s2, dst: d2 }) => assert_eq!((src, dst), (d2, s2)),
            (V6 { src, dst }, V6 { src: s2, dst: d2 }) => assert_eq!((src, dst), (d2, s2)),
            _ => panic!("family changed"),
        }
        assert_eq!(
            a.transport,
            op25b_dataplane::wire::Transport::Tcp { dport: 40000 }
        );
        assert_eq!(&r[0..6], &f[6..12]);
    }

    // The same traffic with both policies in monitor mode: every frame passes, the
    // would-be drops are counted, nothing is answered.
    let cfg = write_config(
        &dir,
        &std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("\"reject\"", "\"monitor\""),
    );
    let out = replay(
        &cfg,
        &input,
        &dir,
        &["--resets-out", resets.to_str().unwrap()],
    );
    assert!(out.status.success());
    let r = report(&dir);
    assert_eq!(r["frames"]["pass"], cases.len());
    assert_eq!(r["frames"]["drop"], 0);
    assert_eq!(r["frames"]["monitored"], 1);
    assert_eq!(r["inbound"]["monitored"], 2);
    assert_eq!(r["resets"]["written"], 0);
}

#[test]
fn resets_are_rate_limited() {
    let dir = scratch("reset-rate");
    let cfg = write_config(
        &dir,
        "[outbound]\naction = \"reject\"\nreject_rate = 5\ndynamic = [\"10.0.0.0/8\"]\n",
    );
    let frames: Vec<Vec<u8>> = (0..100)
        .map(|_| tcp("10.1.2.3", "198.51.100.99", 25).build())
        .collect();
    let input = dir.join("in.pcap");
    write_pcap(&input, &frames, false);
    let resets = dir.join("resets.pcap");
    assert!(replay(
        &cfg,
        &input,
        &dir,
        &["--resets-out", resets.to_str().unwrap()]
    )
    .status
    .success());
    let r = report(&dir);
    assert_eq!(r["frames"]["drop"], 100);
    // The capture spans 0.1 s: the bucket's 5 tokens are all there is.
    assert_eq!(r["resets"]["written"], 5);
    assert_eq!(r["resets"]["rate_limited"], 95);
    assert_eq!(records(&resets).0.len(), 5);
}

/// The rate limit runs on the capture's clock, not the replay's: 100 frames 100 ms apart
/// (9.9 s of traffic) under 5 resets/s get the full bucket of 5, then half a token per
/// gap (49 more), however fast the replay runs and on every run alike; each reset carries
/// its frame's time, read in the interface's own resolution and offset.
#[test]
fn resets_are_rate_limited_on_the_capture_clock() {
    let dir = scratch("reset-capture-clock");
    let cfg = write_config(
        &dir,
        "[outbound]\naction = \"reject\"\nreject_rate = 5\ndynamic = [\"10.0.0.0/8\"]\n",
    );
    let frame = tcp("10.1.2.3", "198.51.100.99", 25).build();
    let t0: u64 = 1_700_000_000_000_000_000;
    let mut w = op25b_dataplane::port::pcap::PcapWriter::new(Vec::new(), true).unwrap();
    for i in 0..100u64 {
        w.write(t0 + i * 100_000_000, &frame).unwrap();
    }
    let input = dir.join("slow.pcap");
    std::fs::write(&input, w.finish().unwrap()).unwrap();
    let resets = dir.join("resets.pcap");
    let mut runs = Vec::new();
    for _ in 0..2 {
        let out = replay(
            &cfg,
            &input,
            &dir,
            &["--resets-out", resets.to_str().unwrap()],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r = report(&dir);
        assert_eq!(r["resets"]["written"], 54, "{r}");
        assert_eq!(r["resets"]["rate_limited"], 46);
        runs.push(std::fs::read(&resets).unwrap());
    }
    assert_eq!(
        runs[0], runs[1],
        "two replays of one capture gave different resets"
    );
    let stamps: Vec<u64> = records(&resets)
        .0
        .iter()
        .map(|r| {
            let sec = u64::from(u32::from_le_bytes(r[0..4].try_into().unwrap()));
            sec * 1_000_000_000 + u64::from(u32::from_le_bytes(r[4..8].try_into().unwrap()))
        })
        .collect();
    // Every frame is answered while the full bucket lasts (it loses half a token per
    // frame), then every other one: one reset per 200 ms, the rate.
    let frame_no: Vec<u64> = stamps.iter().map(|t| (t - t0) / 100_000_000).collect();
    assert_eq!(
        &frame_no[..10],
        &[0, 1, 2, 3, 4, 5, 6, 7, 8, 10],
        "{frame_no:?}"
    );
    assert!(
        frame_no[8..].windows(2).all(|w| w[1] - w[0] == 2),
        "{frame_no:?}"
    );

    // pcapng: interface 0 counts 2^-10 s from an offset of 1000 s, interface 1 ns.
    let ng = dir.join("resol.pcapng");
    let mut file = ng_shb(false);
    file.extend(ng_idb_with(
        false,
        &[(9, vec![0x80 | 10]), (14, 1000i64.to_le_bytes().to_vec())],
    ));
    file.extend(ng_idb_with(false, &[(9, vec![9])]));
    file.extend(ng_epb(false, 0, 5 * 1024 + 512, &frame)); // 1005.5 s
    file.extend(ng_epb(false, 1, 1_700_000_000_123_456_789, &frame));
    std::fs::write(&ng, file).unwrap();
    let out = replay(&cfg, &ng, &dir, &["--resets-out", resets.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<(u32, u32)> = records(&resets)
        .0
        .iter()
        .map(|r| {
            (
                u32::from_le_bytes(r[0..4].try_into().unwrap()),
                u32::from_le_bytes(r[4..8].try_into().unwrap()),
            )
        })
        .collect();
    assert_eq!(got, [(1005, 500_000_000), (1_700_000_000, 123_456_789)]);
}

#[test]
fn per_prefix_hits_rank_the_pools_by_blocked_segments() {
    let dir = scratch("prefix-hits");
    let cfg = write_config(
        &dir,
        r#"
[outbound]
action = "monitor"
dynamic = ["10.0.0.0/8", "100.64.0.0/10", "2001:db8:100::/40", "10.9.0.0/16"]
exempt = ["10.9.9.0/24"]
relays = ["192.0.2.25"]

[inbound]
protected = ["198.51.100.25"]
dynamic = ["203.0.113.0/24"]
"#,
    );
    let mut frames = Vec::new();
    let mut add = |src: &str, dst: &str, port: u16, n: usize| {
        for _ in 0..n {
            frames.push(tcp(src, dst, port).build());
        }
    };
    add("10.1.2.3", "198.51.100.7", 25, 5); // 10.0.0.0/8: 5 blocked
    add("10.9.1.1", "198.51.100.7", 25, 3); // nested 10.9.0.0/16: 3, not 10/8
    add("10.9.9.9", "198.51.100.7", 25, 4); // exempt inside it: nothing
    add("100.64.0.1", "198.51.100.7", 25, 2); // 2
    add("2001:db8:100::1", "2001:db8:9::1", 25, 7); // 7
    add("10.1.2.3", "198.51.100.7", 587, 9); // not a blocked port: nothing
    add("10.1.2.3", "192.0.2.25", 25, 9); // to the relay: nothing
    add("203.0.113.9", "198.51.100.25", 25, 6); // inbound pool: 6
    let input = dir.join("in.pcap");
    write_pcap(&input, &frames, false);
    let out = replay(&cfg, &input, &dir, &["--top", "3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = report(&dir);
    assert_eq!(r["dynamic_prefixes_hit"], 4);
    assert_eq!(
        r["top_dynamic_prefixes"],
        serde_json::json!([
            {"prefix": "2001:db8:100::/40", "blocked": 7},
            {"prefix": "10.0.0.0/8", "blocked": 5},
            {"prefix": "10.9.0.0/16", "blocked": 3},
        ])
    );
    assert_eq!(r["inbound"]["dynamic_prefixes_hit"], 1);
    assert_eq!(
        r["inbound"]["top_dynamic_prefixes"],
        serde_json::json!([{"prefix": "203.0.113.0/24", "blocked": 6}])
    );
    // The counts are the blocked (here: monitored) segments, no more.
    assert_eq!(r["frames"]["monitored"], 5 + 3 + 2 + 7);
}

#[test]
fn version_names_the_backends_of_this_build() {
    let out = op25b().arg("--version").output().unwrap();
    assert!(out.status.success());
    let v = String::from_utf8_lossy(&out.stdout);
    let want = format!(
        "op25b {} (backends: af_packet{}{})\n",
        env!("CARGO_PKG_VERSION"),
        if cfg!(feature = "af_xdp") {
            ", af_xdp"
        } else {
            ""
        },
        if cfg!(feature = "dpdk") { ", dpdk" } else { "" }
    );
    assert_eq!(v, want);
}

/// `-` names standard output (and input): a capture or the report can be piped on, and
/// the summary then goes to standard error instead of into the data.
#[test]
fn dash_is_standard_output_and_the_summary_moves_out_of_the_way() {
    let dir = scratch("stdout");
    let cfg = write_config(&dir, CONFIG);
    let frames = alternating(443);
    let input = dir.join("in.pcap");
    write_pcap(&input, &frames, false);
    let run = |args: &[&str], stdin: Option<&Path>| {
        let mut c = op25b();
        c.arg("replay").arg("--config").arg(&cfg).args(args);
        if let Some(p) = stdin {
            c.stdin(std::fs::File::open(p).unwrap());
        }
        c.output().unwrap()
    };
    let drop = dir.join("drop.pcap");
    let out = run(
        &[
            "--input",
            input.to_str().unwrap(),
            "--pass-out",
            "-",
            "--drop-out",
            drop.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pass = dir.join("pass-from-stdout.pcap");
    std::fs::write(&pass, &out.stdout).unwrap();
    let (want, _) = records(&input);
    let (p, _) = records(&pass);
    let (d, _) = records(&drop);
    check_partition(&want, &p, &d);
    assert_eq!((p.len(), d.len()), (5, 5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("10 frames: 5 passed, 5 dropped"));
    // The report on stdout, the capture from stdin.
    let out = run(
        &[
            "--input",
            "-",
            "--pass-out",
            "/dev/null",
            "--drop-out",
            "/dev/null",
            "--report",
            "-",
        ],
        Some(&input),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["frames"]["drop"], 5);
    // Standard output appended to a file (`>> log`): what the file held stays, the report
    // follows it (the descriptor itself is written, not the file reopened from its start).
    let log = dir.join("log.jsonl");
    std::fs::write(&log, "earlier line\n").unwrap();
    let appended = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let out = op25b()
        .arg("replay")
        .arg("--config")
        .arg(&cfg)
        .args([
            "--input",
            input.to_str().unwrap(),
            "--pass-out",
            "/dev/null",
        ])
        .args(["--drop-out", "/dev/null", "--report", "-"])
        .stdout(appended)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let report = text
        .strip_prefix("earlier line\n")
        .expect("the earlier line kept");
    let r: serde_json::Value = serde_json::from_str(report).unwrap();
    assert_eq!(r["frames"]["pass"], 5);
    // Without `-`, the summary stays on stdout.
    let out = run(
        &[
            "--input",
            input.to_str().unwrap(),
            "--pass-out",
            "/dev/null",
            "--drop-out",
            "/dev/null",
        ],
        None,
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("10 frames: 5 passed, 5 dropped"));
}
