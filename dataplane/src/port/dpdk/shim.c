/*
 * shim.c - the C side of op25b's DPDK binding (built only with the `dpdk` feature).
 *
 * DPDK's fast-path calls (rte_eth_rx_burst, rte_eth_tx_burst, rte_pktmbuf_mtod, ...) are
 * static inline functions in the headers, so Rust cannot link to them; and the port setup
 * structures (struct rte_eth_conf, rte_eth_dev_info) are large, version-specific layouts
 * best left to the compiler that reads the headers. This file wraps both behind a few
 * functions taking only scalars and opaque pointers, declared by hand in ffi.rs.
 *
 * Invariants: no function here keeps a pointer it was given; per-burst functions do no
 * allocation, no locking and no system call of their own.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_prefetch.h>

/* rte_errno is a per-lcore (thread-local) variable behind a macro. */
int op25b_rte_errno(void)
{
	return rte_errno;
}

/*
 * The MTUs `port` takes: *min_mtu and *max_mtu, the latter lowered to what its largest
 * receivable frame allows (some devices, such as net_af_packet at 1518 bytes, state only a
 * largest frame, and ethdev refuses an MTU whose frame, MTU plus its overhead computed as
 * ethdev does, exceeds it). Returns 0 or a negative errno.
 */
int op25b_port_mtu_range(uint16_t port, uint16_t *min_mtu, uint16_t *max_mtu)
{
	struct rte_eth_dev_info info;
	uint32_t overhead = RTE_ETHER_HDR_LEN + RTE_ETHER_CRC_LEN;
	uint32_t max;
	int r;

	r = rte_eth_dev_info_get(port, &info);
	if (r != 0)
		return r;
	max = info.max_mtu;
	if (info.max_mtu != UINT16_MAX && info.max_rx_pktlen > info.max_mtu)
		overhead = info.max_rx_pktlen - info.max_mtu;
	if (info.max_rx_pktlen > overhead && info.max_rx_pktlen - overhead < max)
		max = info.max_rx_pktlen - overhead;
	*min_mtu = info.min_mtu;
	*max_mtu = (uint16_t)max;
	return 0;
}

/* A failed step's description with numbers in it (the calling thread's, until its next
 * failure). */
static __thread char stage_text[320];

/*
 * Configures `port` with `queues` RX and TX queues of `rx_desc`/`tx_desc` descriptors
 * (adjusted to the device's limits), an MTU of `mtu` (which the caller checked against
 * op25b_port_mtu_range), RX buffers from `pool`, RSS across the queues when there are
 * several, and starts it in promiscuous mode (a net_af_packet device with more queue
 * pairs than `queues` is refused: see below); *promisc_set is 1 when this call turned
 * promiscuous mode on (so it is to be turned off again at the end). Returns 0, or a
 * negative errno with *stage naming the step that failed.
 */
int op25b_port_setup(uint16_t port, uint16_t queues, uint16_t rx_desc, uint16_t tx_desc,
		     uint16_t mtu, struct rte_mempool *pool, const char **stage,
		     int *promisc_set)
{
	struct rte_eth_conf conf;
	struct rte_eth_dev_info info;
	uint16_t q;
	int socket;
	int r;

	memset(&conf, 0, sizeof(conf));
	*stage = "rte_eth_dev_info_get";
	r = rte_eth_dev_info_get(port, &info);
	if (r != 0)
		return r;
	*promisc_set = 0;
	if (queues > info.max_rx_queues || queues > info.max_tx_queues) {
		snprintf(stage_text, sizeof(stage_text),
			 "queue count (the device has %u RX and %u TX queues, fewer than the %u "
			 "workers: give it more, e.g. qpairs=%u in a net_af_packet --vdev or "
			 "queues=%u in a net_tap one, or set fewer workers)",
			 info.max_rx_queues, info.max_tx_queues, queues, queues, queues);
		*stage = stage_text;
		return -EINVAL;
	}
	/* net_af_packet opens all of its qpairs= kernel sockets at probe, in one PACKET_FANOUT
	 * group that spreads the interface's frames over every one of them by flow hash: a
	 * socket whose queue no worker polls keeps its share unread, ARP included, so whole
	 * flows are lost. (A NIC spreads only over the queues configured here.) */
	if (info.driver_name != NULL && strcmp(info.driver_name, "net_af_packet") == 0 &&
	    info.max_rx_queues > queues) {
		snprintf(stage_text, sizeof(stage_text),
			 "queue count (this net_af_packet device has %u queue pairs but there are "
			 "only %u workers: its kernel sockets share the interface's frames by flow "
			 "hash, and the frames of a socket no worker reads are lost; give the --vdev "
			 "qpairs=%u, or set workers = %u)",
			 info.max_rx_queues, queues, queues, info.max_rx_queues);
		*stage = stage_text;
		return -EINVAL;
	}
	conf.rxmode.mtu = mtu;
	if (queues > 1) {
		conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
		conf.rx_adv_conf.rss_conf.rss_hf =
			(RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP) &
			info.flow_type_rss_offloads;
		if (conf.rx_adv_conf.rss_conf.rss_hf == 0)
			conf.rxmode.mq_mode = RTE_ETH_MQ_RX_NONE;
	}
	*stage = "rte_eth_dev_configure";
	r = rte_eth_dev_configure(port, queues, queues, &conf);
	if (r != 0)
		return r;
	*stage = "rte_eth_dev_adjust_nb_rx_tx_desc";
	r = rte_eth_dev_adjust_nb_rx_tx_desc(port, &rx_desc, &tx_desc);
	if (r != 0)
		return r;
	socket = rte_eth_dev_socket_id(port);
	if (socket < 0)
		socket = SOCKET_ID_ANY;
	for (q = 0; q < queues; q++) {
		*stage = "rte_eth_rx_queue_setup";
		r = rte_eth_rx_queue_setup(port, q, rx_desc, (unsigned int)socket, NULL, pool);
		if (r != 0)
			return r;
		*stage = "rte_eth_tx_queue_setup";
		r = rte_eth_tx_queue_setup(port, q, tx_desc, (unsigned int)socket, NULL);
		if (r != 0)
			return r;
	}
	*stage = "rte_eth_dev_start";
	r = rte_eth_dev_start(port);
	if (r != 0)
		return r;
	/* Not every virtual device knows promiscuous mode; a bump in the wire needs it only on
	 * real NICs, where it is supported. */
	if (rte_eth_promiscuous_get(port) == 0 && rte_eth_promiscuous_enable(port) == 0)
		*promisc_set = 1;
	return 0;
}

/*
 * The three fields of struct rte_mbuf that ffi.rs reads in Rust, once per frame, to find a
 * frame's bytes (rte_pktmbuf_mtod and rte_pktmbuf_data_len are header inlines, and a call
 * per frame, or a second pass over the burst to fill arrays, cost about 1 ns per frame on
 * the net_null benchmark). The build fails here if the headers place them elsewhere.
 */
_Static_assert(offsetof(struct rte_mbuf, buf_addr) == 0, "MBUF_BUF_ADDR in ffi.rs");
_Static_assert(sizeof(((struct rte_mbuf *)0)->buf_addr) == sizeof(void *), "buf_addr");
_Static_assert(offsetof(struct rte_mbuf, data_off) == 16, "MBUF_DATA_OFF in ffi.rs");
_Static_assert(sizeof(((struct rte_mbuf *)0)->data_off) == 2, "data_off is a u16");
_Static_assert(offsetof(struct rte_mbuf, data_len) == 40, "MBUF_DATA_LEN in ffi.rs");
_Static_assert(sizeof(((struct rte_mbuf *)0)->data_len) == 2, "data_len is a u16");

/* Receives up to `n` frames from (port, queue) into `mbufs`; returns the count. */
uint16_t op25b_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **mbufs, uint16_t n)
{
	return rte_eth_rx_burst(port, queue, mbufs, n);
}

/* Sends up to `n` mbufs on (port, queue); returns how many the queue took (the caller owns
 * the rest). */
uint16_t op25b_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **mbufs, uint16_t n)
{
	return rte_eth_tx_burst(port, queue, mbufs, n);
}

/* How many mbufs op25b_free_to gathers before putting them back to the pool at once. */
#define OP25B_FREE_CHUNK 256

/*
 * Frees the `n` mbufs of `mbufs` (op25b's own: received on, or made for, the ports of
 * `pool`). What rte_pktmbuf_free_bulk does, without its call into librte_mbuf and its
 * lookup of the calling lcore's cache through that shared library's thread-local access
 * (a __tls_get_addr call; here the shim, linked into the executable, reads the lcore id
 * directly): a single-segment mbuf of `pool` is released by rte_pktmbuf_prefree_seg (it
 * comes back only when this was its last reference; an indirect one is detached from what
 * it points to) and goes back to the calling lcore's cache of `pool` (straight to the pool
 * from a thread that is no lcore), up to OP25B_FREE_CHUNK at a time; any other (a chain of
 * segments, another pool's) is freed whole by rte_pktmbuf_free. Measured on net_null in
 * bench/results/dpdk-null.md ("2026-12-03, late night").
 */
void op25b_free_to(struct rte_mempool *pool, struct rte_mbuf **mbufs, unsigned int n)
{
	struct rte_mempool_cache *cache = rte_mempool_default_cache(pool, rte_lcore_id());
	void *back[OP25B_FREE_CHUNK];
	unsigned int k = 0;

	for (unsigned int i = 0; i < n; i++) {
		struct rte_mbuf *m = mbufs[i];

		if (unlikely(m->pool != pool || m->nb_segs != 1)) {
			rte_pktmbuf_free(m);
			continue;
		}
		m = rte_pktmbuf_prefree_seg(m);
		if (unlikely(m == NULL))
			continue;
		if (unlikely(k == OP25B_FREE_CHUNK)) {
			rte_mempool_generic_put(pool, back, k, cache);
			k = 0;
		}
		back[k++] = m;
	}
	if (k > 0)
		rte_mempool_generic_put(pool, back, k, cache);
}

/* How many of `pool`'s mbufs are out of it (in no cache and not in the pool itself). */
unsigned int op25b_pool_in_use(const struct rte_mempool *pool)
{
	return rte_mempool_in_use_count(pool);
}

/*
 * Checks op25b_free_to on the mbufs it cannot hand straight back: it takes from `pool` an
 * mbuf referenced twice, a chain of two segments and a plain mbuf, frees all three with
 * op25b_free_to, then the first one's other reference. Returns 0 when each step left in
 * use exactly what it should (the first mbuf until its second free), else the number of
 * the first step that did not (-1: the pool had too few mbufs).
 */
int op25b_free_to_check(struct rte_mempool *pool)
{
	unsigned int before = rte_mempool_in_use_count(pool);
	struct rte_mbuf *m[4];

	if (rte_pktmbuf_alloc_bulk(pool, m, 4) != 0)
		return -1;
	rte_mbuf_refcnt_update(m[0], 1);
	if (rte_pktmbuf_chain(m[1], m[2]) != 0)
		return 1;
	struct rte_mbuf *burst[3] = { m[0], m[1], m[3] };
	op25b_free_to(pool, burst, 3);
	/* The chain (two segments) and the plain mbuf are back; the first is still held. */
	if (rte_mempool_in_use_count(pool) != before + 1)
		return 2;
	op25b_free_to(pool, &m[0], 1);
	if (rte_mempool_in_use_count(pool) != before)
		return 3;
	return 0;
}

/* A new single-segment mbuf from `pool` holding a copy of `len` bytes, or NULL when the pool
 * is empty or the bytes do not fit. */
struct rte_mbuf *op25b_mbuf_from(struct rte_mempool *pool, const uint8_t *bytes, uint16_t len)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(pool);
	char *p;

	if (m == NULL)
		return NULL;
	p = rte_pktmbuf_append(m, len);
	if (p == NULL) {
		rte_pktmbuf_free(m);
		return NULL;
	}
	memcpy(p, bytes, len);
	return m;
}

/*
 * The kernel interface index `port` is bound to (net_af_packet, net_af_xdp, net_tap and
 * net_pcap on an interface report one), 0 when it has none (a NIC, net_null, a pcap
 * file), or a negative errno.
 */
int op25b_port_ifindex(uint16_t port)
{
	struct rte_eth_dev_info info;
	int r;

	r = rte_eth_dev_info_get(port, &info);
	if (r != 0)
		return r;
	return (int)info.if_index;
}

/*
 * The name of `port`'s driver ("net_null", "net_ice", ...) into `buf` (`len` bytes, NUL
 * included, cut to fit), or an empty string if the device names none. Returns 0 or a
 * negative errno.
 */
int op25b_port_driver(uint16_t port, char *buf, size_t len)
{
	struct rte_eth_dev_info info;
	int r;

	if (len == 0)
		return -EINVAL;
	buf[0] = 0;
	r = rte_eth_dev_info_get(port, &info);
	if (r != 0)
		return r;
	if (info.driver_name != NULL)
		snprintf(buf, len, "%s", info.driver_name);
	return 0;
}

/*
 * Whether `port`'s link is up (1) or down (0), without waiting, or a negative errno
 * (-ENOTSUP: the device cannot tell).
 */
int op25b_port_link_up(uint16_t port)
{
	struct rte_eth_link link;
	int r;

	memset(&link, 0, sizeof(link));
	r = rte_eth_link_get_nowait(port, &link);
	if (r != 0)
		return r;
	return link.link_status == RTE_ETH_LINK_UP ? 1 : 0;
}
