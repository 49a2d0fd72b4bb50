import json

from typer.testing import CliRunner

from avalanche_rm.cli import app

runner = CliRunner()


def test_demo_runs_and_writes_report(tmp_path):
    res = runner.invoke(app, ["demo", "--epochs", "3", "--adapter-epochs", "1", "--quiet", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "programmed" in res.output and "cost ledger" in res.output
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["data"].startswith("scikit-learn") and rep["programming"]["cells"] > 0
    assert rep["ledger"]["deploy"]["pulses"] > 0 and rep["ledger"]["train"]["pulses"] == 0


def test_bad_options_exit_non_zero_with_one_line():
    for args, word in ((["demo", "--preset", "nope"], "nope"), (["demo", "--epochs", "-1"], "epochs")):
        res = runner.invoke(app, args)
        assert res.exit_code != 0
        assert word in res.output and "Traceback" not in res.output


def test_unwritable_out(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    res = runner.invoke(app, ["demo", "--out", str(f / "sub"), "--epochs", "1"])
    assert res.exit_code != 0 and "not writable" in res.output
