#!/usr/bin/env bash
# Makes the real Apache Mesos 1.11 master (with in-process agents) available for the
# tests: scripts/mesos-shim/setup.sh builds it once into $MESOS_SHIM_HOME, and later
# runs reuse it (about 5 s when cold, nothing when warm).
#
#   bash scripts/ensure-mesos.sh     # prints the path of mesos.sh on its last line
#
# Needs python3 with pip, gcc/g++ and binutils; installs the Debian packages if missing.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHIM="$ROOT/scripts/mesos-shim"
export MESOS_SHIM_HOME=${MESOS_SHIM_HOME:-${SLIPWAY_STATE:-/tmp/slipway-dev}/mesos-shim}

need=()
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v readelf >/dev/null 2>&1 || need+=(binutils)
grep -q 'libcurl.so.4 ' <<<"$(ldconfig -p)" || need+=(libcurl4)
if [ ${#need[@]} -gt 0 ]; then
  echo "ensure-mesos: installing ${need[*]}" >&2
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
fi

# rebuilt when the shim's sources change
stamp=$(cat "$SHIM"/setup.sh "$SHIM"/gen_stubs.py "$SHIM"/launcher.cpp | sha256sum | cut -c1-16)
if [ ! -x "$MESOS_SHIM_HOME/bin/mesos-local" ] || [ "$(cat "$MESOS_SHIM_HOME/.stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "ensure-mesos: building the Mesos shim into $MESOS_SHIM_HOME" >&2
  sh "$SHIM/setup.sh" >&2
  echo "$stamp" > "$MESOS_SHIM_HOME/.stamp"
fi
echo "$SHIM/mesos.sh"
