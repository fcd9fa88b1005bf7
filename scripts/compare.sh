#!/usr/bin/env bash
# Installs what the comparison needs (Debian's DPDK 22.11 headers and libraries, pkg-config,
# tcpdump), builds the C/DPDK harness and op25b, checks the harness's answers, then runs
#   op25b-bench compare
# which writes out/compare/{compare.json,compare.md,lpm-*.svg}. Extra arguments go to
# `op25b-bench compare` (e.g. --v4-sizes 1000,100000 --replay-frames 200000 for a quick run).
# The full run takes about 25 minutes, most of it rte_lpm building its 1M-prefix table (~10 min).
set -euo pipefail
cd "$(dirname "$0")/.."
OP25B_SKIP_FUZZ=1 bash scripts/setup.sh
if ! pkg-config --exists libdpdk 2>/dev/null; then
  echo "compare: installing libdpdk-dev"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libdpdk-dev pkg-config >/dev/null
fi
make -s -C bench/c lpm_bench
make -s -C bench/c check
cargo build --quiet --release -p op25b -p op25b-bench
./target/release/op25b-bench compare --out-dir out/compare "$@"
