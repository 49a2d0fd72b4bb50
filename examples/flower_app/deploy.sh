#!/usr/bin/env bash
# Run this Flower app on Flower's deployment engine: a local SuperLink and N SuperNodes (one simulated hybrid chip
# each, partition i on SuperNode i) as separate processes, insecure on 127.0.0.1. Everything this script starts
# (each in its own process group, so the flwr-clientapp/serverapp and superexec children go too) is stopped by
# process id on exit. Logs: $RMAPP_LOGS (default: a fresh temporary folder), one file per process.
# Usage: examples/flower_app/deploy.sh [num-supernodes] [extra run-config, e.g. "num-server-rounds=1"]
# Port: $RMAPP_PORT (default 19100) for the SuperLink; SuperNodes use the next ports from +10.
# Keys: $RMAPP_KEYS (default: a fresh temporary folder) gets the owners' keys and the clients' trust.json.
set -euo pipefail
n="${1:-2}"
extra="${2:-}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/../../.venv/bin"
export PATH="$venv:$PATH"
export FLWR_HOME="${FLWR_HOME:-$(mktemp -d)}"
export FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1 FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1
port="${RMAPP_PORT:-19100}"
logs="${RMAPP_LOGS:-$(mktemp -d)}"
mkdir -p "$logs"
export RMAPP_KEYS="${RMAPP_KEYS:-$(mktemp -d)}"
[[ -f "$RMAPP_KEYS/trust.json" ]] || python -m avalanche_rm.cli keys init "$RMAPP_KEYS" --audience rmapp \
  --owners "$(seq -s, 0 $((n - 1)))" >/dev/null
pids=()

stop_all() {
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  sleep 1
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  echo "stopped ${#pids[@]} process groups: ${pids[*]}"
}
trap stop_all EXIT

wait_port() {  # until something listens on 127.0.0.1:$1
  for _ in $(seq 1 120); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.5
  done
  echo "nothing listens on 127.0.0.1:$1 after 60 s; see $logs" >&2
  return 1
}

setsid flower-superlink --insecure --port "$port" >"$logs/superlink.log" 2>&1 &
pids+=("$!")
wait_port "$port"
for ((i = 0; i < n; i++)); do
  setsid flower-supernode --insecure --superlink "127.0.0.1:$port" --port "$((port + 10 + i))" \
    --node-config "partition-id=$i num-partitions=$n" >"$logs/supernode-$i.log" 2>&1 &
  pids+=("$!")
  wait_port "$((port + 10 + i))"
done
echo "SuperLink 127.0.0.1:$port and $n SuperNodes running (pids ${pids[*]}); logs in $logs"

# the connection lives in the Flower configuration file, not in the app's pyproject (flwr >= 1.42)
cat >"$FLWR_HOME/config.toml" <<TOML
[superlink]
default = "local-deployment"

[superlink.local-deployment]
address = "127.0.0.1:$port"
insecure = true
TOML
flwr run "$here" local-deployment --stream --run-config "num-partitions=$n $extra"
