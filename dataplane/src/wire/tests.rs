//! Parser tests: every encapsulation, every skip reason, privacy (no read past the TCP
//! destination port), no panic on any byte string, and agreement with etherparse.

use super::build::{Ext, FrameBuilder, L4};
use super::*;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn v4(s: &str) -> IpAddr {
    IpAddr::V4(s.parse::<Ipv4Addr>().unwrap())
}
fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
}

fn key_v4(src: &str, dst: &str, dport: u16) -> FlowKey {
    FlowKey {
        addrs: Addrs::V4 {
            src: u32::from(src.parse::<Ipv4Addr>().unwrap()),
            dst: u32::from(dst.parse::<Ipv4Addr>().unwrap()),
        },
        transport: Transport::Tcp { dport },
    }
}
fn key_v6(src: &str, dst: &str, dport: u16) -> FlowKey {
    FlowKey {
        addrs: Addrs::V6 {
            src: u128::from(src.parse::<Ipv6Addr>().unwrap()),
            dst: u128::from(dst.parse::<Ipv6Addr>().unwrap()),
        },
        transport: Transport::Tcp { dport },
    }
}

/// A layer-2 wrapping applied to a frame under construction.
type Wrap = fn(FrameBuilder) -> FrameBuilder;

fn tcp4() -> FrameBuilder {
    FrameBuilder::tcp(v4("10.1.2.3"), v4("203.0.113.9"), 40000, 25)
}
fn tcp6() -> FrameBuilder {
    FrameBuilder::tcp(v6("2001:db8:100::7"), v6("2001:db8:ff::25"), 40000, 25)
}

/// Offset just past the TCP destination port, found by etherparse (which knows no PPPoE:
/// a PPPoE header is cut out first and its length added back).
fn dport_end(frame: &[u8]) -> usize {
    let mut off = 12;
    while matches!(
        u16::from_be_bytes([frame[off], frame[off + 1]]),
        0x8100 | 0x88a8 | 0x9100
    ) {
        off += 4;
    }
    if u16::from_be_bytes([frame[off], frame[off + 1]]) == 0x8864 {
        let ppp = if frame[off + 8] & 1 == 1 { 7 } else { 8 };
        let ip = off + 2 + 6 + (ppp - 6);
        let ethertype: u16 = if frame[ip] >> 4 == 4 { 0x0800 } else { 0x86dd };
        let mut plain = frame[..off].to_vec();
        plain.extend_from_slice(&ethertype.to_be_bytes());
        plain.extend_from_slice(&frame[ip..]);
        return dport_end(&plain) + ppp;
    }
    let s = etherparse::SlicedPacket::from_ethernet(frame).unwrap();
    let tcp = match s.transport.unwrap() {
        etherparse::TransportSlice::Tcp(t) => t,
        _ => panic!("not tcp"),
    };
    tcp.slice().as_ptr() as usize - frame.as_ptr() as usize + 4
}

#[test]
fn every_encapsulation_yields_the_same_key() {
    let k4 = key_v4("10.1.2.3", "203.0.113.9", 25);
    let k6 = key_v6("2001:db8:100::7", "2001:db8:ff::25", 25);
    let wraps: Vec<(&str, Wrap)> = vec![
        ("plain", |b| b),
        ("vlan 8100", |b| b.vlan(0x8100, 10)),
        ("vlan 88a8", |b| b.vlan(0x88a8, 10)),
        ("vlan 9100", |b| b.vlan(0x9100, 10)),
        ("qinq 88a8+8100", |b| b.vlan(0x88a8, 100).vlan(0x8100, 10)),
        ("qinq 9100+9100", |b| b.vlan(0x9100, 100).vlan(0x9100, 10)),
        ("pppoe", |b| b.pppoe(0x1234, false)),
        ("pppoe compressed", |b| b.pppoe(0x1234, true)),
        ("vlan+pppoe", |b| b.vlan(0x8100, 7).pppoe(1, false)),
        ("qinq+pppoe compressed", |b| {
            b.vlan(0x88a8, 7).vlan(0x8100, 8).pppoe(1, true)
        }),
    ];
    for (name, wrap) in &wraps {
        assert_eq!(parse(&wrap(tcp4()).build()), Ok(k4), "{name} v4");
        assert_eq!(parse(&wrap(tcp6()).build()), Ok(k6), "{name} v6");
        assert_eq!(
            parse(&wrap(tcp4().ipv4_options(10)).build()),
            Ok(k4),
            "{name} v4 options"
        );
    }
}

#[test]
fn ipv6_extension_headers_are_walked_up_to_eight() {
    let k6 = key_v6("2001:db8:100::7", "2001:db8:ff::25", 25);
    let all = [
        Ext::HopByHop,
        Ext::Routing,
        Ext::DestOpts,
        Ext::Fragment {
            offset: 0,
            more: true,
        },
    ];
    for e in all {
        assert_eq!(parse(&tcp6().ipv6_ext(e).build()), Ok(k6), "{e:?}");
    }
    let mut b = tcp6();
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        b = b.ipv6_ext(Ext::DestOpts);
    }
    assert_eq!(parse(&b.build()), Ok(k6));
    assert_eq!(
        parse(&b.ipv6_ext(Ext::DestOpts).build()),
        Err(Skip::TooManyExtHeaders)
    );
}

#[test]
fn fragments() {
    let k = key_v4("10.1.2.3", "203.0.113.9", 25);
    // First fragment: judged by its TCP header.
    assert_eq!(parse(&tcp4().ipv4_fragment(0, true).build()), Ok(k));
    // Offset 1: RFC 1858 overlap.
    assert_eq!(
        parse(&tcp4().ipv4_fragment(1, true).build()).map(|k| k.transport),
        Ok(Transport::Ipv4OverlapFragment)
    );
    assert_eq!(
        parse(&tcp4().ipv4_fragment(1, false).build()).map(|k| k.transport),
        Ok(Transport::Ipv4OverlapFragment)
    );
    for off in [2, 3, 185, 0x1fff] {
        assert_eq!(
            parse(&tcp4().ipv4_fragment(off, false).build()),
            Err(Skip::NonFirstFragment)
        );
    }
    // A UDP fragment at offset 1 is not TCP.
    let udp = FrameBuilder::new(
        v4("10.1.2.3"),
        v4("203.0.113.9"),
        L4::Udp {
            sport: 1,
            dport: 25,
        },
    );
    assert_eq!(
        parse(&udp.ipv4_fragment(1, false).build()),
        Err(Skip::NotTcp)
    );
    // IPv6: no overlap rule, non-first fragments pass.
    for off in [1, 2, 100] {
        let f = tcp6()
            .ipv6_ext(Ext::Fragment {
                offset: off,
                more: false,
            })
            .build();
        assert_eq!(parse(&f), Err(Skip::NonFirstFragment), "offset {off}");
    }
}

#[test]
fn skip_reasons() {
    let udp = FrameBuilder::new(
        v4("10.1.2.3"),
        v4("203.0.113.9"),
        L4::Udp {
            sport: 1,
            dport: 25,
        },
    );
    assert_eq!(parse(&udp.build()), Err(Skip::NotTcp));
    let icmp6 = FrameBuilder::new(v6("::1"), v6("::2"), L4::Other(58));
    assert_eq!(parse(&icmp6.build()), Err(Skip::NotTcp));
    // AH is not one of the walked extension headers.
    let ah = FrameBuilder::new(v6("::1"), v6("::2"), L4::Other(51));
    assert_eq!(parse(&ah.build()), Err(Skip::NotTcp));

    let mut arp = vec![0xffu8; 12];
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.resize(60, 0);
    assert_eq!(parse(&arp), Err(Skip::NotIp));
    let mut llc = arp.clone();
    llc[12..14].copy_from_slice(&[0x00, 0x26]);
    assert_eq!(parse(&llc), Err(Skip::NotEthernetII));

    let three = tcp4()
        .vlan(0x88a8, 1)
        .vlan(0x8100, 2)
        .vlan(0x8100, 3)
        .build();
    assert_eq!(parse(&three), Err(Skip::TooManyVlanTags));

    let mut lcp = tcp4().pppoe(5, false).build();
    lcp[20..22].copy_from_slice(&0xc021u16.to_be_bytes());
    assert_eq!(parse(&lcp), Err(Skip::PppNotIp));
    // A PPPoE session header's version, type and code do not stop the judging (a
    // Linux-based BNG carries such frames on): the same key as the well-formed frame.
    let pppoe = tcp4().pppoe(5, false).build();
    for (at, byte) in [(14, 0x12), (14, 0x00), (14, 0x22), (15, 0x09), (15, 0xa7)] {
        let mut odd = pppoe.clone();
        odd[at] = byte;
        assert_eq!(parse(&odd), parse(&pppoe), "byte {at} = {byte:#04x}");
        assert!(parse(&odd).is_ok());
    }

    let mut bad_v4 = tcp4().build();
    bad_v4[14] = 0x44; // IHL 4
    assert_eq!(parse(&bad_v4), Err(Skip::MalformedIpv4));
    let mut bad_v4 = tcp4().build();
    bad_v4[14] = 0x65; // version 6 under ethertype IPv4
    assert_eq!(parse(&bad_v4), Err(Skip::MalformedIpv4));
    let mut bad_len = tcp4().build();
    bad_len[16..18].copy_from_slice(&19u16.to_be_bytes());
    assert_eq!(parse(&bad_len), Err(Skip::MalformedIpv4));
    // Total length covering the IP header only: the ports lie in Ethernet padding.
    let mut short_len = tcp4().build();
    short_len[16..18].copy_from_slice(&22u16.to_be_bytes());
    assert_eq!(parse(&short_len), Err(Skip::TruncatedL4));
    let mut bad_v6 = tcp6().build();
    bad_v6[14] = 0x40;
    assert_eq!(parse(&bad_v6), Err(Skip::MalformedIpv6));
}

#[test]
fn every_truncation_is_a_truncated_reason_until_the_port_is_in() {
    for (name, b) in [
        ("v4", tcp4()),
        (
            "v6 ext",
            tcp6().ipv6_ext(Ext::HopByHop).ipv6_ext(Ext::Routing),
        ),
        (
            "qinq pppoe v4",
            tcp4().vlan(0x88a8, 1).vlan(0x8100, 2).pppoe(9, true),
        ),
        ("pppoe v6", tcp6().pppoe(9, false)),
    ] {
        let f = b.payload(b"EHLO spam.example\r\n").build();
        let end = dport_end(&f);
        let full = parse(&f).unwrap();
        for cut in 0..f.len() {
            let r = parse(&f[..cut]);
            if cut >= end {
                assert_eq!(r, Ok(full), "{name} cut {cut}");
            } else {
                assert!(
                    matches!(
                        r,
                        Err(Skip::TruncatedL2 | Skip::TruncatedL3 | Skip::TruncatedL4)
                    ),
                    "{name} cut {cut}: {r:?}"
                );
            }
        }
    }
}

#[test]
fn nothing_after_the_destination_port_is_read() {
    for b in [
        tcp4().ipv4_options(3),
        tcp6().ipv6_ext(Ext::DestOpts),
        tcp4().vlan(0x8100, 3).pppoe(1, true),
    ] {
        let f = b.payload(&[0x5a; 200]).build();
        let end = dport_end(&f);
        let want = parse(&f);
        for fill in [0x00u8, 0xff, 0x41] {
            let mut g = f.clone();
            for byte in &mut g[end..] {
                *byte = fill;
            }
            assert_eq!(parse(&g), want);
        }
    }
}

#[test]
fn agrees_with_etherparse_on_its_own_frames() {
    use etherparse::PacketBuilder;
    let payload = [0u8; 10];
    let mut f = Vec::new();
    PacketBuilder::ethernet2([1; 6], [2; 6])
        .single_vlan(etherparse::VlanId::try_new(5).unwrap())
        .ipv4([10, 9, 8, 7], [192, 0, 2, 25], 20)
        .tcp(1234, 587, 1, 100)
        .write(&mut f, &payload)
        .unwrap();
    assert_eq!(parse(&f), Ok(key_v4("10.9.8.7", "192.0.2.25", 587)));
    let mut f = Vec::new();
    PacketBuilder::ethernet2([1; 6], [2; 6])
        .ipv6([0x20; 16], [0x30; 16], 20)
        .tcp(1234, 25, 1, 100)
        .write(&mut f, &payload)
        .unwrap();
    assert_eq!(
        parse(&f),
        Ok(FlowKey {
            addrs: Addrs::V6 {
                src: u128::from_be_bytes([0x20; 16]),
                dst: u128::from_be_bytes([0x30; 16]),
            },
            transport: Transport::Tcp { dport: 25 },
        })
    );
}

#[test]
fn builder_frames_are_valid_for_etherparse() {
    // Our builder is used by every golden test: check it against an independent parser.
    for f in [
        tcp4().build(),
        tcp4().ipv4_options(2).build(),
        tcp6().build(),
        tcp6().ipv6_ext(Ext::HopByHop).build(),
        tcp4().vlan(0x8100, 1).build(),
        tcp6().vlan(0x88a8, 1).vlan(0x8100, 2).build(),
    ] {
        let s = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
        let (src, dst) = match s.net.unwrap() {
            etherparse::NetSlice::Ipv4(ip) => (
                IpAddr::V4(ip.header().source_addr()),
                IpAddr::V4(ip.header().destination_addr()),
            ),
            etherparse::NetSlice::Ipv6(ip) => (
                IpAddr::V6(ip.header().source_addr()),
                IpAddr::V6(ip.header().destination_addr()),
            ),
            other => panic!("{other:?}"),
        };
        let dport = match s.transport.unwrap() {
            etherparse::TransportSlice::Tcp(t) => t.destination_port(),
            other => panic!("{other:?}"),
        };
        let k = parse(&f).unwrap();
        match (k.addrs, src, dst) {
            (Addrs::V4 { src: a, dst: b }, IpAddr::V4(x), IpAddr::V4(y)) => {
                assert_eq!((a, b), (u32::from(x), u32::from(y)))
            }
            (Addrs::V6 { src: a, dst: b }, IpAddr::V6(x), IpAddr::V6(y)) => {
                assert_eq!((a, b), (u128::from(x), u128::from(y)))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(k.transport, Transport::Tcp { dport });
    }
}

/// What [`parse_plain_ipv4`] must return: the key of exactly those frames that [`parse`]
/// judges as untagged IPv4 with a 20-byte header and a TCP port, `None` for all others.
fn plain_by_parse(frame: &[u8]) -> Option<(u32, u32, u16)> {
    match parse_layout(frame) {
        Ok(Layout {
            key:
                FlowKey {
                    addrs: Addrs::V4 { src, dst },
                    transport: Transport::Tcp { dport },
                },
            pppoe: None,
            l3: 14,
            l4: 34,
            ..
        }) => Some((src, dst, dport)),
        _ => None,
    }
}

#[test]
fn the_plain_ipv4_path_takes_exactly_the_plain_frames() {
    let plain = tcp4().build();
    let key = plain_by_parse(&plain);
    assert_eq!(
        key,
        Some((0x0a01_0203, 0xcb00_7109, 25)),
        "a plain frame is plain"
    );
    assert_eq!(parse_plain_ipv4(&plain), key);
    // Every frame that is not plain, and every edge of the plain one's checks.
    let total_len = |f: &mut Vec<u8>, n: u16| f[16..18].copy_from_slice(&n.to_be_bytes());
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("vlan", tcp4().vlan(0x8100, 7).build()),
        ("qinq", tcp4().vlan(0x88a8, 1).vlan(0x8100, 2).build()),
        ("pppoe", tcp4().pppoe(1, false).build()),
        ("pppoe, compressed", tcp4().pppoe(1, true).build()),
        ("ipv6", tcp6().build()),
        ("ipv4 options", tcp4().ipv4_options(1).build()),
        ("overlap fragment", tcp4().ipv4_fragment(1, false).build()),
        ("later fragment", tcp4().ipv4_fragment(3, true).build()),
        ("first fragment", tcp4().ipv4_fragment(0, true).build()),
        (
            "udp",
            FrameBuilder::new(
                v4("10.0.0.1"),
                v4("10.0.0.2"),
                L4::Udp {
                    sport: 1,
                    dport: 25,
                },
            )
            .build(),
        ),
    ];
    for cut in [0, 13, 14, 34, 36, 37, 38, 39] {
        let mut f = plain.clone();
        f.truncate(cut);
        cases.push(("cut", f));
    }
    for total in [0, 19, 20, 23, 24, 25] {
        let mut f = plain.clone();
        total_len(&mut f, total);
        cases.push(("total length", f));
    }
    for (at, v) in [
        (12, 0x86),
        (13, 0x01),
        (14, 0x44),
        (14, 0x46),
        (14, 0x55),
        (23, 17),
        // Bytes read but masked off (TOS, TTL): they change nothing.
        (15, 0xff),
        (22, 0x00),
        (22, 0xff),
    ] {
        let mut f = plain.clone();
        f[at] = v;
        cases.push(("byte", f));
    }
    // Offset bits in either byte (0x0100, 0x1000 only in the first; 0x2100 with MF).
    for frag in [
        0x2000u16, 0x4000, 0x0001, 0x1fff, 0x8000, 0x0100, 0x1000, 0x2100,
    ] {
        let mut f = plain.clone();
        f[20..22].copy_from_slice(&frag.to_be_bytes());
        cases.push(("flags and offset", f));
    }
    let mut taken = 0;
    for (what, f) in &cases {
        let want = plain_by_parse(f);
        assert_eq!(parse_plain_ipv4(f), want, "{what}: {f:02x?}");
        taken += usize::from(want.is_some());
    }
    // Both sides of the checks were met: DF/MF/reserved flags, a first fragment, a cut or
    // length that still reaches the port.
    assert!(
        (8..cases.len() - 8).contains(&taken),
        "{taken} of {}",
        cases.len()
    );
}

/// `frame` with the bytes at the `flips` positions (those inside it) replaced, cut to `cut`.
fn mutated(mut frame: Vec<u8>, flips: &[(usize, u8)], cut: usize) -> Vec<u8> {
    for &(at, v) in flips {
        if let Some(b) = frame.get_mut(at) {
            *b = v;
        }
    }
    frame.truncate(cut);
    frame
}

proptest! {
    #[test]
    fn never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn never_panics_on_mutated_frames(
        pick in 0usize..4,
        flips in proptest::collection::vec((0usize..120, any::<u8>()), 1..8),
        cut in 0usize..140,
    ) {
        let f = match pick {
            0 => tcp4().vlan(0x8100, 1).pppoe(1, true).build(),
            1 => tcp6().ipv6_ext(Ext::HopByHop).ipv6_ext(Ext::Fragment { offset: 0, more: true }).build(),
            2 => tcp6().vlan(0x88a8, 1).vlan(0x8100, 1).pppoe(2, false).build(),
            _ => tcp4().ipv4_options(4).build(),
        };
        let _ = parse(&mutated(f, &flips, cut));
    }

    #[test]
    fn the_plain_ipv4_path_agrees_with_parse_on_mutated_frames(
        pick in 0usize..3,
        flips in proptest::collection::vec((0usize..48, any::<u8>()), 0..4),
        cut in 30usize..80,
    ) {
        let f = match pick {
            0 => tcp4().build(),
            1 => tcp4().ipv4_fragment(0, true).build(),
            _ => tcp4().vlan(0x8100, 1).build(),
        };
        let f = mutated(f, &flips, cut);
        prop_assert_eq!(parse_plain_ipv4(&f), plain_by_parse(&f));
    }
}
