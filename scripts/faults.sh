#!/usr/bin/env bash
# The fault matrix: real faults injected into real builds of `slipway watch`,
# `slipway controller` and the Mesos backend, and a table of case / runs / lost /
# wrong / duplicate pushes at the end.
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
#   kube-kill        `slipway controller` (a private kube-apiserver and etcd from
#                    scripts/kube.sh) is killed with SIGKILL mid-build and started
#                    again; N runs in a row, one new DockerBuild each
#   apiserver-restart  that kube-apiserver is stopped for 10 s mid-build (etcd keeps
#                    the data) and started again on the same port
#   mesos-kill       `slipway watch --backend mesos` (a real master and agent from
#                    the Mesos shim, scripts/ensure-mesos.sh) is killed with SIGKILL
#                    mid-build and started again; it re-attaches with its framework
#                    ID; N runs in a row
#   mesos-restart    the Mesos master (and its in-process agent, and so the running
#                    task) is restarted mid-build; the build must be relaunched and land
#
# A run is "lost" when its build never ends (no Succeeded or Failed within 3 min),
# "wrong" when it ends Failed or its status digest is not what the registry serves
# for its tag, or its phase is not Succeeded when the case ends; each extra PUT of
# its manifest counts as a duplicate push (recounted when the case ends).
# Needs Docker Engine (scripts/ensure-docker.sh), Debian's docker-registry and
# busybox-static (scripts/registry.sh installs what it needs), python3 and curl; the
# kube cases scripts/ensure-kube.sh's binaries (SLIPWAY_KUBE_BIN), the Mesos cases
# the shim (SLIPWAY_TEST_MESOS, else the last line of scripts/ensure-mesos.sh).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

say() { printf 'faults: %s\n' "$*" >&2; }
die() { printf 'faults: error: %s\n' "$*" >&2; exit 1; }

RUNS=20
CASES="watch-kill,registry-down,dockerd-restart,kube-kill,apiserver-restart,mesos-kill,mesos-restart"
BIN=""
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=${2:?}; shift 2 ;;
    --cases) CASES=${2:?}; shift 2 ;;
    --bin) BIN=${2:?}; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h | --help) sed -n '2,36p' "$0" >&2; exit 2 ;;
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
NONCE=${WORK##*.}
SLIPWAY_PID=""
DOCKERD_DIR=""
KUBE_DIR=""
MESOS_PORT=""
cleanup() {
  [ -n "$SLIPWAY_PID" ] && kill -9 "$SLIPWAY_PID" 2>/dev/null
  [ -n "$KUBE_DIR" ] && bash "$ROOT/scripts/kube.sh" stop --dir "$KUBE_DIR" >/dev/null 2>&1
  [ -n "$MESOS_PORT" ] && mesos_down
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

# What start_slipway runs, and where the cases read statuses: the watch folder
# (folder_mode, at the start of each watch case); the kube and Mesos cases set their own.
folder_mode() {
  SLIPWAY_ARGS=(watch "$WORK/folder")
  FOLDER=$WORK/folder
  MODE=folder
}
folder_mode

# start_slipway [ENV=VALUE...]: `slipway ARGS`, its log appended to slipway.log.
start_slipway() {
  # the default retries (4 tries, 5 s doubling: 35 s) outlast a 30 s outage
  env "$@" "$BIN" "${SLIPWAY_ARGS[@]}" >>"$WORK/slipway.log" 2>&1 &
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
  # the run's name and the script's NONCE in the RUN line make every build new (no
  # cache hit, also when the script runs again on the same daemon)
  cat >"$ctx/Dockerfile" <<EOF
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox sleep 3 && echo $name $NONCE > /id && /bin/busybox dd if=/dev/urandom of=/blob bs=1M count=8 2>/dev/null"]
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

# inline_build NAME: a DockerBuild whose build takes a few seconds, FROM the base
# image (ensure_base), with its Dockerfile inline (no context to serve).
inline_build() {
  cat <<EOF
apiVersion: slipway.dev/v1alpha1
kind: DockerBuild
metadata:
  name: $1
  namespace: faults
spec:
  source:
    inline:
      dockerfile: |
        FROM $BASE
        RUN sleep 3 && echo $1 $NONCE > /id && dd if=/dev/urandom of=/blob bs=1M count=8 2>/dev/null
  output:
    registry: "$REG"
    repository: faults/$1
    tags: [v1]
EOF
}

# ensure_base: BASE, a busybox image in the registry (base images are not pulled here).
BASE=""
ensure_base() {
  [ -z "$BASE" ] || return 0
  mkdir -p "$WORK/base"
  cp "$BUSYBOX" "$WORK/base/busybox"
  printf '%s\n' 'FROM scratch' 'COPY busybox /bin/busybox' \
    'RUN ["/bin/busybox", "--install", "-s", "/bin"]' >"$WORK/base/Dockerfile"
  "$BIN" build "$WORK/base/Dockerfile" --registry "$REG" --repository faults/base -t v1 \
    >>"$WORK/base.log" 2>&1 || die "the base image did not build (log: $WORK/base.log)"
  BASE="$REG/faults/base:v1"
}

# field NAME KEY: a top-level field of NAME's status, unquoted.
field() {
  if [ "$MODE" = kube ]; then
    kubectl_admin get dockerbuild -n faults "$1" -o "jsonpath={.status.$2}" 2>/dev/null
    return
  fi
  sed -n '/^status:/,$p' "$FOLDER/$1.yaml" 2>/dev/null |
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
  RESULTS+=("$(printf '%-17s %5s %5s %6s %11s' "$1" "$2" "$LOST" "$WRONG" "$DUPS")")
  LOST=0 WRONG=0 DUPS=0
}

# recount NAME...: once a case is over, a build pushed again after its run was judged
# (a later restart building it anew) still counts as a duplicate, and a status that
# left Succeeded as wrong.
recount() {
  local name puts
  sleep 5
  DUPS=0
  for name in "$@"; do
    puts=$(manifest_puts "$name")
    [ "${puts:-0}" -gt 1 ] && DUPS=$((DUPS + puts - 1))
    [ "$(field "$name" phase)" = Succeeded ] || {
      say "$name: phase $(field "$name" phase) at the end of the case"
      WRONG=$((WRONG + 1))
    }
  done
}

case_watch_kill() {
  local i name delay names=()
  folder_mode
  start_slipway
  for i in $(seq 1 "$RUNS"); do
    name="kill-$i"
    names+=("$name")
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
  recount "${names[@]}"
  stop_slipway
  record watch-kill "$RUNS"
}

case_registry_down() {
  local i name
  folder_mode
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
  folder_mode
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

# --- Kubernetes: a private kube-apiserver + etcd (its API server gets restarted) ---
kubectl_admin() { "$KUBE_BIN/kubectl" --kubeconfig "$KUBE_DIR/admin.kubeconfig" "$@"; }

kube_up() {
  [ -z "$KUBE_DIR" ] || return 0
  KUBE_BIN=${SLIPWAY_KUBE_BIN:-$(bash "$ROOT/scripts/ensure-kube.sh" | tail -n 1)} ||
    die "no Kubernetes binaries (scripts/ensure-kube.sh)"
  export SLIPWAY_KUBE_BIN=$KUBE_BIN
  KUBE_DIR="$WORK/kube"
  bash "$ROOT/scripts/kube.sh" start --dir "$KUBE_DIR" >"$WORK/kube.out" 2>&1 ||
    die "kube.sh start failed: $(tail -n 5 "$WORK/kube.out")"
  bash "$ROOT/scripts/kube.sh" grant-own --dir "$KUBE_DIR" --namespace faults >/dev/null 2>&1 ||
    die "kube.sh grant-own failed"
  MODE=kube
  # the controller as its chart runs it: its own identity (RBAC applies), the Lease
  # in its namespace; a short Lease so a restart after a SIGKILL takes 3 s, not 15
  SLIPWAY_ARGS=(controller --namespace faults --pod-namespace faults
    --metrics-listen 127.0.0.1:0 --lease-duration 3s --log-dir "$WORK/kube-logs")
}
start_controller() { start_slipway KUBECONFIG="$KUBE_DIR/controller.kubeconfig"; }

case_kube_kill() {
  local i name delay names=()
  ensure_base
  kube_up
  start_controller
  for i in $(seq 1 "$RUNS"); do
    name="kkill-$i"
    names+=("$name")
    inline_build "$name" | kubectl_admin apply -f - >/dev/null || die "kubectl apply $name failed"
    wait_phase "$name" 60 Building Pushing >/dev/null || say "$name: never seen building"
    delay=$(awk -v s="$RANDOM" 'BEGIN { srand(s); printf "%.2f", rand() * 6 }')
    sleep "$delay"
    kill -9 "$SLIPWAY_PID" 2>/dev/null
    wait "$SLIPWAY_PID" 2>/dev/null
    say "$name: controller killed $delay s after the build started"
    start_controller
    judge "$name"
  done
  recount "${names[@]}"
  stop_slipway
  record kube-kill "$RUNS"
}

case_apiserver_restart() {
  local i name runs=$((RUNS < 3 ? RUNS : 3)) names=()
  ensure_base
  kube_up
  start_controller
  for i in $(seq 1 "$runs"); do
    name="apirestart-$i"
    names+=("$name")
    inline_build "$name" | kubectl_admin apply -f - >/dev/null || die "kubectl apply $name failed"
    wait_phase "$name" 60 Building >/dev/null || say "$name: never seen building"
    sleep 1
    bash "$ROOT/scripts/kube.sh" stop-apiserver --dir "$KUBE_DIR" >/dev/null 2>&1
    say "$name: kube-apiserver down for 10 s"
    sleep 10
    bash "$ROOT/scripts/kube.sh" start-apiserver --dir "$KUBE_DIR" >/dev/null 2>&1 ||
      die "kube-apiserver did not come back"
    # a leader that cannot renew its Lease steps down and exits, as client-go's
    # leader election does; its pod's restart policy starts it again
    if ! alive "$SLIPWAY_PID"; then
      wait "$SLIPWAY_PID" 2>/dev/null
      say "$name: the controller exited (Lease not renewed); started again, as its pod would be"
      start_controller
    fi
    judge "$name"
  done
  recount "${names[@]}"
  stop_slipway
  record apiserver-restart "$runs"
}

# --- Mesos: the shim's real master with one in-process agent --------------------
mesos_sh() { sh "$MESOS_SH" "$@"; }
mesos_up() {
  mesos_sh start --port "$MESOS_PORT" --agents 1 --work-dir "$WORK/mesos" >>"$WORK/mesos.out" 2>&1 ||
    die "the Mesos master did not start: $(tail -n 5 "$WORK/mesos.out")"
}
# mesos_down: the master, its agents, and the executors they started (which outlive
# a killed agent; those working under our work dir are ours).
mesos_down() {
  local p cwd
  mesos_sh stop --port "$MESOS_PORT" >/dev/null 2>&1
  for p in /proc/[0-9]*; do
    cwd=$(readlink "$p/cwd" 2>/dev/null) || continue
    case "$cwd" in "$WORK/mesos"*) kill -9 "${p#/proc/}" 2>/dev/null ;; esac
  done
}
mesos_prepare() {
  ensure_base
  if [ -z "$MESOS_PORT" ]; then
    export MESOS_SHIM_HOME=${MESOS_SHIM_HOME:-/tmp/slipway-dev/mesos-shim}
    MESOS_SH=${SLIPWAY_TEST_MESOS:-$(bash "$ROOT/scripts/ensure-mesos.sh" | tail -n 1)} ||
      die "no Mesos shim (scripts/ensure-mesos.sh)"
    MESOS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    mesos_up
  fi
  MODE=folder
  FOLDER=$WORK/mesos-folder
  mkdir -p "$FOLDER"
  SLIPWAY_ARGS=(watch "$FOLDER" --backend mesos --mesos-master "127.0.0.1:$MESOS_PORT"
    --refuse-seconds 1 --default-cpus 0.5 --default-mem 128)
}

case_mesos_kill() {
  local i name delay names=()
  mesos_prepare
  start_slipway
  for i in $(seq 1 "$RUNS"); do
    name="mkill-$i"
    names+=("$name")
    inline_build "$name" >"$FOLDER/$name.yaml"
    wait_phase "$name" 60 Building Pushing >/dev/null || say "$name: never seen building"
    delay=$(awk -v s="$RANDOM" 'BEGIN { srand(s); printf "%.2f", rand() * 6 }')
    sleep "$delay"
    kill -9 "$SLIPWAY_PID" 2>/dev/null
    wait "$SLIPWAY_PID" 2>/dev/null
    say "$name: slipway (Mesos) killed $delay s after the build started"
    start_slipway
    judge "$name"
  done
  recount "${names[@]}"
  stop_slipway
  # every restart must subscribe as the same framework (else its tasks are orphans)
  say "mesos-kill: $(grep -o 'subscribed framework_id=[^ ]*' "$WORK/slipway.log" | sort -u | wc -l) framework ID(s)," \
    "$(grep -c 're-attached to a running task' "$WORK/slipway.log") re-attachment(s) to a running task"
  record mesos-kill "$RUNS"
}

case_mesos_restart() {
  local i name runs=$((RUNS < 3 ? RUNS : 3)) names=()
  mesos_prepare
  start_slipway
  for i in $(seq 1 "$runs"); do
    name="mrestart-$i"
    names+=("$name")
    inline_build "$name" >"$FOLDER/$name.yaml"
    wait_phase "$name" 60 Building >/dev/null || say "$name: never seen building"
    sleep 1
    # the agent lives in the master's process: the running task is lost with it
    mesos_down
    mesos_up
    say "$name: Mesos master restarted"
    judge "$name"
  done
  recount "${names[@]}"
  stop_slipway
  record mesos-restart "$runs"
}

IFS=, read -r -a WANT <<<"$CASES"
for c in "${WANT[@]}"; do
  say "case $c"
  case "$c" in
    watch-kill) case_watch_kill ;;
    registry-down) case_registry_down ;;
    dockerd-restart) case_dockerd_restart ;;
    kube-kill) case_kube_kill ;;
    apiserver-restart) case_apiserver_restart ;;
    mesos-kill) case_mesos_kill ;;
    mesos-restart) case_mesos_restart ;;
    *) die "unknown case '$c'" ;;
  esac
done

printf '%-17s %5s %5s %6s %11s\n' case runs lost wrong "dup pushes"
printf '%s\n' "${RESULTS[@]}"
