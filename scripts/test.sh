#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit/property/golden/corpus tests, and a short
# fuzz run of every fuzz target. CI runs exactly this (.ci/run).
#   FUZZ_SECONDS=N   seconds per fuzz target (default 45; 0 skips fuzzing)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings

echo "== cargo test"
cargo test --workspace --all-features

# --all-features above includes `dpdk`; the default build must still compile cleanly and
# need no system library (no DPDK linked into the binary).
echo "== default features (no dpdk)"
cargo clippy -p op25b-dataplane -p op25b --all-targets -- -D warnings
cargo test -p op25b --lib config
cargo build -p op25b
if ldd target/debug/op25b | grep -q librte_; then
  echo "the default op25b binary links DPDK" >&2
  exit 1
fi

fuzz_seconds="${FUZZ_SECONDS:-45}"
if [[ "$fuzz_seconds" != 0 ]]; then
  echo "== fuzz (${fuzz_seconds}s per target)"
  seeds=fuzz/corpus/parse
  corpus_dir=../shared/corpus/tcpdump
  mkdir -p "$seeds" fuzz/corpus/capture
  if [[ -d "$corpus_dir" ]]; then
    cargo run --quiet -p op25b-bench -- extract-frames --out-dir "$seeds" "$corpus_dir"/* 2>/dev/null
    # Whole small captures seed the capture-file target.
    find "$corpus_dir" -size -16k -name '*.pcap*' -exec cp -t fuzz/corpus/capture {} +
  else
    echo "NOTE: $corpus_dir is absent: fuzzing starts without seeds"
  fi
  for target in parse capture; do
    log="fuzz/fuzz-$target.log"
    if (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "corpus/$target" -- \
      -max_total_time="$fuzz_seconds" -max_len=16384 -print_final_stats=1) >"$log" 2>&1; then
      echo "fuzz $target: $(grep -E '^Done [0-9]+ runs' "$log" || echo 'done'), no crash"
    else
      tail -n 60 "$log"
      echo "fuzz $target: FAILED (crash input saved under fuzz/artifacts/$target)"
      exit 1
    fi
  done
fi
echo "== all tests passed"
