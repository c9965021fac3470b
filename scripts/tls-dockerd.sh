#!/usr/bin/env bash
# A second, throwaway dockerd that listens only on 127.0.0.1:PORT with mutual TLS,
# for tests of remote daemons (DOCKER_TLS_VERIFY). Everything it owns lives under
# --dir (data, exec root with its own containerd, pidfile, unix socket, certs), so it
# never touches the main daemon.
#
#   scripts/tls-dockerd.sh start --dir DIR --port PORT [--insecure-registry HOST:PORT]
#   scripts/tls-dockerd.sh stop --dir DIR
#
# start writes DIR/client/{ca,cert,key}.pem (a DOCKER_CERT_PATH the daemon trusts)
# DIR/other/{ca,cert,key}.pem (a client certificate from another CA) and
# DIR/untrusted/{ca,cert,key}.pem (a good client certificate, but a CA that did not
# sign the daemon's).
set -euo pipefail

say() { printf 'tls-dockerd: %s\n' "$*"; }
die() { printf 'tls-dockerd: error: %s\n' "$*" >&2; exit 1; }

cmd=${1:-}; shift || true
DIR='' PORT='' INSECURE=()
while [ $# -gt 0 ]; do
  case $1 in
    --dir) DIR=$2; shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    --insecure-registry) INSECURE=(--insecure-registry "$2"); shift 2 ;;
    *) die "unknown argument $1" ;;
  esac
done
[ -n "$DIR" ] || die "--dir is required"

# ca NAME: a self-signed CA in $DIR/pki/NAME-ca.{pem,key}
ca() {
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$1 test CA" \
    -keyout "$DIR/pki/$1-ca.key" -out "$DIR/pki/$1-ca.pem" 2>/dev/null
}
# leaf CA NAME EXT: a certificate signed by CA, in $DIR/pki/NAME.{pem,key}
leaf() {
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$2" \
    -keyout "$DIR/pki/$2.key" -out "$DIR/pki/$2.csr" 2>/dev/null
  printf '%s\n' "$3" >"$DIR/pki/$2.ext"
  openssl x509 -req -in "$DIR/pki/$2.csr" -CA "$DIR/pki/$1-ca.pem" -CAkey "$DIR/pki/$1-ca.key" \
    -CAcreateserial -days 2 -extfile "$DIR/pki/$2.ext" -out "$DIR/pki/$2.pem" 2>/dev/null
}

start() {
  [ -n "$PORT" ] || die "--port is required"
  mkdir -p "$DIR/pki" "$DIR/client" "$DIR/other" "$DIR/untrusted" "$DIR/data" "$DIR/exec"
  ca test; ca other
  leaf test server "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth"
  leaf test client "extendedKeyUsage=clientAuth"
  leaf other stranger "extendedKeyUsage=clientAuth"
  cp "$DIR/pki/test-ca.pem" "$DIR/client/ca.pem"
  cp "$DIR/pki/client.pem" "$DIR/client/cert.pem"
  cp "$DIR/pki/client.key" "$DIR/client/key.pem"
  # the stranger trusts the right server CA but presents a certificate the daemon does not
  cp "$DIR/pki/test-ca.pem" "$DIR/other/ca.pem"
  cp "$DIR/pki/stranger.pem" "$DIR/other/cert.pem"
  cp "$DIR/pki/stranger.key" "$DIR/other/key.pem"
  cp "$DIR/pki/other-ca.pem" "$DIR/untrusted/ca.pem"
  cp "$DIR/pki/client.pem" "$DIR/untrusted/cert.pem"
  cp "$DIR/pki/client.key" "$DIR/untrusted/key.pem"
  setsid dockerd \
    --data-root "$DIR/data" --exec-root "$DIR/exec" --pidfile "$DIR/dockerd.pid" \
    -H "unix://$DIR/docker.sock" -H "tcp://127.0.0.1:$PORT" \
    --tlsverify --tlscacert "$DIR/pki/test-ca.pem" \
    --tlscert "$DIR/pki/server.pem" --tlskey "$DIR/pki/server.key" \
    --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
    --containerd-namespace slipway-tls --containerd-plugins-namespace slipway-tls-plugins \
    "${INSECURE[@]}" >"$DIR/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 1 120); do
    if DOCKER_HOST="unix://$DIR/docker.sock" docker version >/dev/null 2>&1; then
      say "dockerd answers on tcp://127.0.0.1:$PORT (pid $(cat "$DIR/dockerd.pid"))"
      return 0
    fi
    sleep 0.5
  done
  tail -20 "$DIR/dockerd.log" >&2
  die "dockerd did not answer within 60s (log: $DIR/dockerd.log)"
}

stop() {
  local pid
  pid=$(cat "$DIR/dockerd.pid" 2>/dev/null) || { say "not running"; return 0; }
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
  say "stopped"
}

case $cmd in
  start) start ;;
  stop) stop ;;
  *) die "usage: $0 start|stop --dir DIR [--port PORT]" ;;
esac
