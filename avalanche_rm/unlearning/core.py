"""The one path every forget request takes, for Avalanche strategies and Flower clients alike.

:meth:`ForgetCore.honour`: verify the signed request (its requester's
signature, its audience, that its id was never used: :mod:`.auth`, :mod:`.store`)
and resolve it against what the verified principal may forget (refused requests
change nothing), verify the model on the data to forget, apply the method
(the caller's ``apply``: retrain shards, train an unlearning adapter, ...),
verify again while the data are still at hand, purge them everywhere the
caller names (the registry always), record the request in the durable
forgotten-ids store and append an audit record that keeps ids and a keyed
digest, never the data. :meth:`ForgetCore.reapply` runs a stored request
again (on a learner restored from a checkpoint older than the request).
"""
from __future__ import annotations

import time
from typing import Callable, Iterable

import torch

from ..costs.ledger import CostLedger
from .audit import AuditLog
from .auth import HOW_TO_SIGN, KeyDirectory, Principal, SignedRequest
from .metrics import verify
from .registry import DataRegistry
from .requests import ForgetRefused, ForgetRequest
from .store import ForgottenStore

Apply = Callable[[torch.Tensor, ForgetRequest], dict]
Purge = tuple[str, Callable[[torch.Tensor], int]]

#: ledger quantities an audit record reports
COST_KEYS = ("energy_pj", "latency_ns", "pulses", "cells_programmed", "digital_macs", "dram_bytes")


class ForgetCore:
    """Registry, authentication, authorisation, verification, purge, store and audit of forget requests.

    ``trust``: the learner's :class:`~.auth.KeyDirectory` (its name and the
    owners' and controllers' public keys); without one every request is
    refused. ``store``: the durable :class:`~.store.ForgottenStore` (in memory
    if not given).
    """

    def __init__(self, trust: KeyDirectory | None = None, audit: AuditLog | None = None,
                 eval_data: tuple[torch.Tensor, torch.Tensor] | None = None, with_mia: bool = True,
                 seed: int = 0, store: ForgottenStore | None = None) -> None:
        if trust is not None and not isinstance(trust, KeyDirectory):
            raise ValueError(f"trust must be a KeyDirectory (the owners' public keys), got {type(trust).__name__}")
        self.registry = DataRegistry()
        self.trust = trust
        self.audit = audit if audit is not None else AuditLog()
        self.store = store if store is not None else ForgottenStore()
        self.eval_data = eval_data
        self.with_mia = with_mia
        self.seed = seed
        self.forgotten_ids = self.store.forgotten_ids()

    # ------------------------------------------------------------ learning
    def learn(self, x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor, owners: torch.Tensor) -> None:
        """Register learned samples; a forgotten sample id is never learned again."""
        again = torch.isin(ids, self.forgotten_ids)
        if bool(again.any()):
            raise ValueError(f"{int(again.sum())} sample(s) were forgotten earlier and may not be learned again "
                             f"(ids {ids[again][:10].tolist()}); drop them from the data")
        self.registry.add(x, y, ids, owners)

    def learn_experience(self, experience):
        from .registry import dataset_tensors

        x, y, ids, owners = dataset_tensors(experience.dataset)
        self.learn(x, y, ids, owners)
        return x, y, ids, owners

    # ------------------------------------------------------------ who asks
    def check(self, signed: SignedRequest) -> tuple[ForgetRequest, Principal]:
        """Verify the signature, audience and freshness, and that the request id was never used."""
        if isinstance(signed, ForgetRequest):
            raise ForgetRefused(f"request {signed.request_id}: unsigned; {HOW_TO_SIGN}")
        if self.trust is None:
            raise ForgetRefused("this learner has no key directory (trust=KeyDirectory(...) with the owners' and "
                                "controllers' public keys): it cannot tell who asks, so it honours no request")
        if not (self.store.chain.writable and self.audit.chain.writable):
            raise ForgetRefused("the forgotten-ids store or audit log has no audit key attached (this state was "
                                "unpickled: load checkpoints with avalanche_rm.strategies.maybe_load_checkpoint)")
        principal = self.trust.verify(signed)
        if self.store.used(signed.request_id):
            raise ForgetRefused(f"request {signed.request_id} was used before (a replay)")
        return signed.request, principal

    def authorise(self, signed: SignedRequest) -> tuple[ForgetRequest, Principal, torch.Tensor]:
        """``(request, principal, sample ids)``, or :class:`ForgetRefused` with nothing changed."""
        request, principal = self.check(signed)
        return request, principal, self.registry.resolve(request, principal)

    def resolve(self, signed: SignedRequest) -> torch.Tensor:
        return self.authorise(signed)[2]

    # ------------------------------------------------------------ the verb
    def honour(self, signed: SignedRequest, *, model, ledger: CostLedger, apply: Apply,
               purge: Iterable[Purge] = (), who: str = "", verify_model=None) -> dict:
        """Honour ``signed`` on ``model`` (or raise :class:`ForgetRefused` with nothing changed).

        ``apply(ids, request)`` does the unlearning and returns what it changed;
        it runs inside ledger phase ``unlearn``. ``purge`` lists ``(name,
        drop(ids) -> count)`` for every place outside the registry that may hold
        the data. ``verify_model`` (default ``model``) is what the metrics read.
        The request is in the forgotten-ids store before this returns. Returns
        the audit record.
        """
        request, principal, ids = self.authorise(signed)
        done = self._carry_out(request, ids, model=model, ledger=ledger, apply=apply, purge=purge,
                               verify_model=verify_model)
        sig = {"audience": signed.audience, "issued_at": signed.issued_at, "key_id": signed.key_id}
        entry = self.store.append(request=request.to_dict(), principal=principal.name, sample_ids=ids, signature=sig)
        record = {"event": "honour", "request": request.to_dict(), "principal": principal.name, "signature": sig,
                  "store_seq": entry["seq"], "by": who, **done}
        return self.audit.append(record)

    def reapply(self, entry: dict, *, model, ledger: CostLedger, apply: Apply, purge: Iterable[Purge] = (),
                who: str = "", verify_model=None, reason: str = "") -> dict:
        """Run a stored request again on a learner that still holds (some of) its samples.

        Used when a checkpoint older than the request is loaded. The request was
        authenticated when it was honoured (the store entry is MACed); the ids it
        covered then that this learner holds are forgotten again, and all of them
        join ``forgotten_ids`` (never learned again). Returns the audit record.
        """
        request = ForgetRequest.from_dict(entry["request"])
        stored = torch.tensor(entry["sample_ids"], dtype=torch.long)
        held = stored[torch.isin(stored, self.registry.ids)]
        if len(held):
            done = self._carry_out(request, held, model=model, ledger=ledger, apply=apply, purge=purge,
                                   verify_model=verify_model)
        else:
            done = {"n_samples": 0, "sample_ids": []}
        self._forgotten(stored)
        record = {"event": "reapply", "reason": reason, "request": entry["request"], "principal": entry["principal"],
                  "store_seq": entry["seq"], "by": who, "not_held": int(len(stored) - len(held)), **done}
        return self.audit.append(record)

    def _forgotten(self, ids: torch.Tensor) -> None:
        self.forgotten_ids = torch.unique(torch.cat([self.forgotten_ids, ids]))

    def _carry_out(self, request: ForgetRequest, ids: torch.Tensor, *, model, ledger: CostLedger, apply: Apply,
                   purge: Iterable[Purge], verify_model) -> dict:
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
        digest = self.audit.digest_fields(ids_in_order, *forget)
        del forget, retain
        purged = {"registry": self.registry.remove(ids)}
        for name, drop in purge:
            purged[name] = int(drop(ids))
        self._forgotten(ids)
        spent = ledger.total_since(snap)
        return {"n_samples": int(len(ids)), "sample_ids": sorted(int(i) for i in ids), **digest, "affected": detail,
                "purged": purged, "metrics_before": before, "metrics_after": after,
                "cost": {k: spent.get(k, 0.0) for k in COST_KEYS}, "wall_time_s": wall}
