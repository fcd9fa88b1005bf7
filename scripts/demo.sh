#!/usr/bin/env bash
# The main job on the bundled data: replays samples/sample.pcap through the default policy
# in config/op25b.toml, writing out/pass.pcap, out/drop.pcap and out/report.json.
set -euo pipefail
cd "$(dirname "$0")/.."
OP25B_SKIP_FUZZ=1 bash scripts/setup.sh
cargo build --quiet --release -p op25b
mkdir -p out
"${CARGO_TARGET_DIR:-target}/release/op25b" check --config config/op25b.toml
"${CARGO_TARGET_DIR:-target}/release/op25b" replay --config config/op25b.toml --input samples/sample.pcap \
  --pass-out out/pass.pcap --drop-out out/drop.pcap --report out/report.json
echo "first dropped frames (tcpdump -nr out/drop.pcap):"
tcpdump -nr out/drop.pcap -c 5 2>/dev/null | cut -c1-120
