//! Helpers for this workspace's tests (not part of the appliance).
//!
//! [`skipped`] reports a test, or a part of one, that cannot run on this machine. `cargo
//! test` hides what a passing test prints with `println!`, so a skip said that way would
//! pass silently; this writes straight to the process's stderr, which the test harness
//! does not capture, and names the test. [`is_root`] says whether a test may do what
//! needs root. [`scratch_dir`] gives a test a fresh directory. [`eal_args`] gives a DPDK
//! test its own EAL on virtual devices.
//! [`xorshift`] gives a test a fixed pseudo-random sequence.
//!
//! Invariant: nothing here is used on the packet path.

use std::io::Write;

/// Says, where `cargo test` shows it, that the calling test (or part of it) was skipped
/// and why: `SKIPPED <test name>: <why>`.
pub fn skipped(why: impl std::fmt::Display) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {why}");
}

/// Whether this process runs as root (its effective user id is 0): network namespaces,
/// AF_PACKET sockets and the DPDK EAL's memory setup need it.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// DPDK EAL arguments for a run on virtual devices private to this test process: no
/// hugepages, no PCI, no shared config, 128 MB on lcore 0, its own file prefix (`name`
/// makes it: each test gives its own), then `vdevs` (e.g. `--vdev=net_null0`).
pub fn eal_args(name: &str, vdevs: &[String]) -> Vec<String> {
    let mut a: Vec<String> = [
        "--no-huge",
        "--no-pci",
        "--no-shconf",
        "-m",
        "128",
        "-l",
        "0",
        "--log-level=lib.eal:warning",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push(format!(
        "--file-prefix=op25b-test-{}-{name}",
        std::process::id()
    ));
    a.extend(vdevs.iter().cloned());
    a
}

/// A xorshift64 generator: fixed sequences, so failures reproduce.
pub fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

/// A fresh, empty directory for test `name` under the system's temporary directory
/// (unique per process; whatever an earlier run left there is removed first).
pub fn scratch_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("op25b-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("a scratch directory under the temporary directory");
    d
}

/// A fresh directory for test `name` ([`scratch_dir`]) holding `op25b.toml` with `text`;
/// returns (directory, config file).
pub fn scratch_config(
    name: &str,
    text: impl AsRef<[u8]>,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = scratch_dir(name);
    let cfg = dir.join("op25b.toml");
    std::fs::write(&cfg, text).expect("writing the config");
    (dir, cfg)
}

/// A prefix file of `n` distinct IPv4 /30s from 100.64.0.0 on, one per line: a policy
/// large enough that building it takes a noticeable time (about 0.3 s for 300,000).
pub fn many_slash30s(n: u32) -> String {
    (0..n)
        .map(|i| format!("{}/30\n", std::net::Ipv4Addr::from(0x6440_0000u32 + i * 4)))
        .collect()
}

/// A fresh directory for test `name` ([`scratch_dir`]) holding `op25b.toml`, a config whose
/// start takes a noticeable time: a pool file of 300,000 /30s ([`many_slash30s`]),
/// AF_PACKET between `access` and `core`, the control socket `ctl.sock` beside it and no
/// metrics. Returns (directory, config file).
pub fn slow_start_config(
    name: &str,
    access: &str,
    core: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let (dir, cfg) = scratch_config(
        name,
        format!(
            "[outbound]\ndynamic_files = [\"pools.txt\"]\n\n[dataplane]\nbackend = \"af_packet\"\naccess = \"{access}\"\ncore = \"{core}\"\n\n[control]\nsocket = \"ctl.sock\"\nmetrics = \"\"\n"
        ),
    );
    std::fs::write(dir.join("pools.txt"), many_slash30s(300_000)).expect("writing the pool file");
    (dir, cfg)
}

/// Waits up to 10 s until process `pid` catches SIGHUP and SIGTERM (the `SigCgt` mask in
/// /proc/PID/status has bits 0 and 14), so a test's signal meets the program's handlers
/// and not the kernel's defaults; polled, as a loaded machine may take long to start it.
/// Returns whether it did (false also when the process is gone).
pub fn wait_until_it_catches_hup_and_term(pid: u32) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            return false;
        };
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .is_some_and(|m| m & 1 != 0 && m & (1 << 14) != 0);
        if caught {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}
