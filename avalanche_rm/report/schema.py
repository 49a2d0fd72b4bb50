"""The documented schema of ``report.json`` (a small JSON-Schema subset, checked without extra packages).

Every report has ``command``, ``version``, ``preset``, ``preset_source``,
``seed``, ``data`` (which data were used: real or a stand-in), ``tables``
(name -> list of row dicts) and ``plots`` (file names written next to the
report); commands add their own fields.
"""
from __future__ import annotations

REPORT_SCHEMA: dict = {
    "type": "object",
    "required": ["command", "version", "preset", "preset_source", "seed", "data", "tables", "plots"],
    "properties": {
        "command": {"type": "string"},
        "version": {"type": "string"},
        "preset": {"type": "string"},
        "preset_source": {"type": "string"},
        "seed": {"type": "integer"},
        "data": {"type": "string"},
        "tables": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "object"}}},
        "plots": {"type": "array", "items": {"type": "string"}},
    },
}

_TYPES = {"object": dict, "string": str, "integer": int, "array": list, "number": (int, float)}


def _check(value, schema: dict, path: str) -> None:
    t = schema.get("type")
    if t is not None:
        ok = isinstance(value, _TYPES[t]) and not (t == "integer" and isinstance(value, bool))
        if not ok:
            raise ValueError(f"report field {path or '<root>'} must be {t}, got {type(value).__name__}")
    if t == "object":
        for key in schema.get("required", []):
            if key not in value:
                raise ValueError(f"report is missing required field {path + '.' if path else ''}{key}")
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                _check(value[key], sub, f"{path}.{key}" if path else key)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, v in value.items():
                if key not in schema.get("properties", {}):
                    _check(v, extra, f"{path}.{key}" if path else key)
    if t == "array" and "items" in schema:
        for i, v in enumerate(value):
            _check(v, schema["items"], f"{path}[{i}]")


def validate_report(report: dict) -> None:
    """Raise ``ValueError`` naming the first field that breaks :data:`REPORT_SCHEMA`."""
    _check(report, REPORT_SCHEMA, "")
