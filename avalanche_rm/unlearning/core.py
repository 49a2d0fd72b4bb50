"""The one path every forget request takes, for Avalanche strategies and Flower clients alike.

:meth:`ForgetCore.honour`: authorise and resolve the request (refused requests
change nothing), verify the model on the data to forget, apply the method
(the caller's ``apply``: retrain shards, train an unlearning adapter, ...),
verify again while the data are still at hand, then purge them everywhere the
caller names (the registry always) and append an audit record that keeps ids
and a keyed digest, never the data.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable

import torch

from ..costs.ledger import CostLedger
from .audit import AuditLog
from .metrics import verify
from .registry import DataRegistry
from .requests import ForgetRequest

Apply = Callable[[torch.Tensor, ForgetRequest], dict]
Purge = tuple[str, Callable[[torch.Tensor], int]]

#: ledger quantities an audit record reports
COST_KEYS = ("energy_pj", "latency_ns", "pulses", "cells_programmed", "digital_macs", "dram_bytes")


class ForgetCore:
    """Registry, authorisation, verification, purge and audit of forget requests."""

    def __init__(self, admins: Iterable[str] = ("controller",), audit: AuditLog | None = None,
                 eval_data: tuple[torch.Tensor, torch.Tensor] | None = None, with_mia: bool = True,
                 seed: int = 0) -> None:
        self.registry = DataRegistry()
        self.admins = set(admins)
        self.audit = audit if audit is not None else AuditLog()
        self.eval_data = eval_data
        self.with_mia = with_mia
        self.seed = seed
        self.forgotten_ids = torch.zeros(0, dtype=torch.long)

    def resolve(self, request: ForgetRequest) -> torch.Tensor:
        return self.registry.resolve(request, self.admins)

    def honour(self, request: ForgetRequest, *, model, ledger: CostLedger, apply: Apply,
               purge: Iterable[Purge] = (), who: str = "", verify_model=None) -> dict:
        """Honour ``request`` on ``model`` (or raise :class:`ForgetRefused` with nothing changed).

        ``apply(ids, request)`` does the unlearning and returns what it changed;
        it runs inside ledger phase ``unlearn``. ``purge`` lists ``(name,
        drop(ids) -> count or {part: what it removed})`` for every place outside the registry that may hold
        the data. ``verify_model`` (default ``model``) is what the metrics read.
        Returns the audit record.
        """
        ids = self.resolve(request)
        target = verify_model if verify_model is not None else model
        mask = self.registry.mask(ids)
        ids_in_order = self.registry.ids[mask]
        forget, retain = self.registry.split(ids)
        before = verify(target, forget, retain, self.eval_data, request.classes, self.with_mia, self.seed)
        snap = ledger.snapshot()
        t0 = time.perf_counter()
        with ledger.phase("unlearn"):
            detail = apply(ids, request)
        wall = time.perf_counter() - t0
        after = verify(target, forget, retain, self.eval_data, request.classes, self.with_mia, self.seed)
        digest = self.audit.digest(ids_in_order, *forget)
        del forget, retain
        purged = {"registry": self.registry.remove(ids)}
        for name, drop in purge:
            out = drop(ids)
            purged[name] = out if isinstance(out, dict) else int(out)  # a count, or what each part gave up
        self.forgotten_ids = torch.cat([self.forgotten_ids, ids])
        spent = ledger.total_since(snap)
        record = {"request": request.to_dict(), "by": who, "n_samples": int(len(ids)),
                  "sample_ids": sorted(int(i) for i in ids), "data_digest": digest, "affected": detail,
                  "purged": purged, "metrics_before": before, "metrics_after": after,
                  "cost": {k: spent.get(k, 0.0) for k in COST_KEYS}, "wall_time_s": wall}
        return self.audit.append(record)
