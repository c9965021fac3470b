#!/usr/bin/env bash
# Headless Chromium for the `slipway graph` rendering test (tests/it/graph.rs opens the
# SVG and screenshots it): Debian's `chromium`, installed with apt-get when missing.
# Idempotent; prints the browser's path as its last line.
#
#   bash scripts/ensure-chromium.sh
set -euo pipefail
say() { printf 'ensure-chromium: %s\n' "$*" >&2; }
die() { printf 'ensure-chromium: error: %s\n' "$*" >&2; exit 1; }

find_chromium() { command -v chromium || command -v chromium-browser || true; }

BIN=$(find_chromium)
if [ -n "$BIN" ]; then
  printf '%s\n' "$BIN"
  exit 0
fi
SUDO=()
[ "$(id -u)" = 0 ] || SUDO=(sudo)
APT=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300)
LOG=$(mktemp)
trap 'rm -rf "$LOG"' EXIT
say "installing Debian's chromium"
# stale or missing package lists only show as a failed install: update, then retry
if ! "${APT[@]}" install -y --no-install-recommends chromium >"$LOG" 2>&1; then
  say "apt-get update"
  "${APT[@]}" update >>"$LOG" 2>&1 || say "apt-get update reported errors (in the log below if the install fails too)"
  "${APT[@]}" install -y --no-install-recommends chromium >>"$LOG" 2>&1 ||
    { cat "$LOG" >&2; die "apt-get install chromium failed"; }
fi
BIN=$(find_chromium)
[ -n "$BIN" ] || die "chromium installed but not found on PATH"
printf '%s\n' "$BIN"
