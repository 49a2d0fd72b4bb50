"""Hybrid layers and model wrappers (analogue base + digital LoRA adapters)."""
from .layers import HybridConv2d, HybridLinear
from .model import HybridModel, convert_to_hybrid

__all__ = ["HybridConv2d", "HybridLinear", "HybridModel", "convert_to_hybrid"]
