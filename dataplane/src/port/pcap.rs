//! pcap and pcapng capture files as a [`Port`]: frames are read in bursts from one file and
//! written, record by record and byte for byte, to a pass file or a drop file.
//!
//! Both pcap flavours (microsecond and nanosecond timestamps, either byte order) and pcapng
//! (any byte order, several sections and interfaces; enhanced, simple and obsolete packet
//! blocks) are read. Output mirrors input: the pcap file header or every pcapng
//! non-packet block (section headers, interface descriptions, name resolution, …) goes to
//! both outputs, and each packet record goes, unchanged, to the output its verdict names.
//! So timestamps, link type, snap length, comments and options survive bit for bit.
//!
//! Invariants:
//! - Only Ethernet (link type 1) is accepted; any other link type is an error naming it.
//! - Length fields are checked before anything is read or allocated (at most 1 MiB per
//!   pcap record, 16 MiB per pcapng block), so a corrupt file cannot exhaust memory.
//! - A truncated or corrupt record stops the input with an error naming the frame number
//!   (1-based, as Wireshark counts) and the byte offset; every frame before it has been
//!   delivered, and the error is returned only after them.
//! - A pcapng non-packet block is written to the outputs only after every frame before it,
//!   so section and interface numbering stay valid in both outputs.

use super::{Burst, Port, PortError};
use crate::policy::Verdict;
use std::io::{self, Read, Write};

/// Largest pcap record accepted (captured bytes).
pub const MAX_PCAP_RECORD: usize = 1 << 20;
/// Largest pcapng block accepted.
pub const MAX_PCAPNG_BLOCK: usize = 16 << 20;
/// The Ethernet link type.
pub const LINKTYPE_ETHERNET: u32 = 1;

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 1;
const PB: u32 = 2;
const SPB: u32 = 3;
const EPB: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;

/// Why a capture cannot be read on.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The operating system refused a read.
    #[error("read error at byte {offset}: {source}")]
    Io {
        /// Byte offset in the file.
        offset: u64,
        /// The I/O error.
        source: io::Error,
    },
    /// The file has no capture header at all.
    #[error("empty or too short for a capture header ({len} bytes)")]
    TooShort {
        /// Bytes present.
        len: usize,
    },
    /// The file does not start like pcap or pcapng.
    #[error("not a pcap or pcapng capture (starts with {magic:#010x})")]
    NotACapture {
        /// The first four bytes, big-endian.
        magic: u32,
    },
    /// A link type other than Ethernet.
    #[error("{place} has link type {linktype} ({}), but op25b judges Ethernet frames only (link type 1)", linktype_name(*linktype))]
    LinkType {
        /// The link type.
        linktype: u32,
        /// "the file header" or "interface N (byte X)".
        place: String,
    },
    /// The file ends inside a record.
    #[error("truncated: the file ends inside the record at byte {offset} (frame {frame}): {need} bytes needed, {have} present")]
    Truncated {
        /// 1-based number of the frame being read.
        frame: u64,
        /// Byte offset of the record.
        offset: u64,
        /// Bytes the record needs.
        need: u64,
        /// Bytes the file still had.
        have: u64,
    },
    /// A record whose fields contradict each other or the limits.
    #[error("corrupt record at byte {offset} (frame {frame}): {what}")]
    Corrupt {
        /// 1-based number of the frame being read.
        frame: u64,
        /// Byte offset of the record.
        offset: u64,
        /// What is wrong.
        what: String,
    },
}

/// A common name for a link type number, for error messages.
pub fn linktype_name(linktype: u32) -> &'static str {
    match linktype {
        0 => "BSD loopback",
        1 => "Ethernet",
        6 => "IEEE 802.5 Token Ring",
        9 => "PPP",
        10 => "FDDI",
        50 => "PPP in HDLC framing",
        51 => "PPPoE",
        101 => "raw IP",
        104 => "Cisco HDLC",
        105 => "IEEE 802.11",
        108 => "OpenBSD loopback",
        113 => "Linux cooked (SLL)",
        119 => "Prism 802.11",
        127 => "802.11 radiotap",
        143 => "DOCSIS",
        147..=162 => "user-defined",
        192 => "PPI",
        195 => "IEEE 802.15.4",
        201 => "Bluetooth HCI H4",
        220 => "USB Linux mmapped",
        228 => "raw IPv4",
        229 => "raw IPv6",
        249 => "netlink",
        276 => "Linux cooked v2 (SLL2)",
        _ => "not Ethernet",
    }
}

/// The flavour of an open capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Classic pcap.
    Pcap {
        /// Nanosecond timestamps.
        nanos: bool,
        /// Big-endian fields.
        big_endian: bool,
    },
    /// pcapng.
    PcapNg,
}

/// What [`CaptureReader::next_into`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// A frame was appended to the burst.
    Frame,
    /// A non-packet pcapng block is in [`CaptureReader::meta`].
    Meta,
    /// The file ended cleanly.
    End,
}

/// Reads a capture record by record.
#[derive(Debug)]
pub struct CaptureReader<R> {
    r: R,
    format: Format,
    big_endian: bool,
    header: Vec<u8>,
    meta: Vec<u8>,
    /// (link type, snap length) of each interface in the current pcapng section.
    interfaces: Vec<(u32, u32)>,
    offset: u64,
    frames: u64,
}

fn rd32(b: &[u8], off: usize, be: bool) -> u32 {
    let a = [b[off], b[off + 1], b[off + 2], b[off + 3]];
    if be {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

fn rd16(b: &[u8], off: usize, be: bool) -> u16 {
    let a = [b[off], b[off + 1]];
    if be {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

impl<R: Read> CaptureReader<R> {
    /// Reads the capture header and checks the link type.
    pub fn open(mut r: R) -> Result<Self, CaptureError> {
        let mut head = [0u8; 24];
        let got = read_full(&mut r, &mut head[..12])
            .map_err(|source| CaptureError::Io { offset: 0, source })?;
        if got < 12 {
            return Err(CaptureError::TooShort { len: got });
        }
        let magic_le = rd32(&head, 0, false);
        let (format, big_endian) = match magic_le {
            0xa1b2_c3d4 => (
                Format::Pcap {
                    nanos: false,
                    big_endian: false,
                },
                false,
            ),
            0xd4c3_b2a1 => (
                Format::Pcap {
                    nanos: false,
                    big_endian: true,
                },
                true,
            ),
            0xa1b2_3c4d => (
                Format::Pcap {
                    nanos: true,
                    big_endian: false,
                },
                false,
            ),
            0x4d3c_b2a1 => (
                Format::Pcap {
                    nanos: true,
                    big_endian: true,
                },
                true,
            ),
            SHB => (Format::PcapNg, rd32(&head, 8, true) == BYTE_ORDER_MAGIC),
            _ => {
                return Err(CaptureError::NotACapture {
                    magic: u32::from_be_bytes([head[0], head[1], head[2], head[3]]),
                })
            }
        };
        let mut reader = CaptureReader {
            r,
            format,
            big_endian,
            header: Vec::new(),
            meta: Vec::new(),
            interfaces: Vec::new(),
            offset: 0,
            frames: 0,
        };
        match format {
            Format::Pcap { .. } => {
                let more = read_full(&mut reader.r, &mut head[12..])
                    .map_err(|source| CaptureError::Io { offset: 12, source })?;
                if more < 12 {
                    return Err(CaptureError::TooShort { len: 12 + more });
                }
                // Only the low 16 bits are the link type; the upper ones carry FCS
                // information and flags.
                let linktype = rd32(&head, 20, big_endian) & 0xffff;
                if linktype != LINKTYPE_ETHERNET {
                    return Err(CaptureError::LinkType {
                        linktype,
                        place: "the file header".into(),
                    });
                }
                reader.header = head.to_vec();
                reader.offset = 24;
            }
            Format::PcapNg => {
                let mut first = [0u8; 12];
                first.copy_from_slice(&head[..12]);
                reader.read_shb(first)?;
                reader.header = std::mem::take(&mut reader.meta);
            }
        }
        Ok(reader)
    }

    /// The flavour of the capture.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The bytes every output starts with (pcap file header, or the first pcapng section
    /// header block).
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// The non-packet block last returned as [`Next::Meta`].
    pub fn meta(&self) -> &[u8] {
        &self.meta
    }

    /// Frames read so far.
    pub fn frames_read(&self) -> u64 {
        self.frames
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn io(&self, source: io::Error) -> CaptureError {
        CaptureError::Io {
            offset: self.offset,
            source,
        }
    }

    fn truncated(&self, need: usize, have: usize) -> CaptureError {
        CaptureError::Truncated {
            frame: self.frames + 1,
            offset: self.offset,
            need: need as u64,
            have: have as u64,
        }
    }

    fn corrupt(&self, what: String) -> CaptureError {
        CaptureError::Corrupt {
            frame: self.frames + 1,
            offset: self.offset,
            what,
        }
    }

    /// Reads the next record: a frame into `burst`, a non-packet block into `meta`, or the
    /// end of the file.
    pub fn next_into(&mut self, burst: &mut Burst) -> Result<Next, CaptureError> {
        match self.format {
            Format::Pcap { .. } => self.next_pcap(burst),
            Format::PcapNg => self.next_pcapng(burst),
        }
    }

    fn next_pcap(&mut self, burst: &mut Burst) -> Result<Next, CaptureError> {
        let mut hdr = [0u8; 16];
        let got = read_full(&mut self.r, &mut hdr).map_err(|e| self.io(e))?;
        if got == 0 {
            return Ok(Next::End);
        }
        if got < 16 {
            return Err(self.truncated(16, got));
        }
        let incl = rd32(&hdr, 8, self.big_endian) as usize;
        if incl > MAX_PCAP_RECORD {
            return Err(self.corrupt(format!(
                "captured length {incl} exceeds {MAX_PCAP_RECORD} bytes (corrupt length field)"
            )));
        }
        let r = &mut self.r;
        let mut failure: Option<Result<usize, io::Error>> = None;
        let _ = burst.push_with(16 + incl, |rec| {
            rec[..16].copy_from_slice(&hdr);
            match read_full(r, &mut rec[16..]) {
                Ok(n) if n == incl => Ok(16..16 + incl),
                other => {
                    failure = Some(other);
                    Err(())
                }
            }
        });
        match failure {
            None => {}
            Some(Ok(n)) => return Err(self.truncated(16 + incl, 16 + n)),
            Some(Err(e)) => return Err(self.io(e)),
        }
        self.offset += 16 + incl as u64;
        self.frames += 1;
        Ok(Next::Frame)
    }

    /// Reads a section header block whose first 12 bytes are `first` into `meta`.
    fn read_shb(&mut self, first: [u8; 12]) -> Result<(), CaptureError> {
        let bom = rd32(&first, 8, false);
        self.big_endian = match bom {
            BYTE_ORDER_MAGIC => false,
            0x4D3C_2B1A => true,
            _ => {
                return Err(self.corrupt(format!(
                    "section header with unknown byte-order magic {bom:#010x}"
                )))
            }
        };
        let len = self.block_len(&first)?;
        if len < 28 {
            return Err(self.corrupt(format!("section header block of {len} bytes (at least 28)")));
        }
        self.meta.clear();
        self.meta.extend_from_slice(&first);
        self.meta.resize(len, 0);
        let got = read_full(&mut self.r, &mut self.meta[12..]).map_err(|e| CaptureError::Io {
            offset: self.offset,
            source: e,
        })?;
        if got < len - 12 {
            return Err(self.truncated(len, 12 + got));
        }
        self.check_trailer(&self.meta, len)?;
        self.interfaces.clear();
        self.offset += len as u64;
        Ok(())
    }

    fn block_len(&self, head: &[u8]) -> Result<usize, CaptureError> {
        let len = rd32(head, 4, self.big_endian) as usize;
        if len < 12 || !len.is_multiple_of(4) || len > MAX_PCAPNG_BLOCK {
            return Err(self.corrupt(format!(
                "block length {len} is not a multiple of 4 between 12 and {MAX_PCAPNG_BLOCK}"
            )));
        }
        Ok(len)
    }

    fn check_trailer(&self, block: &[u8], len: usize) -> Result<(), CaptureError> {
        let trailer = rd32(block, len - 4, self.big_endian) as usize;
        if trailer != len {
            return Err(self.corrupt(format!("block length {len} but trailing length {trailer}")));
        }
        Ok(())
    }

    fn next_pcapng(&mut self, burst: &mut Burst) -> Result<Next, CaptureError> {
        let mut head = [0u8; 12];
        let got = read_full(&mut self.r, &mut head[..8]).map_err(|e| self.io(e))?;
        if got == 0 {
            return Ok(Next::End);
        }
        if got < 8 {
            return Err(self.truncated(8, got));
        }
        if rd32(&head, 0, false) == SHB {
            let more = read_full(&mut self.r, &mut head[8..]).map_err(|e| self.io(e))?;
            if more < 4 {
                return Err(self.truncated(12, 8 + more));
            }
            self.read_shb(head)?;
            return Ok(Next::Meta);
        }
        let btype = rd32(&head, 0, self.big_endian);
        let len = self.block_len(&head)?;
        if matches!(btype, EPB | PB | SPB) {
            return self.packet_block(
                burst,
                btype,
                len,
                [
                    head[0], head[1], head[2], head[3], head[4], head[5], head[6], head[7],
                ],
            );
        }
        self.meta.clear();
        self.meta.extend_from_slice(&head[..8]);
        self.meta.resize(len, 0);
        let got = read_full(&mut self.r, &mut self.meta[8..]).map_err(|e| CaptureError::Io {
            offset: self.offset,
            source: e,
        })?;
        if got < len - 8 {
            return Err(self.truncated(len, 8 + got));
        }
        self.check_trailer(&self.meta, len)?;
        if btype == IDB {
            if len < 20 {
                return Err(self.corrupt(format!(
                    "interface description block of {len} bytes (at least 20)"
                )));
            }
            let linktype = u32::from(rd16(&self.meta, 8, self.big_endian));
            let snaplen = rd32(&self.meta, 12, self.big_endian);
            if linktype != LINKTYPE_ETHERNET {
                return Err(CaptureError::LinkType {
                    linktype,
                    place: format!(
                        "interface {} (block at byte {})",
                        self.interfaces.len(),
                        self.offset
                    ),
                });
            }
            self.interfaces.push((linktype, snaplen));
        }
        self.offset += len as u64;
        Ok(Next::Meta)
    }

    fn packet_block(
        &mut self,
        burst: &mut Burst,
        btype: u32,
        len: usize,
        head: [u8; 8],
    ) -> Result<Next, CaptureError> {
        let min = if btype == SPB { 16 } else { 32 };
        if len < min {
            return Err(self.corrupt(format!("packet block of {len} bytes (at least {min})")));
        }
        let be = self.big_endian;
        let r = &mut self.r;
        let interfaces = &self.interfaces;
        // Problems found inside the fill closure, reported after it with full context.
        enum Bad {
            Io(io::Error),
            Short(usize),
            Field(String),
        }
        let mut bad: Option<Bad> = None;
        let _ = burst.push_with(len, |rec| {
            rec[..8].copy_from_slice(&head);
            let n = match read_full(r, &mut rec[8..]) {
                Ok(n) => n,
                Err(e) => {
                    bad = Some(Bad::Io(e));
                    return Err(());
                }
            };
            if n < len - 8 {
                bad = Some(Bad::Short(8 + n));
                return Err(());
            }
            let check = || -> Result<std::ops::Range<usize>, String> {
                let trailer = rd32(rec, len - 4, be) as usize;
                if trailer != len {
                    return Err(format!("block length {len} but trailing length {trailer}"));
                }
                let room = len - min;
                if btype == SPB {
                    let (_, snap) = *interfaces
                        .first()
                        .ok_or("simple packet block before any interface description")?;
                    let orig = rd32(rec, 8, be) as usize;
                    let mut cap = orig.min(room);
                    if snap != 0 {
                        cap = cap.min(snap as usize);
                    }
                    return Ok(12..12 + cap);
                }
                let iface = if btype == PB {
                    usize::from(rd16(rec, 8, be))
                } else {
                    rd32(rec, 8, be) as usize
                };
                if iface >= interfaces.len() {
                    return Err(format!(
                        "packet names interface {iface}, but the section describes {}",
                        interfaces.len()
                    ));
                }
                let cap = rd32(rec, 20, be) as usize;
                if cap > room {
                    return Err(format!(
                        "captured length {cap} does not fit in a block of {len} bytes"
                    ));
                }
                Ok(28..28 + cap)
            };
            check().map_err(|what| bad = Some(Bad::Field(what)))
        });
        match bad {
            None => {}
            Some(Bad::Io(e)) => return Err(self.io(e)),
            Some(Bad::Short(have)) => return Err(self.truncated(len, have)),
            Some(Bad::Field(what)) => return Err(self.corrupt(what)),
        }
        self.offset += len as u64;
        self.frames += 1;
        Ok(Next::Frame)
    }
}

/// Writes a classic pcap file: a header, then records. For making captures (tests, the
/// benchmark's synthetic traffic, samples); replay output copies input records instead.
#[derive(Debug)]
pub struct PcapWriter<W> {
    w: W,
    nanos: bool,
}

impl<W: Write> PcapWriter<W> {
    /// Writes a little-endian pcap header for Ethernet with snap length 262144.
    pub fn new(mut w: W, nanos: bool) -> io::Result<Self> {
        let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&magic.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&262_144u32.to_le_bytes());
        h.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        w.write_all(&h)?;
        Ok(PcapWriter { w, nanos })
    }

    /// Appends one frame with a timestamp in nanoseconds since the epoch.
    pub fn write(&mut self, ts_ns: u64, frame: &[u8]) -> io::Result<()> {
        let sec = (ts_ns / 1_000_000_000) as u32;
        let frac = if self.nanos {
            ts_ns % 1_000_000_000
        } else {
            ts_ns % 1_000_000_000 / 1000
        } as u32;
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&sec.to_le_bytes());
        h[4..8].copy_from_slice(&frac.to_le_bytes());
        h[8..12].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        h[12..16].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        self.w.write_all(&h)?;
        self.w.write_all(frame)
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }

    /// Flushes and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.w.flush()?;
        Ok(self.w)
    }
}

/// The timestamp of a stored record in ns since the epoch (0 if its block type carries
/// none): classic pcap record headers in either byte order, pcapng enhanced packet blocks.
fn record_time_ns(format: Format, r: &[u8]) -> u64 {
    let u32_at = |o: usize, be: bool| {
        r.get(o..o + 4).map_or(0, |b| {
            let a = [b[0], b[1], b[2], b[3]];
            u64::from(if be {
                u32::from_be_bytes(a)
            } else {
                u32::from_le_bytes(a)
            })
        })
    };
    match format {
        Format::Pcap { nanos, big_endian } => {
            let frac = u32_at(4, big_endian);
            u32_at(0, big_endian) * 1_000_000_000 + if nanos { frac } else { frac * 1000 }
        }
        Format::PcapNg => {
            // The block type (6) tells the section's byte order; if_tsresol is taken as the
            // default microseconds.
            let be = r.get(0..4) == Some(&[0, 0, 0, 6]);
            if !be && r.get(0..4) != Some(&[6, 0, 0, 0]) {
                return 0;
            }
            let us = (u32_at(12, be) << 32) | u32_at(16, be);
            us.saturating_mul(1000)
        }
    }
}

/// A capture file as a port: reads one input, writes pass and drop outputs.
#[derive(Debug)]
pub struct PcapPort<R, W> {
    reader: CaptureReader<R>,
    pass: W,
    drop: W,
    meta_pending: bool,
    deferred: Option<CaptureError>,
    finished: bool,
    resets: Option<PcapWriter<W>>,
    reset_buf: Vec<u8>,
    /// Resets written to the resets output.
    pub resets_sent: u64,
    /// `reject` verdicts that got no reset because the frame has no TCP header to answer
    /// (an overlap fragment), counted only with a resets output.
    pub resets_unanswerable: u64,
}

impl<R: Read, W: Write> PcapPort<R, W> {
    /// A port over `reader` writing the capture header to both outputs at once.
    pub fn new(reader: CaptureReader<R>, mut pass: W, mut drop: W) -> Result<Self, PortError> {
        pass.write_all(reader.header())
            .map_err(|source| PortError::Write {
                what: "pass output",
                source,
            })?;
        drop.write_all(reader.header())
            .map_err(|source| PortError::Write {
                what: "drop output",
                source,
            })?;
        Ok(PcapPort {
            reader,
            pass,
            drop,
            meta_pending: false,
            deferred: None,
            finished: false,
            resets: None,
            reset_buf: Vec::new(),
            resets_sent: 0,
            resets_unanswerable: 0,
        })
    }

    /// Also writes the TCP resets that `reject` verdicts call for to `out`, a classic
    /// little-endian pcap (the input's timestamp precision), each stamped with the time of
    /// the frame it answers.
    pub fn with_resets(mut self, out: W) -> Result<Self, PortError> {
        let nanos = !matches!(self.reader.format(), Format::Pcap { nanos: false, .. });
        self.resets = Some(
            PcapWriter::new(out, nanos).map_err(|source| PortError::Write {
                what: "resets output",
                source,
            })?,
        );
        Ok(self)
    }

    /// The input reader.
    pub fn reader(&self) -> &CaptureReader<R> {
        &self.reader
    }

    /// Gives the outputs back.
    pub fn into_outputs(self) -> (W, W) {
        (self.pass, self.drop)
    }

    fn write_meta(&mut self) -> Result<(), PortError> {
        let m = self.reader.meta();
        self.pass.write_all(m).map_err(|source| PortError::Write {
            what: "pass output",
            source,
        })?;
        self.drop.write_all(m).map_err(|source| PortError::Write {
            what: "drop output",
            source,
        })
    }
}

impl<R: Read, W: Write> Port for PcapPort<R, W> {
    fn rx_burst(&mut self, burst: &mut Burst) -> Result<usize, PortError> {
        burst.clear();
        if let Some(e) = self.deferred.take() {
            return Err(e.into());
        }
        if self.finished {
            return Ok(0);
        }
        if self.meta_pending {
            self.meta_pending = false;
            self.write_meta()?;
        }
        while !burst.is_full() {
            match self.reader.next_into(burst) {
                Ok(Next::Frame) => {}
                Ok(Next::Meta) if burst.is_empty() => self.write_meta()?,
                Ok(Next::Meta) => {
                    // Frames before this block must be written first.
                    self.meta_pending = true;
                    break;
                }
                Ok(Next::End) => {
                    self.finished = true;
                    break;
                }
                Err(e) => {
                    self.finished = true;
                    if burst.is_empty() {
                        return Err(e.into());
                    }
                    self.deferred = Some(e);
                    break;
                }
            }
        }
        Ok(burst.len())
    }

    fn tx_burst(&mut self, burst: &Burst, verdicts: &[Verdict]) -> Result<(), PortError> {
        debug_assert_eq!(burst.len(), verdicts.len());
        for (i, &v) in verdicts.iter().enumerate() {
            let (out, what) = match v {
                Verdict::Forward => (&mut self.pass, "pass output"),
                Verdict::Drop | Verdict::Reject => (&mut self.drop, "drop output"),
            };
            out.write_all(burst.record(i))
                .map_err(|source| PortError::Write { what, source })?;
            if v == Verdict::Reject {
                if let Some(w) = &mut self.resets {
                    if crate::wire::rst::build_reset(burst.frame(i), &mut self.reset_buf) {
                        let ts = record_time_ns(self.reader.format(), burst.record(i));
                        w.write(ts, &self.reset_buf)
                            .map_err(|source| PortError::Write {
                                what: "resets output",
                                source,
                            })?;
                        self.resets_sent += 1;
                    } else {
                        self.resets_unanswerable += 1;
                    }
                }
            }
        }
        Ok(())
    }

    fn is_finished(&self) -> bool {
        self.finished && self.deferred.is_none()
    }

    fn flush(&mut self) -> Result<(), PortError> {
        if let Some(w) = &mut self.resets {
            w.flush().map_err(|source| PortError::Write {
                what: "resets output",
                source,
            })?;
        }
        self.pass.flush().map_err(|source| PortError::Write {
            what: "pass output",
            source,
        })?;
        self.drop.flush().map_err(|source| PortError::Write {
            what: "drop output",
            source,
        })
    }
}
