"""Avalanche strategies and plugins for hybrid RM chips: continual learning and unlearning."""
from .approx_unlearning import FullWeightUnlearning, LoRAUnlearning, RetrainUnlearning
from .checkpoint import maybe_load_checkpoint, save_checkpoint
from .comparison import compare_unlearning
from .full_weight import AnalogFullFinetune, RetrainAndReprogram
from .hybrid_lora import HybridLoRA
from .plugins import HardwareCostPlugin, SeenClassesMask, WriteBackPlugin
from .policy import PrivateDataError, pretrain_and_program
from .sharded import ShardedLoRAUnlearning

__all__ = ["AnalogFullFinetune", "FullWeightUnlearning", "HardwareCostPlugin", "HybridLoRA", "LoRAUnlearning",
           "PrivateDataError", "RetrainAndReprogram", "RetrainUnlearning", "SeenClassesMask", "ShardedLoRAUnlearning",
           "WriteBackPlugin", "compare_unlearning", "maybe_load_checkpoint", "pretrain_and_program", "save_checkpoint"]
