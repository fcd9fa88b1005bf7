//! The DPDK wire gives every mbuf back: dropped frames go straight into the lcore's cache
//! of the pool (shim.c, `op25b_free_to`), and the mbufs that cannot (one referenced twice,
//! a chain of segments) go back exactly once. On `net_null` ports in this process's own
//! EAL (`--no-huge`, so no hugepages are needed); a leak would empty the pool and stop the
//! bursts, a double free would show as fewer mbufs in use than none.
//!
//! Invariant: one EAL per process, so this file holds one test.
#![cfg(feature = "dpdk")]

use op25b_dataplane::policy::{AnyPrefix, OutboundSpec, Policy};
use op25b_dataplane::port::dpdk::{Direction, Eal};
use op25b_dataplane::testkit::{eal_args, is_root, skipped};
use op25b_dataplane::wire::build::FrameBuilder;
use op25b_dataplane::worker::{PolicyHandle, Worker};
use std::net::{IpAddr, Ipv4Addr};

/// 64 frames: sources alternate between 10.0.0.0/8 (dynamic) and 192.0.2.0/24, ports
/// between 25 and 443, so a quarter of them are blocked.
fn frames() -> Vec<Vec<u8>> {
    (0..64u8)
        .map(|i| {
            let src = if i % 2 == 0 {
                Ipv4Addr::new(10, 1, 2, i)
            } else {
                Ipv4Addr::new(192, 0, 2, i)
            };
            let dport = if i % 4 < 2 { 25 } else { 443 };
            let mut f = FrameBuilder::tcp(
                IpAddr::V4(src),
                IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
                4000 + u16::from(i),
                dport,
            )
            .build();
            f.resize(64, 0);
            f
        })
        .collect()
}

#[test]
fn dropped_frames_and_odd_mbufs_go_back_to_the_pool_exactly_once() {
    if !is_root() {
        skipped("the DPDK EAL needs root here");
        return;
    }
    let vdevs = ["--vdev=net_null0,size=64", "--vdev=net_null1,size=64"].map(String::from);
    let args = eal_args("free", &vdevs);
    let mut eal = Eal::init(&args).expect("EAL on two net_null ports");
    let mut wire = eal
        .open_wire("net_null0", "net_null1", 1, 64, None)
        .expect("a wire between the two ports")
        .pop()
        .expect("one wire");
    wire.set_direction(Direction::AccessToCore);
    assert!(eal.fill_pool(&frames()) > 64);
    assert_eq!(
        eal.mbufs_in_use(),
        0,
        "every mbuf is back after filling the pool"
    );

    eal.check_free().expect("the free of odd mbufs");
    assert_eq!(eal.mbufs_in_use(), 0, "the check gave back all it took");

    let spec = OutboundSpec {
        ports: vec![25],
        dynamic: vec!["10.0.0.0/8".parse::<AnyPrefix>().unwrap()],
        ..OutboundSpec::default()
    };
    let handle = PolicyHandle::from_pointee(Policy::build_direct(spec, 1).unwrap().0);
    let mut worker = Worker::new(64);
    // Far more frames than the pool holds: a leak of one mbuf a burst would empty it.
    let polls = 20_000u64;
    let received: u64 = (0..polls)
        .map(|_| wire.poll(&mut worker, &handle) as u64)
        .sum();
    let c = worker.counters();
    assert_eq!(received, polls * 64, "every poll got a whole burst");
    assert_eq!((c.rx, c.rx - c.tx), (received, c.dropped));
    // net_null hands out the same 64 mbufs: a quarter of them blocked, every burst.
    assert_eq!(c.dropped, polls * 16);
    assert_eq!(eal.mbufs_in_use(), 0, "every dropped and sent mbuf is back");
}
