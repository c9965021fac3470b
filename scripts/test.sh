#!/usr/bin/env bash
# slipway's test command (README; CI runs it through .ci/run).
#
#   bash scripts/test.sh [extra args for `cargo test`]
#
# 1. installs git (with `git daemon`) and Docker Engine if needed
#    (scripts/ensure-docker.sh starts the latter)
# 2. starts a throw-away registry on a free 127.0.0.1 port (scripts/registry.sh)
# 3. builds the real Mesos master once (scripts/ensure-mesos.sh); tests start and
#    stop their own Mesos clusters on free 127.0.0.1 ports with it
# 4. builds kube-apiserver, etcd, kubectl and helm once (scripts/ensure-kube.sh, minutes
#    when cold, cached under $SLIPWAY_STATE) and starts ONE shared Kubernetes API
#    server on 127.0.0.1 (scripts/kube.sh: RBAC on, the CRD applied, the controller's
#    service account bound to charts/slipway/files/rbac-rules.yaml); tests that must
#    stop or restart an API server start private ones with the same script
# 5. builds buildkitd and buildctl once (scripts/ensure-buildkit.sh, minutes when cold,
#    cached under $SLIPWAY_STATE; installs Debian's runc) and starts ONE buildkitd on
#    127.0.0.1 with mutual TLS (scripts/buildkitd.sh)
# 6. builds the controller image, slipway-test/controller:ci (scripts/image.sh: a
#    static release binary FROM scratch, in a target dir of its own under
#    $SLIPWAY_STATE; minutes when cold); tests run it as the controller and as the
#    Mesos executor image
# 7. builds dockerd of Docker 29 once (scripts/dockerd-current.sh, minutes when cold,
#    cached under $SLIPWAY_STATE) and starts a second, private daemon of it
# 8. cargo fmt --check, `cargo deny check licenses bans sources` (deny.toml; built once by
#    scripts/ensure-cargo-deny.sh, beside the steps above), cargo clippy -D warnings,
#    cargo test --all-targets (the integration tests are one binary, tests/it), then
#    the build tests (its local_build, buildkit, buildkit_inline_cache and pull_policy
#    modules) again on the Docker 29 daemon
# Everything this script started is stopped on exit; a dockerd that was already
# running is left alone (set SLIPWAY_KEEP_DOCKERD=1 to keep one we started, too).
#
# The tests find the real servers through:
#   SLIPWAY_TEST_REGISTRY  127.0.0.1:PORT of the registry (plain HTTP)
#   SLIPWAY_TEST_BUSYBOX   path of a static busybox to COPY into FROM-scratch images
#   SLIPWAY_TEST_BUSYBOX_386  the same for linux/386 (scripts/ensure-busybox-386.sh)
#   SLIPWAY_TEST_MESOS     path of mesos.sh (start/stop a Mesos master + agents)
#   SLIPWAY_TEST_WEED      path of SeaweedFS's weed (scripts/ensure-seaweedfs.sh), an S3 server
#   SLIPWAY_TEST_KUBE      path of scripts/kube.sh (start/stop/grant-own ... --dir D)
#   SLIPWAY_TEST_KUBE_DIR  the shared cluster's dir: D/admin.kubeconfig (system:masters),
#                          D/controller.kubeconfig (system:serviceaccount:slipway-system:slipway)
#   SLIPWAY_KUBE_BIN       dir with kube-apiserver, etcd and kubectl
#   SLIPWAY_TEST_BUILDKIT_ADDR  tcp://127.0.0.1:PORT of the shared buildkitd (mutual TLS)
#   SLIPWAY_TEST_BUILDKIT_DIR   its dir: D/ca.pem, D/cert.pem, D/key.pem for buildctl's
#                          --tlscacert/--tlscert/--tlskey; D/buildkitd.sock (no TLS)
#   SLIPWAY_BUILDKIT_BIN   dir with buildkitd and buildctl (scripts/buildkitd.sh uses it)
#   SLIPWAY_TEST_IMAGE     the controller image scripts/image.sh built (a local tag)
#   SLIPWAY_TEST_CHROMIUM  Debian's chromium (scripts/ensure-chromium.sh), run headless
#                          to screenshot `slipway graph --svg` (tests/it/graph.rs)
#   DOCKER_HOST            left as is; unset means unix:///var/run/docker.sock
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
export PATH="${CARGO_HOME:-${HOME:-/root}/.cargo}/bin:$PATH"
export SLIPWAY_STATE=${SLIPWAY_STATE:-/tmp/slipway-dev}

section() { printf '\n==== %s ====\n' "$*"; }
die() { printf 'test.sh: error: %s\n' "$*" >&2; exit 1; }

REGDIR=""
KUBEDIR=""
BKDIR=""
NEWDOCKER=""
STOP_DOCKERD=0
CHILD=""
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$CHILD" ] && kill -0 "$CHILD" 2>/dev/null; then
    kill -TERM -- "-$CHILD" 2>/dev/null || true
    wait "$CHILD" 2>/dev/null || true
  fi
  if [ -n "$REGDIR" ] || [ -n "$KUBEDIR" ] || [ -n "$BKDIR" ] || [ -n "$NEWDOCKER" ]; then
    section "cleanup"
  fi
  if [ -n "$NEWDOCKER" ]; then
    bash scripts/dockerd-current.sh stop --dir "$NEWDOCKER" || true
    rm -rf "$NEWDOCKER"
  fi
  if [ -n "$BKDIR" ]; then
    bash scripts/buildkitd.sh stop --dir "$BKDIR" || true
    rm -rf "$BKDIR"
  fi
  if [ -n "$KUBEDIR" ]; then
    local d
    # private clusters (tests/it/common/kube.rs) whose test was killed before its Drop
    for d in "$KUBEDIR"/private/*/; do
      if [ -d "$d" ]; then bash scripts/kube.sh stop --dir "$d" || true; fi
    done
    bash scripts/kube.sh stop --dir "$KUBEDIR" || true
    rm -rf "$KUBEDIR"
  fi
  if [ -n "$REGDIR" ]; then
    bash scripts/registry.sh stop --dir "$REGDIR" || true
    rm -rf "$REGDIR"
  fi
  if [ "$STOP_DOCKERD" = 1 ]; then
    bash scripts/ensure-docker.sh stop || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

section "Rust toolchain"
command -v cargo >/dev/null 2>&1 ||
  die "cargo not found (looked on PATH and in ~/.cargo/bin); install Rust with rustup"
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  if command -v rustup >/dev/null 2>&1; then
    rustup component add rustfmt clippy </dev/null || echo "rustup component add failed; continuing"
  fi
fi
cargo --version
cargo fmt --version || die "rustfmt is missing"
cargo clippy --version || die "clippy is missing"
# cargo-deny builds (once, minutes when cold) beside the Go builds below
DENY_LOG=$(mktemp "${TMPDIR:-/tmp}/slipway-test-deny.XXXXXX")
bash scripts/ensure-cargo-deny.sh </dev/null >"$DENY_LOG" 2>&1 &
DENY_PID=$!

section "git"
# Git sources and the git trigger tests (a real `git daemon`, tests/it/common/git.rs);
# Debian's git package carries the daemon.
if ! command -v git >/dev/null 2>&1 || [ ! -x "$(git --exec-path)/git-daemon" ]; then
  SUDO=()
  [ "$(id -u)" = 0 ] || SUDO=(sudo -n)
  { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update &&
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
      install -y --no-install-recommends git; } </dev/null || die "apt-get install git failed"
fi
git --version || die "git is missing"

section "Docker Engine"
if ! bash scripts/ensure-docker.sh status >/dev/null 2>&1 && [ "${SLIPWAY_KEEP_DOCKERD:-0}" != 1 ]; then
  STOP_DOCKERD=1 # it does not answer yet: whatever ensure-docker starts, we stop
fi
bash scripts/ensure-docker.sh </dev/null || die "Docker Engine is not available"
docker version --format 'client {{.Client.Version}}, server {{.Server.Version}} (API {{.Server.APIVersion}})' ||
  die "docker does not answer"

section "registry"
REGDIR=$(mktemp -d "${TMPDIR:-/tmp}/slipway-test-registry.XXXXXX")
ADDR=$(bash scripts/registry.sh start --dir "$REGDIR" --port 0 | tail -n 1) ||
  die "the registry did not start"
export SLIPWAY_TEST_REGISTRY=$ADDR
SLIPWAY_TEST_BUSYBOX=$(static_busybox) || die "static busybox not found (package busybox-static)"
export SLIPWAY_TEST_BUSYBOX
echo "SLIPWAY_TEST_REGISTRY=$SLIPWAY_TEST_REGISTRY"
echo "SLIPWAY_TEST_BUSYBOX=$SLIPWAY_TEST_BUSYBOX"

section "Mesos"
SLIPWAY_TEST_MESOS=$(bash scripts/ensure-mesos.sh </dev/null | tail -n 1) ||
  die "the Mesos master could not be built (scripts/ensure-mesos.sh)"
export SLIPWAY_TEST_MESOS MESOS_SHIM_HOME=${MESOS_SHIM_HOME:-$SLIPWAY_STATE/mesos-shim}
echo "SLIPWAY_TEST_MESOS=$SLIPWAY_TEST_MESOS"
# SeaweedFS's weed, the S3 server of the `--staging s3` test (tests/it/mesos_staging.rs)
SLIPWAY_TEST_WEED=$(bash scripts/ensure-seaweedfs.sh </dev/null | tail -n 1) ||
  die "weed could not be built (scripts/ensure-seaweedfs.sh)"
export SLIPWAY_TEST_WEED
echo "SLIPWAY_TEST_WEED=$SLIPWAY_TEST_WEED"

section "Kubernetes"
command -v go >/dev/null 2>&1 || [ ! -x /usr/local/go/bin/go ] || export PATH="$PATH:/usr/local/go/bin"
SLIPWAY_KUBE_BIN=$(bash scripts/ensure-kube.sh </dev/null | tail -n 1) ||
  die "kube-apiserver, etcd and kubectl could not be built (scripts/ensure-kube.sh)"
export SLIPWAY_KUBE_BIN
KUBEDIR=$(mktemp -d "${TMPDIR:-/tmp}/slipway-test-kube.XXXXXX")
bash scripts/kube.sh start --dir "$KUBEDIR" </dev/null >/dev/null ||
  die "the Kubernetes API server did not start (scripts/kube.sh, output above)"
export SLIPWAY_TEST_KUBE=$ROOT/scripts/kube.sh SLIPWAY_TEST_KUBE_DIR=$KUBEDIR
echo "SLIPWAY_KUBE_BIN=$SLIPWAY_KUBE_BIN"
echo "SLIPWAY_TEST_KUBE=$SLIPWAY_TEST_KUBE"
echo "SLIPWAY_TEST_KUBE_DIR=$SLIPWAY_TEST_KUBE_DIR"

section "Chromium"
SLIPWAY_TEST_CHROMIUM=$(bash scripts/ensure-chromium.sh </dev/null | tail -n 1) ||
  die "chromium could not be installed (scripts/ensure-chromium.sh, output above)"
export SLIPWAY_TEST_CHROMIUM
echo "SLIPWAY_TEST_CHROMIUM=$SLIPWAY_TEST_CHROMIUM"

section "BuildKit"
SLIPWAY_BUILDKIT_BIN=$(bash scripts/ensure-buildkit.sh </dev/null | tail -n 1) ||
  die "buildkitd and buildctl could not be built (scripts/ensure-buildkit.sh)"
export SLIPWAY_BUILDKIT_BIN
BKDIR=$(mktemp -d "${TMPDIR:-/tmp}/slipway-test-buildkit.XXXXXX")
SLIPWAY_TEST_BUILDKIT_ADDR=$(bash scripts/buildkitd.sh start --dir "$BKDIR" </dev/null | tail -n 1) ||
  die "buildkitd did not start (scripts/buildkitd.sh, output above)"
export SLIPWAY_TEST_BUILDKIT_ADDR SLIPWAY_TEST_BUILDKIT_DIR=$BKDIR
echo "SLIPWAY_BUILDKIT_BIN=$SLIPWAY_BUILDKIT_BIN"
echo "SLIPWAY_TEST_BUILDKIT_ADDR=$SLIPWAY_TEST_BUILDKIT_ADDR"
echo "SLIPWAY_TEST_BUILDKIT_DIR=$SLIPWAY_TEST_BUILDKIT_DIR"
# last of the package steps: it adds the i386 architecture to dpkg
SLIPWAY_TEST_BUSYBOX_386=$(bash scripts/ensure-busybox-386.sh </dev/null | tail -n 1) ||
  die "no i386 busybox for the linux/386 tests (scripts/ensure-busybox-386.sh, output above)"
export SLIPWAY_TEST_BUSYBOX_386
echo "SLIPWAY_TEST_BUSYBOX_386=$SLIPWAY_TEST_BUSYBOX_386"

section "controller image"
SLIPWAY_TEST_IMAGE=$(bash scripts/image.sh --tag slipway-test/controller:ci </dev/null | tail -n 1) ||
  die "the controller image could not be built (scripts/image.sh, output above)"
export SLIPWAY_TEST_IMAGE
echo "SLIPWAY_TEST_IMAGE=$SLIPWAY_TEST_IMAGE"

section "Docker Engine, current"
NEWDOCKER=$(mktemp -d "${TMPDIR:-/tmp}/slipway-test-dockerd.XXXXXX")
NEW_DOCKER_HOST=$(bash scripts/dockerd-current.sh start --dir "$NEWDOCKER" </dev/null | tail -n 1) ||
  die "the Docker 29 daemon could not be built or started (scripts/dockerd-current.sh, output above)"
echo "second daemon: $NEW_DOCKER_HOST"

# daemon_name [DOCKER_HOST]: "Docker 29.8.0, API 1.56" for the step names
daemon_name() {
  DOCKER_HOST=${1:-${DOCKER_HOST:-}} docker version \
    --format 'Docker {{.Server.Version}}, API {{.Server.APIVersion}}' 2>/dev/null || echo "Docker ?"
}

declare -a RESULTS=()
FAILED=0
step() {
  local name=$1 rc
  shift
  section "$name"
  echo "+ $*"
  # In the background, in its own process group, so that a signal to this script
  # runs the cleanup at once and can take cargo and the test binaries down with it.
  setsid "$@" </dev/null &
  CHILD=$!
  wait "$CHILD"
  rc=$?
  CHILD=""
  if [ "$rc" = 0 ]; then
    RESULTS+=("ok      $name")
  else
    RESULTS+=("FAILED  $name (exit $rc)")
    FAILED=1
  fi
}

step "cargo fmt" cargo fmt --all -- --check
if wait "$DENY_PID"; then
  step "cargo deny" "$(tail -n 1 "$DENY_LOG")" --log-level error check licenses bans sources
else
  cat "$DENY_LOG"
  RESULTS+=("FAILED  cargo deny (scripts/ensure-cargo-deny.sh could not build it)")
  FAILED=1
fi
rm -f "$DENY_LOG"
step "cargo clippy" cargo clippy --all-targets -- -D warnings
step "cargo test ($(daemon_name))" cargo test --all-targets "$@"
# The build tests once more on the current Engine (containerd image store, newer API):
# the modules of tests/it, as libtest filters (a test runs if its name contains any).
# "$@" comes first so cargo options reach cargo and a `-- --nocapture` reaches libtest
# (it takes the filters after its own `--` as well); a test-name filter in "$@" adds
# to the modules' tests here, it does not narrow them.
step "build tests again ($(daemon_name "$NEW_DOCKER_HOST"))" \
  env DOCKER_HOST="$NEW_DOCKER_HOST" \
  cargo test --test it "$@" -- local_build:: buildkit:: buildkit_inline_cache:: pull_policy::

section "summary"
printf '%s\n' "${RESULTS[@]}"
exit "$FAILED"
