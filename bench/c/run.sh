#!/bin/sh
# run.sh - reproduce the DPDK LPM baseline measurements with lpm_bench.
#
#   ./run.sh [DATADIR]        (default DATADIR: /tmp/lpm_bench_data)
#
# Generates the data sets with gen.py (about 1.2 GB of text, kept out of the
# repository), then runs every mode sequentially and prints one JSON line per
# run.  Expect roughly 15-20 minutes in total, most of it rte_lpm building
# the 1M-prefix table.  The machine should otherwise be idle.
set -eu
cd "$(dirname "$0")"
D=${1:-/tmp/lpm_bench_data}
B=$PWD/lpm_bench
G=$PWD/gen.py
mkdir -p "$D"
make -s lpm_bench

gen() { # gen FILE_TO_CHECK gen.py-args...
	f=$1; shift
	[ -s "$D/$f" ] || python3 "$G" "$@"
}

# IPv4: 100k and 1M prefixes, 10M uniformly random addresses, plus 10M
# addresses of which 90% fall inside some prefix.
gen v4_100k.p     v4 100000  10000000 1 "$D/v4_100k.p" "$D/v4_u.a"
gen v4_100k_hit.a v4 100000  10000000 1 /dev/null "$D/v4_100k_hit.a" --hit 0.9
gen v4_1m.p       v4 1000000 10000000 2 "$D/v4_1m.p" "$D/v4_1m_hit.a" --hit 0.9
# IPv6: 100k prefixes; uniform addresses almost never match, so also 90% hit.
gen v6_100k.p     v6 100000  10000000 3 "$D/v6_100k.p" "$D/v6_u.a"
gen v6_100k_hit.a v6 100000  10000000 3 /dev/null "$D/v6_100k_hit.a" --hit 0.9

# ITERS chosen so each timed loop takes a few seconds.
for lib in v4 fib4; do
	"$B" $lib "$D/v4_100k.p" "$D/v4_u.a"       30
	"$B" $lib "$D/v4_100k.p" "$D/v4_100k_hit.a" 30
	"$B" $lib "$D/v4_1m.p"   "$D/v4_u.a"       30
	"$B" $lib "$D/v4_1m.p"   "$D/v4_1m_hit.a"  30
done
for lib in v6 fib6; do
	"$B" $lib "$D/v6_100k.p" "$D/v6_u.a"        10
	"$B" $lib "$D/v6_100k.p" "$D/v6_100k_hit.a" 5
done
