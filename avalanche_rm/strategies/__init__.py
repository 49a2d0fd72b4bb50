"""Avalanche strategies and plugins for hybrid RM chips: continual learning and unlearning."""
from .approx_unlearning import METHODS, FullWeightUnlearning, LoRAUnlearning, RetrainUnlearning, unlearn_loop
from .checkpoint import maybe_load_checkpoint, save_checkpoint
from .forgetting import DataRegistry, ForgetMixin, ForgetRefused
from .full_weight import AnalogFullFinetune, RetrainAndReprogram
from .hybrid_lora import HybridLoRA
from .plugins import HardwareCostPlugin, WriteBackPlugin
from .sharded import ShardedLoRAUnlearning

__all__ = ["METHODS", "AnalogFullFinetune", "DataRegistry", "ForgetMixin", "ForgetRefused", "FullWeightUnlearning",
           "HardwareCostPlugin", "HybridLoRA", "LoRAUnlearning", "RetrainAndReprogram", "RetrainUnlearning",
           "ShardedLoRAUnlearning", "WriteBackPlugin", "maybe_load_checkpoint", "save_checkpoint", "unlearn_loop"]
