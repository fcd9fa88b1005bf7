//! Synthetic traffic profiles: frames drawn from a set of subscriber pools with a chosen
//! mix of address families, encapsulations, SMTP share, exemptions, relays and non-TCP
//! traffic. Used for the bundled sample capture and for every throughput benchmark.
//!
//! Invariants: generation is deterministic for a given seed; every frame is well formed
//! (checksums valid, see `op25b_dataplane::wire::build`); sources said to be "outside the
//! pools" are checked against the pool tables, so the verdict mix is what was asked for.

use crate::rng::Rng;
use op25b_dataplane::lpm::{Lpm4, Lpm6, Prefix};
use op25b_dataplane::policy::AnyPrefix;
use op25b_dataplane::wire::build::{Ext, FrameBuilder, L4};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The layer-2 wrapping of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encap {
    /// Untagged Ethernet.
    Plain,
    /// One 802.1Q tag.
    Vlan,
    /// 802.1ad outer tag + 802.1Q inner tag.
    QinQ,
    /// PPPoE session, two-byte PPP protocol.
    Pppoe,
    /// PPPoE session, one-byte (compressed) PPP protocol.
    PppoeCompressed,
    /// QinQ + PPPoE (a common BNG access encapsulation).
    QinQPppoe,
}

impl Encap {
    /// Every encapsulation.
    pub const ALL: [Encap; 6] = [
        Encap::Plain,
        Encap::Vlan,
        Encap::QinQ,
        Encap::Pppoe,
        Encap::PppoeCompressed,
        Encap::QinQPppoe,
    ];

    fn apply(self, b: FrameBuilder, session: u16) -> FrameBuilder {
        match self {
            Encap::Plain => b,
            Encap::Vlan => b.vlan(0x8100, 100),
            Encap::QinQ => b.vlan(0x88a8, 200).vlan(0x8100, 100),
            Encap::Pppoe => b.pppoe(session, false),
            Encap::PppoeCompressed => b.pppoe(session, true),
            Encap::QinQPppoe => b.vlan(0x88a8, 200).vlan(0x8100, 100).pppoe(session, true),
        }
    }

    /// Parses a name as used on the command line.
    pub fn parse(s: &str) -> Option<Encap> {
        Some(match s {
            "plain" => Encap::Plain,
            "vlan" => Encap::Vlan,
            "qinq" => Encap::QinQ,
            "pppoe" => Encap::Pppoe,
            "pppoe-pfc" => Encap::PppoeCompressed,
            "qinq-pppoe" => Encap::QinQPppoe,
            _ => return None,
        })
    }
}

/// The prefix lists traffic is drawn from.
#[derive(Clone, Debug, Default)]
pub struct Pools {
    /// Dynamic pools.
    pub dynamic: Vec<AnyPrefix>,
    /// Exemptions.
    pub exempt: Vec<AnyPrefix>,
    /// Relays.
    pub relays: Vec<AnyPrefix>,
}

impl Pools {
    /// A drop policy on port 25 over these lists.
    pub fn spec(&self) -> op25b_dataplane::policy::OutboundSpec {
        op25b_dataplane::policy::OutboundSpec {
            ports: vec![25],
            dynamic: self.dynamic.clone(),
            exempt: self.exempt.clone(),
            relays: self.relays.clone(),
            ..Default::default()
        }
    }
}

/// The traffic mix. Shares are probabilities in 0..=1.
#[derive(Clone, Debug)]
pub struct Profile {
    /// Share of IPv6 frames.
    pub v6_share: f64,
    /// Share of frames that are TCP to port 25.
    pub smtp_share: f64,
    /// Share of frames whose source lies in a dynamic pool.
    pub dynamic_share: f64,
    /// Share of pool-sourced frames that come from an exempt prefix.
    pub exempt_share: f64,
    /// Share of port-25 frames that go to a relay.
    pub relay_share: f64,
    /// Share of frames that are not TCP (UDP 53/25, ICMP, ARP).
    pub non_tcp_share: f64,
    /// Share of frames that are IPv4 fragments or IPv6 extension-header chains.
    pub odd_share: f64,
    /// Encapsulations, chosen uniformly.
    pub encaps: Vec<Encap>,
    /// Payload size in bytes; `None` draws from a simple IMIX (7:4:1 of 0, 512, 1400).
    pub payload: Option<usize>,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            v6_share: 0.3,
            smtp_share: 0.2,
            dynamic_share: 0.8,
            exempt_share: 0.1,
            relay_share: 0.3,
            non_tcp_share: 0.1,
            odd_share: 0.02,
            encaps: Encap::ALL.to_vec(),
            payload: Some(0),
        }
    }
}

/// Draws frames from pools according to a profile.
#[derive(Debug)]
pub struct Generator {
    profile: Profile,
    dyn4: Vec<Prefix<u32>>,
    dyn6: Vec<Prefix<u128>>,
    ex4: Vec<Prefix<u32>>,
    ex6: Vec<Prefix<u128>>,
    rel4: Vec<Prefix<u32>>,
    rel6: Vec<Prefix<u128>>,
    pools4: Lpm4,
    pools6: Lpm6,
    rng: Rng,
}

fn split(list: &[AnyPrefix]) -> (Vec<Prefix<u32>>, Vec<Prefix<u128>>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for p in list {
        match *p {
            AnyPrefix::V4(q) => v4.push(q),
            AnyPrefix::V6(q) => v6.push(q),
        }
    }
    (v4, v6)
}

fn pick4(rng: &mut Rng, list: &[Prefix<u32>]) -> Option<IpAddr> {
    let p = list.get(rng.below(list.len() as u64) as usize)?;
    let host = rng.next_u64() as u32 & !<u32 as op25b_dataplane::lpm::Bits>::mask(p.len);
    Some(IpAddr::V4(Ipv4Addr::from(p.addr | host)))
}

fn pick6(rng: &mut Rng, list: &[Prefix<u128>]) -> Option<IpAddr> {
    let p = list.get(rng.below(list.len() as u64) as usize)?;
    let host = rng.next_u128() & !<u128 as op25b_dataplane::lpm::Bits>::mask(p.len);
    Some(IpAddr::V6(Ipv6Addr::from(p.addr | host)))
}

impl Generator {
    /// A generator over `pools` with this profile and seed.
    pub fn new(pools: &Pools, profile: Profile, seed: u64) -> Self {
        let (dyn4, dyn6) = split(&pools.dynamic);
        let (ex4, ex6) = split(&pools.exempt);
        let (rel4, rel6) = split(&pools.relays);
        let mut e4: Vec<(Prefix<u32>, u32)> = dyn4.iter().chain(&ex4).map(|&p| (p, 0)).collect();
        e4.sort_unstable();
        e4.dedup_by_key(|e| e.0);
        let mut e6: Vec<(Prefix<u128>, u32)> = dyn6.iter().chain(&ex6).map(|&p| (p, 0)).collect();
        e6.sort_unstable();
        e6.dedup_by_key(|e| e.0);
        Generator {
            profile,
            pools4: Lpm4::build(&e4).expect("deduplicated"),
            pools6: Lpm6::build(&e6).expect("deduplicated"),
            dyn4,
            dyn6,
            ex4,
            ex6,
            rel4,
            rel6,
            rng: Rng::new(seed),
        }
    }

    /// An address outside every pool (a few tries; falls back to a documentation address).
    fn outside(&mut self, v6: bool) -> IpAddr {
        for _ in 0..64 {
            if v6 {
                let a = self.rng.next_u128();
                if self.pools6.lookup(a).is_none() {
                    return IpAddr::V6(Ipv6Addr::from(a));
                }
            } else {
                let a = self.rng.next_u64() as u32;
                if self.pools4.lookup(a).is_none() {
                    return IpAddr::V4(Ipv4Addr::from(a));
                }
            }
        }
        if v6 {
            "2001:db8:ffff::1".parse().expect("literal")
        } else {
            "198.18.0.1".parse().expect("literal")
        }
    }

    fn source(&mut self, v6: bool) -> IpAddr {
        if !self.rng.chance(self.profile.dynamic_share) {
            return self.outside(v6);
        }
        let exempt = self.rng.chance(self.profile.exempt_share);
        let got = match (v6, exempt) {
            (true, true) if !self.ex6.is_empty() => pick6(&mut self.rng, &self.ex6),
            (true, _) => pick6(&mut self.rng, &self.dyn6),
            (false, true) if !self.ex4.is_empty() => pick4(&mut self.rng, &self.ex4),
            (false, _) => pick4(&mut self.rng, &self.dyn4),
        };
        got.unwrap_or_else(|| self.outside(v6))
    }

    fn destination(&mut self, v6: bool, smtp: bool) -> IpAddr {
        if smtp && self.rng.chance(self.profile.relay_share) {
            let got = if v6 {
                pick6(&mut self.rng, &self.rel6)
            } else {
                pick4(&mut self.rng, &self.rel4)
            };
            if let Some(a) = got {
                return a;
            }
        }
        self.outside(v6)
    }

    /// The next frame.
    pub fn frame(&mut self) -> Vec<u8> {
        let p = &self.profile;
        let (v6_share, smtp_share, non_tcp, odd) =
            (p.v6_share, p.smtp_share, p.non_tcp_share, p.odd_share);
        let v6 = self.rng.chance(v6_share);
        let encap = self.profile.encaps[self.rng.below(self.profile.encaps.len() as u64) as usize];
        let session = 1 + self.rng.below(4000) as u16;
        if self.rng.chance(non_tcp) {
            let src = self.source(v6);
            let dst = self.outside(v6);
            let b = match self.rng.below(4) {
                0 => FrameBuilder::new(
                    src,
                    dst,
                    L4::Udp {
                        sport: 5353,
                        dport: 53,
                    },
                ),
                1 => FrameBuilder::new(
                    src,
                    dst,
                    L4::Udp {
                        sport: 40000,
                        dport: 25,
                    },
                ),
                2 => FrameBuilder::new(src, dst, L4::Other(if v6 { 58 } else { 1 })),
                _ => {
                    let mut arp = vec![0xff; 6];
                    arp.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01, 0x08, 0x06]);
                    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
                    arp.resize(60, 0);
                    return arp;
                }
            };
            return encap.apply(b, session).build();
        }
        let smtp = self.rng.chance(smtp_share);
        let dport = if smtp {
            25
        } else {
            [443, 80, 587, 993, 465, 8080][self.rng.below(6) as usize]
        };
        let src = self.source(v6);
        let dst = self.destination(v6, smtp);
        let sport = 1024 + self.rng.below(60000) as u16;
        let payload = match self.profile.payload {
            Some(n) => n,
            None => [0, 0, 0, 0, 0, 0, 0, 512, 512, 512, 512, 1400][self.rng.below(12) as usize],
        };
        let mut b = FrameBuilder::tcp(src, dst, sport, dport).payload(&vec![0x42; payload]);
        if self.rng.chance(odd) {
            b = if v6 {
                b.ipv6_ext(Ext::HopByHop).ipv6_ext(Ext::Fragment {
                    offset: 0,
                    more: true,
                })
            } else {
                match self.rng.below(3) {
                    0 => b.ipv4_options(2),
                    1 => b.ipv4_fragment(1, true),
                    _ => b.ipv4_fragment(100, false),
                }
            };
        }
        encap.apply(b, session).build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use op25b_dataplane::policy::{Policy, Reason};

    fn pools() -> Pools {
        let p = |s: &str| s.parse::<AnyPrefix>().unwrap();
        Pools {
            dynamic: vec![p("100.64.0.0/10"), p("2001:db8:100::/40")],
            exempt: vec![p("100.64.10.0/24")],
            relays: vec![p("192.0.2.25/32"), p("2001:db8:ff::25")],
        }
    }

    #[test]
    fn mix_matches_the_profile() {
        let pools = pools();
        let mut g = Generator::new(&pools, Profile::default(), 42);
        let spec = pools.spec();
        let (policy, _) = Policy::build(spec, 1).unwrap();
        let mut counts = std::collections::HashMap::new();
        let n = 20_000;
        for _ in 0..n {
            *counts.entry(policy.classify(&g.frame()).0).or_insert(0u32) += 1;
        }
        let blocked = counts.get(&Reason::Blocked).copied().unwrap_or(0) as f64 / n as f64;
        // 0.9 TCP × 0.2 SMTP × 0.8 pooled × 0.9 not exempt × 0.7 not relay ≈ 0.09
        assert!((0.06..0.12).contains(&blocked), "{blocked} {counts:?}");
        assert!(counts.contains_key(&Reason::DestinationRelay));
        assert!(counts.contains_key(&Reason::SourceExempt));
        assert!(counts.contains_key(&Reason::SourceNotDynamic));
        assert!(counts.contains_key(&Reason::PortNotBlocked));
        let again: Vec<Vec<u8>> = {
            let mut g = Generator::new(&pools, Profile::default(), 42);
            (0..10).map(|_| g.frame()).collect()
        };
        let mut g2 = Generator::new(&pools, Profile::default(), 42);
        assert_eq!(again, (0..10).map(|_| g2.frame()).collect::<Vec<_>>());
    }
}
