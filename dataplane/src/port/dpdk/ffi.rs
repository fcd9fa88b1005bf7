//! Hand-written declarations of the DPDK 22.11 functions op25b calls, and of the C shim
//! (`shim.c`) that wraps DPDK's static inline fast-path functions and its version-specific
//! setup structures. Each signature was checked against the 22.11 headers named beside it;
//! `build.rs` refuses any other DPDK version.
//!
//! Invariants: only scalars and opaque pointers cross this boundary; no Rust code reads or
//! writes a DPDK structure's fields (the shim does, compiled against the real headers).

#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_uint};

/// `struct rte_mbuf`, opaque.
#[repr(C)]
pub struct RteMbuf {
    _opaque: [u8; 0],
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
    pub fn op25b_rx_burst(
        port: u16,
        queue: u16,
        mbufs: *mut *mut RteMbuf,
        data: *mut *const u8,
        len: *mut u32,
        n: u16,
    ) -> u16;
    pub fn op25b_tx_burst(port: u16, queue: u16, mbufs: *mut *mut RteMbuf, n: u16) -> u16;
    pub fn op25b_free_bulk(mbufs: *mut *mut RteMbuf, n: c_uint);
    pub fn op25b_port_ifindex(port: u16) -> c_int;
    pub fn op25b_port_link_up(port: u16) -> c_int;
    pub fn op25b_mbuf_from(pool: *mut RteMempool, bytes: *const u8, len: u16) -> *mut RteMbuf;
}
