//! `op25b`: the command-line entry point (`replay`, `check`, `run`, `ctl`).
//!
//! Exit codes: 0 success; 1 the input or an output failed (unreadable capture, other link
//! type, truncated file, write error), or the live appliance could not start or lost an
//! interface in a way a later start may not (a service manager restarts it); 2 bad usage
//! or a refused configuration (not worth restarting until the config is fixed); 3 the
//! live appliance cannot start and retrying will not change that (missing privileges or a
//! sandbox, a backend this binary lacks, queues or MTUs the hardware does not match: not
//! worth restarting until the operator acts).

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use op25b::config::Config;
use op25b::replay::{self, ReplayArgs};
use op25b_dataplane::policy::Action;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(name = "op25b", version, about = "Outbound Port 25 Blocking appliance")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Judge every frame of a pcap/pcapng capture; write passing and dropped frames apart.
    Replay {
        /// The TOML configuration.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The capture to read (pcap or pcapng, Ethernet link type).
        #[arg(long, value_name = "CAPTURE")]
        input: PathBuf,
        /// Where frames that pass are written.
        #[arg(long, value_name = "PASS.pcap")]
        pass_out: PathBuf,
        /// Where dropped frames are written.
        #[arg(long, value_name = "DROP.pcap")]
        drop_out: PathBuf,
        /// Write a JSON report (counts by verdict and reason, frames/s, latency).
        #[arg(long, value_name = "REPORT.json")]
        report: Option<PathBuf>,
        /// Write the TCP resets that `action = "reject"` sends (classic pcap).
        #[arg(long, value_name = "RESETS.pcap")]
        resets_out: Option<PathBuf>,
        /// Frames per burst.
        #[arg(long, default_value_t = op25b_dataplane::worker::DEFAULT_BURST as u16, value_parser = clap::value_parser!(u16).range(1..=4096))]
        burst: u16,
        /// How many dynamic prefixes (most blocked segments first) the report lists per
        /// policy.
        #[arg(long, value_name = "N", default_value_t = 20)]
        top: usize,
    },
    /// Run the live appliance between the [dataplane] access and core interfaces.
    Run {
        /// The TOML configuration (needs a [dataplane] section).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Talk to a running appliance: status | stats [--json] [--top N] | reload |
    /// explain SRC DST PORT | exempt add PREFIX [--ttl DURATION] | exempt del PREFIX |
    /// exempt list
    Ctl {
        /// The control socket (default: from --config, else /run/op25b/op25b.sock).
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// Read the socket path from this configuration's [control] section.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The command and its arguments: status | stats [--json] [--top N] | reload |
        /// explain SRC DST PORT | exempt add PREFIX [--ttl DURATION] | exempt del PREFIX |
        /// exempt list
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        words: Vec<String>,
    },
    /// Validate a configuration and print its table sizes (and what a saved tickets file
    /// holds).
    Check {
        /// The TOML configuration.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

/// `println!` that ends the process quietly when standard output is gone (`op25b check |
/// head -1`), as `cat` or `grep` end, instead of `println!`'s panic. Exit status 141 is
/// what a shell shows for a process that SIGPIPE ended.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        match writeln!(std::io::stdout(), $($arg)*) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(141),
            // Any other failure (a full disk behind a redirection) is said, not swallowed.
            Err(e) => {
                eprintln!("op25b: error: writing to standard output: {e}");
                std::process::exit(1);
            }
        }
    }};
}

/// The command line, with `--version` naming the backends this build has (an operator
/// asks "does this binary do DPDK?" before editing `[dataplane] backend`).
fn parse_cli() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let backends: Vec<&str> = [
        ("af_packet", true),
        ("af_xdp", cfg!(feature = "af_xdp")),
        ("dpdk", cfg!(feature = "dpdk")),
    ]
    .into_iter()
    .filter_map(|(b, on)| on.then_some(b))
    .collect();
    let version = format!(
        "{} (backends: {})",
        env!("CARGO_PKG_VERSION"),
        backends.join(", ")
    );
    // Built once per process, so leaking it is what a static would be.
    let matches = Cli::command()
        .version(&*Box::leak(version.into_boxed_str()))
        .get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn load(path: &Path) -> Result<op25b::config::Built, ExitCode> {
    load_config(path).map(|(_, built)| built)
}

/// The config at `path` and its policies built, or the exit code for a refusal (printed).
fn load_config(path: &Path) -> Result<(Config, op25b::config::Built), ExitCode> {
    let fail = |e: op25b::config::ConfigError| {
        eprintln!("op25b: error: {e}");
        ExitCode::from(2)
    };
    let config = Config::load(path).map_err(fail)?;
    let built = config.build(1).map_err(fail)?;
    for w in op25b::config::shown_warnings(&built.warnings) {
        eprintln!("op25b: warning: {w}");
    }
    Ok((config, built))
}

/// Bytes as `op25b check` says them: KiB below a MiB, else MiB.
fn size_text(bytes: usize) -> String {
    if bytes < 1 << 20 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / 1048576.0)
    }
}

/// What `check` says of the saved exemption tickets a start would put in force (never a
/// reason to fail: nothing in that file stops a start).
#[cfg(target_os = "linux")]
fn check_tickets(config: &Config) {
    let Some(path) = &config.control.tickets else {
        return;
    };
    if let Err(e) = std::fs::symlink_metadata(path) {
        if e.kind() == std::io::ErrorKind::NotFound {
            say!("  exemption tickets: {}: none saved yet", path.display());
            return;
        }
    }
    match op25b::tickets::load(path, std::time::SystemTime::now()) {
        Err(e) => say!(
            "  exemption tickets: {}: cannot read ({e}); a start goes on without them and does not write the file",
            path.display()
        ),
        Ok(l) => {
            for p in l.problems.iter().chain(&l.duplicates) {
                eprintln!("op25b: warning: exemption tickets: {p}");
            }
            say!(
                "  exemption tickets: {}: {} readable and unexpired (a start applies those the config allows), {} expired{}",
                path.display(),
                l.tickets.len(),
                l.expired.len(),
                if l.problems.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", {} unreadable line(s) (a start keeps a copy of the file and goes on with the rest)",
                        l.problems.len()
                    )
                }
            );
        }
    }
}

fn main() -> ExitCode {
    let cli = parse_cli();
    match cli.command {
        Command::Run { config } => {
            // First of all: a SIGHUP (`kill -HUP`, a config manager) or SIGTERM while the config is
            // read or the ports are opened must not end the process the default way.
            let signals = match op25b::live::Signals::install() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("op25b: error: {e}");
                    return ExitCode::from(1);
                }
            };
            let cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("op25b: error: {e}");
                    return ExitCode::from(2);
                }
            };
            match op25b::live::run(&config, cfg, signals) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("op25b: error: {e}");
                    ExitCode::from(match e {
                        op25b::live::RunError::Config(_) => 2,
                        op25b::live::RunError::Failed(_) => 1,
                        op25b::live::RunError::Unrecoverable(_) => 3,
                    })
                }
            }
        }
        Command::Ctl {
            mut socket,
            mut config,
            mut words,
        } => {
            // `ctl status --socket X`: the options may follow the command's words too (no
            // command has a word of that name).
            while let Some(i) = words.iter().position(|w| {
                ["--socket", "--config"]
                    .iter()
                    .any(|o| w == o || w.starts_with(&format!("{o}=")))
            }) {
                // `--socket PATH` or `--socket=PATH`.
                let (option, value, taken) = match words[i].split_once('=') {
                    Some((o, v)) => (o.to_string(), Some(v.to_string()), 1),
                    None => (words[i].clone(), words.get(i + 1).cloned(), 2),
                };
                let Some(value) = value.filter(|v| !v.is_empty()) else {
                    eprintln!("op25b: error: {option} needs a value");
                    return ExitCode::from(2);
                };
                let slot = if option == "--socket" {
                    &mut socket
                } else {
                    &mut config
                };
                if slot.replace(PathBuf::from(value)).is_some() {
                    eprintln!("op25b: error: {option} given twice");
                    return ExitCode::from(2);
                }
                words.drain(i..i + taken);
            }
            if socket.is_some() && config.is_some() {
                eprintln!("op25b: error: give --socket or --config, not both");
                return ExitCode::from(2);
            }
            // A typo is the operator's to fix whether or not the appliance runs.
            if let Err(e) = op25b::ctl::Command::parse(&words) {
                eprintln!("op25b: error: {e}");
                return ExitCode::from(2);
            }
            let socket = match (socket, config) {
                (Some(s), _) => s,
                (None, Some(c)) => match op25b::config::control_socket(&c) {
                    Ok(socket) => socket,
                    Err(e) => {
                        eprintln!("op25b: error: {e}");
                        return ExitCode::from(2);
                    }
                },
                (None, None) => PathBuf::from(op25b::config::DEFAULT_SOCKET),
            };
            match op25b::ctl::request(&socket, &words) {
                Ok((ok, text)) => {
                    if ok {
                        say!("{text}");
                        ExitCode::SUCCESS
                    } else {
                        eprintln!("op25b: {text}");
                        ExitCode::from(1)
                    }
                }
                Err(e) => {
                    eprintln!("op25b: error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Check { config } => {
            let start = Instant::now();
            let (cfg, built) = match load_config(&config) {
                Ok(b) => b,
                Err(code) => return code,
            };
            let took = start.elapsed();
            say!("{}: ok", config.display());
            let (mut bytes, mut direct) = (0, 0);
            let sections = [
                (&built.policy, "outbound", "scope"),
                (&built.inbound, "inbound", "protected"),
            ];
            for (p, section, scope) in sections {
                let s = p.sizes();
                bytes += s.memory_bytes;
                direct += s.direct_bytes;
                if section == "inbound" && s.v4[3] + s.v6[3] == 0 {
                    say!("  [inbound]: none (no IP25B check)");
                    continue;
                }
                say!(
                    "  [{section}] ports: {:?}  action: {}{}",
                    p.ports().to_vec(),
                    p.action().label(),
                    if p.action() == Action::Reject {
                        format!(" (at most {} resets/s per worker)", p.reject_rate())
                    } else {
                        String::new()
                    }
                );
                say!("  {:<10} {:>10} {:>10}", "list", "IPv4", "IPv6");
                for (i, name) in ["dynamic", "exempt", "relays", scope].iter().enumerate() {
                    if section == "inbound" && i == 2 {
                        continue;
                    }
                    say!("  {:<10} {:>10} {:>10}", name, s.v4[i], s.v6[i]);
                }
                if section == "outbound" && s.v4[3] + s.v6[3] == 0 {
                    say!("  scope is empty: every destination is in scope");
                }
            }
            say!(
                "  lookup tables: {}{}; loaded and built in {:.1} ms; {} warning(s)",
                size_text(bytes),
                if direct > 0 {
                    format!(
                        " ({} of it the outbound IPv4 source table, direct: one read per lookup)",
                        size_text(direct)
                    )
                } else {
                    String::new()
                },
                took.as_secs_f64() * 1e3,
                built.warnings.len()
            );
            #[cfg(target_os = "linux")]
            check_tickets(&cfg);
            #[cfg(not(target_os = "linux"))]
            let _ = cfg;
            ExitCode::SUCCESS
        }
        Command::Replay {
            config,
            input,
            pass_out,
            drop_out,
            report,
            resets_out,
            burst,
            top,
        } => {
            let built = match load(&config) {
                Ok(b) => b,
                Err(code) => return code,
            };
            let args = ReplayArgs {
                input,
                pass_out,
                drop_out,
                report,
                resets_out,
                burst: usize::from(burst),
                top,
            };
            match replay::replay(built, &args) {
                Err(e) => {
                    eprintln!("op25b: error: {e}");
                    ExitCode::from(1)
                }
                Ok(o) => {
                    let c = &o.counters;
                    // The summary goes where the data does not.
                    macro_rules! tell {
                        ($($arg:tt)*) => {
                            if o.stdout_taken {
                                eprintln!($($arg)*)
                            } else {
                                say!($($arg)*)
                            }
                        };
                    }
                    tell!(
                        "{}: {} frames: {} passed, {} dropped{} in {:.3} s ({:.0} frames/s)",
                        args.input.display(),
                        c.rx,
                        c.tx,
                        c.dropped,
                        if c.monitored > 0 {
                            format!(" ({} would have been dropped: monitor)", c.monitored)
                        } else {
                            String::new()
                        },
                        o.elapsed_s,
                        if o.elapsed_s > 0.0 {
                            c.rx as f64 / o.elapsed_s
                        } else {
                            0.0
                        },
                    );
                    let reasons = |c: &op25b_dataplane::worker::Counters| {
                        let mut why: Vec<(u64, &str)> = op25b_dataplane::policy::Reason::all()
                            .map(|r| (c.reason(r), r.label()))
                            .filter(|&(n, _)| n > 0)
                            .collect();
                        why.sort_by_key(|w| std::cmp::Reverse(w.0));
                        why.iter()
                            .map(|(n, l)| format!("{l}={n}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    };
                    if o.report["inbound"].is_null() {
                        tell!("  reasons: {}", reasons(c));
                    } else {
                        // A frame is dropped if either policy drops it: each says why apart.
                        tell!("  outbound reasons: {}", reasons(c));
                        tell!("  inbound reasons: {}", reasons(&o.inbound));
                    }
                    if !o.latency.is_empty() {
                        tell!(
                            "  classify latency per frame: p50 {} ns, p99 {} ns, max {} ns",
                            o.latency.value_at_quantile(0.5),
                            o.latency.value_at_quantile(0.99),
                            o.latency.max()
                        );
                    }
                    match o.error {
                        Some(e @ replay::ReplayError::Input { .. }) => {
                            eprintln!(
                                "op25b: error: {e} (the {} frames before it were judged and written)",
                                c.rx
                            );
                            ExitCode::from(1)
                        }
                        Some(e) => {
                            eprintln!(
                                "op25b: error: {e} (stopped after {} frames; the outputs are incomplete)",
                                c.rx
                            );
                            ExitCode::from(1)
                        }
                        None => ExitCode::SUCCESS,
                    }
                }
            }
        }
    }
}
