//! The op25b benchmark harness library: a deterministic random source and synthetic
//! traffic profiles that every benchmark and the bundled sample capture are made from.
//!
//! Invariants: the same seed and profile always produce the same frames, on any machine,
//! so a capture or a benchmark run can be reproduced from its command line alone.

#![forbid(unsafe_code)]

/// `print!` for results on standard output that ends the process quietly with status 141
/// when stdout is closed (`op25b-bench … | head -1`), as a shell tool killed by SIGPIPE
/// does, and says any other write failure (a full disk behind a redirection) with status 1,
/// instead of panicking.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        match write!(out, $($arg)*).and_then(|()| out.flush()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(141),
            Err(e) => {
                eprintln!("op25b-bench: error: writing to standard output: {e}");
                std::process::exit(1);
            }
        }
    }};
}

/// What a result file needs to be reproduced and placed: the command line, the commit of
/// the source tree the harness runs in (when it is a git checkout) and when it ran.
pub fn provenance() -> serde_json::Value {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let dirty = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| !o.stdout.is_empty());
    serde_json::json!({
        "command": std::env::args().collect::<Vec<_>>(),
        "commit": commit,
        "uncommitted_changes": dirty,
        "unix_time": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    })
}

/// [`say!`] with a newline.
#[macro_export]
macro_rules! sayln {
    () => { $crate::say!("\n") };
    ($($arg:tt)*) => {{
        $crate::say!($($arg)*);
        $crate::say!("\n");
    }};
}

pub mod classify;
pub mod compare;
#[cfg(all(feature = "dpdk", target_os = "linux"))]
pub mod dpdk_null;
#[cfg(target_os = "linux")]
pub mod live_swap;
pub mod lpmbench;
pub mod profile;
pub mod rng;
pub mod swap;
#[cfg(target_os = "linux")]
pub mod veth;
#[cfg(target_os = "linux")]
pub mod wire_io;
