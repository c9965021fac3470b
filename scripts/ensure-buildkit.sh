#!/usr/bin/env bash
# Builds BuildKit's `buildkitd` and `buildctl` from their Go module source, once, into
# $SLIPWAY_STATE/buildkit/bin; later runs reuse them (a stamp covers the version, the
# Go version and this script). Installs Debian's `runc` (the OCI worker's runtime)
# when it is missing. Cold, on 2 cores, the build takes a few minutes.
#
#   bash scripts/ensure-buildkit.sh      # prints the bin directory on its last line
#
# Environment: BUILDKIT_VERSION (default v0.34.2), SLIPWAY_STATE (default
# /tmp/slipway-dev). Needs Go at least as new as the go line of BuildKit's go.mod
# (on PATH, or /usr/local/go/bin/go).
#
# `go install github.com/moby/buildkit/cmd/buildkitd@V` is refused because BuildKit's
# go.mod has `exclude` directives, so the commands are built inside a writable copy of
# the module itself, with its own go.mod and go.sum (the versions BuildKit releases with).
set -euo pipefail
BUILDKIT_VERSION=${BUILDKIT_VERSION:-v0.34.2}
STATE=${SLIPWAY_STATE:-/tmp/slipway-dev}
HOME_DIR="$STATE/buildkit"
BIN="$HOME_DIR/bin"
MODULE=github.com/moby/buildkit
export GOFLAGS=-buildvcs=false GOTOOLCHAIN=local

say() { printf 'ensure-buildkit: %s\n' "$*" >&2; }
die() { printf 'ensure-buildkit: error: %s\n' "$*" >&2; exit 1; }

SUDO=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "not root and no sudo: cannot install runc"
  SUDO=(sudo -n)
fi

# --- runc -------------------------------------------------------------------------
# buildkitd's OCI worker runs every RUN step with runc; Debian's is recent enough.
ensure_runc() {
  command -v runc >/dev/null 2>&1 && return 0
  local apt=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300)
  local aptlog=$HOME_DIR/apt.log
  mkdir -p "$HOME_DIR"
  say "installing runc"
  # Only refresh the package lists when the install cannot find the package.
  if ! "${apt[@]}" install -y --no-install-recommends runc >"$aptlog" 2>&1 </dev/null; then
    { "${apt[@]}" update && "${apt[@]}" install -y --no-install-recommends runc; } \
      >>"$aptlog" 2>&1 </dev/null || {
      tail -n 30 "$aptlog" >&2 || true
      die "apt-get install runc failed (log above, full log $aptlog)"
    }
  fi
  command -v runc >/dev/null 2>&1 || die "runc not found after apt-get install runc"
}

# --- buildkitd and buildctl ---------------------------------------------------------
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH="$PATH:/usr/local/go/bin"
fi
command -v go >/dev/null 2>&1 ||
  die "go not found; Go is needed to build buildkitd (the go line of $MODULE's go.mod says which)"

stamp=$( (echo "$BUILDKIT_VERSION"; go version; cat "${BASH_SOURCE[0]}") | sha256sum | cut -c1-16)
fresh() {
  [ -x "$BIN/buildkitd" ] && [ -x "$BIN/buildctl" ] &&
    [ "$(cat "$HOME_DIR/.stamp" 2>/dev/null)" = "$stamp" ]
}

build() {
  local start=$SECONDS dir src ldflags
  mkdir -p "$HOME_DIR" "$BIN"
  say "downloading $MODULE@$BUILDKIT_VERSION"
  dir=$(cd "$HOME_DIR" && go mod download -json "$MODULE@$BUILDKIT_VERSION" |
    sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [ -f "${dir:-/nonexistent}/go.mod" ] || die "cannot download $MODULE@$BUILDKIT_VERSION"
  # The module cache is read-only and go build wants to be able to touch go.sum.
  src=$HOME_DIR/src
  rm -rf "$src"
  cp -r "$dir" "$src"
  chmod -R u+w "$src"
  # As BuildKit's own Dockerfile builds them: static, no cgo, the version stamped in.
  ldflags="-s -w -X $MODULE/version.Version=$BUILDKIT_VERSION -X $MODULE/version.Package=$MODULE"
  say "building buildkitd and buildctl $BUILDKIT_VERSION (a few minutes when cold)"
  (
    cd "$src"
    CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" \
      -tags "osusergo netgo static_build" -o "$BIN/" ./cmd/buildkitd ./cmd/buildctl
  ) >&2 || die "go build of buildkitd and buildctl failed (output above)"
  rm -rf "$src"
  echo "$stamp" >"$HOME_DIR/.stamp"
  say "buildkitd and buildctl $BUILDKIT_VERSION built in $((SECONDS - start)) s"
}

ensure_runc
fresh || build
echo "$BIN"
