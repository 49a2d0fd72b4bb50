import pathlib
import re
import tomllib

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_exact_versions_live_in_constraints_txt_only():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.strip().lower()] = Version(version.strip())
    assert {"torch", "torchvision", "avalanche-lib", "flwr"} <= set(pins)
    deps = [Requirement(d) for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    for req in deps:
        name = req.name.lower()
        if name in pins:  # the tested pin must satisfy the declared range
            assert req.specifier.contains(pins[name], prereleases=True), (name, str(req.specifier), pins[name])
        assert "==" not in str(req.specifier), f"pyproject pins {req} exactly: exact versions go in constraints.txt"
    for script in ("scripts/bootstrap.sh", ".ci/run", "dev"):
        text = (ROOT / script).read_text()
        assert not re.search(r"==\s*\d", text), f"{script} repeats a version pin"


def test_the_version_is_written_once():
    import avalanche_rm
    from importlib.metadata import version

    assert version("avalanche-rm") == avalanche_rm.__version__
    hits = [p for p in (ROOT / "avalanche_rm").rglob("*.py") if re.search(r"[\"']0\.1\.0[\"']", p.read_text())]
    assert [p.name for p in hits] == ["_version.py"]
