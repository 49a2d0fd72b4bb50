"""End-to-end jobs behind the CLI (each returns a JSON-friendly report dict)."""
from .basic import run_basic_job

__all__ = ["run_basic_job"]
