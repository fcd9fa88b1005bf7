//! `op25b run` as root in a sandbox that took capabilities away, as systemd's
//! `CapabilityBoundingSet=` or a container does (here `setpriv --bounding-set`): the
//! refusal says op25b is root but lacks a named capability, and where that was cut —
//! not "run as root" — and exits 3, which the systemd unit does not restart (no retry can
//! succeed until the operator changes the sandbox).
//!
//! The same for a prefix file another user owns with mode 0600: root without
//! CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (as in the systemd unit) may not read it, and
//! the refusal names the config line that lists it, the file's owner and mode, and how to
//! make it readable.
//!
//! Needs root, iproute2 and setpriv (util-linux); says SKIPPED otherwise.

use op25b_testbed::{available_or_skipped, run_without_caps, Netns};
use std::process::Command;

/// A namespace with two veth pairs (`acc0`/`acc1`, `core0`/`core1`), up; or `None`
/// (skipped) where that cannot be made or `setpriv` is missing.
fn sandbox_ns(tag: &str) -> Option<Netns> {
    if !available_or_skipped() {
        return None;
    }
    if Command::new("setpriv").arg("--help").output().is_err() {
        op25b_dataplane::testkit::skipped("setpriv (util-linux) is not installed");
        return None;
    }
    let ns = Netns::new(tag);
    ns.exec(&[
        "ip", "link", "add", "acc0", "type", "veth", "peer", "name", "acc1",
    ]);
    ns.exec(&[
        "ip", "link", "add", "core0", "type", "veth", "peer", "name", "core1",
    ]);
    for i in ["acc0", "acc1", "core0", "core1"] {
        ns.exec(&["ip", "link", "set", i, "up"]);
    }
    Some(ns)
}

#[test]
fn af_packet_root_without_cap_net_raw_is_told_about_the_sandbox() {
    let Some(ns) = sandbox_ns("sbp") else {
        return;
    };
    let dir = op25b_dataplane::testkit::scratch_dir("sandbox");
    let cfg = dir.join("op25b.toml");
    std::fs::write(
        &cfg,
        "[outbound]\ndynamic = [\"10.0.0.0/24\"]\n\n[dataplane]\nbackend = \"af_packet\"\naccess = \"acc0\"\ncore = \"core0\"\n\n[control]\nsocket = \"ctl.sock\"\nmetrics = \"\"\n",
    )
    .unwrap();
    let (code, err) = run_without_caps(&ns, "-net_raw", &cfg);
    assert_eq!(code, Some(3), "{err}");
    for want in [
        "acc0: cannot open an AF_PACKET socket: Operation not permitted",
        "op25b runs as root but without CAP_NET_RAW",
        "CapabilityBoundingSet=",
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_prefix_file_root_may_not_read_in_the_unit_says_why() {
    let Some(ns) = sandbox_ns("sbf") else {
        return;
    };
    let dir = op25b_dataplane::testkit::scratch_dir("sandbox-file");
    let pools = dir.join("pools.txt");
    std::fs::write(&pools, "10.0.0.0/24\n").unwrap();
    // A pool export another account wrote, readable to it alone.
    op25b_testbed::run(&["chown", "1000:1000", pools.to_str().unwrap()]);
    op25b_testbed::run(&["chmod", "0600", pools.to_str().unwrap()]);
    let cfg = dir.join("op25b.toml");
    std::fs::write(
        &cfg,
        "[outbound]\ndynamic_files = [\"pools.txt\"]\n\n[dataplane]\nbackend = \"af_packet\"\naccess = \"acc0\"\ncore = \"core0\"\n\n[control]\nsocket = \"ctl.sock\"\nmetrics = \"\"\n",
    )
    .unwrap();
    let (code, err) = run_without_caps(&ns, "-dac_override,-dac_read_search", &cfg);
    // A config that cannot load is exit 2, as for `check`.
    assert_eq!(code, Some(2), "{err}");
    let line = format!(
        "{}:2: dynamic_files: \"pools.txt\": permission denied",
        cfg.display()
    );
    for want in [
        line.as_str(),
        "op25b runs as root but without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH",
        "(it is owned by uid 1000 gid 1000, mode 0600)",
        "chmod 0640",
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
