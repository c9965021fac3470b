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

# --- test certificates (kube.sh, buildkitd.sh) ------------------------------------
# They use the caller's `say`/`die` and its $DIR (for apt.log).

ensure_openssl() {
  command -v openssl >/dev/null 2>&1 && return 0
  say "installing openssl"
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo -n)
  {
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update &&
      "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
        install -y --no-install-recommends openssl
  } >"$DIR/apt.log" 2>&1 </dev/null || {
    tail -n 20 "$DIR/apt.log" >&2
    die "apt-get install openssl failed (log above)"
  }
}

# pki_ca CERT KEY CN: writes openssl.cnf (CA, server and client extensions) in the
# current directory and a self-signed P-256 CA.
pki_ca() {
  cat >openssl.cnf <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
EOF
  openssl req -config openssl.cnf -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -nodes -keyout "$2" -out "$1" -days 3650 -subj "/CN=$3" -extensions ca
}

# pki_sign CERT KEY CN EXTENSIONS CA_CERT CA_KEY: a P-256 key and a certificate
# signed by the CA (EXTENSIONS: server or client), in the current directory.
pki_sign() {
  openssl req -config openssl.cnf -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -nodes -keyout "$2" -out "$1.csr" -subj "/CN=$3"
  openssl x509 -req -in "$1.csr" -CA "$5" -CAkey "$6" -set_serial "0x$(openssl rand -hex 8)" \
    -days 3650 -out "$1" -extfile openssl.cnf -extensions "$4"
  rm -f "$1.csr"
}
