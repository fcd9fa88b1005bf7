//! `op25b run`: the live appliance. Worker threads (one per configured core, pinned) each
//! own an AF_PACKET port on both interfaces, joined to per-interface fanout groups so the
//! kernel spreads flows across them the way RSS queues would (or, with `backend = "dpdk"`,
//! one RX/TX queue pair on each of two DPDK ports, frames judged in their mbufs; or, with
//! `backend = "af_xdp"`, one XDP socket per interface queue, frames judged in the UMEM), and
//! loop: access→core burst
//! judged by the outbound policy, core→access burst judged by the inbound (IP25B) policy
//! (which blocks nothing without `[inbound]`), idle wait when both are empty. Resets that
//! `reject` asks for leave through the interface the blocked frame came in on. Every quarter second a worker sends its counters and latency samples to the
//! control thread over a channel (never blocking: a full channel skips one snapshot).
//!
//! The control thread (this module's [`run`]) owns everything else: it builds and
//! validates a new policy off the hot path and publishes it with one atomic pointer swap
//! (SIGHUP, `op25b ctl reload`); it answers `op25b ctl` (status, stats, explain, exempt
//! tickets) and the read-only Prometheus endpoint; it expires exemption tickets; on
//! SIGTERM/SIGINT it stops the workers and prints the final counters. Those signals are
//! caught from the first step of `op25b run` on ([`Signals`]): during start-up a SIGTERM
//! stops it cleanly after the step under way, and a SIGHUP reloads once it runs.
//!
//! Invariants:
//! - Workers load the policy once per burst, so a burst never sees two generations; the
//!   old policy is freed when the last burst using it ends (`arc-swap`'s guarantee).
//! - A configuration that fails to load or build is reported with its reason and changes
//!   nothing: the running generation keeps serving.
//! - Exemption tickets are part of every policy built while they last, so a reload keeps
//!   them; an expired ticket is removed by a rebuild of the last good configuration. With
//!   `[control] tickets`, the file holds the tickets of the last successful build
//!   (`crate::tickets`), and nothing in it can stop a start. When a save fails, the file
//!   is left holding an older list only if that list grants nothing beyond what is in
//!   force (a failed save after an add or an expiry loses at most what changed, and says
//!   what); one that would bring back a deleted or shortened ticket is removed.
//! - A worker looks at its links every quarter second: a change of state is logged, and an
//!   interface gone under it stops the appliance (exit 1) instead of serving nothing.
//! - Every received frame is sent on or dropped exactly once; counters add up per
//!   direction (`rx = tx + dropped`).

use crate::config::ListOrigins;
use crate::config::{Backend, Config, DataplaneConfig, Origin};
use crate::ctl::{self, Request};
use crate::tickets::Ticket;

use crossbeam_channel::{select, Receiver, Sender};
use hdrhistogram::Histogram;
use op25b_dataplane::clock::BurstClock;
use op25b_dataplane::hot::HotBlocks;
use op25b_dataplane::policy::{AnyPrefix, ListName, Policy, Reason};
use op25b_dataplane::port::af_packet::{Direction, LinkEvent, WirePort};
use op25b_dataplane::port::sys::pin_current_thread;
use op25b_dataplane::sample::SampleConfig;
use op25b_dataplane::wire::{Addrs, FlowKey, Transport};
use op25b_dataplane::worker::{latency_histogram, Counters, PolicyHandle, Worker};
use serde_json::json;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How often workers report to the control thread.
const SNAPSHOT_EVERY: Duration = Duration::from_millis(250);

/// A worker's report: cumulative counters, latency samples since the last report.
#[derive(Debug)]
struct Snapshot {
    worker: usize,
    outbound: Counters,
    inbound: Counters,
    latency_out: Histogram<u64>,
    latency_in: Histogram<u64>,
    tx_refused: u64,
    /// Of those, frames with more VLAN tag than one 802.1Q tag refused as too long
    /// (AF_PACKET only), by the interface they were to leave (access, core).
    tx_refused_tagged: [u64; 2],
    resets_sent: u64,
    /// Drop-log records refused by the samplers' rate limit, and lost to a full queue.
    log_rate_limited: u64,
    log_queue_full: u64,
    last: bool,
    /// Why this worker stopped on its own (an interface it cannot serve again).
    fatal: Option<String>,
    /// Whether each link (access, core) was up at the worker's last look.
    links_up: [bool; 2],
}

/// A worker's side of the wire, whichever backend carries it. Every variant is boxed:
/// their sizes differ by hundreds of bytes whichever features are on (clippy's
/// large_enum_variant), and one pointer more per burst costs nothing measurable.
enum LivePort {
    Packet(Box<WirePort>),
    #[cfg(feature = "dpdk")]
    Dpdk(Box<op25b_dataplane::port::dpdk::DpdkWire>),
    #[cfg(feature = "af_xdp")]
    Xdp(Box<op25b_dataplane::port::af_xdp::XdpWire>),
}

impl LivePort {
    fn tx_refused(&self) -> u64 {
        match self {
            LivePort::Packet(p) => p.tx_refused,
            #[cfg(feature = "dpdk")]
            LivePort::Dpdk(p) => p.tx_refused,
            #[cfg(feature = "af_xdp")]
            LivePort::Xdp(p) => p.tx_refused,
        }
    }

    fn tx_refused_tagged(&self) -> [u64; 2] {
        match self {
            LivePort::Packet(p) => p.tx_refused_tagged,
            // AF_XDP and DPDK send without the packet socket's length check.
            #[cfg(feature = "dpdk")]
            LivePort::Dpdk(_) => [0, 0],
            #[cfg(feature = "af_xdp")]
            LivePort::Xdp(_) => [0, 0],
        }
    }

    fn resets_sent(&self) -> u64 {
        match self {
            LivePort::Packet(p) => p.resets_sent,
            #[cfg(feature = "dpdk")]
            LivePort::Dpdk(p) => p.resets_sent,
            #[cfg(feature = "af_xdp")]
            LivePort::Xdp(p) => p.resets_sent,
        }
    }

    /// One burst each way; returns the frames moved (access→core, core→access).
    fn poll_both(&mut self, out: &mut Worker, inb: &mut Worker, w: &Policies) -> (usize, usize) {
        match self {
            LivePort::Packet(p) => {
                p.set_direction(Direction::AccessToCore);
                // A live port never fails a burst: send errors are counted in the port.
                let a = out.poll(&w.outbound, &mut **p).unwrap_or(0);
                p.set_direction(Direction::CoreToAccess);
                let b = inb.poll(&w.inbound, &mut **p).unwrap_or(0);
                (a, b)
            }
            #[cfg(feature = "dpdk")]
            LivePort::Dpdk(p) => {
                p.set_direction(Direction::AccessToCore);
                let a = p.poll(out, &w.outbound);
                p.set_direction(Direction::CoreToAccess);
                let b = p.poll(inb, &w.inbound);
                (a, b)
            }
            #[cfg(feature = "af_xdp")]
            LivePort::Xdp(p) => {
                p.set_direction(Direction::AccessToCore);
                let a = p.poll(out, &w.outbound);
                p.set_direction(Direction::CoreToAccess);
                let b = p.poll(inb, &w.inbound);
                (a, b)
            }
        }
    }

    /// Waits a little for traffic after an empty poll. AF_PACKET and AF_XDP sleep in
    /// poll(2) on both sockets; DPDK has nothing to wait on, so it spins, and after a long
    /// idle stretch naps briefly so an idle appliance does not burn its cores.
    /// Returns what the wait found wrong with a link (AF_PACKET: a socket that reported an
    /// error is looked at at once; the others are looked at every snapshot period).
    #[cfg_attr(not(feature = "dpdk"), allow(unused_variables))]
    fn idle(&mut self, empty_polls: u32) -> Option<LinkEvent> {
        match self {
            LivePort::Packet(p) => p.wait(10),
            #[cfg(feature = "af_xdp")]
            LivePort::Xdp(p) => {
                p.wait(10);
                None
            }
            #[cfg(feature = "dpdk")]
            LivePort::Dpdk(_) => {
                if empty_polls > 100_000 {
                    std::thread::sleep(Duration::from_micros(50));
                } else {
                    std::hint::spin_loop();
                }
                None
            }
        }
    }

    /// Whether each link (access, core) was up at the last look.
    fn links_up(&self) -> [bool; 2] {
        match self {
            LivePort::Packet(p) => p.links_up(),
            #[cfg(feature = "af_xdp")]
            LivePort::Xdp(p) => p.links_up(),
            #[cfg(feature = "dpdk")]
            LivePort::Dpdk(p) => p.links_up(),
        }
    }

    /// The periodic look at both links: a link that went down or came back up, and an
    /// interface deleted or made anew (see `op25b_dataplane::port::link`).
    fn check_links(&mut self) -> Option<LinkEvent> {
        match self {
            LivePort::Packet(p) => p.check_links(),
            #[cfg(feature = "af_xdp")]
            LivePort::Xdp(p) => p.check_links(),
            #[cfg(feature = "dpdk")]
            LivePort::Dpdk(p) => p.check_links(),
        }
    }
}

/// The policies a worker judges by, one per direction.
struct Policies {
    outbound: Arc<PolicyHandle>,
    inbound: Arc<PolicyHandle>,
    /// Where the worker records the blocks it looks up while a reload builds the next
    /// policies (outbound, inbound; see `op25b_dataplane::hot`).
    hot: [Arc<HotBlocks>; 2],
}

struct WorkerCtx {
    index: usize,
    port: LivePort,
    policies: Policies,
    stop: Arc<AtomicBool>,
    burst: usize,
    core: Option<usize>,
    report: Sender<Snapshot>,
    /// Sampling for the drop log, and where the records go.
    log: Option<(SampleConfig, Sender<crate::droplog::Entry>)>,
}

fn worker_loop(mut w: WorkerCtx) {
    if let Some(c) = w.core {
        if let Err(e) = pin_current_thread(c) {
            eprintln!(
                "op25b: warning: cannot pin worker {} to core {c}: {e}",
                w.index
            );
        }
    }
    // DPDK: register as a (non-EAL) lcore so the mbuf pool's per-lcore cache serves this
    // thread; the guard unregisters when the loop ends.
    #[cfg(feature = "dpdk")]
    let _lcore = match &w.port {
        LivePort::Dpdk(_) => match op25b_dataplane::port::dpdk::LcoreGuard::register() {
            Ok(g) => Some(g),
            Err(e) => {
                eprintln!(
                    "op25b: warning: worker {} is not a DPDK lcore ({e}); mbufs bypass the pool cache",
                    w.index
                );
                None
            }
        },
        _ => None,
    };
    let [hot_out, hot_in] = w.policies.hot.clone();
    let mut out = Worker::new(w.burst).in_slot(w.index).record_hot(hot_out);
    let mut inb = Worker::new(w.burst).in_slot(w.index).record_hot(hot_in);
    if let Some((cfg, _)) = &w.log {
        out = out.with_sampler(*cfg);
        inb = inb.with_sampler(*cfg);
    }
    let mut log_queue_full = 0u64;
    // Read every poll: the burst clock (see op25b_dataplane::clock) does not wait for the
    // poll's loads as Instant's does.
    let clock = BurstClock::get();
    let snapshot_every = SNAPSHOT_EVERY.as_nanos() as u64;
    let mut last = clock.mark();
    let mut empty_polls = 0u32;
    // An interface gone under this worker: the reason op25b stops. The first look at the
    // links is at once, so a link down at start is told apart from one that goes down.
    let mut gone: Option<String> = w.port.check_links().and_then(|e| note_link(w.index, e));
    loop {
        let stopping = gone.is_some() || w.stop.load(Ordering::Relaxed);
        if stopping || clock.ns_since(last) >= snapshot_every {
            last = clock.mark();
            if !stopping {
                if let Some(e) = w.port.check_links() {
                    gone = note_link(w.index, e).or(gone);
                }
            }
            let snap = Snapshot {
                worker: w.index,
                outbound: out.counters().clone(),
                inbound: inb.counters().clone(),
                latency_out: out.take_latency(),
                latency_in: inb.take_latency(),
                tx_refused: w.port.tx_refused(),
                tx_refused_tagged: w.port.tx_refused_tagged(),
                resets_sent: w.port.resets_sent(),
                log_rate_limited: out.samples_rate_limited() + inb.samples_rate_limited(),
                log_queue_full,
                last: stopping,
                // Only a stopping snapshot carries it, and the worker returns after it.
                fatal: if stopping { gone.take() } else { None },
                links_up: w.port.links_up(),
            };
            if stopping {
                let _ = w.report.send(snap);
                return;
            }
            let _ = w.report.try_send(snap);
        }
        let (a, b) = w.port.poll_both(&mut out, &mut inb, &w.policies);
        if let Some((_, tx)) = &w.log {
            for (dir, worker) in [(0, &mut out), (1, &mut inb)] {
                for r in worker.drain_samples() {
                    if tx.try_send((dir, r)).is_err() {
                        log_queue_full += 1;
                    }
                }
            }
        }
        if a == 0 && b == 0 {
            empty_polls = empty_polls.saturating_add(1);
            if let Some(e) = w.port.idle(empty_polls) {
                gone = note_link(w.index, e).or(gone);
            }
        } else {
            empty_polls = 0;
        }
    }
}

/// Logs what a look at a worker's links found, as soon as it is found (a state change is
/// seen by every worker alike, so only worker 0 says so), and returns the reason to stop
/// for an interface that is gone (which the control thread logs).
fn note_link(worker: usize, event: LinkEvent) -> Option<String> {
    match event {
        // Logged once by the control thread, whichever worker reports it first.
        LinkEvent::Gone(why) => Some(why),
        change => {
            if worker == 0 {
                log_link_change(&format!("worker {worker}: "), &change);
            }
            None
        }
    }
}

/// Logs a link going down or coming back up; `from` names who saw it ("worker 0: ", or
/// "" for the control thread's look at DPDK NICs).
fn log_link_change(from: &str, event: &LinkEvent) {
    match event {
        LinkEvent::Down(why) => eprintln!("op25b: {from}link went down: {why}"),
        LinkEvent::Up(why) => eprintln!("op25b: {from}link is up again: {why}"),
        LinkEvent::Gone(_) => {}
    }
}

/// `config` with `tickets` added to its outbound exemptions (each named as a ticket in
/// any error).
fn with_tickets(mut config: Config, tickets: &[Ticket]) -> Config {
    for t in tickets {
        config.outbound.exempt.push(t.prefix);
        config.origins.exempt.push(Origin::ticket(&t.prefix));
    }
    config
}

/// Builds the first policies with the tickets kept from the last run. Saved tickets that
/// this config refuses (one now equal to a dynamic entry, say) must not keep the appliance
/// from starting: each ticket the build names is left out and the build tried again (at
/// most [`MAX_TICKET_RETRIES`] times; any other refusal leaves them all out), the ones left
/// out are named, and the file is replaced by what is in force after a copy of it is kept.
fn build_with_saved_tickets(
    config: &Config,
    mut start: StartTickets,
) -> Result<(crate::config::Built, StartTickets), RunError> {
    let mut left_out: Vec<(Ticket, String)> = Vec::new();
    let built = loop {
        match with_tickets(config.clone(), &start.live).build(1) {
            Ok(b) => break b,
            Err(e) if start.live.is_empty() => return Err(RunError::Config(e.to_string())),
            Err(crate::config::ConfigError::DynamicAndExempt {
                prefix, exempt_at, ..
            }) if exempt_at.is_ticket() && left_out.len() < MAX_TICKET_RETRIES => {
                let why = format!("{prefix} is now listed in dynamic");
                let (out, keep) = std::mem::take(&mut start.live)
                    .into_iter()
                    .partition(|t| t.prefix == prefix);
                start.live = keep;
                left_out.extend(out.into_iter().map(|t: Ticket| (t, why.clone())));
            }
            Err(e) => {
                let why = e.to_string();
                left_out.extend(start.live.drain(..).map(|t| (t, why.clone())));
            }
        }
    };
    if !left_out.is_empty() {
        for (t, why) in &left_out {
            eprintln!(
                "op25b: exemption ticket {} not applied: {why}",
                describe(&t.prefix)
            );
        }
        start.replace_file(&format!(
            "{} saved exemption ticket(s) do not fit this config and are not applied (add those still wanted again with `op25b ctl exempt add`)",
            left_out.len()
        ));
    }
    Ok((built, start))
}

/// The tickets a start puts in force, where they are kept, and what that file holds as
/// far as the control thread knows.
struct StartTickets {
    live: Vec<Ticket>,
    /// The file tickets are saved to this run (`None`: not configured, or not to be
    /// written because it could not be read and no copy of it could be kept).
    file: Option<PathBuf>,
    /// What the file holds (`None`: unknown, rewrite it at the first chance).
    saved: Option<Vec<Ticket>>,
    /// Why tickets are not kept this run, for `status`.
    problem: Option<String>,
    /// This process's hold on `file`, kept for the whole run.
    lock: Option<crate::tickets::Lock>,
}

impl StartTickets {
    /// Keeps a copy of the file as it is, then saves the tickets in force over it, so
    /// nothing it held is lost and what is on disk is what is in force, whatever happens
    /// later in the start. `what` (why) goes to the log. Without a copy the file is not
    /// written at all this run.
    fn replace_file(&mut self, what: &str) {
        let Some(path) = self.file.clone() else {
            return;
        };
        match crate::tickets::keep_copy(&path) {
            Ok(copy) => eprintln!(
                "op25b: warning: {what}; {} as it was is kept as {}",
                path.display(),
                copy.display()
            ),
            Err(e) => {
                let why = format!(
                    "{what}; no copy of {} could be kept ({e}), so it is not written this run and tickets added now will not survive a restart",
                    path.display()
                );
                eprintln!("op25b: warning: {why}");
                self.file = None;
                self.saved = None;
                self.problem = Some(why);
                return;
            }
        }
        // A failed save leaves `saved` unknown: the control thread tries again and reports.
        self.saved = crate::tickets::save(&path, &self.live)
            .ok()
            .map(|()| self.live.clone());
    }
}

/// Most saved tickets [`build_with_saved_tickets`] leaves out one by one, each costing a
/// build; past that all are left out.
const MAX_TICKET_RETRIES: usize = 16;

/// The tickets `[control] tickets` kept from the last run that are still in force, with
/// the file locked for this run. Anything wrong with the file is logged and none of it
/// stops the start: unreadable lines are named, and a copy of the file is kept before the
/// readable tickets are saved over it; a file that cannot be read (or locked) at all is
/// kept as it is and not written this run. The one error is a file another process holds
/// (a second appliance on the same file would overwrite the first one's tickets).
fn saved_tickets(config: &Config) -> Result<StartTickets, String> {
    let mut start = StartTickets {
        live: Vec::new(),
        file: config.control.tickets.clone(),
        saved: None,
        problem: None,
        lock: None,
    };
    let Some(path) = start.file.clone() else {
        return Ok(start);
    };
    match crate::tickets::lock(&path) {
        Ok(l) => start.lock = Some(l),
        Err(e @ crate::tickets::LockError::Held { .. }) => {
            return Err(format!(
                "[control] tickets {}: {e}: two appliances saving to one tickets file overwrite each other's tickets; give each appliance its own file, or stop that one first",
                path.display()
            ))
        }
        Err(e) => {
            let why = format!(
                "cannot use the exemption tickets in {}: {e}; starting without them, and the file is not written this run (tickets added now will not survive a restart)",
                path.display()
            );
            eprintln!("op25b: warning: {why}");
            start.file = None;
            start.problem = Some(why);
            return Ok(start);
        }
    }
    match crate::tickets::load(&path, SystemTime::now()) {
        Err(e) => {
            // Left as it is: not copied (a second read might not see what the first
            // missed) and not written this run.
            let why = format!(
                "cannot read the exemption tickets in {}: {e}; starting without them, and the file is not written this run (tickets added now will not survive a restart)",
                path.display()
            );
            eprintln!("op25b: warning: {why}");
            start.file = None;
            start.problem = Some(why);
        }
        Ok(loaded) => {
            // Prefixes an operator typed are root's business only: a file someone made
            // readable to others (a copy, a hand edit) is tightened, and that is said.
            match crate::tickets::tighten(&path) {
                Ok(Some(was)) => eprintln!(
                    "op25b: warning: exemption tickets: {} was mode {was:04o}; set to 0600 (root's business only)",
                    path.display()
                ),
                Ok(None) => {}
                Err(e) => eprintln!("op25b: warning: exemption tickets: {e}"),
            }
            for p in &loaded.problems {
                eprintln!("op25b: warning: exemption tickets: {p}");
            }
            for d in &loaded.duplicates {
                eprintln!("op25b: warning: exemption tickets: {d}");
            }
            if !loaded.expired.is_empty() {
                // Named, as an expiry while running is: the end of an unblock is part of
                // the audit trail.
                let named: Vec<String> = loaded
                    .expired
                    .iter()
                    .map(|t| format!("{} ({})", describe(&t.prefix), ended(t.expires)))
                    .collect();
                eprintln!(
                    "op25b: {} exemption ticket(s) in {} expired while op25b was stopped: {}",
                    loaded.expired.len(),
                    path.display(),
                    named.join(", ")
                );
            }
            start.live = loaded.tickets;
            // Rewritten at the first chance when some expired.
            start.saved = (loaded.expired.is_empty() && loaded.duplicates.is_empty())
                .then(|| start.live.clone());
            if !loaded.problems.is_empty() {
                start.replace_file(&format!(
                    "{} line(s) of {} cannot be read; its {} readable ticket(s) are kept",
                    loaded.problems.len(),
                    path.display(),
                    start.live.len()
                ));
            }
        }
    }
    Ok(start)
}

/// How often a watching appliance tries a refused config again.
const RETRY_REFUSED: Duration = Duration::from_secs(10);

/// Each watched file with its modification time and length (`None`: unreadable).
type Stamp = Vec<(PathBuf, Option<(SystemTime, u64)>)>;

/// The stamp of the config file and of every prefix file it read.
fn files_stamp(config: &Config) -> Stamp {
    std::iter::once(&config.path)
        .chain(&config.files)
        .map(|f| {
            let m = std::fs::metadata(f)
                .and_then(|m| Ok((m.modified()?, m.len())))
                .ok();
            (f.clone(), m)
        })
        .collect()
}

/// The control thread's state.
struct Control {
    path: PathBuf,
    config: Config,
    /// The last reload's refusal (when it was last tried, since when that reason has stood,
    /// and why), until a reload succeeds; with `watch`, retried every [`RETRY_REFUSED`].
    refused: Option<(Instant, SystemTime, String)>,
    /// Why a worker stopped on its own (the appliance then stops, exit 1).
    fatal: Option<String>,
    /// Workers whose last snapshot has arrived.
    stopped_workers: usize,
    /// The `[dataplane]` section in force (set at start; a reload cannot change it).
    dataplane: DataplaneConfig,
    /// The control socket and metrics address in force (bound at start).
    listening: (PathBuf, Option<String>),
    tickets: Vec<Ticket>,
    /// Where tickets are kept across restarts (`[control] tickets`, fixed at start; `None`
    /// also when that file could not be used this run).
    tickets_file: Option<PathBuf>,
    /// `[control] tickets` as configured at start, to tell a reload whether it changed
    /// (whether or not the file could be used).
    tickets_configured: Option<PathBuf>,
    /// The tickets that file holds as far as this process knows (`None`: unknown, so
    /// the next [`Control::persist`] writes it).
    saved: Option<Vec<Ticket>>,
    /// Why the last save of the tickets failed, until one succeeds (or why they are not
    /// saved this run).
    save_error: Option<String>,
    /// The lock on `tickets_file`, held until op25b stops (`crate::tickets::lock`).
    _tickets_lock: Option<crate::tickets::Lock>,
    /// When a failed save was last tried again (every [`RETRY_REFUSED`]).
    save_retry: Instant,
    generation: u64,
    loaded_at: SystemTime,
    reload_ms: f64,
    handle: Arc<PolicyHandle>,
    inbound: Arc<PolicyHandle>,
    /// The workers' hot blocks (outbound, inbound), recorded while a policy is built.
    hot: [Arc<HotBlocks>; 2],
    workers: Vec<Option<Snapshot>>,
    latency: [Histogram<u64>; 2],
    reloads: [u64; 2],
    /// Reload when the config or a prefix file changes (`[control] watch = true`).
    watch: bool,
    watched: Stamp,
    /// A changed stamp seen at the last poll: reload once it holds for a whole poll, so a
    /// file caught while being written is not loaded half-written.
    settling: Option<Stamp>,
    last_watch: Instant,
    /// Blocked segments per dynamic prefix (outbound, inbound) of every policy that is
    /// gone; the policies in force and those draining hold the rest.
    retired_hits: [HashMap<AnyPrefix, u64>; 2],
    /// Replaced policies (0 outbound, 1 inbound) that a worker may still be counting in;
    /// folded into `retired_hits` once no worker holds them.
    draining: Vec<(usize, Arc<Policy>)>,
    /// The warnings of the config in force (shown by `status` and counted in metrics, so
    /// a pool file that became empty does not look healthy).
    warnings: Vec<String>,
    /// The DPDK NIC links the control thread watches (access, core; true otherwise).
    device_links: [bool; 2],
    /// Where the metrics are served (the address bound), if anywhere.
    metrics_at: Option<String>,
    /// When a rebuild for expired tickets last failed (retried every [`RETRY_REFUSED`]).
    expiry_failed: Option<Instant>,
    /// The configured drop log that could not be opened at start, and why (it is off
    /// this run).
    drop_log_failed: Option<(crate::config::DropLogConfig, String)>,
    /// Whether the refusal of tagged frames as too long was told, per interface (access,
    /// core): once each, at the first.
    tagged_told: [bool; 2],
    /// The drop log in force (set at start) and its writer's counts.
    drop_log: Option<(crate::config::DropLogConfig, Arc<crate::droplog::LogStats>)>,
}

/// Upper bounds (ns) of the per-frame processing time histogram's buckets on the metrics
/// page: a plain IPv4 frame takes 10–40 ns, a burst with cache misses hundreds.
const LATENCY_BUCKETS_NS: [u64; 12] = [
    10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 50_000, 100_000,
];

/// The sum of a histogram's samples in ns, each at its bin's middle value, in integers:
/// as the histogram only grows (workers' samples are added, never removed), so does this,
/// which `_sum` must (a float sum from the mean could dip and read as a counter reset).
fn histogram_sum_ns(h: &Histogram<u64>) -> u128 {
    h.iter_recorded()
        .map(|v| {
            u128::from(h.median_equivalent(v.value_iterated_to())) * u128::from(v.count_at_value())
        })
        .sum()
}

/// Directions as the per-prefix counters name them.
const DIRECTIONS: [&str; 2] = ["outbound", "inbound"];

fn describe(p: &AnyPrefix) -> String {
    p.to_string()
}

impl Control {
    /// The control thread's state at start: `config` (from `path`, with `[dataplane]`)
    /// built into the policies in `handles` (outbound, inbound) with the `warnings` found,
    /// in `build_ms`, and the tickets of `start` in force. Nothing is listening or running
    /// yet: the metrics address and the drop log are the caller's to fill in.
    fn new(
        path: &Path,
        config: Config,
        warnings: Vec<String>,
        start: StartTickets,
        [handle, inbound]: [Arc<PolicyHandle>; 2],
        hot: [Arc<HotBlocks>; 2],
        build_ms: f64,
    ) -> Control {
        let dataplane = config
            .dataplane
            .clone()
            .expect("`run` refuses a config without [dataplane] before this");
        let cc = config.control.clone();
        Control {
            path: path.to_path_buf(),
            refused: None,
            fatal: None,
            stopped_workers: 0,
            listening: (cc.socket.clone(), cc.metrics.clone()),
            tickets: start.live,
            tickets_file: start.file,
            tickets_configured: cc.tickets.clone(),
            saved: start.saved,
            save_error: start.problem,
            _tickets_lock: start.lock,
            save_retry: Instant::now(),
            generation: 1,
            loaded_at: SystemTime::now(),
            reload_ms: build_ms,
            handle,
            inbound,
            hot,
            workers: (0..dataplane.workers).map(|_| None).collect(),
            latency: [latency_histogram(), latency_histogram()],
            reloads: [0, 0],
            watch: cc.watch,
            watched: files_stamp(&config),
            settling: None,
            last_watch: Instant::now(),
            retired_hits: [HashMap::new(), HashMap::new()],
            draining: Vec::new(),
            drop_log: None,
            warnings,
            device_links: [true, true],
            metrics_at: None,
            expiry_failed: None,
            drop_log_failed: None,
            tagged_told: [false, false],
            dataplane,
            config,
        }
    }

    /// Builds a policy from `config` plus the live tickets and publishes it; returns the
    /// build's warnings (logged by [`Self::reload`], not again when only a ticket changed).
    fn publish(&mut self, mut config: Config) -> Result<Vec<String>, String> {
        let t = Instant::now();
        let plain = config.clone();
        let now = SystemTime::now();
        // The list always matches the policy in force: restored if the build fails (an
        // expired ticket left out of a policy never published would otherwise stay in
        // force with nothing left to expire it).
        let before = self.tickets.clone();
        self.tickets.retain(|t| t.live_at(now));
        config = with_tickets(config, &self.tickets);
        // While the new policies are built, the workers note which blocks of the current
        // ones they look up, so exactly those are warmed in the new ones last of all.
        self.hot.iter().for_each(|h| h.start());
        // For the backend in force, not the file's: `[dataplane]` changes wait for the
        // next start.
        let built = config.build_for(self.generation + 1, Some(self.dataplane.backend));
        self.hot.iter().for_each(|h| h.stop());
        let built = built.map_err(|e| {
            self.tickets = before;
            e.to_string()
        })?;
        let slots = self.workers.len();
        // Warmed where they will be read from: inside their Arcs.
        let (policy, inbound) = (
            Arc::new(built.policy.with_hit_counters(slots)),
            Arc::new(built.inbound.with_hit_counters(slots)),
        );
        policy.warm();
        inbound.warm();
        policy.warm_hot(&self.handle.load(), &self.hot[0]);
        inbound.warm_hot(&self.inbound.load(), &self.hot[1]);
        self.draining.push((0, self.handle.swap(policy)));
        self.draining.push((1, self.inbound.swap(inbound)));
        self.generation += 1;
        self.config = plain;
        self.loaded_at = SystemTime::now();
        self.reload_ms = t.elapsed().as_secs_f64() * 1e3;
        self.persist();
        self.warnings = built.warnings.clone();
        // Expired tickets were left out just now, whatever led to this rebuild.
        self.expiry_failed = None;
        Ok(built.warnings)
    }

    /// Writes the tickets to `[control] tickets` when they differ from what it holds (a
    /// ticket added, deleted or expired); a failure is logged and kept for `status` and
    /// the `exempt` answers until a save succeeds (or until what is in force is what the
    /// file holds again).
    ///
    /// A failed save leaves the file as it was. That older list is kept when a start from
    /// it would grant nothing beyond what is in force (after an add, an expiry, an expiry
    /// made longer: at worst those are lost); it is removed when it would (a ticket deleted
    /// since, or its expiry shortened, would be in force again after a restart).
    fn persist(&mut self) {
        let Some(path) = self.tickets_file.clone() else {
            return;
        };
        if self.saved.as_ref() == Some(&self.tickets) {
            if self.save_error.take().is_some() {
                eprintln!(
                    "op25b: exemption tickets: {} holds those in force again",
                    path.display()
                );
            }
            return;
        }
        let e = match crate::tickets::save(&path, &self.tickets) {
            Ok(()) => {
                if self.save_error.take().is_some() {
                    eprintln!("op25b: exemption tickets saved to {} again", path.display());
                }
                self.saved = Some(self.tickets.clone());
                return;
            }
            Err(e) => e,
        };
        let now = SystemTime::now();
        // What the file holds: known from the last save or load, else read now (this
        // process holds the file; nobody else writes it).
        let old = self
            .saved
            .clone()
            .or_else(|| match crate::tickets::load(&path, now) {
                Ok(l) => Some(l.tickets),
                Err(r) if r.kind() == std::io::ErrorKind::NotFound => Some(Vec::new()),
                Err(_) => None,
            });
        let beyond: Option<Vec<String>> = old.as_ref().map(|o| {
            crate::tickets::beyond(o, &self.tickets, now)
                .into_iter()
                .map(|t| format!("{} {}", describe(&t.prefix), until(t.expires)))
                .collect()
        });
        let kept = match beyond {
            Some(b) if b.is_empty() => {
                // Nothing in it is beyond what is in force: at worst what changed since
                // is lost at a restart, never a deleted ticket brought back.
                self.saved = old;
                format!(
                    "{} keeps the list saved before, which grants nothing beyond what is in force",
                    path.display()
                )
            }
            beyond => {
                let why = beyond.map_or("what it holds cannot be read".to_string(), |b| {
                    format!("it would grant {} again", b.join(", "))
                });
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        self.saved = Some(Vec::new());
                        format!(
                            "{} was removed so no older list comes back ({why})",
                            path.display()
                        )
                    }
                    Err(r) if r.kind() == std::io::ErrorKind::NotFound => {
                        self.saved = Some(Vec::new());
                        format!("{} does not exist", path.display())
                    }
                    Err(r) => {
                        self.saved = old;
                        format!(
                            "{} still holds an older list ({r} removing it), which the next start would apply ({why})",
                            path.display()
                        )
                    }
                }
            }
        };
        let file = self.saved.as_deref().unwrap_or(&[]);
        let lost: Vec<String> = crate::tickets::beyond(&self.tickets, file, now)
            .into_iter()
            .map(|t| {
                let had = file
                    .iter()
                    .find(|f| f.prefix == t.prefix)
                    .map_or(String::new(), |f| {
                        format!(" (the file has it {})", until(f.expires))
                    });
                format!("{} {}{had}", describe(&t.prefix), until(t.expires))
            })
            .collect();
        let lost = if lost.is_empty() {
            "it differs from what is in force only by expired tickets".to_string()
        } else {
            format!(
                "not saved, so a restart now would start without: {}",
                lost.join(", ")
            )
        };
        let why = format!(
            "exemption tickets not saved to {}: {e}; {kept}; {lost}; retried every {} s",
            path.display(),
            RETRY_REFUSED.as_secs()
        );
        // Said when it changes (what is lost, what happened to the file); a retry that
        // fails the same way stays quiet.
        if self.save_error.as_ref() != Some(&why) {
            eprintln!("op25b: warning: {why}");
            self.save_error = Some(why);
        }
        self.save_retry = Instant::now();
    }

    /// What the stopping appliance says of the tickets in force (those expired dropped
    /// first, and a last save tried): how many the file keeps for the next start, and
    /// each one it does not, so it can be added again after the restart.
    fn tickets_at_stop(&mut self) -> Vec<String> {
        let now = SystemTime::now();
        self.tickets.retain(|t| t.live_at(now));
        self.persist();
        let file = match &self.tickets_file {
            Some(_) => self.saved.as_deref().unwrap_or(&[]),
            None => &[],
        };
        let missing = crate::tickets::beyond(&self.tickets, file, now);
        let mut out = Vec::new();
        let kept = self.tickets.len() - missing.len();
        if let (Some(f), true) = (&self.tickets_file, kept > 0) {
            out.push(format!(
                "{kept} exemption ticket(s) kept in {} for the next start",
                f.display()
            ));
        }
        for t in missing {
            let left = t.expires.map_or("no expiry".to_string(), |e| {
                format!(
                    "had {} s left",
                    e.duration_since(now).unwrap_or_default().as_secs()
                )
            });
            out.push(match file.iter().find(|f| f.prefix == t.prefix) {
                Some(f) => format!(
                    "exemption ticket {} comes back at the next start only {} ({left}; its later end could not be saved); `op25b ctl exempt add` it again after the restart if it is still wanted",
                    describe(&t.prefix),
                    until(f.expires)
                ),
                None => format!(
                    "exemption ticket {} dropped at shutdown ({left}); `op25b ctl exempt add` it again after the restart if it is still wanted",
                    describe(&t.prefix)
                ),
            });
        }
        out
    }

    /// What `exempt add`/`del` answers end with when the tickets could not be saved.
    fn save_warning(&self) -> String {
        self.save_error
            .as_ref()
            .map_or(String::new(), |w| format!("\nwarning: {w}"))
    }

    fn reload(&mut self, trigger: &str) -> (bool, String) {
        self.reload_unless_refused_as(None, trigger)
    }

    /// [`Control::reload`]; but when `known` is the reason the last reload was refused
    /// and this one is refused for the same reason, it is neither logged nor counted again
    /// (the watch loop retries a refused config without repeating itself).
    fn reload_unless_refused_as(&mut self, known: Option<&str>, trigger: &str) -> (bool, String) {
        let t = Instant::now();
        let result = Config::load(&self.path)
            .map_err(|e| e.to_string())
            .and_then(|c| self.publish(c));
        match result {
            Ok(warnings) => {
                self.refused = None;
                self.reloads[0] += 1;
                self.watched = files_stamp(&self.config);
                // The section in force at start, whether the log opened or not.
                let running = (self.drop_log.as_ref().map(|d| &d.0))
                    .or(self.drop_log_failed.as_ref().map(|d| &d.0));
                let mut msg = format!(
                    "reloaded {} ({trigger}): generation {} in {:.1} ms",
                    self.path.display(),
                    self.generation,
                    t.elapsed().as_secs_f64() * 1e3,
                );
                if self.config.drop_log.as_ref() != running {
                    msg += "; [drop_log] changed: that takes effect at the next start";
                }
                if self.config.dataplane.as_ref() != Some(&self.dataplane) {
                    msg += "; [dataplane] changed: that takes effect at the next start";
                }
                let c = &self.config.control;
                for (key, changed) in [
                    ("socket", c.socket != self.listening.0),
                    ("metrics", c.metrics != self.listening.1),
                    ("tickets", c.tickets != self.tickets_configured),
                ] {
                    if changed {
                        msg += &format!(
                            "; [control] {key} changed: that takes effect at the next start"
                        );
                        if key == "tickets" {
                            if let Some(f) = &self.tickets_file {
                                msg += &format!(
                                    " (the tickets in force stay in {} until op25b stops: stop it, copy that file to the new path, then start it)",
                                    f.display()
                                );
                            }
                        }
                    }
                }
                // Watching is the control thread's own loop: it follows the file at once.
                self.watch = c.watch;
                eprintln!("op25b: {msg}");
                let warnings = crate::config::shown_warnings(&warnings);
                for w in &warnings {
                    eprintln!("op25b: warning: {w}");
                }
                let warned: String = warnings.iter().map(|w| format!("\nwarning: {w}")).collect();
                (true, msg + &warned)
            }
            Err(e) => {
                let again = known == Some(e.as_str());
                // Status tells since when this reason has stood; the retry clock restarts.
                let since = match &self.refused {
                    Some((_, since, _)) if again => *since,
                    _ => SystemTime::now(),
                };
                self.refused = Some((Instant::now(), since, e.clone()));
                if again {
                    return (false, e);
                }
                self.reloads[1] += 1;
                let msg = format!(
                    "reload refused ({trigger}), still serving generation {}: {e}",
                    self.generation
                );
                eprintln!("op25b: {msg}");
                (false, msg)
            }
        }
    }

    /// Per worker, when there is more than one: (index, outbound rx/tx/dropped, inbound
    /// rx/tx/dropped), from each worker's last report.
    fn per_worker(&self) -> Vec<(usize, [u64; 3], [u64; 3])> {
        if self.workers.len() < 2 {
            return Vec::new();
        }
        let c = |c: &Counters| [c.rx, c.tx, c.dropped];
        self.workers
            .iter()
            .enumerate()
            .map(|(i, s)| match s {
                Some(s) => (i, c(&s.outbound), c(&s.inbound)),
                None => (i, [0; 3], [0; 3]),
            })
            .collect()
    }

    /// Who refuses frames on this backend ("the kernel", "the device").
    fn tx_refuser(&self) -> &'static str {
        self.dataplane.backend.tx_refuser()
    }

    fn totals(&self) -> (Counters, Counters, u64) {
        let (mut o, mut i, mut r) = (Counters::default(), Counters::default(), 0);
        for s in self.workers.iter().flatten() {
            o.merge(&s.outbound);
            i.merge(&s.inbound);
            r += s.tx_refused;
        }
        (o, i, r)
    }

    /// Folds replaced policies that no worker holds any more into the per-prefix totals and
    /// hands them to the reaper (freeing a large table takes milliseconds).
    fn drain_retired(&mut self) {
        let (done, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.draining)
            .into_iter()
            .partition(|(_, p)| Arc::strong_count(p) == 1);
        self.draining = keep;
        for (dir, p) in done {
            for (prefix, n) in p.dynamic_hits() {
                *self.retired_hits[dir].entry(prefix).or_default() += n;
            }
            op25b_dataplane::worker::retire(p);
        }
    }

    /// Blocked segments per dynamic prefix since start, over every policy generation, for
    /// direction `dir`: the `n` largest, most first.
    fn top_prefixes(&self, dir: usize, n: usize) -> Vec<(AnyPrefix, u64)> {
        let mut all = self.retired_hits[dir].clone();
        let current = if dir == 0 {
            self.handle.load_full()
        } else {
            self.inbound.load_full()
        };
        let live = self
            .draining
            .iter()
            .filter(|(d, _)| *d == dir)
            .map(|(_, p)| p)
            .chain(std::iter::once(&current));
        for p in live {
            for (prefix, c) in p.dynamic_hits() {
                *all.entry(prefix).or_default() += c;
            }
        }
        crate::replay::top_prefixes(all.into_iter().collect(), n)
    }

    /// Where each of `prefixes` is listed in the configuration in force (file:line).
    fn prefix_origins(&self, dir: usize, prefixes: &[(AnyPrefix, u64)]) -> Vec<String> {
        let (spec_dynamic, origins) = if dir == 0 {
            (&self.config.outbound.dynamic, Some(&self.config.origins))
        } else {
            match &self.config.inbound {
                Some(i) => (&i.spec.dynamic, Some(&i.origins)),
                None => (&self.config.outbound.dynamic, None),
            }
        };
        let wanted: HashMap<AnyPrefix, usize> = prefixes
            .iter()
            .enumerate()
            .map(|(i, (p, _))| (*p, i))
            .collect();
        let mut out = vec![String::from("no longer listed"); prefixes.len()];
        if let Some(origins) = origins {
            for (pos, p) in spec_dynamic.iter().enumerate().rev() {
                if let Some(&i) = wanted.get(p) {
                    if let Some(o) = origins.of(ListName::Dynamic).get(pos) {
                        out[i] = o.to_string();
                    }
                }
            }
        }
        out
    }

    fn resets_sent(&self) -> u64 {
        self.workers.iter().flatten().map(|s| s.resets_sent).sum()
    }

    /// Frames with more VLAN tag than one 802.1Q tag refused as too long, over every
    /// worker, by the interface they were to leave (access, core).
    fn tx_refused_tagged(&self) -> [u64; 2] {
        self.workers.iter().flatten().fold([0, 0], |[a, c], s| {
            [a + s.tx_refused_tagged[0], c + s.tx_refused_tagged[1]]
        })
    }

    /// Tells, once per interface, that it refused full-size frames for their VLAN tags,
    /// and what to do: a loss that is otherwise only a count.
    fn tell_tagged_refusals(&mut self) {
        let counts = self.tx_refused_tagged();
        let names = [self.dataplane.access.clone(), self.dataplane.core.clone()];
        for (side, (&count, told)) in counts.iter().zip(&mut self.tagged_told).enumerate() {
            if count == 0 || *told {
                continue;
            }
            *told = true;
            eprintln!("op25b: warning: {}", tagged_refusal_advice(&names, side));
        }
    }

    fn absorb(&mut self, mut s: Snapshot) {
        if let Some(f) = s.fatal.take() {
            // Every worker on a gone interface reports it; the first report is logged.
            if self.fatal.is_none() {
                eprintln!(
                    "op25b: worker {}: {f}; what was bound to it can never carry frames again, so op25b stops (the service manager restarts it on the new interface)",
                    s.worker
                );
            }
            self.fatal.get_or_insert(f);
        }
        self.stopped_workers += usize::from(s.last);
        let _ = self.latency[0].add(&s.latency_out);
        let _ = self.latency[1].add(&s.latency_in);
        let w = s.worker;
        self.workers[w] = Some(s);
        self.tell_tagged_refusals();
    }

    /// Expires tickets and, when watching, reloads after a config or prefix file changed.
    /// Runs after every control event, so neither waits behind a stream of snapshots.
    fn housekeeping(&mut self) {
        self.drain_retired();
        let now = SystemTime::now();
        let expired: Vec<String> = self
            .tickets
            .iter()
            .filter(|t| t.expires.is_some_and(|e| e <= now))
            .map(|t| t.prefix.to_string())
            .collect();
        let retry_due = self
            .expiry_failed
            .is_none_or(|at| at.elapsed() >= RETRY_REFUSED);
        if !expired.is_empty() && retry_due {
            let cfg = self.config.clone();
            match self.publish(cfg) {
                Ok(_) => {
                    self.expiry_failed = None;
                    eprintln!(
                        "op25b: exemption ticket(s) expired: {}; policy generation {}",
                        expired.join(", "),
                        self.generation
                    )
                }
                Err(e) => {
                    // The expired tickets stay listed (and in force): tried again later.
                    self.expiry_failed = Some(Instant::now());
                    eprintln!(
                        "op25b: rebuilding after ticket(s) expired ({}) failed, old policy kept, tried again in {} s: {e}",
                        expired.join(", "),
                        RETRY_REFUSED.as_secs()
                    )
                }
            }
        }
        if self.save_error.is_some() && self.save_retry.elapsed() >= RETRY_REFUSED {
            self.save_retry = Instant::now();
            self.persist();
        }
        if self.watch && self.last_watch.elapsed() >= Duration::from_secs(1) {
            self.last_watch = Instant::now();
            let stamp = files_stamp(&self.config);
            if stamp == self.watched {
                self.settling = None;
            } else if self.settling.as_ref() == Some(&stamp) {
                self.settling = None;
                let changed: Vec<String> = stamp
                    .iter()
                    .filter(|f| !self.watched.contains(f))
                    .map(|(f, m)| {
                        format!(
                            "{}{}",
                            f.display(),
                            if m.is_none() { " (gone)" } else { "" }
                        )
                    })
                    .collect();
                self.watched = stamp;
                eprintln!(
                    "op25b: changed: {}; reloading (watch)",
                    if changed.is_empty() {
                        self.path.display().to_string()
                    } else {
                        changed.join(", ")
                    }
                );
                self.reload("watch");
            } else {
                self.settling = Some(stamp);
            }
            // A refused config may come right without a change the stamp can see (a
            // prefix file it names that did not exist yet, a ticket in its way that
            // expired): try it again now and then, quietly while the reason stays.
            if let Some((at, _, why)) = &self.refused {
                if at.elapsed() >= RETRY_REFUSED {
                    let why = why.clone();
                    self.reload_unless_refused_as(Some(&why), "watch, retrying a refused config");
                }
            }
        }
    }

    fn next_expiry(&self) -> Option<Duration> {
        let now = SystemTime::now();
        // While a failed rebuild for expired tickets waits for its retry, those tickets
        // are not due again until then (the loop must not wake at once, again and again).
        let retry = self
            .expiry_failed
            .map(|at| RETRY_REFUSED.saturating_sub(at.elapsed()));
        self.tickets
            .iter()
            .filter_map(|t| t.expires)
            .map(|e| e.duration_since(now).unwrap_or_default())
            .map(|d| match retry {
                Some(r) if d.is_zero() => r,
                _ => d,
            })
            .min()
    }

    fn command(&mut self, words: &[String]) -> (bool, String) {
        let cmd = match ctl::Command::parse(words) {
            Ok(c) => c,
            Err(e) => return (false, e),
        };
        match cmd {
            ctl::Command::Status => {
                let age = self.loaded_at.elapsed().unwrap_or_default().as_secs();
                let s = self.handle.load().sizes();
                let inbound = if self.config.inbound.is_some() {
                    let i = self.inbound.load().sizes();
                    format!(
                        "\ninbound prefixes ipv4 dynamic/exempt/protected: {:?}\ninbound prefixes ipv6 dynamic/exempt/protected: {:?}",
                        [i.v4[0], i.v4[1], i.v4[3]],
                        [i.v6[0], i.v6[1], i.v6[3]]
                    )
                } else {
                    "\ninbound: not configured".to_string()
                };
                let refused = self.refused.as_ref().map_or(String::new(), |(_, at, why)| {
                    format!(
                        "\nlast reload refused {} s ago{}: {why}",
                        at.elapsed().unwrap_or_default().as_secs(),
                        if self.watch {
                            "; retried every 10 s while watching"
                        } else {
                            ""
                        }
                    )
                });
                let kept = match (&self.tickets_file, &self.save_error) {
                    (_, Some(e)) => format!(" (NOT kept: {e})"),
                    (Some(f), None) => format!(" (kept in {} across restarts)", f.display()),
                    (None, None) => {
                        " (in memory only: set [control] tickets to keep them across restarts)"
                            .into()
                    }
                };
                let up = self.links_up();
                let state = |u: bool| if u { "up" } else { "DOWN" };
                let links = format!(
                    "\nlinks: access {} {}, core {} {}\nmetrics: {}",
                    self.dataplane.access,
                    state(up[0]),
                    self.dataplane.core,
                    state(up[1]),
                    self.metrics_at
                        .as_ref()
                        .map_or("not served".into(), |m| format!("http://{m}/metrics"))
                );
                let drop_log = format!("\ndrop log: {}", self.drop_log_state());
                let warnings = if self.warnings.is_empty() {
                    String::new()
                } else {
                    format!(
                        "\nconfig warnings ({}):\n  {}",
                        self.warnings.len(),
                        crate::config::shown_warnings(&self.warnings).join("\n  ")
                    )
                };
                (
                    true,
                    format!(
                        "running: policy generation {} from {}, loaded {age} s ago in {:.1} ms{links}{drop_log}{warnings}\nprefixes ipv4 dynamic/exempt/relays/scope: {:?}\nprefixes ipv6 dynamic/exempt/relays/scope: {:?}{inbound}\nexemption tickets: {}{kept}\nworkers: {} ({} backend)\nreloads: {} ok, {} refused{refused}",
                        self.generation,
                        self.path.display(),
                        self.reload_ms,
                        s.v4,
                        s.v6,
                        self.tickets.len(),
                        self.workers.len(),
                        self.dataplane.backend.name(),
                        self.reloads[0],
                        self.reloads[1]
                    ),
                )
            }
            ctl::Command::Stats { json, top } => self.stats(json, top),
            ctl::Command::Reload => self.reload("ctl reload"),
            ctl::Command::Explain { src, dst, port } => self.explain(src, dst, port),
            ctl::Command::ExemptList => {
                let now = SystemTime::now();
                let lines: Vec<String> = self
                    .tickets
                    .iter()
                    .map(|t| match t.expires {
                        Some(e) => format!(
                            "{} expires in {} s",
                            describe(&t.prefix),
                            e.duration_since(now).unwrap_or_default().as_secs()
                        ),
                        None => format!("{} until removed", describe(&t.prefix)),
                    })
                    .collect();
                (
                    true,
                    if lines.is_empty() {
                        "no exemption tickets".into()
                    } else {
                        lines.join("\n")
                    },
                )
            }
            ctl::Command::ExemptAdd { prefix: p, ttl } => {
                let expires = match ttl.map(|d| SystemTime::now().checked_add(d)) {
                    Some(None) => return (false, "refused: --ttl is beyond the clock".into()),
                    Some(at) => at,
                    None => None,
                };
                let before = self.tickets.clone();
                let replaced = self.tickets.iter().find(|t| t.prefix == p).map(|t| {
                    t.expires
                        .map_or(" (replacing its ticket without expiry)".into(), |e| {
                            format!(
                                " (replacing its ticket that ran until {})",
                                crate::droplog::rfc3339_seconds(e)
                            )
                        })
                });
                self.tickets.retain(|t| t.prefix != p);
                self.tickets.push(Ticket { prefix: p, expires });
                match self.publish(self.config.clone()) {
                    Ok(_) => {
                        let replaced = replaced.unwrap_or_default();
                        // The audit trail: who was unblocked, until when, in the log.
                        eprintln!(
                            "op25b: exemption ticket added: {p} {}{replaced}; policy generation {}",
                            until(expires),
                            self.generation
                        );
                        (
                            true,
                            format!(
                                "{p} exempted from outbound blocking{} ({}){replaced}; policy generation {}{}{}",
                                ttl.map_or(String::new(), |d| format!(" for {} s", d.as_secs())),
                                until(expires),
                                self.generation,
                                self.ticket_caveats(&p),
                                self.save_warning()
                            ),
                        )
                    }
                    Err(e) => {
                        self.tickets = before;
                        (false, format!("refused: {e}"))
                    }
                }
            }
            ctl::Command::ExemptDel(p) => {
                let (n, before) = (self.tickets.len(), self.tickets.clone());
                self.tickets.retain(|t| t.prefix != p);
                if self.tickets.len() == n {
                    return (false, format!("{p} has no exemption ticket"));
                }
                match self.publish(self.config.clone()) {
                    Ok(_) => {
                        eprintln!(
                            "op25b: exemption ticket removed: {p}; policy generation {}",
                            self.generation
                        );
                        (
                            true,
                            format!(
                                "{p} ticket removed; policy generation {}{}",
                                self.generation,
                                self.save_warning()
                            ),
                        )
                    }
                    Err(e) => {
                        // Still in force, so still listed.
                        self.tickets = before;
                        (false, format!("refused: {e}"))
                    }
                }
            }
        }
    }

    /// Drop-log records the workers did not hand to the writer: (over the rate limit, lost
    /// to a full queue), from each worker's last report.
    fn drop_log_refused(&self) -> (u64, u64) {
        self.workers.iter().flatten().fold((0, 0), |(l, f), s| {
            (l + s.log_rate_limited, f + s.log_queue_full)
        })
    }

    /// The drop log's line of `status`: where it is and what became of its lines, why it
    /// is off, or that it is not configured.
    fn drop_log_state(&self) -> String {
        match (&self.drop_log, &self.drop_log_failed) {
            (Some((cfg, st)), _) => {
                let (limited, full) = self.drop_log_refused();
                let errors = st.write_errors.load(Ordering::Relaxed);
                let failing = st.failing().map_or(String::new(), |(since, e)| {
                    format!(
                        "; writing FAILS since {}: {e}",
                        crate::droplog::rfc3339_seconds(since)
                    )
                });
                format!(
                    "{}: {} line(s) written, {} lost ({full} to a full queue, {errors} to write errors), {limited} over the rate limit{failing}",
                    cfg.path.display(),
                    st.written.load(Ordering::Relaxed),
                    full + errors
                )
            }
            (None, Some((cfg, e))) => format!("{}: OFF this run: {e}", cfg.path.display()),
            (None, None) => "not configured".into(),
        }
    }

    /// Whether each link (access, core) is up: down if any worker's last look, or the
    /// control thread's look at a DPDK NIC, found it down.
    fn links_up(&self) -> [bool; 2] {
        let mut up = self.device_links;
        for s in self.workers.iter().flatten() {
            up[0] &= s.links_up[0];
            up[1] &= s.links_up[1];
        }
        up
    }

    /// `stats [--json] [--top N]`: counters per direction, resets, and with `--top` the
    /// dynamic prefixes with the most blocked segments.
    fn stats(&self, as_json: bool, top: usize) -> (bool, String) {
        let (o, i, refused) = self.totals();
        let dirs = [
            ("access→core", &o, &self.latency[0]),
            ("core→access", &i, &self.latency[1]),
        ];
        // (prefix, blocked segments, where it is listed) per direction.
        let tops: Vec<Vec<(AnyPrefix, u64, String)>> = (0..2)
            .map(|d| {
                let t = if top > 0 {
                    self.top_prefixes(d, top)
                } else {
                    Vec::new()
                };
                let listed = self.prefix_origins(d, &t);
                t.into_iter()
                    .zip(listed)
                    .map(|((p, n), l)| (p, n, l))
                    .collect()
            })
            .collect();
        if as_json {
            let dir = |(_, c, h): (&str, &Counters, &Histogram<u64>),
                       t: &[(AnyPrefix, u64, String)]| {
                let mut v = json!({"rx": c.rx, "tx": c.tx, "dropped": c.dropped, "monitored": c.monitored,
                       "rejected": c.rejected, "reset_rate_limited": c.reset_limited, "reset_unanswerable": c.reset_unanswerable,
                       "reasons": crate::replay::reasons_json(c), "latency_ns_per_frame": crate::replay::latency_json(h)});
                if top > 0 {
                    v["top_dynamic_prefixes"] = t
                        .iter()
                        .map(
                            |(p, n, l)| json!({"prefix": p.to_string(), "blocked": n, "listed": l}),
                        )
                        .collect();
                }
                v
            };
            let mut v = json!({"generation": self.generation, "backend": self.dataplane.backend.name(),
                "outbound": dir(dirs[0], &tops[0]), "inbound": dir(dirs[1], &tops[1]),
                "resets_sent": self.resets_sent(), "tx_refused": refused});
            if self.dataplane.backend == Backend::AfPacket {
                let [a, c] = self.tx_refused_tagged();
                v["tx_refused_tagged"] = json!({"access": a, "core": c});
            }
            let workers = self.per_worker();
            if !workers.is_empty() {
                let rtd = |c: [u64; 3]| json!({"rx": c[0], "tx": c[1], "dropped": c[2]});
                v["workers"] = workers
                    .into_iter()
                    .map(|(i, o, n)| json!({"worker": i, "outbound": rtd(o), "inbound": rtd(n)}))
                    .collect();
            }
            return (true, v.to_string());
        }
        let mut t = String::new();
        for (name, c, h) in dirs {
            let _ = writeln!(
                t,
                "{name}: rx {} tx {} dropped {} monitored {} rejected {} reset_rate_limited {} reset_unanswerable {}",
                c.rx, c.tx, c.dropped, c.monitored, c.rejected, c.reset_limited, c.reset_unanswerable
            );
            for r in Reason::all().filter(|r| c.reason(*r) > 0) {
                let _ = writeln!(t, "  {:<28} {}", r.label(), c.reason(r));
            }
            if !h.is_empty() {
                let _ = writeln!(
                    t,
                    "  latency ns/frame p50 {} p99 {} max {}",
                    h.value_at_quantile(0.5),
                    h.value_at_quantile(0.99),
                    h.max()
                );
            }
        }
        let _ = write!(
            t,
            "resets sent: {}\ntx refused by {}: {refused}",
            self.resets_sent(),
            self.tx_refuser()
        );
        let tagged = self.tx_refused_tagged();
        if tagged != [0, 0] {
            let _ = write!(
                t,
                " ({} of them VLAN-tagged frames over the MTU: {} {}, {} {})",
                tagged[0] + tagged[1],
                self.dataplane.access,
                tagged[0],
                self.dataplane.core,
                tagged[1]
            );
        }
        if top > 0 {
            for (d, list) in tops.iter().enumerate() {
                let _ = write!(
                    t,
                    "\ntop {top} dynamic prefixes by blocked segments, {} (since start):",
                    DIRECTIONS[d]
                );
                if list.is_empty() {
                    t.push_str(" none blocked");
                }
                for (p, n, l) in list {
                    let _ = write!(t, "\n  {n:>12}  {:<43} {l}", p.to_string());
                }
            }
        }
        (true, t)
    }

    /// What a ticket for `p` does not do, for the answer to `exempt add`: see
    /// [`ticket_caveats`].
    fn ticket_caveats(&self, p: &AnyPrefix) -> String {
        ticket_caveats(&self.config, p)
    }

    fn explain(&self, src: IpAddr, dst: IpAddr, port: u16) -> (bool, String) {
        let addrs = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Addrs::V4 {
                src: u32::from(s),
                dst: u32::from(d),
            },
            (IpAddr::V6(s), IpAddr::V6(d)) => Addrs::V6 {
                src: u128::from(s),
                dst: u128::from(d),
            },
            // `ctl::Command::parse` refuses mixed families.
            _ => {
                return (
                    false,
                    "source and destination must be the same address family".into(),
                )
            }
        };
        let key = FlowKey {
            addrs,
            transport: Transport::Tcp { dport: port },
        };
        let outbound = self.handle.load();
        let inbound = self.inbound.load();
        let (o_text, o_reason) = explain_one(
            &outbound,
            &self.config.origins,
            &key,
            (src, dst, port),
            false,
        );
        let inbound_cfg = self.config.inbound.as_ref();
        let i =
            inbound_cfg.map(|c| explain_one(&inbound, &c.origins, &key, (src, dst, port), true));
        let verdict = |policy: &Policy, reason: Reason| {
            let v = if reason.is_blocked() {
                policy.action().label()
            } else {
                "pass"
            };
            format!("{v} ({})", reason.label())
        };
        // Live, each side is judged by one policy: a segment arriving on the access side
        // by the outbound one, one arriving on the core side by the inbound one.
        let mut t = match &i {
            None => format!(
                "verdict: {} under policy generation {}, decided by {}\n",
                verdict(&outbound, o_reason),
                self.generation,
                if o_reason.is_blocked() {
                    "the outbound (OP25B) policy"
                } else {
                    "no policy: it passes"
                }
            ),
            Some((_, r)) => format!(
                "verdict under policy generation {}:\n  arriving on the access side (subscriber → internet), by the outbound (OP25B) policy: {}\n  arriving on the core side (internet → our network), by the inbound (IP25B) policy: {}\n",
                self.generation,
                verdict(&outbound, o_reason),
                verdict(&inbound, *r)
            ),
        };
        let _ = writeln!(t, "[outbound] subscriber → internet: {}", o_reason.label());
        t.push_str(&o_text);
        match i {
            Some((text, r)) => {
                let _ = writeln!(t, "[inbound] internet → our MX hosts: {}", r.label());
                t.push_str(&text);
            }
            None => t.push_str("[inbound]: not configured\n"),
        }
        (true, t.trim_end().to_string())
    }

    /// One sample of `metric` per side of the wire (`side` and `interface` labels).
    fn per_side(&self, m: &mut String, metric: &str, values: [u64; 2]) {
        use std::fmt::Write as _;
        for ((side, name), v) in [
            ("access", &self.dataplane.access),
            ("core", &self.dataplane.core),
        ]
        .into_iter()
        .zip(values)
        {
            let _ = writeln!(
                m,
                "{metric}{{side=\"{side}\",interface=\"{}\"}} {v}",
                label_value(name)
            );
        }
    }

    fn metrics(&self) -> String {
        let (o, i, refused) = self.totals();
        let mut m = String::new();
        // One family per quantity, so summing a family never adds a part to its whole
        // (received = sent + dropped; monitored is part of sent, rejected of dropped).
        for (name, help, get) in [
            (
                "op25b_frames_received_total",
                "Frames received, by direction (outbound: access to core).",
                (|c: &Counters| c.rx) as fn(&Counters) -> u64,
            ),
            (
                "op25b_frames_sent_total",
                "Frames sent on.",
                |c: &Counters| c.tx,
            ),
            (
                "op25b_frames_dropped_total",
                "Frames dropped by policy (received = sent + dropped).",
                |c: &Counters| c.dropped,
            ),
            (
                "op25b_frames_monitored_total",
                "Frames the policy blocks but sends on (action = \"monitor\"); part of sent.",
                |c: &Counters| c.monitored,
            ),
            (
                "op25b_frames_rejected_total",
                "Dropped frames answered with a TCP reset (action = \"reject\"): a reset was due and within the rate, and was handed to the port (op25b_resets_sent_total counts those sent); part of dropped.",
                |c: &Counters| c.rejected,
            ),
            (
                "op25b_resets_rate_limited_total",
                "Dropped frames a reset was due for but the reset rate was exhausted (action = \"reject\"); part of dropped.",
                |c: &Counters| c.reset_limited,
            ),
            (
                "op25b_resets_unanswerable_total",
                "Dropped frames no reset answers whatever the rate (action = \"reject\"): a reset, a fragment without a TCP header, a group, unspecified or loopback address; part of dropped.",
                |c: &Counters| c.reset_unanswerable,
            ),
        ] {
            let _ = writeln!(m, "# HELP {name} {help}\n# TYPE {name} counter");
            for (dir, c) in [("outbound", &o), ("inbound", &i)] {
                let _ = writeln!(m, "{name}{{direction=\"{dir}\"}} {}", get(c));
            }
        }
        let _ = writeln!(m, "# HELP op25b_reason_total Frames by direction and the reason for their verdict.\n# TYPE op25b_reason_total counter");
        for (dir, c) in [("outbound", &o), ("inbound", &i)] {
            for r in Reason::all() {
                let _ = writeln!(
                    m,
                    "op25b_reason_total{{direction=\"{dir}\",reason=\"{}\"}} {}",
                    r.label(),
                    c.reason(r)
                );
            }
        }
        let _ = writeln!(
            m,
            "# HELP op25b_build_info The running op25b: its version and the backend that moves the frames (always 1).\n# TYPE op25b_build_info gauge\nop25b_build_info{{version=\"{}\",backend=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            self.dataplane.backend.name()
        );
        let _ = writeln!(m, "# HELP op25b_tx_refused_total Frames {} refused to send.\n# TYPE op25b_tx_refused_total counter\nop25b_tx_refused_total {refused}", self.tx_refuser());
        if self.dataplane.backend == Backend::AfPacket {
            let _ = writeln!(m, "# HELP op25b_tx_refused_tagged_total Of op25b_tx_refused_total, full-size frames with more VLAN tag than one 802.1Q tag, which the packet socket refuses at the interface's MTU, by the interface they were to leave.\n# TYPE op25b_tx_refused_tagged_total counter");
            self.per_side(
                &mut m,
                "op25b_tx_refused_tagged_total",
                self.tx_refused_tagged(),
            );
        }
        let _ = writeln!(m, "# HELP op25b_resets_sent_total TCP resets sent for rejected segments.\n# TYPE op25b_resets_sent_total counter\nop25b_resets_sent_total {}", self.resets_sent());
        let up = self.links_up();
        let _ = writeln!(m, "# HELP op25b_link_up Whether a link of the wire is up with a carrier (1) or down (0), as the appliance last looked.\n# TYPE op25b_link_up gauge");
        self.per_side(&mut m, "op25b_link_up", up.map(u64::from));
        let _ = writeln!(m, "# HELP op25b_config_warnings Warnings of the config in force (`op25b ctl status` lists them).\n# TYPE op25b_config_warnings gauge\nop25b_config_warnings {}", self.warnings.len());
        let _ = writeln!(m, "# HELP op25b_policy_generation Generation of the policy in force.\n# TYPE op25b_policy_generation gauge\nop25b_policy_generation {}", self.generation);
        let _ = writeln!(m, "# HELP op25b_policy_build_seconds Time the last policy build took (a reload, or a ticket added, deleted or expired; reading the files not included).\n# TYPE op25b_policy_build_seconds gauge\nop25b_policy_build_seconds {}", self.reload_ms / 1e3);
        let loaded = self
            .loaded_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let _ = writeln!(m, "# HELP op25b_policy_loaded_timestamp_seconds When the policy in force was published.\n# TYPE op25b_policy_loaded_timestamp_seconds gauge\nop25b_policy_loaded_timestamp_seconds {loaded}");
        let _ = writeln!(m, "# HELP op25b_reloads_total Reload attempts by result.\n# TYPE op25b_reloads_total counter\nop25b_reloads_total{{result=\"ok\"}} {}\nop25b_reloads_total{{result=\"refused\"}} {}", self.reloads[0], self.reloads[1]);
        let s = self.handle.load().sizes();
        let _ = writeln!(m, "# HELP op25b_policy_table_bytes Memory of the outbound policy's lookup tables, by layout (direct: the DIR-24-8 IPv4 source table of a policy of 8192 or more IPv4 sources, or of any with IPv4 sources under the dpdk backend; not one that would cut more than 32767 /24s).\n# TYPE op25b_policy_table_bytes gauge\nop25b_policy_table_bytes{{layout=\"compact\"}} {}\nop25b_policy_table_bytes{{layout=\"direct\"}} {}", s.memory_bytes - s.direct_bytes, s.direct_bytes);
        let _ = writeln!(m, "# HELP op25b_policy_prefixes Distinct prefixes per list and family.\n# TYPE op25b_policy_prefixes gauge");
        for (fam, v) in [("ipv4", s.v4), ("ipv6", s.v6)] {
            for (k, list) in ["dynamic", "exempt", "relays", "scope"].iter().enumerate() {
                let _ = writeln!(
                    m,
                    "op25b_policy_prefixes{{family=\"{fam}\",list=\"{list}\"}} {}",
                    v[k]
                );
            }
        }
        let _ = writeln!(m, "# HELP op25b_dynamic_prefix_blocked_total Blocked segments per dynamic prefix since start (the {} prefixes with most per direction).\n# TYPE op25b_dynamic_prefix_blocked_total counter", self.config.control.metrics_top_prefixes);
        for (d, dir) in DIRECTIONS.iter().enumerate() {
            for (p, n) in self.top_prefixes(d, self.config.control.metrics_top_prefixes) {
                let _ = writeln!(
                    m,
                    "op25b_dynamic_prefix_blocked_total{{direction=\"{dir}\",prefix=\"{p}\"}} {n}"
                );
            }
        }
        if self.drop_log.is_some() || self.drop_log_failed.is_some() {
            let _ = writeln!(m, "# HELP op25b_drop_log_enabled Whether the configured drop log is written this run (1), or is off because it could not be opened at start (0; `op25b ctl status` says why). Absent without [drop_log].\n# TYPE op25b_drop_log_enabled gauge\nop25b_drop_log_enabled {}", u8::from(self.drop_log.is_some()));
        }
        if let Some((_, st)) = &self.drop_log {
            let (limited, full) = self.drop_log_refused();
            let _ = writeln!(m, "# HELP op25b_drop_log_records_total Sampled blocked segments by what became of their drop-log line.\n# TYPE op25b_drop_log_records_total counter");
            for (what, n) in [
                ("written", st.written.load(Ordering::Relaxed)),
                ("rate_limited", limited),
                ("queue_full", full),
                ("write_error", st.write_errors.load(Ordering::Relaxed)),
            ] {
                let _ = writeln!(m, "op25b_drop_log_records_total{{result=\"{what}\"}} {n}");
            }
        }
        let _ = writeln!(m, "# HELP op25b_exemption_tickets Exemption tickets in force.\n# TYPE op25b_exemption_tickets gauge\nop25b_exemption_tickets {}", self.tickets.len());
        if self.tickets_file.is_some() {
            let _ = writeln!(m, "# HELP op25b_exemption_tickets_unsaved Whether the tickets in force could not be saved to [control] tickets (1: a restart would lose them; retried every 10 s).\n# TYPE op25b_exemption_tickets_unsaved gauge\nop25b_exemption_tickets_unsaved {}", u8::from(self.save_error.is_some()));
        }
        let name = "op25b_frame_processing_seconds";
        let _ = writeln!(m, "# HELP {name} Time a worker spends judging a frame (its burst's processing time shared out per frame), since start; recorded to 3 significant digits, so a bucket above 2 us also holds values up to 0.1% over its bound.\n# TYPE {name} histogram");
        for (dir, h) in [
            ("outbound", &self.latency[0]),
            ("inbound", &self.latency[1]),
        ] {
            for le_ns in LATENCY_BUCKETS_NS {
                let _ = writeln!(
                    m,
                    "{name}_bucket{{direction=\"{dir}\",le=\"{}\"}} {}",
                    le_ns as f64 / 1e9,
                    if h.is_empty() {
                        0
                    } else {
                        h.count_between(0, le_ns)
                    }
                );
            }
            let _ = writeln!(
                m,
                "{name}_bucket{{direction=\"{dir}\",le=\"+Inf\"}} {}",
                h.len()
            );
            let _ = writeln!(
                m,
                "{name}_sum{{direction=\"{dir}\"}} {}",
                histogram_sum_ns(h) as f64 / 1e9
            );
            let _ = writeln!(m, "{name}_count{{direction=\"{dir}\"}} {}", h.len());
        }
        m
    }
}

/// What a ticket for `p` does not do under `config` (the config in force, without the
/// tickets), for the answer to `exempt add`: one note a line, empty when none applies.
/// The ticket is added all the same (a pool that holds it may be added later).
///
/// For an address inside `p`, the entries that match it and are shorter than `p` are
/// exactly those that contain `p`; the longest of them decides every address of `p` that
/// no entry inside `p` matches. So the ticket changes a verdict only when that entry is
/// dynamic: when none is (no dynamic prefix of the family, none that holds `p`, or a
/// config exempt entry that holds it), the ticket changes nothing now, and the note says
/// why. Longer dynamic prefixes inside `p` still win for their addresses (longest match),
/// and tickets are outbound only.
fn ticket_caveats(config: &Config, p: &AnyPrefix) -> String {
    let holds = |outer: &AnyPrefix, inner: &AnyPrefix| match (outer, inner) {
        (AnyPrefix::V4(o), AnyPrefix::V4(i)) => o.len <= i.len && o.contains(i.addr),
        (AnyPrefix::V6(o), AnyPrefix::V6(i)) => o.len <= i.len && o.contains(i.addr),
        _ => false,
    };
    let same_family = |d: &AnyPrefix| {
        matches!(
            (p, d),
            (AnyPrefix::V4(_), AnyPrefix::V4(_)) | (AnyPrefix::V6(_), AnyPrefix::V6(_))
        )
    };
    let len = |x: &AnyPrefix| match x {
        AnyPrefix::V4(x) => x.len,
        AnyPrefix::V6(x) => x.len,
    };
    let out_spec = &config.outbound;
    let origins = &config.origins;
    let dynamic = || out_spec.dynamic.iter().zip(&origins.dynamic);
    let exempt = || out_spec.exempt.iter().zip(&origins.exempt);
    // The longest entry holding `p`, and whether it is exempt.
    let decider = dynamic()
        .map(|(d, o)| (d, o, false))
        .chain(exempt().map(|(e, o)| (e, o, true)))
        .filter(|(x, _, _)| holds(x, p))
        .max_by_key(|(x, _, _)| len(x));
    let winners: Vec<String> = dynamic()
        .filter(|(d, _)| holds(p, d) && d != &p)
        .map(|(d, o)| format!("{} ({o})", describe(d)))
        .collect();
    let family = if matches!(p, AnyPrefix::V4(_)) {
        "IPv4"
    } else {
        "IPv6"
    };
    let mut out = String::new();
    match decider {
        Some((e, o, true)) if e == p => {
            out += &format!(
                "\nnote: {} is already exempt in the config ({o}); the ticket changes nothing while that entry stays",
                describe(p)
            );
        }
        Some((e, o, true)) => {
            out += &format!(
                "\nnote: {} is already exempt in the config: exempt {} ({o}) holds it, and no dynamic prefix between them; the ticket changes nothing while that entry stays",
                describe(p),
                describe(e)
            );
        }
        Some((_, _, false)) => {}
        None if !dynamic().any(|(d, _)| same_family(d)) => {
            out += &format!(
                "\nnote: the config lists no {family} dynamic prefix, so nothing of {family} is blocked and the ticket changes no verdict now (it will once a pool that holds {} is added)",
                describe(p)
            );
        }
        None if winners.is_empty() => {
            out += &format!(
                "\nnote: no dynamic prefix holds or overlaps {}, so it is not blocked and the ticket changes no verdict now (it will once a pool that holds it is added)",
                describe(p)
            );
        }
        None => {
            out += &format!(
                "\nnote: no dynamic prefix holds {}, only longer ones inside it, which win for their addresses (see below): the ticket changes no verdict now",
                describe(p)
            );
        }
    }
    if let Some(first) = winners.first() {
        out += &format!(
            "\nnote: {} longer dynamic prefix(es) inside it still block their addresses (the longest match wins), e.g. {first}; to unblock those, ticket the hosts or prefixes longer than them inside them (a ticket equal to a dynamic entry is refused)",
            winners.len()
        );
    }
    if config.inbound.is_some() {
        out += "\nnote: tickets do not change [inbound] (IP25B)";
    }
    out
}

/// One policy's account of a (src, dst, port) segment: which entries matched, with the
/// file and line each came from. `inbound` names `scope` "protected".
fn explain_one(
    policy: &Policy,
    origins: &ListOrigins,
    key: &FlowKey,
    (src, dst, port): (IpAddr, IpAddr, u16),
    inbound: bool,
) -> (String, Reason) {
    let (reason, m) = policy.explain(key);
    let spec = policy.spec();
    let origin = |list: ListName, i: usize| -> String {
        origins
            .of(list)
            .get(i)
            .map_or("exemption ticket".into(), |o| o.to_string())
    };
    let entry = |list: ListName, i: usize| -> String {
        let v = match list {
            ListName::Dynamic => &spec.dynamic,
            ListName::Exempt => &spec.exempt,
            ListName::Relays => &spec.relays,
            ListName::Scope => &spec.scope,
        };
        let name = if inbound && list == ListName::Scope {
            "protected".to_string()
        } else {
            list.to_string()
        };
        v.get(i)
            .map_or("?".into(), |p| format!("{name} {p} ({})", origin(list, i)))
    };
    let mut t = String::new();
    let _ = writeln!(
        t,
        "  port {port}: {}",
        if policy.ports().contains(port) {
            "blocked port"
        } else {
            "not a blocked port"
        }
    );
    let _ = writeln!(
        t,
        "  source {src}: {}",
        m.source.map_or(
            "matches no dynamic or exempt prefix".into(),
            |(l, i)| format!("longest match is {}", entry(l, i))
        )
    );
    // Inbound: the destination must be a protected host; outbound: it must not be a relay.
    let (hit, list, miss, is) = if inbound {
        (m.scope, ListName::Scope, "is not a protected host", "is")
    } else {
        (m.relay, ListName::Relays, "is not a relay", "is a relay:")
    };
    let _ = writeln!(
        t,
        "  destination {dst}: {}",
        hit.map_or(miss.into(), |i| format!("{is} {}", entry(list, i)))
    );
    if !inbound && !spec.scope.is_empty() {
        let _ = writeln!(
            t,
            "  scope: {}",
            m.scope
                .map_or("destination outside the scope".into(), |i| format!(
                    "inside {}",
                    entry(ListName::Scope, i)
                ))
        );
    }
    (t, reason)
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

/// The signals `op25b run` answers — SIGHUP (reload), SIGTERM and SIGINT (stop) — caught
/// from its very first step, so none of them can end the process the default way while it
/// reads its config, builds the policy or opens the ports (SIGHUP's default would end it
/// with status 129, which systemd counts as a clean exit and does not restart; SIGTERM's
/// would skip the final counters and, on AF_XDP, leave the VLAN offload turned off).
///
/// During start-up a SIGTERM or SIGINT stops `run` cleanly after the step under way
/// (`Signals::stop_asked`); a SIGHUP is remembered and the configuration is reloaded
/// once the workers run, since the start may have read the files before the edit it
/// announces.
///
/// The handlers queue what they catch; the start reads the queue between its steps, and
/// only once the workers' cores are known does a thread start that hands each signal to
/// the main loop (`Signals::into_channel`), so it too keeps off the workers' cores.
#[derive(Debug)]
pub struct Signals {
    caught: signal_hook::iterator::Signals,
    /// A SIGHUP came before the workers ran.
    reload_pending: bool,
}

impl Signals {
    /// Installs the handlers.
    pub fn install() -> Result<Signals, String> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let caught = signal_hook::iterator::Signals::new([SIGHUP, SIGTERM, SIGINT])
            .map_err(|e| format!("cannot install signal handlers: {e}"))?;
        Ok(Signals {
            caught,
            reload_pending: false,
        })
    }

    /// Starts the thread that turns each signal caught from now on (and any still queued)
    /// into a message on the returned channel; also says whether a SIGHUP came during the
    /// start. The thread inherits the calling thread's CPU mask.
    fn into_channel(self) -> Result<(Receiver<i32>, bool), String> {
        let Signals {
            mut caught,
            reload_pending,
        } = self;
        let (tx, rx) = crossbeam_channel::unbounded();
        std::thread::Builder::new()
            .name("op25b-signals".into())
            .spawn(move || {
                for s in caught.forever() {
                    if tx.send(s).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| format!("cannot start the signal thread: {e}"))?;
        Ok((rx, reload_pending))
    }

    /// During start-up, once `step` is done: takes the signals that came meanwhile,
    /// remembering a SIGHUP (said once), and returns the name of a SIGTERM or SIGINT,
    /// which asks the start to stop.
    fn stop_asked(&mut self, step: &str) -> Option<&'static str> {
        use signal_hook::consts::{SIGHUP, SIGINT};
        let pending: Vec<i32> = self.caught.pending().collect();
        for s in pending {
            match s {
                SIGHUP => {
                    if !self.reload_pending {
                        eprintln!(
                            "op25b: SIGHUP during start-up ({step}): the configuration is reloaded as soon as the appliance runs"
                        );
                    }
                    self.reload_pending = true;
                }
                SIGINT => return Some("SIGINT"),
                _ => return Some("SIGTERM"),
            }
        }
        None
    }
}

/// A stop asked for during start-up (`signal` came while `step` ran): said on stderr,
/// with the final counters (all zero: no worker ran) on stdout as after any stop.
fn stopped_during_start_up(signal: &str, step: &str) -> Result<(), RunError> {
    eprintln!("op25b: {signal} during start-up ({step}): stopped before any frame was forwarded");
    println!("{}", summary("access→core", &Counters::default()));
    println!("{}", summary("core→access", &Counters::default()));
    Ok(())
}

/// What must outlive the workers' ports and be released after them (DPDK: the EAL, whose
/// ports and mbuf pool the wires share).
enum BackendHandle {
    Kernel,
    #[cfg(feature = "dpdk")]
    Dpdk {
        _eal: op25b_dataplane::port::dpdk::Eal,
        /// The NICs' link state, watched from the control thread (`None`: no NIC).
        links: Option<op25b_dataplane::port::dpdk::DeviceLinks>,
    },
}

impl BackendHandle {
    /// Looks at the links only the control thread watches (a DPDK NIC's), and logs a
    /// change (once a second at most: the caller's loop wakes at least that often).
    fn check_links(&mut self, last: &mut Instant) {
        if last.elapsed() < Duration::from_secs(1) {
            return;
        }
        *last = Instant::now();
        match self {
            BackendHandle::Kernel => {}
            #[cfg(feature = "dpdk")]
            BackendHandle::Dpdk { links, .. } => {
                // Device links have no kernel interface that could be gone.
                if let Some(e) = links.as_mut().and_then(|l| l.check()) {
                    log_link_change("", &e);
                }
            }
        }
    }

    /// Whether each link the control thread watches (access, core) was up at its last
    /// look (true for links it does not watch).
    fn links_up(&self) -> [bool; 2] {
        match self {
            BackendHandle::Kernel => [true, true],
            #[cfg(feature = "dpdk")]
            BackendHandle::Dpdk { links, .. } => {
                links.as_ref().map_or([true, true], |l| l.links_up())
            }
        }
    }

    /// Releases the backend (call after every worker has stopped).
    fn release(self) {
        match self {
            BackendHandle::Kernel => {}
            #[cfg(feature = "dpdk")]
            BackendHandle::Dpdk { _eal, .. } => drop(_eal),
        }
    }
}

/// A backend's start error as a [`RunError`]: [`RunError::Unrecoverable`] unless
/// `retry_may_help`.
fn start_error(e: impl std::fmt::Display, retry_may_help: bool) -> RunError {
    if retry_may_help {
        RunError::Failed(e.to_string())
    } else {
        RunError::Unrecoverable(e.to_string())
    }
}

/// Opens one port per worker on the configured backend. `ledger`: the runtime directory
/// (the control socket's), where AF_XDP writes down the interface settings it changes
/// until they are restored, so that a start after a crash restores them too.
fn open_ports(
    dp: &DataplaneConfig,
    #[cfg_attr(not(feature = "af_xdp"), allow(unused_variables))] ledger: Option<&Path>,
) -> Result<(Vec<LivePort>, BackendHandle, crate::claim::Claims), RunError> {
    match dp.backend {
        Backend::AfPacket => {
            let claims = crate::claim::claim_names(&[&dp.access, &dp.core])?;
            // Fanout group ids are per network namespace; derive them from the pid so two
            // appliances on one host never share a group.
            let group = (std::process::id() as u16).wrapping_mul(2);
            let ports = (0..dp.workers)
                .map(|i| {
                    WirePort::open(&dp.access, &dp.core, Some(group), dp.per_frame_ring)
                        .map(|w| LivePort::Packet(Box::new(w)))
                        .map_err(|e| {
                            // Missing privileges or a forbidden address family stay so;
                            // a missing interface may come (back).
                            let retry = !matches!(
                                e.kind(),
                                std::io::ErrorKind::PermissionDenied
                                    | std::io::ErrorKind::Unsupported
                            );
                            start_error(format!("worker {i}: {e}"), retry)
                        })
                })
                .collect::<Result<_, _>>()?;
            warn_unequal_mtus(&dp.access, &dp.core, "counted as refused by the kernel");
            Ok((ports, BackendHandle::Kernel, claims))
        }
        #[cfg(feature = "dpdk")]
        Backend::Dpdk => {
            use op25b_dataplane::port::dpdk::Eal;
            let mut eal =
                Eal::init(&dp.eal_args).map_err(|e| start_error(&e, e.retry_may_help()))?;
            let wires = eal
                .open_wire(&dp.access, &dp.core, dp.workers, dp.burst, dp.mtu)
                .map_err(|e| start_error(&e, e.retry_may_help()))?;
            if let Some(w) = wires.first() {
                let (a, c) = w.ports();
                let [da, dc] = w
                    .drivers()
                    .map(|d| if d.is_empty() { "driver unknown" } else { d });
                let ahead = prefetch_note(w.prefetches());
                eprintln!(
                    "op25b: DPDK ports: access {} = port {a} ({da}), core {} = port {c} ({dc}), {} queue(s) each{}{ahead}",
                    dp.access,
                    dp.core,
                    dp.workers,
                    dp.mtu.map_or(String::new(), |m| format!(", mtu {m}"))
                );
            }
            let Some(first) = wires.first() else {
                return Err(RunError::Failed("DPDK opened no queue".into()));
            };
            // Virtual devices on kernel interfaces (net_af_packet, net_tap) are known only
            // once open; a NIC is the EAL's own to guard.
            let claims = crate::claim::claim(&first.kernel_interfaces())?;
            // A virtual device on a kernel interface whose MTU is larger than the frames
            // the device is set up for loses the larger frames without a counter.
            let carried = dp.mtu.unwrap_or(1500);
            for (ifname, _) in first.kernel_interfaces() {
                let mtu = op25b_dataplane::port::sys::mtu_of(&ifname);
                if let Some(mtu) = mtu.filter(|&m| m > u32::from(carried)) {
                    eprintln!(
                        "op25b: warning: {ifname} has MTU {mtu}, but the DPDK device on it is set up for {carried}: larger frames are lost without a count; set [dataplane] mtu = {mtu} if the device takes it, or lower the interface's MTU"
                    );
                }
            }
            let links = op25b_dataplane::port::dpdk::DeviceLinks::of(first);
            Ok((
                wires
                    .into_iter()
                    .map(|w| LivePort::Dpdk(Box::new(w)))
                    .collect(),
                BackendHandle::Dpdk {
                    _eal: eal,
                    links: Some(links).filter(|l| l.any()),
                },
                claims,
            ))
        }
        #[cfg(not(feature = "dpdk"))]
        Backend::Dpdk => Err(RunError::Unrecoverable(
            "this op25b was built without DPDK support: rebuild with `--features dpdk`".into(),
        )),
        #[cfg(feature = "af_xdp")]
        Backend::AfXdp => {
            // Before the XDP program is attached: a second one would replace the first's.
            let claims = crate::claim::claim_names(&[&dp.access, &dp.core])?;
            let wires = op25b_dataplane::port::af_xdp::open_wire(
                &dp.access, &dp.core, dp.workers, dp.burst, ledger,
            )
            .map_err(|e| start_error(&e, e.retry_may_help()))?;
            warn_unequal_mtus(
                &dp.access,
                &dp.core,
                "dropped by the kernel, seen only in `ip -s link`'s TX dropped count",
            );
            if let Some(w) = wires.first() {
                eprintln!(
                    "op25b: AF_XDP on {} and {}, {} queue(s) each: {}",
                    dp.access,
                    dp.core,
                    dp.workers,
                    w.describe()
                );
            }
            Ok((
                wires
                    .into_iter()
                    .map(|w| LivePort::Xdp(Box::new(w)))
                    .collect(),
                BackendHandle::Kernel,
                claims,
            ))
        }
        #[cfg(not(feature = "af_xdp"))]
        Backend::AfXdp => Err(RunError::Unrecoverable(
            "this op25b was built without AF_XDP support: rebuild with `--features af_xdp`".into(),
        )),
    }
}

/// Keeps this thread, and so every thread it starts from now on (the control socket and
/// metrics servers, the drop-log writer, the reaper that frees old policies, the policy
/// builds of reloads, the thread that hands signals to the main loop), off the cores the
/// workers are pinned to. A worker busy-polls its
/// core; a reload's build (seconds of CPU for a million prefixes) scheduled there would
/// take turns with it and hold its traffic for whole scheduler slices, milliseconds at a
/// time. Without pinned workers, or when every core this process may use runs a worker,
/// the scheduler decides as before; the latter is said.
fn keep_off_worker_cores(worker_cores: &[usize]) {
    use op25b_dataplane::port::sys::{allowed_cores, restrict_current_thread};
    if worker_cores.is_empty() {
        return;
    }
    let rest: Vec<usize> = match allowed_cores() {
        Ok(all) => all
            .into_iter()
            .filter(|c| !worker_cores.contains(c))
            .collect(),
        Err(e) => {
            eprintln!("op25b: warning: cannot read this process's CPU affinity ({e}); the control thread may share the workers' cores");
            return;
        }
    };
    if rest.is_empty() {
        eprintln!(
            "op25b: warning: every core this process may run on has a worker (cores = {worker_cores:?}); reloads build their policy on a worker's core and can hold its traffic for milliseconds: leave a core without a worker"
        );
        return;
    }
    match restrict_current_thread(&rest) {
        Ok(()) => eprintln!(
            "op25b: control thread on cores {}, workers on {}",
            crate::config::core_list(&rest),
            crate::config::core_list(worker_cores)
        ),
        Err(e) => {
            eprintln!("op25b: warning: cannot keep the control thread off the workers' cores ({e})")
        }
    }
}

/// Why `op25b run` stopped with an error.
#[derive(Debug, PartialEq, Eq)]
pub enum RunError {
    /// The config was refused (no `[dataplane]` section, or its policy does not build):
    /// bad usage, exit 2 as for `check`.
    Config(String),
    /// Starting or running failed (an interface, a backend, the control socket) in a way
    /// a later start may not (an interface that comes back, a busy address freed): exit
    /// 1, which the systemd unit restarts.
    Failed(String),
    /// Starting failed in a way no retry fixes without the operator: missing privileges
    /// or a sandbox, a backend this binary lacks, queue counts, MTUs or settings the
    /// hardware does not take. Exit 3, which the unit does not restart.
    Unrecoverable(String),
}

impl From<String> for RunError {
    fn from(e: String) -> Self {
        RunError::Failed(e)
    }
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Config(e) | RunError::Failed(e) | RunError::Unrecoverable(e) => {
                f.write_str(e)
            }
        }
    }
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// When a ticket ends, for the log and the answers: `until 2026-12-02T10:00:00Z`, or
/// `until removed` for one without a TTL.
fn until(expires: Option<SystemTime>) -> String {
    expires.map_or("until removed".into(), |e| {
        format!("until {}", crate::droplog::rfc3339_seconds(e))
    })
}

/// When an expired ticket ended: `ended 2026-12-02T10:00:00Z`.
fn ended(expires: Option<SystemTime>) -> String {
    expires.map_or("never ends".into(), |e| {
        format!("ended {}", crate::droplog::rfc3339_seconds(e))
    })
}

/// What to tell when `names[side]` refused frames with more VLAN tag than one 802.1Q tag
/// as too long (AF_PACKET's send path allows 4 bytes beyond MTU + 14, and only for an
/// outer 802.1Q tag).
fn tagged_refusal_advice(names: &[String; 2], side: usize) -> String {
    let mtu = op25b_dataplane::port::sys::mtu_of(&names[side]).unwrap_or(1500);
    format!(
        "the kernel refused to send full-size VLAN-tagged frames out of {name} (EMSGSIZE): a packet socket sends at most MTU + 14 bytes, + 4 only when the outer tag is 802.1Q, so a frame with an 802.1ad (0x88a8) or 0x9100 tag, or with two tags, is refused at the MTU a NIC or a bridge carries it at; such frames are lost, counted in tx_refused (`ctl stats`, op25b_tx_refused_tagged_total); raise the MTU of both interfaces by 4 per tag, less one tag when the outer one is 802.1Q (from {mtu}: {one} for one 802.1ad or 0x9100 tag or for QinQ under an outer 802.1Q tag, {two} for QinQ under an outer 802.1ad tag; `ip link set dev {name} mtu {two}` and the same for {other}), or use backend = \"af_xdp\" or \"dpdk\"",
        name = names[side],
        other = names[1 - side],
        one = mtu + 4,
        two = mtu + 8,
    )
}

/// Warns when the two sides of the wire carry different MTUs: a frame as large as the
/// larger one cannot leave through the other side (`lost`: what becomes of it).
fn warn_unequal_mtus(access: &str, core: &str, lost: &str) {
    let mtu = op25b_dataplane::port::sys::mtu_of;
    if let (Some(a), Some(c)) = (mtu(access), mtu(core)) {
        if a != c {
            let ((big, big_mtu), (small, small_mtu)) = if a > c {
                ((access, a), (core, c))
            } else {
                ((core, c), (access, a))
            };
            eprintln!(
                "op25b: warning: {big} has MTU {big_mtu} but {small} only {small_mtu}: frames from {big} larger than {small_mtu} bytes of IP cannot leave through {small} and are {lost}; give both sides the same MTU"
            );
        }
    }
}

/// Runs the appliance until SIGTERM or SIGINT. `signals` are installed by the caller
/// before it reads the config, and checked here between the steps of the start.
pub fn run(config_path: &Path, config: Config, mut signals: Signals) -> Result<(), RunError> {
    let dp: DataplaneConfig = config.dataplane.clone().ok_or_else(|| {
        RunError::Config(format!(
            "{}: `op25b run` needs a [dataplane] section (backend, access, core)",
            config_path.display()
        ))
    })?;
    if let Some(sig) = signals.stop_asked("reading the configuration") {
        return stopped_during_start_up(sig, "reading the configuration");
    }
    let t = Instant::now();
    let (built, start_tickets) = build_with_saved_tickets(&config, saved_tickets(&config)?)?;
    // The build alone, as reloads measure it (not the backend's start below).
    let build_ms = t.elapsed().as_secs_f64() * 1e3;
    if let Some(sig) = signals.stop_asked("building the policy") {
        return stopped_during_start_up(sig, "building the policy");
    }
    for w in crate::config::shown_warnings(&built.warnings) {
        eprintln!("op25b: warning: {w}");
    }
    let handle = Arc::new(PolicyHandle::from_pointee(
        built.policy.with_hit_counters(dp.workers),
    ));
    let inbound = Arc::new(PolicyHandle::from_pointee(
        built.inbound.with_hit_counters(dp.workers),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    // The socket's folder outlives a crash (systemd keeps /run/op25b until reboot:
    // RuntimeDirectoryPreserve=yes); one not made yet keeps no ledger.
    let (ports, mut backend, claims) = open_ports(&dp, config.control.socket.parent())?;
    if let Some(sig) = signals.stop_asked("opening the ports") {
        // Closed before the backend: AF_XDP detaches its program and turns the VLAN
        // offload back on; DPDK's ports go before its EAL.
        drop(ports);
        backend.release();
        drop(claims);
        return stopped_during_start_up(sig, "opening the ports");
    }
    let _claims = claims;
    // After the backend's start (whatever the EAL does to this thread's affinity) and before
    // any other thread is started, so that they all inherit it.
    keep_off_worker_cores(&dp.cores);
    let mut links_checked = Instant::now();
    let (req_tx, req_rx) = crossbeam_channel::bounded::<Request>(64);
    let cc = config.control.clone();
    // The metrics address first: a start it stops leaves no control socket file behind.
    let metrics_listener = match &cc.metrics {
        Some(addr) => Some(
            std::net::TcpListener::bind(addr)
                .map_err(|e| format!("metrics address {addr}: {e}"))?,
        ),
        None => None,
    };
    let (ctl_listener, ctl_socket) = ctl::bind(&cc.socket)?;
    // From here on a SIGTERM is the main loop's: it stops the workers as any stop does.
    let (signals, reload_pending) = signals.into_channel()?;
    {
        let tx = req_tx.clone();
        std::thread::Builder::new()
            .name("op25b-ctl".into())
            .spawn(move || ctl::serve_socket(ctl_listener, tx))
            .map_err(|e| e.to_string())?;
    }
    // The address actually bound (port 0 in the config means any free port).
    let metrics_bound = metrics_listener
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.to_string());
    if let Some(l) = metrics_listener {
        let tx = req_tx.clone();
        std::thread::Builder::new()
            .name("op25b-metrics".into())
            .spawn(move || ctl::serve_metrics(l, tx))
            .map_err(|e| e.to_string())?;
    }
    drop(req_tx);
    let mut log_writer = None;
    let mut log_tx = None;
    let mut drop_log = None;
    let mut drop_log_failed = None;
    // The drop log is optional: one that cannot be opened is said loudly (and shown by
    // `status`), and the appliance forwards and blocks without it.
    let opened = config.drop_log.as_ref().and_then(|cfg| {
        match crate::droplog::DropLog::open(cfg.clone(), SystemTime::now()) {
            Ok(log) => Some((cfg, log)),
            Err(e) => {
                eprintln!("op25b: warning: the drop log is off this run: {e}");
                drop_log_failed = Some((cfg.clone(), e));
                None
            }
        }
    });
    if let Some((cfg, log)) = opened {
        let (tx, rx) = crossbeam_channel::bounded(crate::droplog::QUEUE);
        let stats = log.stats();
        let policies = [handle.clone(), inbound.clone()];
        log_writer = Some(
            std::thread::Builder::new()
                .name("op25b-droplog".into())
                .spawn(move || crate::droplog::run_writer(log, rx, policies))
                .map_err(|e| e.to_string())?,
        );
        eprintln!(
            "op25b: drop log {}: one in {} blocked segments, at most {}/s per worker and direction, addresses cut to /{} (IPv4) and /{} (IPv6), a new file every {} s, files kept {} s",
            cfg.path.display(),
            cfg.sample,
            cfg.rate,
            cfg.truncate_ipv4,
            cfg.truncate_ipv6,
            cfg.rotate.as_secs(),
            cfg.retention.as_secs()
        );
        log_tx = Some((cfg.sample_config(), tx));
        drop_log = Some((cfg.clone(), stats));
    }
    let (snap_tx, snap_rx) = crossbeam_channel::bounded::<Snapshot>(4 * dp.workers);
    let hot = [
        Arc::new(HotBlocks::new(dp.workers)),
        Arc::new(HotBlocks::new(dp.workers)),
    ];
    let mut threads = Vec::new();
    for (i, port) in ports.into_iter().enumerate() {
        let ctx = WorkerCtx {
            index: i,
            port,
            policies: Policies {
                outbound: handle.clone(),
                inbound: inbound.clone(),
                hot: hot.clone(),
            },
            stop: stop.clone(),
            burst: dp.burst,
            core: dp.cores.get(i).copied(),
            report: snap_tx.clone(),
            log: log_tx.clone(),
        };
        threads.push(
            std::thread::Builder::new()
                .name(format!("op25b-worker-{i}"))
                .spawn(move || worker_loop(ctx))
                .map_err(|e| format!("cannot start worker {i}: {e}"))?,
        );
    }
    drop(snap_tx);
    drop(log_tx);
    let mut control = Control::new(
        config_path,
        config,
        built.warnings.clone(),
        start_tickets,
        [handle, inbound],
        hot,
        build_ms,
    );
    control.metrics_at = metrics_bound.clone();
    control.drop_log = drop_log;
    control.drop_log_failed = drop_log_failed;
    // Drops from the file what expired while op25b was stopped.
    control.persist();
    eprintln!(
        "op25b: running: {} ↔ {}, {} worker(s), policy generation 1 from {}, control socket {}{}",
        dp.access,
        dp.core,
        dp.workers,
        config_path.display(),
        cc.socket.display(),
        metrics_bound
            .as_ref()
            .map_or(String::new(), |m| format!(", metrics http://{m}/metrics"))
    );
    // Said once running: a start that fails on the way puts nothing in force.
    if let (Some(f), false) = (&control.tickets_file, control.tickets.is_empty()) {
        eprintln!(
            "op25b: {} exemption ticket(s) from {} in force",
            control.tickets.len(),
            f.display()
        );
    }
    if reload_pending {
        control.reload("SIGHUP during start-up");
    }
    let status = |c: &Control| {
        format!(
            "forwarding {} ↔ {}, {} worker(s), policy generation {}",
            dp.access, dp.core, dp.workers, c.generation
        )
    };
    let mut notifier = crate::notify::Notifier::from_env();
    notifier.ready(&status(&control));
    let mut notified = control.generation;
    loop {
        let timeout = control
            .next_expiry()
            .unwrap_or(Duration::from_secs(1))
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        select! {
            recv(signals) -> s => match s {
                Ok(signal_hook::consts::SIGHUP) => { control.reload("SIGHUP"); }
                _ => break,
            },
            recv(req_rx) -> r => match r {
                Ok(Request::Command(words, reply)) => { let _ = reply.send(control.command(&words)); }
                Ok(Request::Metrics(reply)) => { let _ = reply.send(control.metrics()); }
                Err(_) => {}
            },
            recv(snap_rx) -> s => if let Ok(s) = s { control.absorb(s) },
            default(timeout) => {}
        }
        if control.fatal.is_some() {
            break;
        }
        control.housekeeping();
        backend.check_links(&mut links_checked);
        control.device_links = backend.links_up();
        if control.generation != notified {
            notified = control.generation;
            notifier.status(&status(&control));
        }
    }
    notifier.stopping();
    stop.store(true, Ordering::Relaxed);
    // Drain while the workers send their last snapshot, so none blocks on a full channel
    // (a worker that stopped on its own has sent its last one already).
    let mut remaining = threads.len() - control.stopped_workers;
    while remaining > 0 {
        match snap_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(s) => {
                remaining = remaining.saturating_sub(usize::from(s.last));
                control.absorb(s);
            }
            Err(_) => break,
        }
    }
    for t in threads {
        t.join()
            .map_err(|_| "a worker thread panicked".to_string())?;
    }
    // The workers are gone: the backend (DPDK: ports, pool, EAL) is torn down here, on the
    // thread that started it.
    backend.release();
    // The workers' senders are gone: the writer flushes what is queued and ends.
    if let Some(w) = log_writer {
        let _ = w.join();
    }
    // Only the socket bound at start: another appliance may have its own at the path now.
    ctl_socket.remove();
    let (o, i, refused) = control.totals();
    println!("{}", summary("access→core", &o));
    println!("{}", summary("core→access", &i));
    println!("tx refused by {}: {refused}", dp.backend.tx_refuser());
    let tagged = control.tx_refused_tagged();
    if tagged != [0, 0] {
        println!(
            "tx refused by the kernel as VLAN-tagged frames over the MTU: {} ({} {}, {} {}): raise both interfaces' MTU (see the warning above)",
            tagged[0] + tagged[1],
            dp.access,
            tagged[0],
            dp.core,
            tagged[1]
        );
    }
    for (w, o, n) in control.per_worker() {
        println!(
            "worker {w}: access→core rx {} tx {} dropped {}; core→access rx {} tx {} dropped {}",
            o[0], o[1], o[2], n[0], n[1], n[2]
        );
    }
    // Kept for the next start if they can be; otherwise say which ones this stop drops, so
    // they can be added again.
    for line in control.tickets_at_stop() {
        eprintln!("op25b: {line}");
    }
    match control.fatal {
        // Non-zero, so `Restart=on-failure` brings the appliance back on the new interface.
        Some(why) => Err(RunError::Failed(why)),
        None => Ok(()),
    }
}

/// What `op25b run` says at start about which DPDK ports' frames a poll asks for ahead
/// (`prefetches`: access, core; see `DpdkWire::prefetches`).
#[cfg_attr(not(feature = "dpdk"), allow(dead_code))]
fn prefetch_note(prefetches: [bool; 2]) -> &'static str {
    match prefetches {
        [true, true] => "; frames prefetched",
        [false, false] => "; frames arrive in the worker's cache, not prefetched",
        [true, false] => "; the access port's frames prefetched, the core port's not",
        [false, true] => "; the core port's frames prefetched, the access port's not",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_line_says_which_dpdk_ports_frames_are_prefetched() {
        assert_eq!(prefetch_note([true, true]), "; frames prefetched");
        assert_eq!(
            prefetch_note([false, false]),
            "; frames arrive in the worker's cache, not prefetched"
        );
        // Each side by its own flag: access first, core second.
        assert!(prefetch_note([true, false]).starts_with("; the access port's frames prefetched"));
        assert!(prefetch_note([false, true]).starts_with("; the core port's frames prefetched"));
    }

    /// The control thread's state as `run` sets it up for config `text` (written to
    /// `dir/op25b.toml`; `[dataplane]` is added), saved tickets and all, without ports,
    /// workers or listeners.
    fn control(dir: &Path, text: &str) -> Control {
        let path = dir.join("op25b.toml");
        let text = format!(
            "{text}\n[dataplane]\nbackend = \"af_packet\"\naccess = \"acc0\"\ncore = \"core0\"\n"
        );
        std::fs::write(&path, text).unwrap();
        let config = Config::load(&path).unwrap();
        let (built, start) =
            build_with_saved_tickets(&config, saved_tickets(&config).unwrap()).unwrap();
        let workers = config.dataplane.as_ref().unwrap().workers;
        let hot = [
            Arc::new(HotBlocks::new(workers)),
            Arc::new(HotBlocks::new(workers)),
        ];
        let handles = [
            Arc::new(PolicyHandle::from_pointee(
                built.policy.with_hit_counters(workers),
            )),
            Arc::new(PolicyHandle::from_pointee(
                built.inbound.with_hit_counters(workers),
            )),
        ];
        let mut c = Control::new(&path, config, built.warnings, start, handles, hot, 1.0);
        c.persist();
        c
    }

    /// `control`'s answer to `line` (words split at spaces).
    fn ask(c: &mut Control, line: &str) -> (bool, String) {
        let words: Vec<String> = line.split(' ').map(String::from).collect();
        c.command(&words)
    }

    #[test]
    fn a_control_thread_answers_as_run_sets_it_up() {
        let dir = op25b_dataplane::testkit::scratch_dir("live-control");
        let mut c = control(&dir, "[outbound]\ndynamic = [\"10.9.0.0/16\"]");
        let (ok, status) = ask(&mut c, "status");
        assert!(
            ok && status.starts_with("running: policy generation 1 from "),
            "{status}"
        );
        let (ok, text) = ask(&mut c, "exempt add 10.9.1.1");
        assert!(ok && text.contains("policy generation 2"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_rebuild_uses_the_backend_in_force_not_the_files() {
        // Started with AF_PACKET: two prefixes, compact.
        let dir = op25b_dataplane::testkit::scratch_dir("live-backend");
        let mut c = control(&dir, "[outbound]\ndynamic = [\"10.9.0.0/16\"]");
        assert_eq!(c.handle.load().sizes().direct_bytes, 0);
        // Were DPDK in force, a rebuild (here a ticket's) builds the source table direct,
        // whatever the file names.
        c.dataplane.backend = Backend::Dpdk;
        let (ok, text) = ask(&mut c, "exempt add 10.9.1.1");
        assert!(ok && text.contains("policy generation 2"), "{text}");
        assert!(c.handle.load().sizes().direct_bytes >= 64 << 20);
        let _ = std::fs::remove_dir_all(&dir);
    }

    const TICKETS: &str =
        "[outbound]\ndynamic = [\"10.9.0.0/16\"]\n[control]\ntickets = \"state/tickets\"";

    /// The prefixes `tickets::load` finds in force in `path`, sorted.
    fn on_disk(path: &Path) -> Vec<String> {
        let mut v: Vec<String> = crate::tickets::load(path, SystemTime::now())
            .unwrap()
            .tickets
            .iter()
            .map(|t| t.prefix.to_string())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_failed_save_keeps_the_older_list_unless_it_grants_more() {
        let dir = op25b_dataplane::testkit::scratch_dir("live-failed-save");
        let file = dir.join("state/tickets");
        let mut c = control(&dir, TICKETS);
        for add in [
            "exempt add 10.9.1.1",
            "exempt add 10.9.2.0/24 --ttl 1h",
            // 2 s: the file keeps whole seconds (rounded down), so with 1 s its copy
            // could already be expired when it is read just below.
            "exempt add 10.9.3.3 --ttl 2s",
        ] {
            let (ok, text) = ask(&mut c, add);
            assert!(ok && !text.contains("warning"), "{text}");
        }
        assert_eq!(
            on_disk(&file),
            ["10.9.1.1/32", "10.9.2.0/24", "10.9.3.3/32"]
        );
        // From now on every save fails (as on a full disk): its temporary file cannot be
        // made.
        let blocker = crate::tickets::temp_path(&file);
        std::fs::create_dir(&blocker).unwrap();
        // An expiry: the older list grants nothing beyond what is in force once the
        // expired ticket is gone, so it stays.
        std::thread::sleep(Duration::from_millis(2100));
        c.housekeeping();
        let err = c.save_error.clone().expect("the save failed");
        assert!(
            err.contains("keeps the list saved before, which grants nothing beyond what is in force; it differs from what is in force only by expired tickets"),
            "{err}"
        );
        assert!(file.exists());
        // An add: the older list stays, and only the new ticket is said to be at risk.
        let (ok, text) = ask(&mut c, "exempt add 10.9.7.7 --ttl 2h");
        assert!(ok, "{text}");
        assert!(
            text.contains("\nwarning: exemption tickets not saved to ")
                && text.contains("keeps the list saved before, which grants nothing beyond what is in force; not saved, so a restart now would start without: 10.9.7.7/32 until 20")
                && !text.contains("was removed"),
            "{text}"
        );
        assert_eq!(on_disk(&file), ["10.9.1.1/32", "10.9.2.0/24"]);
        // The stop names exactly what it loses.
        let stop = c.tickets_at_stop();
        assert_eq!(stop.len(), 2, "{stop:?}");
        assert_eq!(
            stop[0],
            format!(
                "2 exemption ticket(s) kept in {} for the next start",
                file.display()
            )
        );
        assert!(
            stop[1].starts_with("exemption ticket 10.9.7.7/32 dropped at shutdown (had "),
            "{stop:?}"
        );
        drop(c);
        // The next start has the older tickets.
        let mut c = control(&dir, TICKETS);
        let (_, list) = ask(&mut c, "exempt list");
        assert!(
            list.contains("10.9.1.1/32 until removed")
                && list.contains("10.9.2.0/24 expires in ")
                && !list.contains("10.9.7.7"),
            "{list}"
        );
        // A delete: the older list would bring the ticket back, so it goes.
        let (ok, text) = ask(&mut c, "exempt del 10.9.1.1");
        assert!(
            ok && text.contains(&format!(
                "{} was removed so no older list comes back (it would grant 10.9.1.1/32 until removed again)",
                file.display()
            )),
            "{text}"
        );
        assert!(!file.exists());
        // Once saves work again, the file holds what is in force.
        std::fs::remove_dir(&blocker).unwrap();
        c.persist();
        assert!(c.save_error.is_none());
        assert_eq!(on_disk(&file), ["10.9.2.0/24"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_reload_says_the_tickets_file_changed_only_when_the_config_changed_it() {
        let dir = op25b_dataplane::testkit::scratch_dir("live-tickets-unchanged");
        let mut c = control(&dir, TICKETS);
        // As when the configured file could not be used at start: no file this run.
        c.tickets_file = None;
        let (ok, text) = c.reload("test");
        assert!(ok, "{text}");
        assert!(!text.contains("tickets changed"), "{text}");
        // Changed in the config: said.
        let toml = dir.join("op25b.toml");
        let edited = std::fs::read_to_string(&toml)
            .unwrap()
            .replace("state/tickets", "state/other");
        std::fs::write(&toml, edited).unwrap();
        let (ok, text) = c.reload("test");
        assert!(ok, "{text}");
        assert!(text.contains("[control] tickets changed"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_second_appliance_on_the_same_tickets_file_is_refused() {
        let dir = op25b_dataplane::testkit::scratch_dir("live-tickets-lock");
        let c = control(&dir, TICKETS);
        let config = c.config.clone();
        let e = saved_tickets(&config).err().expect("the file is held");
        let file = dir.join("state/tickets");
        assert_eq!(
            e,
            format!(
                "[control] tickets {}: already in use by {} (it holds {}): two appliances saving to one tickets file overwrite each other's tickets; give each appliance its own file, or stop that one first",
                file.display(),
                crate::claim::process(std::process::id()),
                dir.join("state/tickets.lock").display()
            )
        );
        // Free again once the holder is gone.
        drop(c);
        drop(crate::tickets::tests::lock_soon(&file));
        assert!(saved_tickets(&config).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_ticket_that_changes_no_verdict_is_added_and_says_why() {
        let dir = op25b_dataplane::testkit::scratch_dir("live-caveats");
        let mut c = control(
            &dir,
            "[outbound]\ndynamic = [\"10.9.0.0/16\", \"10.9.5.0/28\"]\nexempt = [\"10.9.7.0/24\"]",
        );
        let toml = dir.join("op25b.toml");
        let t = toml.display();
        for (add, note) in [
            // Outside every pool.
            (
                "192.0.2.7",
                "\nnote: no dynamic prefix holds or overlaps 192.0.2.7/32, so it is not blocked and the ticket changes no verdict now (it will once a pool that holds it is added)".to_string(),
            ),
            // No IPv6 pools at all.
            (
                "2001:db8::7",
                "\nnote: the config lists no IPv6 dynamic prefix, so nothing of IPv6 is blocked and the ticket changes no verdict now (it will once a pool that holds 2001:db8::7/128 is added)".to_string(),
            ),
            // Inside a config exempt entry, and equal to one.
            (
                "10.9.7.7",
                format!("\nnote: 10.9.7.7/32 is already exempt in the config: exempt 10.9.7.0/24 ({t}:3) holds it, and no dynamic prefix between them; the ticket changes nothing while that entry stays"),
            ),
            (
                "10.9.7.0/24",
                format!("\nnote: 10.9.7.0/24 is already exempt in the config ({t}:3); the ticket changes nothing while that entry stays"),
            ),
            // Only a longer pool inside it.
            (
                "10.8.0.0/15",
                format!("\nnote: no dynamic prefix holds 10.8.0.0/15, only longer ones inside it, which win for their addresses (see below): the ticket changes no verdict now\nnote: 2 longer dynamic prefix(es) inside it still block their addresses (the longest match wins), e.g. 10.9.0.0/16 ({t}:2); to unblock those"),
            ),
        ] {
            let (ok, text) = ask(&mut c, &format!("exempt add {add}"));
            assert!(ok && text.contains(&note), "{add}: {text}");
        }
        // A ticket that unblocks: no such note, only the one about the pool inside it.
        let (ok, text) = ask(&mut c, "exempt add 10.9.5.0/24");
        assert!(ok, "{text}");
        assert_eq!(
            text.lines().skip(1).collect::<Vec<_>>(),
            [format!("note: 1 longer dynamic prefix(es) inside it still block their addresses (the longest match wins), e.g. 10.9.5.0/28 ({t}:2); to unblock those, ticket the hosts or prefixes longer than them inside them (a ticket equal to a dynamic entry is refused)")]
        );
        let (ok, text) = ask(&mut c, "exempt add 10.9.1.1");
        assert!(ok && !text.contains("note"), "{text}");
        // All of them were added.
        assert_eq!(ask(&mut c, "exempt list").1.lines().count(), 7);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_drop_log_shows_in_status_and_metrics_on_off_or_absent() {
        let dir = op25b_dataplane::testkit::scratch_dir("live-drop-log");
        let line = |c: &mut Control| -> String {
            let (_, status) = ask(c, "status");
            status
                .lines()
                .find_map(|l| l.strip_prefix("drop log: "))
                .unwrap_or_else(|| panic!("no drop log line in {status}"))
                .to_string()
        };
        let gauge = |c: &Control| -> Option<String> {
            c.metrics()
                .lines()
                .find_map(|l| l.strip_prefix("op25b_drop_log_enabled "))
                .map(String::from)
        };
        let mut c = control(&dir, "[outbound]\ndynamic = [\"10.9.0.0/16\"]");
        assert_eq!(line(&mut c), "not configured");
        assert_eq!(gauge(&c), None);
        // Configured, and opened as `run` opens it: written and lost lines are shown.
        let mut c = control(
            &dir,
            "[outbound]\ndynamic = [\"10.9.0.0/16\"]\n[drop_log]\nenabled = true\npath = \"logs/drops.jsonl\"",
        );
        let cfg = c.config.drop_log.clone().unwrap();
        let log = crate::droplog::DropLog::open(cfg.clone(), SystemTime::now()).unwrap();
        let stats = log.stats();
        stats.written.store(5, Ordering::Relaxed);
        stats.write_errors.store(2, Ordering::Relaxed);
        c.drop_log = Some((cfg.clone(), stats.clone()));
        let path = dir.join("logs/drops.jsonl");
        assert_eq!(
            line(&mut c),
            format!(
                "{}: 5 line(s) written, 2 lost (0 to a full queue, 2 to write errors), 0 over the rate limit",
                path.display()
            )
        );
        assert_eq!(gauge(&c).as_deref(), Some("1"));
        *stats.failing.lock().unwrap() = Some((
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_435_445),
            "No space left on device (os error 28)".into(),
        ));
        assert!(line(&mut c).ends_with(
            "; writing FAILS since 2026-11-23T12:04:05Z: No space left on device (os error 28)"
        ));
        // Configured but off this run: still seen, with why.
        c.drop_log = None;
        c.drop_log_failed = Some((cfg, "drop_log.path: it broke".into()));
        assert_eq!(
            line(&mut c),
            format!("{}: OFF this run: drop_log.path: it broke", path.display())
        );
        assert_eq!(gauge(&c).as_deref(), Some("0"));
        assert!(!c.metrics().contains("op25b_drop_log_records_total"));
        // A reload of the same config does not claim [drop_log] changed.
        let (ok, text) = ask(&mut c, "reload");
        assert!(ok && !text.contains("[drop_log] changed"), "{text}");
        drop(log);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_tickets_file_open_to_others_is_tightened_at_start() {
        use std::os::unix::fs::PermissionsExt;
        let dir = op25b_dataplane::testkit::scratch_dir("live-tickets-mode");
        let file = dir.join("state/tickets");
        std::fs::create_dir(dir.join("state")).unwrap();
        std::fs::write(&file, "10.9.1.1/32 never\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut c = control(&dir, TICKETS);
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Nothing else changed: the ticket is in force and the file as it was.
        assert_eq!(ask(&mut c, "exempt list").1, "10.9.1.1/32 until removed");
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "10.9.1.1/32 never\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_expiry_before_2000_is_a_problem_line_kept_in_the_refused_copy() {
        let dir = op25b_dataplane::testkit::scratch_dir("live-tickets-2000");
        let file = dir.join("state/tickets");
        std::fs::create_dir(dir.join("state")).unwrap();
        // A TTL written as a time, a ticket that ended in 2001, and one in force.
        let text = "10.9.1.1/32 7200\n10.9.2.2/32 1000000000\n10.9.3.3/32 never\n";
        std::fs::write(&file, text).unwrap();
        let mut c = control(&dir, TICKETS);
        assert_eq!(ask(&mut c, "exempt list").1, "10.9.3.3/32 until removed");
        // The line is kept in the copy before the file is rewritten with what is in force.
        assert_eq!(
            std::fs::read_to_string(dir.join("state/tickets.refused")).unwrap(),
            text
        );
        assert_eq!(on_disk(&file), ["10.9.3.3/32"]);
        assert!(!std::fs::read_to_string(&file).unwrap().contains("10.9.2.2"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn duplicate_lines_are_merged_and_the_file_rewritten_once() {
        let dir = op25b_dataplane::testkit::scratch_dir("live-tickets-dup");
        let file = dir.join("state/tickets");
        std::fs::create_dir(dir.join("state")).unwrap();
        std::fs::write(
            &file,
            "10.9.1.1/32 2000000000\n10.9.1.1 never\n10.9.3.3/32 never\n",
        )
        .unwrap();
        let mut c = control(&dir, TICKETS);
        assert_eq!(
            ask(&mut c, "exempt list").1,
            "10.9.1.1/32 until removed\n10.9.3.3/32 until removed"
        );
        // Saved merged at once (no `.refused` copy: nothing the merge dropped grants
        // anything the kept line does not).
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.matches("10.9.1.1/32").count(), 1, "{text}");
        assert!(text.contains("10.9.1.1/32 never\n"), "{text}");
        assert!(!dir.join("state/tickets.refused").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
