import pytest
import subprocess
import sys


def test_known_noise_is_silenced_and_nothing_else():
    code = """
import warnings
from avalanche_rm.quiet import silence_known_noise
silence_known_noise()
warnings.simplefilter("once", DeprecationWarning)  # what Avalanche's @deprecated does on every call
warnings.warn("Call to deprecated function update (removal in version 0.7)", DeprecationWarning)
warnings.warn("No loggers specified, metrics will not be logged")
warnings.warn("avalanche-rm: analogue reads use worst-case ADC ranges")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "deprecated function update" not in out.stderr and "No loggers" not in out.stderr
    assert "worst-case ADC ranges" in out.stderr  # ours (and every other warning) still shows


@pytest.mark.slow
def test_the_demo_prints_no_warning(tmp_path):
    """The newcomer's first command, run as a user runs it (a process, its stderr): no warning at all."""
    out = subprocess.run([sys.executable, "-m", "avalanche_rm.cli", "demo", "--epochs", "2", "--adapter-epochs", "1",
                          "--unlearn-epochs", "1", "--quiet", "--out", str(tmp_path)], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Warning" not in out.stderr and "warn" not in out.stderr, out.stderr[-3000:]
