"""Every example runs as a user runs it (a process, public API only), in quick mode (AVALANCHE_RM_QUICK=1)."""
import ast
import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
FACES = ROOT.parent / "shared" / "data" / "olivettifaces.mat"
pytestmark = pytest.mark.slow  # each example is a process that trains (about 10 s each)


def run(script: str, *args: str) -> str:
    env = dict(os.environ, AVALANCHE_RM_QUICK="1")
    out = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args], capture_output=True, text=True,
                         env=env, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out.stdout


def test_examples_import_public_api_only():
    bad = []
    for path in (ROOT / "examples").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("avalanche_rm"):
                parts = node.module.split(".")
                if any(p.startswith("_") for p in parts) or (len(parts) > 1 and parts[1] in ("jobs", "cli")):
                    bad.append(f"{path.name}: from {node.module}")
    assert not bad, bad


def test_continual_digits():
    out = run("continual_digits.py")
    assert "HybridLoRA" in out and "infer nJ/sample" in out and "training-cost ratio" in out


def test_unlearning_digits(tmp_path):
    out = run("unlearning_digits.py", "--out", str(tmp_path))
    assert "== forget class 7" in out and "gap_to_retrain" in out
    rep = json.loads((tmp_path / "report.json").read_text())
    rows = next(iter(rep["tables"].values()))
    by = {r["method"]: r for r in rows}
    assert by["retrain adapter (exact)"]["gap_to_retrain"] == 0 and by["LoRA neg_ce"]["pulses"] == 0
    assert by["retrain + reprogram (exact)"]["pulses"] > 0


@pytest.mark.skipif(not FACES.exists(), reason="real Olivetti faces not present in ../shared/data")
def test_unlearning_faces():
    out = run("unlearning_faces.py", "--mat-path", str(FACES))
    assert "Olivetti faces (real" in out and "== forget person 7" in out


def test_federated_digits():
    out = run("federated_digits.py")
    lines = [json.loads(line) for line in out.splitlines() if line.startswith('{"round"')]
    assert [(e["partition_id"], e["method"], e["status"]) for e in lines] == [
        (2, "drop", "honoured"), (3, "exact", "honoured"), (4, "neg_ce", "honoured")]
