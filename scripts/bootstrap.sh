#!/usr/bin/env bash
# Create (or reuse) .venv and install avalanche-rm with its pinned stack.
# Idempotent: a stamp keyed on pyproject.toml and this script skips work already done.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
STAMP="$VENV/.avalanche-rm-stamp"
WANT="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/bootstrap.sh" | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -x "$VENV/bin/python" ]]; then
  exit 0
fi
echo "[bootstrap] setting up $VENV (first run takes a few minutes)" >&2
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
# torch/torchvision first, pinned: these exact versions are the ones on local disk.
"${PIP[@]}" "torch==2.14.1" "torchvision==0.29.1"
"${PIP[@]}" "avalanche-lib==0.6.0" "flwr[simulation]==1.42.0" "torch==2.14.1" "torchvision==0.29.1"
"${PIP[@]}" -e "$ROOT[dev,speech]" "torch==2.14.1" "torchvision==0.29.1"
echo "$WANT" > "$STAMP"
