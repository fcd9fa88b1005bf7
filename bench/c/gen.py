#!/usr/bin/env python3
"""gen.py - random test data for lpm_bench (and the Rust LPM benchmark).

Usage:
    gen.py v4|v6 NPREFIXES NADDRS SEED OUTPREFIX OUTADDR [--hit FRACTION]

Writes NPREFIXES distinct random prefixes (one "addr/len" per line, host bits
cleared) to OUTPREFIX and NADDRS random addresses to OUTADDR.  Standard
library only; output is a deterministic function of the arguments.

Prefix lengths follow a BNG-like mix:
  v4: /16-/32, mostly /20-/28 (subscriber pools), ~10% /32 (static
      addresses / exemptions), a few short aggregates and /29-/31.
  v6: /32-/128, mostly /40-/64 (delegated prefixes, /48 and /56 most
      common, /64 the most common), ~8% /128, a thin tail elsewhere.
Networks are uniformly random over the whole address space.

Addresses are uniformly random over the whole address space by default.
With --hit F, a fraction F of them is instead drawn uniformly from inside a
uniformly chosen prefix of the set (so they hit that prefix or a more
specific one); this matters for v6, where uniform addresses essentially never
match anything.
"""

import argparse
import random
import sys

# Prefix length -> relative weight.
V4_WEIGHTS = {
    16: 1, 17: 1, 18: 2, 19: 3,
    20: 6, 21: 8, 22: 10, 23: 10, 24: 12, 25: 8, 26: 8, 27: 7, 28: 6,
    29: 3, 30: 3, 31: 1,
    32: 10,
}

V6_WEIGHTS = {length: 0.1 for length in range(32, 129)}  # thin tail
V6_WEIGHTS.update({
    32: 2, 36: 2, 40: 6, 44: 6, 48: 12, 52: 6, 56: 14, 60: 8, 62: 4, 64: 24,
    128: 8,
})


def fmt_v4(x):
    return "%d.%d.%d.%d" % (x >> 24, (x >> 16) & 255, (x >> 8) & 255, x & 255)


def fmt_v6(x):
    # Uncompressed groups: faster than ipaddress and accepted by inet_pton.
    return ":".join("%x" % ((x >> s) & 0xFFFF) for s in range(112, -1, -16))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("family", choices=["v4", "v6"])
    ap.add_argument("nprefixes", type=int)
    ap.add_argument("naddrs", type=int)
    ap.add_argument("seed", type=int)
    ap.add_argument("outprefix")
    ap.add_argument("outaddr")
    ap.add_argument("--hit", type=float, default=0.0, metavar="FRACTION",
                    help="fraction of addresses drawn from inside prefixes")
    a = ap.parse_args()
    if a.nprefixes < 0 or a.naddrs < 0 or not 0.0 <= a.hit <= 1.0:
        ap.error("counts must be >= 0 and FRACTION in [0, 1]")
    if a.hit > 0 and a.nprefixes == 0:
        ap.error("--hit needs at least one prefix")

    bits = 32 if a.family == "v4" else 128
    weights = V4_WEIGHTS if a.family == "v4" else V6_WEIGHTS
    fmt = fmt_v4 if a.family == "v4" else fmt_v6
    full = (1 << bits) - 1
    rng = random.Random(a.seed)

    lengths = list(weights)
    cum = []
    total = 0.0
    for length in lengths:
        total += weights[length]
        cum.append(total)

    # Draw prefixes until NPREFIXES distinct (network, length) pairs exist.
    seen = set()
    prefixes = []  # in generation order, so the file is deterministic
    while len(prefixes) < a.nprefixes:
        batch = rng.choices(lengths, cum_weights=cum,
                            k=a.nprefixes - len(prefixes))
        for length in batch:
            mask = full ^ ((1 << (bits - length)) - 1)
            key = (rng.getrandbits(bits) & mask, length)
            if key not in seen:
                seen.add(key)
                prefixes.append(key)
    del seen

    with open(a.outprefix, "w") as f:
        f.write("# gen.py %s %d prefixes seed %d\n"
                % (a.family, a.nprefixes, a.seed))
        f.writelines("%s/%d\n" % (fmt(net), length)
                     for net, length in prefixes)

    with open(a.outaddr, "w") as f:
        f.write("# gen.py %s %d addresses seed %d hit %g\n"
                % (a.family, a.naddrs, a.seed, a.hit))
        chunk = 1 << 16
        left = a.naddrs
        while left > 0:
            n = min(chunk, left)
            left -= n
            out = []
            for _ in range(n):
                if a.hit > 0 and rng.random() < a.hit:
                    net, length = prefixes[rng.randrange(len(prefixes))]
                    host = rng.getrandbits(bits - length) if length < bits else 0
                    out.append(fmt(net | host))
                else:
                    out.append(fmt(rng.getrandbits(bits)))
            f.write("\n".join(out))
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
