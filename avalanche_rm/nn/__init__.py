"""Hybrid layers and model wrappers (analogue base + digital LoRA adapters), and the all-digital reference."""
from .layers import HybridConv2d, HybridLinear
from .model import HybridModel, convert_to_hybrid
from .reference import BUFFER_RULES, DigitalReferenceModel, dense_reference, reference_model

__all__ = ["BUFFER_RULES", "DigitalReferenceModel", "dense_reference", "reference_model", "HybridConv2d", "HybridLinear", "HybridModel", "convert_to_hybrid"]
