#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit/property/golden/corpus tests, the C
# baselines of bench/c with a short dpdk-null smoke run, and a short fuzz run of every
# fuzz target. CI runs exactly this (.ci/run).
#   FUZZ_SECONDS=N   seconds per fuzz target (default 45; 0 skips fuzzing)
set -euo pipefail
cd "$(dirname "$0")/.."

# A part of this script that cannot run here says so now and again at the end, with the
# tests' own skips.
script_skips=()
skip() {
  echo "SKIPPED: $1"
  script_skips+=("$1")
}

bash scripts/setup.sh
# Where cargo builds (CARGO_TARGET_DIR, if set).
target="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target"

echo "== cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings

echo "== cargo doc (broken intra-doc links are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --quiet

echo "== cargo test"
# Kept to list the skipped tests at the end (op25b_dataplane::testkit::skipped).
cargo test --workspace --all-features 2>&1 | tee "$target/test-output.log"

# The C baselines (bench/c) are not built by cargo: build them here so they cannot rot,
# check lpm_bench against its hand-written answers, and run a very short dpdk-null (the
# debug op25b-bench from the tests above, 1000 prefixes, 0.2 s per side, core 0) that
# must print both rows: op25b and the C rx -> rte_lpm -> tx harness.
echo "== C harnesses (bench/c) and a dpdk-null smoke run"
make -C bench/c -s all
make -C bench/c -s check
cargo build -q --workspace --all-features --bin op25b-bench
# expect_line OUTPUT REGEX MESSAGE: a smoke run's OUTPUT must hold a line matching REGEX
# (grep -E); otherwise it is printed with MESSAGE, and the run fails.
expect_line() {
  if ! grep -Eq "$2" <<<"$1"; then
    echo "$1"
    echo "$3" >&2
    exit 1
  fi
}
# Both sides must drop the same share of the frames (they judge the same ones), the C
# harness in both its forms (in arrival order and by class, one run of each after op25b's
# by default); a share of port-25 frames other than the default is run as well.
for share in 0.5 0.05; do
  smoke="$("$target/debug/op25b-bench" dpdk-null --out-dir "$target/dpdk-null-smoke" --prefixes 1000 \
    --seconds 0.2 --runs 1 --core 0 --smtp-share "$share" 2>&1)" || { echo "$smoke"; exit 1; }
  expect_line "$smoke" '^run 1: op25b [0-9.]+ Mpps \(dropped share ([0-9.]+)\), C rx→rte_lpm→tx in arrival order [0-9.]+ Mpps \(dropped share \1\), C rx→rte_lpm→tx by class [0-9.]+ Mpps \(dropped share \1\)$' \
    "dpdk-null smoke run (--smtp-share $share): expected an op25b row and both C harness rows with the same dropped share"
  expect_line "$smoke" '^median of 1 runs .*: op25b [0-9.]+ Mpps; C rx→rte_lpm→tx in arrival order [0-9.]+ Mpps, ratio [0-9.]+x, .*; C rx→rte_lpm→tx by class [0-9.]+ Mpps, ratio [0-9.]+x, ' \
    "dpdk-null smoke run (--smtp-share $share): expected a summary with a ratio against each form of the C harness"
  grep -E '^run 1: ' <<<"$smoke"
done
# One form of the C harness alone (--c-order), over two rounds (--rounds: processes of
# their own, their pairs pooled).
smoke="$("$target/debug/op25b-bench" dpdk-null --out-dir "$target/dpdk-null-smoke" --prefixes 1000 \
  --seconds 0.2 --runs 1 --core 0 --c-order arrival --rounds 2 2>&1)" || { echo "$smoke"; exit 1; }
expect_line "$smoke" '^run 1: op25b [0-9.]+ Mpps \(dropped share ([0-9.]+)\), C rx→rte_lpm→tx in arrival order [0-9.]+ Mpps \(dropped share \1\)$' \
  "dpdk-null smoke run (--c-order arrival): expected an op25b row and an arrival-order C row (only) with the same dropped share"
expect_line "$smoke" '^2 rounds, C in arrival order: pair medians per round [0-9.]+x [0-9.]+x; pooled, median of the 2 pairs [0-9.]+x' \
  "dpdk-null smoke run (--rounds 2): expected the pooled pairs of the two rounds"
if grep -q 'by class' <<<"$smoke"; then
  echo "$smoke"; echo "dpdk-null smoke run (--c-order arrival): the class form ran too" >&2; exit 1
fi
grep -E '^(run 1|2 rounds)' <<<"$smoke"
# And with the frames replayed from a capture by net_pcap (--from-capture) on both sides.
# A run ends anywhere in the capture's loop of 1024 frames, so the drop shares need only
# agree to 0.002 (each side judges hundreds of thousands of frames).
smoke="$("$target/debug/op25b-bench" dpdk-null --out-dir "$target/dpdk-null-smoke" --prefixes 1000 \
  --seconds 0.2 --runs 1 --core 0 --from-capture 2>&1)" || { echo "$smoke"; exit 1; }
row='^run 1: op25b [0-9.]+ Mpps \(dropped share ([0-9.]+)\), C rx→rte_lpm→tx in arrival order [0-9.]+ Mpps \(dropped share ([0-9.]+)\), C rx→rte_lpm→tx by class [0-9.]+ Mpps \(dropped share ([0-9.]+)\)$'
expect_line "$smoke" "$row" \
  "dpdk-null smoke run (--from-capture): expected an op25b row and both C harness rows"
grep -E '^run 1: ' <<<"$smoke"
sed -E -n "s/$row/\1 \2 \3/p" <<<"$smoke" |
  awk '{ for (i = 2; i <= 3; i++) { d = $1 - $i; if (d < 0) d = -d; if (d > 0.002) exit 1 } if ($1 == 0) exit 1 }' ||
  { echo "dpdk-null smoke run (--from-capture): the sides' drop shares differ (or none dropped)" >&2; exit 1; }
grep -q '"rx_device": "net_pcap (infinite_rx)"' "$target/dpdk-null-smoke/dpdk-null.json" ||
  { echo "dpdk-null smoke run (--from-capture): the JSON does not name net_pcap as the receiving device" >&2; exit 1; }
# A longer capture (--capture-frames): it holds that many 64-byte frames (a classic pcap:
# a 24-byte file header, 16 bytes before each frame), and a size past the pool's room is
# refused before any run.
smoke="$("$target/debug/op25b-bench" dpdk-null --out-dir "$target/dpdk-null-smoke" --prefixes 1000 \
  --seconds 0.2 --runs 1 --core 0 --from-capture --capture-frames 4096 2>&1)" || { echo "$smoke"; exit 1; }
expect_line "$smoke" "$row" \
  "dpdk-null smoke run (--capture-frames 4096): expected an op25b row and both C harness rows"
size="$(stat -c %s "$target/dpdk-null-smoke/frames.pcap")"
[ "$size" -eq $((24 + 4096 * (16 + 64))) ] && grep -q '"capture_frames": 4096' "$target/dpdk-null-smoke/dpdk-null.json" ||
  { echo "dpdk-null smoke run (--capture-frames 4096): the capture holds $size bytes, or the JSON does not say 4096 frames" >&2; exit 1; }
if out="$("$target/debug/op25b-bench" dpdk-null --out-dir "$target/dpdk-null-smoke" --from-capture --capture-frames 4097 2>&1)"; then
  echo "dpdk-null --capture-frames 4097: accepted (the pool has no room for it)" >&2; exit 1
fi
expect_line "$out" '^op25b-bench: error: --capture-frames 4097: the capture holds 1 to 4096 frames$' \
  "dpdk-null --capture-frames 4097: expected an error naming the limit"
# And the swap stall on the DPDK path (1000 prefixes, one swap): it must find the first
# burst under the new policy.
smoke="$("$target/debug/op25b-bench" dpdk-swap --prefixes 1000 --swaps 1 --core 0 --control-core 0 2>&1)" ||
  { echo "$smoke"; exit 1; }
expect_line "$smoke" '^1 swaps of 1000-prefix policies on the DPDK path: first burst under the new policy -?[0-9.]+ bursts extra' \
  "dpdk-swap smoke run: expected the first burst under the new policy"
grep -E '^1 swaps ' <<<"$smoke"
# And on the live AF_PACKET path on the veth testbed (1000 prefixes, one swap and one
# control round): it must find the first burst under the new policy and time its judge.
if [ "$(id -u)" -eq 0 ] && ip netns list >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
  smoke="$("$target/debug/op25b-bench" live-swap --out-dir "$target/live-swap-smoke" --prefixes 1000 \
    --swaps 1 --core 1 --control-core 0 2>&1 >/dev/null)" || { echo "$smoke"; exit 1; }
  expect_line "$smoke" '^1 swaps of 1000-prefix policies on af_packet: first burst under the new policy -?[0-9.]+ bursts extra \(the judge alone -?[0-9.]+\)' \
    "live-swap smoke run: expected the first burst under the new policy"
  grep -E '^1 swaps ' <<<"$smoke"
else
  skip "the live-swap smoke run needs root, ip netns and two cores"
fi

# The systemd unit, checked by systemd itself (with the binary it names pointed at this
# build), and its exposure as `systemd-analyze security` rates it.
echo "== systemd unit"
if command -v systemd-analyze >/dev/null 2>&1; then
  # The unit alone (backend = "af_packet"), then with each backend's drop-in, which
  # systemd finds beside the unit through SYSTEMD_UNIT_PATH.
  for dropin in "" scripts/op25b.service.d/*.conf; do
    unit_dir="$(mktemp -d)"
    sed "s|/usr/local/bin/op25b|$(realpath "$target")/debug/op25b|g" scripts/op25b.service >"$unit_dir/op25b.service"
    if [[ -n "$dropin" ]]; then
      mkdir "$unit_dir/op25b.service.d"
      cp "$dropin" "$unit_dir/op25b.service.d/"
    fi
    # Only this unit's own problems count, not those of units it names on this host.
    if ! verify="$(SYSTEMD_UNIT_PATH="$unit_dir:" systemd-analyze verify --recursive-errors=one "$unit_dir/op25b.service" 2>&1)" ||
      [[ -n "$verify" ]]; then
      echo "$verify"
      rm -rf "$unit_dir"
      echo "systemd-analyze verify: scripts/op25b.service ${dropin:+with $dropin }has problems" >&2
      exit 1
    fi
    echo "systemd-analyze verify: scripts/op25b.service${dropin:+ with $dropin}: clean; $(SYSTEMD_UNIT_PATH="$unit_dir:" systemd-analyze security --offline=true "$unit_dir/op25b.service" 2>/dev/null | grep -E 'Overall exposure' || true)"
    rm -rf "$unit_dir"
  done
else
  skip "systemd-analyze is not installed, so scripts/op25b.service was not verified"
fi

# --all-features above includes `dpdk`; the default build must still compile cleanly and
# need no system library (no DPDK linked into the binary).
echo "== default features (no dpdk)"
cargo clippy -p op25b-dataplane -p op25b --all-targets -- -D warnings
cargo test -p op25b --lib config
cargo build -p op25b
if ldd "$target/debug/op25b" | grep -q librte_; then
  echo "the default op25b binary links DPDK" >&2
  exit 1
fi

# The lookup tables use SSE2 and x86 prefetches on x86_64, with portable fallbacks
# elsewhere (port::sys): lint the library, binaries and tests for aarch64 so the
# fallbacks cannot rot (no cross linker needed; nothing is run).
echo "== portable build (aarch64-unknown-linux-gnu, check only)"
if ! command -v rustup >/dev/null; then
  skip "the aarch64 check needs rustup to add the target"
elif ! rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1; then
  skip "rustup could not add the aarch64-unknown-linux-gnu target (offline?)"
else
  cargo clippy --target aarch64-unknown-linux-gnu -p op25b-dataplane -p op25b \
    -p op25b-testbed --all-targets -- -D warnings
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
  for fuzz_target in parse capture; do
    log="fuzz/fuzz-$fuzz_target.log"
    if (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run "$fuzz_target" "corpus/$fuzz_target" -- \
      -max_total_time="$fuzz_seconds" -max_len=16384 -print_final_stats=1) >"$log" 2>&1; then
      echo "fuzz $fuzz_target: $(grep -E '^Done [0-9]+ runs' "$log" || echo 'done'), no crash"
    else
      tail -n 60 "$log"
      echo "fuzz $fuzz_target: FAILED (crash input saved under fuzz/artifacts/$fuzz_target)"
      exit 1
    fi
  done
fi
echo "== all tests passed"
if grep -q '^SKIPPED ' "$target/test-output.log" || ((${#script_skips[@]})); then
  echo "but these did not run here (the reason follows each name):"
  grep '^SKIPPED ' "$target/test-output.log" || true
  for s in "${script_skips[@]}"; do echo "SKIPPED scripts/test.sh: $s"; done
else
  echo "no test was skipped"
fi
