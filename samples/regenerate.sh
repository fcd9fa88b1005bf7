#!/usr/bin/env bash
# Rebuilds samples/sample.pcap from the bundled pools. The test suite checks that the
# committed file is exactly what this produces.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet --release -p op25b-bench -- synth \
  --dynamic config/pools.txt --exempt config/exempt.txt --relays config/relays.txt \
  --frames 1000 --seed 25 --payload imix --out "${1:-samples/sample.pcap}"
