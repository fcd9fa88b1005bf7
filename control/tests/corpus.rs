//! Every capture of `../shared/corpus/tcpdump/` through `op25b replay` with a broad policy:
//! no crash, `rx = pass + drop`, outputs an in-order bit-exact partition of the input, and
//! (where tcpdump is installed) the same frame count as tcpdump reads.
//!
//! The corpus is not in the repository; without it the test says so and checks nothing.
//! `OP25B_CORPUS` overrides the folder.

mod common;

use common::*;
use std::path::PathBuf;
use std::process::Command;

const BROAD: &str = r#"
[outbound]
ports = [21, 22, 23, 25, 53, 80, 110, 143, 179, 443, 445, 587, 993, 8080]
dynamic = ["0.0.0.0/0", "::/0"]
exempt = ["10.0.0.0/8", "fe80::/10"]
relays = ["192.168.1.1"]
"#;

fn corpus() -> PathBuf {
    std::env::var_os("OP25B_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/tcpdump")
        })
}

/// Every file of the corpus, sorted; `None` (after saying SKIPPED) when it is absent.
fn corpus_files() -> Option<Vec<PathBuf>> {
    let dir = corpus();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        op25b_dataplane::testkit::skipped(format!(
            "corpus folder {} is absent; no capture was checked",
            dir.display()
        ));
        return None;
    };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    Some(files)
}

fn tcpdump_count(path: &std::path::Path) -> Option<u64> {
    let out = Command::new("tcpdump")
        .arg("--count")
        .arg("-r")
        .arg(path)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8_lossy(&out.stdout);
    s.split_whitespace().next()?.parse().ok()
}

#[test]
fn whole_corpus_replays_cleanly() {
    let Some(files) = corpus_files() else {
        return;
    };
    let scratch = scratch("corpus");
    let cfg = scratch.join("broad.toml");
    std::fs::write(&cfg, BROAD).unwrap();
    let have_tcpdump = Command::new("tcpdump").arg("--version").output().is_ok();
    if !have_tcpdump {
        println!("NOTE: tcpdump not installed; frame counts are not cross-checked");
    }
    let (mut ok, mut refused, mut frames, mut dropped, mut cross_checked) = (0, 0, 0u64, 0u64, 0);
    for f in &files {
        let out = replay(&cfg, f, &scratch, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{}: {stderr}", f.display());
        match out.status.code() {
            Some(0) => {
                ok += 1;
                let r = report(&scratch);
                let rx = r["frames"]["rx"].as_u64().unwrap();
                let pass = r["frames"]["pass"].as_u64().unwrap();
                let drop = r["frames"]["drop"].as_u64().unwrap();
                assert_eq!(rx, pass + drop, "{}", f.display());
                let reasons: u64 = r["reasons"]
                    .as_object()
                    .unwrap()
                    .values()
                    .map(|v| v.as_u64().unwrap())
                    .sum();
                assert_eq!(reasons, rx, "{}", f.display());
                let (inp, _) = records(f);
                let (p, _) = records(&scratch.join("pass.out"));
                let (d, _) = records(&scratch.join("drop.out"));
                assert_eq!(inp.len() as u64, rx, "{}", f.display());
                let verdicts = check_partition(&inp, &p, &d);
                assert_eq!(verdicts.iter().filter(|v| **v).count() as u64, drop);
                if have_tcpdump {
                    if let Some(n) = tcpdump_count(f) {
                        assert_eq!(
                            n,
                            rx,
                            "{}: tcpdump counts {n} frames, op25b {rx}",
                            f.display()
                        );
                        cross_checked += 1;
                    }
                }
                frames += rx;
                dropped += drop;
            }
            Some(1) => {
                refused += 1;
                assert_eq!(stderr.lines().count(), 1, "{}: {stderr}", f.display());
                assert!(
                    stderr.starts_with("op25b: error: "),
                    "{}: {stderr}",
                    f.display()
                );
                println!("refused {}: {}", f.display(), stderr.trim());
            }
            other => panic!("{}: exit {other:?}: {stderr}", f.display()),
        }
    }
    println!(
        "corpus: {} files, {ok} replayed ({frames} frames, {dropped} dropped), {refused} refused with a clear error, {cross_checked} counts cross-checked with tcpdump",
        files.len()
    );
    assert!(
        ok >= files.len() * 9 / 10,
        "only {ok} of {} corpus files replayed",
        files.len()
    );
    assert!(
        dropped > 0,
        "the broad policy dropped nothing across the corpus"
    );
}

/// Privacy by construction, on real traffic: for every frame of every corpus capture, every
/// byte after the TCP destination port (after the IP header for an IPv4 overlap fragment,
/// which is judged without ports) is overwritten; the verdicts and every counter of both
/// policies stay identical.
#[test]
fn bytes_after_the_destination_port_never_matter_over_the_whole_corpus() {
    use op25b_dataplane::port::pcap::{CaptureReader, Next};
    use op25b_dataplane::port::Burst;
    use op25b_dataplane::wire::{parse_layout, Transport};
    use op25b_dataplane::worker::Worker;
    let Some(paths) = corpus_files() else {
        return;
    };
    let text = format!(
        "{BROAD}\naction = \"reject\"\n[inbound]\nports = [25, 80, 443]\nprotected = [\"0.0.0.0/1\", \"::/1\"]\ndynamic = [\"128.0.0.0/1\", \"8000::/1\"]\nexempt = [\"192.168.0.0/16\"]\n"
    );
    let built = op25b::config::Config::from_str(std::path::Path::new("privacy.toml"), &text)
        .unwrap()
        .build(1)
        .unwrap();
    let (mut files, mut frames_total, mut changed_total) = (0, 0u64, 0u64);
    for path in paths {
        let data = std::fs::read(&path).unwrap();
        let Ok(mut r) = CaptureReader::open(&data[..]) else {
            continue;
        };
        let (mut orig, mut scrambled) = (Burst::new(1 << 16), Burst::new(1 << 16));
        let mut one = Burst::new(1);
        loop {
            one.clear();
            match r.next_into(&mut one) {
                Ok(Next::Frame) if !orig.is_full() => {
                    let f = one.frame(0);
                    orig.push(f);
                    let mut g = f.to_vec();
                    let from = match parse_layout(f) {
                        Ok(l) if matches!(l.key.transport, Transport::Tcp { .. }) => l.l4 + 4,
                        Ok(l) => l.l4,
                        Err(_) => g.len(),
                    };
                    for (i, b) in g[from..].iter_mut().enumerate() {
                        *b ^= 0xa5 ^ (i as u8);
                    }
                    changed_total += (g.len() - from) as u64;
                    scrambled.push(&g);
                }
                Ok(Next::Meta) => {}
                _ => break,
            }
        }
        files += 1;
        frames_total += orig.len() as u64;
        for policy in [&built.policy, &built.inbound] {
            let (mut a, mut b) = (Worker::new(1 << 16), Worker::new(1 << 16));
            // Whether a frame passes, and why, never depends on those bytes. Under
            // `reject`, whether a blocked frame is answered does (the reset code reads its
            // flags and header length, the one documented exception, and only for blocked
            // frames), so the answer is compared as "dropped" only.
            let dropped = |v: &[op25b_dataplane::policy::Verdict]| {
                v.iter().map(|v| v.forwards()).collect::<Vec<_>>()
            };
            let va = dropped(a.classify(policy, &orig));
            let vb = dropped(b.classify(policy, &scrambled));
            assert_eq!(va, vb, "{}", path.display());
            let judged = |c: &op25b_dataplane::worker::Counters| {
                let answers = c.rejected + c.reset_limited + c.reset_unanswerable;
                let mut c = c.clone();
                (c.rejected, c.reset_limited, c.reset_unanswerable) = (answers, 0, 0);
                c
            };
            assert_eq!(
                judged(a.counters()),
                judged(b.counters()),
                "{}",
                path.display()
            );
        }
    }
    assert!(files > 400, "only {files} captures read");
    assert!(changed_total > 500_000, "{changed_total} bytes changed");
    println!("{files} captures, {frames_total} frames, {changed_total} bytes after the port changed: verdicts and counters identical");
}
