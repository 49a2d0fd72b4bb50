"""The Avalanche side of forgetting: every unlearning strategy mixes in :class:`ForgetMixin`.

The mixin registers each learned experience's samples with the unlearning core
(:class:`~avalanche_rm.unlearning.ForgetCore`) and, on a request, hands it the
strategy's model, its unlearning action and the places Avalanche keeps data
that must be purged: replay buffers, the current experience, the adapted
dataset, the data loader and the last minibatch.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch

from ..benchmarks.digits import tensor_dataset
from ..unlearning import (AuditKey, AuditLog, ForgetCore, ForgetRequest, ForgottenStore, JudgePolicy, KeyDirectory,
                          Method, SignedRequest)
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
        return self.forget_core.learn_experience(experience)

    def resolve(self, request: SignedRequest) -> torch.Tensor:
        """Sample ids a signed request covers; raises ``ForgetRefused`` (nothing changes) if not allowed."""
        return self.forget_core.resolve(request)

    # ------------------------------------------------------------ the verb
    def forget(self, request: SignedRequest) -> dict:
        """Honour a signed request (or raise ``ForgetRefused`` with nothing changed); returns the audit record.

        ``request`` is ``key.sign(ForgetRequest(...), audience=strategy.trust.audience)``
        signed by its requester; a plain :class:`ForgetRequest` is refused.
        """
        model = self.model_for_forgetting()
        method, options = self.forget_defaults()
        return self.forget_core.honour(request, model=model, ledger=model.ledger, apply=self._apply_forget,
                                       default_method=method, default_options=options, kinds=self.forget_kinds,
                                       purge=self.purge_hooks(), who=type(self).__name__,
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
        """Run a request from the forgotten-ids store again (after loading an older checkpoint)."""
        model = self.model_for_forgetting()
        return self.forget_core.reapply(entry, model=model, ledger=model.ledger, apply=self._apply_forget,
                                        kinds=self.forget_kinds, purge=self.purge_hooks(), who=type(self).__name__,
                                        reason=reason)

    def purge_hooks(self) -> list:
        """``(name, drop(ids) -> count)`` for every place of this strategy that may hold training data."""
        return [("output_classes", self.reset_output_classes), ("replay_buffers", self.purge_replay),
                ("strategy_state", self._purge_strategy_state)]

    def purge_replay(self, ids: torch.Tensor) -> int:
        """Drop forgotten samples from every replay buffer (Avalanche keeps them otherwise); returns how many.

        Every buffer is rebuilt from copies of its kept samples: Avalanche's
        subsets are views that keep the whole source tensor alive.
        """
        idset = set(int(i) for i in ids)
        removed = 0
        for plugin in getattr(self, "plugins", []):
            policy = getattr(plugin, "storage_policy", None)
            if policy is None:
                continue
            groups = list(getattr(policy, "buffer_groups", {}).values()) or [policy]
            for group in groups:
                ds = getattr(group, "buffer", None)
                if ds is None or len(ds) == 0:
                    continue
                if not hasattr(ds, "sample_ids"):
                    raise ValueError(f"{type(plugin).__name__} holds samples without 'sample_ids': forgotten data "
                                     "could not be found in it; build datasets with benchmarks.tensor_dataset")
                keep = [k for k, sid in enumerate(ds.sample_ids) if int(sid) not in idset]
                removed += len(ds) - len(keep)
                # rebuilt even when nothing of it is forgotten: a lazy view keeps the whole source tensor
                group.buffer = materialized_subset(ds, keep)
                if hasattr(group, "_buffer_weights") and len(group._buffer_weights) == len(ds):
                    group._buffer_weights = group._buffer_weights[torch.tensor(keep, dtype=torch.long)]
        return removed

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
