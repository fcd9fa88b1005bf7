//! The install steps an operator copies and pastes — README's "The live appliance" and
//! the comment at the top of `scripts/op25b.service` — give a config that `op25b check`
//! accepts. Each source's `install … config/…` lines are run as written, from the
//! repository's root, with `/etc/op25b` moved into a scratch directory; then `op25b
//! check` reads the installed config. (The steps once copied only `op25b.toml`, whose
//! `dynamic_files = ["pools.txt"]` then named a file that was not there, so the unit
//! failed at its first start.)

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `install` commands that copy something from `config/`, in order, comments cut.
fn config_installs(lines: impl Iterator<Item = String>) -> Vec<String> {
    lines
        .map(|l| l.split(" #").next().unwrap_or("").trim().to_string())
        .filter(|l| l.starts_with("install ") && l.contains(" config/"))
        .collect()
}

/// README's shell blocks, line by line.
fn readme_shell_lines() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let mut inside = false;
    let mut out = Vec::new();
    for l in text.lines() {
        if l.starts_with("```") {
            inside = l == "```sh";
            continue;
        }
        if inside {
            out.push(l.to_string());
        }
    }
    out
}

/// The unit's header comment, `#` and indentation removed.
fn unit_comment_lines() -> Vec<String> {
    std::fs::read_to_string(repo().join("scripts/op25b.service"))
        .unwrap()
        .lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| l.trim_start_matches('#').trim().to_string())
        .collect()
}

/// Runs `steps` with /etc/op25b in `root`, then `op25b check` on the installed config.
fn install_and_check(source: &str, steps: &[String], root: &Path) {
    assert!(
        !steps.is_empty(),
        "{source}: no `install … config/…` step found"
    );
    let etc = root.join("etc/op25b");
    for step in steps {
        let step = step.replace("/etc/op25b", etc.to_str().unwrap());
        let out = Command::new("sh")
            .args(["-c", &step])
            .current_dir(repo())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{source}: `{step}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_op25b"))
        .args(["check", "--config"])
        .arg(etc.join("op25b.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{source}: the installed config is refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_readme_and_unit_install_steps_give_a_config_check_accepts() {
    let scratch = std::env::temp_dir().join(format!("op25b-test-{}-install", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    for (source, lines) in [
        ("README.md", readme_shell_lines()),
        ("scripts/op25b.service", unit_comment_lines()),
    ] {
        let root = scratch.join(source.replace('/', "_"));
        install_and_check(source, &config_installs(lines.into_iter()), &root);
    }
    let _ = std::fs::remove_dir_all(&scratch);
}
