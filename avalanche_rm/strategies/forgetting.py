"""The Avalanche side of forgetting: every unlearning strategy mixes in :class:`ForgetMixin`.

The mixin registers each learned experience's samples with the unlearning core
(:class:`~avalanche_rm.unlearning.ForgetCore`) and, on a request, hands it the
strategy's model, its unlearning action and the places Avalanche keeps data
that must be purged: every plugin, optimiser and gradient (each handled or the
request refused before anything changes, see :mod:`.holders`), the current
experience, the adapted dataset, the data loader and the last minibatch.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch

from ..benchmarks.digits import tensor_dataset
from ..unlearning import (AuditKey, AuditLog, ForgetCore, ForgetRequest, ForgottenStore, JudgePolicy, KeyDirectory,
                          Method, SignedRequest)
from ..unlearning.holders import HOLDERS, ForgetContext
from .holders import strategy_holders
from .plugins import SeenClassesMask

#: strategy attributes that may hold (views of) training data after ``train()``
_DATA_ATTRS = ("experience", "adapted_dataset", "dataloader", "mbatch", "mb_output", "loss")


class ForgetMixin:
    """Registry, authentication, authorisation, purge, store and audit for an Avalanche strategy, via the core.

    ``trust``: the strategy's :class:`~avalanche_rm.unlearning.KeyDirectory`
    (its name, and the public keys of the owners and the data controllers).
    A request is honoured only when signed by its requester's key for this
    strategy's name and never used before: an owner may forget its own samples
    or all of its data; class-level requests need a data controller's
    signature. A refused request raises
    :class:`~avalanche_rm.unlearning.ForgetRefused` before anything changes.
    ``audit_path`` / ``audit_key``: the chained, MACed audit log and the
    controller's :class:`~avalanche_rm.unlearning.AuditKey` (also the key of
    the records' data digests); ``store_path``: the durable forgotten-ids store
    (default: beside the audit log, ``<audit>.forgotten.jsonl``).
    ``judge_policy`` bounds an approximate request's result and says what a
    failed judgement means (:class:`~avalanche_rm.unlearning.JudgePolicy`).

    A concrete strategy sets :attr:`forget_kinds` (the method kinds it runs),
    :meth:`forget_defaults` (its own method and options) and
    :meth:`_apply_forget`.
    """

    #: method kinds this strategy can run (see :mod:`avalanche_rm.unlearning.methods`); set by each strategy
    forget_kinds: tuple[str, ...]

    def _init_forgetting(self, trust: KeyDirectory | None = None, audit_path: str | Path | None = None,
                         eval_data: tuple[torch.Tensor, torch.Tensor] | None = None, mia_on_forget: bool = True,
                         audit_key: AuditKey | bytes | None = None, store_path: str | Path | None = None,
                         judge_policy: JudgePolicy | None = None) -> None:
        if store_path is None and audit_path is not None:
            store_path = default_store_path(audit_path)
        store = ForgottenStore(store_path, audit_key)
        self.forget_core = ForgetCore(trust, AuditLog(audit_path, audit_key), eval_data, mia_on_forget, store=store,
                                      policy=judge_policy)
        #: ``(sample_ids, task_label)`` of every learned experience, in training order (ids only, never data):
        #: holders that keep per-experience state (EWC, MAS) rebuild an experience's retained rows from it
        self.learned_experiences: list[tuple[torch.Tensor, int]] = []

    # ------------------------------------------------------------ views of the core
    @property
    def registry(self):
        return self.forget_core.registry

    @property
    def audit_log(self) -> list[dict]:
        return self.forget_core.audit.records

    @property
    def eval_data(self):
        return self.forget_core.eval_data

    @property
    def trust(self) -> KeyDirectory | None:
        return self.forget_core.trust

    @property
    def forgotten_ids(self) -> torch.Tensor:
        return self.forget_core.forgotten_ids

    def register_experience(self, experience):
        """Register an experience's samples (refused if it holds a sample forgotten earlier)."""
        out = self.forget_core.learn_experience(experience)
        labels = getattr(experience, "task_labels", None) or [0]
        self.learned_experiences.append((out[2].clone(), int(labels[0])))
        return out

    def resolve(self, request: SignedRequest) -> torch.Tensor:
        """Sample ids a signed request covers; raises ``ForgetRefused`` (nothing changes) if not allowed."""
        return self.forget_core.resolve(request)

    # ------------------------------------------------------------ the verb
    def forget(self, request: SignedRequest) -> dict:
        """Honour a signed request (or raise ``ForgetRefused`` with nothing changed); returns the audit record.

        ``request`` is ``key.sign(ForgetRequest(...), audience=strategy.trust.audience)``
        signed by its requester; a plain :class:`ForgetRequest` is refused. Every
        holder (:meth:`data_holders`: plugins, optimisers, gradients) is checked
        with the request, before anything changes: one that cannot be purged
        refuses it. The record's ``purged["holders"]`` says what each gave up.
        """
        model = self.model_for_forgetting()
        method, options = self.forget_defaults()
        holders = _HolderStep(self)
        return self.forget_core.honour(request, model=model, ledger=model.ledger, apply=self._apply_forget,
                                       default_method=method, default_options=options, kinds=self.forget_kinds,
                                       checks=[holders.check], purge=[("holders", holders.purge)] + self.purge_hooks(),
                                       who=type(self).__name__,
                                       rollback=self.forget_rollback())

    def reset_output_classes(self, ids: torch.Tensor) -> int:
        """Seen-class masks as a strategy that never learned ``ids`` would have them: the base's classes and
        those of the data that remain (a mask still holding a forgotten class would disclose it was learned).
        A purge step, after the verification: the metrics judge what the method removed, not the mask.
        Returns how many classes left the mask."""
        masks = [p for p in getattr(self, "plugins", []) if isinstance(p, SeenClassesMask)]
        if not masks:
            return 0
        reg = self.registry
        remaining = torch.unique(reg.y[~reg.mask(ids)]).tolist()
        before = set(masks[0].seen)
        for p in masks:
            p.reset(self.model, remaining)
        return len(before - masks[0].seen)

    def reapply(self, entry: dict, reason: str = "") -> dict:
        """Run a request from the forgotten-ids store again (after loading an older checkpoint).

        The holders are checked first (``ForgetRefused`` if one cannot be purged: the checkpoint cannot be used)."""
        model = self.model_for_forgetting()
        holders = _HolderStep(self)
        stored = torch.tensor(entry["sample_ids"], dtype=torch.long)
        held = stored[torch.isin(stored, self.registry.ids)]
        if len(held):
            holders.check(held, ForgetRequest.from_dict(entry["request"]))
        purge = [("holders", holders.purge)] + self.purge_hooks()
        return self.forget_core.reapply(entry, model=model, ledger=model.ledger, apply=self._apply_forget,
                                        kinds=self.forget_kinds, purge=purge, who=type(self).__name__, reason=reason)

    def forget_context(self, request: ForgetRequest, ids: torch.Tensor) -> ForgetContext:
        """What holders see of a request: its ids and rows (held for the request only, never stored)."""
        x, y = self.registry.take(ids)
        return ForgetContext(request, ids, x, y, host=self)

    def data_holders(self) -> list:
        """``(label, holder)`` for every plugin, optimiser state and gradient this strategy holds."""
        return strategy_holders(self)

    @staticmethod
    def purge_holders(checked: list, ctx: ForgetContext) -> dict:
        """Run the purge of every checked holder; ``{label: what it removed}`` for those that held anything."""
        return HOLDERS.purge(checked, ctx)

    def purge_hooks(self) -> list:
        """``(name, drop(ids) -> count)`` for every other place of this strategy that may hold training data."""
        return [("output_classes", self.reset_output_classes), ("strategy_state", self._purge_strategy_state)]

    def _purge_strategy_state(self, ids: torch.Tensor) -> int:
        """Drop what the last training run left on the strategy (experience, datasets, loader, minibatch)."""
        dropped = 0
        for attr in _DATA_ATTRS:
            if getattr(self, attr, None) is not None:
                setattr(self, attr, None)
                dropped += 1
        return dropped

    # hooks for the concrete strategies
    def model_for_forgetting(self):
        return self.model

    def forget_defaults(self) -> tuple[str, dict | None]:
        """The strategy's own method (and options) for requests that name none."""
        raise NotImplementedError

    def forget_rollback(self):
        """``(snapshot, restore)`` undoing an approximate request, or ``None`` where it cannot be undone."""
        return None

    def _apply_forget(self, ids: torch.Tensor, request: ForgetRequest, method: Method, options: dict) -> dict:
        raise NotImplementedError


class _HolderStep:
    """The holders' part of one request: checked with the core's checks (before anything changes), purged with
    the other purges. It holds the request's rows only while the request runs."""

    def __init__(self, strategy: ForgetMixin) -> None:
        self._s = strategy
        self._ctx: ForgetContext | None = None
        self._checked: list = []

    def check(self, ids: torch.Tensor, request: ForgetRequest) -> None:
        self._ctx = self._s.forget_context(request, ids)
        self._checked = HOLDERS.check(self._s.data_holders(), self._ctx)

    def purge(self, ids: torch.Tensor) -> dict:
        if self._ctx is None:
            return {}
        try:
            return self._s.purge_holders(self._checked, self._ctx)
        finally:
            self._ctx, self._checked = None, []


def default_store_path(audit_path: str | Path) -> Path:
    """Where the forgotten-ids store lives by default: beside the audit log."""
    p = Path(audit_path)
    return p.with_name(f"{p.stem}.forgotten.jsonl")


def materialized_subset(dataset, keep: list[int]):
    """A new dataset holding copies of the ``keep`` samples only.

    Avalanche's ``subset`` is a lazy view: it keeps the whole underlying tensor,
    forgotten rows included. Purging must build the kept rows anew.
    """
    items = [dataset[k] for k in keep]
    if not items:
        x = torch.zeros(0)
        y = torch.zeros(0, dtype=torch.long)
    else:
        x = torch.stack([it[0] for it in items]).clone()
        y = torch.tensor([int(it[1]) for it in items], dtype=torch.long)
    task = int(items[0][2]) if items and len(items[0]) > 2 else 0
    ids = [int(dataset.sample_ids[k]) for k in keep]
    owners = [int(dataset.owners[k]) for k in keep] if hasattr(dataset, "owners") else None
    return tensor_dataset(x, y, task_label=task, sample_ids=torch.tensor(ids, dtype=torch.long),
                          owners=None if owners is None else torch.tensor(owners, dtype=torch.long))


def snapshot_state(strategy) -> dict:
    """Deep copy of what a refused request must leave untouched (for tests and debugging)."""
    return {"model": copy.deepcopy(strategy.model_for_forgetting().state_dict()),
            "ledger": strategy.model_for_forgetting().ledger.state_dict(),
            "audit": copy.deepcopy(strategy.audit_log), "registry": len(strategy.registry),
            "store": [e["request_id"] for e in strategy.forget_core.store.entries],
            "forgotten": strategy.forgotten_ids.tolist()}
