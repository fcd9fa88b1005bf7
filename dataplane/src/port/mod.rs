//! Burst-oriented frame I/O: the [`Port`] trait, the reusable [`Burst`] buffer, and the
//! backends (pcap/pcapng files, in-memory frames, AF_PACKET, DPDK with the `dpdk`
//! feature, which judges frames in its mbufs instead of filling a [`Burst`], and AF_XDP
//! with the `af_xdp` feature, which judges them in place in its UMEM).
//!
//! A port fills a burst with up to `Burst::capacity()` frames (`rx_burst`), the worker
//! judges them, and the same port emits them (`tx_burst`): forwarded frames go out, dropped
//! frames go to the port's drop sink if it has one (a capture file in replay), else nowhere.
//!
//! Invariants:
//! - A burst's memory is reused: after warm-up, `rx_burst` allocates nothing.
//! - Each frame keeps the exact bytes of its *record* (what the backend must write back
//!   verbatim: a pcap record header plus data, a pcapng block, a ring slot) and, inside it,
//!   the Ethernet frame the parser reads.
//! - `tx_burst` gets exactly one verdict per frame and emits every frame exactly once, in
//!   burst order.

#[cfg(target_os = "linux")]
pub mod af_packet;
#[cfg(all(feature = "af_xdp", target_os = "linux"))]
pub mod af_xdp;
#[cfg(all(feature = "dpdk", target_os = "linux"))]
pub mod dpdk;
#[cfg(target_os = "linux")]
pub mod link;
pub mod mem;
pub mod pcap;
#[cfg(target_os = "linux")]
pub mod privilege;
#[cfg(target_os = "linux")]
pub mod sys;

use crate::policy::Verdict;
use std::ops::Range;

/// A reusable batch of frames.
#[derive(Clone, Debug)]
pub struct Burst {
    buf: Vec<u8>,
    slots: Vec<Slot>,
    capacity: usize,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    record: (usize, usize),
    frame: (usize, usize),
    /// When the frame was captured, ns since the epoch (0 when unknown).
    time_ns: u64,
}

impl Burst {
    /// An empty burst holding up to `frames` frames.
    pub fn new(frames: usize) -> Self {
        let frames = frames.max(1);
        Burst {
            buf: Vec::with_capacity(frames * 2048),
            slots: Vec::with_capacity(frames),
            capacity: frames,
        }
    }

    /// Empties the burst, keeping its memory.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.slots.clear();
    }

    /// Frames in the burst.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the burst holds no frame.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Whether the burst holds `capacity()` frames.
    pub fn is_full(&self) -> bool {
        self.slots.len() >= self.capacity
    }

    /// Most frames per burst.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes of records held (headers and frames).
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// The Ethernet frame `i`.
    #[inline]
    pub fn frame(&self, i: usize) -> &[u8] {
        let (o, l) = self.slots[i].frame;
        &self.buf[o..o + l]
    }

    /// The record `i` as the backend stored it (header and frame).
    #[inline]
    pub fn record(&self, i: usize) -> &[u8] {
        let (o, l) = self.slots[i].record;
        &self.buf[o..o + l]
    }

    /// When frame `i` was captured, in ns since the Unix epoch, for frames read from a
    /// capture file ([`Burst::stamp_last`]); 0 for frames from anywhere else.
    #[inline]
    pub fn time_ns(&self, i: usize) -> u64 {
        self.slots[i].time_ns
    }

    /// Gives the last frame pushed its capture time (ns since the Unix epoch).
    pub fn stamp_last(&mut self, ns: u64) {
        if let Some(s) = self.slots.last_mut() {
            s.time_ns = ns;
        }
    }

    /// Every frame, in order.
    pub fn frames(&self) -> impl ExactSizeIterator<Item = &[u8]> + Clone + '_ {
        (0..self.len()).map(move |i| self.frame(i))
    }

    /// Appends a record of `len` bytes filled by `fill`, which returns the byte range of the
    /// Ethernet frame inside the record (clamped to the record). On error nothing is
    /// appended.
    pub fn push_with<E>(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<Range<usize>, E>,
    ) -> Result<(), E> {
        let start = self.buf.len();
        self.buf.resize(start + len, 0);
        let frame = match fill(&mut self.buf[start..]) {
            Ok(r) => r,
            Err(e) => {
                self.buf.truncate(start);
                return Err(e);
            }
        };
        let end = frame.end.min(len);
        let begin = frame.start.min(end);
        self.slots.push(Slot {
            record: (start, len),
            frame: (start + begin, end - begin),
            time_ns: 0,
        });
        Ok(())
    }

    /// Appends a copy of a bare Ethernet frame (record and frame are the same bytes).
    pub fn push(&mut self, frame: &[u8]) {
        let r: Result<(), ()> = self.push_with(frame.len(), |b| {
            b.copy_from_slice(frame);
            Ok(0..frame.len())
        });
        debug_assert!(r.is_ok());
    }
}

/// Why a port stopped.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The input capture is unreadable, truncated or of another link type.
    #[error(transparent)]
    Capture(#[from] pcap::CaptureError),
    /// Writing an output failed.
    #[error("writing {what}: {source}")]
    Write {
        /// Which output.
        what: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A source and sink of frame bursts.
pub trait Port {
    /// Clears `burst` and fills it with up to `burst.capacity()` received frames; returns
    /// how many. `Ok(0)` with `is_finished()` true means the input has ended.
    fn rx_burst(&mut self, burst: &mut Burst) -> Result<usize, PortError>;

    /// Emits every frame of `burst` according to its verdict (`verdicts.len() ==
    /// burst.len()`).
    fn tx_burst(&mut self, burst: &Burst, verdicts: &[Verdict]) -> Result<(), PortError>;

    /// Whether no frame will ever arrive again (end of a file).
    fn is_finished(&self) -> bool {
        false
    }

    /// Pushes buffered output out.
    fn flush(&mut self) -> Result<(), PortError> {
        Ok(())
    }
}
