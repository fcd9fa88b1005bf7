//! Hand-written declarations of the DPDK 22.11 functions op25b calls, and of the C shim
//! (`shim.c`) that wraps DPDK's static inline fast-path functions and its version-specific
//! setup structures. Each signature was checked against the 22.11 headers named beside it;
//! `build.rs` refuses any other DPDK version.
//!
//! Invariants: only scalars and opaque pointers cross this boundary. No Rust code writes a
//! DPDK structure's fields, and the only ones it reads are the three of `struct rte_mbuf`
//! that locate a received frame's bytes ([`mbuf_frame`]), at offsets `shim.c` asserts at
//! compile time against the real headers; every other field is the shim's.

#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_uint};

/// `struct rte_mbuf`, opaque.
#[repr(C)]
pub struct RteMbuf {
    _opaque: [u8; 0],
}

/// Offsets in `struct rte_mbuf` (rte_mbuf_core.h, 22.11) of `buf_addr` (a pointer),
/// `data_off` and `data_len` (both u16); `shim.c` fails to build if the headers differ.
const MBUF_BUF_ADDR: usize = 0;
const MBUF_DATA_OFF: usize = 16;
const MBUF_DATA_LEN: usize = 40;

/// The bytes of `m`'s first segment (where the Ethernet header is), as
/// `rte_pktmbuf_mtod(m)` and `rte_pktmbuf_data_len(m)` give them, read inline: a call or a
/// separate pass per frame costs more than the parse of a plain frame.
///
/// # Safety
/// `m` is a valid mbuf the caller owns, whose data stays unchanged and alive for `'a`.
#[inline(always)]
pub unsafe fn mbuf_frame<'a>(m: *const RteMbuf) -> &'a [u8] {
    // SAFETY: the caller gives a valid mbuf whose data stays alive for 'a; `data_len` is
    // at the asserted offset with this type, and is the first segment's length (DPDK's own
    // definition of data_len).
    unsafe {
        let len = m.cast::<u8>().add(MBUF_DATA_LEN).cast::<u16>().read();
        std::slice::from_raw_parts(mbuf_data(m), usize::from(len))
    }
}

/// Asks for the first cache line of `m`'s frame (a hint: nothing is read but `m`'s own
/// header, which the driver has just written).
///
/// # Safety
/// `m` is a valid mbuf the caller owns.
#[inline(always)]
pub unsafe fn prefetch_frame(m: *const RteMbuf) {
    // SAFETY: as in `mbuf_data`; the frame's first byte is valid memory.
    unsafe { crate::port::sys::prefetch(&*mbuf_data(m)) }
}

/// The first byte of `m`'s frame: `buf_addr + data_off` (DPDK's mtod), from the two
/// fields at the offsets `shim.c` asserts.
///
/// # Safety
/// `m` is a valid mbuf.
#[inline(always)]
unsafe fn mbuf_data(m: *const RteMbuf) -> *const u8 {
    let b = m.cast::<u8>();
    // SAFETY: a valid mbuf's fields at asserted offsets with these types; data_off lies
    // within the buffer.
    unsafe {
        let addr = b.add(MBUF_BUF_ADDR).cast::<*const u8>().read();
        let off = b.add(MBUF_DATA_OFF).cast::<u16>().read();
        addr.add(usize::from(off))
    }
}

/// `struct rte_mempool`, opaque.
#[repr(C)]
pub struct RteMempool {
    _opaque: [u8; 0],
}

/// `RTE_ETH_NAME_MAX_LEN` (rte_ethdev.h): size of a port name buffer, NUL included.
pub const ETH_NAME_MAX_LEN: usize = 64;

/// `RTE_PKTMBUF_HEADROOM` (rte_config.h).
pub const PKTMBUF_HEADROOM: u16 = 128;

extern "C" {
    // rte_eal.h
    pub fn rte_eal_init(argc: c_int, argv: *mut *mut c_char) -> c_int;
    pub fn rte_eal_cleanup() -> c_int;
    // rte_errno.h
    pub fn rte_strerror(errnum: c_int) -> *const c_char;
    // rte_lcore.h
    pub fn rte_thread_register() -> c_int;
    pub fn rte_thread_unregister();
    pub fn rte_socket_id() -> c_uint;
    // rte_ethdev.h
    pub fn rte_eth_dev_count_avail() -> u16;
    pub fn rte_eth_dev_is_valid_port(port_id: u16) -> c_int;
    pub fn rte_eth_dev_get_port_by_name(name: *const c_char, port_id: *mut u16) -> c_int;
    pub fn rte_eth_dev_get_name_by_port(port_id: u16, name: *mut c_char) -> c_int;
    pub fn rte_eth_dev_stop(port_id: u16) -> c_int;
    pub fn rte_eth_promiscuous_disable(port_id: u16) -> c_int;
    pub fn rte_eth_dev_close(port_id: u16) -> c_int;
    // rte_mbuf.h, rte_mempool.h
    pub fn rte_pktmbuf_pool_create(
        name: *const c_char,
        n: c_uint,
        cache_size: c_uint,
        priv_size: u16,
        data_room_size: u16,
        socket_id: c_int,
    ) -> *mut RteMempool;
    pub fn rte_mempool_free(mp: *mut RteMempool);

    // shim.c
    pub fn op25b_rte_errno() -> c_int;
    pub fn op25b_port_mtu_range(port: u16, min_mtu: *mut u16, max_mtu: *mut u16) -> c_int;
    pub fn op25b_port_setup(
        port: u16,
        queues: u16,
        rx_desc: u16,
        tx_desc: u16,
        mtu: u16,
        pool: *mut RteMempool,
        stage: *mut *const c_char,
        promisc_set: *mut c_int,
    ) -> c_int;
    pub fn op25b_rx_burst(port: u16, queue: u16, mbufs: *mut *mut RteMbuf, n: u16) -> u16;
    pub fn op25b_tx_burst(port: u16, queue: u16, mbufs: *mut *mut RteMbuf, n: u16) -> u16;
    pub fn op25b_free_to(pool: *mut RteMempool, mbufs: *mut *mut RteMbuf, n: c_uint);
    pub fn op25b_pool_in_use(pool: *const RteMempool) -> c_uint;
    pub fn op25b_free_to_check(pool: *mut RteMempool) -> c_int;
    pub fn op25b_port_ifindex(port: u16) -> c_int;
    pub fn op25b_port_driver(port: u16, buf: *mut c_char, len: usize) -> c_int;
    pub fn op25b_port_link_up(port: u16) -> c_int;
    pub fn op25b_mbuf_from(pool: *mut RteMempool, bytes: *const u8, len: u16) -> *mut RteMbuf;
}
