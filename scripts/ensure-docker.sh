#!/usr/bin/env bash
# Make sure a Docker Engine answers on this machine, installing and starting it
# if needed. Idempotent: run it as often as you like.
#
#   scripts/ensure-docker.sh [start]   install what is missing, start dockerd if
#                                      `docker info` does not answer
#   scripts/ensure-docker.sh stop      stop dockerd, but only if this script started it
#   scripts/ensure-docker.sh status    say whether dockerd answers and who started it
#   scripts/ensure-docker.sh install   only install the Debian packages
#
# Environment:
#   SLIPWAY_STATE            state dir (default /tmp/slipway-dev); dockerd's log and
#                            the "we started it" record live in $SLIPWAY_STATE/dockerd/
#   SLIPWAY_DOCKERD_FLAGS    extra dockerd flags (word-split), appended to the defaults
#   SLIPWAY_STORAGE_DRIVER   force a storage driver (default: let dockerd choose;
#                            overlay2 on ext4/xfs, vfs as the last resort)
#   SLIPWAY_DOCKERD_TIMEOUT  seconds dockerd may go silent while starting (default 60):
#                            a daemon still writing its log (cleaning up after one
#                            that was killed, say) is working, not hung
#   SLIPWAY_DOCKERD_MAX_WAIT seconds to wait for the daemon in all (default 900)
#   DOCKER                   docker client to use (default: `docker` on PATH)
#
# The daemon is started for builds only: no bridge network, no iptables rules, no
# IP forwarding (build RUN steps get no network, which is what builds from
# `FROM scratch` contexts need), listening on the default unix socket only.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE=${SLIPWAY_STATE:-/tmp/slipway-dev}
DSTATE=$STATE/dockerd
LOG=$DSTATE/dockerd.log
OURS=$DSTATE/started-by-slipway.pid # exists only while a dockerd we started runs
SOCK=/var/run/docker.sock
TIMEOUT=${SLIPWAY_DOCKERD_TIMEOUT:-60}
MAX_WAIT=${SLIPWAY_DOCKERD_MAX_WAIT:-900}
PIDFILE=$DSTATE/dockerd.pid
DOCKER=${DOCKER:-docker}
PACKAGES=(docker.io docker-registry busybox-static git)

say() { printf 'ensure-docker: %s\n' "$*"; }
die() { printf 'ensure-docker: error: %s\n' "$*" >&2; exit 1; }

SUDO=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "not root and no sudo: cannot install or start dockerd"
  SUDO=(sudo -n)
fi

pkg_installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

install_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do pkg_installed "$p" || missing+=("$p"); done
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  say "installing ${missing[*]}"
  # Without systemd, the packages' postinst would run their init scripts
  # (invoke-rc.d): dockerd with default flags and a registry listening on every
  # interface. A policy-rc.d that answers 101 ("action forbidden") makes
  # invoke-rc.d skip them; we start what we need ourselves, on loopback.
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# temporary, written by slipway scripts/ensure-docker.sh\nexit 101\n' |
      "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod 755 "$policy"
    made_policy=1
  fi
  local rc=0 aptlog=$DSTATE/apt.log
  mkdir -p "$DSTATE"
  {
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update &&
      "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
        install -y --no-install-recommends "${missing[@]}"
  } >"$aptlog" 2>&1 </dev/null || rc=$?
  if [ "$made_policy" = 1 ]; then "${SUDO[@]}" rm -f "$policy"; fi
  if [ "$rc" != 0 ]; then
    tail -n 40 "$aptlog" >&2 || true
    die "apt-get failed (exit $rc; log above, full log $aptlog)"
  fi
  say "installed (log $aptlog)"
  # A postinst that failed half-way leaves packages unconfigured; finish them.
  if [ -n "$("${SUDO[@]}" dpkg --audit 2>/dev/null)" ]; then
    say "dpkg reports unconfigured packages; running dpkg --configure -a"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive dpkg --configure -a
  fi
  for p in "${missing[@]}"; do pkg_installed "$p" || die "package $p is not installed after apt-get"; done
}

docker_answers() {
  timeout 15 "${SUDO[@]}" "$DOCKER" info --format '{{.ServerVersion}}' >/dev/null 2>&1
}

our_pid() {
  # The pid we recorded, if that process is still a dockerd.
  local pid
  [ -f "$OURS" ] || return 1
  pid=$(cat "$OURS" 2>/dev/null) || return 1
  [ -n "$pid" ] && alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] || return 1
  printf '%s\n' "$pid"
}

start_dockerd() {
  command -v dockerd >/dev/null 2>&1 || die "dockerd not found after install"
  mkdir -p "$DSTATE"
  local flags=(
    --host "unix://$SOCK"
    --bridge=none       # no docker0: needs no iptables/NAT; build steps run with no network
    --iptables=false    # no iptables/nftables rules on the host
    --ip-forward=false  # do not touch net.ipv4.ip_forward
    --ip-masq=false
    --pidfile "$PIDFILE"
  )
  if [ -n "${SLIPWAY_STORAGE_DRIVER:-}" ]; then
    flags+=(--storage-driver "$SLIPWAY_STORAGE_DRIVER")
  fi
  # shellcheck disable=SC2206 # word splitting intended
  flags+=(${SLIPWAY_DOCKERD_FLAGS:-})

  say "starting dockerd ${flags[*]} (log $LOG)"
  printf '\n==== %s dockerd %s\n' "$(date -u +%FT%TZ)" "${flags[*]}" >>"$LOG"
  # setsid: its own session, so a Ctrl-C in the calling terminal does not kill it.
  "${SUDO[@]}" setsid dockerd "${flags[@]}" >>"$LOG" 2>&1 </dev/null &
  local launcher=$! started=$SECONDS pid="" size last_size=-1 last_change=$SECONDS last_note=$SECONDS
  while ! docker_answers; do
    if ! alive "$launcher"; then
      tail -n 30 "$LOG" >&2 || true
      die "dockerd exited during startup (log above, full log $LOG)"
    fi
    # A dockerd that was killed leaves network sandboxes that the next one removes
    # one by one before it answers (about 8 a second): wait while the log grows.
    size=$(stat -c %s "$LOG" 2>/dev/null || echo 0)
    if [ "$size" != "$last_size" ]; then last_size=$size last_change=$SECONDS; fi
    if [ $((SECONDS - last_change)) -ge "$TIMEOUT" ] || [ $((SECONDS - started)) -ge "$MAX_WAIT" ]; then
      tail -n 30 "$LOG" >&2 || true
      "${SUDO[@]}" kill -TERM "$launcher" 2>/dev/null || true
      die "dockerd did not answer: silent for $((SECONDS - last_change))s, $((SECONDS - started))s since start; stopped it (log above, full log $LOG)"
    fi
    if [ $((SECONDS - last_note)) -ge 20 ]; then
      last_note=$SECONDS
      say "still starting after $((SECONDS - started))s: $(tail -n 1 "$LOG" | cut -c1-160)"
    fi
    sleep 1
  done
  # dockerd writes its own pidfile; prefer it over the launcher's pid.
  pid=$(cat "$PIDFILE" 2>/dev/null || echo "$launcher")
  echo "$pid" >"$OURS"
  say "dockerd is up (pid $pid, storage driver $(storage_driver), after $((SECONDS - started))s)"
}

storage_driver() {
  timeout 15 "${SUDO[@]}" "$DOCKER" info --format '{{.Driver}}' 2>/dev/null || echo '?'
}

cmd_start() {
  install_packages
  if docker_answers; then
    if pid=$(our_pid); then
      say "dockerd already running (started by this script, pid $pid)"
    else
      say "dockerd already running (not started by this script; it will be left alone)"
    fi
    return 0
  fi
  # A record left by a dockerd that has died since is stale.
  rm -f "$OURS"
  start_dockerd
}

cmd_stop() {
  local pid
  if ! pid=$(our_pid); then
    rm -f "$OURS"
    say "no dockerd started by this script is running; nothing to stop"
    return 0
  fi
  say "stopping dockerd (pid $pid)"
  "${SUDO[@]}" kill -TERM "$pid"
  local _
  # A killed dockerd leaves its sandboxes for the next start to clean up: give a
  # clean shutdown its time.
  for _ in $(seq 1 240); do
    alive "$pid" || break
    sleep 0.5
  done
  if alive "$pid"; then
    say "dockerd still alive after 120s; sending SIGKILL"
    "${SUDO[@]}" kill -KILL "$pid" || true
  fi
  # Another run may have started a new dockerd meanwhile: keep its record.
  if [ "$(cat "$OURS" 2>/dev/null)" = "$pid" ]; then rm -f "$OURS"; fi
  say "dockerd stopped"
}

cmd_status() {
  if docker_answers; then
    if pid=$(our_pid); then
      say "dockerd answers (started by this script, pid $pid, driver $(storage_driver))"
    else
      say "dockerd answers (not started by this script)"
    fi
  else
    say "dockerd does not answer"
    return 1
  fi
}

case "${1:-start}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  install) install_packages ;;
  -h | --help | help) sed -n '2,22p' "$0" ;;
  *) die "unknown command '$1' (start|stop|status|install)" ;;
esac
