"""The one path every forget request takes, for Avalanche strategies and Flower clients alike.

:meth:`ForgetCore.honour` validates the request completely before anything
changes (authorisation and ids, then the method, its options and whether this
learner can run it, then the learner's own checks), verifies the model on the
data to forget, runs the method (the learner's ``apply``, built from the
actions in :mod:`.sisa` and :mod:`.approximate`), verifies again while the
data are still at hand, judges the result (:mod:`.judge`), then purges the
data everywhere the learner names (the registry always) and appends an audit
record that keeps ids and a keyed digest, never the data.
"""
from __future__ import annotations

import time
import warnings
from typing import Any, Callable, Iterable, Mapping

import torch

from ..costs.ledger import CostLedger
from .audit import AuditLog
from .judge import ForgetFailed, JudgePolicy, judge
from .methods import Method, check_method, weaker
from .metrics import verify
from .registry import DataRegistry
from .requests import ForgetRefused, ForgetRequest

#: ``apply(ids, request, method, options) -> detail``; ``detail["guarantee"]`` may weaken the method's guarantee
Apply = Callable[[torch.Tensor, ForgetRequest, Method, dict], dict]
Purge = tuple[str, Callable[[torch.Tensor], int]]
#: ``(snapshot() -> state, restore(state))``: how a learner undoes an approximate request (``on_fail="rollback"``)
Rollback = tuple[Callable[[], Any], Callable[[Any], None]]
#: ``measure(model, forget, retain) -> metrics`` for models :func:`~.metrics.verify` cannot read
Measure = Callable[[Any, tuple, tuple], dict]

#: ledger quantities an audit record reports
COST_KEYS = ("energy_pj", "latency_ns", "pulses", "cells_programmed", "digital_macs", "dram_bytes")


class ForgetCore:
    """Registry, authorisation, method checks, verification, judgement, purge and audit of forget requests."""

    def __init__(self, admins: Iterable[str] = ("controller",), audit: AuditLog | None = None,
                 eval_data: tuple[torch.Tensor, torch.Tensor] | None = None, with_mia: bool = True,
                 seed: int = 0, policy: JudgePolicy | None = None) -> None:
        self.registry = DataRegistry()
        self.admins = set(admins)
        self.audit = audit if audit is not None else AuditLog()
        self.eval_data = eval_data
        self.with_mia = with_mia
        self.seed = seed
        self.policy = policy if policy is not None else JudgePolicy()
        self.forgotten_ids = torch.zeros(0, dtype=torch.long)

    def resolve(self, request: ForgetRequest) -> torch.Tensor:
        return self.registry.resolve(request, self.admins)

    def choose(self, request: ForgetRequest, default_method: str, default_options: Mapping | None,
               kinds: Iterable[str]) -> tuple[Method, dict]:
        """The method a request runs with and its options (the request's, else the learner's defaults)."""
        name = request.method or default_method
        if request.method is None or (request.method == default_method and request.options is None):
            options = default_options
        else:
            options = request.options
        return check_method(name, options, kinds, request.request_id)

    def honour(self, request: ForgetRequest, *, model, ledger: CostLedger, apply: Apply, default_method: str,
               kinds: Iterable[str], default_options: Mapping | None = None, purge: Iterable[Purge] = (),
               checks: Iterable[Callable[[torch.Tensor, ForgetRequest], None]] = (), who: str = "",
               verify_model=None, rollback: Rollback | None = None, measure: Measure | None = None) -> dict:
        """Honour ``request`` on ``model`` (or raise :class:`ForgetRefused` with nothing changed).

        ``apply(ids, request, method, options)`` does the unlearning and returns
        what it changed; it runs inside ledger phase ``unlearn``. ``kinds`` are
        the method kinds this learner runs (:mod:`.methods`); ``checks`` run
        after validation and before anything changes (each raises
        ``ForgetRefused`` to refuse); ``purge`` lists ``(name, drop(ids) ->
        count)`` for every place outside the registry that may hold the data.
        ``verify_model`` (default ``model``) is what the metrics read;
        ``measure(model, forget, retain)`` replaces :func:`~.metrics.verify`
        for models whose outputs are not class scores (it returns at least
        ``forget_acc`` and ``retain_acc``, what the judge reads). An
        approximate result that fails its judgement is flagged, or with the
        policy's ``on_fail="rollback"`` undone through ``rollback`` (data kept,
        :class:`ForgetFailed` raised). Returns the audit record.
        """
        ids = self.resolve(request)
        method, options = self.choose(request, default_method, default_options, kinds)
        rolls_back = self.policy.on_fail == "rollback" and method.guarantee == "approximate"
        if rolls_back and rollback is None:
            raise ForgetRefused(f"request {request.request_id}: the judge policy asks for rollback, which this "
                                f"learner cannot do for method {method.name!r}; use on_fail='flag'")
        for check in checks:
            check(ids, request)
        target = verify_model if verify_model is not None else model
        ids_in_order = self.registry.ids[self.registry.mask(ids)]
        forget, retain = self.registry.split(ids)
        def measured() -> dict:
            if measure is not None:
                return {"n_forget": float(len(forget[1])), "n_retain": float(len(retain[1])),
                        **measure(target, forget, retain)}
            return verify(target, forget, retain, self.eval_data, request.classes, self.with_mia, self.seed)

        before = measured()
        saved = rollback[0]() if rolls_back else None
        snap = ledger.snapshot()
        t0 = time.perf_counter()
        with ledger.phase("unlearn"):
            detail = dict(apply(ids, request, method, options))
        wall = time.perf_counter() - t0
        guarantee = weaker(method.guarantee, detail.pop("guarantee", method.guarantee))
        after = measured()
        verdict = judge(guarantee, request.classes, before, after, self.policy)
        digest = self.audit.digest(ids_in_order, *forget)
        del forget, retain
        record = {"request": request.to_dict(), "by": who, "method": method.name, "options": options,
                  "guarantee": guarantee, "n_samples": int(len(ids)), "sample_ids": sorted(int(i) for i in ids),
                  "data_digest": digest, "affected": detail, "metrics_before": before, "metrics_after": after,
                  "judgement": verdict, "policy": self.policy.as_dict()}
        if verdict["status"] == "flagged" and rolls_back:
            rollback[1](saved)
            spent = ledger.total_since(snap)
            record.update(status="rolled back", purged={},
                          cost={k: spent.get(k, 0.0) for k in COST_KEYS}, wall_time_s=wall)
            record = self.audit.append(record)
            raise ForgetFailed(f"request {request.request_id}: method {method.name!r} failed its judgement "
                               f"({', '.join(verdict['failed'])}); the model was restored and the data kept",
                               record)
        purged = {"registry": self.registry.remove(ids)}
        for name, drop in purge:
            purged[name] = int(drop(ids))
        self.forgotten_ids = torch.cat([self.forgotten_ids, ids])
        spent = ledger.total_since(snap)
        record.update(status="flagged" if verdict["status"] == "flagged" else "honoured", purged=purged,
                      cost={k: spent.get(k, 0.0) for k in COST_KEYS}, wall_time_s=wall)
        if verdict["status"] == "flagged":
            warnings.warn(f"avalanche-rm: forget request {request.request_id} ({method.name}) is flagged: it failed "
                          f"{', '.join(verdict['failed'])}; see record['judgement']", stacklevel=2)
        return self.audit.append(record)


__all__ = ["Apply", "COST_KEYS", "ForgetCore", "ForgetFailed", "Measure", "Purge", "Rollback"]
