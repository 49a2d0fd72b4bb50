"""Exact unlearning on adapters: SISA (Bourtoule et al., S&P 2021) with one LoRA adapter per shard.

Training data are split into shards (by a hash of the sample id, or one shard
per owner); each shard trains its own adapter on the frozen analogue base, in
slices, keeping an adapter checkpoint after each slice stage. A forget request
retrains only the affected shards from their last clean checkpoint (or drops a
shard's adapter when the request covers all of its data). Prediction averages
the shards' class probabilities. The analogue cells are never written.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from avalanche.training.templates import SupervisedTemplate
from torch.nn import CrossEntropyLoss

from ..nn.model import HybridModel
from .forgetting import ForgetMixin
from .plugins import SeenClassesMask
from ..validation import check_int

SHARD_BY = ("hash", "owner")


def _eval_only_evaluator():
    """Avalanche's default metrics without the training-epoch ones: shards train outside Avalanche's
    iteration loop, so epoch loss/accuracy would read 0 (evaluation metrics are real)."""
    from avalanche.evaluation.metrics import accuracy_metrics, loss_metrics
    from avalanche.training.plugins.evaluation import EvaluationPlugin, default_loggers

    return EvaluationPlugin(accuracy_metrics(experience=True, stream=True), loss_metrics(experience=True, stream=True),
                            loggers=default_loggers)


def _seed(*tags) -> int:
    h = hashlib.blake2b(repr(tags).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 62) - 1)


@dataclass
class ShardState:
    key: int
    adapter: str
    slices: list[torch.Tensor] = field(default_factory=list)   # sample ids per slice, in training order
    checkpoints: list[dict] = field(default_factory=list)      # adapter state after each stage
    initial: dict = field(default_factory=dict)                # adapter state before any training

    def ids(self) -> torch.Tensor:
        return torch.cat(self.slices) if self.slices else torch.zeros(0, dtype=torch.long)


class ShardedLoRAUnlearning(ForgetMixin, SupervisedTemplate):
    """SISA on LoRA adapters over a programmed :class:`HybridModel`.

    ``n_slices`` slices per shard per experience (assigned by a hash of the
    sample id, so removing samples never moves the others); each stage trains
    on the shard's slices up to it for ``epochs_per_slice`` epochs, from the
    previous stage's checkpoint, with seeds fixed by (shard, stage): retraining
    after a deletion reproduces bit for bit the adapter that training without
    the deleted samples would have produced.
    """

    def __init__(self, *, model: HybridModel, n_shards: int = 4, n_slices: int = 2, shard_by: str = "hash",
                 rank: int = 4, alpha: float = 8.0, adapter_bias: bool = True, lr: float = 1e-2,
                 epochs_per_slice: int = 5, train_mb_size: int = 32, eval_mb_size: int = 256, seed: int = 0,
                 trust=None, audit_path=None, eval_data=None, device="cpu", plugins=None,
                 evaluator=None, mask_unseen_classes: bool = True, audit_key=None, store_path=None,
                 **base_kwargs) -> None:
        if not isinstance(model, HybridModel) or not model.programmed:
            raise ValueError("model must be a programmed HybridModel")
        if shard_by not in SHARD_BY:
            raise ValueError(f"shard_by must be one of {SHARD_BY}, got {shard_by!r}")
        for name, v in (("n_shards", n_shards), ("n_slices", n_slices), ("epochs_per_slice", epochs_per_slice),
                        ("rank", rank)):
            check_int(v, name, 1)
        self.n_shards, self.n_slices, self.shard_by = n_shards, n_slices, shard_by
        self.rank, self.alpha, self.adapter_bias, self.lr = rank, float(alpha), adapter_bias, lr
        self.epochs_per_slice, self.seed = epochs_per_slice, seed
        self.shards: dict[int, ShardState] = {}
        self._init_forgetting(trust, audit_path, eval_data, audit_key=audit_key, store_path=store_path)
        placeholder = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=lr)
        plugins = list(plugins or [])
        if mask_unseen_classes and not any(isinstance(p, SeenClassesMask) for p in plugins):
            plugins.append(SeenClassesMask())  # the same output rule as HybridLoRA
        super().__init__(model=model, optimizer=placeholder, criterion=CrossEntropyLoss(),
                         train_mb_size=train_mb_size, train_epochs=1, eval_mb_size=eval_mb_size, device=device,
                         plugins=plugins, evaluator=evaluator if evaluator is not None else _eval_only_evaluator,
                         **base_kwargs)

    # ------------------------------------------------------------ sharding
    def shard_of(self, ids: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:
        if self.shard_by == "owner":
            return owners.clone()
        return torch.tensor([_seed(self.seed, "shard", int(i)) % self.n_shards for i in ids], dtype=torch.long)

    def slice_of(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.tensor([_seed(self.seed, "slice", int(i)) % self.n_slices for i in ids], dtype=torch.long)

    def _shard(self, key: int) -> ShardState:
        if key not in self.shards:
            name = f"shard{key}"
            self.model.add_adapter(name, rank=self.rank, alpha=self.alpha, seed=_seed(self.seed, "init", key),
                                   activate=False, bias=self.adapter_bias)
            st = ShardState(key, name)
            st.initial = self.model.adapter_state_dict(name)
            self.shards[key] = st
        return self.shards[key]

    # ------------------------------------------------------------ training
    def training_epoch(self, **kwargs):
        """Learn one experience: route its samples to shards and train the new slice stages."""
        x, y, ids, owners = self.register_experience(self.experience)
        shard = self.shard_of(ids, owners)
        slc = self.slice_of(ids)
        touched = []
        for key in sorted(set(shard.tolist())):
            st = self._shard(key)
            first_new = len(st.slices)
            for s in range(self.n_slices):
                sel = ids[(shard == key) & (slc == s)]
                if len(sel):
                    st.slices.append(sel)
            self._retrain_from(st, first_new)
            touched.append(key)
        self.model.set_active_adapters([s.adapter for s in self.shards.values()])
        return touched

    def _train_stage(self, st: ShardState, stage: int) -> None:
        model: HybridModel = self.model
        ids = torch.cat(st.slices[: stage + 1])
        x, y = self.registry.take(ids)
        x, y = x.to(self.device), y.to(self.device)
        params = model.adapter_parameters([st.adapter])
        for p in model.adapter_parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        model.set_active_adapters([st.adapter])
        opt = torch.optim.Adam(params, lr=self.lr)
        model.attach_optimizer(opt)
        gen = torch.Generator().manual_seed(_seed(self.seed, "order", st.key, stage))
        model.train()
        # a stage's draws (dropout, read noise) depend only on (shard, stage): retraining reproduces them
        with torch.random.fork_rng(devices=[]), model.fork_read_noise(_seed(self.seed, "noise", st.key, stage)):
            torch.manual_seed(_seed(self.seed, "noise", st.key, stage))
            for _ in range(self.epochs_per_slice):
                perm = torch.randperm(len(y), generator=gen).to(self.device)
                for i in range(0, len(y), self.train_mb_size):
                    b = perm[i:i + self.train_mb_size]
                    opt.zero_grad()
                    F.cross_entropy(model(x[b]), y[b]).backward()
                    opt.step()
        st.checkpoints = st.checkpoints[:stage] + [model.adapter_state_dict(st.adapter)]

    def _retrain_from(self, st: ShardState, stage: int) -> None:
        """Restore the checkpoint before ``stage`` and train every stage from there on."""
        self.model.load_adapter_state_dict(st.adapter, st.initial if stage == 0 else st.checkpoints[stage - 1])
        st.checkpoints = st.checkpoints[:stage]
        for r in range(stage, len(st.slices)):
            self._train_stage(st, r)

    # ------------------------------------------------------------ prediction
    def forward(self):
        if self.is_training:
            return super().forward()
        return self.aggregate(self.mb_x)

    def aggregate(self, x: torch.Tensor) -> torch.Tensor:
        """Log of the mean of the shards' class probabilities (SISA's averaging)."""
        model: HybridModel = self.model
        names = [s.adapter for s in self.shards.values()]
        if not names:
            return model(x)
        probs = 0
        for n in names:
            model.set_active_adapters([n])
            probs = probs + F.softmax(model(x), dim=-1)
        model.set_active_adapters(names)
        return torch.log(probs / len(names) + 1e-12)

    def model_for_forgetting(self):
        return _Aggregated(self)

    # ------------------------------------------------------------ forgetting
    def _apply_forget(self, ids: torch.Tensor, request) -> dict:
        affected, dropped = [], []
        for key, st in list(self.shards.items()):
            hits = [k for k, s in enumerate(st.slices) if bool(torch.isin(s, ids).any())]
            if not hits:
                continue
            remaining = int((~torch.isin(st.ids(), ids)).sum())
            if remaining == 0:
                # everything this adapter saw is forgotten: drop it (exact, no training)
                self.model.delete_adapter(st.adapter)
                del self.shards[key]
                dropped.append(key)
                continue
            first = hits[0]
            st.slices = [s[~torch.isin(s, ids)] for s in st.slices]
            keep = [k for k, s in enumerate(st.slices) if len(s)]
            if len(keep) != len(st.slices):  # an emptied slice shifts later stages: retrain from it
                first = min(first, next(k for k in range(len(st.slices)) if k not in keep))
                st.slices = [st.slices[k] for k in keep]
            self._retrain_from(st, min(first, len(st.slices)))
            affected.append(key)
        self.model.set_active_adapters([s.adapter for s in self.shards.values()])
        return {"retrained_shards": affected, "dropped_shards": dropped}


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
