/*
 * lpm_bench.c - C baseline benchmark for DPDK's longest-prefix-match tables.
 *
 * Part of op25b's benchmarks: the Rust LPM implementation is compared against
 * the numbers (and, in the *-dump modes, the exact answers) produced here.
 *
 * Usage:
 *   lpm_bench v4|v6|fib4|fib6 PREFIX_FILE ADDR_FILE ITERS      (benchmark)
 *   lpm_bench v4-dump|v6-dump|fib4-dump|fib6-dump PREFIX_FILE ADDR_FILE
 *   lpm_bench v4-serve|v6-serve|fib4-serve|fib6-serve PREFIX_FILE ADDR_FILE ITERS
 *
 *   v4    rte_lpm   (DIR-24-8, 24-bit next hops)
 *   v6    rte_lpm6  (24-bit first stage + 8-bit stages, 21-bit next hops)
 *   fib4  rte_fib   type RTE_FIB_DIR24_8, 4-byte next hops
 *   fib6  rte_fib6  type RTE_FIB6_TRIE,   4-byte next hops
 *
 * PREFIX_FILE: one prefix per line ("10.0.0.0/8", "2001:db8::/32"); a bare
 * address is a host route (/32 or /128).  '#' starts a comment; blank lines
 * are ignored.  Host bits are cleared before insertion.  Prefix number i
 * (0-based, counting prefix lines only) gets next hop
 *     i mod 2^24  for IPv4 (rte_lpm's next-hop field is 24 bits wide),
 *     i mod 2^21  for IPv6 (rte_lpm6's tbl entry next-hop field is 21 bits),
 * and the fib modes use the same values so that all modes are comparable.
 * A prefix that appears twice keeps the next hop of its last occurrence
 * (both rte_lpm and rte_fib overwrite on re-add).  rte_lpm and rte_lpm6
 * reject prefix length 0 (-EINVAL): a /0 line counts as a failed insert in
 * v4/v6 modes (write 0.0.0.0/1 + 128.0.0.0/1 instead), rte_fib accepts it.
 * Failed inserts are counted and reported on stderr, never fatal.
 *
 * ADDR_FILE: one address per line, same family, same comment rules.  Several
 * files may be given separated by commas: the table is built once and each file
 * is measured (one JSON line each) or dumped in turn.
 *
 * Benchmark mode builds the table (timed), then runs ITERS passes over the
 * address array for each lookup method (timed separately) and prints
 * exactly one line of JSON on stdout:
 *   lib, family, prefixes, inserted, failed, tbl8s (groups configured),
 *   build_s, addrs, iters, lookups (= addrs * iters, per method),
 *   hits_per_pass, bulk_lookups_per_s (chunks of 64),
 *   single_lookups_per_s (rte_lpm_lookup / rte_lpm6_lookup; the fib
 *   libraries have no single lookup, so there it is a bulk call with n = 1),
 *   x4_lookups_per_s (v4 only: rte_lpm_lookupx4, as used by l3fwd),
 *   checksum (sum over one method's lookups of next_hop + 1, misses 0;
 *   all methods must agree or the program fails).
 * Serve mode builds the table and reads every address file, prints one line
 * {"ready":true,"build_s":...} and then, for each line "K" read from stdin,
 * measures address file K (0-based) as benchmark mode does and prints its JSON
 * line; it ends at end of input.  A caller can so build once and alternate
 * measurements with its own, so that both sides share the machine's momentary
 * load (op25b-bench compare pairs its rounds this way).
 * Dump mode prints one line per address: the next hop, or -1 if no prefix
 * matches.  It also checks that the bulk, single (and x4) paths agree.
 * Errors go to stderr with a non-zero exit status.
 *
 * The EAL runs without hugepages or PCI (see eal_start()); its heap size is
 * derived from the input.  Environment knobs:
 *   LPM_BENCH_TBL8S     override the number of tbl8 groups (default: what
 *                       the prefix set needs, see count_tbl8s())
 *   LPM_BENCH_EAL_ARGS  extra EAL arguments, space separated, appended to the
 *                       defaults (e.g. "--force-max-simd-bitwidth=512")
 */

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_fib.h>
#include <rte_fib6.h>
#include <rte_lpm.h>
#include <rte_lpm6.h>
#include <rte_memory.h>

/* Width of the next-hop field in each library (DPDK 22.11). */
#define LPM4_NH_BITS 24 /* struct rte_lpm_tbl_entry.next_hop:24 */
#define LPM6_NH_BITS 21 /* struct rte_lpm6_tbl_entry.next_hop:21 (rte_lpm6.c) */
#define LPM4_NH_MASK ((1u << LPM4_NH_BITS) - 1)
#define LPM6_NH_MASK ((1u << LPM6_NH_BITS) - 1)

/* Hard limits on tbl8 groups imposed by the libraries. */
#define LPM4_MAX_TBL8S (1u << 24) /* RTE_LPM_MAX_TBL8_NUM_GROUPS */
#define LPM6_MAX_TBL8S (1u << 21) /* RTE_LPM6_TBL8_MAX_NUM_GROUPS */

/*
 * Miss value for the fib modes.  With 4-byte next hops the top bit is used
 * internally, so the largest storable next hop (and default) is 2^31 - 1.
 */
#define FIB_NH_SZ4_MAX ((UINT64_C(1) << 31) - 1)
#define FIB_MISS FIB_NH_SZ4_MAX

/* Addresses per bulk-lookup call. */
#define BULK 64

/* ------------------------------------------------------------------------ */
/* Small utilities                                                          */
/* ------------------------------------------------------------------------ */

static const char *progname = "lpm_bench";

static void
die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void
die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		die("out of memory allocating %zu bytes", n);
	return p;
}

static void *
xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (p == NULL)
		die("out of memory allocating %zu bytes", n);
	return p;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------------------ */
/* Input parsing                                                            */
/* ------------------------------------------------------------------------ */

enum family { FAM_V4, FAM_V6 };

/* An address in network byte order; IPv4 uses the first 4 bytes. */
typedef uint8_t addr16[16];

struct prefix_list {
	size_t n;
	addr16 *addr; /* host bits cleared */
	uint8_t *len;
};

struct addr_list {
	size_t n;
	addr16 *addr;
};

static int
addr_bits(enum family fam)
{
	return fam == FAM_V4 ? 32 : 128;
}

/* Clear all bits of a beyond the first len. */
static void
mask_addr(addr16 a, int len)
{
	for (int i = 0; i < 16; i++) {
		int keep = len - 8 * i; /* bits of this byte to keep */

		if (keep <= 0)
			a[i] = 0;
		else if (keep < 8)
			a[i] &= (uint8_t)(0xFF00u >> keep);
	}
}

/*
 * Strip a comment and surrounding whitespace from line in place.
 * Returns NULL if nothing is left.
 */
static char *
clean_line(char *line)
{
	char *hash = strchr(line, '#');
	char *end;

	if (hash != NULL)
		*hash = '\0';
	while (*line == ' ' || *line == '\t')
		line++;
	end = line + strlen(line);
	while (end > line && (end[-1] == '\n' || end[-1] == '\r' ||
			      end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
	return *line ? line : NULL;
}

/* Parse one address of the given family into out (zero padded). */
static bool
parse_addr(enum family fam, const char *s, addr16 out)
{
	memset(out, 0, sizeof(addr16));
	return inet_pton(fam == FAM_V4 ? AF_INET : AF_INET6, s, out) == 1;
}

/* Parse "ADDR/LEN" or "ADDR"; clears host bits.  s is not modified. */
static bool
parse_prefix(enum family fam, const char *s, addr16 out, uint8_t *len)
{
	const char *slash = strchr(s, '/');
	char abuf[INET6_ADDRSTRLEN];
	long l = addr_bits(fam);

	if (slash != NULL) {
		char *end;

		if ((size_t)(slash - s) >= sizeof(abuf))
			return false;
		memcpy(abuf, s, slash - s);
		abuf[slash - s] = '\0';
		s = abuf;
		errno = 0;
		l = strtol(slash + 1, &end, 10);
		if (errno || end == slash + 1 || *end != '\0' ||
		    l < 0 || l > addr_bits(fam))
			return false;
	}
	if (!parse_addr(fam, s, out))
		return false;
	mask_addr(out, (int)l);
	*len = (uint8_t)l;
	return true;
}

static FILE *
xfopen(const char *path)
{
	FILE *f = fopen(path, "r");

	if (f == NULL)
		die("cannot open %s: %s", path, strerror(errno));
	return f;
}

static void
read_prefixes(enum family fam, const char *path, struct prefix_list *pl)
{
	FILE *f = xfopen(path);
	char buf[256];
	size_t cap = 0, lineno = 0;

	memset(pl, 0, sizeof(*pl));
	while (fgets(buf, sizeof(buf), f) != NULL) {
		char *s = clean_line(buf);

		lineno++;
		if (s == NULL)
			continue;
		if (pl->n == cap) {
			cap = cap ? 2 * cap : 1024;
			pl->addr = xrealloc(pl->addr, cap * sizeof(addr16));
			pl->len = xrealloc(pl->len, cap);
		}
		if (!parse_prefix(fam, s, pl->addr[pl->n], &pl->len[pl->n]))
			die("%s:%zu: bad IPv%c prefix '%s'", path, lineno,
			    fam == FAM_V4 ? '4' : '6', s);
		pl->n++;
	}
	fclose(f);
}

static void
read_addrs(enum family fam, const char *path, struct addr_list *al)
{
	FILE *f = xfopen(path);
	char buf[256];
	size_t cap = 0, lineno = 0;

	memset(al, 0, sizeof(*al));
	while (fgets(buf, sizeof(buf), f) != NULL) {
		char *s = clean_line(buf);

		lineno++;
		if (s == NULL)
			continue;
		if (al->n == cap) {
			cap = cap ? 2 * cap : 1024;
			al->addr = xrealloc(al->addr, cap * sizeof(addr16));
		}
		if (!parse_addr(fam, s, al->addr[al->n]))
			die("%s:%zu: bad IPv%c address '%s'", path, lineno,
			    fam == FAM_V4 ? '4' : '6', s);
		al->n++;
	}
	fclose(f);
}

/* Host-order uint32 of an IPv4 address stored in an addr16. */
static uint32_t
v4_host(const addr16 a)
{
	uint32_t be;

	memcpy(&be, a, 4);
	return ntohl(be);
}

/* ------------------------------------------------------------------------ */
/* tbl8 sizing                                                              */
/* ------------------------------------------------------------------------ */

/*
 * All four tables resolve the first 24 bits in one table (tbl24) and every
 * further 8 bits in a 256-entry "tbl8" group.  A group at level k (k >= 1)
 * belongs to one distinct (24 + 8(k-1))-bit prefix and is needed exactly
 * when some rule is longer than that.
 *
 * shared = true: the number of groups an add-only build really uses is,
 * summed over levels, the number of distinct (24 + 8(k-1))-bit truncations
 * among rules longer than 24 + 8(k-1) bits.  (For IPv4 only level 1 exists.)
 * This is exact for rte_lpm, rte_lpm6 and rte_fib DIR24_8 (whose reservation
 * check counts one group per /24 that has longer routes).
 *
 * shared = false: every rule counts all its levels, ceil((len - 24) / 8).
 * rte_fib6 TRIE needs this: before adding a rule it reserves the levels
 * between the rule and its covering parent, and sibling rules that will in
 * fact share a group each reserve it, so the exact count can give ENOSPC.
 * Its 22.11 check also refuses to reserve the very last group, so
 * choose_tbl8s() adds one spare for it (measured: with the bare sum, the
 * last deep rule fails with ENOSPC; with sum + 1 all go in).
 */
static int key_cmp_bytes;

static int
key_cmp(const void *a, const void *b)
{
	return memcmp(a, b, key_cmp_bytes);
}

static uint64_t
count_tbl8s(enum family fam, const struct prefix_list *pl, bool shared)
{
	addr16 *keys;
	uint64_t total = 0;

	if (!shared) {
		for (size_t i = 0; i < pl->n; i++)
			if (pl->len[i] > 24)
				total += (pl->len[i] - 24 + 7) / 8;
		return total;
	}

	keys = xmalloc((pl->n ? pl->n : 1) * sizeof(addr16));
	for (int bits = 24; bits < addr_bits(fam); bits += 8) {
		size_t m = 0, distinct = 0;

		for (size_t i = 0; i < pl->n; i++) {
			if (pl->len[i] > bits) {
				memcpy(keys[m], pl->addr[i], sizeof(addr16));
				mask_addr(keys[m], bits);
				m++;
			}
		}
		key_cmp_bytes = bits / 8;
		qsort(keys, m, sizeof(addr16), key_cmp);
		for (size_t i = 0; i < m; i++)
			if (i == 0 || memcmp(keys[i], keys[i - 1], bits / 8))
				distinct++;
		total += distinct;
	}
	free(keys);
	return total;
}

/* ------------------------------------------------------------------------ */
/* EAL                                                                      */
/* ------------------------------------------------------------------------ */

/*
 * Start the EAL without PCI, shared config or telemetry, and by default
 * without hugepages.  --no-huge implies legacy memory mode, which is
 * incompatible with --in-memory, hence --no-shconf.  With --no-huge the
 * whole -m region is mapped up front, as one memfd ("memfd:nohuge") that the
 * kernel only commits when touched, so a generous -m is cheap.  Being shmem
 * on normal pages, the tables live on 4 KiB pages (shmem THP is off by
 * default, shmem_enabled=never), unlike a hugepage-backed DPDK deployment.
 * LPM_BENCH_HUGEPAGES=1 runs it as deployed instead: --in-memory on
 * hugepages reserved beforehand (/proc/sys/vm/nr_hugepages; -m of them).
 */
static void
eal_start(unsigned int mem_mb)
{
	char mem[32];
	char *argv[64];
	int argc = 0;
	char *extra = NULL;

	snprintf(mem, sizeof(mem), "%u", mem_mb);
	argv[argc++] = (char *)progname;
	if (getenv("LPM_BENCH_HUGEPAGES") != NULL &&
	    strcmp(getenv("LPM_BENCH_HUGEPAGES"), "1") == 0) {
		argv[argc++] = "--in-memory";
	} else {
		argv[argc++] = "--no-huge";
		argv[argc++] = "--no-shconf";
	}
	argv[argc++] = "--no-pci";
	argv[argc++] = "--no-telemetry";
	argv[argc++] = "-l";
	argv[argc++] = "0";
	argv[argc++] = "-m";
	argv[argc++] = mem;
	argv[argc++] = "--log-level=lib.eal:error";

	if (getenv("LPM_BENCH_EAL_ARGS") != NULL) {
		extra = strdup(getenv("LPM_BENCH_EAL_ARGS"));
		for (char *tok = strtok(extra, " \t"); tok != NULL;
		     tok = strtok(NULL, " \t")) {
			if (argc >= (int)(sizeof(argv) / sizeof(argv[0])) - 1)
				die("too many LPM_BENCH_EAL_ARGS");
			argv[argc++] = tok;
		}
	}
	argv[argc] = NULL;

	if (rte_eal_init(argc, argv) < 0)
		die("rte_eal_init failed: %s", rte_strerror(rte_errno));
	/* extra is referenced by the EAL's argv copy; leak it on purpose. */
}

/*
 * Rough upper bound of DPDK heap memory needed, in MiB: the 2^24-entry
 * first-stage table (4-byte entries in every mode used here), the tbl8
 * groups (256 x 4 bytes, plus small per-group metadata), and per-rule
 * bookkeeping (rule arrays, rule hash for lpm6, RIB nodes for fib), plus
 * slack for the EAL itself.
 */
static unsigned int
heap_mb(uint32_t tbl8s, size_t nprefixes)
{
	uint64_t bytes = (UINT64_C(1) << 24) * 4 +
			 (uint64_t)tbl8s * (256 * 4 + 64) +
			 (uint64_t)nprefixes * 256;

	return (unsigned int)(bytes * 5 / 4 / (1 << 20)) + 512;
}

/* ------------------------------------------------------------------------ */
/* Table abstraction                                                        */
/* ------------------------------------------------------------------------ */

enum lib { LIB_LPM, LIB_LPM6, LIB_FIB, LIB_FIB6 };

static const char *const lib_name[] = {
	[LIB_LPM] = "rte_lpm", [LIB_LPM6] = "rte_lpm6",
	[LIB_FIB] = "rte_fib", [LIB_FIB6] = "rte_fib6",
};

/*
 * Number of tbl8 groups to configure: LPM_BENCH_TBL8S if set, otherwise
 * what the prefix set needs (see count_tbl8s()), clamped to the library's
 * maximum: 2^24 for rte_lpm, 2^21 for rte_lpm6 (its tbl8 index lives in the
 * 21-bit next-hop field).  rte_fib's own limit with 4-byte next hops is
 * 2^31 - 1; 2^24 groups (16 GiB of tbl8s) is used as a practical cap.
 */
static uint32_t
choose_tbl8s(enum lib lib, enum family fam, const struct prefix_list *pl)
{
	uint32_t limit = lib == LIB_LPM6 ? LPM6_MAX_TBL8S : LPM4_MAX_TBL8S;
	const char *env = getenv("LPM_BENCH_TBL8S");
	uint64_t n;

	if (env != NULL && *env != '\0')
		n = strtoull(env, NULL, 0);
	else
		n = count_tbl8s(fam, pl, lib != LIB_FIB6) +
		    (lib == LIB_FIB6);
	if (n < 256)
		n = 256;
	if (n > limit) {
		fprintf(stderr, "%s: note: %" PRIu64 " tbl8 groups wanted, "
			"clamped to %u\n", progname, n, limit);
		n = limit;
	}
	return (uint32_t)n;
}

struct table {
	enum lib lib;
	enum family fam;
	struct rte_lpm *lpm;
	struct rte_lpm6 *lpm6;
	struct rte_fib *fib;
	struct rte_fib6 *fib6;
};

/* Next hop assigned to prefix number i (see file header). */
static uint32_t
nh_for_index(enum family fam, size_t i)
{
	return (uint32_t)i & (fam == FAM_V4 ? LPM4_NH_MASK : LPM6_NH_MASK);
}

static void
table_create(struct table *t, size_t max_rules, uint32_t tbl8s)
{
	uint32_t rules = max_rules ? (uint32_t)max_rules : 1;

	switch (t->lib) {
	case LIB_LPM: {
		struct rte_lpm_config c = {
			.max_rules = rules,
			.number_tbl8s = tbl8s,
			.flags = 0,
		};
		t->lpm = rte_lpm_create("bench", SOCKET_ID_ANY, &c);
		if (t->lpm == NULL)
			die("rte_lpm_create: %s", rte_strerror(rte_errno));
		break;
	}
	case LIB_LPM6: {
		struct rte_lpm6_config c = {
			.max_rules = rules,
			.number_tbl8s = tbl8s,
			.flags = 0,
		};
		t->lpm6 = rte_lpm6_create("bench", SOCKET_ID_ANY, &c);
		if (t->lpm6 == NULL)
			die("rte_lpm6_create: %s", rte_strerror(rte_errno));
		break;
	}
	case LIB_FIB: {
		struct rte_fib_conf c = {
			.type = RTE_FIB_DIR24_8,
			.default_nh = FIB_MISS,
			.max_routes = (int)rules,
			.rib_ext_sz = 0,
			.dir24_8 = {
				.nh_sz = RTE_FIB_DIR24_8_4B,
				.num_tbl8 = tbl8s,
			},
		};
		t->fib = rte_fib_create("bench", SOCKET_ID_ANY, &c);
		if (t->fib == NULL)
			die("rte_fib_create: %s", rte_strerror(rte_errno));
		break;
	}
	case LIB_FIB6: {
		struct rte_fib6_conf c = {
			.type = RTE_FIB6_TRIE,
			.default_nh = FIB_MISS,
			.max_routes = (int)rules,
			.rib_ext_sz = 0,
			.trie = {
				.nh_sz = RTE_FIB6_TRIE_4B,
				.num_tbl8 = tbl8s,
			},
		};
		t->fib6 = rte_fib6_create("bench", SOCKET_ID_ANY, &c);
		if (t->fib6 == NULL)
			die("rte_fib6_create: %s", rte_strerror(rte_errno));
		break;
	}
	}
}

/* Add one rule; returns 0 or a negative errno. */
static int
table_add(struct table *t, addr16 a, uint8_t len, uint32_t nh)
{
	switch (t->lib) {
	case LIB_LPM:
		return rte_lpm_add(t->lpm, v4_host(a), len, nh);
	case LIB_LPM6:
		return rte_lpm6_add(t->lpm6, a, len, nh);
	case LIB_FIB:
		return rte_fib_add(t->fib, v4_host(a), len, nh);
	case LIB_FIB6:
		return rte_fib6_add(t->fib6, a, len, nh);
	}
	return -EINVAL;
}

static void
table_free(struct table *t)
{
	rte_lpm_free(t->lpm);
	rte_lpm6_free(t->lpm6);
	rte_fib_free(t->fib);
	rte_fib6_free(t->fib6);
}

/*
 * Lookup buffers.  IPv4 modes take host-order uint32 addresses, IPv6 modes
 * 16-byte network-order arrays; both are prepared once, before timing.
 */
struct lookup_input {
	size_t n;
	uint32_t *v4;         /* n entries (IPv4 modes) */
	uint8_t (*v6)[16];    /* n entries (IPv6 modes) */
};

static void
prepare_input(enum family fam, const struct addr_list *al,
	      struct lookup_input *in)
{
	in->n = al->n;
	in->v4 = NULL;
	in->v6 = NULL;
	if (fam == FAM_V4) {
		in->v4 = xmalloc(al->n * sizeof(uint32_t));
		for (size_t i = 0; i < al->n; i++)
			in->v4[i] = v4_host(al->addr[i]);
	} else {
		/* addr16 already has the right layout; reuse it. */
		in->v6 = al->addr;
	}
}

static void
free_input(enum family fam, struct addr_list *al, struct lookup_input *in)
{
	if (fam == FAM_V4)
		free(in->v4);
	free(al->addr);
}

/*
 * Bulk lookup of in[off .. off+n) into res[], normalised to the next hop
 * or -1 on miss.  n <= BULK.
 */
static inline void
lookup_bulk(const struct table *t, const struct lookup_input *in, size_t off,
	    unsigned int n, int64_t *res)
{
	switch (t->lib) {
	case LIB_LPM: {
		uint32_t nh[BULK];

		rte_lpm_lookup_bulk(t->lpm, in->v4 + off, nh, n);
		for (unsigned int i = 0; i < n; i++)
			res[i] = (nh[i] & RTE_LPM_LOOKUP_SUCCESS) ?
				 (int64_t)(nh[i] & LPM4_NH_MASK) : -1;
		break;
	}
	case LIB_LPM6: {
		int32_t nh[BULK];

		rte_lpm6_lookup_bulk_func(t->lpm6, in->v6 + off, nh, n);
		for (unsigned int i = 0; i < n; i++)
			res[i] = nh[i]; /* already -1 on miss */
		break;
	}
	case LIB_FIB: {
		uint64_t nh[BULK];

		rte_fib_lookup_bulk(t->fib, in->v4 + off, nh, (int)n);
		for (unsigned int i = 0; i < n; i++)
			res[i] = nh[i] == FIB_MISS ? -1 : (int64_t)nh[i];
		break;
	}
	case LIB_FIB6: {
		uint64_t nh[BULK];

		rte_fib6_lookup_bulk(t->fib6, in->v6 + off, nh, (int)n);
		for (unsigned int i = 0; i < n; i++)
			res[i] = nh[i] == FIB_MISS ? -1 : (int64_t)nh[i];
		break;
	}
	}
}

/*
 * Single-address lookup of in[i]: next hop or -1.  rte_fib/rte_fib6 have no
 * single-lookup API, so for them this is a bulk call with n = 1.
 */
static inline int64_t
lookup_single(const struct table *t, const struct lookup_input *in, size_t i)
{
	switch (t->lib) {
	case LIB_LPM: {
		uint32_t nh;

		return rte_lpm_lookup(t->lpm, in->v4[i], &nh) == 0 ?
		       (int64_t)nh : -1;
	}
	case LIB_LPM6: {
		uint32_t nh;

		return rte_lpm6_lookup(t->lpm6, in->v6[i], &nh) == 0 ?
		       (int64_t)nh : -1;
	}
	case LIB_FIB:
	case LIB_FIB6: {
		int64_t r;

		lookup_bulk(t, in, i, 1, &r);
		return r;
	}
	}
	return -1;
}

/*
 * rte_lpm's 4-at-a-time SSE lookup (what DPDK's l3fwd uses) of
 * in[i .. i+4): next hop or -1 each.  Only valid for LIB_LPM and i+4 <= n.
 */
static inline void
lookup_x4(const struct table *t, const struct lookup_input *in, size_t i,
	  int64_t res[4])
{
	const uint32_t miss = UINT32_MAX;
	uint32_t hop[4];
	xmm_t ip;

	ip = _mm_loadu_si128((const __m128i *)(in->v4 + i));
	rte_lpm_lookupx4(t->lpm, ip, hop, miss);
	for (int k = 0; k < 4; k++)
		res[k] = hop[k] == miss ? -1 : (int64_t)hop[k];
}

/* Fold a lookup result into the checksum (misses count as 0). */
static inline uint64_t
fold(uint64_t sum, int64_t r)
{
	return sum + (uint64_t)(r + 1);
}

/* ------------------------------------------------------------------------ */
/* Modes                                                                    */
/* ------------------------------------------------------------------------ */

struct build_stats {
	size_t inserted;
	size_t failed;
	int first_err;  /* first negative return code seen, 0 if none */
	double build_s;
};

/*
 * Insert every prefix in file order, timing the whole loop.
 *
 * Expect rte_lpm (22.11) to be slow here with many long prefixes: every
 * new tbl8 group is found by scanning the group array linearly from group 0
 * (_tbl8_alloc), so the build is quadratic in the number of groups (about
 * 4 s for 46k groups, 10 minutes for 462k on the reference machine).
 * rte_fib keeps a free-group stack instead.
 */
static void
build_table(struct table *t, const struct prefix_list *pl,
	    struct build_stats *bs)
{
	double t0;

	memset(bs, 0, sizeof(*bs));
	t0 = now_s();
	for (size_t i = 0; i < pl->n; i++) {
		int rc = table_add(t, pl->addr[i], pl->len[i],
				   nh_for_index(t->fam, i));

		if (rc < 0) {
			bs->failed++;
			if (bs->first_err == 0)
				bs->first_err = rc;
		} else {
			bs->inserted++;
		}
	}
	bs->build_s = now_s() - t0;
	if (bs->failed)
		fprintf(stderr, "%s: %zu of %zu prefixes failed to insert "
			"(first error: %s)\n", progname, bs->failed, pl->n,
			strerror(-bs->first_err));
}

/* Print next hop or -1 per address, after checking bulk == single (== x4). */
static int
run_dump(struct table *t, const struct lookup_input *in)
{
	int64_t res[BULK];

	for (size_t off = 0; off < in->n; off += BULK) {
		unsigned int n = in->n - off < BULK ? in->n - off : BULK;

		lookup_bulk(t, in, off, n, res);
		for (unsigned int i = 0; i < n; i++) {
			int64_t s = lookup_single(t, in, off + i);

			if (s != res[i])
				die("address #%zu: bulk lookup %" PRId64
				    " != single lookup %" PRId64,
				    off + i, res[i], s);
		}
		if (t->lib == LIB_LPM) {
			for (unsigned int i = 0; i + 4 <= n; i += 4) {
				int64_t x4[4];

				lookup_x4(t, in, off + i, x4);
				for (int k = 0; k < 4; k++)
					if (x4[k] != res[i + k])
						die("address #%zu: x4 lookup "
						    "%" PRId64 " != bulk %" PRId64,
						    off + i + k, x4[k],
						    res[i + k]);
			}
		}
		for (unsigned int i = 0; i < n; i++)
			printf("%" PRId64 "\n", res[i]);
	}
	return fflush(stdout) == 0 ? 0 : 1;
}

static int
run_bench(struct table *t, const struct prefix_list *pl,
	  const struct build_stats *bs, const struct lookup_input *in,
	  uint32_t tbl8s, unsigned long iters)
{
	uint64_t bulk_sum = 0, single_sum = 0, x4_sum = 0, hits = 0;
	uint64_t lookups = (uint64_t)in->n * iters;
	double t0, bulk_s, single_s, x4_s = 0;
	int64_t res[BULK];

	/* Hit count from one untimed pass (for context in the output). */
	for (size_t off = 0; off < in->n; off += BULK) {
		unsigned int n = in->n - off < BULK ? in->n - off : BULK;

		lookup_bulk(t, in, off, n, res);
		for (unsigned int i = 0; i < n; i++)
			hits += res[i] >= 0;
	}

	/* Bulk: chunks of BULK addresses. */
	t0 = now_s();
	for (unsigned long it = 0; it < iters; it++) {
		for (size_t off = 0; off < in->n; off += BULK) {
			unsigned int n = in->n - off < BULK ?
					 in->n - off : BULK;

			lookup_bulk(t, in, off, n, res);
			for (unsigned int i = 0; i < n; i++)
				bulk_sum = fold(bulk_sum, res[i]);
		}
	}
	bulk_s = now_s() - t0;

	/* Single: one call per address. */
	t0 = now_s();
	for (unsigned long it = 0; it < iters; it++)
		for (size_t i = 0; i < in->n; i++)
			single_sum = fold(single_sum, lookup_single(t, in, i));
	single_s = now_s() - t0;

	/* rte_lpm only: lookupx4 (tail handled by single lookups). */
	if (t->lib == LIB_LPM) {
		t0 = now_s();
		for (unsigned long it = 0; it < iters; it++) {
			size_t i = 0;

			for (; i + 4 <= in->n; i += 4) {
				int64_t x4[4];

				lookup_x4(t, in, i, x4);
				for (int k = 0; k < 4; k++)
					x4_sum = fold(x4_sum, x4[k]);
			}
			for (; i < in->n; i++)
				x4_sum = fold(x4_sum, lookup_single(t, in, i));
		}
		x4_s = now_s() - t0;
	}

	if (single_sum != bulk_sum || (t->lib == LIB_LPM && x4_sum != bulk_sum))
		die("checksum mismatch: bulk %" PRIu64 " single %" PRIu64
		    " x4 %" PRIu64, bulk_sum, single_sum, x4_sum);

	printf("{\"lib\":\"%s\",\"family\":\"%s\",\"prefixes\":%zu,"
	       "\"inserted\":%zu,\"failed\":%zu,\"tbl8s\":%" PRIu32 ","
	       "\"build_s\":%.6f,\"addrs\":%zu,\"iters\":%lu,"
	       "\"lookups\":%" PRIu64 ",\"hits_per_pass\":%" PRIu64 ","
	       "\"bulk_lookups_per_s\":%.1f,\"single_lookups_per_s\":%.1f",
	       lib_name[t->lib], t->fam == FAM_V4 ? "v4" : "v6", pl->n,
	       bs->inserted, bs->failed, tbl8s, bs->build_s, in->n, iters,
	       lookups, hits, lookups / bulk_s, lookups / single_s);
	if (t->lib == LIB_LPM)
		printf(",\"x4_lookups_per_s\":%.1f", lookups / x4_s);
	printf(",\"checksum\":%" PRIu64 "}\n", bulk_sum);
	return fflush(stdout) == 0 ? 0 : 1;
}

/*
 * Serve mode: every address file read up front, then one measurement per stdin
 * line naming a file by its 0-based position.
 */
#define MAX_SERVE_FILES 8

static int
serve_bench(struct table *t, const struct prefix_list *pl,
	    const struct build_stats *bs, char *files, uint32_t tbl8s,
	    unsigned long iters)
{
	struct addr_list al[MAX_SERVE_FILES];
	struct lookup_input in[MAX_SERVE_FILES];
	size_t nfiles = 0;
	char line[64];
	int rc = 0;

	for (char *file = strtok(files, ","); file != NULL;
	     file = strtok(NULL, ",")) {
		if (nfiles == MAX_SERVE_FILES)
			die("serve mode takes at most %d address files",
			    MAX_SERVE_FILES);
		read_addrs(t->fam, file, &al[nfiles]);
		prepare_input(t->fam, &al[nfiles], &in[nfiles]);
		nfiles++;
	}
	printf("{\"ready\":true,\"build_s\":%.6f}\n", bs->build_s);
	if (fflush(stdout) != 0)
		return 1;
	while (rc == 0 && fgets(line, sizeof(line), stdin) != NULL) {
		char *end;
		unsigned long k = strtoul(line, &end, 10);

		line[strcspn(line, "\n")] = '\0';
		if (end == line || *end != '\0' || k >= nfiles)
			die("serve: expected a file number below %zu, got \"%s\"",
			    nfiles, line);
		rc = run_bench(t, pl, bs, &in[k], tbl8s, iters);
	}
	for (size_t i = 0; i < nfiles; i++)
		free_input(t->fam, &al[i], &in[i]);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* main                                                                     */
/* ------------------------------------------------------------------------ */

static void
usage(void)
{
	fprintf(stderr,
		"usage: %s v4|v6|fib4|fib6 PREFIX_FILE ADDR_FILE ITERS\n"
		"       %s v4-dump|v6-dump|fib4-dump|fib6-dump "
		"PREFIX_FILE ADDR_FILE\n"
		"       %s v4-serve|v6-serve|fib4-serve|fib6-serve "
		"PREFIX_FILE ADDR_FILE[,ADDR_FILE...] ITERS\n",
		progname, progname, progname);
	exit(2);
}

int
main(int argc, char **argv)
{
	static const struct {
		const char *name;
		enum lib lib;
		enum family fam;
	} modes[] = {
		{ "v4", LIB_LPM, FAM_V4 },   { "v6", LIB_LPM6, FAM_V6 },
		{ "fib4", LIB_FIB, FAM_V4 }, { "fib6", LIB_FIB6, FAM_V6 },
	};
	struct table t = { 0 };
	struct prefix_list pl;
	struct addr_list al;
	struct lookup_input in;
	struct build_stats bs;
	unsigned long iters = 0;
	bool dump, serve, found = false;
	uint32_t tbl8s;
	size_t mlen;
	int rc;

	if (argc < 2)
		usage();
	mlen = strcspn(argv[1], "-");
	dump = strcmp(argv[1] + mlen, "-dump") == 0;
	serve = strcmp(argv[1] + mlen, "-serve") == 0;
	if (!dump && !serve && argv[1][mlen] != '\0')
		usage();
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		if (strlen(modes[i].name) == mlen &&
		    strncmp(argv[1], modes[i].name, mlen) == 0) {
			t.lib = modes[i].lib;
			t.fam = modes[i].fam;
			found = true;
		}
	}
	if (!found || argc != (dump ? 4 : 5))
		usage();
	if (!dump) {
		char *end;

		iters = strtoul(argv[4], &end, 10);
		if (*end != '\0' || iters == 0)
			die("ITERS must be a positive integer");
	}

	/* Parse the prefixes before starting the EAL, to size its heap. */
	read_prefixes(t.fam, argv[2], &pl);
	tbl8s = choose_tbl8s(t.lib, t.fam, &pl);

	eal_start(heap_mb(tbl8s, pl.n));
	table_create(&t, pl.n, tbl8s);
	build_table(&t, &pl, &bs);

	/*
	 * ADDR_FILE may be a comma-separated list: the table is built once (rte_lpm takes
	 * minutes for 1M prefixes) and each file is measured (or dumped) in turn, one JSON
	 * line (or one block of answers) per file.
	 */
	if (serve) {
		rc = serve_bench(&t, &pl, &bs, argv[3], tbl8s, iters);
		table_free(&t);
		rte_eal_cleanup();
		free(pl.addr);
		free(pl.len);
		return rc;
	}
	rc = 0;
	for (char *file = strtok(argv[3], ","); file != NULL && rc == 0;
	     file = strtok(NULL, ",")) {
		read_addrs(t.fam, file, &al);
		prepare_input(t.fam, &al, &in);
		rc = dump ? run_dump(&t, &in) :
			    run_bench(&t, &pl, &bs, &in, tbl8s, iters);
		free_input(t.fam, &al, &in);
	}
	table_free(&t);
	rte_eal_cleanup();
	free(pl.addr);
	free(pl.len);
	return rc;
}
