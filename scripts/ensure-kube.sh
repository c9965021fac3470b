#!/usr/bin/env bash
# Builds the real Kubernetes API server, kubectl and etcd, and helm, from their Go
# modules, once, into $SLIPWAY_STATE/kube/bin; later runs reuse them (one stamp for
# the Kubernetes binaries and one for helm, each covering its version, the Go version
# and this script). Cold, on 2 cores, this is the slowest step of the test script.
#
#   bash scripts/ensure-kube.sh      # prints the bin directory on its last line
#
# KUBE_VERSION must be a release k8s-openapi's `v1_34` feature describes (Cargo.toml).
# etcd is built at the version that Kubernetes release itself requires. HELM_VERSION
# is a helm v3 release whose k8s.io/client-go (v0.X) matches KUBE_VERSION's minor;
# it is built in a module of its own (tests/it/helm.rs runs it).
set -euo pipefail
KUBE_VERSION=${KUBE_VERSION:-v1.34.4}
HELM_VERSION=${HELM_VERSION:-v3.19.5}
STATE=${SLIPWAY_STATE:-/tmp/slipway-dev}
HOME_DIR="$STATE/kube"
BIN="$HOME_DIR/bin"
export GOFLAGS=-buildvcs=false GOTOOLCHAIN=local

command -v go >/dev/null 2>&1 || {
  echo "ensure-kube: go not found; Go 1.24 or newer is needed to build kube-apiserver" >&2
  exit 1
}

# stamp VERSION: what a build of VERSION with this Go and this script is known by.
stamp() { (echo "$1"; go version; cat "${BASH_SOURCE[0]}") | sha256sum | cut -c1-16; }
kube_stamp=$(stamp "$KUBE_VERSION")
helm_stamp=$(stamp "$HELM_VERSION")
kube_fresh() {
  [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kubectl" ] && [ -x "$BIN/etcd" ] &&
    [ "$(cat "$HOME_DIR/.stamp" 2>/dev/null)" = "$kube_stamp" ]
}
helm_fresh() {
  [ -x "$BIN/helm" ] && [ "$(cat "$HOME_DIR/.stamp-helm" 2>/dev/null)" = "$helm_stamp" ]
}
if kube_fresh && helm_fresh; then
  echo "$BIN"
  exit 0
fi

build_kube() {
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

echo "$kube_stamp" > "$HOME_DIR/.stamp"
echo "ensure-kube: kube-apiserver, kubectl and etcd built in $(($(date +%s) - start)) s" >&2
}

# --- helm -------------------------------------------------------------------------
build_helm() {
start=$(date +%s)
mkdir -p "$HOME_DIR/helm" "$BIN"
cd "$HOME_DIR/helm"
helm_mod=$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
[ -f "$helm_mod" ] || { echo "ensure-kube: cannot download helm.sh/helm/v3@$HELM_VERSION" >&2; exit 1; }
helm_go=$(grep -m1 '^go ' "$helm_mod")
# helm's release build stamps in the Kubernetes version of its client-go: the default
# .Capabilities.KubeVersion of `helm template` and `helm lint`
client_go=$(awk '$1 == "k8s.io/client-go" { print $2 }' "$helm_mod")
client_minor=${client_go#v0.}
client_minor=${client_minor%%.*}
cat > go.mod <<EOF
module slipway.test/helm

$helm_go

require helm.sh/helm/v3 $HELM_VERSION
EOF
cat > tools.go <<'EOF'
//go:build tools

// Only here so that `go mod tidy` keeps what helm's main imports.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
EOF
echo "ensure-kube: resolving helm $HELM_VERSION" >&2
go mod tidy >&2
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
ldflags="$ldflags -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags="$ldflags -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$client_minor"
done
echo "ensure-kube: building helm $HELM_VERSION" >&2
go build -trimpath -ldflags "$ldflags" -o "$BIN/helm" helm.sh/helm/v3/cmd/helm >&2
echo "$helm_stamp" > "$HOME_DIR/.stamp-helm"
echo "ensure-kube: helm built in $(($(date +%s) - start)) s" >&2
}

kube_fresh || build_kube
helm_fresh || build_helm
echo "$BIN"
