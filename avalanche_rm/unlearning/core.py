"""The one path every forget request takes, for Avalanche strategies and Flower clients alike.

:meth:`ForgetCore.honour` validates the request completely before anything
changes: its requester's signature, its audience and that its id was never
used (:mod:`.auth`, :mod:`.store`); what the verified principal may forget;
the method, its options and whether this learner can run it (:mod:`.methods`);
the learner's own checks (e.g. every holder of data can be purged). Then it
verifies the model on the data to forget, runs the method (the learner's
``apply``, built from the actions in :mod:`.sisa` and :mod:`.approximate`),
verifies again while the data are still at hand, judges the result
(:mod:`.judge`), purges the data everywhere the learner names (the registry
always), records the request in the durable forgotten-ids store and appends an
audit record that keeps ids and a keyed digest, never the data.
:meth:`ForgetCore.reapply` runs a stored request again (on a learner restored
from a checkpoint older than the request).
"""
from __future__ import annotations

import time
import warnings
from typing import Any, Callable, Iterable, Mapping

import torch

from ..costs.fields import AUDIT_KEYS
from ..costs.ledger import CostLedger
from .audit import AuditLog
from .auth import HOW_TO_SIGN, KeyDirectory, Principal, SignedRequest
from .judge import ForgetFailed, ForgetFlagged, JudgePolicy, judge
from .methods import Method, check_method, get_method, weaker
from .metrics import verify
from .registry import DataRegistry
from .requests import ForgetRefused, ForgetRequest
from .store import ForgottenStore

#: ``apply(ids, request, method, options) -> detail``; ``detail["guarantee"]`` may weaken the method's guarantee
Apply = Callable[[torch.Tensor, ForgetRequest, Method, dict], dict]
Purge = tuple[str, Callable[[torch.Tensor], "int | dict"]]
#: ``(snapshot() -> state, restore(state))``: how a learner undoes an approximate request (``on_fail="rollback"``)
Rollback = tuple[Callable[[], Any], Callable[[Any], None]]
#: ``measure(model, forget, retain) -> metrics`` for models :func:`~.metrics.verify` cannot read
Measure = Callable[[Any, tuple, tuple], dict]
Check = Callable[[torch.Tensor, ForgetRequest], None]

#: ledger quantities an audit record reports (the field table's audit fields)
COST_KEYS = AUDIT_KEYS


class ForgetCore:
    """Registry, authentication, authorisation, method checks, verification, judgement, purge, store and audit.

    ``trust``: the learner's :class:`~.auth.KeyDirectory` (its name and the
    owners' and controllers' public keys); without one every request is
    refused. ``store``: the durable :class:`~.store.ForgottenStore` (in memory
    if not given). ``policy``: how approximate results are judged
    (:class:`~.judge.JudgePolicy`).
    """

    def __init__(self, trust: KeyDirectory | None = None, audit: AuditLog | None = None,
                 eval_data: tuple[torch.Tensor, torch.Tensor] | None = None, with_mia: bool = True,
                 seed: int = 0, store: ForgottenStore | None = None, policy: JudgePolicy | None = None) -> None:
        if trust is not None and not isinstance(trust, KeyDirectory):
            raise ValueError(f"trust must be a KeyDirectory (the owners' public keys), got {type(trust).__name__}")
        self.registry = DataRegistry()
        self.trust = trust
        self.audit = audit if audit is not None else AuditLog()
        self.store = store if store is not None else ForgottenStore()
        self.eval_data = eval_data
        self.with_mia = with_mia
        self.seed = seed
        self.policy = policy if policy is not None else JudgePolicy()
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

    def choose(self, request: ForgetRequest, default_method: str, default_options: Mapping | None,
               kinds: Iterable[str]) -> tuple[Method, dict]:
        """The method a request runs with and its options (the request's, else the learner's defaults)."""
        name = request.method or default_method
        if request.method is None or (request.method == default_method and request.options is None):
            options = default_options
        else:
            options = request.options
        return check_method(name, options, kinds, request.request_id)

    # ------------------------------------------------------------ the verb
    def honour(self, signed: SignedRequest, *, model, ledger: CostLedger, apply: Apply, default_method: str,
               kinds: Iterable[str], default_options: Mapping | None = None, purge: Iterable[Purge] = (),
               checks: Iterable[Check] = (), who: str = "", verify_model=None, rollback: Rollback | None = None,
               measure: Measure | None = None) -> dict:
        """Honour ``signed`` on ``model`` (or raise :class:`ForgetRefused` with nothing changed).

        ``apply(ids, request, method, options)`` does the unlearning and returns
        what it changed; it runs inside ledger phase ``unlearn``. ``kinds`` are
        the method kinds this learner runs (:mod:`.methods`); ``checks`` run
        after validation and before anything changes (each raises
        ``ForgetRefused`` to refuse); ``purge`` lists ``(name, drop(ids) ->
        count or {part: what it removed})`` for every place outside the registry that may hold the data.
        ``verify_model`` (default ``model``) is what the metrics read;
        ``measure(model, forget, retain)`` replaces :func:`~.metrics.verify`
        for models whose outputs are not class scores (it returns at least
        ``forget_acc`` and ``retain_acc``, what the judge reads). An
        approximate result that fails its judgement is flagged, or with the
        policy's ``on_fail="rollback"`` undone through ``rollback`` (data kept,
        nothing stored, :class:`ForgetFailed` raised). The request is in the
        forgotten-ids store before this returns. Returns the audit record.
        """
        request, principal, ids = self.authorise(signed)
        method, options = self.choose(request, default_method, default_options, kinds)
        rolls_back = self.policy.on_fail == "rollback" and method.guarantee == "approximate"
        if rolls_back and rollback is None:
            raise ForgetRefused(f"request {request.request_id}: the judge policy asks for rollback, which this "
                                f"learner cannot do for method {method.name!r}; use on_fail='flag'")
        for check in checks:
            check(ids, request)
        sig = {"audience": signed.audience, "issued_at": signed.issued_at, "key_id": signed.key_id}
        head = {"event": "honour", "request": request.to_dict(), "principal": principal.name, "signature": sig}
        try:
            done = self._carry_out(request, ids, method, options, model=model, ledger=ledger, apply=apply,
                                   purge=purge, verify_model=verify_model, measure=measure,
                                   rollback=rollback if rolls_back else None)
        except ForgetFailed as e:
            e.record = self.audit.append({**head, "by": who, **e.record})
            raise
        entry = self.store.append(request=request.to_dict(), principal=principal.name, sample_ids=ids, signature=sig,
                                  method=method.name, options=options)
        record = self.audit.append({**head, "store_seq": entry["seq"], "by": who, **done})
        self._warn_if_flagged(record)
        return record

    def reapply(self, entry: dict, *, model, ledger: CostLedger, apply: Apply, kinds: Iterable[str],
                purge: Iterable[Purge] = (), who: str = "", verify_model=None, reason: str = "",
                measure: Measure | None = None) -> dict:
        """Run a stored request again on a learner that still holds (some of) its samples.

        Used when a checkpoint older than the request is loaded. The request was
        authenticated when it was honoured (the store entry is MACed); the ids it
        covered then that this learner holds are forgotten again with the method
        used then, and all of them join ``forgotten_ids`` (never learned again).
        Returns the audit record.
        """
        request = ForgetRequest.from_dict(entry["request"])
        stored = torch.tensor(entry["sample_ids"], dtype=torch.long)
        held = stored[torch.isin(stored, self.registry.ids)]
        if len(held):
            method, options = check_method(entry.get("method") or request.method, entry.get("options"), kinds,
                                           request.request_id)
            done = self._carry_out(request, held, method, options, model=model, ledger=ledger, apply=apply,
                                   purge=purge, verify_model=verify_model, measure=measure, rollback=None)
        else:
            done = {"n_samples": 0, "sample_ids": []}
        self._forgotten(stored)
        record = {"event": "reapply", "reason": reason, "request": entry["request"], "principal": entry["principal"],
                  "store_seq": entry["seq"], "by": who, "not_held": int(len(stored) - len(held)), **done}
        record = self.audit.append(record)
        self._warn_if_flagged(record)
        return record

    def _forgotten(self, ids: torch.Tensor) -> None:
        self.forgotten_ids = torch.unique(torch.cat([self.forgotten_ids, ids]))

    @staticmethod
    def _warn_if_flagged(record: dict) -> None:
        if record.get("status") == "flagged":
            warnings.warn(f"avalanche-rm: forget request {record['request']['request_id']} ({record['method']}) is "
                          f"flagged: it failed {', '.join(record['judgement']['failed'])}; see record['judgement']",
                          ForgetFlagged, stacklevel=3)

    def _carry_out(self, request: ForgetRequest, ids: torch.Tensor, method: Method, options: dict, *, model,
                   ledger: CostLedger, apply: Apply, purge: Iterable[Purge], verify_model, measure: Measure | None,
                   rollback: Rollback | None) -> dict:
        target = verify_model if verify_model is not None else model
        ids_in_order = self.registry.ids[self.registry.mask(ids)]
        forget, retain = self.registry.split(ids)

        def measured() -> dict:
            if measure is not None:
                return {"n_forget": float(len(forget[1])), "n_retain": float(len(retain[1])),
                        **measure(target, forget, retain)}
            return verify(target, forget, retain, self.eval_data, request.classes, self.with_mia, self.seed)

        before = measured()
        saved = rollback[0]() if rollback is not None else None
        snap = ledger.snapshot()
        t0 = time.perf_counter()
        with ledger.phase("unlearn"):
            detail = dict(apply(ids, request, method, options))
        wall = time.perf_counter() - t0
        guarantee = weaker(method.guarantee, detail.pop("guarantee", method.guarantee))
        after = measured()
        verdict = judge(guarantee, request.classes, before, after, self.policy)
        digest = self.audit.digest_fields(ids_in_order, *forget)
        del forget, retain
        done = {"method": method.name, "options": options, "guarantee": guarantee, "n_samples": int(len(ids)),
                "sample_ids": sorted(int(i) for i in ids), **digest, "affected": detail, "metrics_before": before,
                "metrics_after": after, "judgement": verdict, "policy": self.policy.as_dict()}
        if verdict["status"] == "flagged" and rollback is not None:
            rollback[1](saved)
            spent = ledger.total_since(snap)
            done.update(status="rolled back", purged={}, cost={k: spent.get(k, 0.0) for k in COST_KEYS},
                        wall_time_s=wall)
            raise ForgetFailed(f"request {request.request_id}: method {method.name!r} failed its judgement "
                               f"({', '.join(verdict['failed'])}); the model was restored and the data kept", done)
        purged = {"registry": self.registry.remove(ids)}
        for name, drop in purge:
            out = drop(ids)
            purged[name] = out if isinstance(out, dict) else int(out)  # a count, or what each part gave up
        self._forgotten(ids)
        spent = ledger.total_since(snap)
        done.update(status="flagged" if verdict["status"] == "flagged" else "honoured", purged=purged,
                    cost={k: spent.get(k, 0.0) for k in COST_KEYS}, wall_time_s=wall)
        return done


__all__ = ["Apply", "COST_KEYS", "Check", "ForgetCore", "ForgetFailed", "Measure", "Purge", "Rollback"]
