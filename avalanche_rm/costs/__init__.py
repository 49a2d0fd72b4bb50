"""Hardware cost accounting: the per-model :class:`CostLedger` and baseline pricing."""
from .ledger import QUANTITIES, CostLedger, CostSummary

__all__ = ["QUANTITIES", "CostLedger", "CostSummary"]
