#!/usr/bin/env python3
"""Summarises `op25b-bench swap` JSONs of this folder: first-burst extra against the same
burst's steady cost, per run and pooled. Usage: summary.py SET NAME[,NAME...] RUNS
(files SET-NAME-N.json, N = 1..RUNS)."""
import json
import sys

set_, names, runs = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])


def q(v, p):
    return round(v[int(p * (len(v) - 1) + 0.5)], 2)


for name in names:
    swaps, controls = [], []
    for r in range(1, runs + 1):
        d = json.load(open(f"{set_}-{name}-{r}.json"))
        x = d["first_burst_extra_vs_same_burst"]
        swaps += x["swap_values"]
        controls += x["control_values"]
        print(f"{name} run {r}: median {x['swap']['median']:.2f} p90 {x['swap']['p90']:.2f} "
              f"max {x['swap']['max']:.2f}; quiet burst p50 {d['burst_ns_quiet']['p50']} ns")
    swaps.sort()
    controls.sort()
    under = sum(1 for v in swaps if v < 1) / len(swaps)
    print(f"{name} pooled ({len(swaps)} swaps): median {q(swaps, .5)} p75 {q(swaps, .75)} "
          f"p90 {q(swaps, .9)} max {q(swaps, 1)} under one {under:.0%} | control "
          f"median {q(controls, .5)} p90 {q(controls, .9)} max {q(controls, 1)}")
