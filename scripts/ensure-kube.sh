#!/usr/bin/env bash
# Builds the real Kubernetes API server, kubectl and etcd from their Go modules, once,
# into $SLIPWAY_STATE/kube/bin; later runs reuse them (the stamp covers the versions
# and this script). Cold, on 2 cores, this is the slowest step of the test script.
#
#   bash scripts/ensure-kube.sh      # prints the bin directory on its last line
#
# KUBE_VERSION must be a release k8s-openapi's `v1_34` feature describes (Cargo.toml).
# etcd is built at the version that Kubernetes release itself requires.
set -euo pipefail
KUBE_VERSION=${KUBE_VERSION:-v1.34.4}
STATE=${SLIPWAY_STATE:-/tmp/slipway-dev}
HOME_DIR="$STATE/kube"
BIN="$HOME_DIR/bin"
export GOFLAGS=-buildvcs=false GOTOOLCHAIN=local

command -v go >/dev/null 2>&1 || {
  echo "ensure-kube: go not found; Go 1.24 or newer is needed to build kube-apiserver" >&2
  exit 1
}

stamp=$( (echo "$KUBE_VERSION"; go version; cat "${BASH_SOURCE[0]}") | sha256sum | cut -c1-16)
if [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kubectl" ] && [ -x "$BIN/etcd" ] &&
  [ "$(cat "$HOME_DIR/.stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "$BIN"
  exit 0
fi

start=$(date +%s)
mkdir -p "$HOME_DIR/kubernetes" "$HOME_DIR/etcd" "$BIN"

# --- kube-apiserver and kubectl -------------------------------------------------
# k8s.io/kubernetes points its staging modules (k8s.io/api, …) at ./staging, which a
# module of our own cannot see: pin each to its published v0.X.Y instead.
cd "$HOME_DIR/kubernetes"
staging=v0.${KUBE_VERSION#v1.}
upstream_mod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
[ -f "$upstream_mod" ] || { echo "ensure-kube: cannot download k8s.io/kubernetes@$KUBE_VERSION" >&2; exit 1; }
go_line=$(grep -m1 '^go ' "$upstream_mod")
{
  echo "module slipway.test/kube"
  echo
  echo "$go_line"
  echo
  echo "require k8s.io/kubernetes $KUBE_VERSION"
  echo
  echo "replace ("
  grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$upstream_mod" |
    awk -v v="$staging" '{ print "\t" $1 " => " $1 " " v }'
  echo ")"
} > go.mod
cat > tools.go <<'EOF'
//go:build tools

// Only here so that `go mod tidy` keeps what the two commands import.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
EOF
echo "ensure-kube: resolving k8s.io/kubernetes $KUBE_VERSION" >&2
go mod tidy >&2
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  minor=${KUBE_VERSION#v1.}
  minor=${minor%%.*}
  ldflags="$ldflags -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags="$ldflags -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
echo "ensure-kube: building kube-apiserver and kubectl (several minutes when cold)" >&2
go build -trimpath -ldflags "$ldflags" -o "$BIN/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl >&2

# --- etcd -------------------------------------------------------------------------
etcd_version=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3 2>/dev/null || true)
[ -n "$etcd_version" ] || etcd_version=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/client/v3)
cd "$HOME_DIR/etcd"
cat > go.mod <<EOF
module slipway.test/etcd

$go_line

require go.etcd.io/etcd/server/v3 $etcd_version
EOF
cat > main.go <<'EOF'
// etcd's own main, built from its Go module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
echo "ensure-kube: building etcd $etcd_version" >&2
go mod tidy >&2
go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" . >&2

echo "$stamp" > "$HOME_DIR/.stamp"
echo "ensure-kube: built in $(($(date +%s) - start)) s" >&2
echo "$BIN"
