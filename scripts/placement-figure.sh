#!/usr/bin/env bash
# The figure for cache-aware placement (issue 14.3): how long a leaf build takes on a
# daemon that holds its base image (where placement puts it) and on one that does
# not (which pulls the base from the registry first), side by side, with the ratio.
# Both are private Docker 29 daemons (scripts/dockerd-current.sh); a "cold" daemon is
# fresh for each round, so nothing of the base is left in it. The base is busybox
# plus SIZE_MIB of random data, pushed to the test registry.
#
#   SLIPWAY_TEST_REGISTRY=127.0.0.1:5055 bash scripts/placement-figure.sh [ROUNDS] [SIZE_MIB]
#
# Needs a built slipway (target/debug/slipway, or $SLIPWAY) and /bin/busybox.
set -euo pipefail
ROUNDS=${1:-5}
SIZE_MIB=${2:-8}
REG=${SLIPWAY_TEST_REGISTRY:?set SLIPWAY_TEST_REGISTRY to the test registry}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SLIPWAY=${SLIPWAY:-$ROOT/target/debug/slipway}
D=$(mktemp -d /tmp/placement-figure.XXXXXX)
RUN=$(date +%s)-$$
daemons=()
cleanup() {
  for d in "${daemons[@]}"; do bash "$ROOT/scripts/dockerd-current.sh" stop --dir "$d" >/dev/null 2>&1 || true; done
  rm -rf "$D"
}
trap cleanup EXIT
# (called in $(...): the caller adds the dir to daemons, for the cleanup)
start() { bash "$ROOT/scripts/dockerd-current.sh" start --dir "$1" 2>/dev/null | tail -1; }
now() { date +%s.%N; }

# the base, built on the warm daemon (which so holds it) and pushed
daemons+=("$D/warm")
warm=$(start "$D/warm")
mkdir -p "$D/base"
cp /bin/busybox "$D/base/busybox"
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom >"$D/base/blob"
printf 'FROM scratch\nCOPY busybox /bin/busybox\nCOPY blob /blob\n' >"$D/base/Dockerfile"
"$SLIPWAY" build "$D/base/Dockerfile" --registry "$REG" --repository slipway-test/place-figure-base \
  -t "$RUN" --docker-host "$warm" --log-level warn >/dev/null 2>"$D/last.log" ||
  { cat "$D/last.log" >&2; exit 1; }
base="$REG/slipway-test/place-figure-base:$RUN"

leaf() { # DOCKER_HOST ROUND: seconds of one leaf build there
  local f="$D/leaf-$2/Dockerfile" t0
  mkdir -p "$(dirname "$f")"
  printf 'FROM %s\nLABEL round=%s run=%s\n' "$base" "$2" "$RUN" >"$f"
  t0=$(now)
  "$SLIPWAY" build "$f" --registry "$REG" --repository slipway-test/place-figure-leaf \
    -t "$RUN-$2" --no-cache --docker-host "$1" --log-level warn >/dev/null 2>"$D/last.log" ||
    { cat "$D/last.log" >&2; return 1; }
  echo "$(now) - $t0" | bc -l
}

held=() cold=()
for i in $(seq 1 "$ROUNDS"); do
  held+=("$(leaf "$warm" "h$i")")
  daemons+=("$D/cold$i")
  c=$(start "$D/cold$i")
  cold+=("$(leaf "$c" "c$i")")
  bash "$ROOT/scripts/dockerd-current.sh" stop --dir "$D/cold$i" >/dev/null 2>&1
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mh=$(median "${held[@]}") mc=$(median "${cold[@]}")
printf 'base: busybox + %s MiB; %s rounds each\n' "$SIZE_MIB" "$ROUNDS"
printf '%-28s %s\n' "leaf on the daemon holding the base (s):" "${held[*]}"
printf '%-28s %s\n' "leaf on a daemon without it (s):" "${cold[*]}"
printf 'median: %.2f s holding vs %.2f s without; ratio %.2fx\n' "$mh" "$mc" "$(echo "$mc / $mh" | bc -l)"
