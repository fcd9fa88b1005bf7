/*
 * null_fwd.c - the C/DPDK baseline for `op25b-bench dpdk-null`: one core receives bursts
 * from port 0 (net_null, or net_pcap replaying a capture with `dpdk-null --from-capture`),
 * looks the IPv4 source of every TCP port-25 frame up in an rte_lpm table of the dynamic
 * prefixes (rte_lpm_lookup_bulk), frees the frames whose source is dynamic and transmits
 * the rest on port 1 (net_null); it reports frames per second per run.
 *
 *   null_fwd [EAL args] -- PREFIXES FRAMES SECONDS RUNS [arrival]
 *
 * PREFIXES: IPv4 "a.b.c.d/len" lines (others ignored). FRAMES: 64-byte records, written
 * into every mbuf of the pool before the runs (net_null hands out pool mbufs without
 * touching their data, so on net_null these are the frames received; net_pcap copies its
 * capture's frames over them). Output, one line per run then
 * a summary: "run N mpps X dropped_share Y", "median_mpps X".
 *
 * By default the frames forwarded go out by class, as the simplest loop sends them: those
 * not to port 25 first (picked in the parse), then those to port 25 whose source is not
 * dynamic. With "arrival" they go out in the order they came, as op25b sends them: the
 * parse only picks the port-25 frames, the lookup marks the dynamic ones in a bit mask,
 * and one pass over the burst hands each frame to the send or the drop list (a burst with
 * nothing dropped is sent as it came, without that pass).
 *
 * This is deliberately the simplest correct OP25B decision (untagged Ethernet/IPv4 only,
 * no exempt/relay/scope lists, no IPv6): a lower bound on the work op25b does per frame.
 * Correct means smtp_src() below judges a frame by a TCP header only where there is one:
 * version 4 with a valid IHL, not a later fragment (whose bytes at the port's place are
 * payload), an IP total length that reaches the port (else they are Ethernet padding).
 * It does not look for overlapping fragments, as op25b does.
 *
 *   null_fwd --check
 *
 * runs smtp_src() on hand-made frames, and the drop bits and split of the arrival order
 * on made-up bursts, and exits non-zero on a wrong answer (no EAL).
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

/*
 * Whether frame p (len bytes) is untagged IPv4 TCP to port 25 whose header can be judged
 * (see the top); if so its source address, host order, goes to *src.
 */
static inline int smtp_src(const uint8_t *p, uint16_t len, uint32_t *src)
{
	if (len < 34 || p[12] != 0x08 || p[13] != 0x00 || p[23] != 6 || (p[14] >> 4) != 4)
		return 0;
	unsigned ihl = (p[14] & 0x0f) * 4u;
	unsigned total = ((unsigned)p[16] << 8) | p[17];
	/* Fragment offset: the low 13 bits of bytes 20-21 (a first fragment has 0). */
	if (ihl < 20 || (((p[20] & 0x1f) | p[21]) != 0) || total < ihl + 4 || len < 14 + ihl + 4)
		return 0;
	if (p[14 + ihl + 2] != 0 || p[14 + ihl + 3] != 25)
		return 0;
	*src = ((uint32_t)p[26] << 24) | ((uint32_t)p[27] << 16) | ((uint32_t)p[28] << 8) | p[29];
	return 1;
}

_Static_assert(BURST <= 64, "a burst's drop bits are one uint64_t");

/*
 * The drop bits of a burst in arrival order: bit idx[k] for each of the nc port-25 frames
 * whose lookup (hop[k]) found its source among the dynamic prefixes.
 */
static inline uint64_t drop_mask(const uint16_t *idx, const uint32_t *hop, uint16_t nc)
{
	uint64_t gone = 0;
	for (uint16_t k = 0; k < nc; k++)
		gone |= (uint64_t)((hop[k] & RTE_LPM_LOOKUP_SUCCESS) != 0) << idx[k];
	return gone;
}

/*
 * Hands the nb frames of rx on in the order they came: those whose bit is set in gone to
 * drop, the others to tx; their counts go to *nd and *nt. Returns the list to send: tx,
 * or rx itself when nothing goes (the burst is sent as it came, without the pass).
 */
static inline struct rte_mbuf **split_in_order(struct rte_mbuf **rx, uint16_t nb,
					       uint64_t gone, struct rte_mbuf **tx,
					       uint16_t *nt, struct rte_mbuf **drop,
					       uint16_t *nd)
{
	if (gone == 0) {
		*nt = nb;
		return rx;
	}
	for (uint16_t i = 0; i < nb; i++) {
		if ((gone >> i) & 1)
			drop[(*nd)++] = rx[i];
		else
			tx[(*nt)++] = rx[i];
	}
	return tx;
}

/* null_fwd --check: the drop bits and the split in arrival order. */
static int check_order(void)
{
	int bad = 0;
	/* Port-25 frames at 33, 5 and 63 of the burst; the sources of the first and last
	 * are dynamic. */
	const uint16_t idx[3] = { 33, 5, 63 };
	const uint32_t hop[3] = { RTE_LPM_LOOKUP_SUCCESS | 7, 0, RTE_LPM_LOOKUP_SUCCESS };
	int ok = drop_mask(idx, hop, 3) == (1ull << 33 | 1ull << 63) && drop_mask(idx, hop, 0) == 0;
	printf("%s the drop bits are those of the port-25 frames whose source is dynamic\n",
	       ok ? "ok  " : "FAIL");
	bad |= !ok;

	struct rte_mbuf *rx[BURST], *tx[BURST], *drop[BURST];
	for (int i = 0; i < BURST; i++)
		rx[i] = (struct rte_mbuf *)(uintptr_t)(i + 1);
	/* Frames 0, 3, 4 and the last one go; the burst is a whole BURST. */
	uint64_t gone = 1u | 1u << 3 | 1u << 4 | 1ull << (BURST - 1);
	uint16_t nt = 0, nd = 0;
	struct rte_mbuf **out = split_in_order(rx, BURST, gone, tx, &nt, drop, &nd);
	ok = out == tx && nd == 4 && nt == BURST - 4 && drop[0] == rx[0] && drop[1] == rx[3] &&
	     drop[2] == rx[4] && drop[3] == rx[BURST - 1];
	for (int k = 0, i = 0; ok && i < BURST; i++) {
		if (!((gone >> i) & 1))
			ok = tx[k++] == rx[i];
	}
	printf("%s the split in arrival order keeps both lists in burst order\n",
	       ok ? "ok  " : "FAIL");
	bad |= !ok;

	nt = nd = 0;
	out = split_in_order(rx, 10, 0, tx, &nt, drop, &nd);
	ok = out == rx && nt == 10 && nd == 0;
	printf("%s a burst with nothing dropped is sent as it came\n", ok ? "ok  " : "FAIL");
	return bad | !ok;
}

/* null_fwd --check: smtp_src() on hand-made frames, then check_order(). */
static int self_check(void)
{
	static const struct {
		const char *what;
		int want;
		unsigned ihl, total, frag, ethertype, version, len;
	} cases[] = {
		{ "plain TCP to port 25", 1, 20, 40, 0, 0x0800, 4, 64 },
		{ "with 4 bytes of IP options", 1, 24, 44, 0, 0x0800, 4, 64 },
		{ "a first fragment (MF set, offset 0)", 1, 20, 40, 0x2000, 0x0800, 4, 64 },
		{ "a later fragment (offset 8 bytes)", 0, 20, 40, 0x0001, 0x0800, 4, 64 },
		{ "a later fragment, offset in the high byte", 0, 20, 40, 0x0100, 0x0800, 4, 64 },
		{ "IP total length 20: the port's bytes are padding", 0, 20, 20, 0, 0x0800, 4, 64 },
		{ "IP total length 24: just reaches the port", 1, 20, 24, 0, 0x0800, 4, 64 },
		{ "IP total length 23: one byte short of the port", 0, 20, 23, 0, 0x0800, 4, 64 },
		{ "IHL 4 (invalid)", 0, 16, 40, 0, 0x0800, 4, 64 },
		{ "version 6 in an IPv4 ethertype", 0, 20, 40, 0, 0x0800, 6, 64 },
		{ "a VLAN tag (not judged here)", 0, 20, 40, 0, 0x8100, 4, 64 },
		{ "frame of 38 bytes: just holds the port", 1, 20, 40, 0, 0x0800, 4, 38 },
		{ "frame cut before the port", 0, 20, 40, 0, 0x0800, 4, 37 },
	};
	int bad = 0;
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		uint8_t f[64] = { 0 };
		f[12] = (uint8_t)(cases[k].ethertype >> 8);
		f[13] = (uint8_t)cases[k].ethertype;
		f[14] = (uint8_t)((cases[k].version << 4) | (cases[k].ihl / 4));
		f[16] = (uint8_t)(cases[k].total >> 8);
		f[17] = (uint8_t)cases[k].total;
		f[20] = (uint8_t)(cases[k].frag >> 8);
		f[21] = (uint8_t)cases[k].frag;
		f[23] = 6;
		f[26] = 10, f[27] = 1, f[28] = 2, f[29] = 3;
		/* Port 25 where this IHL puts the TCP destination port (only there). */
		f[14 + cases[k].ihl + 3] = 25;
		uint32_t src = 0;
		int got = smtp_src(f, (uint16_t)cases[k].len, &src);
		int ok = got == cases[k].want && (!got || src == 0x0a010203u);
		printf("%s %s\n", ok ? "ok  " : "FAIL", cases[k].what);
		bad |= !ok;
	}
	return bad | check_order();
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "--check") == 0)
		return self_check();
	int used = rte_eal_init(argc, argv);
	if (used < 0)
		die("rte_eal_init");
	argc -= used;
	argv += used;
	int arrival = argc == 6 && strcmp(argv[5], "arrival") == 0;
	if (argc != 5 && !arrival) {
		fprintf(stderr,
			"usage: null_fwd [EAL args] -- PREFIXES FRAMES SECONDS RUNS [arrival]\n");
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
		fprintf(stderr, "null_fwd: needs two ports (e.g. --vdev=net_null0 --vdev=net_null1)\n");
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
			struct rte_mbuf **out = tx;
			if (arrival) {
				for (uint16_t i = 0; i < nb; i++) {
					const uint8_t *p = rte_pktmbuf_mtod(rx[i], const uint8_t *);
					if (smtp_src(p, rte_pktmbuf_data_len(rx[i]), &src[nc]))
						idx[nc++] = i;
				}
				if (nc > 0)
					rte_lpm_lookup_bulk(lpm, src, hop, nc);
				out = split_in_order(rx, nb, drop_mask(idx, hop, nc), tx, &nt, drop,
						     &nd);
				goto send;
			}
			for (uint16_t i = 0; i < nb; i++) {
				const uint8_t *p = rte_pktmbuf_mtod(rx[i], const uint8_t *);
				if (smtp_src(p, rte_pktmbuf_data_len(rx[i]), &src[nc]))
					idx[nc++] = i;
				else
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
		send:
			if (nt > 0) {
				uint16_t sent = rte_eth_tx_burst(1, 0, out, nt);
				if (sent < nt)
					rte_pktmbuf_free_bulk(out + sent, nt - sent);
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
