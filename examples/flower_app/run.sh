#!/usr/bin/env bash
# Run this Flower app with `flwr run` on the local simulation engine, then stop the SuperLink it starts.
# Usage: examples/flower_app/run.sh [num-supernodes]   (needs the repo's .venv: ./dev test sets it up)
# Keys: $RMAPP_KEYS (default: a fresh temporary folder) gets the owners' keys and the clients' trust.json.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/../../.venv/bin"
export PATH="$venv:$PATH"
export FLWR_HOME="${FLWR_HOME:-$(mktemp -d)}"
export FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1 FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1
stop_superlink() {
  # flwr 1.42 leaves a detached flower-superlink running; ours is the one logging into our FLWR_HOME
  pkill -f "flower-superlink.*$FLWR_HOME" 2>/dev/null || true
}
trap stop_superlink EXIT
n="${1:-3}"
owners=$((n > 3 ? n : 3))  # the server's num-partitions (pyproject: 3) or more SuperNodes
export RMAPP_KEYS="${RMAPP_KEYS:-$(mktemp -d)}"
[[ -f "$RMAPP_KEYS/trust.json" ]] || python -m avalanche_rm.cli keys init "$RMAPP_KEYS" --audience rmapp \
  --owners "$(seq -s, 0 $((owners - 1)))" >/dev/null
cd "$here"
flwr run . --stream --federation-config "num-supernodes=$n client-resources-num-cpus=1"
