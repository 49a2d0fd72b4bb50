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
from typing import Iterable

import torch

from ..benchmarks.digits import tensor_dataset
from ..unlearning import AuditLog, ForgetCore, ForgetRequest
from ..unlearning.holders import HOLDERS, ForgetContext
from .holders import strategy_holders

#: strategy attributes that may hold (views of) training data after ``train()``
_DATA_ATTRS = ("experience", "adapted_dataset", "dataloader", "mbatch", "mb_output", "loss")


class ForgetMixin:
    """Registry, authorisation, purge and audit for an Avalanche strategy, through the unlearning core.

    Authorisation: an owner (``requester`` = owner id) may forget its own
    samples or all of its data; class-level requests need a requester listed in
    ``admins`` (the data controller). A refused request raises
    :class:`~avalanche_rm.unlearning.ForgetRefused` before anything changes.
    ``audit_key`` is the controller's secret for the records' data digests.
    """

    def _init_forgetting(self, admins: Iterable[str] = ("controller",), audit_path: str | Path | None = None,
                         eval_data: tuple[torch.Tensor, torch.Tensor] | None = None, mia_on_forget: bool = True,
                         audit_key: bytes | None = None) -> None:
        self.forget_core = ForgetCore(admins, AuditLog(audit_path, audit_key), eval_data, mia_on_forget)
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
    def admins(self) -> set:
        return self.forget_core.admins

    @property
    def forgotten_ids(self) -> torch.Tensor:
        return self.forget_core.forgotten_ids

    def register_experience(self, experience):
        out = self.forget_core.registry.add_experience(experience)
        labels = getattr(experience, "task_labels", None) or [0]
        self.learned_experiences.append((out[2].clone(), int(labels[0])))
        return out

    def resolve(self, request: ForgetRequest) -> torch.Tensor:
        """Sample ids a request covers; raises ``ForgetRefused`` (nothing changes) if not allowed."""
        return self.forget_core.resolve(request)

    # ------------------------------------------------------------ the verb
    def forget(self, request: ForgetRequest) -> dict:
        """Honour ``request`` (or raise ``ForgetRefused`` with nothing changed); returns the audit record.

        After the request resolves and before anything runs, every holder
        (:meth:`data_holders`) is checked: one that cannot be purged refuses the
        request. The record's ``purged["holders"]`` says what each holder gave up.
        """
        model = self.model_for_forgetting()
        ctx = self.forget_context(request, self.resolve(request))
        checked = HOLDERS.check(self.data_holders(), ctx)
        return self.forget_core.honour(request, model=model, ledger=model.ledger, apply=self._apply_forget,
                                       purge=[("holders", lambda ids: self.purge_holders(checked, ctx))]
                                       + self.purge_hooks(), who=type(self).__name__)

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
        return [("strategy_state", self._purge_strategy_state)]

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

    def _apply_forget(self, ids: torch.Tensor, request: ForgetRequest) -> dict:
        raise NotImplementedError


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
            "audit": copy.deepcopy(strategy.audit_log), "registry": len(strategy.registry)}
