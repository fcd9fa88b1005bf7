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
//!   pcap record, 16 MiB per pcapng block), and a burst stops at [`MAX_BURST_BYTES`], so
//!   a corrupt or crafted file cannot exhaust memory whatever the burst size.
//! - A truncated or corrupt record stops the input with an error naming the frame number
//!   (1-based, as Wireshark counts) and the byte offset; every frame before it has been
//!   delivered, and the error is returned only after them.
//! - A pcapng non-packet block is written to the outputs only after every frame before it,
//!   so section and interface numbering stay valid in both outputs.
//! - Every frame read is stamped with its capture time in ns ([`Burst::time_ns`]): pcapng
//!   timestamps are read in their interface's `if_tsresol` units plus its `if_tsoffset`; a
//!   simple packet block, which has none, takes the previous frame's time.

use super::{Burst, Port, PortError};
use crate::policy::Verdict;
use std::io::{self, Read, Write};

/// Largest pcap record accepted (captured bytes).
pub const MAX_PCAP_RECORD: usize = 1 << 20;
/// Largest pcapng block accepted.
pub const MAX_PCAPNG_BLOCK: usize = 16 << 20;
/// A burst read from a capture stops growing once it holds this many bytes of records, so
/// memory stays bounded by about this plus one record whatever the burst size: 64 frames
/// of 16 MiB blocks would otherwise take a gigabyte.
pub const MAX_BURST_BYTES: usize = 16 << 20;
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
    /// The interfaces the current pcapng section describes, in order.
    interfaces: Vec<Interface>,
    offset: u64,
    frames: u64,
    /// Capture time of the last frame read (ns since the epoch).
    last_ns: u64,
}

/// What the reader keeps of a pcapng interface description (its link type is Ethernet:
/// any other is refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Interface {
    snaplen: u32,
    /// `if_tsresol`: the top bit clear, timestamps count 10^-n seconds; set, 2^-n (n the
    /// low 7 bits). Default 6 (microseconds).
    tsresol: u8,
    /// `if_tsoffset`: seconds added to every timestamp.
    tsoffset: i64,
}

impl Interface {
    /// Reads an interface description block's options (the block from its type field on).
    fn from_idb(block: &[u8], be: bool) -> Self {
        let mut i = Interface {
            snaplen: rd32(block, 12, be),
            tsresol: 6,
            tsoffset: 0,
        };
        // Options run from byte 16 to the trailing length; a malformed one ends the walk
        // (they are copied to the outputs untouched either way).
        let end = block.len().saturating_sub(4);
        let mut o = 16;
        while o + 4 <= end {
            let code = rd16(block, o, be);
            let len = usize::from(rd16(block, o + 2, be));
            let v = o + 4;
            if code == 0 || v + len > end {
                break;
            }
            match (code, len) {
                (9, 1) => i.tsresol = block[v],
                (14, 8) => {
                    let a: [u8; 8] = block[v..v + 8].try_into().expect("eight bytes");
                    i.tsoffset = if be {
                        i64::from_be_bytes(a)
                    } else {
                        i64::from_le_bytes(a)
                    };
                }
                _ => {}
            }
            o = v + len.next_multiple_of(4);
        }
        i
    }

    /// A timestamp of this interface (`units` of its resolution) in ns since the epoch,
    /// clamped to what a u64 holds.
    fn ns(&self, units: u64) -> u64 {
        let n = u32::from(self.tsresol & 0x7f);
        let units = u128::from(units);
        let ns = if self.tsresol & 0x80 == 0 {
            if n <= 9 {
                units * 10u128.pow(9 - n)
            } else {
                units / 10u128.pow((n - 9).min(38))
            }
        } else {
            (units * 1_000_000_000) >> n
        };
        let ns = ns as i128 + i128::from(self.tsoffset) * 1_000_000_000;
        ns.clamp(0, i128::from(u64::MAX)) as u64
    }
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
            last_ns: 0,
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
        let frac = u64::from(rd32(&hdr, 4, self.big_endian));
        let frac_ns = if matches!(self.format, Format::Pcap { nanos: true, .. }) {
            frac
        } else {
            frac * 1000
        };
        self.last_ns = u64::from(rd32(&hdr, 0, self.big_endian)) * 1_000_000_000 + frac_ns;
        burst.stamp_last(self.last_ns);
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
            self.interfaces
                .push(Interface::from_idb(&self.meta, self.big_endian));
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
        let mut time = self.last_ns;
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
            let mut check = || -> Result<std::ops::Range<usize>, String> {
                let trailer = rd32(rec, len - 4, be) as usize;
                if trailer != len {
                    return Err(format!("block length {len} but trailing length {trailer}"));
                }
                let room = len - min;
                if btype == SPB {
                    let snap = interfaces
                        .first()
                        .ok_or("simple packet block before any interface description")?
                        .snaplen;
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
                let units = (u64::from(rd32(rec, 12, be)) << 32) | u64::from(rd32(rec, 16, be));
                time = interfaces[iface].ns(units);
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
        self.last_ns = time;
        burst.stamp_last(time);
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
        while !burst.is_full() && burst.bytes() < MAX_BURST_BYTES {
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
                        w.write(burst.time_ns(i), &self.reset_buf)
                            .map_err(|source| PortError::Write {
                                what: "resets output",
                                source,
                            })?;
                        self.resets_sent += 1;
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

#[cfg(test)]
mod tests {
    use super::Interface;

    fn idb(be: bool, options: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 16];
        b[12..16].copy_from_slice(&if be {
            1500u32.to_be_bytes()
        } else {
            1500u32.to_le_bytes()
        });
        b.extend_from_slice(options);
        b.extend_from_slice(&[0; 4]); // trailing length (not read here)
        b
    }

    #[test]
    fn interface_timestamps_follow_tsresol_and_tsoffset() {
        let default = Interface::from_idb(&idb(false, &[]), false);
        assert_eq!(
            (default.snaplen, default.ns(1_500_000)),
            (1500, 1_500_000_000)
        );
        // 10^-3 s, then a comment option skipped on the way to it, big-endian.
        let ms = Interface::from_idb(
            &idb(
                true,
                &[0, 1, 0, 3, b'a', b'b', b'c', 0, 0, 9, 0, 1, 3, 0, 0, 0],
            ),
            true,
        );
        assert_eq!(ms.ns(1500), 1_500_000_000);
        // Finer than ns is rounded down; 2^-20 s; an offset of -10 s clamps at zero.
        let ps = Interface::from_idb(&idb(false, &[9, 0, 1, 0, 12, 0, 0, 0]), false);
        assert_eq!(ps.ns(1_500_000_000_999), 1_500_000_000);
        let mut off = vec![9, 0, 1, 0, 0x80 | 20, 0, 0, 0, 14, 0, 8, 0];
        off.extend_from_slice(&(-10i64).to_le_bytes());
        let bin = Interface::from_idb(&idb(false, &off), false);
        assert_eq!(bin.ns(3 << 20), 0);
        assert_eq!(bin.ns(13 << 20), 3_000_000_000);
        // An option running past the block ends the walk: the default stays.
        let bad = Interface::from_idb(&idb(false, &[9, 0, 200, 0, 3, 0, 0, 0]), false);
        assert_eq!(bad.tsresol, 6);
        // Huge exponents do not overflow.
        let huge = Interface::from_idb(&idb(false, &[9, 0, 1, 0, 127, 0, 0, 0]), false);
        assert_eq!(huge.ns(u64::MAX), 0);
        let huge2 = Interface::from_idb(&idb(false, &[9, 0, 1, 0, 0xff, 0, 0, 0]), false);
        assert_eq!(huge2.ns(u64::MAX), 0);
    }
}

#[cfg(test)]
mod burst_bytes {
    use super::{CaptureReader, PcapPort, MAX_BURST_BYTES};
    use crate::port::{Burst, Port};

    fn block(btype: u32, body: &[u8]) -> Vec<u8> {
        let len = (12 + body.len().div_ceil(4) * 4) as u32;
        let mut b = btype.to_le_bytes().to_vec();
        b.extend(len.to_le_bytes());
        b.extend(body);
        b.resize(len as usize - 4, 0);
        b.extend(len.to_le_bytes());
        b
    }

    /// Blocks of 8 MiB (a small frame and a huge comment): a burst of 64 stops once it
    /// holds the byte limit, instead of taking 64 of them.
    #[test]
    fn a_burst_of_huge_blocks_stops_at_the_byte_limit() {
        let mut file = block(
            0x0A0D_0D0A,
            &[
                0x4D, 0x3C, 0x2B, 0x1A, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ],
        );
        file.extend(block(1, &[1, 0, 0, 0, 0, 0, 0, 0]));
        let mut epb = vec![0u8; 20];
        epb[12..16].copy_from_slice(&60u32.to_le_bytes());
        epb[16..20].copy_from_slice(&60u32.to_le_bytes());
        epb.extend([0u8; 60]);
        let comment = 8 << 20;
        epb.extend(1u16.to_le_bytes());
        epb.extend((comment as u16).to_le_bytes()); // option length wraps: junk options are fine here
        epb.resize(epb.len() + comment, b'x');
        let epb = block(6, &epb);
        for _ in 0..6 {
            file.extend_from_slice(&epb);
        }
        let reader = CaptureReader::open(&file[..]).unwrap();
        let mut port = PcapPort::new(reader, std::io::sink(), std::io::sink()).unwrap();
        let mut burst = Burst::new(64);
        let mut sizes = Vec::new();
        while port.rx_burst(&mut burst).unwrap() > 0 {
            assert!(burst.bytes() < MAX_BURST_BYTES + epb.len());
            sizes.push(burst.len());
        }
        assert_eq!(sizes, [2, 2, 2]);
    }
}
