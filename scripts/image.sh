#!/usr/bin/env bash
# Builds slipway's container image with the local Docker Engine: a statically linked
# release binary on `FROM scratch` (scripts/image/Dockerfile). The same image runs
# `slipway controller` in Kubernetes and `slipway executor` on Mesos agents
# (`--executor-image`).
#
#   bash scripts/image.sh [--tag slipway:dev]    # prints the image reference last
#
# The binary is built with
#   RUSTFLAGS='-C target-feature=+crt-static' cargo build --release \
#     --target x86_64-unknown-linux-gnu --target-dir $SLIPWAY_STATE/image-target
# in a target dir of its own, so it never disturbs the normal builds; cargo skips the
# build when nothing changed, and an unchanged binary gives the same image again.
# The script refuses a binary that is not static (it would not run on scratch).
#
# Environment:
#   SLIPWAY_STATE          state dir (default /tmp/slipway-dev)
#   SLIPWAY_IMAGE_SOURCE   org.opencontainers.image.source label (default: the git
#                          remote `origin`, if there is one)
#   DOCKER_HOST            the daemon to build on (unset: the local socket)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export PATH="${CARGO_HOME:-${HOME:-/root}/.cargo}/bin:$PATH"
STATE=${SLIPWAY_STATE:-/tmp/slipway-dev}
TARGET=x86_64-unknown-linux-gnu
TARGET_DIR=$STATE/image-target
CONTEXT=$STATE/image-context
TAG=slipway:dev

die() { printf 'image.sh: error: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --tag | -t) [ $# -ge 2 ] || die "$1 needs a value"; TAG=$2; shift 2 ;;
    --tag=*) TAG=${1#--tag=}; shift ;;
    -h | --help) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (usage: scripts/image.sh [--tag NAME:TAG])" ;;
  esac
done

command -v cargo >/dev/null 2>&1 || die "cargo not found; install Rust with rustup"
command -v docker >/dev/null 2>&1 || die "docker not found; run scripts/ensure-docker.sh"
[ "$(uname -m)" = x86_64 ] || die "only x86_64 hosts are supported (target $TARGET)"

echo "image.sh: building the static release binary (target dir $TARGET_DIR)" >&2
start=$(date +%s)
# --target makes RUSTFLAGS apply to the binary only, not to build scripts and proc macros
RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static" \
  cargo build --release --locked --bin slipway --target "$TARGET" --target-dir "$TARGET_DIR" >&2 ||
  die "the static release build failed (output above)"
echo "image.sh: cargo took $(($(date +%s) - start)) s" >&2
BIN=$TARGET_DIR/$TARGET/release/slipway

# A static binary (static-pie): no program interpreter, no shared libraries to load.
# (`ldd` says "statically linked" and succeeds for those, so look at the ELF itself.)
if command -v readelf >/dev/null 2>&1; then
  if grep -q 'program interpreter' <<<"$(readelf -lW "$BIN")" || grep -q '(NEEDED)' <<<"$(readelf -dW "$BIN")"; then
    readelf -dW "$BIN" | grep '(NEEDED)' >&2 || true
    die "$BIN is dynamically linked; it would not start on scratch"
  fi
elif grep -q '=>' <<<"$(ldd "$BIN" 2>/dev/null)"; then
  ldd "$BIN" >&2 || true
  die "$BIN is dynamically linked; it would not start on scratch"
fi
echo "image.sh: $BIN is static ($(ldd "$BIN" 2>&1 | tr -d '\t' | head -n 1))" >&2

# The context: rootfs/ is exactly the image's file system, /slipway and a /tmp of mode
# 1777 (COPY keeps the modes of what it copies, but not of the directory named as its
# source, so /tmp is an entry inside rootfs/). An unchanged binary is not copied
# again, so the builder's cache gives the same image ID.
mkdir -p "$CONTEXT/rootfs/tmp"
chmod 1777 "$CONTEXT/rootfs/tmp"
chmod 0755 "$CONTEXT/rootfs"
if ! cmp -s "$BIN" "$CONTEXT/rootfs/slipway"; then
  cp -p "$BIN" "$CONTEXT/rootfs/slipway.new"
  mv -f "$CONTEXT/rootfs/slipway.new" "$CONTEXT/rootfs/slipway"
fi
cp scripts/image/Dockerfile "$CONTEXT/Dockerfile"
rm -rf "$CONTEXT/slipway" "$CONTEXT/tmp" # an earlier layout

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ "$REVISION" != unknown ] && [ -n "$(git status --porcelain -- src Cargo.toml Cargo.lock build.rs proto 2>/dev/null)" ]; then
  REVISION="$REVISION-dirty"
fi
SOURCE=${SLIPWAY_IMAGE_SOURCE:-$(git remote get-url origin 2>/dev/null || true)}

echo "image.sh: docker build -t $TAG" >&2
DOCKER_BUILDKIT=0 docker build -q -t "$TAG" \
  --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" --build-arg "SOURCE=$SOURCE" \
  "$CONTEXT" >&2 || die "docker build failed"
size=$(docker image inspect --format '{{.Size}}' "$TAG")
echo "image.sh: $TAG is $((size / 1024 / 1024)) MiB ($size bytes), $(docker image inspect --format '{{.Id}}' "$TAG")" >&2
echo "$TAG"
