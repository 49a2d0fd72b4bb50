"""HybridLoRA: continual learning with the analogue base frozen and LoRA adapters in SRAM."""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
from avalanche.training.templates import SupervisedTemplate
from torch.nn import CrossEntropyLoss

from ..nn.model import HybridModel
from .plugins import HardwareCostPlugin, SeenClassesMask
from ..validation import check_int

POLICIES = ("shared", "per_task")


def _default_evaluator():
    from avalanche.training.templates.base_sgd import default_evaluator

    return default_evaluator()


class HybridLoRA(SupervisedTemplate):
    """Train only LoRA adapters of a programmed :class:`HybridModel`; never write the analogue cells.

    ``adapter_policy``:
    - ``"shared"``: one adapter ``"shared"`` keeps learning across experiences
      (class-incremental); combine with Replay/LwF/EWC plugins against forgetting;
    - ``"per_task"``: a new adapter ``"task<t>"`` per task label, trained alone
      and selected by the experience's task label at evaluation
      (task-incremental, no forgetting of earlier tasks' adapters).
    ``orthogonal_lambda > 0`` adds O-LoRA's penalty ``sum |A_new A_old^T|``
    against every earlier adapter. The optimiser holds exactly the trainable
    adapter factors (and each adapter's digital output bias with
    ``adapter_bias=True``, PEFT's ``lora_bias``); pass ``optimizer=None`` to get
    Adam with ``lr``. ``mask_unseen_classes=True`` adds :class:`SeenClassesMask`:
    output units of classes not trained yet are masked, as Avalanche's
    ``IncrementalClassifier`` does (a frozen base's confident head otherwise
    drives the feature LoRA branches to dead ReLUs).
    """

    def __init__(self, *, model: HybridModel, optimizer: torch.optim.Optimizer | None = None, lr: float = 1e-2,
                 rank: int = 4, alpha: float = 8.0, adapter_policy: str = "shared",
                 target_modules: Sequence[str] | None = None, rank_scaling: bool = True,
                 orthogonal_lambda: float = 0.0, adapter_seed: int = 0, adapter_bias: bool = True,
                 mask_unseen_classes: bool = True, criterion=None, train_mb_size: int = 32,
                 train_epochs: int = 1, eval_mb_size: int = 256, device="cpu", plugins=None, evaluator=None,
                 eval_every: int = -1, **base_kwargs) -> None:
        if not isinstance(model, HybridModel):
            raise ValueError(f"model must be a HybridModel (see convert_to_hybrid), got {type(model).__name__}")
        if not model.programmed:
            raise ValueError("model must be programmed before continual learning; call model.program(seed)")
        if adapter_policy not in POLICIES:
            raise ValueError(f"adapter_policy must be one of {POLICIES}, got {adapter_policy!r}")
        check_int(rank, "rank", 1)
        if orthogonal_lambda < 0:
            raise ValueError(f"orthogonal_lambda must be >= 0, got {orthogonal_lambda!r}")
        if optimizer is None:
            # placeholder group, replaced in make_optimizer once the adapter exists
            optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=lr)
        plugins = list(plugins or [])
        if not any(isinstance(p, HardwareCostPlugin) for p in plugins):
            plugins.append(HardwareCostPlugin())
        if mask_unseen_classes and not any(isinstance(p, SeenClassesMask) for p in plugins):
            plugins.append(SeenClassesMask())
        self.rank, self.alpha, self.adapter_policy = rank, float(alpha), adapter_policy
        self.target_modules = None if target_modules is None else list(target_modules)
        self.rank_scaling, self.orthogonal_lambda, self.adapter_seed = rank_scaling, orthogonal_lambda, adapter_seed
        self.adapter_bias = adapter_bias
        self.trainable_adapters: list[str] = []
        super().__init__(model=model, optimizer=optimizer, criterion=criterion or CrossEntropyLoss(),
                         train_mb_size=train_mb_size, train_epochs=train_epochs, eval_mb_size=eval_mb_size,
                         device=device, plugins=plugins,
                         evaluator=evaluator if evaluator is not None else _default_evaluator,
                         eval_every=eval_every, **base_kwargs)

    # ------------------------------------------------------------ adapters
    def adapter_for(self, experience) -> str:
        if self.adapter_policy == "shared":
            return "shared"
        labels = getattr(experience, "task_labels", None) or [0]
        if len(labels) != 1:
            raise ValueError(f"per_task adapters need one task label per experience, got {labels}")
        return f"task{labels[0]}"

    def model_adaptation(self, model=None):
        model = super().model_adaptation(model)
        name = self.adapter_for(self.experience)
        if self.is_training:
            if name not in model.adapter_names:
                model.add_adapter(name, rank=self.rank, alpha=self.alpha, target_modules=self.target_modules,
                                  rank_scaling=self.rank_scaling,
                                  seed=self.adapter_seed + len(model.adapter_names), activate=False,
                                  bias=self.adapter_bias)
            for p in model.adapter_parameters():
                p.requires_grad_(False)
            for p in model.adapter_parameters([name]):
                p.requires_grad_(True)
            self.trainable_adapters = [name]
            model.set_active_adapters([name])
        else:
            model.set_active_adapters([name] if name in model.adapter_names else [])
        return model

    def make_optimizer(self, reset_optimizer_state: bool = False, **kwargs):
        """The optimiser's only group becomes exactly the trainable adapter factors."""
        params = self.model.adapter_parameters(self.trainable_adapters)
        defaults = dict(self.optimizer.defaults)
        self.optimizer.param_groups.clear()
        self.optimizer.state.clear()
        self.optimizer.add_param_group({"params": params, **{k: v for k, v in defaults.items() if k != "params"}})

    def criterion(self):
        loss = super().criterion()
        if self.is_training and self.orthogonal_lambda > 0 and self.trainable_adapters:
            loss = loss + self.orthogonal_lambda * self.orthogonality_penalty(self.trainable_adapters[0])
        return loss

    def orthogonality_penalty(self, new: str, old: Iterable[str] | None = None) -> torch.Tensor:
        """O-LoRA: ``sum_layers sum_old |A_new A_old^T|_1``."""
        model: HybridModel = self.model
        old = [n for n in (old if old is not None else model.adapter_names) if n != new]
        total = torch.zeros((), device=self.device)
        for layer in model.hybrid_layers():
            if new not in layer.lora_A:
                continue
            a_new = layer.lora_A[new].reshape(layer.r[new], -1)
            for o in old:
                if o in layer.lora_A:
                    total = total + (a_new @ layer.lora_A[o].detach().reshape(layer.r[o], -1).t()).abs().sum()
        return total
