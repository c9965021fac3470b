#!/usr/bin/env bash
# A throw-away BuildKit daemon for the tests: `buildkitd` (built by
# scripts/ensure-buildkit.sh) as root with the OCI worker (Debian's runc), build steps
# on the host network, listening on 127.0.0.1 only, over TCP with mutual TLS and on a
# unix socket.
#
#   scripts/buildkitd.sh start --dir D [--port P]   start (idempotent); --port 0 (the
#                                                   default) lets the kernel pick a port
#   scripts/buildkitd.sh stop --dir D               stop it, its build containers, and
#                                                   unmount what it left mounted in D
#   scripts/buildkitd.sh status --dir D             exit 0 if it runs and answers
#   scripts/buildkitd.sh addr --dir D               print its TCP address again
#
# `start` prints the address, tcp://127.0.0.1:P, as its last line. D holds what a
# client needs, named as buildctl's flags expect them: ca.pem (--tlscacert), cert.pem
# (--tlscert) and key.pem (--tlskey), e.g.
#   buildctl --addr tcp://127.0.0.1:P --tlscacert D/ca.pem --tlscert D/cert.pem \
#     --tlskey D/key.pem debug workers
# and the unix socket D/buildkitd.sock (no TLS: the file's permissions guard it). D
# also holds the CA's and the server's keys (D/pki), buildkitd.toml, the daemon's
# state (D/root), buildkitd.pid, buildkitd.port and buildkitd.log.
#
# Environment: SLIPWAY_BUILDKIT_BIN (dir with buildkitd and buildctl; default: the last
# line of `bash scripts/ensure-buildkit.sh`), SLIPWAY_BUILDKIT_TIMEOUT (seconds to wait
# for it to answer, default 60), SLIPWAY_BUILDKIT_GC (its cache's garbage collection,
# "Reserved,Free,Maximum" in MB as --oci-worker-gc-keepstorage takes it; default
# 512,10240,4096: at most 4 GiB, less when the disk has under 10 GiB free).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

say() { printf 'buildkitd: %s\n' "$*" >&2; }
die() { printf 'buildkitd: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,27p' "$0" >&2; exit 2; }

TIMEOUT=${SLIPWAY_BUILDKIT_TIMEOUT:-60}
GC=${SLIPWAY_BUILDKIT_GC:-512,10240,4096}

CMD=${1:-}
case "$CMD" in '' | -h | --help | help) usage ;; esac
shift
PORT=0
DIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --port) PORT=${2:?--port needs a value}; shift 2 ;;
    --port=*) PORT=${1#*=}; shift ;;
    --dir) DIR=${2:?--dir needs a value}; shift 2 ;;
    --dir=*) DIR=${1#*=}; shift ;;
    -h | --help) usage ;;
    *) die "unknown argument '$1'" ;;
  esac
done
[ -n "$DIR" ] || die "--dir is required"
case "$PORT" in '' | *[!0-9]*) die "--port must be a number" ;; esac
if [ "$CMD" = start ]; then
  mkdir -p "$DIR"
elif [ ! -d "$DIR" ]; then
  [ "$CMD" != stop ] || exit 0 # nothing ever ran there
  die "no such dir: $DIR"
fi
DIR=$(cd "$DIR" && pwd)
PKI=$DIR/pki
PIDF=$DIR/buildkitd.pid
PORTF=$DIR/buildkitd.port
LOG=$DIR/buildkitd.log
CONF=$DIR/buildkitd.toml
SOCK=$DIR/buildkitd.sock

BIN=""
buildkit_bin() {
  [ -z "$BIN" ] || return 0
  if [ -n "${SLIPWAY_BUILDKIT_BIN:-}" ]; then
    BIN=$SLIPWAY_BUILDKIT_BIN
  else
    BIN=$(bash "$ROOT/scripts/ensure-buildkit.sh" </dev/null | tail -n 1) ||
      die "buildkitd could not be built (scripts/ensure-buildkit.sh)"
  fi
  local b
  for b in buildkitd buildctl; do
    [ -x "$BIN/$b" ] || die "$BIN/$b not found (SLIPWAY_BUILDKIT_BIN or scripts/ensure-buildkit.sh)"
  done
}

# Pid of the buildkitd this dir started, if it still runs.
running_pid() {
  local pid
  pid=$(cat "$PIDF" 2>/dev/null) || return 1
  [ -n "$pid" ] && alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = buildkitd ] || return 1
  printf '%s\n' "$pid"
}

addr() { echo "tcp://127.0.0.1:$1"; }

# answers PORT: buildctl gets the worker list over mutual TLS.
answers() {
  timeout 10 "$BIN/buildctl" --addr "$(addr "$1")" --tlscacert "$DIR/ca.pem" \
    --tlscert "$DIR/cert.pem" --tlskey "$DIR/key.pem" debug workers >/dev/null 2>&1
}

# --- certificates -------------------------------------------------------------------

# A CA, a server certificate for 127.0.0.1/localhost and a client certificate, made
# once per dir; buildkitd requires a client certificate signed by the CA.
ensure_pki() {
  [ -s "$DIR/ca.pem" ] && [ -s "$DIR/cert.pem" ] && [ -s "$DIR/key.pem" ] &&
    [ -s "$PKI/server.pem" ] && [ -s "$PKI/server-key.pem" ] && return 0
  ensure_openssl
  mkdir -p "$PKI"
  (
    cd "$PKI"
    umask 077
    pki_ca ca.pem ca.key slipway-test-buildkit-ca
    pki_sign server.pem server-key.pem buildkitd server ca.pem ca.key
    pki_sign client.pem client-key.pem slipway-test client ca.pem ca.key
    cp ca.pem "$DIR/ca.pem"
    cp client.pem "$DIR/cert.pem"
    cp client-key.pem "$DIR/key.pem"
  ) >"$DIR/openssl.log" 2>&1 || {
    cat "$DIR/openssl.log" >&2
    die "openssl failed (output above)"
  }
}

# --- the daemon ---------------------------------------------------------------------

write_config() {
  # An explicit config so that a machine-wide /etc/buildkit/buildkitd.toml is not read;
  # everything else is on the command line (see the log).
  cat >"$CONF" <<EOF
# generated by slipway scripts/buildkitd.sh
root = "$DIR/root"
EOF
}

# session_pids SID: the processes of session SID (buildkitd runs in its own, with
# runc and the build steps under it).
session_pids() {
  local f stat fields
  for f in /proc/[0-9]*/stat; do
    stat=$(cat "$f" 2>/dev/null) || continue
    # After the command name, which may hold spaces and parens: state ppid pgrp session
    read -r -a fields <<<"${stat##*) }"
    if [ "${fields[3]:-}" = "$1" ]; then
      f=${f#/proc/}
      echo "${f%/stat}"
    fi
  done
}

cmd_start() {
  local pid
  if pid=$(running_pid); then
    local have
    have=$(cat "$PORTF" 2>/dev/null || echo "?")
    if [ "$PORT" != 0 ] && [ "$PORT" != "$have" ]; then
      die "a buildkitd from $DIR already runs on port $have (pid $pid), not $PORT; stop it first"
    fi
    say "already running on $(addr "$have") (pid $pid, dir $DIR)"
    addr "$have"
    return 0
  fi
  [ "$(id -u)" = 0 ] || die "buildkitd runs as root here (the OCI worker with runc); run this as root"
  buildkit_bin
  local runc
  runc=$(command -v runc) || die "runc not found (scripts/ensure-buildkit.sh installs it)"
  # A unix socket path is limited to 107 bytes.
  [ "${#SOCK}" -lt 100 ] || die "$DIR is too long a path for the unix socket $SOCK"
  rm -f "$PIDF" "$PORTF" "$SOCK"
  ensure_pki
  write_config
  mkdir -p "$DIR/root"
  local flags=(
    --config "$CONF"
    --root "$DIR/root"
    --addr "unix://$SOCK"
    --addr "tcp://127.0.0.1:$PORT"
    # its own trace socket: the default /run/buildkit/otel-grpc.sock is shared by every
    # buildkitd on the machine, and two starting at once race on it
    --otel-socket-path "$DIR/otel-grpc.sock"
    --tlscacert "$PKI/ca.pem" --tlscert "$PKI/server.pem" --tlskey "$PKI/server-key.pem"
    --containerd-worker=false
    --oci-worker=true --oci-worker-binary "$runc"
    --oci-worker-net=host # no CNI here; the test daemon has no bridge network either
    --oci-worker-gc --oci-worker-gc-keepstorage "$GC"
  )
  local mark=0
  if [ -f "$LOG" ]; then mark=$(wc -c <"$LOG"); fi
  printf '\n==== %s buildkitd %s\n' "$(date -u +%FT%TZ)" "${flags[*]}" >>"$LOG"
  local started=$EPOCHREALTIME
  # setsid: its own session, so a Ctrl-C in the calling terminal does not kill it, and
  # `stop` finds its build containers by that session.
  setsid "$BIN/buildkitd" "${flags[@]}" >>"$LOG" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$PIDF"
  local port=$PORT deadline=$((SECONDS + TIMEOUT))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if ! alive "$pid"; then
      tail -n 20 "$LOG" >&2 || true
      rm -f "$PIDF"
      die "buildkitd exited during startup (log above, full log $LOG)"
    fi
    if [ "$port" = 0 ]; then
      # With port 0 the kernel picks one; buildkitd logs "running server on 127.0.0.1:N".
      port=$(tail -c +"$((mark + 1))" "$LOG" |
        sed -n 's/.*running server on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' | tail -n 1)
      port=${port:-0}
    fi
    if [ "$port" != 0 ] && answers "$port"; then
      echo "$port" >"$PORTF"
      say "started on $(addr "$port") and unix://$SOCK (pid $pid, dir $DIR," \
        "answered after $(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }') s)"
      addr "$port"
      return 0
    fi
    sleep 0.1
  done
  tail -n 20 "$LOG" >&2 || true
  stop_daemon "$pid"
  die "buildkitd did not answer within ${TIMEOUT}s; stopped it (log above, full log $LOG)"
}

# build_containers: ids of the runc containers whose bundle is under D. buildkitd runs
# them through runc's default state dir, shared with any other runc user, and each
# build step sits in a session of its own: the bundle is what tells ours apart.
build_containers() {
  command -v runc >/dev/null 2>&1 || return 0
  runc list 2>/dev/null | awk -v d="$DIR/" 'NR > 1 && index($4, d) == 1 { print $1 }'
}

# reap: what a buildkitd of D left behind, once it is gone or going: its build
# containers, the rest of its session (runc), and mounts under D (deepest first;
# mountinfo escapes spaces as \040, which D does not hold).
reap() {
  local sid=${1:-} id p m
  for id in $(build_containers); do runc delete --force "$id" >/dev/null 2>&1 || true; done
  if [ -n "$sid" ]; then
    for p in $(session_pids "$sid"); do kill -KILL "$p" 2>/dev/null || true; done
  fi
  awk -v d="$DIR/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
}

# stop_daemon PID: TERM it and kill its build steps at once (it would otherwise wait
# for running builds to end), KILL it if it lingers, then reap.
stop_daemon() {
  local pid=$1 id _
  kill -TERM "$pid" 2>/dev/null || true
  for id in $(build_containers); do runc kill "$id" KILL >/dev/null 2>&1 || true; done
  for _ in $(seq 1 100); do # 10 s
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    say "buildkitd (pid $pid) still alive after 10s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  reap "$pid"
}

cmd_stop() {
  local pid
  if pid=$(running_pid); then
    stop_daemon "$pid"
    say "stopped (pid $pid, dir $DIR)"
  else
    reap # a buildkitd that died may have left build steps running
    say "no buildkitd running from $DIR"
  fi
  rm -f "$PIDF" "$PORTF" "$SOCK"
}

cmd_status() {
  local pid port
  pid=$(running_pid) || { say "not running (dir $DIR)"; return 1; }
  port=$(cat "$PORTF" 2>/dev/null || echo 0)
  buildkit_bin
  if answers "$port"; then
    say "running on $(addr "$port") (pid $pid, dir $DIR)"
  else
    say "pid $pid runs but $(addr "$port") does not answer"
    return 1
  fi
}

case "$CMD" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  addr) running_pid >/dev/null || die "not running (dir $DIR)"; addr "$(cat "$PORTF")" ;;
  *) usage ;;
esac
