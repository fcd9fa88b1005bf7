#!/bin/sh
# check.sh - correctness test for lpm_bench: runs every *-dump mode on the
# small nested prefix sets in testdata/ and compares with the expected next
# hops (hand-written), then checks that a /0 route is reported as a failed
# insert by rte_lpm/rte_lpm6 (which reject depth 0) but accepted by rte_fib.
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

exit $fail
