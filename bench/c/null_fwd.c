/*
 * null_fwd.c - the C/DPDK baseline for `op25b-bench dpdk-null`: one core receives bursts
 * from net_null port 0, looks the IPv4 source of every TCP port-25 frame up in an rte_lpm
 * table of the dynamic prefixes (rte_lpm_lookup_bulk), frees the frames whose source is
 * dynamic and transmits the rest on port 1; it reports frames per second per run.
 *
 *   null_fwd [EAL args] -- PREFIXES FRAMES SECONDS RUNS
 *
 * PREFIXES: IPv4 "a.b.c.d/len" lines (others ignored). FRAMES: 64-byte records, written
 * into every mbuf of the pool before the runs (net_null hands out pool mbufs without
 * touching their data, so these are the frames received). Output, one line per run then
 * a summary: "run N mpps X dropped_share Y", "median_mpps X".
 *
 * This is deliberately the simplest correct OP25B decision (untagged Ethernet/IPv4 only,
 * no exempt/relay/scope lists, no IPv6): a lower bound on the work op25b does per frame.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lpm.h>
#include <rte_mbuf.h>

#define BURST 64
#define REC 64
#define NB_MBUF 8191

static void die(const char *what)
{
	fprintf(stderr, "null_fwd: %s: %s\n", what, rte_strerror(rte_errno));
	exit(1);
}

static void port_setup(uint16_t port, struct rte_mempool *pool)
{
	struct rte_eth_conf conf;

	memset(&conf, 0, sizeof(conf));
	if (rte_eth_dev_configure(port, 1, 1, &conf) != 0 ||
	    rte_eth_rx_queue_setup(port, 0, 1024, rte_socket_id(), NULL, pool) != 0 ||
	    rte_eth_tx_queue_setup(port, 0, 1024, rte_socket_id(), NULL) != 0 ||
	    rte_eth_dev_start(port) != 0)
		die("port setup");
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	int used = rte_eal_init(argc, argv);
	if (used < 0)
		die("rte_eal_init");
	argc -= used;
	argv += used;
	if (argc != 5) {
		fprintf(stderr, "usage: null_fwd [EAL args] -- PREFIXES FRAMES SECONDS RUNS\n");
		return 2;
	}
	double seconds = atof(argv[3]);
	int runs = atoi(argv[4]);
	if (runs < 1 || runs > 100 || seconds <= 0) {
		fprintf(stderr, "null_fwd: bad SECONDS or RUNS\n");
		return 2;
	}

	/* Prefixes. */
	FILE *f = fopen(argv[1], "r");
	if (f == NULL) {
		perror(argv[1]);
		return 1;
	}
	char line[128];
	uint32_t n = 0, cap = 1024, *ips = malloc(cap * 4);
	uint8_t *lens = malloc(cap);
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned a, b, c, d, l;
		if (sscanf(line, "%u.%u.%u.%u/%u", &a, &b, &c, &d, &l) != 5 || l > 32 || l == 0)
			continue;
		if (n == cap) {
			cap *= 2;
			ips = realloc(ips, cap * 4);
			lens = realloc(lens, cap);
		}
		ips[n] = (a << 24) | (b << 16) | (c << 8) | d;
		lens[n++] = (uint8_t)l;
	}
	fclose(f);
	struct rte_lpm_config lc = { .max_rules = n + 16, .number_tbl8s = 1 << 12, .flags = 0 };
	struct rte_lpm *lpm = rte_lpm_create("null_fwd", (int)rte_socket_id(), &lc);
	if (lpm == NULL)
		die("rte_lpm_create");
	for (uint32_t i = 0; i < n; i++)
		if (rte_lpm_add(lpm, ips[i], lens[i], 1) != 0)
			die("rte_lpm_add");

	/* Frames. */
	f = fopen(argv[2], "rb");
	if (f == NULL) {
		perror(argv[2]);
		return 1;
	}
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	rewind(f);
	uint8_t *frames = malloc((size_t)size);
	if (size < REC || fread(frames, 1, (size_t)size, f) != (size_t)size) {
		fprintf(stderr, "null_fwd: %s: no frames\n", argv[2]);
		return 1;
	}
	fclose(f);
	long nframes = size / REC;

	struct rte_mempool *pool =
		rte_pktmbuf_pool_create("null_fwd", NB_MBUF, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
					(int)rte_socket_id());
	if (pool == NULL)
		die("rte_pktmbuf_pool_create");
	if (rte_eth_dev_count_avail() < 2) {
		fprintf(stderr, "null_fwd: needs two ports (--vdev=net_null0 --vdev=net_null1)\n");
		return 1;
	}
	port_setup(0, pool);
	port_setup(1, pool);
	static struct rte_mbuf *all[NB_MBUF];
	unsigned got = 0;
	for (; got < NB_MBUF; got++) {
		all[got] = rte_pktmbuf_alloc(pool);
		if (all[got] == NULL)
			break;
		memcpy(rte_pktmbuf_append(all[got], REC), frames + (got % nframes) * REC, REC);
	}
	rte_pktmbuf_free_bulk(all, got);

	double *mpps = calloc((size_t)runs, sizeof(double));
	uint64_t hz = rte_get_tsc_hz();
	for (int r = 0; r < runs; r++) {
		struct rte_mbuf *rx[BURST], *tx[BURST], *drop[BURST];
		uint32_t src[BURST], hop[BURST];
		uint16_t idx[BURST];
		uint64_t frames_in = 0, dropped = 0;
		uint64_t start = rte_rdtsc(), end = start + (uint64_t)(seconds * (double)hz), now;
		do {
			uint16_t nb = rte_eth_rx_burst(0, 0, rx, BURST);
			uint16_t nc = 0, nt = 0, nd = 0;
			for (uint16_t i = 0; i < nb; i++) {
				const uint8_t *p = rte_pktmbuf_mtod(rx[i], const uint8_t *);
				uint16_t len = rte_pktmbuf_data_len(rx[i]);
				if (len >= 34 && p[12] == 0x08 && p[13] == 0x00 && p[23] == 6) {
					unsigned ihl = (p[14] & 0x0f) * 4u;
					if (len >= 14 + ihl + 4 && p[14 + ihl + 2] == 0 &&
					    p[14 + ihl + 3] == 25) {
						src[nc] = ((uint32_t)p[26] << 24) | ((uint32_t)p[27] << 16) |
							  ((uint32_t)p[28] << 8) | p[29];
						idx[nc++] = i;
						continue;
					}
				}
				tx[nt++] = rx[i];
			}
			if (nc > 0) {
				rte_lpm_lookup_bulk(lpm, src, hop, nc);
				for (uint16_t k = 0; k < nc; k++) {
					if (hop[k] & RTE_LPM_LOOKUP_SUCCESS)
						drop[nd++] = rx[idx[k]];
					else
						tx[nt++] = rx[idx[k]];
				}
			}
			if (nt > 0) {
				uint16_t sent = rte_eth_tx_burst(1, 0, tx, nt);
				if (sent < nt)
					rte_pktmbuf_free_bulk(tx + sent, nt - sent);
			}
			if (nd > 0)
				rte_pktmbuf_free_bulk(drop, nd);
			frames_in += nb;
			dropped += nd;
			now = rte_rdtsc();
		} while (now < end);
		double secs = (double)(now - start) / (double)hz;
		mpps[r] = (double)frames_in / secs / 1e6;
		printf("run %d mpps %.3f dropped_share %.4f\n", r + 1, mpps[r],
		       frames_in ? (double)dropped / (double)frames_in : 0.0);
	}
	qsort(mpps, (size_t)runs, sizeof(double), cmp_double);
	printf("median_mpps %.3f\n", mpps[runs / 2]);
	fflush(stdout);
	rte_eth_dev_stop(0);
	rte_eth_dev_stop(1);
	rte_eal_cleanup();
	return 0;
}
