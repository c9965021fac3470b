#!/usr/bin/env bash
# The fault matrix: real faults injected into real builds of `slipway watch`, and a
# table of case / runs / lost / wrong / duplicate pushes at the end.
#
#   bash scripts/faults.sh [--runs N] [--cases LIST] [--bin PATH] [--keep]
#
# Cases (LIST is comma-separated; all by default):
#   watch-kill       slipway is killed with SIGKILL mid-build (at a random moment
#                    between the build's start and a few seconds later), then started
#                    again on the same folder; N runs in a row, one new build each
#   registry-down    the registry stops mid-build for 30 s, then comes back on the
#                    same port and data; the push must be retried and land
#   dockerd-restart  the Docker daemon slipway builds on (a private one, started by
#                    scripts/dockerd-current.sh, so the machine's own is left alone)
#                    is restarted mid-build; the build must be retried and land
#
# A run is "lost" when its build never ends (no Succeeded or Failed within 3 min),
# "wrong" when it ends Failed or its status digest is not what the registry serves
# for its tag, and each extra PUT of its manifest counts as a duplicate push.
# Needs Docker Engine (scripts/ensure-docker.sh), Debian's docker-registry and
# busybox-static (scripts/registry.sh installs what it needs), python3 and curl.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

say() { printf 'faults: %s\n' "$*" >&2; }
die() { printf 'faults: error: %s\n' "$*" >&2; exit 1; }

RUNS=20
CASES="watch-kill,registry-down,dockerd-restart"
BIN=""
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=${2:?}; shift 2 ;;
    --cases) CASES=${2:?}; shift 2 ;;
    --bin) BIN=${2:?}; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h | --help) sed -n '2,24p' "$0" >&2; exit 2 ;;
    *) die "unknown argument '$1'" ;;
  esac
done
if [ -z "$BIN" ]; then
  (cd "$ROOT" && cargo build -q --bin slipway) || die "cargo build failed"
  BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/slipway
fi
[ -x "$BIN" ] || die "no slipway binary at $BIN"
BUSYBOX=$(static_busybox) || die "static busybox not found (apt-get install busybox-static)"
bash "$ROOT/scripts/ensure-docker.sh" >/dev/null || die "Docker Engine is not available"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/slipway-faults.XXXXXX")
SLIPWAY_PID=""
DOCKERD_DIR=""
cleanup() {
  [ -n "$SLIPWAY_PID" ] && kill -9 "$SLIPWAY_PID" 2>/dev/null
  bash "$ROOT/scripts/registry.sh" stop --dir "$WORK/reg" >/dev/null 2>&1
  [ -n "$DOCKERD_DIR" ] && bash "$ROOT/scripts/dockerd-current.sh" stop --dir "$DOCKERD_DIR" >/dev/null 2>&1
  if [ "$KEEP" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

REG=$(bash "$ROOT/scripts/registry.sh" start --dir "$WORK/reg" --port 0 | tail -n 1) ||
  die "the registry did not start"
REGPORT=${REG##*:}
mkdir -p "$WORK/folder"
RESULTS=()

# start_slipway [ENV=VALUE...]: `slipway watch` on the folder, its log appended to.
start_slipway() {
  # the default retries (4 tries, 5 s doubling: 35 s) outlast a 30 s outage
  env "$@" "$BIN" watch "$WORK/folder" >>"$WORK/slipway.log" 2>&1 &
  SLIPWAY_PID=$!
}
stop_slipway() {
  [ -n "$SLIPWAY_PID" ] || return 0
  kill "$SLIPWAY_PID" 2>/dev/null
  wait "$SLIPWAY_PID" 2>/dev/null
  SLIPWAY_PID=""
}

# new_build NAME: a context whose build takes a few seconds, and its resource file.
new_build() {
  local name=$1 ctx="$WORK/folder/ctx-$1"
  mkdir -p "$ctx"
  cp "$BUSYBOX" "$ctx/busybox"
  # the run's name in the RUN line makes every build new (no cache hit)
  cat >"$ctx/Dockerfile" <<EOF
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox sleep 3 && echo $name > /id && /bin/busybox dd if=/dev/urandom of=/blob bs=1M count=8 2>/dev/null"]
EOF
  cat >"$WORK/folder/$name.yaml" <<EOF
apiVersion: slipway.dev/v1alpha1
kind: DockerBuild
metadata:
  name: $name
  namespace: faults
spec:
  source:
    path: ctx-$name
  output:
    registry: "$REG"
    repository: faults/$name
    tags: [v1]
EOF
}

# field NAME KEY: a top-level field of NAME's status block, unquoted.
field() {
  sed -n '/^status:/,$p' "$WORK/folder/$1.yaml" 2>/dev/null |
    sed -n "s/^  $2: *//p" | head -n 1 | tr -d "\"'"
}

# wait_phase NAME SECONDS PHASE...: until NAME's phase is one of PHASE; prints it.
wait_phase() {
  local name=$1 deadline=$(($(date +%s) + $2)) p want
  shift 2
  while [ "$(date +%s)" -lt "$deadline" ]; do
    p=$(field "$name" phase)
    for want in "$@"; do
      [ "$p" = "$want" ] && { echo "$p"; return 0; }
    done
    sleep 0.2
  done
  echo "${p:-none}"
  return 1
}

# registry_digest NAME: the digest the registry serves for faults/NAME:v1.
registry_digest() {
  curl -fsS -m 10 -o /dev/null -D - \
    -H 'Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json' \
    "http://$REG/v2/faults/$1/manifests/v1" 2>/dev/null |
    tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: *//p'
}

# manifest_puts NAME: successful PUTs of faults/NAME's manifests in the registry log.
manifest_puts() {
  grep -c "\"PUT /v2/faults/$1/manifests/[^ ]* HTTP/1.1\" 201" "$WORK/reg/registry.log" 2>/dev/null
}

# judge NAME: "lost", "wrong" or "ok", and the duplicate pushes, for one run.
LOST=0 WRONG=0 DUPS=0
judge() {
  local name=$1 phase digest reg puts
  phase=$(wait_phase "$name" 180 Succeeded Failed) || { LOST=$((LOST + 1)); say "$name: lost (phase $phase)"; return; }
  digest=$(field "$name" imageDigest)
  reg=$(registry_digest "$name")
  puts=$(manifest_puts "$name")
  if [ "$phase" != Succeeded ] || [ -z "$digest" ] || [ "$digest" != "$reg" ]; then
    WRONG=$((WRONG + 1))
    say "$name: wrong (phase $phase, status digest '$digest', registry '$reg', message: $(field "$name" message))"
  fi
  [ "${puts:-0}" -gt 1 ] && DUPS=$((DUPS + puts - 1))
  say "$name: $phase, $puts manifest push(es)"
}

record() {
  RESULTS+=("$(printf '%-16s %5s %5s %6s %11s' "$1" "$2" "$LOST" "$WRONG" "$DUPS")")
  LOST=0 WRONG=0 DUPS=0
}

case_watch_kill() {
  local i name delay
  start_slipway
  for i in $(seq 1 "$RUNS"); do
    name="kill-$i"
    new_build "$name"
    wait_phase "$name" 60 Building Pushing >/dev/null || say "$name: never seen building"
    # somewhere from the start of the build to past its push
    delay=$(awk -v s="$RANDOM" 'BEGIN { srand(s); printf "%.2f", rand() * 6 }')
    sleep "$delay"
    kill -9 "$SLIPWAY_PID" 2>/dev/null
    wait "$SLIPWAY_PID" 2>/dev/null
    say "$name: killed $delay s after the build started"
    start_slipway
    judge "$name"
  done
  stop_slipway
  record watch-kill "$RUNS"
}

case_registry_down() {
  local i name
  start_slipway
  for i in $(seq 1 "$(( RUNS < 3 ? RUNS : 3 ))"); do
    name="regdown-$i"
    new_build "$name"
    wait_phase "$name" 60 Building Pushing >/dev/null
    sleep 2
    bash "$ROOT/scripts/registry.sh" stop --dir "$WORK/reg" >/dev/null
    say "$name: registry down for 30 s"
    sleep 30
    bash "$ROOT/scripts/registry.sh" start --dir "$WORK/reg" --port "$REGPORT" >/dev/null ||
      die "the registry did not come back on port $REGPORT"
    judge "$name"
  done
  stop_slipway
  record registry-down "$(( RUNS < 3 ? RUNS : 3 ))"
}

case_dockerd_restart() {
  local i name host
  DOCKERD_DIR="$WORK/dockerd"
  host=$(bash "$ROOT/scripts/dockerd-current.sh" start --dir "$DOCKERD_DIR" | tail -n 1) ||
    die "the private dockerd did not start"
  start_slipway DOCKER_HOST="$host"
  for i in $(seq 1 "$(( RUNS < 3 ? RUNS : 3 ))"); do
    name="dockerd-$i"
    new_build "$name"
    wait_phase "$name" 60 Building >/dev/null
    sleep 1
    bash "$ROOT/scripts/dockerd-current.sh" stop --dir "$DOCKERD_DIR" >/dev/null
    bash "$ROOT/scripts/dockerd-current.sh" start --dir "$DOCKERD_DIR" >/dev/null ||
      die "the private dockerd did not come back"
    say "$name: dockerd restarted"
    judge "$name"
  done
  stop_slipway
  record dockerd-restart "$(( RUNS < 3 ? RUNS : 3 ))"
}

IFS=, read -r -a WANT <<<"$CASES"
for c in "${WANT[@]}"; do
  say "case $c"
  case "$c" in
    watch-kill) case_watch_kill ;;
    registry-down) case_registry_down ;;
    dockerd-restart) case_dockerd_restart ;;
    *) die "unknown case '$c'" ;;
  esac
done

printf '%-16s %5s %5s %6s %11s\n' case runs lost wrong "dup pushes"
printf '%s\n' "${RESULTS[@]}"
