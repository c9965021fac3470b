#!/usr/bin/env bash
# Runs every cargo-fuzz target under fuzz/ for SECONDS each (default 60) and prints
# target / executions / findings. Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Needs the nightly toolchain (libFuzzer's instrumentation); installs cargo-fuzz
# once under ${SLIPWAY_STATE:-$HOME/.cache/slipway}/cargo-fuzz. New interesting inputs
# go to fuzz/target/corpus/<target> (not committed); the committed seeds in
# fuzz/corpus/<target> are only read. A finding is written to fuzz/artifacts/<target>/:
# minimize it (`cargo +nightly fuzz tmin -s none TARGET FILE`), fix, and commit the
# minimized input to fuzz/corpus/<target>/ so tests/it/fuzz_corpus.rs replays it on stable.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${1:-60}
shift || true
case "$seconds" in '' | *[!0-9]*) echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2 ;; esac

toolchains=$(rustup toolchain list 2>/dev/null || true)
case "$toolchains" in
  nightly* | *$'\n'nightly*) ;;
  *)
    echo "fuzz.sh: the nightly toolchain is missing (cargo-fuzz needs it): rustup toolchain install nightly" >&2
    exit 1
    ;;
esac

fuzz_home=${SLIPWAY_STATE:-$HOME/.cache/slipway}/cargo-fuzz
if [ ! -x "$fuzz_home/bin/cargo-fuzz" ]; then
  echo "fuzz.sh: installing cargo-fuzz into $fuzz_home" >&2
  CARGO_TARGET_DIR=$fuzz_home/build cargo install cargo-fuzz --locked --root "$fuzz_home" >&2
  rm -rf "$fuzz_home/build"
fi
export PATH=$fuzz_home/bin:$PATH

# Safe Rust: no sanitizer (several times faster); debug assertions catch overflows.
flags=(-s none --debug-assertions)
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
cargo +nightly fuzz build "${flags[@]}" >&2

count_findings() {
  if [ -d "fuzz/artifacts/$1" ]; then find "fuzz/artifacts/$1" -type f | wc -l; else echo 0; fi
}

rows=()
status=0
for t in "${targets[@]}"; do
  work=fuzz/target/corpus/$t
  mkdir -p "$work"
  before=$(count_findings "$t")
  log=fuzz/target/$t.log
  echo "fuzz.sh: $t for ${seconds}s (log $log)" >&2
  # a finding stops libFuzzer with a non-zero status: counted, then the next target
  cargo +nightly fuzz run "${flags[@]}" "$t" "$work" "fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1 || true
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  found=$(($(count_findings "$t") - before))
  [ "$found" -eq 0 ] || status=1
  rows+=("$t ${execs:-?} $found")
done

printf '\n%-14s %12s %9s\n' target executions findings
for r in "${rows[@]}"; do
  # shellcheck disable=SC2086
  printf '%-14s %12s %9s\n' $r
done
[ "$status" -eq 0 ] || echo "findings are in fuzz/artifacts/<target>/" >&2
exit "$status"
