"""A learn/forget stream killed with SIGKILL at several points resumes to the same end state."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _run(workdir: Path, kill_after_checkpoint_s: float | None = None) -> int | None:
    """Run the stream; with a delay, SIGKILL it that long after its next checkpoint lands (mid-event)."""
    proc = subprocess.Popen([sys.executable, "-W", "ignore", "-m", "avalanche_rm.jobs.stream", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if kill_after_checkpoint_s is None:
        return proc.wait(timeout=300)
    ckpt = workdir / "checkpoint.pkl"
    before = ckpt.stat().st_mtime_ns if ckpt.exists() else None
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and ckpt.stat().st_mtime_ns != before:
            time.sleep(kill_after_checkpoint_s)
            break
        time.sleep(0.05)
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return None


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="needs SIGKILL")
def test_killed_stream_resumes_with_identical_metrics_ledger_and_audit(tmp_path):
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "killed"
    assert _run(ref_dir) == 0
    ref = json.loads((ref_dir / "result.json").read_text())
    kills = 0
    for delay in (0.3, 1.0, 0.1):  # an event takes seconds: each kill lands inside the next event
        if _run(run_dir, kill_after_checkpoint_s=delay) is None:
            kills += 1
        if (run_dir / "result.json").exists():
            break
    assert kills >= 3, "the stream finished before being killed three times"
    assert (run_dir / "checkpoint.pkl").exists()
    assert _run(run_dir) == 0
    got = json.loads((run_dir / "result.json").read_text())
    assert got["test_acc"] == ref["test_acc"]
    assert got["ledger"] == pytest.approx(ref["ledger"])
    assert got["audit"] == ref["audit"]
    assert [a["request"]["kind"] for a in got["audit"]] == ["owner", "classes"]  # each request honoured once
