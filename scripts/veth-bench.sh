#!/usr/bin/env bash
# The live path on the veth testbed against nftables (run as root): installs nftables,
# builds op25b (with the af_xdp feature for the AF_XDP row, and dpdk when libdpdk is
# there) and op25b-bench, runs `op25b-bench veth`, which writes out/veth/veth.{md,json}.
set -euo pipefail
cd "$(dirname "$0")/.."
OP25B_SKIP_FUZZ=1 bash scripts/setup.sh
command -v nft >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables >/dev/null
# With libdpdk-dev present (scripts/setup.sh installs it) the DPDK backend runs too, on
# net_af_packet devices over the same interfaces.
if pkg-config --exists libdpdk 2>/dev/null; then
  cargo build --quiet --release -p op25b --features dpdk,af_xdp
  cargo build --quiet --release -p op25b-bench
  ./target/release/op25b-bench veth --dpdk "$@"
else
  cargo build --quiet --release -p op25b --features af_xdp
  cargo build --quiet --release -p op25b-bench
  ./target/release/op25b-bench veth "$@"
fi
