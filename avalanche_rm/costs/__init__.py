"""Hardware cost accounting: every pricing formula (:mod:`.pricing`), the per-chip :class:`CostLedger`
and the SRAM working set (:mod:`.residency`)."""
from . import pricing
from .ledger import QUANTITIES, CostLedger, CostSummary
from .residency import DigitalResidency, SramOverflowError

__all__ = ["QUANTITIES", "CostLedger", "CostSummary", "DigitalResidency", "SramOverflowError", "pricing"]
