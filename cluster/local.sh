#!/usr/bin/env bash
# A real multi-node Ray cluster on this machine, private to it: a head (no CPUs: it only
# coordinates) and one node per simulated hardware type, each its own raylet with its own
# workers, all on 127.0.0.1, token authentication on, no dashboard, its files in a Ray temp
# root of its own (/tmp/sdr-*: never recorded as the machine's default cluster, the one
# `ray.init(address="auto")` joins). See docs/cluster.md.
#
#   cluster/local.sh up        start it and wait until every node is alive
#   cluster/local.sh status    its processes and the nodes Ray sees, with their types
#   cluster/local.sh down      stop exactly what `up` started (never `ray stop`, which
#                              would also stop every other Ray on the machine)
#
# Settings (environment):
#   SPEEDSTER_CLUSTER_PORT      head (GCS) port (default 6389)
#   SPEEDSTER_CLUSTER_TYPES     one node per word, its simulated hardware type
#                               (default "cpu-sim-a cpu-sim-a cpu-sim-b": two nodes of A)
#   SPEEDSTER_CLUSTER_CPUS      CPUs each node lends to Ray (default 1)
#   SPEEDSTER_CLUSTER_STORE_MB  object store per node (default 512)
#   SPEEDSTER_CLUSTER_DIR       state folder: pid, log (default /tmp/speedster-dist-cluster-$USER)
#   PYTHON                      interpreter with ray and speedster_dist (default: python)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PORT="${SPEEDSTER_CLUSTER_PORT:-6389}"
TYPES="${SPEEDSTER_CLUSTER_TYPES:-cpu-sim-a cpu-sim-a cpu-sim-b}"
CPUS="${SPEEDSTER_CLUSTER_CPUS:-1}"
STORE_MB="${SPEEDSTER_CLUSTER_STORE_MB:-512}"
STATE="${SPEEDSTER_CLUSTER_DIR:-/tmp/speedster-dist-cluster-${USER:-$(id -un)}}"
PYTHON="${PYTHON:-python}"
ADDRESS="127.0.0.1:${PORT}"
# Off, Ray keeps every address on loopback (on, it swaps 127.0.0.1 for the routable one).
LOOPBACK="RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0"
# RAY_AUTH_MODE too: a client that imports ray before speedster_dist must have it set already
# (Ray reads it once, at import).
EXPORTS="export RAY_ADDRESS=$ADDRESS $LOOPBACK RAY_AUTH_MODE=token"

export RAY_AUTH_MODE=token  # the cluster and its clients authenticate with the token
export RAY_DISABLE_USAGE_STATS=1

client() { env $LOOPBACK RAY_ADDRESS="$ADDRESS" "$PYTHON" "$@"; }

running() { [[ -f "$STATE/cluster.pid" ]] && kill -0 "$(cat "$STATE/cluster.pid")" 2>/dev/null; }

up() {
    if running; then
        echo "already up"
        echo "$EXPORTS"
        return 0
    fi
    mkdir -p "$STATE"
    if [[ ! -s "$HOME/.ray/auth_token" && -z "${RAY_AUTH_TOKEN:-}" ]]; then
        "$PYTHON" -m ray.scripts.scripts get-auth-token --generate >/dev/null
    fi
    # shellcheck disable=SC2086  # one argument per hardware type
    env $LOOPBACK setsid "$PYTHON" "$HERE/local_cluster.py" "$PORT" "$CPUS" "$STORE_MB" $TYPES \
        >"$STATE/cluster.log" 2>&1 </dev/null &
    echo "$!" >"$STATE/cluster.pid"
    for _ in $(seq 1 180); do
        if grep -q "^ready:" "$STATE/cluster.log" 2>/dev/null; then
            echo "up: head + $(wc -w <<<"$TYPES") nodes ($TYPES) on 127.0.0.1," \
                "token authentication on, no dashboard"
            echo "$EXPORTS"
            return 0
        fi
        running || break
        sleep 1
    done
    echo "the cluster did not come up; see $STATE/cluster.log" >&2
    down >/dev/null
    return 1
}

down() {
    if [[ ! -f "$STATE/cluster.pid" ]]; then
        echo "not up"
        return 0
    fi
    local pid
    pid="$(cat "$STATE/cluster.pid")"
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do
        kill -0 -- "-$pid" 2>/dev/null || break
        sleep 0.5
    done
    kill -KILL -- "-$pid" 2>/dev/null || true  # raylet/gcs_server can outlive their parent
    # The cluster's own Ray temp root (the supervisor removes it too, unless it was killed).
    local root
    root="$(sed -n 's|^ray temp dir: \(/tmp/sdr-[A-Za-z0-9_]*\)$|\1|p' "$STATE/cluster.log" 2>/dev/null || true)"
    [[ -n "$root" ]] && rm -rf -- "$root"
    rm -f "$STATE/cluster.pid"
    echo "down"
}

status() {
    if ! running; then
        echo "not up"
        return 1
    fi
    echo "supervisor: process group $(cat "$STATE/cluster.pid")"
    client - <<'PY'
import ray
from speedster_dist.hardware import HARDWARE_LABEL
from speedster_dist.runtime.ray import connect

connect("auto")
for node in ray.nodes():
    labels = node.get("Labels") or {}
    cpus = node["Resources"].get("CPU", 0)
    kind = labels.get(HARDWARE_LABEL, "(probed)" if cpus else "(head: coordinates only)")
    alive = "alive" if node["Alive"] else "dead"
    print(f"  {node['NodeID'][:12]} {alive} {node['NodeManagerAddress']} cpus={cpus:g} {kind}")
PY
    echo "$EXPORTS"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
