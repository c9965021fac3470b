#!/usr/bin/env bash
# A throw-away Kubernetes API server for the tests: the real kube-apiserver and etcd
# (built by scripts/ensure-kube.sh), no nodes, no controller-manager, listening on
# 127.0.0.1 only, RBAC on, with the DockerBuild CRD applied and the controller's
# service account bound to exactly the rules of charts/slipway/files/rbac-rules.yaml.
#
#   scripts/kube.sh start --dir D [--port P]   start etcd and kube-apiserver (idempotent;
#                                              P is the API server's port, default: a free
#                                              one, kept across restarts), bind the RBAC
#                                              rules, apply crds/dockerbuild.yaml
#   scripts/kube.sh stop --dir D               stop what `start` started in D (idempotent)
#   scripts/kube.sh status --dir D             exit 0 if the API server runs and is ready
#   scripts/kube.sh stop-apiserver --dir D     stop kube-apiserver only; etcd keeps the data
#   scripts/kube.sh start-apiserver --dir D    start it again, same port, same data
#   scripts/kube.sh grant-own --dir D --namespace NS
#                                              create NS if missing and bind the `own` rules
#                                              there to the controller's identity
#   scripts/kube.sh env --dir D                print the KEY=VALUE lines below again
#
# `start` ends with KUBECONFIG_ADMIN=D/admin.kubeconfig (system:masters),
# KUBECONFIG_CONTROLLER=D/controller.kubeconfig (the static-token identity
# system:serviceaccount:slipway-system:slipway, default namespace slipway-system) and
# KUBE_PORT=P. D also holds the certificates (D/pki), tokens.csv, etcd's data, the
# pid/port files and the logs (etcd.log, kube-apiserver.log).
#
# Environment: SLIPWAY_KUBE_BIN (dir with kube-apiserver, etcd and kubectl; default:
# the last line of `bash scripts/ensure-kube.sh`), SLIPWAY_KUBE_TIMEOUT (seconds to
# wait for readiness, default 60), SLIPWAY_KUBE_APISERVER_FLAGS (more kube-apiserver flags,
# such as `--feature-gates=WatchList=false` for an API server that streams no lists).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

say() { printf 'kube: %s\n' "$*" >&2; }
die() { printf 'kube: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,28p' "$0" >&2; exit 2; }

RULES=$ROOT/charts/slipway/files/rbac-rules.yaml
CRD=$ROOT/crds/dockerbuild.yaml
TIMEOUT=${SLIPWAY_KUBE_TIMEOUT:-60}
SA_NAMESPACE=slipway-system
SA_NAME=slipway
RBAC_NAME=slipway-controller

CMD=${1:-}
[ -n "$CMD" ] || usage
shift
PORT=0
DIR=""
NAMESPACE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --port) PORT=${2:?--port needs a value}; shift 2 ;;
    --port=*) PORT=${1#*=}; shift ;;
    --dir) DIR=${2:?--dir needs a value}; shift 2 ;;
    --dir=*) DIR=${1#*=}; shift ;;
    --namespace | -n) NAMESPACE=${2:?--namespace needs a value}; shift 2 ;;
    --namespace=*) NAMESPACE=${1#*=}; shift ;;
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
ADMIN_KUBECONFIG=$DIR/admin.kubeconfig
CONTROLLER_KUBECONFIG=$DIR/controller.kubeconfig
# kubectl's discovery cache, per cluster: a new cluster on a reused port must not
# see the resources of an old one.
export KUBECACHEDIR=$DIR/cache

BIN=""
kube_bin() {
  [ -z "$BIN" ] || return 0
  if [ -n "${SLIPWAY_KUBE_BIN:-}" ]; then
    BIN=$SLIPWAY_KUBE_BIN
  else
    BIN=$(bash "$ROOT/scripts/ensure-kube.sh" </dev/null | tail -n 1) ||
      die "the Kubernetes binaries could not be built (scripts/ensure-kube.sh)"
  fi
  local b
  for b in kube-apiserver etcd kubectl; do
    [ -x "$BIN/$b" ] || die "$BIN/$b not found (SLIPWAY_KUBE_BIN or scripts/ensure-kube.sh)"
  done
}
kubectl_admin() { "$BIN/kubectl" --kubeconfig "$ADMIN_KUBECONFIG" "$@"; }

# --- processes ------------------------------------------------------------------

# running_pid NAME: pid of the NAME (etcd, kube-apiserver) this dir started, if it runs.
running_pid() {
  local pid
  pid=$(cat "$DIR/$1.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ] || return 1
  printf '%s\n' "$pid"
}

stop_proc() {
  local name=$1 pid _
  if ! pid=$(running_pid "$name"); then
    rm -f "$DIR/$name.pid"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do # 10 s
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$DIR/$name.pid"
  say "stopped $name (pid $pid)"
}

# port_in_use P: some socket (any state, IPv4 or IPv6) has local port P.
port_in_use() {
  local hex
  hex=$(printf ':%04X' "$1")
  awk -v h="$hex" 'FNR > 1 && substr($2, length($2) - 4) == h { f = 1 } END { exit !f }' \
    /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# free_port [EXCEPT...]: a port nothing uses, below the kernel's ephemeral range (so
# that it does not collide with the ports of the registry or of the Mesos clusters).
free_port() {
  local p _ x taken
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 12000))
    taken=0
    for x in "$@"; do [ "$x" = "$p" ] && taken=1; done
    if [ "$taken" = 0 ] && ! port_in_use "$p"; then
      echo "$p"
      return 0
    fi
  done
  die "no free port found"
}

# tcp_open P: something accepts TCP connections on 127.0.0.1:P.
tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# log_mark FILE: its size now, to look at what a new start writes to it.
log_mark() { if [ -f "$1" ]; then wc -c <"$1"; else echo 0; fi; }
bind_failed() { grep -q 'address already in use' < <(tail -c +"$(($2 + 1))" "$1" 2>/dev/null); }

# --- certificates, tokens, kubeconfigs --------------------------------------------

# A CA, a serving certificate for 127.0.0.1/localhost and the service-account key
# pair (RSA), made once per dir.
ensure_pki() {
  [ -s "$PKI/ca.crt" ] && [ -s "$PKI/apiserver.crt" ] && [ -s "$PKI/sa.pub" ] && return 0
  ensure_openssl
  mkdir -p "$PKI"
  (
    cd "$PKI"
    umask 077
    pki_ca ca.crt ca.key slipway-test-ca
    pki_sign apiserver.crt apiserver.key kube-apiserver server ca.crt ca.key
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key
    openssl pkey -in sa.key -pubout -out sa.pub
  ) >"$DIR/openssl.log" 2>&1 || {
    cat "$DIR/openssl.log" >&2
    die "openssl failed (output above)"
  }
}

new_token() { od -An -tx1 -N16 /dev/urandom | tr -d ' \n'; }

ensure_tokens() {
  [ -s "$DIR/tokens.csv" ] && return 0
  (
    umask 077
    # token,user,uid,"groups"
    printf '%s,slipway-test-admin,slipway-test-admin,"system:masters,system:authenticated"\n' "$(new_token)"
    printf '%s,system:serviceaccount:%s:%s,slipway-test-controller,"system:serviceaccounts,system:serviceaccounts:%s,system:authenticated"\n' \
      "$(new_token)" "$SA_NAMESPACE" "$SA_NAME" "$SA_NAMESPACE"
  ) >"$DIR/tokens.csv"
}

# token USER: the static token of USER.
token() { awk -F, -v u="$1" '$2 == u { print $1 }' "$DIR/tokens.csv"; }

# write_kubeconfig FILE USER NAMESPACE
write_kubeconfig() {
  local file=$1 user=$2 ns=$3 port ca
  port=$(cat "$DIR/kube-apiserver.port")
  ca=$(base64 -w0 <"$PKI/ca.crt")
  (
    umask 077
    cat >"$file.tmp" <<EOF
# generated by slipway scripts/kube.sh
apiVersion: v1
kind: Config
clusters:
- name: slipway-test
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $ca
users:
- name: $user
  user:
    token: $(token "$user")
contexts:
- name: slipway-test
  context:
    cluster: slipway-test
    user: $user
    namespace: $ns
current-context: slipway-test
EOF
  )
  mv "$file.tmp" "$file"
}

write_kubeconfigs() {
  write_kubeconfig "$ADMIN_KUBECONFIG" slipway-test-admin default
  write_kubeconfig "$CONTROLLER_KUBECONFIG" "system:serviceaccount:$SA_NAMESPACE:$SA_NAME" "$SA_NAMESPACE"
}

# --- etcd and kube-apiserver --------------------------------------------------------

start_etcd() {
  local pid
  if pid=$(running_pid etcd); then
    return 0
  fi
  local log=$DIR/etcd.log client peer mark _
  for _ in 1 2 3; do
    client=$(cat "$DIR/etcd.port" 2>/dev/null || free_port)
    peer=$(cat "$DIR/etcd-peer.port" 2>/dev/null || free_port "$client")
    mark=$(log_mark "$log")
    printf '\n==== %s start (client %s, peer %s)\n' "$(date -u +%FT%TZ)" "$client" "$peer" >>"$log"
    # --initial-* only matter for a new data dir. Throw-away data: no fsync.
    setsid "$BIN/etcd" --name slipway-test --data-dir "$DIR/etcd" \
      --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
      --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
      --initial-cluster "slipway-test=http://127.0.0.1:$peer" --initial-cluster-state new \
      --unsafe-no-fsync --log-level warn >>"$log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$DIR/etcd.pid"
    local deadline=$((SECONDS + TIMEOUT))
    while [ "$SECONDS" -lt "$deadline" ]; do
      alive "$pid" || break
      if tcp_open "$client"; then
        echo "$client" >"$DIR/etcd.port"
        echo "$peer" >"$DIR/etcd-peer.port"
        say "etcd runs on 127.0.0.1:$client (pid $pid)"
        return 0
      fi
      sleep 0.1
    done
    if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    rm -f "$DIR/etcd.pid"
    if bind_failed "$log" "$mark" && [ ! -d "$DIR/etcd/member" ]; then
      say "etcd: port $client or $peer taken meanwhile; trying others"
      rm -f "$DIR/etcd.port" "$DIR/etcd-peer.port"
      continue
    fi
    break
  done
  tail -n 30 "$log" >&2 || true
  die "etcd did not start (log above, full log $log)"
}

ready() { kubectl_admin get --raw=/readyz --request-timeout=5s >/dev/null 2>&1; }

# start_apiserver WANT_PORT (0: the saved one, else a free one)
start_apiserver() {
  local want=$1 pid
  if pid=$(running_pid kube-apiserver); then
    return 0
  fi
  local log=$DIR/kube-apiserver.log etcd_port port mark _ fixed=1
  etcd_port=$(cat "$DIR/etcd.port")
  for _ in 1 2 3; do
    port=$want
    [ "$port" != 0 ] || port=$(cat "$DIR/kube-apiserver.port" 2>/dev/null || echo 0)
    if [ "$port" = 0 ]; then
      fixed=0
      port=$(free_port "$etcd_port" "$(cat "$DIR/etcd-peer.port")")
    fi
    echo "$port" >"$DIR/kube-apiserver.port"
    write_kubeconfigs
    mark=$(log_mark "$log")
    printf '\n==== %s start (port %s)\n' "$(date -u +%FT%TZ)" "$port" >>"$log"
    # No controller-manager runs: the endpoint reconciler would only write 127.0.0.1
    # (which Endpoints reject) into the `kubernetes` Service, so it is off.
    # --allow-privileged as kubeadm, kind and k3s set it (the chart's buildkitd sidecar
    # is privileged); admission policy is Pod Security's business, not this flag's.
    setsid "$BIN/kube-apiserver" \
      --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$port" \
      --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
      --cert-dir="$PKI" \
      --etcd-servers="http://127.0.0.1:$etcd_port" \
      --service-account-issuer="https://kubernetes.default.svc.cluster.local" \
      --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
      --authorization-mode=RBAC --token-auth-file="$DIR/tokens.csv" \
      --service-cluster-ip-range=10.96.0.0/24 \
      --endpoint-reconciler-type=none \
      --profiling=false \
      --allow-privileged=true \
      ${SLIPWAY_KUBE_APISERVER_FLAGS:-} \
      >>"$log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$DIR/kube-apiserver.pid"
    local deadline=$((SECONDS + TIMEOUT)) why="did not become ready within ${TIMEOUT}s"
    while [ "$SECONDS" -lt "$deadline" ]; do
      alive "$pid" || { why="exited during startup"; break; }
      if ready; then
        say "kube-apiserver ready on https://127.0.0.1:$port (pid $pid)"
        return 0
      fi
      sleep 0.2
    done
    if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    rm -f "$DIR/kube-apiserver.pid"
    if [ "$fixed" = 0 ] && bind_failed "$log" "$mark"; then
      say "kube-apiserver: port $port taken meanwhile; trying another"
      rm -f "$DIR/kube-apiserver.port"
      continue
    fi
    break
  done
  tail -n 40 "$log" >&2 || true
  die "kube-apiserver $why (log above, full log $log)"
}

# --- RBAC and the CRD -----------------------------------------------------------

# rules KEY: the block-style list under the top-level KEY of rbac-rules.yaml, as is
# (comments included), so that the rules file stays the only source of the rules.
rules() {
  local block
  block=$(awk -v key="$1" '
    /^[^[:space:]#]/ { inblock = ($0 ~ ("^" key ":[[:space:]]*(#.*)?$")); next }
    inblock { line[++n] = $0; if ($0 !~ /^[[:space:]]*(#.*)?$/) last = n }
    END { for (i = 1; i <= last; i++) print line[i] }
  ' "$RULES")
  # a here-string, not a pipe: with pipefail, grep -q quitting early could SIGPIPE the
  # writer and fail the check (seen about 1 run in 2000)
  grep -q '^[[:space:]]*- ' <<<"$block" ||
    die "$RULES: no block-style list under '$1:'"
  printf '%s\n' "$block"
}

WATCHED_RULES=""
OWN_RULES=""
REVIEW_RULES=""
load_rules() {
  WATCHED_RULES=$(rules watched) || exit 1
  OWN_RULES=$(rules own) || exit 1
  REVIEW_RULES=$(rules review) || exit 1
}

# probe RULES: "VERB RESOURCE[.GROUP] [--subresource=S]" for the first rule of RULES
# (flow-style lists, as rbac-rules.yaml writes them); empty if it is written otherwise.
probe() {
  printf '%s\n' "$1" | awk '
    function first(s) { sub(/^[^[]*\[/, "", s); sub(/[],].*$/, "", s); gsub(/["\047[:space:]]/, "", s); return s }
    /^[[:space:]]*- / { n++ }
    n != 1 { next }
    /apiGroups:[[:space:]]*\[/ { g = first($0); hg = 1 }
    /resources:[[:space:]]*\[/ { r = first($0) }
    /verbs:[[:space:]]*\[/ { v = first($0) }
    END {
      if (!hg || r == "" || v == "" || v == "*" || r == "*") exit
      sub_ = ""
      if (i = index(r, "/")) { sub_ = " --subresource=" substr(r, i + 1); r = substr(r, 1, i - 1) }
      print v, (g == "" ? r : r "." g) sub_
    }'
}

# wait_granted RULES SCOPE...: until the authorizer lets the controller do the first of
# RULES (RBAC sees new bindings through a cache, a moment after they are stored).
wait_granted() {
  local p deadline=$((SECONDS + TIMEOUT))
  p=$(probe "$1")
  shift
  [ -n "$p" ] || return 0
  # shellcheck disable=SC2086 # p is "VERB RESOURCE [--subresource=S]"
  until "$BIN/kubectl" --kubeconfig "$CONTROLLER_KUBECONFIG" auth can-i $p "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "the controller still may not '$p $*' after ${TIMEOUT}s"
    sleep 0.1
  done
}

# own_manifest NS: NS, and a Role with the `own` rules bound to the controller there.
own_manifest() {
  cat <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: $1
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: $RBAC_NAME
  namespace: $1
rules:
$OWN_RULES
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: $RBAC_NAME
  namespace: $1
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: $RBAC_NAME
subjects:
- kind: ServiceAccount
  name: $SA_NAME
  namespace: $SA_NAMESPACE
EOF
}

# cluster_role_manifest NAME RULES: a ClusterRole with RULES bound to the controller.
cluster_role_manifest() {
  cat <<EOF
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: $1
rules:
$2
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: $1
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: $1
subjects:
- kind: ServiceAccount
  name: $SA_NAME
  namespace: $SA_NAMESPACE
EOF
}

bootstrap_manifest() {
  own_manifest "$SA_NAMESPACE"
  cat <<EOF
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: $SA_NAME
  namespace: $SA_NAMESPACE
EOF
  cluster_role_manifest "$RBAC_NAME" "$WATCHED_RULES"
  cluster_role_manifest "$RBAC_NAME-review" "$REVIEW_RULES"
}

# apply_manifest FILE...: server-side apply; a replaced rule list replaces the old one.
apply_manifest() {
  local out args=() f
  for f in "$@"; do args+=(-f "$f"); done
  out=$(kubectl_admin apply --server-side --force-conflicts --field-manager=slipway-test "${args[@]}" 2>&1) || {
    printf '%s\n' "$out" >&2
    return 1
  }
}

bootstrap() {
  [ -f "$CRD" ] || die "$CRD not found"
  load_rules
  bootstrap_manifest >"$DIR/bootstrap.yaml"
  apply_manifest "$DIR/bootstrap.yaml" "$CRD" || die "applying the RBAC rules and $CRD failed (output above)"
  kubectl_admin wait --for=condition=Established --timeout="${TIMEOUT}s" -f "$CRD" >/dev/null ||
    die "the CRD of $CRD is not Established after ${TIMEOUT}s"
  wait_granted "$WATCHED_RULES" --all-namespaces
  wait_granted "$OWN_RULES" -n "$SA_NAMESPACE"
  wait_granted "$REVIEW_RULES"
}

print_env() {
  echo "KUBECONFIG_ADMIN=$ADMIN_KUBECONFIG"
  echo "KUBECONFIG_CONTROLLER=$CONTROLLER_KUBECONFIG"
  echo "KUBE_PORT=$(cat "$DIR/kube-apiserver.port")"
}

# --- commands ---------------------------------------------------------------------

cmd_start() {
  local have pid
  kube_bin
  have=$(cat "$DIR/kube-apiserver.port" 2>/dev/null || echo 0)
  if pid=$(running_pid kube-apiserver) && [ "$PORT" != 0 ] && [ "$PORT" != "$have" ]; then
    die "a kube-apiserver from $DIR already runs on port $have (pid $pid), not $PORT; stop it first"
  fi
  if [ "$PORT" != 0 ] && [ "$PORT" != "$have" ] && port_in_use "$PORT"; then
    die "port $PORT is in use"
  fi
  ensure_pki
  ensure_tokens
  start_etcd
  start_apiserver "$PORT"
  bootstrap
  say "ready (dir $DIR)"
  print_env
}

cmd_stop() {
  stop_proc kube-apiserver
  stop_proc etcd
}

cmd_status() {
  local a e
  e=$(running_pid etcd) || { say "etcd not running (dir $DIR)"; return 1; }
  a=$(running_pid kube-apiserver) || { say "kube-apiserver not running (etcd pid $e, dir $DIR)"; return 1; }
  kube_bin
  if ready; then
    say "ready on https://127.0.0.1:$(cat "$DIR/kube-apiserver.port") (apiserver pid $a, etcd pid $e, dir $DIR)"
  else
    say "kube-apiserver (pid $a) runs but /readyz does not answer ok"
    return 1
  fi
}

cmd_start_apiserver() {
  if [ ! -s "$DIR/tokens.csv" ] || [ ! -s "$DIR/kube-apiserver.port" ]; then
    die "$DIR holds no cluster; use start"
  fi
  running_pid etcd >/dev/null || die "etcd does not run (dir $DIR); use start"
  kube_bin
  start_apiserver 0
}

cmd_grant_own() {
  [ -n "$NAMESPACE" ] || die "grant-own needs --namespace"
  running_pid kube-apiserver >/dev/null || die "kube-apiserver does not run (dir $DIR)"
  kube_bin
  load_rules
  own_manifest "$NAMESPACE" | apply_manifest - ||
    die "binding the own rules in namespace $NAMESPACE failed (output above)"
  wait_granted "$OWN_RULES" -n "$NAMESPACE"
  say "namespace $NAMESPACE: own rules bound to system:serviceaccount:$SA_NAMESPACE:$SA_NAME"
}

case "$CMD" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  stop-apiserver) stop_proc kube-apiserver ;;
  start-apiserver) cmd_start_apiserver ;;
  grant-own) cmd_grant_own ;;
  env) running_pid kube-apiserver >/dev/null || die "kube-apiserver does not run (dir $DIR)"; print_env ;;
  *) usage ;;
esac
