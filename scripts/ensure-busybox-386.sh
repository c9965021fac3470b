#!/usr/bin/env bash
# A static i386 busybox for the multi-platform tests (a linux/386 stage needs a 386
# shell): Debian's busybox-static:i386, unpacked once under $SLIPWAY_STATE (not
# installed). Idempotent; prints the binary's path as its last line.
#
#   bash scripts/ensure-busybox-386.sh
#
# The first run adds the i386 architecture to dpkg and runs apt-get update.
set -euo pipefail
STATE=${SLIPWAY_STATE:-/tmp/slipway-dev}
OUT=$STATE/busybox-386/busybox
say() { printf 'ensure-busybox-386: %s\n' "$*" >&2; }
die() { printf 'ensure-busybox-386: error: %s\n' "$*" >&2; exit 1; }

if [ -x "$OUT" ]; then
  printf '%s\n' "$OUT"
  exit 0
fi
SUDO=()
[ "$(id -u)" = 0 ] || SUDO=(sudo)
if ! grep -qx i386 <<<"$(dpkg --print-foreign-architectures)"; then
  say "adding the i386 architecture to dpkg"
  "${SUDO[@]}" dpkg --add-architecture i386
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cd "$TMP"
# the package lists know i386 only after an update that follows --add-architecture
if ! apt-get download busybox-static:i386 >apt.log 2>&1; then
  say "apt-get update (for the i386 package lists)"
  # a mirror out of sync for one suite need not matter: the download says
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update >>apt.log 2>&1 ||
    say "apt-get update reported errors (in the log below if the download fails too)"
  apt-get download busybox-static:i386 >>apt.log 2>&1 || { cat apt.log >&2; die "apt-get download busybox-static:i386 failed"; }
fi
dpkg-deb -x busybox-static_*_i386.deb root
BIN=$(find root -path '*bin/busybox' -type f | head -n 1)
[ -n "$BIN" ] || die "no bin/busybox in busybox-static:i386"
mkdir -p "$(dirname "$OUT")"
cp "$BIN" "$OUT.tmp" && chmod 755 "$OUT.tmp" && mv "$OUT.tmp" "$OUT"
say "unpacked $(file -b "$OUT" 2>/dev/null || echo busybox) to $OUT"
printf '%s\n' "$OUT"
