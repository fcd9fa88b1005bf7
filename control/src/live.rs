//! `op25b run`: the live appliance. Worker threads (one per configured core, pinned) each
//! own an AF_PACKET port on both interfaces, joined to per-interface fanout groups so the
//! kernel spreads flows across them the way RSS queues would, and loop: access→core burst
//! judged by the outbound policy, core→access burst passed through, idle wait when both
//! are empty. The main thread is the control thread: SIGHUP builds and validates a new
//! policy off the hot path and publishes it with one atomic pointer swap; SIGTERM/SIGINT
//! stop the workers and print the final counters.
//!
//! Invariants:
//! - Workers load the policy once per burst, so a burst never sees two generations; the
//!   old policy is freed when the last burst using it ends (`arc-swap`'s guarantee).
//! - A configuration that fails to load or build is reported with its reason and changes
//!   nothing: the running generation keeps serving.
//! - Every received frame is sent on or dropped exactly once; counters add up per
//!   direction (`rx = tx + dropped`).

use crate::config::{Config, DataplaneConfig};
use arc_swap::ArcSwap;
use op25b_dataplane::policy::{Policy, Reason};
use op25b_dataplane::port::af_packet::{Direction, WirePort};
use op25b_dataplane::port::sys::pin_current_thread;
use op25b_dataplane::worker::{Counters, PolicyHandle, Worker};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// What one worker did, returned when it stops.
#[derive(Debug)]
pub struct WorkerReport {
    /// Access→core counters.
    pub outbound: Counters,
    /// Core→access counters.
    pub inbound: Counters,
    /// Frames the kernel refused to send.
    pub tx_refused: u64,
}

fn worker_loop(
    mut port: WirePort,
    policy: Arc<PolicyHandle>,
    stop: Arc<AtomicBool>,
    burst: usize,
    core: Option<usize>,
) -> WorkerReport {
    if let Some(c) = core {
        if let Err(e) = pin_current_thread(c) {
            eprintln!("op25b: warning: cannot pin a worker to core {c}: {e}");
        }
    }
    let pass_all: PolicyHandle = ArcSwap::from_pointee(Policy::empty());
    let mut out = Worker::new(burst);
    let mut inb = Worker::new(burst);
    while !stop.load(Ordering::Relaxed) {
        port.set_direction(Direction::AccessToCore);
        // A live port never fails a burst: send errors are counted in the port.
        let a = out.poll(&policy, &mut port).unwrap_or(0);
        port.set_direction(Direction::CoreToAccess);
        let b = inb.poll(&pass_all, &mut port).unwrap_or(0);
        if a == 0 && b == 0 {
            port.wait(10);
        }
    }
    WorkerReport {
        outbound: out.counters().clone(),
        inbound: inb.counters().clone(),
        tx_refused: port.tx_refused,
    }
}

fn summary(name: &str, c: &Counters) -> String {
    let mut why: Vec<(u64, &str)> = Reason::all()
        .map(|r| (c.reason(r), r.label()))
        .filter(|&(n, _)| n > 0)
        .collect();
    why.sort_by_key(|w| std::cmp::Reverse(w.0));
    let why: Vec<String> = why.iter().map(|(n, l)| format!("{l}={n}")).collect();
    format!(
        "{name}: rx {} tx {} dropped {} monitored {} [{}]",
        c.rx,
        c.tx,
        c.dropped,
        c.monitored,
        why.join(" ")
    )
}

/// Runs the appliance until SIGTERM or SIGINT.
pub fn run(config_path: &Path, config: Config) -> Result<(), String> {
    let dp: DataplaneConfig = config.dataplane.clone().ok_or_else(|| {
        format!(
            "{}: `op25b run` needs a [dataplane] section (backend, access, core)",
            config_path.display()
        )
    })?;
    let built = config.build(1).map_err(|e| e.to_string())?;
    for w in &built.warnings {
        eprintln!("op25b: warning: {w}");
    }
    let mut generation = 1;
    let handle = Arc::new(ArcSwap::from_pointee(built.policy));
    let stop = Arc::new(AtomicBool::new(false));
    // Fanout group ids are per network namespace; derive them from the pid so two
    // appliances on one host never share a group.
    let group = (std::process::id() as u16).wrapping_mul(2);
    let mut ports = Vec::new();
    for i in 0..dp.workers {
        let port = WirePort::open(&dp.access, &dp.core, Some(group))
            .map_err(|e| format!("worker {i}: {e}"))?;
        ports.push(port);
    }
    // Signals are registered before the workers start so none is missed.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let mut threads = Vec::new();
    for (i, port) in ports.into_iter().enumerate() {
        let (policy, stop) = (handle.clone(), stop.clone());
        let core = dp.cores.get(i).copied();
        let burst = dp.burst;
        let t = std::thread::Builder::new()
            .name(format!("op25b-worker-{i}"))
            .spawn(move || worker_loop(port, policy, stop, burst, core))
            .map_err(|e| format!("cannot start worker {i}: {e}"))?;
        threads.push(t);
    }
    eprintln!(
        "op25b: running: {} ↔ {}, {} worker(s), policy generation {generation} from {}",
        dp.access,
        dp.core,
        dp.workers,
        config_path.display()
    );
    for sig in signals.forever() {
        if sig == signal_hook::consts::SIGHUP {
            let t = Instant::now();
            match Config::load(config_path).and_then(|c| c.build(generation + 1)) {
                Ok(b) => {
                    for w in &b.warnings {
                        eprintln!("op25b: warning: {w}");
                    }
                    generation += 1;
                    handle.store(Arc::new(b.policy));
                    eprintln!(
                        "op25b: reloaded {}: generation {generation} in {:.1} ms",
                        config_path.display(),
                        t.elapsed().as_secs_f64() * 1e3
                    );
                }
                Err(e) => {
                    eprintln!("op25b: reload refused, still serving generation {generation}: {e}")
                }
            }
        } else {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut outbound = Counters::default();
    let mut inbound = Counters::default();
    let mut refused = 0;
    for t in threads {
        let r = t
            .join()
            .map_err(|_| "a worker thread panicked".to_string())?;
        outbound.merge(&r.outbound);
        inbound.merge(&r.inbound);
        refused += r.tx_refused;
    }
    println!("{}", summary("access→core", &outbound));
    println!("{}", summary("core→access", &inbound));
    println!("tx refused by the kernel: {refused}");
    Ok(())
}
