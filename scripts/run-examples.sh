#!/usr/bin/env bash
# slipway's main job on this machine (README): watch examples/, build every
# DockerBuild in it with the local Docker daemon and push to 127.0.0.1:5000.
#
#   bash scripts/run-examples.sh [extra `slipway watch` args]
#
# It installs/starts Docker Engine if needed, starts a registry on
# 127.0.0.1:5000 unless one already answers there, puts the static busybox into
# the base example's context, then runs `cargo run --release -- watch examples/`.
# dockerd and the registry keep running after slipway exits; stop them with
#   bash scripts/registry.sh stop --dir "${SLIPWAY_STATE:-/tmp/slipway-dev}/registry"
#   bash scripts/ensure-docker.sh stop
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
export PATH="${CARGO_HOME:-${HOME:-/root}/.cargo}/bin:$PATH"
export SLIPWAY_STATE=${SLIPWAY_STATE:-/tmp/slipway-dev}
REGISTRY_PORT=5000

bash scripts/ensure-docker.sh

if v2_ok "$REGISTRY_PORT"; then
  echo "run-examples: a registry already answers on 127.0.0.1:$REGISTRY_PORT"
else
  bash scripts/registry.sh start --port "$REGISTRY_PORT" --dir "$SLIPWAY_STATE/registry" >/dev/null
fi

BUSYBOX=$(static_busybox) || { echo "run-examples: static busybox not found (package busybox-static)" >&2; exit 1; }
DEST=examples/base/context/busybox
if ! cmp -s "$BUSYBOX" "$DEST"; then
  install -m 0755 "$BUSYBOX" "$DEST"
  echo "run-examples: copied $BUSYBOX to $DEST"
fi

command -v cargo >/dev/null 2>&1 || { echo "run-examples: cargo not found; install Rust with rustup" >&2; exit 1; }
exec cargo run --release -- watch examples/ "$@"
