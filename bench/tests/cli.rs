//! The harness's command line refuses arguments that would measure nothing (or never end)
//! with a one-line error and status 1, and a closed standard output ends it quietly with
//! status 141 instead of a panic.

use std::process::{Command, Stdio};

fn bench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_op25b-bench"))
        .args(args)
        .output()
        .expect("op25b-bench runs")
}

#[test]
fn arguments_that_would_measure_nothing_are_refused() {
    for (args, want) in [
        (
            &["classify", "--frames", "0"][..],
            "--frames 0: nothing would be measured",
        ),
        (
            &["classify", "--passes", "0"],
            "--passes 0: nothing would be measured",
        ),
        (
            &["classify", "--workers", "0"],
            "--workers 0: nothing would be measured",
        ),
        (
            &["classify", "--v6-share", "1.5"],
            "--v6-share 1.5: a share is between 0 and 1",
        ),
        (
            &["swap", "--swaps", "0"],
            "--swaps 0: nothing would be measured",
        ),
        (
            &["swap", "--cycle", "0"],
            "--cycle 0: nothing would be measured",
        ),
        (
            &["sink", "--iface", "lo", "--seconds", "NaN"],
            "--seconds NaN: give a number of seconds above 0",
        ),
    ] {
        let out = bench(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn a_closed_stdout_ends_the_run_quietly() {
    let dir = std::env::temp_dir().join(format!("op25b-bench-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (p, a) = (dir.join("p.txt"), dir.join("a.txt"));
    std::fs::write(&p, "10.0.0.0/8\n").unwrap();
    std::fs::write(&a, "10.1.2.3\n".repeat(200_000)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_op25b-bench"))
        .args([
            "lpm",
            "--prefixes",
            p.to_str().unwrap(),
            "--addrs",
            a.to_str().unwrap(),
            "--dump",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(141),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn results_say_how_they_were_made() {
    let out = bench(&[
        "classify",
        "--prefixes",
        "100",
        "--frames",
        "64",
        "--passes",
        "2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = &v["provenance"];
    assert_eq!(p["command"][1], "classify", "{p}");
    assert_eq!(p["command"][3], "100", "{p}");
    assert!(p["unix_time"].as_u64().unwrap() > 1_700_000_000, "{p}");
    // A git checkout names its commit (CI runs on one); elsewhere it is null.
    assert!(
        p["commit"].is_null() || p["commit"].as_str().unwrap().len() == 40,
        "{p}"
    );
}
