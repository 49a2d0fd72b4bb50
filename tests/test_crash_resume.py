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
    for run in (got, ref):  # request ids are random per run (each run's owners sign their own requests)
        for a in run["audit"]:
            a["request"].pop("request_id")
    assert got["audit"] == ref["audit"]
    assert [a["request"]["kind"] for a in got["audit"]] == ["owner", "classes"]  # each request honoured once
    # every line of the killed run's logs verifies (interrupted writes dropped), and each request is stored once
    from avalanche_rm.unlearning import AuditKey, verify_log

    key = AuditKey.load(run_dir / "audit.key")
    store = verify_log(run_dir / "audit.forgotten.jsonl", key)
    assert store.ok and [r["kind"] for r in store.records] == ["owner", "classes"]
    assert verify_log(run_dir / "audit.jsonl", key).ok


@pytest.mark.slow
def test_a_request_honoured_after_the_last_checkpoint_is_reapplied_on_resume(tmp_path, monkeypatch):
    """Killed after a forget request was stored but before its checkpoint: resuming from the older checkpoint
    re-applies the request (its data never come back), the stream skips it, and the end state equals a run
    never killed (same test accuracy, ledger and audit records)."""
    import avalanche_rm.jobs.stream as st

    ref = st.run_stream(tmp_path / "ref")
    real, calls = st.save_checkpoint, []

    def killed_before_the_second_checkpoint(strategy, path, exclude=None):
        calls.append(path)
        if len(calls) == 2:  # event 1 (owner 3's request) is honoured and stored; its checkpoint never lands
            raise KeyboardInterrupt
        real(strategy, path, exclude)

    monkeypatch.setattr(st, "save_checkpoint", killed_before_the_second_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        st.run_stream(tmp_path / "run")
    monkeypatch.setattr(st, "save_checkpoint", real)
    got = st.run_stream(tmp_path / "run")
    for run in (got, ref):
        for a in run["audit"]:
            a["request"].pop("request_id")
    assert got["test_acc"] == ref["test_acc"] and got["ledger"] == pytest.approx(ref["ledger"])
    assert got["audit"] == ref["audit"]
    events = [json.loads(line).get("event") for line in (tmp_path / "run" / "audit.jsonl").read_text().splitlines()]
    assert events == ["genesis", "honour", "reapply", "honour"]
