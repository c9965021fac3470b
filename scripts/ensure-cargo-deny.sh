#!/usr/bin/env bash
# Builds cargo-deny (licence, ban and source checks of the dependency tree) once into
# $SLIPWAY_STATE/cargo-deny/bin; later runs reuse it (a stamp covers the version, the
# Rust toolchain and this script).
#
#   bash scripts/ensure-cargo-deny.sh      # prints the path of cargo-deny on its last line
set -euo pipefail
DENY_VERSION=${DENY_VERSION:-0.20.2}
STATE=${SLIPWAY_STATE:-/tmp/slipway-dev}
HOME_DIR="$STATE/cargo-deny"
BIN="$HOME_DIR/bin/cargo-deny"

stamp=$( (echo "$DENY_VERSION"; rustc --version; cat "${BASH_SOURCE[0]}") | sha256sum | cut -c1-16)
if [ -x "$BIN" ] && [ "$(cat "$HOME_DIR/.stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "$BIN"
  exit 0
fi
start=$(date +%s)
echo "ensure-cargo-deny: building cargo-deny $DENY_VERSION (minutes when cold)" >&2
mkdir -p "$HOME_DIR"
cargo install --locked --quiet --force --version "$DENY_VERSION" --root "$HOME_DIR" cargo-deny >&2
echo "$stamp" > "$HOME_DIR/.stamp"
echo "ensure-cargo-deny: built in $(($(date +%s) - start)) s" >&2
echo "$BIN"
