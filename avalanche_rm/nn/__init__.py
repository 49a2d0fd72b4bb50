"""Hybrid layers and model wrappers (analogue base + digital LoRA adapters), and the all-digital reference."""
from .layers import HybridConv2d, HybridLinear
from .model import HybridModel, convert_to_hybrid
from .reference import DigitalReferenceModel, dense_reference

__all__ = ["DigitalReferenceModel", "dense_reference", "HybridConv2d", "HybridLinear", "HybridModel", "convert_to_hybrid"]
