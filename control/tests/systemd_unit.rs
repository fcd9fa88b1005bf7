//! `scripts/op25b.service` and its backend drop-ins against the binary they run: the
//! reload command is the synchronous `op25b ctl … reload` of the same binary and config as
//! `ExecStart` (so `systemctl reload` fails when the reload is refused, which `kill -HUP`
//! never did); the exit codes of starts no retry fixes are not restarted; each drop-in
//! gives its backend what it needs, and none breaks DPDK's use of `RUNTIME_DIRECTORY`.
//! `systemd-analyze verify` itself runs in `scripts/test.sh`.

use std::path::Path;
use std::process::Command;

fn unit_text() -> String {
    script("op25b.service")
}

/// A file under `scripts/`.
fn script(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The value of every `key=` line (comments skipped), in order.
fn values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_string)
        .collect()
}

#[test]
fn reload_is_the_synchronous_ctl_of_the_binary_and_config_exec_start_runs() {
    let unit = unit_text();
    let start = values(&unit, "ExecStart");
    let reload = values(&unit, "ExecReload");
    assert_eq!(start.len(), 1, "{start:?}");
    assert_eq!(reload.len(), 1, "{reload:?}");
    let start: Vec<&str> = start[0].split_whitespace().collect();
    let reload: Vec<&str> = reload[0].split_whitespace().collect();
    // ExecStart=BIN run --config CFG
    assert_eq!(start.get(1..3), Some(&["run", "--config"][..]), "{start:?}");
    let (bin, cfg) = (start[0], start[3]);
    assert_eq!(
        reload,
        [bin, "ctl", "--config", cfg, "reload"],
        "ExecReload must be `{bin} ctl --config {cfg} reload`"
    );

    // That command line fails when nothing answers: it can only succeed on the
    // appliance's own "reloaded".
    let (dir, config) = op25b_dataplane::testkit::scratch_config(
        "test-unit",
        "[control]\nsocket = \"nobody-listens.sock\"\n",
    );
    // The unit's words, with this build for BIN and a scratch config for CFG.
    let args: Vec<&str> = reload[1..]
        .iter()
        .map(|w| {
            if *w == cfg {
                config.to_str().unwrap()
            } else {
                w
            }
        })
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_op25b"))
        .args(&args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("nobody-listens.sock: cannot connect"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `op25b run` sends READY=1 (control/src/notify.rs; testbed/tests/live_notify.rs), so
/// the unit waits for it and takes it only from the main process.
#[test]
fn the_unit_waits_for_op25b_to_say_it_is_ready() {
    let unit = unit_text();
    assert_eq!(values(&unit, "Type"), ["notify"]);
    assert_eq!(values(&unit, "NotifyAccess"), ["main"]);
}

#[test]
fn starts_no_retry_fixes_are_not_restarted() {
    let unit = unit_text();
    let prevent = values(&unit, "RestartPreventExitStatus");
    let codes: Vec<&str> = prevent.iter().flat_map(|v| v.split_whitespace()).collect();
    // 2: a refused config; 3: `run` cannot start until the operator acts. 1 (an
    // interface gone, which may come back) must stay restartable.
    assert!(codes.contains(&"2") && codes.contains(&"3"), "{codes:?}");
    assert!(!codes.contains(&"1"), "{codes:?}");
    assert_eq!(values(&unit, "Restart"), ["on-failure"]);
}

/// Every word of every `key=` line of the unit and, if given, a drop-in.
fn merged(unit: &str, dropin: &str, key: &str) -> Vec<String> {
    values(unit, key)
        .into_iter()
        .chain(values(dropin, key))
        .flat_map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect()
}

#[test]
fn each_backend_drop_in_adds_what_that_backend_needs() {
    let unit = unit_text();
    let xdp = script("op25b.service.d/af_xdp.conf");
    let dpdk = script("op25b.service.d/dpdk.conf");
    for (dropin, key, want) in [
        (&xdp, "CapabilityBoundingSet", "CAP_BPF"),
        (&xdp, "AmbientCapabilities", "CAP_BPF"),
        (&xdp, "CapabilityBoundingSet", "CAP_IPC_LOCK"),
        (&xdp, "RestrictAddressFamilies", "AF_XDP"),
        (&dpdk, "CapabilityBoundingSet", "CAP_IPC_LOCK"),
        (&dpdk, "AmbientCapabilities", "CAP_IPC_LOCK"),
        (&dpdk, "ReadWritePaths", "-/dev/hugepages"),
        // ProtectClock= makes devices an allow-list: VFIO must be named.
        (&dpdk, "DeviceAllow", "/dev/vfio/vfio"),
        (&dpdk, "DeviceAllow", "char-vfio"),
    ] {
        assert!(
            values(dropin, key)
                .iter()
                .any(|v| v.split_whitespace().any(|w| w == want)),
            "{key}={want} missing from a drop-in"
        );
    }
    // The unit alone is for AF_PACKET: no BPF, no AF_XDP.
    assert!(!merged(&unit, "", "CapabilityBoundingSet").contains(&"CAP_BPF".into()));
    assert!(!merged(&unit, "", "RestrictAddressFamilies").contains(&"AF_XDP".into()));
    // Lists that the drop-ins add to must be allow-lists in the unit (a `~` deny-list
    // would turn the drop-in's entries into denials).
    for key in ["CapabilityBoundingSet", "RestrictAddressFamilies"] {
        assert!(
            values(&unit, key).iter().all(|v| !v.starts_with('~')),
            "{key}"
        );
    }
    // DPDK puts its runtime files under $RUNTIME_DIRECTORY, which systemd sets to one
    // path only while the unit has exactly one RuntimeDirectory.
    for dropin in [&xdp, &dpdk] {
        assert_eq!(
            merged(&unit, dropin, "RuntimeDirectory"),
            ["op25b"],
            "a second RuntimeDirectory makes $RUNTIME_DIRECTORY a list DPDK cannot use"
        );
    }
}

#[test]
fn the_runtime_directory_holds_the_default_socket_and_outlives_a_stop() {
    // AF_XDP writes down the interface settings it changes in the control socket's folder
    // until they are restored; after a crash, the next start finds them there only if
    // systemd keeps the folder, across a restart and a stop alike (a crash, then
    // `systemctl stop` during RestartSec, or a restart that fails before the ports open).
    let unit = unit_text();
    assert_eq!(values(&unit, "RuntimeDirectory"), ["op25b"]);
    assert_eq!(values(&unit, "RuntimeDirectoryPreserve"), ["yes"]);
    assert_eq!(
        Path::new(op25b::config::DEFAULT_SOCKET).parent(),
        Some(Path::new("/run/op25b"))
    );
}
