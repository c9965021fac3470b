#!/usr/bin/env bash
# A current Docker Engine beside Debian's 20.10: builds `dockerd` of Docker 29 from
# its Go module (github.com/moby/moby/v2) once, into $SLIPWAY_STATE/dockerd-current/bin
# (a stamp covers the version, the Go version and this script), and starts or stops a
# private daemon of it whose every file lives under --dir. The tests run a set of
# build tests against it a second time (scripts/test.sh).
#
#   bash scripts/dockerd-current.sh build              # prints the bin dir last
#   bash scripts/dockerd-current.sh start --dir DIR    # prints unix://DIR/docker.sock last
#   bash scripts/dockerd-current.sh stop --dir DIR
#
# Environment: MOBY_VERSION (default v2.0.0-beta.24: Docker 29.8, API 1.56),
# SLIPWAY_STATE (default /tmp/slipway-dev). Needs Go at least as new as the go line
# of the module's go.mod (1.26.3 for the default). Cold, on 2 busy cores, the build
# took 10 minutes (6.5 min of CPU); afterwards `build` returns at once.
#
# The daemon: no bridge, no iptables, no userland proxy (so no docker-proxy; RUN
# steps get no network, as with scripts/ensure-docker.sh), its own data root, exec
# root, pidfile and socket, and its own containerd (Debian's, from the docker.io
# package, started by dockerd as for 20.10). It runs on Docker 29's defaults
# otherwise, the containerd image store included: that is what users run.
set -euo pipefail
MOBY_VERSION=${MOBY_VERSION:-v2.0.0-beta.24}
STATE=${SLIPWAY_STATE:-/tmp/slipway-dev}
HOME_DIR=$STATE/dockerd-current
BIN=$HOME_DIR/bin
MODULE=github.com/moby/moby/v2
export GOFLAGS=-buildvcs=false GOTOOLCHAIN=local

say() { printf 'dockerd-current: %s\n' "$*" >&2; }
die() { printf 'dockerd-current: error: %s\n' "$*" >&2; exit 1; }

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH="$PATH:/usr/local/go/bin"
fi

# --- build --------------------------------------------------------------------------
stamp() { (echo "$MOBY_VERSION"; go version; cat "${BASH_SOURCE[0]}") | sha256sum | cut -c1-16; }
fresh() { [ -x "$BIN/dockerd" ] && [ "$(cat "$HOME_DIR/.stamp" 2>/dev/null)" = "$(stamp)" ]; }

build() {
  command -v go >/dev/null 2>&1 || die "go not found; Go is needed to build dockerd"
  local start=$SECONDS src docker_version tags ldflags
  mkdir -p "$HOME_DIR" "$BIN"
  src=$(cd "$HOME_DIR" && go mod download -json "$MODULE@$MOBY_VERSION" |
    sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [ -f "${src:-/nonexistent}/go.mod" ] || die "cannot download $MODULE@$MOBY_VERSION"
  # The module is published without a Docker version; its releases/versions.yaml
  # names the last one (`docker: last:`), which the daemon then reports.
  docker_version=$(sed -n 's/^ *last: *"\(.*\)"/\1/p' "$src/releases/versions.yaml" | head -1)
  # As hack/make.sh builds the static binary, without cgo: Debian's runc and
  # containerd do the rest. (No replace/exclude in its go.mod: `go install` works.)
  tags="netgo osusergo static_build nri_no_wasm exclude_graphdriver_btrfs"
  ldflags="-s -w -X $MODULE/dockerversion.Version=${docker_version:-$MOBY_VERSION}"
  ldflags="$ldflags -X $MODULE/dockerversion.GitCommit=$MOBY_VERSION"
  say "building dockerd $MODULE@$MOBY_VERSION (Docker ${docker_version:-?}; about 10 minutes when cold)"
  GOBIN=$BIN CGO_ENABLED=0 go install -trimpath -tags "$tags" -ldflags "$ldflags" \
    "$MODULE/cmd/dockerd@$MOBY_VERSION" >&2 || die "go install of dockerd failed (output above)"
  stamp >"$HOME_DIR/.stamp"
  say "dockerd built in $((SECONDS - start)) s"
}

# --- start / stop ---------------------------------------------------------------------
DIR=''
parse_dir() {
  while [ $# -gt 0 ]; do
    case $1 in
      --dir) DIR=$2; shift 2 ;;
      *) die "unknown argument $1" ;;
    esac
  done
  [ -n "$DIR" ] || die "--dir is required"
  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd)
}

answers() { DOCKER_HOST="unix://$DIR/docker.sock" timeout 15 docker version >/dev/null 2>&1; }

start() {
  if [ -f "$DIR/dockerd.pid" ] && kill -0 "$(cat "$DIR/dockerd.pid")" 2>/dev/null && answers; then
    say "already running (pid $(cat "$DIR/dockerd.pid"))"
    echo "unix://$DIR/docker.sock"
    return 0
  fi
  fresh || build
  if ! command -v containerd >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1; then
    die "containerd and runc are needed (Debian's docker.io package brings them: scripts/ensure-docker.sh install)"
  fi
  mkdir -p "$DIR/data" "$DIR/exec"
  # {} as config: an /etc/docker/daemon.json written for the main daemon is not ours.
  # time-namespaces off: Docker 29 gives each container its own time namespace, which
  # Debian 12's runc 1.1 does not know ("namespace {"time" ""} does not exist").
  echo '{}' >"$DIR/daemon.json"
  setsid "$BIN/dockerd" --config-file "$DIR/daemon.json" \
    --data-root "$DIR/data" --exec-root "$DIR/exec" --pidfile "$DIR/dockerd.pid" \
    -H "unix://$DIR/docker.sock" \
    --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
    --userland-proxy=false --feature time-namespaces=false \
    >"$DIR/dockerd.log" 2>&1 </dev/null &
  local launcher=$! _
  for _ in $(seq 1 120); do
    if answers; then
      say "dockerd $(DOCKER_HOST="unix://$DIR/docker.sock" docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})') answers on unix://$DIR/docker.sock (pid $(cat "$DIR/dockerd.pid"))"
      echo "unix://$DIR/docker.sock"
      return 0
    fi
    kill -0 "$launcher" 2>/dev/null || break
    sleep 0.5
  done
  tail -n 20 "$DIR/dockerd.log" >&2 || true
  kill "$launcher" 2>/dev/null || true
  die "dockerd did not answer within 60s (log above, full log $DIR/dockerd.log)"
}

stop() {
  local pid _
  pid=$(cat "$DIR/dockerd.pid" 2>/dev/null) || { say "not running"; return 0; }
  kill "$pid" 2>/dev/null || true
  # a clean shutdown stops its containerd too
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
  say "stopped"
}

cmd=${1:-}
shift || true
case $cmd in
  build) fresh || build; echo "$BIN" ;;
  start) parse_dir "$@"; start ;;
  stop) parse_dir "$@"; stop ;;
  *) die "usage: $0 build | start --dir DIR | stop --dir DIR" ;;
esac
