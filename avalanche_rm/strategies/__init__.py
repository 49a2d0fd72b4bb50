"""Avalanche strategies and plugins for hybrid RM chips."""
from .checkpoint import maybe_load_checkpoint, save_checkpoint
from .full_weight import AnalogFullFinetune, RetrainAndReprogram
from .hybrid_lora import HybridLoRA
from .plugins import HardwareCostPlugin, WriteBackPlugin

__all__ = ["AnalogFullFinetune", "HardwareCostPlugin", "HybridLoRA", "RetrainAndReprogram", "WriteBackPlugin",
           "maybe_load_checkpoint", "save_checkpoint"]
