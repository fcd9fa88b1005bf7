//! `op25b-bench live-swap`: the worker stall of a policy swap on the appliance's live
//! kernel paths (AF_PACKET, and AF_XDP when built with it) on the veth testbed, where a
//! burst is what `op25b run`'s worker does: receive from `acc0`'s ring, judge, send out
//! of `core0`.
//!
//! Topology as `veth`: generator namespace (`gen0`) → `acc0` | appliance namespace |
//! `core0` → sink namespace (`snk0`). The generator sends 64-byte frames of the 1M-prefix
//! pools (sources inside the IPv4 pools half the time, half of them to port 25) at
//! `--rate` (500 kpps by default) and nice -19 on the control core; the kernel hands them
//! to the worker a TPACKET_V3 block at a time, so its bursts are mostly full. This process re-runs itself in
//! the appliance namespace (`live-swap --worker`), where one worker polls the wire and a
//! control thread swaps policies in, as `dpdk-swap` does on net_null
//! ([`crate::swap::on_live_path`]).
//!
//! Invariants: every number comes from this run; the namespaces are gone when it ends
//! (also on error); a machine that cannot run it (no `ip netns`, not root) gets an error
//! that says so, never a figure.

use crate::swap::{live_frames, on_live_path, LiveArgs};
use op25b_dataplane::port::af_packet::{Direction, WirePort};
use op25b_dataplane::port::pcap::PcapWriter;
use op25b_dataplane::port::{Burst, Port};
use op25b_testbed::{Reaped, Wire};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Instant;

/// Distinct frames in the generator's capture (sent over and over).
const FRAMES: usize = 4096;

/// What to run (the `live-swap` command line).
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Scratch folder (the generator's capture).
    #[arg(long, default_value = "out/live-swap")]
    pub out_dir: PathBuf,
    /// Prefixes per policy.
    #[arg(long, default_value_t = 1_000_000)]
    pub prefixes: usize,
    /// Swaps to make.
    #[arg(long, default_value_t = 15)]
    pub swaps: usize,
    /// `af_packet` or `af_xdp` (op25b-bench built with --features af_xdp).
    #[arg(long, default_value = "af_packet", value_parser = ["af_packet", "af_xdp"])]
    pub backend: String,
    /// The worker's core.
    #[arg(long, default_value_t = 1)]
    pub core: usize,
    /// The control thread's core.
    #[arg(long, default_value_t = 0)]
    pub control_core: usize,
    /// Frames per second the generator sends (it runs at nice -19 on the control
    /// thread's core, so that the control thread's builds do not pause the traffic;
    /// at this rate the control thread keeps about half of that core).
    #[arg(long, default_value_t = 500_000)]
    pub rate: u64,
}

/// The worker side, inside the appliance namespace: opens `acc0`/`core0` with `backend`
/// and measures ([`on_live_path`]).
pub fn worker(a: &Args) -> Result<Value, String> {
    let live = LiveArgs {
        prefixes: a.prefixes,
        swaps: a.swaps,
        control_core: a.control_core,
        burst: 64,
        coarse_pools: false,
        direct: a.backend == "dpdk",
    };
    let pin = || {
        op25b_dataplane::port::sys::pin_current_thread(a.core)
            .map_err(|e| format!("cannot pin to core {}: {e}", a.core))
    };
    let mut v = match a.backend.as_str() {
        "af_packet" => {
            let mut port = WirePort::open("acc0", "core0", None, false)
                .map_err(|e| format!("AF_PACKET on acc0/core0: {e}"))?;
            port.set_direction(Direction::AccessToCore);
            pin()?;
            // The steps of `Worker::poll`, with the judge timed apart.
            let mut burst = Burst::new(live.burst);
            on_live_path(&live, |w, h| {
                let n = port.rx_burst(&mut burst).unwrap_or(0);
                if n == 0 {
                    return (0, None);
                }
                let policy = h.load();
                let t = Instant::now();
                let verdicts = w.classify(&policy, &burst);
                let judge = t.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32;
                let _ = port.tx_burst(&burst, verdicts);
                (n, Some(judge.max(1)))
            })?
        }
        #[cfg(feature = "af_xdp")]
        "af_xdp" => {
            let mut wire = op25b_dataplane::port::af_xdp::open_wire("acc0", "core0", 1, 64, None)
                .map_err(|e| format!("AF_XDP on acc0/core0: {e}"))?
                .pop()
                .ok_or("AF_XDP opened no queue")?;
            wire.set_direction(op25b_dataplane::port::af_packet::Direction::AccessToCore);
            pin()?;
            on_live_path(&live, |w, h| (wire.poll(w, h), None))?
        }
        #[cfg(not(feature = "af_xdp"))]
        "af_xdp" => return Err(
            "this op25b-bench was built without AF_XDP support: rebuild with `--features af_xdp`"
                .into(),
        ),
        other => return Err(format!("--backend {other}: give af_packet or af_xdp")),
    };
    v["bench"] = json!("live-swap");
    v["backend"] = json!(a.backend);
    v["core"] = json!(a.core);
    Ok(v)
}

/// Builds the testbed, starts the generator and runs [`worker`] in the appliance
/// namespace.
pub fn run(a: &Args) -> Result<Value, String> {
    if !matches!(a.backend.as_str(), "af_packet" | "af_xdp") {
        return Err(format!("--backend {}: give af_packet or af_xdp", a.backend));
    }
    if a.swaps == 0 {
        return Err("--swaps 0: nothing would be measured; give at least 1".into());
    }
    if let Some(why) = op25b_testbed::unavailable() {
        return Err(format!("the live-swap benchmark {why}"));
    }
    std::fs::create_dir_all(&a.out_dir).map_err(|e| format!("{}: {e}", a.out_dir.display()))?;
    let bench = std::env::current_exe().map_err(|e| e.to_string())?;
    let bench = bench.to_str().ok_or("the bench's path is not UTF-8")?;
    let capture = a.out_dir.join("live-swap.pcap");
    {
        let file =
            std::fs::File::create(&capture).map_err(|e| format!("{}: {e}", capture.display()))?;
        let mut w =
            PcapWriter::new(std::io::BufWriter::new(file), false).map_err(|e| e.to_string())?;
        for (i, f) in live_frames(a.prefixes, FRAMES, 64).iter().enumerate() {
            w.write(i as u64 * 1000, f).map_err(|e| e.to_string())?;
        }
        w.finish().map_err(|e| e.to_string())?;
    }
    let capture = capture.to_str().ok_or("the capture's path is not UTF-8")?;
    let wire = Wire::new("lw", "gen0", "snk0", false);
    // The generator stays off the worker's core (an appliance's worker cores are its
    // own; here the generator stands for the subscribers' machines), on the control
    // thread's, where the control thread's builds slow it as they would slow any other
    // process there.
    let control_core = a.control_core.to_string();
    let rate = a.rate.to_string();
    let _generator = Reaped(Some(
        wire.left
            .command(&[
                "nice",
                "-n",
                "-19",
                "taskset",
                "-c",
                &control_core,
                bench,
                "blast",
                "--iface",
                "gen0",
                "--input",
                capture,
                "--loops",
                "1000000000",
                "--rate",
                &rate,
            ])
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the generator: {e}"))?,
    ));
    let (prefixes, swaps) = (a.prefixes.to_string(), a.swaps.to_string());
    let core = a.core.to_string();
    let out = wire
        .app
        .command(&[
            bench,
            "live-swap",
            "--worker",
            "--backend",
            &a.backend,
            "--prefixes",
            &prefixes,
            "--swaps",
            &swaps,
            "--core",
            &core,
            "--control-core",
            &control_core,
        ])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("starting the worker: {e}"))?;
    if !out.status.success() {
        return Err(format!("the worker failed ({})", out.status));
    }
    let v: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("the worker's result is not JSON: {e}"))?;
    let med = |k: &str, side: &str| -> String {
        v[k][side]["median"]
            .as_f64()
            .map_or("-".into(), |x| format!("{x:.2}"))
    };
    eprintln!(
        "{} swaps of {}-prefix policies on {}: first burst under the new policy {} bursts extra (the judge alone {}), worst of the first 8 {}; control rounds {} ({}), {} (medians; p50 burst {} ns, {:.0}% full)",
        v["swaps_measured"],
        a.prefixes,
        a.backend,
        med("first_burst_extra_vs_bursts_before", "swap"),
        med("first_burst_judge_extra_in_bursts", "swap"),
        med("worst_of_first_8_bursts_extra_vs_bursts_before", "swap"),
        med("first_burst_extra_vs_bursts_before", "control"),
        med("first_burst_judge_extra_in_bursts", "control"),
        med("worst_of_first_8_bursts_extra_vs_bursts_before", "control"),
        v["burst_ns_p50"],
        v["full_burst_share"].as_f64().unwrap_or(0.0) * 100.0,
    );
    Ok(v)
}
