//! TCP resets for the `reject` action: the answer to a blocked segment, built so the
//! sender's TCP accepts it (RFC 9293 §3.10.7.1, "reset generation") and its mail software
//! fails at once instead of retrying for days.
//!
//! The reset mirrors the blocked frame's framing: Ethernet addresses swapped, the same VLAN
//! tags, the same PPPoE session (payload length rewritten) and PPP protocol field, then a
//! fresh IPv4 (no options) or IPv6 (no extension headers) header with the addresses
//! swapped, and a 20-byte TCP header with the ports swapped. If the blocked segment carried
//! an ACK, the reset's sequence number is that acknowledgment number; otherwise its
//! sequence number is 0 and it acknowledges everything the segment occupied (data, SYN,
//! FIN). Frames shorter than 60 bytes are zero-padded to Ethernet's minimum.
//!
//! Invariants:
//! - This is the only code that reads a frame beyond its TCP destination port (sequence,
//!   acknowledgment, data offset and flags), only for a frame already judged blocked under
//!   `reject`, and nothing it reads is kept: it goes into the reset and nowhere else.
//! - No reset answers a reset, an IPv4 overlap fragment (it has no TCP header), a
//!   segment whose TCP header is cut short, or a frame with a group (broadcast or
//!   multicast) MAC or IP address, or an unspecified or loopback address, on either
//!   side; `build_reset` then returns false.
//! - `out` is cleared and refilled; it allocates only while growing to the largest reset.

use super::{parse_layout, Addrs, Transport};

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// Hop limit / TTL of a reset.
pub const RESET_TTL: u8 = 64;

/// Whether `frame`, blocked under `reject`, is to be answered with a reset at all (see the
/// module's invariants); [`build_reset`] builds one exactly when this is true. The worker
/// asks first, so a frame that can get no reset neither spends a reset token nor counts
/// as rejected.
pub fn reset_due(frame: &[u8]) -> bool {
    due(frame).is_some()
}

/// The frame's layout when a reset is due.
fn due(frame: &[u8]) -> Option<super::Layout> {
    let l = parse_layout(frame).ok()?;
    if !matches!(l.key.transport, Transport::Tcp { .. }) || l.l4 + 20 > l.end {
        return None;
    }
    // Never to or from a group: a reset is for the one sender of the segment. A group
    // (broadcast or multicast) MAC or IP on either side would make it a flood to every
    // station of the access network, or carry a group source (RFC 1122 §3.2.1.3 and
    // §4.2.3.10, RFC 4291 §2.7), and a spoofed frame could ask for exactly that.
    let group_mac = frame[0] & 1 != 0 || frame[6] & 1 != 0;
    // Nor to an address no host has: unspecified, "this network" or loopback.
    let group_ip = match l.key.addrs {
        Addrs::V4 { src, dst } => [src, dst]
            .iter()
            .any(|&a| a >> 28 == 0xe || a == u32::MAX || a >> 24 == 0 || a >> 24 == 127),
        Addrs::V6 { src, dst } => [src, dst].iter().any(|&a| a >> 120 == 0xff || a <= 1),
    };
    if group_mac || group_ip || frame[l.l4 + 13] & RST != 0 {
        return None;
    }
    Some(l)
}

/// Writes into `out` the reset answering `frame`; false (and `out` empty) when none is due.
pub fn build_reset(frame: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    let Some(l) = due(frame) else {
        return false;
    };
    let t = &frame[l.l4..l.l4 + 20];
    let flags = t[13];
    let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    let ack = u32::from_be_bytes([t[8], t[9], t[10], t[11]]);
    let header = usize::from(t[12] >> 4) * 4;
    let payload = l.end.saturating_sub(l.l4 + header.max(20));
    let occupied = payload as u32 + u32::from(flags & SYN != 0) + u32::from(flags & FIN != 0);
    let (r_seq, r_ack, r_flags) = if flags & ACK != 0 {
        (ack, 0, RST)
    } else {
        (0, seq.wrapping_add(occupied), RST | ACK)
    };
    // Ethernet: swapped addresses, then tags / PPPoE / PPP protocol exactly as received.
    out.extend_from_slice(&frame[6..12]);
    out.extend_from_slice(&frame[0..6]);
    out.extend_from_slice(&frame[12..l.l3]);
    let mut tcp = [0u8; 20];
    tcp[0..2].copy_from_slice(&t[2..4]);
    tcp[2..4].copy_from_slice(&t[0..2]);
    tcp[4..8].copy_from_slice(&r_seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&r_ack.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = r_flags;
    let ip_len = match l.key.addrs {
        Addrs::V4 { src, dst } => {
            let mut ip = [0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&40u16.to_be_bytes());
            ip[6] = 0x40; // don't fragment
            ip[8] = RESET_TTL;
            ip[9] = 6;
            ip[12..16].copy_from_slice(&dst.to_be_bytes());
            ip[16..20].copy_from_slice(&src.to_be_bytes());
            let c = !fold(sum(&ip, 0));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            let mut pseudo = sum(&ip[12..20], 0);
            pseudo += 6 + 20;
            let c = !fold(sum(&tcp, pseudo));
            tcp[16..18].copy_from_slice(&c.to_be_bytes());
            out.extend_from_slice(&ip);
            40
        }
        Addrs::V6 { src, dst } => {
            let mut ip = [0u8; 40];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&20u16.to_be_bytes());
            ip[6] = 6;
            ip[7] = RESET_TTL;
            ip[8..24].copy_from_slice(&dst.to_be_bytes());
            ip[24..40].copy_from_slice(&src.to_be_bytes());
            let mut pseudo = sum(&ip[8..40], 0);
            pseudo += 6 + 20;
            let c = !fold(sum(&tcp, pseudo));
            tcp[16..18].copy_from_slice(&c.to_be_bytes());
            out.extend_from_slice(&ip);
            60
        }
    };
    out.extend_from_slice(&tcp);
    if let Some(p) = l.pppoe {
        // PPPoE length covers the PPP protocol field and the IP packet.
        let len = (l.l3 - (p + 6) + ip_len) as u16;
        out[p + 4..p + 6].copy_from_slice(&len.to_be_bytes());
    }
    if out.len() < 60 {
        out.resize(60, 0);
    }
    true
}

/// One's-complement sum of big-endian 16-bit words (odd tail padded with zero).
fn sum(bytes: &[u8], mut acc: u32) -> u32 {
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        acc += u32::from(*b) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::build::FrameBuilder;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    /// Plain, VLAN, QinQ, PPPoE, PPPoE with a compressed protocol field, QinQ + PPPoE.
    const ENCAPS: usize = 6;

    fn syn(src: &str, dst: &str, encap: usize) -> Vec<u8> {
        let b = FrameBuilder::tcp(src.parse().unwrap(), dst.parse().unwrap(), 40000, 25);
        match encap {
            0 => b,
            1 => b.vlan(0x8100, 100),
            2 => b.vlan(0x88a8, 200).vlan(0x8100, 100),
            3 => b.pppoe(7, false),
            4 => b.pppoe(7, true),
            _ => b.vlan(0x88a8, 200).vlan(0x8100, 100).pppoe(7, true),
        }
        .build()
    }

    /// Checks every field of a reset against the frame it answers, with etherparse as an
    /// independent reader (it also verifies the lengths line up).
    fn check(frame: &[u8], rst: &[u8]) {
        assert_eq!(&rst[0..6], &frame[6..12], "destination MAC = sender's");
        assert_eq!(
            &rst[6..12],
            &frame[0..6],
            "source MAC = the address the sender used"
        );
        let (lf, lr) = (parse_layout(frame).unwrap(), parse_layout(rst).unwrap());
        let mut expect = frame[12..lf.l3].to_vec();
        if let Some(p) = lf.pppoe {
            // Everything but the PPPoE payload length is mirrored.
            expect[p - 8..p - 6].copy_from_slice(&rst[p + 4..p + 6]);
        }
        assert_eq!(
            &rst[12..lr.l3],
            &expect[..],
            "tags, PPPoE session, PPP protocol"
        );
        if let Some(p) = lr.pppoe {
            let len = usize::from(u16::from_be_bytes([rst[p + 4], rst[p + 5]]));
            assert_eq!(len, lr.end - (p + 6), "PPPoE payload length");
            // etherparse does not walk PPPoE: compare the IP packets behind it.
            let strip = |f: &[u8], l: &crate::wire::Layout| {
                let mut v = f[..p - 2].to_vec();
                let et: u16 = if matches!(l.key.addrs, Addrs::V4 { .. }) {
                    0x0800
                } else {
                    0x86dd
                };
                v.extend_from_slice(&et.to_be_bytes());
                v.extend_from_slice(&f[l.l3..l.end]);
                v
            };
            return check(&strip(frame, &lf), &strip(rst, &lr));
        }
        let orig = SlicedPacket::from_ethernet(frame).unwrap();
        let r = SlicedPacket::from_ethernet(rst).unwrap();
        assert_eq!(orig.vlan().is_some(), r.vlan().is_some());
        let (Some(TransportSlice::Tcp(ot)), Some(TransportSlice::Tcp(rt))) =
            (&orig.transport, &r.transport)
        else {
            panic!("both carry TCP");
        };
        assert_eq!(rt.source_port(), ot.destination_port());
        assert_eq!(rt.destination_port(), ot.source_port());
        assert!(rt.rst());
        assert!(!rt.syn() && !rt.fin());
        assert_eq!(rt.data_offset(), 5);
        assert_eq!(rt.window_size(), 0);
        if ot.ack() {
            assert_eq!(rt.sequence_number(), ot.acknowledgment_number());
            assert!(!rt.ack());
        } else {
            assert_eq!(rt.sequence_number(), 0);
            assert!(rt.ack());
            let occupied = ot.payload().len() as u32 + u32::from(ot.syn()) + u32::from(ot.fin());
            assert_eq!(
                rt.acknowledgment_number(),
                ot.sequence_number().wrapping_add(occupied)
            );
        }
        match (&orig.net, &r.net) {
            (Some(NetSlice::Ipv4(o)), Some(NetSlice::Ipv4(n))) => {
                assert_eq!(n.header().source(), o.header().destination());
                assert_eq!(n.header().destination(), o.header().source());
                assert_eq!(n.header().ttl(), RESET_TTL);
                assert_eq!(n.header().total_len(), 40);
                let h = n.header().to_header();
                assert_eq!(h.header_checksum, h.calc_header_checksum());
                let tcp = rt.to_header();
                assert_eq!(
                    tcp.checksum,
                    tcp.calc_checksum_ipv4(&h, &[]).unwrap(),
                    "TCP checksum"
                );
            }
            (Some(NetSlice::Ipv6(o)), Some(NetSlice::Ipv6(n))) => {
                assert_eq!(n.header().source(), o.header().destination());
                assert_eq!(n.header().destination(), o.header().source());
                assert_eq!(n.header().hop_limit(), RESET_TTL);
                assert_eq!(n.header().payload_length(), 20);
                let h = n.header().to_header();
                let tcp = rt.to_header();
                assert_eq!(tcp.checksum, tcp.calc_checksum_ipv6(&h, &[]).unwrap());
            }
            other => panic!("address families differ: {other:?}"),
        }
    }

    #[test]
    fn resets_mirror_every_encapsulation_and_family() {
        let mut out = Vec::new();
        for encap in 0..ENCAPS {
            for (src, dst) in [
                ("10.1.2.3", "198.51.100.7"),
                ("2001:db8:100::5", "2001:db8:ffff::25"),
            ] {
                let f = syn(src, dst, encap);
                assert!(build_reset(&f, &mut out), "{encap:?} {src}");
                check(&f, &out);
                assert!(out.len() >= 60, "padded to Ethernet's minimum");
                // The reset parses back with the addresses and ports swapped.
                let k = crate::wire::parse(&f).unwrap();
                let r = crate::wire::parse(&out).unwrap();
                match (k.addrs, r.addrs) {
                    (Addrs::V4 { src: a, dst: b }, Addrs::V4 { src: c, dst: d }) => {
                        assert_eq!((a, b), (d, c))
                    }
                    (Addrs::V6 { src: a, dst: b }, Addrs::V6 { src: c, dst: d }) => {
                        assert_eq!((a, b), (d, c))
                    }
                    _ => panic!("family changed"),
                }
                assert_eq!(r.transport, Transport::Tcp { dport: 40000 });
            }
        }
    }

    #[test]
    fn sequence_numbers_follow_rfc_9293() {
        let mut out = Vec::new();
        let base = syn("10.1.2.3", "198.51.100.7", 0);
        let l = parse_layout(&base).unwrap();
        // A segment with ACK and 11 bytes of data.
        let mut f = base[..l.end].to_vec();
        f[l.l4 + 13] = ACK | 0x08;
        f[l.l4 + 4..l.l4 + 8].copy_from_slice(&1000u32.to_be_bytes());
        f[l.l4 + 8..l.l4 + 12].copy_from_slice(&777u32.to_be_bytes());
        f.extend_from_slice(b"EHLO there\n");
        let total = (f.len() - l.l3) as u16;
        f[l.l3 + 2..l.l3 + 4].copy_from_slice(&total.to_be_bytes());
        assert!(build_reset(&f, &mut out));
        check(&f, &out);
        let r = &out[l.l4..l.l4 + 20];
        assert_eq!(&r[4..8], &777u32.to_be_bytes());
        assert_eq!(r[13], RST);
        // A SYN without ACK at sequence 0xffff_ffff: the answer acknowledges 0 (wraps).
        let mut f = base.clone();
        f[l.l4 + 13] = SYN;
        f[l.l4 + 4..l.l4 + 8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(build_reset(&f, &mut out));
        check(&f, &out);
        assert_eq!(&out[l.l4 + 8..l.l4 + 12], &0u32.to_be_bytes());
        assert_eq!(out[l.l4 + 13], RST | ACK);
    }

    #[test]
    fn no_reset_for_resets_fragments_or_cut_headers() {
        let mut out = vec![1, 2, 3];
        let base = syn("10.1.2.3", "198.51.100.7", 0);
        let l = parse_layout(&base).unwrap();
        let mut f = base.clone();
        f[l.l4 + 13] = RST | ACK;
        assert!(!reset_due(&f) && !build_reset(&f, &mut out));
        assert!(out.is_empty());
        // Cut inside the TCP header (the port is there, the flags are not).
        assert!(!reset_due(&base[..l.l4 + 10]) && !build_reset(&base[..l.l4 + 10], &mut out));
        // An IPv4 overlap fragment carries no TCP header.
        let mut f = base.clone();
        f[l.l3 + 7] = 1;
        assert!(!reset_due(&f) && !build_reset(&f, &mut out));
        assert!(!reset_due(&[0u8; 10]) && !build_reset(&[0u8; 10], &mut out));
        // A group MAC on either side (a spoofed broadcast source would make the reset a
        // flood), or a group IP address on either side: no reset.
        for (at, byte) in [(0, 0xff), (0, 0x01), (6, 0xff), (6, 0x01)] {
            let mut f = base.clone();
            f[at] = byte;
            assert!(
                !reset_due(&f) && !build_reset(&f, &mut out),
                "MAC byte {at} = {byte:#x}"
            );
        }
        for (src, dst) in [
            ("10.1.2.3", "255.255.255.255"),
            ("10.1.2.3", "224.0.0.1"),
            ("239.1.2.3", "198.51.100.7"),
            ("2001:db8::1", "ff02::1"),
            ("ff05::2", "2001:db8::1"),
            ("0.0.0.0", "198.51.100.7"),
            ("127.0.0.1", "198.51.100.7"),
            ("::", "2001:db8::1"),
            ("::1", "2001:db8::1"),
        ] {
            assert!(
                !reset_due(&syn(src, dst, 0)) && !build_reset(&syn(src, dst, 0), &mut out),
                "{src} → {dst}"
            );
        }
        // Unicast both ways still gets its reset.
        assert!(
            reset_due(&syn("2001:db8::1", "2001:db8::2", 3))
                && build_reset(&syn("2001:db8::1", "2001:db8::2", 3), &mut out)
        );
    }
}
