"""Write report.json, report.md and plots into an output folder."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

from .schema import validate_report


def _fmt(v) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.4g}"
    return str(v)


def markdown_table(rows: list[dict]) -> str:
    if not rows:
        return "(empty)\n"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_report(out: str | Path, report: dict, plots: dict[str, Callable[[Path], None]] | None = None) -> Path:
    """Validate ``report``, draw each plot into ``out/<name>.png``, write JSON and Markdown."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for name, draw in (plots or {}).items():
        path = out / f"{name}.png"
        draw(path)
        names.append(path.name)
    report = dict(report, plots=names)
    validate_report(report)
    (out / "report.json").write_text(json.dumps(report, indent=2, default=float))
    md = [f"# avalanche-rm {report['command']}", "",
          f"- preset: `{report['preset']}` ({report['preset_source'][:200]}...)",
          f"- seed: {report['seed']}", f"- data: {report['data']}", ""]
    for tname, rows in report["tables"].items():
        md += [f"## {tname}", "", markdown_table(rows)]
    for n in names:
        md += [f"![{n}]({n})", ""]
    (out / "report.md").write_text("\n".join(md))
    return out
