#!/usr/bin/env bash
# slipway's benchmarks against the real Docker daemon and a throw-away registry.
#
#   bash scripts/bench.sh   # build_vs_docker (BENCH_RUNS=5, BENCH_ENGINES=classic,buildkit-daemon,buildkitd), context, offers, Mesos file->TASK_RUNNING,
#                           # kube_sync (10,000 up-to-date DockerBuilds: controller start -> all reconciled)
#                           # watch_sync (10,000 files: first sync of `slipway watch --once`)
#
# Starts what it needs like scripts/test.sh and stops what it started.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
export PATH="${CARGO_HOME:-${HOME:-/root}/.cargo}/bin:$PATH"
export SLIPWAY_STATE=${SLIPWAY_STATE:-/tmp/slipway-dev}

STOP_DOCKERD=0
REGDIR=$(mktemp -d "${TMPDIR:-/tmp}/slipway-bench-registry.XXXXXX")
BKDIR=$(mktemp -d "${TMPDIR:-/tmp}/slipway-bench-buildkitd.XXXXXX")
cleanup() {
  bash scripts/registry.sh stop --dir "$REGDIR" >/dev/null 2>&1 || true
  bash scripts/buildkitd.sh stop --dir "$BKDIR" >/dev/null 2>&1 || true
  rm -rf "$REGDIR" "$BKDIR"
  [ "$STOP_DOCKERD" = 1 ] && bash scripts/ensure-docker.sh stop || true
}
trap cleanup EXIT
bash scripts/ensure-docker.sh status >/dev/null 2>&1 || STOP_DOCKERD=1
bash scripts/ensure-docker.sh </dev/null || exit 1
SLIPWAY_TEST_REGISTRY=$(bash scripts/registry.sh start --dir "$REGDIR" --port 0 | tail -n 1) || exit 1
export SLIPWAY_TEST_REGISTRY
# build_vs_docker compares the buildkitd engine with buildctl on this one
SLIPWAY_BUILDKIT_BIN=$(bash scripts/ensure-buildkit.sh </dev/null | tail -n 1) || exit 1
SLIPWAY_TEST_BUILDKIT_ADDR=$(bash scripts/buildkitd.sh start --dir "$BKDIR" </dev/null | tail -n 1) || exit 1
export SLIPWAY_BUILDKIT_BIN SLIPWAY_TEST_BUILDKIT_ADDR SLIPWAY_TEST_BUILDKIT_DIR=$BKDIR
cargo build --release || exit 1
cargo bench --bench build_vs_docker && cargo bench --bench context -- --noplot &&
  cargo bench --bench offers -- --noplot && cargo bench --bench watch_sync || exit 1

# file landing -> TASK_RUNNING on a real Mesos master
MESOS=$(bash scripts/ensure-mesos.sh </dev/null | tail -n 1) || exit 1
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sh "$MESOS" start --port "$PORT" --agents 1 >/dev/null || exit 1
python3 scripts/bench-mesos-running.py "$PORT" "$SLIPWAY_TEST_REGISTRY" target/release/slipway
rc=$?
sh "$MESOS" stop --port "$PORT" >/dev/null
[ "$rc" = 0 ] || exit $rc

# a real API server (started and stopped by the bench itself through scripts/kube.sh)
SLIPWAY_KUBE_BIN=$(bash scripts/ensure-kube.sh </dev/null | tail -n 1) || exit 1
export SLIPWAY_KUBE_BIN
cargo bench --bench kube_sync
