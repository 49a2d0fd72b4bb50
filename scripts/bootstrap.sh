#!/usr/bin/env bash
# Create (or reuse) .venv and install avalanche-rm with its pinned stack.
# Idempotent: a stamp keyed on pyproject.toml, constraints.txt and this script skips work already done.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
STAMP="$VENV/.avalanche-rm-stamp"
WANT="$(cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt" "$ROOT/scripts/bootstrap.sh" | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -x "$VENV/bin/python" ]]; then
  exit 0
fi
echo "[bootstrap] setting up $VENV (first run takes a few minutes)" >&2
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
# every install is constrained to the tested stack in constraints.txt (the only place exact versions are written)
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c "$ROOT/constraints.txt")
"${PIP[@]}" torch torchvision   # first: the pinned builds on local disk, before anything pulls another
"${PIP[@]}" -e "$ROOT[dev,speech]"
echo "$WANT" > "$STAMP"
