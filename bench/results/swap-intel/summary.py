#!/usr/bin/env python3
"""Pools `op25b-bench swap` JSONs of this folder: first-burst extra (the first burst judged
under the new policy, against the same burst's steady cost). Usage: summary.py NAME ...
(files NAME-N.json)."""
import glob
import json
import sys


def q(v, p):
    return v[int(p * (len(v) - 1) + 0.5)]


for name in sys.argv[1:]:
    swaps, ns, controls, medians = [], [], [], []
    for f in sorted(glob.glob(f"{name}-*.json")):
        d = json.load(open(f))
        x = d["first_burst_extra_vs_same_burst"]
        swaps += x["swap_values"]
        controls += x["control_values"]
        medians.append(round(x["swap"]["median"], 2))
        ns += [a["first_burst_extra_vs_same_burst_ns"] for a in d["around_each_swap_ns"]
               if a["first_burst_extra_vs_same_burst_ns"] is not None]
    swaps.sort(); controls.sort(); ns.sort()
    under = sum(1 for v in swaps if v < 1) / len(swaps)
    print(f"{name}: {len(swaps)} swaps, run medians {medians}; pooled median {q(swaps, .5):.2f} "
          f"p75 {q(swaps, .75):.2f} p90 {q(swaps, .9):.2f} p95 {q(swaps, .95):.2f} max {q(swaps, 1):.2f}, "
          f"under one {under:.0%}; median {q(ns, .5):.0f} ns | control median {q(controls, .5):.2f} "
          f"p90 {q(controls, .9):.2f} max {q(controls, 1):.2f}")
