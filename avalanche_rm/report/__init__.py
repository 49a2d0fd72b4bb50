"""Reports every CLI command writes: report.json (validated schema), report.md and PNG plots."""
from .envelope import hardware_report, make_report
from .schema import REPORT_SCHEMA, validate_report
from .writer import markdown_table, write_report

__all__ = ["REPORT_SCHEMA", "hardware_report", "make_report", "markdown_table", "validate_report", "write_report"]
