"""Honouring forget requests: the data registry, authorisation, audit records.

Every strategy that can forget mixes in :class:`ForgetMixin`. It keeps a
registry of the samples the strategy has learned (id, owner, input, label),
resolves a :class:`ForgetRequest` to sample ids *before* changing anything,
refuses requests that name unknown data or come from the wrong requester, and
writes one JSON audit record per honoured request.
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch

from ..benchmarks.forget import ForgetRequest


class ForgetRefused(ValueError):
    """A forget request that cannot be honoured; nothing was changed."""


def dataset_tensors(dataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x, y, sample_ids, owners)`` of an Avalanche dataset built by :func:`tensor_dataset`."""
    if not hasattr(dataset, "sample_ids") or not hasattr(dataset, "owners"):
        raise ValueError("dataset needs 'sample_ids' and 'owners' attributes (see benchmarks.tensor_dataset)")
    xs, ys = [], []
    for i in range(len(dataset)):
        item = dataset[i]
        xs.append(item[0])
        ys.append(int(item[1]))
    x = torch.stack(xs) if xs else torch.zeros(0)
    return (x, torch.tensor(ys, dtype=torch.long), torch.tensor([int(v) for v in dataset.sample_ids]),
            torch.tensor([int(v) for v in dataset.owners]))


@dataclass
class DataRegistry:
    """Samples a strategy has learned and not forgotten (kept in the digital host, not on the chip)."""

    x: torch.Tensor | None = None
    y: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    ids: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    owners: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))

    def add(self, x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor, owners: torch.Tensor) -> None:
        dup = torch.isin(ids, self.ids)
        if bool(dup.any()):
            raise ValueError(f"sample ids already learned: {ids[dup][:10].tolist()}")
        self.x = x.clone() if self.x is None else torch.cat([self.x, x])
        self.y = torch.cat([self.y, y])
        self.ids = torch.cat([self.ids, ids])
        self.owners = torch.cat([self.owners, owners])

    def __len__(self) -> int:
        return len(self.ids)

    def mask(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.isin(self.ids, ids)

    def take(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and labels of ``ids`` in the order given."""
        pos = {int(i): k for k, i in enumerate(self.ids.tolist())}
        rows = torch.tensor([pos[int(i)] for i in ids], dtype=torch.long)
        return self.x[rows], self.y[rows]

    def split(self, forget_ids: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        m = self.mask(forget_ids)
        return (self.x[m], self.y[m]), (self.x[~m], self.y[~m])

    def remove(self, ids: torch.Tensor) -> None:
        keep = ~self.mask(ids)
        self.x, self.y, self.ids, self.owners = self.x[keep], self.y[keep], self.ids[keep], self.owners[keep]


class ForgetMixin:
    """Registry, authorisation and audit shared by every unlearning strategy.

    Authorisation: an owner (``requester`` = owner id) may forget its own
    samples or all of its data; class-level requests need a requester listed in
    ``admins`` (the data controller). A request naming unknown or already
    forgotten ids, or data of another owner, raises :class:`ForgetRefused`
    before anything changes.
    """

    def _init_forgetting(self, admins: Iterable[str] = ("controller",), audit_path: str | Path | None = None,
                         eval_data: tuple[torch.Tensor, torch.Tensor] | None = None, mia_on_forget: bool = True) -> None:
        self.registry = DataRegistry()
        self.admins = set(admins)
        self.audit_log: list[dict] = []
        self.audit_path = Path(audit_path) if audit_path is not None else None
        self.eval_data = eval_data
        self.mia_on_forget = mia_on_forget
        self.forgotten_ids = torch.zeros(0, dtype=torch.long)
        self.forgotten_data: tuple[torch.Tensor, torch.Tensor] | None = None

    # ------------------------------------------------------------ registry
    def register_experience(self, experience) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y, ids, owners = dataset_tensors(experience.dataset)
        self.registry.add(x, y, ids, owners)
        return x, y, ids, owners

    # ------------------------------------------------------------ authorisation
    def resolve(self, request: ForgetRequest) -> torch.Tensor:
        """Sample ids a request covers; raises :class:`ForgetRefused` (nothing changes) if not allowed."""
        if not isinstance(request, ForgetRequest):
            raise ForgetRefused(f"expected a ForgetRequest, got {type(request).__name__}")
        reg = self.registry
        if request.kind == "samples":
            ids = torch.tensor(request.sample_ids, dtype=torch.long)
            known = torch.isin(ids, reg.ids)
            if not bool(known.all()):
                raise ForgetRefused(f"request {request.request_id}: unknown or already forgotten sample ids "
                                    f"{ids[~known][:10].tolist()}")
            owners = reg.owners[reg.mask(ids)]
            if request.requester not in self.admins and bool((owners != _owner_id(request.requester)).any()):
                raise ForgetRefused(f"request {request.request_id}: requester {request.requester!r} does not own "
                                    f"all of the named samples")
            return ids
        if request.kind == "owner":
            if request.requester not in self.admins and _owner_id(request.requester) != request.owner:
                raise ForgetRefused(f"request {request.request_id}: requester {request.requester!r} may not "
                                    f"forget owner {request.owner}'s data")
            ids = reg.ids[reg.owners == request.owner]
            if len(ids) == 0:
                raise ForgetRefused(f"request {request.request_id}: owner {request.owner} has no learned data")
            return ids
        if request.requester not in self.admins:
            raise ForgetRefused(f"request {request.request_id}: class-level forgetting needs a data controller "
                                f"({sorted(self.admins)}), not {request.requester!r}")
        classes = torch.tensor(request.classes, dtype=torch.long)
        ids = reg.ids[torch.isin(reg.y, classes)]
        if len(ids) == 0:
            raise ForgetRefused(f"request {request.request_id}: no learned samples of classes {request.classes}")
        return ids

    # ------------------------------------------------------------ the verb
    def forget(self, request: ForgetRequest) -> dict:
        """Honour ``request`` (or raise :class:`ForgetRefused` with nothing changed); returns the audit record."""
        ids = self.resolve(request)
        model = self.model_for_forgetting()
        ledger = model.ledger
        (xf, yf), (xr, yr) = self.registry.split(ids)
        before = self._verification(model, (xf, yf), (xr, yr), request)
        snap = ledger.snapshot()
        t0 = time.perf_counter()
        with ledger.phase("unlearn"):
            detail = self._apply_forget(ids, request)
        wall = time.perf_counter() - t0
        self.registry.remove(ids)
        detail["purged_from_replay"] = self.purge_replay(ids)
        self.forgotten_ids = torch.cat([self.forgotten_ids, ids])
        self.forgotten_data = (xf, yf) if self.forgotten_data is None else (
            torch.cat([self.forgotten_data[0], xf]), torch.cat([self.forgotten_data[1], yf]))
        after = self._verification(model, (xf, yf), (xr, yr), request)
        spent = ledger.total_since(snap)
        cost = {k: spent.get(k, 0.0) for k in ("energy_pj", "latency_ns", "pulses", "cells_programmed",
                                                "digital_macs")}
        record = {"request": request.to_dict(), "strategy": type(self).__name__, "n_samples": int(len(ids)),
                  "affected": detail, "metrics_before": before, "metrics_after": after, "cost": cost,
                  "wall_time_s": wall, "time": time.time()}
        self.audit_log.append(record)
        if self.audit_path is not None:
            self.audit_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.audit_path, "a") as f:
                f.write(json.dumps(record) + "\n")
        return record

    def purge_replay(self, ids: torch.Tensor) -> int:
        """Drop forgotten samples from every replay buffer (Avalanche keeps them otherwise); returns how many."""
        idset = set(int(i) for i in ids)
        removed = 0
        for plugin in getattr(self, "plugins", []):
            policy = getattr(plugin, "storage_policy", None)
            if policy is None:
                continue
            groups = list(getattr(policy, "buffer_groups", {}).values()) or [policy]
            for group in groups:
                ds = getattr(group, "buffer", None)
                if ds is None or len(ds) == 0 or not hasattr(ds, "sample_ids"):
                    continue
                keep = [k for k, sid in enumerate(ds.sample_ids) if int(sid) not in idset]
                if len(keep) == len(ds):
                    continue
                removed += len(ds) - len(keep)
                group.buffer = ds.subset(keep)
                if hasattr(group, "_buffer_weights") and len(group._buffer_weights) == len(ds):
                    group._buffer_weights = group._buffer_weights[torch.tensor(keep, dtype=torch.long)]
        return removed

    def _verification(self, model, forget, retain, request: ForgetRequest) -> dict:
        """Accuracies and MIA; for class requests the non-member reference is the test data of those classes."""
        from ..evaluation.unlearning_metrics import accuracy_of, mia

        out = {"forget_acc": accuracy_of(model, *forget), "retain_acc": accuracy_of(model, *retain)}
        if self.eval_data is not None:
            xt, yt = self.eval_data
            out["test_acc"] = accuracy_of(model, xt, yt)
            ref = (xt, yt)
            if request.classes is not None:
                m = torch.isin(yt, torch.tensor(request.classes))
                out["test_forget_class_acc"] = accuracy_of(model, xt[m], yt[m])
                out["test_retain_class_acc"] = accuracy_of(model, xt[~m], yt[~m])
                ref = (xt[m], yt[m])
            if self.mia_on_forget and len(forget[1]) > 0 and len(ref[1]) >= 4:
                out.update(mia(model, forget, retain, ref))
        return out

    # hooks for the concrete strategies
    def model_for_forgetting(self):
        return self.model

    def _apply_forget(self, ids: torch.Tensor, request: ForgetRequest) -> dict:
        raise NotImplementedError


def _owner_id(requester) -> int | None:
    return requester if isinstance(requester, int) else None


def snapshot_state(strategy) -> dict:
    """Deep copy of what a refused request must leave untouched (for tests and debugging)."""
    return {"model": copy.deepcopy(strategy.model_for_forgetting().state_dict()),
            "ledger": strategy.model_for_forgetting().ledger.state_dict(),
            "audit": copy.deepcopy(strategy.audit_log), "registry": len(strategy.registry)}
