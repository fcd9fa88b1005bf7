//! The poll-mode worker: rx burst → classify burst → tx burst, with per-worker counters
//! and a latency histogram. Every feeder (pcap replay, live ports, the benchmark) runs
//! frames through this same code.
//!
//! Invariants:
//! - The policy snapshot is taken once per burst, so a burst never sees two policies:
//!   loaded from the handle, or, for DPDK, the one the worker holds while the handle has
//!   published none since ([`Worker::hold`]). A worker holds its last burst's policy
//!   until its next poll; a replaced one is freed only when no worker holds it.
//! - Every received frame gets exactly one verdict and one reason (in place,
//!   [`Worker::judge_indexed`], only the blocked ones are listed, the rest are forwarded;
//!   the reasons are tallied all the same); the counters always satisfy
//!   `rx == tx + dropped` and the reasons add up to `rx`.
//! - Nothing here allocates, locks or makes a syscall per frame: the verdict buffer is
//!   reused, the counters are plain fields owned by this worker and are added once per
//!   burst from the policy's tally, only blocked frames are visited one by one (under
//!   `reject`, one walk over the burst's frames finds them, and each blocked frame's
//!   header is read again to see whether a reset is due), and the burst clock
//!   ([`crate::clock`]) is read twice in a timed burst: one in [`TIME_EVERY`], and the
//!   first under a policy newly met. The monotonic clock the rate limits run on is read
//!   only in a burst that blocks a frame under `reject` or with a drop log, once at most.
//! - The latency histogram holds one sample per frame judged: a timed burst's frames,
//!   and those of the untimed bursts before it, are recorded at its time per frame; the
//!   frames still waiting are recorded at the last timed burst's when the histogram is
//!   read or taken.
//! - [`Worker::judge_bits`] and [`Worker::judge_indexed`] judge and count a burst alike;
//!   the first gives the blocked frames as bits, for a backend that only drops them.
//! - Rate limits (resets, drop-log samples) run on the monotonic clock (`Instant`), read
//!   when the burst's first blocked frame asks, except in [`Worker::classify_capture`],
//!   where they run on the capture's own timestamps, so a replay sends the resets live
//!   traffic at that pace would get, on every run alike.

use crate::bucket::TokenBucket;
use crate::clock::BurstClock;
use crate::hot::HotBlocks;
use crate::policy::{BurstScratch, IndexedScratch, Policy, Reason, Verdict, BITS_BURST};
use crate::port::{Burst, Port, PortError};
use crate::sample::{DropRecord, SampleConfig, Sampler};
use arc_swap::ArcSwap;
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Where workers find the current policy; the control thread swaps it (RCU). The policy
/// is in an `ArcSwap`, next to a count of the policies published in it: a worker that
/// holds a policy ([`Worker::hold`]) checks per burst, with one load of that count,
/// that it is still the current one, instead of loading it from the `ArcSwap` (a full
/// barrier and an atomic read-modify-write when the guard is dropped, about 0.6% of
/// DPDK's rate on net_null, bench/results/dpdk-null.md).
#[derive(Debug)]
pub struct PolicyHandle {
    policy: ArcSwap<Policy>,
    /// Policies swapped or stored in after the first, counted after each is in.
    published: AtomicU64,
}

impl PolicyHandle {
    /// A handle holding `policy`.
    pub fn new(policy: Arc<Policy>) -> PolicyHandle {
        PolicyHandle {
            policy: ArcSwap::new(policy),
            published: AtomicU64::new(0),
        }
    }

    /// A handle holding `policy`.
    pub fn from_pointee(policy: Policy) -> PolicyHandle {
        PolicyHandle::new(Arc::new(policy))
    }

    /// The current policy, for a short look (see `ArcSwap::load`).
    pub fn load(&self) -> arc_swap::Guard<Arc<Policy>> {
        self.policy.load()
    }

    /// The current policy, as a reference of its own.
    pub fn load_full(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// Publishes `policy`; returns the one it replaces, which workers may still hold (see
    /// [`retire`]).
    pub fn swap(&self, policy: Arc<Policy>) -> Arc<Policy> {
        let old = self.policy.swap(policy);
        // After the swap: a worker that sees the new count loads the new policy (or one
        // newer); one that saw the old count holds the old policy one burst longer.
        self.published.fetch_add(1, Ordering::Release);
        old
    }

    /// Publishes `policy`, dropping the one it replaces here once no worker holds it
    /// (tests; the control thread swaps and retires).
    pub fn store(&self, policy: Arc<Policy>) {
        drop(self.swap(policy));
    }

    /// Policies published after the first.
    fn published(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }
}

/// Frames per burst unless configured otherwise (as DPDK's customary 32, doubled: files and
/// rings both profit from larger batches).
pub const DEFAULT_BURST: usize = 64;

/// Highest latency the histogram tracks, in nanoseconds per frame (larger values clamp).
pub const LATENCY_MAX_NS: u64 = 1_000_000_000;

/// One burst in this many is timed for the latency histogram (and every burst judged
/// under a policy newly met); the frames of the others are recorded with the next timed
/// burst, at its time per frame, so the histogram still holds one sample per frame.
/// Reading the clock twice a burst (the time-stamp counter takes tens of cycles to read
/// on AMD's cores) and recording every burst cost DPDK on net_null 1-2% of its rate
/// (bench/results/dpdk-null.md).
pub const TIME_EVERY: u64 = 8;

/// A worker's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counters {
    /// Frames received.
    pub rx: u64,
    /// Frames sent on.
    pub tx: u64,
    /// Frames dropped by policy.
    pub dropped: u64,
    /// Frames blocked by policy but forwarded because the action is `monitor`.
    pub monitored: u64,
    /// Dropped frames handed to the port to answer with a TCP reset (`reject`).
    pub rejected: u64,
    /// Dropped frames that got no reset because the per-worker reset rate was exhausted.
    pub reset_limited: u64,
    /// Dropped frames that `reject` gets no reset for whatever the rate: a reset, a
    /// fragment without a TCP header, a group or loopback address (see
    /// [`crate::wire::rst`]). They take no reset token.
    pub reset_unanswerable: u64,
    /// Bursts processed.
    pub bursts: u64,
    /// Frames per [`Reason`], indexed by [`Reason::index`].
    pub reasons: [u64; Reason::COUNT],
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            rx: 0,
            tx: 0,
            dropped: 0,
            monitored: 0,
            rejected: 0,
            reset_limited: 0,
            reset_unanswerable: 0,
            bursts: 0,
            reasons: [0; Reason::COUNT],
        }
    }
}

impl Counters {
    /// Adds another worker's counters into these.
    pub fn merge(&mut self, other: &Counters) {
        self.rx += other.rx;
        self.tx += other.tx;
        self.dropped += other.dropped;
        self.monitored += other.monitored;
        self.rejected += other.rejected;
        self.reset_limited += other.reset_limited;
        self.reset_unanswerable += other.reset_unanswerable;
        self.bursts += other.bursts;
        for (a, b) in self.reasons.iter_mut().zip(other.reasons.iter()) {
            *a += b;
        }
    }

    /// The count for one reason.
    pub fn reason(&self, r: Reason) -> u64 {
        self.reasons[r.index()]
    }
}

/// Frees a replaced policy off the hot path. A worker may still hold it for the burst in
/// flight, and if that worker dropped the last reference it would spend milliseconds
/// freeing a large table mid-traffic; instead the reaper, one thread for the process
/// started on first use, waits until every worker has moved on (only its reference is
/// left, checked every millisecond while it holds any) and frees it there. Call with
/// what `ArcSwap::swap` returned.
pub fn retire(old: Arc<Policy>) {
    static REAPER: OnceLock<Option<Sender<Arc<Policy>>>> = OnceLock::new();
    let reaper = REAPER.get_or_init(|| {
        let (tx, rx) = channel();
        match std::thread::Builder::new()
            .name("op25b-reaper".into())
            .spawn(move || reap(&rx))
        {
            Ok(_) => Some(tx),
            Err(e) => {
                eprintln!("op25b: warning: cannot start the reaper thread ({e}); old policies are freed by their last reader");
                None
            }
        }
    });
    if let Some(tx) = reaper {
        // The reaper never exits while the sender lives; if it has, `old` is dropped here.
        let _ = tx.send(old);
    }
}

/// The reaper's loop: sleeps on the channel while it holds nothing, otherwise, once a
/// millisecond, drops every held policy that nobody else references any more and that was
/// retired at least [`REAP_AFTER`] ago.
fn reap(rx: &Receiver<Arc<Policy>>) {
    let mut held: Vec<(Instant, Arc<Policy>)> = Vec::new();
    loop {
        if held.is_empty() {
            match rx.recv() {
                Ok(p) => held.push((Instant::now(), p)),
                Err(_) => return,
            }
        }
        std::thread::sleep(REAP_AFTER);
        held.extend(rx.try_iter().map(|p| (Instant::now(), p)));
        held.retain(|(at, p)| Arc::strong_count(p) > 1 || at.elapsed() < REAP_AFTER);
    }
}

/// Least time between retiring a policy and freeing it: freeing unmaps the big tables, and
/// the TLB shootdowns that go with it interrupt every core, so they are kept clear of the
/// workers' first bursts under the new policy (as when a thread was started per retired
/// policy; measured in bench/results/reaper).
const REAP_AFTER: Duration = Duration::from_millis(1);

/// A fresh latency histogram (ns per frame, 3 significant digits).
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, 3).expect("static histogram bounds are valid")
}

/// One poll-mode worker.
#[derive(Debug)]
pub struct Worker {
    /// What follows the judgement of a burst (counters, resets, samples, latency).
    tail: Tail,
    burst: Burst,
    verdicts: Vec<Verdict>,
    reasons: Vec<Reason>,
    scratch: BurstScratch,
    /// For [`Worker::judge_indexed`].
    indexed: IndexedScratch,
    /// Address of the policy the last burst was judged with: a burst under a policy at
    /// another address first prefetches its fields and is judged cold (see
    /// [`BurstScratch::set_cold`]). A new policy that reuses a freed one's address is not
    /// treated so, which costs time only, never a verdict.
    last_policy: usize,
    /// Generation of the policy at `last_policy` (see [`Worker::last_generation`]).
    last_generation: u64,
    /// The policy [`Worker::hold`] last gave out and got back.
    held: Option<Arc<Policy>>,
    /// The address of the handle `held` came from and that handle's published count
    /// when it was loaded.
    held_key: (usize, u64),
    /// Zero of the monotonic clock the rate limits are given (in ns since this instant).
    epoch: Instant,
}

/// The parts of a [`Worker`] that settle a judged burst: apart from its scratch, so the
/// blocked list can be read from one while the other is written.
#[derive(Debug)]
struct Tail {
    counters: Counters,
    latency: Histogram<u64>,
    /// Bounds the resets this worker asks for (`reject_rate` per second), so the
    /// appliance can never be turned into a reflector.
    resets: TokenBucket,
    slot: usize,
    sampler: Option<Sampler>,
    /// What became of each frame of the blocked list, in its order.
    blocked_verdicts: Vec<Verdict>,
    /// What bursts are timed with (the latency histogram).
    clock: BurstClock,
    /// The last timed burst's time per frame, in ns.
    held: u64,
    /// Frames of the bursts judged since the last timed one: recorded with the next timed
    /// burst, at its time per frame, or at `held` when the histogram is read.
    pending: u64,
}

impl Worker {
    /// A worker moving up to `burst_size` frames per burst.
    pub fn new(burst_size: usize) -> Self {
        let burst = Burst::new(burst_size);
        Worker {
            tail: Tail {
                counters: Counters::default(),
                latency: latency_histogram(),
                resets: TokenBucket::default(),
                slot: 0,
                sampler: None,
                blocked_verdicts: Vec::with_capacity(burst.capacity()),
                clock: BurstClock::get(),
                held: 1,
                pending: 0,
            },
            verdicts: Vec::with_capacity(burst.capacity()),
            reasons: Vec::with_capacity(burst.capacity()),
            scratch: BurstScratch::default(),
            indexed: IndexedScratch::default(),
            last_policy: 0,
            last_generation: 0,
            held: None,
            held_key: (0, 0),
            epoch: Instant::now(),
            burst,
        }
    }

    /// This worker samples the segments policy blocks (see [`crate::sample`]); take the
    /// records with [`Worker::drain_samples`] after each burst.
    pub fn with_sampler(mut self, cfg: SampleConfig) -> Self {
        self.tail.sampler = Some(Sampler::new(cfg, self.burst.capacity()));
        self
    }

    /// The drop-log records sampled since the last call (none without a sampler).
    pub fn drain_samples(&mut self) -> impl Iterator<Item = DropRecord> + '_ {
        self.tail.sampler.iter_mut().flat_map(|s| s.drain())
    }

    /// Blocked segments the sampler picked but its rate limit refused.
    pub fn samples_rate_limited(&self) -> u64 {
        self.tail.sampler.as_ref().map_or(0, |s| s.rate_limited)
    }

    /// This worker counts per-prefix hits in row `slot` of a policy's hit counters (see
    /// [`Policy::with_hit_counters`]); each worker sharing a policy needs its own slot.
    pub fn in_slot(mut self, slot: usize) -> Self {
        self.tail.slot = slot;
        self
    }

    /// This worker records the source-table blocks it looks up into its slot of `hot`
    /// while `hot` is recording (see [`crate::hot`]); call after [`Worker::in_slot`].
    pub fn record_hot(mut self, hot: Arc<HotBlocks>) -> Self {
        self.indexed.set_hot(Some((hot.clone(), self.tail.slot)));
        self.scratch.set_hot(Some((hot, self.tail.slot)));
        self
    }

    /// Judges every frame of `burst` with `policy`; the verdicts are returned in burst order.
    #[inline]
    pub fn classify(&mut self, policy: &Policy, burst: &Burst) -> &[Verdict] {
        self.classify_frames(policy, burst.frames())
    }

    /// Judges every frame of a burst read from a capture, as [`Worker::classify`] does,
    /// except that the rate limits (`reject_rate`, the drop log's `rate`) see each blocked
    /// frame at its capture timestamp ([`Burst::time_ns`]) instead of on the monotonic
    /// clock: a replay, which runs far faster (or slower) than the capture was taken,
    /// then answers the frames live traffic would have got resets for, the same on every
    /// run.
    pub fn classify_capture(&mut self, policy: &Policy, burst: &Burst) -> &[Verdict] {
        self.judge(policy, burst.frames(), Some(burst))
    }

    /// Judges a burst of frames that live elsewhere (a backend's own buffers, such as DPDK
    /// mbufs, judged in place); the verdicts are returned in order, one per frame, with the
    /// same counters and latency accounting as [`Worker::classify`].
    #[inline]
    pub fn classify_frames<'a>(
        &mut self,
        policy: &Policy,
        frames: impl Iterator<Item = &'a [u8]> + Clone,
    ) -> &[Verdict] {
        self.judge(policy, frames, None)
    }

    /// Both of the above: `stamps` gives each frame's time for the rate limits, else the
    /// monotonic clock, read once per burst when first needed, does.
    #[inline]
    fn judge<'a>(
        &mut self,
        policy: &Policy,
        frames: impl Iterator<Item = &'a [u8]> + Clone,
        stamps: Option<&Burst>,
    ) -> &[Verdict] {
        // A new policy's tables are not in this core's cache yet; very large ones mostly
        // never are.
        let cold = self.meet(policy);
        let start = self.tail.start(cold);
        self.scratch.set_cold(cold);
        policy.judge_burst(frames.clone(), &mut self.scratch, &mut self.reasons);
        let n = self.reasons.len();
        // One walk over the frames for the whole blocked list (it is in burst order).
        let mut walk = frames.clone().enumerate();
        let at = |f: usize| walk.find(|&(i, _)| i == f).map(|(_, frame)| frame);
        let again = |f: usize| frames.clone().nth(f);
        let epoch = self.epoch;
        self.tail.settle(
            policy,
            (self.scratch.blocked(), self.scratch.tally(), n),
            (at, again),
            |f| stamps.map(|b| b.time_ns(f)),
            epoch,
        );
        // Every frame starts as Forward; only the blocked ones are visited.
        self.verdicts.clear();
        self.verdicts.resize(n, Verdict::Forward);
        if !policy.verdict(Reason::Blocked).forwards() {
            for (&(f, _), &v) in self
                .scratch
                .blocked()
                .iter()
                .zip(&self.tail.blocked_verdicts)
            {
                self.verdicts[f as usize] = v;
            }
        }
        self.tail.time(start, n as u64);
        &self.verdicts
    }

    /// Judges the `n` frames `frame(0)`, …, `frame(n - 1)` of a backend that keeps them in
    /// its own buffers (DPDK mbufs), with the same counters, latency accounting, resets
    /// and samples as [`Worker::classify`], but without a verdict per frame (see
    /// [`Policy::judge_indexed`]): returns the blocked frames as (index in the burst,
    /// position of the source's match in `dynamic`), in burst order, and what became of
    /// each (`Drop`, `Reject`, or `Forward` under `monitor`). `frame` must give the same
    /// bytes for an index each time it is asked.
    pub fn judge_indexed<'a>(
        &mut self,
        policy: &Policy,
        n: usize,
        frame: impl Fn(usize) -> &'a [u8],
    ) -> (&[(u32, u32)], &[Verdict]) {
        let cold = self.meet(policy);
        let start = self.tail.start(cold);
        self.indexed.set_cold(cold);
        policy.judge_indexed(n, &frame, &mut self.indexed);
        let epoch = self.epoch;
        let at = |f: usize| (f < n).then(|| frame(f));
        self.tail.settle(
            policy,
            (self.indexed.blocked(), self.indexed.tally(), n),
            (at, at),
            |_| None,
            epoch,
        );
        self.tail.time(start, n as u64);
        let blocked = self.indexed.blocked();
        // Backends walk the list alongside the burst: it must be in strictly rising order.
        debug_assert!(blocked.windows(2).all(|w| w[0].0 < w[1].0));
        (blocked, &self.tail.blocked_verdicts)
    }

    /// As [`Worker::judge_indexed`], for a backend that only needs to know which frames to
    /// drop: returns the blocked frames as bits (bit `i % 64` of word `i / 64` for frame
    /// `i`) and how many there are, with the same counters, per-prefix hits and latency
    /// accounting. Setting a bit where a frame is found blocked costs less than listing
    /// the frames with their positions and turning the list into bits
    /// ([`IndexedScratch::set_bits`]). `None`, with nothing judged, when the burst needs
    /// the list: the policy answers blocked frames with resets (`reject`), this worker
    /// samples them for the drop log, or the burst is longer than [`BITS_BURST`]; the
    /// caller then calls [`Worker::judge_indexed`].
    pub fn judge_bits<'a>(
        &mut self,
        policy: &Policy,
        n: usize,
        frame: impl Fn(usize) -> &'a [u8],
    ) -> Option<(&[u64; BITS_BURST / 64], usize)> {
        if n > BITS_BURST
            || self.tail.sampler.is_some()
            || policy.verdict(Reason::Blocked) == Verdict::Reject
        {
            return None;
        }
        let cold = self.meet(policy);
        let start = self.tail.start(cold);
        self.indexed.set_cold(cold);
        self.indexed.set_bits(true);
        policy.judge_indexed(n, &frame, &mut self.indexed);
        self.indexed.set_bits(false);
        let (bits, nblocked) = self.indexed.blocked_bits()?;
        if let Some(hits) = policy.hits() {
            hits.count(self.tail.slot, self.indexed.blocked_positions());
        }
        self.tail.count(policy, self.indexed.tally(), n, nblocked);
        self.tail.time(start, n as u64);
        Some((bits, nblocked))
    }

    /// The current policy of `handle`, for one burst, to give back with
    /// [`Worker::give_back`] after it: the one given back last if `handle` has published
    /// none since (one load of its count), else loaded anew (the one held until then is
    /// let go here: the control thread, which waits for workers to let go of a replaced
    /// policy, or the reaper frees it). A worker so holds the policy of its last burst
    /// until its next poll, as a burst never sees two policies.
    pub fn hold(&mut self, handle: &PolicyHandle) -> Arc<Policy> {
        let key = (std::ptr::from_ref(handle) as usize, handle.published());
        match self.held.take() {
            Some(policy) if self.held_key == key => policy,
            _ => {
                self.held_key = key;
                handle.load_full()
            }
        }
    }

    /// Gives back the policy [`Worker::hold`] gave out, for the next burst.
    pub fn give_back(&mut self, policy: Arc<Policy>) {
        self.held = Some(policy);
    }

    /// Notes the policy a burst is judged with; returns whether its tables are to be read
    /// as cold: a policy met for the first time (its fields are then prefetched), or one
    /// whose tables never stay in cache.
    #[inline]
    fn meet(&mut self, policy: &Policy) -> bool {
        let at = std::ptr::from_ref(policy) as usize;
        let fresh = at != self.last_policy;
        if fresh {
            self.last_policy = at;
            policy.prefetch_fields();
            self.last_generation = policy.generation();
        }
        fresh || policy.always_cold()
    }

    /// The generation of the policy the last burst was judged under (0 before any), for
    /// benchmarks that time bursts around a swap. It is read when a burst meets a policy
    /// at a new address, as the cold flag is: a new policy that reuses a freed one's
    /// address (possible only after a worker sat idle through two swaps) keeps the old
    /// generation here. Read every burst instead, it cost 3–4% of the judge on 64 hot
    /// frames (`classify`, 3 alternating pairs).
    pub fn last_generation(&self) -> u64 {
        self.last_generation
    }

    /// One poll: receive a burst from `port`, judge it with the current policy, emit it.
    /// Returns the number of frames moved (0: nothing arrived).
    pub fn poll<P: Port + ?Sized>(
        &mut self,
        policy: &PolicyHandle,
        port: &mut P,
    ) -> Result<usize, PortError> {
        let mut burst = std::mem::replace(&mut self.burst, Burst::new(0));
        let result = (|| {
            let n = port.rx_burst(&mut burst)?;
            if n == 0 {
                return Ok(0);
            }
            let snapshot = policy.load();
            let verdicts = self.classify(&snapshot, &burst);
            port.tx_burst(&burst, verdicts)?;
            Ok(n)
        })();
        self.burst = burst;
        result
    }

    /// Polls until the port's input has ended.
    pub fn run_to_end<P: Port + ?Sized>(
        &mut self,
        policy: &PolicyHandle,
        port: &mut P,
    ) -> Result<(), PortError> {
        loop {
            let n = self.poll(policy, port)?;
            if n == 0 && port.is_finished() {
                return Ok(());
            }
        }
    }

    /// This worker's counters.
    pub fn counters(&self) -> &Counters {
        &self.tail.counters
    }

    /// Whether every verdict the last burst judged by `classify*` got was Forward (nothing
    /// blocked, or the action is `monitor`), given the `policy` that burst was judged with:
    /// a backend can then send the burst on as it came, without splitting it by verdict.
    /// ([`Worker::judge_indexed`] returns its blocked list instead.)
    pub fn forwards_all(&self, policy: &Policy) -> bool {
        self.scratch.blocked().is_empty() || policy.verdict(Reason::Blocked).forwards()
    }

    /// The verdicts of the last burst judged by `classify*`, in burst order.
    pub fn verdicts(&self) -> &[Verdict] {
        &self.verdicts
    }

    /// This worker's latency histogram (ns of judging time per frame, one sample per frame
    /// judged; see [`TIME_EVERY`] for which bursts are timed).
    pub fn latency(&mut self) -> &Histogram<u64> {
        self.tail.settle_latency()
    }

    /// Hands over the latency samples gathered since the last call and starts afresh (for
    /// periodic snapshots to the control thread; allocates one histogram per call).
    pub fn take_latency(&mut self) -> Histogram<u64> {
        std::mem::replace(self.tail.settle_latency(), latency_histogram())
    }
}

impl Tail {
    /// Settles a judged burst of `n` frames from its blocked list (in burst order) and
    /// tally: per-prefix hits, counters, what becomes of each blocked frame (into
    /// `blocked_verdicts`: resets are due only where [`crate::wire::rst::reset_due`] says
    /// so and the bucket allows), and drop-log samples. `at` gives the frames of the
    /// blocked list, asked in burst order; `again`, a frame asked again for a sample.
    /// `stamp` gives a frame's time for the rate limits if it has its own, else the
    /// monotonic clock does (since `epoch`, read once, when first needed).
    #[inline]
    fn settle<'a>(
        &mut self,
        policy: &Policy,
        (blocked, tally, n): (&[(u32, u32)], &[u32; Reason::COUNT], usize),
        (mut at, mut again): (
            impl FnMut(usize) -> Option<&'a [u8]>,
            impl FnMut(usize) -> Option<&'a [u8]>,
        ),
        stamp: impl Fn(usize) -> Option<u64>,
        epoch: Instant,
    ) {
        let wall = std::cell::OnceCell::new();
        let time_of = |f: usize| {
            stamp(f).unwrap_or_else(|| *wall.get_or_init(|| epoch.elapsed().as_nanos() as u64))
        };
        if let Some(hits) = policy.hits() {
            hits.count(self.slot, blocked.iter().map(|&(_, p)| p));
        }
        self.count(policy, tally, n, blocked.len());
        let c = &mut self.counters;
        let out = &mut self.blocked_verdicts;
        out.clear();
        match policy.verdict(Reason::Blocked) {
            v @ (Verdict::Forward | Verdict::Drop) => out.resize(blocked.len(), v),
            Verdict::Reject => {
                for &(f, _) in blocked {
                    let f = f as usize;
                    // Only a frame a reset is due for may spend a token.
                    let due = at(f).is_some_and(crate::wire::rst::reset_due);
                    out.push(if !due {
                        c.reset_unanswerable += 1;
                        Verdict::Drop
                    } else if self.resets.take(policy.reject_rate(), time_of(f)) {
                        c.rejected += 1;
                        Verdict::Reject
                    } else {
                        c.reset_limited += 1;
                        Verdict::Drop
                    });
                }
            }
        }
        if let Some(s) = &mut self.sampler {
            for (&(f, dynamic), &verdict) in blocked.iter().zip(out.iter()) {
                if s.pick(time_of(f as usize)) {
                    // Sampled segments are few (bounded by the rate): asking for the frame
                    // again, and parsing it again for its reason, is cheap.
                    if let Some(frame) = again(f as usize) {
                        s.record(
                            frame,
                            policy.generation(),
                            (blocked_reason(frame), verdict, dynamic),
                        );
                    }
                }
            }
        }
    }

    /// Adds a judged burst of `n` frames, `nblocked` of them blocked, to the counters:
    /// its reasons (tallied per burst, not per frame), what became of the blocked frames
    /// as a whole (monitored, or dropped whether or not a reset answers them), frames in
    /// and out, and the burst.
    #[inline]
    fn count(&mut self, policy: &Policy, tally: &[u32; Reason::COUNT], n: usize, nblocked: usize) {
        let c = &mut self.counters;
        for (total, &k) in c.reasons.iter_mut().zip(tally) {
            *total += u64::from(k);
        }
        let nblocked = nblocked as u64;
        let forwards = policy.verdict(Reason::Blocked).forwards();
        if forwards {
            c.monitored += nblocked;
        } else {
            c.dropped += nblocked;
        }
        c.rx += n as u64;
        c.tx += n as u64 - if forwards { 0 } else { nblocked };
        c.bursts += 1;
    }

    /// Starts a burst's clock if the burst is timed: one in [`TIME_EVERY`], and any judged
    /// `cold` (the first under a new policy, whose time is the one a reload shows in).
    #[inline]
    fn start(&self, cold: bool) -> Option<crate::clock::Mark> {
        (cold || self.counters.bursts.is_multiple_of(TIME_EVERY)).then(|| self.clock.mark())
    }

    /// Accounts the burst's `n` frames to the latency histogram: if it was timed (since
    /// `start`), they and the pending frames of the untimed bursts before it are recorded
    /// at its time per frame; else they wait with those.
    #[inline]
    fn time(&mut self, start: Option<crate::clock::Mark>, n: u64) {
        match start.and_then(|s| self.clock.ns_since(s).checked_div(n)) {
            Some(per_frame) => {
                self.held = per_frame.clamp(1, LATENCY_MAX_NS);
                // Cannot fail: the value is clamped into the histogram's range.
                let _ = self.latency.record_n(self.held, n + self.pending);
                self.pending = 0;
            }
            None => self.pending += n,
        }
    }

    /// Records the pending frames (see [`Tail::time`]) at the last timed burst's time per
    /// frame, so the histogram holds one sample per frame judged.
    fn settle_latency(&mut self) -> &mut Histogram<u64> {
        if self.pending > 0 {
            let _ = self.latency.record_n(self.held, self.pending);
            self.pending = 0;
        }
        &mut self.latency
    }
}

/// The reason a blocked frame was blocked for: an overlapping fragment's own, else
/// [`Reason::Blocked`] (as the judge found it).
fn blocked_reason(frame: &[u8]) -> Reason {
    match crate::wire::parse(frame) {
        Ok(k) if k.transport == crate::wire::Transport::Ipv4OverlapFragment => {
            Reason::BlockedOverlapFragment
        }
        _ => Reason::Blocked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Action, AnyPrefix, OutboundSpec};
    use crate::port::mem::MemPort;
    use crate::wire::build::FrameBuilder;

    #[test]
    fn one_reaper_frees_each_retired_policy_once_its_last_reader_lets_go() {
        let reapers = || {
            std::fs::read_dir("/proc/self/task")
                .map(|d| {
                    d.flatten()
                        .filter(|t| {
                            std::fs::read_to_string(t.path().join("comm"))
                                .is_ok_and(|c| c.trim() == "op25b-reaper")
                        })
                        .count()
                })
                .expect("/proc/self/task lists this process's threads")
        };
        let policies: Vec<Arc<Policy>> = (0..5)
            .map(|g| Arc::new(Policy::empty_with_generation(g)))
            .collect();
        let readers: Vec<Arc<Policy>> = policies.iter().map(Arc::clone).collect();
        let watch: Vec<std::sync::Weak<Policy>> = policies.iter().map(Arc::downgrade).collect();
        for p in policies {
            retire(p);
        }
        std::thread::sleep(Duration::from_millis(20));
        // Still read: nothing freed (the reader's reference and the reaper's).
        assert!(watch.iter().all(|w| w.strong_count() == 2));
        assert_eq!(
            reapers(),
            1,
            "one reaper thread for any number of retired policies"
        );
        drop(readers);
        let t = Instant::now();
        while watch.iter().any(|w| w.strong_count() > 0) {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "the reaper freed nothing"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(reapers(), 1);
    }

    /// Port 25 blocked from 10.0.0.0/8 under `action`.
    fn spec(action: Action) -> OutboundSpec {
        OutboundSpec {
            ports: vec![25],
            action,
            dynamic: vec![AnyPrefix::V4(
                crate::lpm::Prefix::new(0x0a00_0000, 8).unwrap(),
            )],
            ..OutboundSpec::default()
        }
    }

    fn policy(action: Action) -> PolicyHandle {
        PolicyHandle::new(Arc::new(Policy::build(spec(action), 1).unwrap().0))
    }

    fn frames() -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        for i in 0..100u16 {
            let dport = if i % 3 == 0 { 25 } else { 443 };
            let src = if i % 2 == 0 { "10.0.0.1" } else { "192.0.2.1" };
            v.push(
                FrameBuilder::tcp(
                    src.parse().unwrap(),
                    "198.51.100.7".parse().unwrap(),
                    1000 + i,
                    dport,
                )
                .build(),
            );
        }
        v.push(vec![0u8; 5]);
        v
    }

    #[test]
    fn every_frame_leaves_once_and_counters_add_up() {
        let handle = policy(Action::Drop);
        let mut port = MemPort::new(frames(), 3).with_log();
        let mut w = Worker::new(7);
        w.run_to_end(&handle, &mut port).unwrap();
        let c = w.counters();
        assert_eq!(c.rx, 303);
        assert_eq!(c.rx, c.tx + c.dropped);
        assert_eq!(c.reasons.iter().sum::<u64>(), c.rx);
        // i % 6 == 0: dynamic source to port 25 → 17 frames per round.
        assert_eq!(c.dropped, 51);
        assert_eq!(c.reason(Reason::Blocked), 51);
        assert_eq!(c.reason(Reason::Skip(crate::wire::Skip::TruncatedL2)), 3);
        assert_eq!(port.dropped, 51);
        assert_eq!(port.log.as_ref().unwrap().len(), 303);
        assert_eq!(c.bursts, 303u64.div_ceil(7));
        // 44 bursts, 6 of them timed (one in TIME_EVERY): one sample per frame all the same.
        assert_eq!(w.latency().len(), 303);
    }

    #[test]
    fn reject_spends_reset_tokens_only_on_frames_a_reset_is_due_for() {
        let spec = OutboundSpec {
            reject_rate: Some(2),
            ..spec(Action::Reject)
        };
        let p = Policy::build(spec, 1).unwrap().0;
        let tcp = |src: &str, dst: &str| {
            FrameBuilder::tcp(src.parse().unwrap(), dst.parse().unwrap(), 4000, 25)
        };
        let syn = tcp("10.0.0.1", "198.51.100.7").build();
        let mut rst = syn.clone();
        rst[14 + 20 + 13] = 0x04; // plain IPv4: the TCP flags
        let overlap = tcp("10.0.0.1", "198.51.100.7")
            .ipv4_fragment(1, false)
            .build();
        let to_broadcast = tcp("10.0.0.1", "255.255.255.255").build();
        let mut burst = Burst::new(64);
        for f in [&rst, &overlap, &to_broadcast, &syn, &rst, &syn, &syn] {
            burst.push(f);
        }
        let mut w = Worker::new(64);
        use Verdict::{Drop, Reject};
        assert_eq!(
            w.classify(&p, &burst),
            &[Drop, Drop, Drop, Reject, Drop, Reject, Drop]
        );
        let c = w.counters();
        assert_eq!((c.dropped, c.rejected), (7, 2));
        assert_eq!((c.reset_unanswerable, c.reset_limited), (4, 1));
    }

    #[test]
    fn switching_policies_between_bursts_judges_each_burst_by_its_own() {
        let drop = policy(Action::Drop);
        let monitor = policy(Action::Monitor);
        let mut w = Worker::new(64);
        let mut burst = Burst::new(64);
        for f in frames().iter().take(12) {
            burst.push(f);
        }
        let blocked = |v: &[Verdict]| v.iter().filter(|&&v| v == Verdict::Drop).count();
        // i % 6 == 0 of the first 12 frames: a dynamic source to port 25.
        for (handle, want) in [(&drop, 2), (&monitor, 0), (&monitor, 0), (&drop, 2)] {
            let p = handle.load();
            assert_eq!(blocked(w.classify(&p, &burst)), want);
            assert_eq!(w.last_policy, std::ptr::from_ref::<Policy>(&p) as usize);
            assert_eq!(w.forwards_all(&p), want == 0);
            assert_eq!(w.verdicts().len(), 12);
        }
        assert_eq!(w.counters().reason(Reason::Blocked), 8);
        assert_eq!(w.counters().monitored, 4);
    }

    #[test]
    fn forwards_all_says_whether_every_verdict_of_the_last_burst_was_forward() {
        let drop = policy(Action::Drop).load_full();
        let mut w = Worker::new(64);
        let all = frames();
        // i % 6 == 0 is a dynamic source to port 25: frames 1..6 hold none of them.
        for (range, want) in [(1..6, true), (0..6, false), (1..6, true), (5..7, false)] {
            let mut burst = Burst::new(64);
            for f in &all[range] {
                burst.push(f);
            }
            let forwarded = w.classify(&drop, &burst).iter().all(|v| v.forwards());
            assert_eq!(forwarded, want);
            assert_eq!(w.forwards_all(&drop), want);
        }
    }

    #[test]
    fn blocked_segments_are_counted_per_dynamic_prefix_and_slot() {
        let spec = OutboundSpec {
            ports: vec![25],
            action: Action::Monitor,
            dynamic: vec![
                AnyPrefix::V4(crate::lpm::Prefix::new(0x0a00_0000, 8).unwrap()),
                AnyPrefix::V4(crate::lpm::Prefix::new(0xc000_0200, 24).unwrap()),
            ],
            ..OutboundSpec::default()
        };
        let p = Policy::build(spec, 1).unwrap().0.with_hit_counters(2);
        let handle = PolicyHandle::new(Arc::new(p));
        let mut a = Worker::new(16);
        let mut b = Worker::new(16).in_slot(1);
        a.run_to_end(&handle, &mut MemPort::new(frames(), 1))
            .unwrap();
        b.run_to_end(&handle, &mut MemPort::new(frames(), 2))
            .unwrap();
        // Per round: i % 6 == 0 → 10.0.0.1 (17 frames), i % 6 == 3 → 192.0.2.1 (17 frames).
        let p = handle.load();
        let h = p.hits().unwrap();
        assert_eq!((h.total(0), h.total(1)), (51, 51));
        assert_eq!(
            p.dynamic_hits(),
            vec![(p.spec().dynamic[0], 51), (p.spec().dynamic[1], 51)]
        );
        assert_eq!(a.counters().monitored + b.counters().monitored, 102);
    }

    #[test]
    fn sampled_blocked_segments_carry_their_outcome_and_pool() {
        for (action, verdict) in [
            (Action::Drop, Verdict::Drop),
            (Action::Monitor, Verdict::Forward),
        ] {
            let handle = policy(action);
            let mut w = Worker::new(16).with_sampler(SampleConfig {
                every: 2,
                rate: 1000,
                keep_v4: 16,
                keep_v6: 48,
            });
            let mut port = MemPort::new(frames(), 1);
            let mut got = Vec::new();
            while w.poll(&handle, &mut port).unwrap() > 0 {
                got.extend(w.drain_samples());
            }
            // 17 blocked segments, one in two kept.
            assert_eq!(got.len(), 8);
            for r in &got {
                assert_eq!(
                    (r.verdict, r.reason, r.dynamic, r.generation),
                    (verdict, Reason::Blocked, 0, 1)
                );
                assert_eq!(
                    r.key.addrs,
                    crate::wire::Addrs::V4 {
                        src: 0x0a00_0000,
                        dst: 0xc633_0000
                    }
                );
            }
        }
    }

    #[test]
    fn the_indexed_judge_settles_bursts_as_classify_does() {
        let tcp = |src: &str, dst: &str, dport: u16| {
            FrameBuilder::tcp(src.parse().unwrap(), dst.parse().unwrap(), 4000, dport)
        };
        let syn = tcp("10.0.0.1", "198.51.100.7", 25).build();
        let mut rst = syn.clone();
        // Plain IPv4: the TCP flags.
        rst[14 + 20 + 13] = 0x04;
        // Plain frames and others (tagged, an overlap fragment, one too short) mixed.
        let mut all = vec![
            rst.clone(),
            tcp("10.0.0.1", "198.51.100.7", 25)
                .ipv4_fragment(1, false)
                .build(),
            tcp("10.0.0.1", "255.255.255.255", 25).build(),
            tcp("10.0.0.2", "198.51.100.9", 25).vlan(0x8100, 7).build(),
            syn.clone(),
            rst,
            syn,
        ];
        all.extend(frames());
        for action in [Action::Drop, Action::Reject, Action::Monitor] {
            let spec = OutboundSpec {
                // One reset a second: each worker's bucket runs on its own clock, and
                // only a pause of a second between them could refill one but not the other.
                reject_rate: Some(1),
                ..spec(action)
            };
            let p = Policy::build(spec, 1).unwrap().0.with_hit_counters(2);
            let sampler = SampleConfig {
                every: 1,
                rate: 1000,
                keep_v4: 32,
                keep_v6: 128,
            };
            let mut by_frame = Worker::new(64).with_sampler(sampler);
            let mut indexed = Worker::new(64).with_sampler(sampler).in_slot(1);
            for burst in all.chunks(40) {
                let mut b = Burst::new(64);
                for f in burst {
                    b.push(f);
                }
                let want = by_frame.classify(&p, &b).to_vec();
                let (blocked, verdicts) = indexed.judge_indexed(&p, burst.len(), |i| &burst[i]);
                let mut got = vec![Verdict::Forward; burst.len()];
                for (&(f, _), &v) in blocked.iter().zip(verdicts) {
                    got[f as usize] = v;
                }
                assert_eq!(got, want, "{action:?}");
                // The same records, but for the time they were taken.
                let samples = |w: &mut Worker| {
                    w.drain_samples()
                        .map(|r| (r.reason, r.verdict, r.key, r.dynamic))
                        .collect::<Vec<_>>()
                };
                let (a, b) = (samples(&mut by_frame), samples(&mut indexed));
                assert!(!a.is_empty());
                assert_eq!(a, b, "{action:?}");
            }
            assert_eq!(by_frame.counters(), indexed.counters(), "{action:?}");
            let c = indexed.counters();
            // Each worker counted every blocked segment against the one dynamic prefix.
            let blocked = c.reason(Reason::Blocked) + c.reason(Reason::BlockedOverlapFragment);
            assert_eq!(p.hits().unwrap().total(0), 2 * blocked, "{action:?}");
            assert!(c.reason(Reason::BlockedOverlapFragment) > 0 && c.reason(Reason::Blocked) > 0);
            if action == Action::Reject {
                assert!(c.rejected > 0 && c.reset_unanswerable > 0 && c.reset_limited > 0);
            }
            assert_eq!(indexed.latency().len(), all.len() as u64);
        }
    }

    #[test]
    fn judging_into_bits_counts_as_the_list_does() {
        let tcp = |src: &str, dport: u16| {
            FrameBuilder::tcp(
                src.parse().unwrap(),
                "198.51.100.7".parse().unwrap(),
                1,
                dport,
            )
        };
        // Plain frames and others (tagged, an overlap fragment) mixed.
        let mut all = vec![
            tcp("10.0.0.1", 25).ipv4_fragment(1, false).build(),
            tcp("10.0.0.2", 25).vlan(0x8100, 7).build(),
            tcp("10.0.0.3", 25).build(),
        ];
        all.extend(frames());
        for action in [Action::Drop, Action::Monitor, Action::Reject] {
            let p = Policy::build(spec(action), 1)
                .unwrap()
                .0
                .with_hit_counters(2);
            let mut listed = Worker::new(64);
            let mut bits = Worker::new(64).in_slot(1);
            for burst in all.chunks(40) {
                let want: Vec<u32> = listed
                    .judge_indexed(&p, burst.len(), |i| &burst[i])
                    .0
                    .iter()
                    .map(|&(f, _)| f)
                    .collect();
                let got = bits.judge_bits(&p, burst.len(), |i| &burst[i]);
                if action == Action::Reject {
                    // Resets need the list.
                    assert_eq!(got, None);
                    continue;
                }
                let (got, count) = got.unwrap();
                let got: Vec<u32> = (0..BITS_BURST as u32)
                    .filter(|&f| got[f as usize / 64] >> (f % 64) & 1 == 1)
                    .collect();
                assert_eq!(got, want, "{action:?}");
                assert_eq!(count, want.len());
            }
            if action == Action::Reject {
                continue;
            }
            assert_eq!(listed.counters(), bits.counters(), "{action:?}");
            let c = bits.counters();
            // Each worker counted every blocked segment against the one dynamic prefix.
            let blocked = c.reason(Reason::Blocked) + c.reason(Reason::BlockedOverlapFragment);
            assert!(c.reason(Reason::BlockedOverlapFragment) > 0 && c.reason(Reason::Blocked) > 0);
            assert_eq!(p.hits().unwrap().total(0), 2 * blocked, "{action:?}");
            assert_eq!(bits.latency().len(), all.len() as u64);
        }
        // A worker that samples blocked segments for the drop log needs the list, as does a
        // burst longer than the bits.
        let p = policy(Action::Drop).load_full();
        let sampler = SampleConfig {
            every: 1,
            rate: 1000,
            keep_v4: 32,
            keep_v6: 128,
        };
        let mut sampling = Worker::new(64).with_sampler(sampler);
        assert_eq!(sampling.judge_bits(&p, 3, |i| &all[i]), None);
        let long: Vec<&[u8]> = all
            .iter()
            .cycle()
            .take(BITS_BURST + 1)
            .map(|f| &f[..])
            .collect();
        let mut w = Worker::new(64);
        assert_eq!(w.judge_bits(&p, long.len(), |i| long[i]), None);
        // Nothing was judged or counted.
        assert_eq!(sampling.counters().rx + w.counters().rx, 0);
    }

    #[test]
    fn one_burst_in_time_every_is_timed_and_each_first_under_a_new_policy() {
        let (a, b) = (
            policy(Action::Drop).load_full(),
            policy(Action::Drop).load_full(),
        );
        let all = frames();
        let mut w = Worker::new(64);
        let judge = |w: &mut Worker, p: &Policy, n: usize| {
            w.judge_indexed(p, n, |i| &all[i]);
        };
        // The first burst is timed, the next TIME_EVERY - 1 wait for the next timed one.
        judge(&mut w, &a, 5);
        assert_eq!((w.tail.pending, w.tail.latency.len()), (0, 5));
        for k in 1..TIME_EVERY {
            judge(&mut w, &a, 3);
            assert_eq!(w.tail.pending, 3 * k);
        }
        judge(&mut w, &a, 2);
        assert_eq!(
            (w.tail.pending, w.tail.latency.len()),
            (0, 5 + 3 * (TIME_EVERY - 1) + 2)
        );
        // A burst under a policy met for the first time is timed whatever the count.
        judge(&mut w, &a, 4);
        assert_eq!(w.tail.pending, 4);
        judge(&mut w, &b, 1);
        assert_eq!(w.tail.pending, 0);
        // The untimed bursts' frames are recorded when the histogram is read or taken.
        judge(&mut w, &b, 6);
        assert_eq!(w.tail.pending, 6);
        let before = w.tail.latency.len();
        assert_eq!(w.latency().len(), before + 6);
        judge(&mut w, &b, 7);
        assert_eq!(w.take_latency().len(), before + 6 + 7);
        assert_eq!(w.tail.pending, 0);
    }

    #[test]
    fn a_held_policy_is_the_current_one_and_let_go_after_a_swap() {
        let handle = policy(Action::Drop);
        let mut w = Worker::new(8);
        let first = w.hold(&handle);
        assert!(Arc::ptr_eq(&first, &handle.load_full()));
        w.give_back(first);
        let again = w.hold(&handle);
        // The handle's and the worker's.
        assert_eq!(Arc::strong_count(&again), 2);
        w.give_back(again);
        let next = policy(Action::Monitor).load_full();
        let old = handle.swap(next.clone());
        // Held until the worker's next burst, then let go.
        assert_eq!(Arc::strong_count(&old), 2);
        let now = w.hold(&handle);
        assert!(Arc::ptr_eq(&now, &next));
        assert_eq!(Arc::strong_count(&old), 1);
        w.give_back(now);
        // A policy held from one handle is not given out for another.
        let other = policy(Action::Reject);
        let theirs = w.hold(&other);
        assert!(Arc::ptr_eq(&theirs, &other.load_full()));
        w.give_back(theirs);
        assert!(Arc::ptr_eq(&w.hold(&handle), &next));
    }

    #[test]
    fn monitor_forwards_and_counts() {
        let handle = policy(Action::Monitor);
        let mut port = MemPort::new(frames(), 1);
        let mut w = Worker::new(64);
        w.run_to_end(&handle, &mut port).unwrap();
        assert_eq!(w.counters().dropped, 0);
        assert_eq!(w.counters().monitored, 17);
        assert_eq!(port.forwarded, 101);
    }

    #[test]
    fn a_swap_between_bursts_takes_effect_on_the_next_burst() {
        let handle = policy(Action::Drop);
        let f = FrameBuilder::tcp(
            "10.0.0.1".parse().unwrap(),
            "198.51.100.7".parse().unwrap(),
            1,
            25,
        )
        .build();
        let mut port = MemPort::new(vec![f], 2).with_log();
        let mut w = Worker::new(1);
        w.poll(&handle, &mut port).unwrap();
        handle.store(Arc::new(Policy::empty()));
        w.poll(&handle, &mut port).unwrap();
        assert_eq!(port.log.unwrap(), vec![Verdict::Drop, Verdict::Forward]);
    }
}
