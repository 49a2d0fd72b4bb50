"""avalanche-rm: continual learning and machine unlearning on simulated hybrid resistive-memory chips.

Layers, bottom up: :mod:`avalanche_rm.hardware` (device, crossbar, digital unit,
write-verify) -> :mod:`avalanche_rm.costs` (ledger) -> :mod:`avalanche_rm.nn`
(hybrid layers and model wrapper).
"""
from ._version import __version__
from .costs import CostLedger
from .hardware import HardwareConfig, get_preset, list_presets
from .nn import HybridConv2d, HybridLinear, HybridModel, convert_to_hybrid

__all__ = [
    "__version__",
    "CostLedger",
    "HardwareConfig",
    "HybridConv2d",
    "HybridLinear",
    "HybridModel",
    "convert_to_hybrid",
    "get_preset",
    "list_presets",
]
