"""Exact unlearning on adapters: SISA (Bourtoule et al., S&P 2021) over LoRA adapters of one chip.

Training data are split into shards (a stable hash of the sample id, or one
shard per owner) and each shard into slices (a hash again, so removing samples
never moves the others). Each shard trains in stages: stage ``s`` trains on
slices ``0..s`` from the checkpoint of stage ``s - 1``, with every random draw
(initialisation, order, dropout, read noise) fixed by (shard, stage). A stage
depends on nothing but its own shard's data: in particular its output mask is
the classes the base was trained on plus the classes present in those slices,
never a class set shared with other shards. Forgetting samples therefore
retrains only the shards that held them, from the first stage that saw them,
and gives bit for bit the adapters that training without the samples would
have given; a shard whose data are all forgotten is dropped. The analogue
cells are never written.

Two layouts share the engine:

- *ensemble* (``shared_adapter=None``, the Avalanche strategy): every shard
  keeps its own adapter ``shard<k>`` and prediction averages the shards' class
  probabilities, each under its own mask;
- *shared slot* (``shared_adapter="fl"``, a Flower client): every round, every
  shard starts from the round's global adapter (:meth:`ShardedAdapters.begin_round`),
  trains in the one adapter slot in turn, and the client sends the size-weighted
  average of the shards' results (:meth:`ShardedAdapters.average`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..hardware.array import sub_seed
from ..nn.model import HybridModel
from ..validation import check_int, check_number
from .registry import DataRegistry

SHARD_BY = ("hash", "owner")


@dataclass
class Shard:
    """One shard's training history: enough to retrain any suffix of its stages."""

    key: int
    adapter: str
    slices: list[torch.Tensor] = field(default_factory=list)    # sample ids per slice, in training order
    checkpoints: list[dict] = field(default_factory=list)       # adapter state after each stage
    initial: dict = field(default_factory=dict)                 # adapter state before the first stage

    def ids(self) -> torch.Tensor:
        return torch.cat(self.slices) if self.slices else torch.zeros(0, dtype=torch.long)


class ShardedAdapters:
    """SISA shards of LoRA adapters over one programmed :class:`HybridModel` and a :class:`DataRegistry`.

    ``seed`` and ``tags`` fix every draw: shard and slice assignment use
    ``(seed, "shard"|"slice", sample id)``; a stage's initialisation, order and
    noise use ``(seed, *tags, purpose, shard, stage)`` (:meth:`begin_round`
    changes ``tags``, e.g. to the federated round). ``mask_classes=True``
    trains every stage under its own output mask (see the module docstring);
    ``False`` trains every output unit.
    """

    def __init__(self, model: HybridModel, registry: DataRegistry, *, n_shards: int = 4, n_slices: int = 2,
                 shard_by: str = "hash", rank: int = 4, alpha: float = 8.0, bias: bool = True, lr: float = 1e-2,
                 epochs: int = 5, batch_size: int = 32, seed: int = 0, device="cpu", mask_classes: bool = True,
                 shared_adapter: str | None = None, tags: tuple = ()) -> None:
        if not isinstance(model, HybridModel):
            raise ValueError(f"model must be a HybridModel, got {type(model).__name__}")
        if shard_by not in SHARD_BY:
            raise ValueError(f"shard_by must be one of {SHARD_BY}, got {shard_by!r}")
        for name, v in (("n_shards", n_shards), ("n_slices", n_slices), ("epochs", epochs), ("rank", rank),
                        ("batch_size", batch_size)):
            check_int(v, name, 1)
        check_number(lr, "lr", 0.0, strict=True)
        check_int(seed, "seed", 0)
        if shared_adapter is not None and shared_adapter not in model.adapter_names:
            raise ValueError(f"shared adapter {shared_adapter!r} is not an adapter of the model "
                             f"({model.adapter_names})")
        self.model, self.registry = model, registry
        self.n_shards, self.n_slices, self.shard_by = n_shards, n_slices, shard_by
        self.rank, self.alpha, self.bias, self.lr = rank, float(alpha), bias, float(lr)
        self.epochs, self.batch_size, self.seed, self.device = epochs, batch_size, seed, device
        self.mask_classes, self.shared_adapter, self.tags = mask_classes, shared_adapter, tuple(tags)
        self.shards: dict[int, Shard] = {}
        self._round_start: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------ assignment
    def _hash(self, purpose: str, ids: torch.Tensor, n: int) -> torch.Tensor:
        return torch.tensor([sub_seed(self.seed, purpose, int(i)) % n for i in ids.tolist()], dtype=torch.long)

    def shard_of(self, ids: torch.Tensor) -> torch.Tensor:
        """Shard of each registered sample id (its owner with ``shard_by="owner"``)."""
        if self.shard_by == "owner":
            pos = self.registry.positions(ids)
            return self.registry.owners[pos].clone()
        return self._hash("shard", ids, self.n_shards)

    def slice_of(self, ids: torch.Tensor) -> torch.Tensor:
        return self._hash("slice", ids, self.n_slices)

    def _stage_seed(self, purpose: str, key: int, stage: int) -> int:
        return sub_seed(self.seed, *self.tags, purpose, key, stage)

    def _shard(self, key: int) -> Shard:
        if key not in self.shards:
            if self.shared_adapter is None:
                name = f"shard{key}"
                self.model.add_adapter(name, rank=self.rank, alpha=self.alpha, seed=sub_seed(self.seed, "init", key),
                                       activate=False, bias=self.bias)
                st = Shard(key, name, initial=self.model.adapter_state_dict(name))
            else:
                st = Shard(key, self.shared_adapter, initial=dict(self._round_start))
            self.shards[key] = st
        return self.shards[key]

    @property
    def adapters(self) -> list[str]:
        """The shards' adapters (ensemble layout)."""
        return [s.adapter for s in self.shards.values()]

    # ------------------------------------------------------------ training
    def begin_round(self, start: dict[str, torch.Tensor], tags: tuple = ()) -> None:
        """Shared-slot layout: every shard starts again from ``start`` (the round's global adapter)."""
        if self.shared_adapter is None:
            raise RuntimeError("begin_round is for the shared-slot layout (shared_adapter=...)")
        self._round_start = {k: v.detach().clone() for k, v in start.items()}
        self.tags = tuple(tags)
        self.shards = {}

    def _route(self, ids: torch.Tensor) -> dict[int, list[torch.Tensor]]:
        """New slices per shard for ``ids`` (in their order), non-empty only."""
        shard, slc = self.shard_of(ids), self.slice_of(ids)
        out: dict[int, list[torch.Tensor]] = {}
        for key in sorted(set(shard.tolist())):
            out[key] = [sel for s in range(self.n_slices) if len(sel := ids[(shard == key) & (slc == s)])]
        return out

    def learn(self, ids: torch.Tensor) -> list[int]:
        """Route newly registered samples to shards and slices and train every new stage; returns the shards
        touched."""
        touched = []
        for key, slices in self._route(ids).items():
            st = self._shard(key)
            first_new = len(st.slices)
            st.slices += slices
            self._retrain_from(st, first_new)
            touched.append(key)
        self._activate()
        return touched

    def restore_round(self, start: dict[str, torch.Tensor], tags: tuple, ids: torch.Tensor,
                      finals: dict[int, dict[str, torch.Tensor]]) -> None:
        """Shared-slot layout, one slice per shard: rebuild a round trained by :meth:`learn` on ``ids`` from its
        start and each shard's final adapter (what a client keeps between messages), without training."""
        if self.n_slices != 1:
            raise ValueError(f"restore_round keeps one state per shard and needs n_slices=1, got {self.n_slices}")
        self.begin_round(start, tags)
        routed = self._route(ids)
        if set(routed) != set(finals):
            raise ValueError(f"stored shards {sorted(finals)} do not match the data's shards {sorted(routed)}")
        for key, slices in routed.items():
            st = self._shard(key)
            st.slices, st.checkpoints = slices, [finals[key]]

    def stage_classes(self, st: Shard, stage: int) -> list[int]:
        """Output classes stage ``stage`` of ``st`` trains under: the base's classes and its own data's."""
        ids = torch.cat(st.slices[: stage + 1])
        own = self.registry.y[self.registry.positions(ids)]
        return sorted(set(self.model.base_classes) | set(own.tolist()))

    def _train_stage(self, st: Shard, stage: int) -> None:
        model = self.model
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
        gen = torch.Generator().manual_seed(self._stage_seed("order", st.key, stage))
        noise = self._stage_seed("noise", st.key, stage)
        keep_mask = model.output_classes
        model.set_output_classes(self.stage_classes(st, stage) if self.mask_classes else None)
        model.train()
        try:
            # a stage's draws (dropout, read noise) depend only on (shard, stage): retraining reproduces them
            with torch.random.fork_rng(devices=[]), model.fork_read_noise(noise):
                torch.manual_seed(noise)
                for _ in range(self.epochs):
                    perm = torch.randperm(len(y), generator=gen).to(self.device)
                    for i in range(0, len(y), self.batch_size):
                        b = perm[i:i + self.batch_size]
                        opt.zero_grad()
                        F.cross_entropy(model(x[b]), y[b]).backward()
                        opt.step()
        finally:
            model.set_output_classes(keep_mask)
        st.checkpoints = st.checkpoints[:stage] + [model.adapter_state_dict(st.adapter)]

    def _retrain_from(self, st: Shard, stage: int) -> None:
        """Restore the state before ``stage`` and train every stage from there on."""
        self.model.load_adapter_state_dict(st.adapter, st.initial if stage == 0 else st.checkpoints[stage - 1])
        st.checkpoints = st.checkpoints[:stage]
        for r in range(stage, len(st.slices)):
            self._train_stage(st, r)

    def _activate(self) -> None:
        if self.shared_adapter is None:
            self.model.set_active_adapters(self.adapters)

    # ------------------------------------------------------------ forgetting
    def forget(self, ids: torch.Tensor) -> dict:
        """Retrain every shard that held any of ``ids`` from the first stage that saw them (drop a shard whose
        data are all forgotten); the registry still holds the rows. Returns what changed."""
        affected, dropped = [], []
        for key, st in list(self.shards.items()):
            hits = [k for k, s in enumerate(st.slices) if bool(torch.isin(s, ids).any())]
            if not hits:
                continue
            if int((~torch.isin(st.ids(), ids)).sum()) == 0:
                # everything this shard saw is forgotten: drop it (exact, no training)
                if self.shared_adapter is None:
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
        self._activate()
        return {"retrained_shards": affected, "dropped_shards": dropped}

    # ------------------------------------------------------------ prediction / aggregation
    def shard_classes(self, st: Shard) -> list[int] | None:
        """The output mask of a shard's final stage (``None``: unmasked)."""
        if not self.mask_classes or not st.slices:
            return None
        return self.stage_classes(st, len(st.slices) - 1)

    def aggregate(self, x: torch.Tensor) -> torch.Tensor:
        """Ensemble layout: log of the mean of the shards' class probabilities, each under its own mask."""
        model = self.model
        if not self.shards:
            return model(x)
        keep_active, keep_mask = model.active_adapters, model.output_classes
        probs = 0
        try:
            for st in self.shards.values():
                model.set_active_adapters([st.adapter])
                model.set_output_classes(self.shard_classes(st))
                probs = probs + F.softmax(model(x), dim=-1)
        finally:
            model.set_active_adapters(keep_active)
            model.set_output_classes(keep_mask)
        return torch.log(probs / len(self.shards) + 1e-12)

    def average(self) -> tuple[dict[str, torch.Tensor], int]:
        """Shared-slot layout: the shards' final adapters averaged by shard size (loaded into the slot), and the
        number of samples behind it."""
        states, weights = [], []
        for st in self.shards.values():
            if st.checkpoints:
                states.append(st.checkpoints[-1])
                weights.append(len(st.ids()))
        if not states:
            avg = dict(self._round_start)
        else:
            avg = weighted_average(states, weights)
        self.model.load_adapter_state_dict(self.shared_adapter, avg)
        return avg, sum(weights)


def weighted_average(states: list[dict[str, torch.Tensor]], weights: list[int | float]) -> dict[str, torch.Tensor]:
    """Element-wise average of state dicts weighted by ``weights`` (float64 accumulation, float32 result):
    the one averaging rule of shards and of the federation's FedAvg."""
    if not states:
        raise ValueError("nothing to average")
    total = float(sum(weights))
    if total <= 0:
        raise ValueError(f"weights must sum to > 0, got {weights}")
    return {k: sum(s[k].double() * (w / total) for s, w in zip(states, weights)).float() for k in states[0]}
