//! `scripts/op25b.service` against the binary it runs: the reload command is the
//! synchronous `op25b ctl … reload` of the same binary and config as `ExecStart` (so
//! `systemctl reload` fails when the reload is refused, which `kill -HUP` never did).
//! `systemd-analyze verify` itself runs in `scripts/test.sh`.

use std::path::Path;
use std::process::Command;

fn unit_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/op25b.service");
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
    let dir = std::env::temp_dir().join(format!("op25b-test-{}-unit", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("op25b.toml");
    std::fs::write(&config, "[control]\nsocket = \"nobody-listens.sock\"\n").unwrap();
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
