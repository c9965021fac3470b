#!/usr/bin/env bash
# Builds SeaweedFS's `weed` (an S3-compatible object store, for the Mesos `--staging s3`
# tests) from its Go module, once, into $SLIPWAY_STATE/seaweedfs/bin; later runs reuse
# it (a stamp covers the version, the Go version and this script).
#
#   bash scripts/ensure-seaweedfs.sh      # prints the path of `weed` on its last line
#
# seaweedfs has no tagged module versions the proxy resolves as semver, so it is pinned
# to a pseudo-version. `go install pkg@version` refuses modules whose go.mod carries
# replace directives; then it is built from the module cache copy instead.
set -euo pipefail
WEED_VERSION=${WEED_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}
STATE=${SLIPWAY_STATE:-/tmp/slipway-dev}
HOME_DIR="$STATE/seaweedfs"
BIN="$HOME_DIR/bin"
export GOFLAGS=-buildvcs=false GOTOOLCHAIN=local

command -v go >/dev/null 2>&1 || {
  echo "ensure-seaweedfs: go not found; it is needed to build weed" >&2
  exit 1
}
stamp=$( (echo "$WEED_VERSION"; go version; cat "${BASH_SOURCE[0]}") | sha256sum | cut -c1-16)
if [ -x "$BIN/weed" ] && [ "$(cat "$HOME_DIR/.stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "$BIN/weed"
  exit 0
fi

start=$(date +%s)
mkdir -p "$BIN"
echo "ensure-seaweedfs: building weed $WEED_VERSION (minutes when cold)" >&2
if ! GOBIN="$BIN" go install -trimpath -ldflags "-s -w" \
  "github.com/seaweedfs/seaweedfs/weed@$WEED_VERSION" >&2; then
  echo "ensure-seaweedfs: go install refused; building from the module cache copy" >&2
  dir=$(go mod download -json "github.com/seaweedfs/seaweedfs@$WEED_VERSION" |
    sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [ -d "$dir" ] || { echo "ensure-seaweedfs: cannot download seaweedfs@$WEED_VERSION" >&2; exit 1; }
  # the module cache is read-only: build in a writable copy
  rm -rf "$HOME_DIR/src"
  cp -r "$dir" "$HOME_DIR/src"
  chmod -R u+w "$HOME_DIR/src"
  (cd "$HOME_DIR/src" && go build -trimpath -ldflags "-s -w" -o "$BIN/weed" ./weed >&2)
  rm -rf "$HOME_DIR/src"
fi
echo "$stamp" > "$HOME_DIR/.stamp"
echo "ensure-seaweedfs: weed built in $(($(date +%s) - start)) s" >&2
echo "$BIN/weed"
