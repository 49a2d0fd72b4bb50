"""The report envelope every command shares (the fields :data:`~avalanche_rm.report.schema.REPORT_SCHEMA` requires)."""
from __future__ import annotations

from typing import Any

from .._version import __version__
from .schema import validate_report


def make_report(command: str, *, preset: str, preset_source: str, seed: int, data: str,
                tables: dict[str, list[dict]], **fields: Any) -> dict:
    """A report dict: ``command``, the package ``version``, the preset and its cited source, the ``seed``,
    which ``data`` were used (real or a stand-in), the ``tables`` and any command-specific ``fields``.

    Validated here (with no plots yet), so a malformed report fails where it is built.
    """
    report = {"command": command, "version": __version__, "preset": preset, "preset_source": preset_source,
              "seed": seed, "data": data, "tables": tables, **fields}
    validate_report({**report, "plots": []})
    return report


def hardware_report(command: str, hardware, *, seed: int, data: str, tables: dict[str, list[dict]],
                    **fields: Any) -> dict:
    """:func:`make_report` for a run on one hardware preset (its ``name`` and ``source``)."""
    return make_report(command, preset=hardware.name, preset_source=hardware.source, seed=seed, data=data,
                       tables=tables, **fields)
