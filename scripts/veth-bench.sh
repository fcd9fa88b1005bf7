#!/usr/bin/env bash
# The live path on the veth testbed against nftables (run as root): installs nftables,
# builds op25b (with the af_xdp feature, for the AF_XDP row) and op25b-bench, runs
# `op25b-bench veth`, which writes out/veth/veth.{md,json}.
set -euo pipefail
cd "$(dirname "$0")/.."
OP25B_SKIP_FUZZ=1 bash scripts/setup.sh
command -v nft >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables >/dev/null
cargo build --quiet --release -p op25b -p op25b-bench --features op25b/af_xdp
./target/release/op25b-bench veth "$@"
