/*
 * mem_probe - what memory costs on this machine, the numbers behind the LPM
 * layout choices in the README ("Why not 2x").
 *
 *   ./mem_probe [MiB ...]
 *
 * 1. Latency: a dependent pointer chase over a random cyclic permutation of
 *    64-byte lines in an N MiB buffer (transparent huge pages), read right
 *    after the same thread touched all of it, so whatever of it the caches
 *    keep is hit. ns per read; defaults 1 2 4 8 16 32 MiB.
 * 2. Throughput: 4M uniformly random 32-bit keys, each costing one random
 *    read (two dependent ones for root+leaf), in the shapes the LPM
 *    comparison is about:
 *      lines16    one 64-byte line of a 16 MiB huge-page array per key, keys
 *                 in groups of 64 prefetched first (op25b's line layout)
 *      root+leaf  a 4 MiB root entry, then a line of a 16 MiB array chosen by
 *                 it, batched the same way (op25b's root layout)
 *      tbl24      one 32-bit entry of a 64 MiB array on 4 KiB pages, plain
 *                 loop (rte_lpm's tbl24 read, without its other work)
 *    M keys/s, median of 5.
 *
 * Pin it (taskset -c 1) and run it a few times: on a shared VM the answer
 * moves with the neighbours, which is the point of measuring it.
 * Invariant: only reads are timed; every result feeds a checksum printed at
 * the end so no read is optimised away.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* n bytes, 2 MiB aligned, huge pages advised or refused, touched; the slack
 * before and after the aligned part is unmapped, so munmap(p, n) frees all. */
static void *region(size_t n, int huge)
{
	size_t a = 2u << 20;
	char *raw = mmap(NULL, n + a, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	char *p = (char *)(((uintptr_t)raw + a - 1) & ~(uintptr_t)(a - 1));
	if (p > raw)
		munmap(raw, (size_t)(p - raw));
	if (raw + n + a > p + n)
		munmap(p + n, (size_t)(raw + n + a - (p + n)));
	madvise(p, n, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	memset(p, 1, n);
	return p;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

struct line { uint64_t next, pad[7]; };

static double chase_ns(size_t mib, uint64_t *sum)
{
	size_t n = (mib << 20) / sizeof(struct line);
	struct line *b = region(n * sizeof(struct line), 1);
	uint64_t *perm = malloc(n * sizeof *perm);
	for (size_t i = 0; i < n; i++)
		perm[i] = i;
	for (size_t i = n - 1; i > 0; i--) {
		size_t j = next() % (i + 1);
		uint64_t t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	for (size_t i = 0; i < n; i++)
		b[perm[i]].next = perm[(i + 1) % n];
	free(perm);
	uint64_t s = 0;
	for (size_t i = 0; i < n; i++) /* touch: as warm as the caches allow */
		s += b[i].next;
	const int steps = 1 << 20;
	uint64_t p = 0;
	double t = now();
	for (int i = 0; i < steps; i++)
		p = b[p].next;
	t = now() - t;
	*sum += s + p;
	munmap(b, n * sizeof(struct line));
	return t * 1e9 / steps;
}

#define NK (4u << 20)
#define REPS 5

int main(int argc, char **argv)
{
	uint64_t sum = 0;
	size_t def[] = {1, 2, 4, 8, 16, 32};
	int nsz = argc > 1 ? argc - 1 : (int)(sizeof def / sizeof def[0]);
	printf("dependent read latency (ns per read):\n");
	for (int i = 0; i < nsz; i++) {
		size_t mib = argc > 1 ? strtoul(argv[i + 1], NULL, 10) : def[i];
		if (mib == 0) {
			fprintf(stderr, "mem_probe: sizes are MiB, at least 1\n");
			return 2;
		}
		printf("  %4zu MiB  %6.1f\n", mib, chase_ns(mib, &sum));
	}

	uint32_t *keys = malloc(NK * sizeof *keys);
	for (uint32_t i = 0; i < NK; i++)
		keys[i] = (uint32_t)next();
	uint32_t *lines = region(16u << 20, 1);
	uint32_t *root = region(4u << 20, 1);
	uint32_t *tbl24 = region(64u << 20, 0);
	for (uint32_t i = 0; i < (1u << 20); i++)
		root[i] = (i * 2654435761u) >> 14; /* a line of the 16 MiB array */
	double r[3][REPS];
	for (int rep = 0; rep < REPS; rep++) {
		uint32_t out[64];
		double t = now();
		for (uint32_t b = 0; b < NK; b += 64) {
			for (int i = 0; i < 64; i++)
				__builtin_prefetch(&lines[(keys[b + i] >> 14) * 16]);
			for (int i = 0; i < 64; i++)
				sum += lines[(keys[b + i] >> 14) * 16 + (keys[b + i] & 15)];
		}
		r[0][rep] = NK / (now() - t) / 1e6;
		t = now();
		for (uint32_t b = 0; b < NK; b += 64) {
			for (int i = 0; i < 64; i++)
				out[i] = root[keys[b + i] >> 12];
			for (int i = 0; i < 64; i++)
				__builtin_prefetch(&lines[out[i] * 16]);
			for (int i = 0; i < 64; i++)
				sum += lines[out[i] * 16 + (keys[b + i] & 15)];
		}
		r[1][rep] = NK / (now() - t) / 1e6;
		t = now();
		for (uint32_t i = 0; i < NK; i++)
			sum += tbl24[keys[i] >> 8];
		r[2][rep] = NK / (now() - t) / 1e6;
	}
	const char *name[3] = {"lines16", "root+leaf", "tbl24"};
	printf("random reads, one per key (root+leaf: two) (M keys/s, median of %d):\n", REPS);
	for (int k = 0; k < 3; k++) {
		qsort(r[k], REPS, sizeof r[k][0], cmp_double);
		printf("  %-10s %6.1f\n", name[k], r[k][REPS / 2]);
	}
	printf("checksum %llu\n", (unsigned long long)sum);
	return 0;
}
