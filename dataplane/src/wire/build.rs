//! Builds well-formed test and benchmark frames with every encapsulation the parser walks.
//!
//! This is the writing side of [`crate::wire`]: golden replay tests, the benchmark's traffic
//! profiles and the testbed all make frames here, and the parser's tests check it against
//! an independent implementation (etherparse). It allocates and is never on the hot path.
//!
//! Invariants: IPv4 header checksums and TCP/UDP checksums are correct, IP length fields
//! match the bytes written, and the frame is at least 60 bytes (Ethernet minimum without
//! FCS; padding goes after the IP packet, as on a real wire).

use std::net::IpAddr;

/// An IPv6 extension header to put between the fixed header and the transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ext {
    /// Hop-by-hop options (0), 8 bytes of padding options.
    HopByHop,
    /// Routing header (43), type 0 with no segments left, 8 bytes.
    Routing,
    /// Destination options (60), 8 bytes of padding options.
    DestOpts,
    /// Fragment header (44) with the given offset in 8-byte units and the M flag.
    Fragment {
        /// Offset in 8-byte units.
        offset: u16,
        /// More fragments follow.
        more: bool,
    },
}

/// The transport the frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    /// A TCP SYN from `sport` to `dport`.
    Tcp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
    },
    /// A UDP datagram.
    Udp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
    },
    /// Any other IP protocol number, with no header of its own.
    Other(u8),
}

/// A frame description; [`FrameBuilder::build`] turns it into bytes.
#[derive(Clone, Debug)]
pub struct FrameBuilder {
    src: IpAddr,
    dst: IpAddr,
    l4: L4,
    tags: Vec<(u16, u16)>,
    pppoe: Option<(u16, bool)>,
    ipv4_option_words: u8,
    ipv4_frag: (u16, bool),
    ipv6_ext: Vec<Ext>,
    payload: Vec<u8>,
}

impl FrameBuilder {
    /// A TCP SYN frame from `src:sport` to `dst:dport`. Both addresses must be one family.
    pub fn tcp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Self {
        Self::new(src, dst, L4::Tcp { sport, dport })
    }

    /// A frame carrying `l4` from `src` to `dst`. Both addresses must be one family.
    pub fn new(src: IpAddr, dst: IpAddr, l4: L4) -> Self {
        assert_eq!(src.is_ipv4(), dst.is_ipv4(), "mixed address families");
        FrameBuilder {
            src,
            dst,
            l4,
            tags: Vec::new(),
            pppoe: None,
            ipv4_option_words: 0,
            ipv4_frag: (0, false),
            ipv6_ext: Vec::new(),
            payload: Vec::new(),
        }
    }

    /// Adds a VLAN tag (outermost first) with this TPID and VLAN id.
    pub fn vlan(mut self, tpid: u16, vid: u16) -> Self {
        self.tags.push((tpid, vid & 0x0fff));
        self
    }

    /// Wraps the IP packet in a PPPoE session; `compressed` uses the one-byte PPP protocol.
    pub fn pppoe(mut self, session: u16, compressed: bool) -> Self {
        self.pppoe = Some((session, compressed));
        self
    }

    /// Adds `words` 32-bit words of IPv4 options (NOPs ending in EOL).
    pub fn ipv4_options(mut self, words: u8) -> Self {
        self.ipv4_option_words = words.min(10);
        self
    }

    /// Makes the IPv4 packet a fragment at `offset` (8-byte units) with the MF flag `more`.
    pub fn ipv4_fragment(mut self, offset: u16, more: bool) -> Self {
        self.ipv4_frag = (offset & 0x1fff, more);
        self
    }

    /// Appends an IPv6 extension header (in order).
    pub fn ipv6_ext(mut self, ext: Ext) -> Self {
        self.ipv6_ext.push(ext);
        self
    }

    /// Sets the transport payload.
    pub fn payload(mut self, payload: &[u8]) -> Self {
        self.payload = payload.to_vec();
        self
    }

    /// Serialises the frame.
    pub fn build(&self) -> Vec<u8> {
        let mut l4 = self.l4_bytes();
        let ip = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let opts = usize::from(self.ipv4_option_words) * 4;
                let ihl = 20 + opts;
                let total = ihl + l4.len();
                let mut h = vec![0u8; ihl];
                h[0] = 0x40 | (ihl / 4) as u8;
                h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
                h[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
                let frag = self.ipv4_frag.0 | if self.ipv4_frag.1 { 0x2000 } else { 0 };
                h[6..8].copy_from_slice(&frag.to_be_bytes());
                h[8] = 64;
                h[9] = self.proto();
                h[12..16].copy_from_slice(&s.octets());
                h[16..20].copy_from_slice(&d.octets());
                for b in &mut h[20..ihl] {
                    *b = 1; // NOP
                }
                if opts > 0 {
                    h[ihl - 1] = 0; // EOL
                }
                let ck = checksum(&[&h]);
                h[10..12].copy_from_slice(&ck.to_be_bytes());
                if self.ipv4_frag == (0, false) {
                    let mut pseudo = Vec::with_capacity(12);
                    pseudo.extend_from_slice(&s.octets());
                    pseudo.extend_from_slice(&d.octets());
                    pseudo.extend_from_slice(&[0, self.proto()]);
                    pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
                    self.fill_l4_checksum(&mut l4, &pseudo);
                }
                h.extend_from_slice(&l4);
                h
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut ext = Vec::new();
                let mut next_headers = Vec::new();
                for e in &self.ipv6_ext {
                    next_headers.push(match e {
                        Ext::HopByHop => 0u8,
                        Ext::Routing => 43,
                        Ext::DestOpts => 60,
                        Ext::Fragment { .. } => 44,
                    });
                }
                next_headers.push(self.proto());
                for (i, e) in self.ipv6_ext.iter().enumerate() {
                    let nh = next_headers[i + 1];
                    match *e {
                        Ext::HopByHop | Ext::DestOpts => {
                            // PadN option filling the 6 bytes after next-header and length.
                            ext.extend_from_slice(&[nh, 0, 1, 4, 0, 0, 0, 0]);
                        }
                        Ext::Routing => ext.extend_from_slice(&[nh, 0, 0, 0, 0, 0, 0, 0]),
                        Ext::Fragment { offset, more } => {
                            let fo = (offset << 3) | u16::from(more);
                            ext.extend_from_slice(&[nh, 0]);
                            ext.extend_from_slice(&fo.to_be_bytes());
                            ext.extend_from_slice(&0xdead_beefu32.to_be_bytes());
                        }
                    }
                }
                let fragmented = self
                    .ipv6_ext
                    .iter()
                    .any(|e| matches!(e, Ext::Fragment { offset, more } if *offset != 0 || *more));
                if !fragmented {
                    let mut pseudo = Vec::with_capacity(40);
                    pseudo.extend_from_slice(&s.octets());
                    pseudo.extend_from_slice(&d.octets());
                    pseudo.extend_from_slice(&(l4.len() as u32).to_be_bytes());
                    pseudo.extend_from_slice(&[0, 0, 0, self.proto()]);
                    self.fill_l4_checksum(&mut l4, &pseudo);
                }
                let mut h = vec![0u8; 40];
                h[0] = 0x60;
                h[4..6].copy_from_slice(&((ext.len() + l4.len()) as u16).to_be_bytes());
                h[6] = next_headers[0];
                h[7] = 64;
                h[8..24].copy_from_slice(&s.octets());
                h[24..40].copy_from_slice(&d.octets());
                h.extend_from_slice(&ext);
                h.extend_from_slice(&l4);
                h
            }
            _ => unreachable!("families checked in new()"),
        };
        let v4 = self.src.is_ipv4();
        let mut f = Vec::with_capacity(14 + 8 + 8 + ip.len());
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02]); // destination MAC (locally administered)
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]); // source MAC
        for &(tpid, vid) in &self.tags {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&vid.to_be_bytes());
        }
        match self.pppoe {
            None => f.extend_from_slice(&if v4 { 0x0800u16 } else { 0x86dd }.to_be_bytes()),
            Some((session, compressed)) => {
                f.extend_from_slice(&0x8864u16.to_be_bytes());
                let proto: &[u8] = match (v4, compressed) {
                    (true, false) => &[0x00, 0x21],
                    (false, false) => &[0x00, 0x57],
                    (true, true) => &[0x21],
                    (false, true) => &[0x57],
                };
                f.extend_from_slice(&[0x11, 0x00]);
                f.extend_from_slice(&session.to_be_bytes());
                f.extend_from_slice(&((proto.len() + ip.len()) as u16).to_be_bytes());
                f.extend_from_slice(proto);
            }
        }
        f.extend_from_slice(&ip);
        if f.len() < 60 {
            f.resize(60, 0);
        }
        f
    }

    fn proto(&self) -> u8 {
        match self.l4 {
            L4::Tcp { .. } => 6,
            L4::Udp { .. } => 17,
            L4::Other(p) => p,
        }
    }

    fn l4_bytes(&self) -> Vec<u8> {
        let mut b = match self.l4 {
            L4::Tcp { sport, dport } => {
                let mut t = vec![0u8; 20];
                t[0..2].copy_from_slice(&sport.to_be_bytes());
                t[2..4].copy_from_slice(&dport.to_be_bytes());
                t[4..8].copy_from_slice(&0x0102_0304u32.to_be_bytes());
                t[12] = 5 << 4;
                t[13] = 0x02; // SYN
                t[14..16].copy_from_slice(&64240u16.to_be_bytes());
                t
            }
            L4::Udp { sport, dport } => {
                let mut u = vec![0u8; 8];
                u[0..2].copy_from_slice(&sport.to_be_bytes());
                u[2..4].copy_from_slice(&dport.to_be_bytes());
                u[4..6].copy_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
                u
            }
            L4::Other(_) => Vec::new(),
        };
        b.extend_from_slice(&self.payload);
        b
    }

    fn fill_l4_checksum(&self, l4: &mut [u8], pseudo: &[u8]) {
        let at = match self.l4 {
            L4::Tcp { .. } => 16,
            L4::Udp { .. } => 6,
            L4::Other(_) => return,
        };
        let ck = checksum(&[pseudo, l4]);
        let ck = if ck == 0 && at == 6 { 0xffff } else { ck };
        l4[at..at + 2].copy_from_slice(&ck.to_be_bytes());
    }
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts` (each even-length
/// except possibly the last).
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        let mut chunks = part.chunks_exact(2);
        for c in &mut chunks {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(*last) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
