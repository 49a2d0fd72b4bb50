"""Data flows one way: no package imports one above it."""
import ast
import pathlib

import avalanche_rm

ORDER = ["hardware", "costs", "nn", "data", "training", "unlearning", "benchmarks", "evaluation", "report", "strategies",
         "scenarios", "flower", "jobs", "bench", "cli"]


def _level(mod: str) -> int | None:
    head = mod.split(".")[0]
    return ORDER.index(head) if head in ORDER else None


def test_packages_import_only_downwards():
    root = pathlib.Path(avalanche_rm.__file__).parent
    bad = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).with_suffix("")
        own = _level(rel.parts[0]) if rel.parts[0] != "__init__" else None
        if own is None:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                pkg = list(rel.parts[:-1])  # the package a relative import starts from (also for __init__)
                base = pkg[: len(pkg) - (node.level - 1)] if node.level > 1 else pkg
                target = ".".join(base + ([node.module] if node.module else []))
                lvl = _level(target) if target else None
                if lvl is not None and lvl > own:
                    bad.append(f"{rel}: from {'.' * node.level}{node.module or ''}")
    assert not bad, bad
