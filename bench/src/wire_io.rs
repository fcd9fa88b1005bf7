//! Traffic generation and reception on live interfaces for the veth benchmark and the
//! testbed: `blast` sends the frames of a capture out of an interface at a set rate (or as
//! fast as the kernel takes them), `sink` counts (and optionally records) what arrives.
//!
//! Invariants: frames go out unchanged and in capture order, in `sendmmsg` batches of 64;
//! the rate limiter never sends ahead of schedule; `sink` stops after its deadline or once
//! the interface has been idle for the given time after traffic began.

use op25b_dataplane::port::pcap::{CaptureReader, Next, PcapWriter};
use op25b_dataplane::port::sys::{PacketSocket, SendScratch, SocketOptions};
use op25b_dataplane::port::Burst;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// Reads every frame of a capture.
pub fn load_frames(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut r = CaptureReader::open(std::io::BufReader::new(f))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut b = Burst::new(1);
    let mut v = Vec::new();
    loop {
        b.clear();
        match r
            .next_into(&mut b)
            .map_err(|e| format!("{}: {e}", path.display()))?
        {
            Next::Frame => v.push(b.frame(0).to_vec()),
            Next::Meta => {}
            Next::End => return Ok(v),
        }
    }
}

/// The low 32 bits of the wall clock in nanoseconds: the same clock in every network
/// namespace of one machine, so a sink can take one-way latency against a sender's stamp
/// (wraps every 4.3 s, far above any latency measured).
fn clock32() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u32
}

/// Where a plain Ethernet/IPv4 (IHL 5)/TCP frame carries its sequence number, used as the
/// send-time stamp; `None` for any other frame.
fn stamp_at(frame: &[u8]) -> Option<usize> {
    (frame.len() >= 42 && frame[12..14] == [0x08, 0x00] && frame[14] == 0x45 && frame[23] == 6)
        .then_some(38)
}

/// Sends `frames` `loops` times out of `iface`, at most `rate` frames/s (0: unlimited).
/// With `stamp`, each TCP frame's sequence number is overwritten with the send time just
/// before its batch goes out (checksums are then stale; nothing on the path verifies them).
pub fn blast(
    iface: &str,
    frames: &mut [Vec<u8>],
    loops: u64,
    rate: u64,
    stamp: bool,
) -> Result<Value, String> {
    let opts = SocketOptions {
        block_count: 2,
        block_size: 1 << 16,
        promiscuous: false,
        ..SocketOptions::default()
    };
    let sock = PacketSocket::open(iface, &opts).map_err(|e| e.to_string())?;
    let mut scratch = SendScratch::default();
    let start = Instant::now();
    let (mut sent, mut refused) = (0u64, 0u64);
    for _ in 0..loops {
        for chunk in frames.chunks_mut(64) {
            if rate > 0 {
                let due = Duration::from_secs_f64(sent as f64 / rate as f64);
                let now = start.elapsed();
                if due > now {
                    std::thread::sleep(due - now);
                }
            }
            if stamp {
                let t = clock32().to_be_bytes();
                for f in chunk.iter_mut() {
                    if let Some(at) = stamp_at(f) {
                        f[at..at + 4].copy_from_slice(&t);
                    }
                }
            }
            let mut batch: [&[u8]; 64] = [&[]; 64];
            for (slot, f) in batch.iter_mut().zip(chunk.iter()) {
                *slot = f;
            }
            refused += sock.send_batch(&batch[..chunk.len()], &mut scratch, None) as u64;
            sent += chunk.len() as u64;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(
        json!({"iface": iface, "frames": sent - refused, "refused": refused, "seconds": secs, "frames_per_second": (sent - refused) as f64 / secs}),
    )
}

/// Counts frames arriving on `iface` until `seconds` pass, or until `idle_ms` of silence
/// after the first frame; records them to `record` if given; with `latency`, takes the
/// one-way latency of every frame stamped by `blast --stamp`.
pub fn sink(
    iface: &str,
    seconds: f64,
    idle_ms: u64,
    record: Option<&Path>,
    latency: bool,
) -> Result<Value, String> {
    if !(seconds > 0.0 && seconds <= 1e9) {
        return Err(format!(
            "--seconds {seconds}: give a number of seconds above 0 (and at most 1e9)"
        ));
    }
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3)
        .map_err(|e| e.to_string())?;
    let opts = SocketOptions {
        block_timeout_ms: 1,
        ..SocketOptions::default()
    };
    let mut sock = PacketSocket::open(iface, &opts).map_err(|e| e.to_string())?;
    let mut writer = match record {
        Some(p) => Some(
            PcapWriter::new(
                std::io::BufWriter::new(
                    std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()))?,
                ),
                true,
            )
            .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    crate::sayln!("{{\"listening\": \"{iface}\"}}");
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let (mut frames, mut bytes) = (0u64, 0u64);
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    let mut write_err = None;
    while Instant::now() < deadline {
        let n = sock.recv(256, |f| {
            frames += 1;
            bytes += f.data.len() as u64;
            if latency {
                if let Some(at) = stamp_at(f.data) {
                    let sent = u32::from_be_bytes([
                        f.data[at],
                        f.data[at + 1],
                        f.data[at + 2],
                        f.data[at + 3],
                    ]);
                    let _ = hist.record(u64::from(clock32().wrapping_sub(sent)).max(1));
                }
            }
            if let Some(w) = writer.as_mut() {
                let ts = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos() as u64;
                let mut data = f.data.to_vec();
                if let Some((tpid, tci)) = f.vlan {
                    let tag = [(tpid >> 8) as u8, tpid as u8, (tci >> 8) as u8, tci as u8];
                    data.splice(12..12, tag);
                }
                if let Err(e) = w.write(ts, &data) {
                    write_err = Some(e.to_string());
                }
            }
        });
        if n > 0 {
            last = Instant::now();
            first.get_or_insert(last);
        } else {
            if first.is_some() && last.elapsed() >= Duration::from_millis(idle_ms) {
                break;
            }
            sock.wait(5);
        }
    }
    if let Some(w) = writer {
        w.finish().map_err(|e| e.to_string())?;
    }
    if let Some(e) = write_err {
        return Err(e);
    }
    let active = first.map_or(0.0, |f| (last - f).as_secs_f64());
    let lat = if hist.is_empty() {
        Value::Null
    } else {
        json!({"p50": hist.value_at_quantile(0.5), "p90": hist.value_at_quantile(0.9), "p99": hist.value_at_quantile(0.99), "p999": hist.value_at_quantile(0.999), "max": hist.max()})
    };
    Ok(
        json!({"iface": iface, "frames": frames, "bytes": bytes, "active_seconds": active, "frames_per_second": if active > 0.0 { frames as f64 / active } else { 0.0 }, "latency_ns": lat}),
    )
}
