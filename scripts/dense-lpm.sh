#!/usr/bin/env bash
# The line layout on very dense chunks: writes two IPv4 data sets into out/dense/ and runs
# `op25b-bench lpm --layout lines` on each (release build; pin with taskset to compare runs):
#   hosts1m  1,048,576 adjacent host routes filling 10.0.0.0/12, keys uniform over
#            10.0.0.0/11 (half inside, every chunk of the /12 cut into 16,384 ranges);
#   scatter  64 /18 pools in 100.64.0.0/12 with 100,000 host routes scattered over them,
#            keys uniform over the pools (about 3,000 ranges per chunk).
# Extra arguments go to `op25b-bench lpm` (e.g. --reps 3).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p out/dense
python3 - <<'PY'
import ipaddress, random
ip = lambda x: str(ipaddress.ip_address(x))
base = int(ipaddress.ip_address('10.0.0.0'))
with open('out/dense/hosts1m.prefixes', 'w') as f:
    for i in range(1 << 20):
        f.write(ip(base + i) + '/32\n')
random.seed(1)
with open('out/dense/hosts1m.addrs', 'w') as f:
    for _ in range(1 << 20):
        f.write(ip(base + random.randrange(1 << 21)) + '\n')
random.seed(7)
base = int(ipaddress.ip_address('100.64.0.0'))
with open('out/dense/scatter.prefixes', 'w') as f:
    for p in range(64):
        f.write(ip(base + (p << 14)) + '/18\n')
    for h in random.sample(range(1 << 20), 100000):
        f.write(ip(base + h) + '/32\n')
with open('out/dense/scatter.addrs', 'w') as f:
    for _ in range(1 << 20):
        f.write(ip(base + random.randrange(1 << 20)) + '\n')
PY
cargo build --quiet --release -p op25b-bench
for set in hosts1m scatter; do
  echo "== $set"
  ./target/release/op25b-bench lpm --prefixes "out/dense/$set.prefixes" \
    --addrs "out/dense/$set.addrs" --layout lines "$@"
done
