//! Zero-copy decapsulation of one Ethernet frame to the few fields the policy reads.
//!
//! What is walked (DESIGN.md, "Policy semantics"): Ethernet II; at most two VLAN tags
//! (TPID 0x8100, 0x88a8, 0x9100); a PPPoE session header (0x8864) carrying PPP protocol
//! IPv4 (0x0021) or IPv6 (0x0057), also in the one-byte protocol-field-compressed form;
//! the **outermost** IPv4 or IPv6 header (tunnels are not entered); IPv6 extension headers
//! 0, 43, 44 and 60, at most [`MAX_IPV6_EXT_HEADERS`] of them; then the TCP destination port.
//!
//! Invariants:
//! - The frame is borrowed, never copied, and no byte after the TCP destination port is ever
//!   read (privacy by construction: a frame cut right after that port parses identically).
//! - Every read is bounds-checked through `get`, so no byte string can make [`parse`] panic;
//!   a frame that cannot be judged yields a [`Skip`] reason, never an error path.
//! - Checksums are not verified: a verdict depends on addresses and ports only.
//! - Unknown ethertypes, PPP protocols and IP protocols are not errors: they are [`Skip`]
//!   reasons that the worker counts, and such frames pass.

pub mod build;
pub mod rst;
#[cfg(test)]
mod tests;

/// Most IPv6 extension headers walked before giving up on finding TCP.
pub const MAX_IPV6_EXT_HEADERS: usize = 8;
/// Most VLAN tags walked (single tag or QinQ).
pub const MAX_VLAN_TAGS: usize = 2;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_PPPOE_SESSION: u16 = 0x8864;
const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;
const IPPROTO_TCP: u8 = 6;

/// Source and destination of the outermost IP header, host byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Addrs {
    /// IPv4 source and destination.
    V4 {
        /// Source address.
        src: u32,
        /// Destination address.
        dst: u32,
    },
    /// IPv6 source and destination.
    V6 {
        /// Source address.
        src: u128,
        /// Destination address.
        dst: u128,
    },
}

/// What the policy knows of the TCP segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// An unfragmented segment or a first fragment: its destination port.
    Tcp {
        /// TCP destination port.
        dport: u16,
    },
    /// An IPv4 TCP fragment at offset exactly 1 (8 bytes): it can overwrite the ports of
    /// the first fragment on reassembly (RFC 1858), so it is judged as if its port were in
    /// the blocked set.
    Ipv4OverlapFragment,
}

/// Everything the policy reads of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Outermost IP addresses.
    pub addrs: Addrs,
    /// TCP port information.
    pub transport: Transport,
}

macro_rules! skip_reasons {
    ($($(#[$doc:meta])* $name:ident = $label:literal,)*) => {
        /// Why a frame is not judged by policy (it passes, and is counted under this reason).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Skip {
            $($(#[$doc])* $name,)*
        }

        impl Skip {
            /// Every reason, in counter order.
            pub const ALL: &'static [Skip] = &[$(Skip::$name,)*];
            /// Number of reasons (size of a counter array).
            pub const COUNT: usize = Self::ALL.len();

            /// Stable snake_case name used in reports and metrics.
            pub const fn label(self) -> &'static str {
                match self {
                    $(Skip::$name => $label,)*
                }
            }
        }
    };
}

skip_reasons! {
    /// The type/length field is below 0x0600: an IEEE 802.3 length frame (LLC, STP, …).
    NotEthernetII = "not_ethernet_ii",
    /// An ethertype other than IPv4, IPv6, PPPoE session or a VLAN tag (ARP, LLDP, …).
    NotIp = "not_ip",
    /// A PPPoE session frame whose PPP protocol is not IPv4 or IPv6 (LCP, IPCP, …).
    PppNotIp = "ppp_not_ip",
    /// An IP packet whose transport is not TCP (UDP, ICMP, a tunnel, ESP, AH, …).
    NotTcp = "not_tcp",
    /// A fragment other than the first: it carries no ports.
    NonFirstFragment = "non_first_fragment",
    /// More than two VLAN tags.
    TooManyVlanTags = "too_many_vlan_tags",
    /// More than eight IPv6 extension headers before TCP.
    TooManyExtHeaders = "too_many_ipv6_ext_headers",
    /// The frame ends inside the Ethernet, VLAN or PPPoE header.
    TruncatedL2 = "truncated_l2",
    /// The frame ends inside the IP header or an IPv6 extension header.
    TruncatedL3 = "truncated_l3",
    /// The frame (or the IP packet's stated length) ends before the TCP destination port.
    TruncatedL4 = "truncated_l4",
    /// An IPv4 header with the wrong version, IHL below 5 or a total length below its IHL.
    MalformedIpv4 = "malformed_ipv4",
    /// An IPv6 header with the wrong version.
    MalformedIpv6 = "malformed_ipv6",
}

#[inline(always)]
fn rd8(f: &[u8], off: usize) -> Option<u8> {
    f.get(off).copied()
}

#[inline(always)]
fn rd16(f: &[u8], off: usize) -> Option<u16> {
    let b = f.get(off..off + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

#[inline(always)]
fn be32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

#[inline(always)]
fn be128(b: &[u8]) -> u128 {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    u128::from_be_bytes(a)
}

/// Where the layers of a judged frame start (what a reset needs to mirror the frame).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The key.
    pub key: FlowKey,
    /// Offset of the PPPoE session header, if the frame has one.
    pub pppoe: Option<usize>,
    /// Offset of the outermost IP header.
    pub l3: usize,
    /// Offset of the TCP header (for an overlap fragment: of the IPv4 payload).
    pub l4: usize,
    /// End of the IP packet within the frame (Ethernet padding excluded).
    pub end: usize,
}

/// Decapsulates `frame` and returns the key the policy judges, or why it cannot be judged.
#[inline]
pub fn parse(frame: &[u8]) -> Result<FlowKey, Skip> {
    parse_layout(frame).map(|l| l.key)
}

/// The most common frame, in one length check and a handful of loads: untagged Ethernet II
/// carrying an IPv4 header of 20 bytes (IHL 5), TCP, not a fragment, with an IP total
/// length that reaches past the TCP destination port. Returns (source, destination,
/// destination port), exactly what [`parse`] returns for such a frame; `None` for every
/// other frame, which the caller then hands to [`parse`]. Reads bytes 12..38 only.
#[inline(always)]
pub fn parse_plain_ipv4(frame: &[u8]) -> Option<(u32, u32, u16)> {
    let h: &[u8; 38] = frame.get(..38)?.try_into().ok()?;
    // Bytes 12..20 as one 8-byte read: the ethertype 0x0800 and version 4 with IHL 5 (the
    // TOS byte masked off), and the IP total length. Read apart, LLVM made them a byte
    // and two half-words; this one read made the DPDK poll about 1% faster on net_null,
    // and `classify` as fast as before, mixed encapsulations or plain (in-process A/B,
    // bench/results/dpdk-null.md, "2026-12-03, late night").
    let head = u64::from_le_bytes(*h[12..].first_chunk()?);
    let eth = head as u32 & 0x00ff_ffff;
    // Fragment offset (the low 13 bits; MF may be set on a first fragment) and protocol:
    // bytes 20..24 as one 4-byte read, the TTL byte masked off.
    let frag_proto = u32::from_le_bytes(*h[20..].first_chunk()?) & 0xff00_ff1f;
    // The IP packet must reach the destination port: 20 bytes of IP and 4 of TCP.
    let total = ((head >> 32) as u16).swap_bytes();
    let plain = (eth == u32::from_le_bytes([0x08, 0x00, 0x45, 0]))
        & (frag_proto == u32::from(IPPROTO_TCP) << 24)
        & (total >= 24);
    plain.then(|| {
        (
            u32::from_be_bytes([h[26], h[27], h[28], h[29]]),
            u32::from_be_bytes([h[30], h[31], h[32], h[33]]),
            u16::from_be_bytes([h[36], h[37]]),
        )
    })
}

/// [`parse`], also returning where the layers start. Reads exactly the same bytes.
#[inline(always)]
pub fn parse_layout(frame: &[u8]) -> Result<Layout, Skip> {
    let mut ethertype = rd16(frame, 12).ok_or(Skip::TruncatedL2)?;
    if ethertype < 0x0600 {
        return Err(Skip::NotEthernetII);
    }
    let mut off = 14;
    let mut tags = 0;
    while matches!(ethertype, 0x8100 | 0x88a8 | 0x9100) {
        if tags == MAX_VLAN_TAGS {
            return Err(Skip::TooManyVlanTags);
        }
        ethertype = rd16(frame, off + 2).ok_or(Skip::TruncatedL2)?;
        off += 4;
        tags += 1;
    }
    match ethertype {
        ETHERTYPE_IPV4 => ipv4(frame, off, None),
        ETHERTYPE_IPV6 => ipv6(frame, off, None),
        ETHERTYPE_PPPOE_SESSION => {
            // Version, type and code are not checked (RFC 2516 wants 1, 1 and 0): Linux's
            // PPPoE receive path does not check them either, so a BNG built on it would
            // carry such a frame's IP packet on, and passing it unjudged would be a way
            // around the policy.
            let hdr = frame.get(off..off + 7).ok_or(Skip::TruncatedL2)?;
            // PPP protocol numbers have an odd low byte and an even high byte, so an odd
            // first byte is a compressed (one-byte) protocol field (RFC 1661 §6.5).
            let (proto, ip_off) = if hdr[6] & 1 == 1 {
                (u16::from(hdr[6]), off + 7)
            } else {
                (rd16(frame, off + 6).ok_or(Skip::TruncatedL2)?, off + 8)
            };
            match proto {
                PPP_IPV4 => ipv4(frame, ip_off, Some(off)),
                PPP_IPV6 => ipv6(frame, ip_off, Some(off)),
                _ => Err(Skip::PppNotIp),
            }
        }
        _ => Err(Skip::NotIp),
    }
}

#[inline(always)]
fn ipv4(frame: &[u8], off: usize, pppoe: Option<usize>) -> Result<Layout, Skip> {
    let h = frame.get(off..off + 20).ok_or(Skip::TruncatedL3)?;
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if h[0] >> 4 != 4 || ihl < 20 || total_len < ihl {
        return Err(Skip::MalformedIpv4);
    }
    let addrs = Addrs::V4 {
        src: be32(&h[12..16]),
        dst: be32(&h[16..20]),
    };
    if h[9] != IPPROTO_TCP {
        return Err(Skip::NotTcp);
    }
    let frag_offset = u16::from_be_bytes([h[6], h[7]]) & 0x1fff;
    match frag_offset {
        0 => {}
        1 => {
            return Ok(Layout {
                key: FlowKey {
                    addrs,
                    transport: Transport::Ipv4OverlapFragment,
                },
                pppoe,
                l3: off,
                l4: off + ihl,
                end: frame.len().min(off + total_len),
            })
        }
        _ => return Err(Skip::NonFirstFragment),
    }
    // Ethernet padding lies beyond the IP total length; a short capture ends before it.
    let end = frame.len().min(off + total_len);
    tcp(frame, off, off + ihl, end, addrs, pppoe)
}

#[inline(always)]
fn ipv6(frame: &[u8], off: usize, pppoe: Option<usize>) -> Result<Layout, Skip> {
    let h = frame.get(off..off + 40).ok_or(Skip::TruncatedL3)?;
    if h[0] >> 4 != 6 {
        return Err(Skip::MalformedIpv6);
    }
    let payload_len = usize::from(u16::from_be_bytes([h[4], h[5]]));
    let addrs = Addrs::V6 {
        src: be128(&h[8..24]),
        dst: be128(&h[24..40]),
    };
    // A zero payload length announces a jumbogram (RFC 2675): the frame bounds it.
    let end = if payload_len == 0 {
        frame.len()
    } else {
        frame.len().min(off + 40 + payload_len)
    };
    // `end` lies in off+40..=frame.len(): the header check above read off..off+40.
    let bounded = &frame[..end];
    let mut next = h[6];
    let mut p = off + 40;
    let mut walked = 0;
    loop {
        match next {
            IPPROTO_TCP => return tcp(frame, off, p, end, addrs, pppoe),
            0 | 43 | 60 | 44 => {
                if walked == MAX_IPV6_EXT_HEADERS {
                    return Err(Skip::TooManyExtHeaders);
                }
                walked += 1;
                let nh = rd8(bounded, p).ok_or(Skip::TruncatedL3)?;
                if next == 44 {
                    let frag = rd16(bounded, p + 2).ok_or(Skip::TruncatedL3)?;
                    if frag >> 3 != 0 {
                        return Err(Skip::NonFirstFragment);
                    }
                    p += 8;
                } else {
                    let len = rd8(bounded, p + 1).ok_or(Skip::TruncatedL3)?;
                    p += (usize::from(len) + 1) * 8;
                }
                next = nh;
            }
            _ => return Err(Skip::NotTcp),
        }
    }
}

#[inline(always)]
fn tcp(
    frame: &[u8],
    l3: usize,
    l4: usize,
    end: usize,
    addrs: Addrs,
    pppoe: Option<usize>,
) -> Result<Layout, Skip> {
    if l4 + 4 > end {
        return Err(Skip::TruncatedL4);
    }
    let dport = rd16(frame, l4 + 2).ok_or(Skip::TruncatedL4)?;
    Ok(Layout {
        key: FlowKey {
            addrs,
            transport: Transport::Tcp { dport },
        },
        pppoe,
        l3,
        l4,
        end,
    })
}
