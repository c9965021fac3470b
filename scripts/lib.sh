# shellcheck shell=bash
# Helpers shared by slipway's scripts; `source` it, do not run it.

# alive PID: the process runs (a zombie still waiting to be reaped counts as gone).
alive() {
  local state
  state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# v2_ok PORT: GET http://127.0.0.1:PORT/v2/ answers 200, i.e. a registry serves
# there. Uses curl when present, else bash's /dev/tcp (a fresh machine may lack curl).
v2_ok() {
  local port=$1 status
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -m 5 -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null
    return
  fi
  status=$( (
    exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
    printf 'GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n' "$port" >&3
    timeout 5 head -n 1 <&3
  ) 2>/dev/null) || return 1
  case "$status" in "HTTP/1."?" 200"*) return 0 ;; *) return 1 ;; esac
}

# static_busybox: print the path of the static busybox from Debian's
# busybox-static package (/bin/busybox on bookworm); fail if it is not installed.
static_busybox() {
  local p
  p=$(dpkg -L busybox-static 2>/dev/null | grep -m1 -E '/s?bin/busybox$') || return 1
  [ -x "$p" ] && printf '%s\n' "$p"
}
