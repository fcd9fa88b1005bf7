#!/bin/sh
# check.sh - correctness test for lpm_bench: runs every *-dump mode on the
# small nested prefix sets in testdata/ and compares with the expected next
# hops (hand-written), then checks that a /0 route is reported as a failed
# insert by rte_lpm/rte_lpm6 (which reject depth 0) but accepted by rte_fib,
# and that serve mode (build once, measure on request) gives the same checksum
# as benchmark mode and refuses a file number it was not given.
set -eu
cd "$(dirname "$0")"
B=./lpm_bench
T=testdata
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

for fam in v4 v6; do
	for mode in "$fam" "fib${fam#v}"; do
		if "$B" "$mode-dump" "$T/small_$fam.prefixes" "$T/small_$fam.addrs" \
			>"$tmp/out" && cmp -s "$tmp/out" "$T/small_$fam.expected"; then
			echo "ok   $mode-dump"
		else
			echo "FAIL $mode-dump"
			diff "$tmp/out" "$T/small_$fam.expected" || true
			fail=1
		fi
	done
done

# depth-0 behaviour
printf '0.0.0.0/0\n' >"$tmp/p4"; printf '1.2.3.4\n' >"$tmp/a4"
printf '::/0\n' >"$tmp/p6";      printf '2001:db8::1\n' >"$tmp/a6"
for spec in "v4 p4 a4 -1" "fib4 p4 a4 0" "v6 p6 a6 -1" "fib6 p6 a6 0"; do
	set -- $spec
	got=$("$B" "$1-dump" "$tmp/$2" "$tmp/$3" 2>/dev/null)
	if [ "$got" = "$4" ]; then
		echo "ok   $1 /0 -> $4"
	else
		echo "FAIL $1 /0: got '$got', want '$4'"
		fail=1
	fi
done

# serve mode: one "ready" line, then one result per request, same checksum as
# benchmark mode; a bad request ends it with an error.
sum_of() { sed -n 's/.*"checksum":\([0-9]*\).*/\1/p'; }
for mode in v4 fib4; do
	want=$("$B" "$mode" "$T/small_v4.prefixes" "$T/small_v4.addrs" 1 | sum_of)
	printf '0\n0\n' | "$B" "$mode-serve" "$T/small_v4.prefixes" \
		"$T/small_v4.addrs" 1 >"$tmp/serve"
	lines=$(wc -l <"$tmp/serve")
	ready=$(head -n 1 "$tmp/serve" | grep -c '"ready":true' || true)
	sums=$(tail -n +2 "$tmp/serve" | sum_of | sort -u)
	if [ "$lines" = 3 ] && [ "$ready" = 1 ] && [ "$sums" = "$want" ] &&
		! printf '1\n' | "$B" "$mode-serve" "$T/small_v4.prefixes" \
			"$T/small_v4.addrs" 1 >/dev/null 2>&1; then
		echo "ok   $mode-serve"
	else
		echo "FAIL $mode-serve: $lines lines, ready $ready, checksums '$sums' want '$want'"
		fail=1
	fi
done

exit $fail
