"""Exact unlearning on adapters as an Avalanche strategy: SISA over LoRA adapters (the engine is
:class:`avalanche_rm.unlearning.sisa.ShardedAdapters`; this class connects it to Avalanche's loop).
"""
from __future__ import annotations

import torch
from avalanche.training.templates import SupervisedTemplate
from torch.nn import CrossEntropyLoss

from ..nn.model import HybridModel
from ..unlearning.sisa import SHARD_BY, ShardedAdapters
from .forgetting import ForgetMixin
from ..validation import check_int


def _eval_only_evaluator():
    """Avalanche's default metrics without the training-epoch ones: shards train outside Avalanche's
    iteration loop, so epoch loss/accuracy would read 0 (evaluation metrics are real)."""
    from avalanche.evaluation.metrics import accuracy_metrics, loss_metrics
    from avalanche.training.plugins.evaluation import EvaluationPlugin, default_loggers

    return EvaluationPlugin(accuracy_metrics(experience=True, stream=True), loss_metrics(experience=True, stream=True),
                            loggers=default_loggers)


class ShardedLoRAUnlearning(ForgetMixin, SupervisedTemplate):
    """SISA on LoRA adapters over a programmed :class:`HybridModel` (exact unlearning, no cell written).

    ``n_slices`` slices per shard per experience; each stage trains on the
    shard's slices up to it for ``epochs_per_slice`` epochs from the previous
    stage's checkpoint, with seeds fixed by (shard, stage) and under its own
    output mask (the base's classes and its data's): retraining after a
    deletion reproduces bit for bit the adapters that training without the
    deleted samples (or classes) would have produced. Prediction averages the
    shards' class probabilities. ``mask_unseen_classes=False`` trains every
    output unit instead.
    """

    forget_kinds = ("sisa",)

    def __init__(self, *, model: HybridModel, n_shards: int = 4, n_slices: int = 2, shard_by: str = "hash",
                 rank: int = 4, alpha: float = 8.0, adapter_bias: bool = True, lr: float = 1e-2,
                 epochs_per_slice: int = 5, train_mb_size: int = 32, eval_mb_size: int = 256, seed: int = 0,
                 trust=None, audit_path=None, eval_data=None, device="cpu", plugins=None,
                 evaluator=None, mask_unseen_classes: bool = True, audit_key=None, store_path=None,
                 judge_policy=None, **base_kwargs) -> None:
        if not isinstance(model, HybridModel) or not model.programmed:
            raise ValueError("model must be a programmed HybridModel")
        if shard_by not in SHARD_BY:
            raise ValueError(f"shard_by must be one of {SHARD_BY}, got {shard_by!r}")
        check_int(train_mb_size, "train_mb_size", 1)
        self._init_forgetting(trust, audit_path, eval_data, audit_key=audit_key, store_path=store_path,
                              judge_policy=judge_policy)
        self.sisa = ShardedAdapters(model, self.registry, n_shards=n_shards, n_slices=n_slices, shard_by=shard_by,
                                    rank=rank, alpha=alpha, bias=adapter_bias, lr=lr, epochs=epochs_per_slice,
                                    batch_size=train_mb_size, seed=seed, device=device,
                                    mask_classes=mask_unseen_classes)
        placeholder = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=lr)
        super().__init__(model=model, optimizer=placeholder, criterion=CrossEntropyLoss(),
                         train_mb_size=train_mb_size, train_epochs=1, eval_mb_size=eval_mb_size, device=device,
                         plugins=plugins, evaluator=evaluator if evaluator is not None else _eval_only_evaluator,
                         **base_kwargs)

    @property
    def shards(self):
        return self.sisa.shards

    # ------------------------------------------------------------ training
    def training_epoch(self, **kwargs):
        """Learn one experience: route its samples to shards and train the new slice stages."""
        _, _, ids, _ = self.register_experience(self.experience)
        self.sisa.model = self.model  # Avalanche may have moved or adapted the model
        self.sisa.device = self.device
        return self.sisa.learn(ids)

    # ------------------------------------------------------------ prediction
    def forward(self):
        if self.is_training:
            return super().forward()
        return self.aggregate(self.mb_x)

    def aggregate(self, x: torch.Tensor) -> torch.Tensor:
        """Log of the mean of the shards' class probabilities (SISA's averaging)."""
        return self.sisa.aggregate(x)

    def model_for_forgetting(self):
        return _Aggregated(self)

    # ------------------------------------------------------------ forgetting
    def forget_defaults(self) -> tuple[str, None]:
        return "exact", None

    def _apply_forget(self, ids: torch.Tensor, request, method, options) -> dict:
        return self.sisa.forget(ids)


class _Aggregated(torch.nn.Module):
    """The shard ensemble seen as one model (for verification metrics)."""

    def __init__(self, strategy: ShardedLoRAUnlearning) -> None:
        super().__init__()
        self._s = [strategy]
        self.ledger = strategy.model.ledger

    def forward(self, x):
        return self._s[0].aggregate(x)

    def parameters(self, recurse: bool = True):
        return self._s[0].model.parameters(recurse)

    def buffers(self, recurse: bool = True):
        return self._s[0].model.buffers(recurse)

    def state_dict(self, *args, **kwargs):
        return self._s[0].model.state_dict(*args, **kwargs)
