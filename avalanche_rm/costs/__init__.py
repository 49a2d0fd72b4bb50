"""Hardware cost accounting.

- :mod:`.fields`: the one table of cost fields (name, unit, meaning, price);
- :mod:`.prices`: unit prices derived from a preset's technology, each constant cited;
- :mod:`.pricing`: what each event counts, and how counts become energy and latency;
- :mod:`.residency`: which memory level holds each class of data (placement by accesses per byte);
- :mod:`.meter`: turns a chip's event records into ledger charges;
- :mod:`.ledger`: the per-phase :class:`CostLedger`;
- :mod:`.sensitivity`: re-prices a recorded run under other assumptions.
"""
from . import fields, pricing, prices
from .fields import FIELDS
from .ledger import QUANTITIES, CostLedger, CostSummary
from .meter import LayerCall, Meter
from .residency import DigitalResidency, SramOverflowError

__all__ = ["FIELDS", "QUANTITIES", "CostLedger", "CostSummary", "DigitalResidency", "LayerCall", "Meter",
           "SramOverflowError", "fields", "prices", "pricing"]
