"""Forget requests in a federation: the client handler and the message formats both sides share.

A request travels as a ``train.forget`` message whose ``config`` record carries
the owner's signed request (:class:`~avalanche_rm.unlearning.SignedRequest`, as
JSON): ``ForgetRequest(requester=pid, owner=pid)`` forgets everything of that
client (method ``"drop"``: the server drops its contribution);
``ForgetRequest(requester=pid, sample_ids=..., method=...)`` forgets the named
samples (any registered objective, or ``"exact"`` on a client that trains
sharded adapters). The server only carries it: the client verifies the
signature against its owners' public keys, the audience (the federation's
name) and that the request id was never used (its forgotten-ids store lives in
``Context.state``), then honours it through the same unlearning core as the
Avalanche strategies (:class:`~avalanche_rm.unlearning.ForgetCore`):
verification before and after, the action, the purge of every local copy of
the data, and an audit record (ids and a keyed digest, never the data) that
goes back to the server with the metrics. There is no shared secret.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from flwr.app import ConfigRecord, MetricRecord

from ..unlearning import (ForgetCore, ForgetRequest, ForgottenStore, KeyDirectory, SignedRequest, SigningKey,
                          check_method)
from ..validation import check_int

#: the method name of exact sample-level unlearning on sharded client adapters
EXACT = "exact"
#: the method of a whole-client request: the server drops the client's contribution
DROP = "drop"
#: the method of a samples request that names none
DEFAULT_SAMPLE_METHOD = "neg_ce"
KINDS = ("client", "samples")
#: where a client keeps its forgotten-ids store (the replay guard) in ``Context.state``
STORE_RECORD = "forget-store"


@dataclass(frozen=True)
class FederatedForgetRequest:
    """An owner's signed request, routed to the client that holds ``partition_id``'s data.

    Build one with :meth:`client` (forget the whole client) or :meth:`samples`
    (forget sample ids, honoured by ``method``: a registered objective,
    default ``"neg_ce"``, or ``"exact"`` on a client with sharded adapters),
    or wrap a request the owner signed elsewhere.
    """

    partition_id: int
    signed: SignedRequest

    def __post_init__(self) -> None:
        check_int(self.partition_id, "partition_id", 0)
        if not isinstance(self.signed, SignedRequest):
            raise ValueError(f"a federated request carries the owner's SignedRequest, got {type(self.signed).__name__}")
        req = self.signed.request
        if req.kind == "classes":
            raise ValueError("a federation forgets a client's data or samples of it, not whole classes")
        if req.kind == "owner" and req.method not in (None, DROP):
            raise ValueError(f"a client request drops the client's contribution (method {DROP!r}); "
                             f"got method {req.method!r}")
        if req.kind == "samples" and req.method is not None:
            # the client checks again (it knows whether it has shards); a bad name or option fails here first
            check_method(req.method, req.options, ("objective", "sisa"))

    @classmethod
    def client(cls, key: SigningKey, partition_id: int, audience: str) -> "FederatedForgetRequest":
        """The owner of ``partition_id`` asks for its whole client to be forgotten (signed with ``key``)."""
        return cls(partition_id, key.sign(ForgetRequest(requester=partition_id, owner=partition_id), audience))

    @classmethod
    def samples(cls, key: SigningKey, partition_id: int, sample_ids, audience: str, method: str | None = None,
                options: dict | None = None) -> "FederatedForgetRequest":
        """The owner of ``partition_id`` asks for ``sample_ids`` to be forgotten by ``method`` (with its
        ``options``)."""
        return cls(partition_id, key.sign(ForgetRequest(requester=partition_id, sample_ids=tuple(sample_ids),
                                                        method=method, options=options), audience))

    @property
    def kind(self) -> str:
        return "client" if self.signed.request.kind == "owner" else "samples"

    @property
    def method(self) -> str:
        return DROP if self.kind == "client" else (self.signed.request.method or DEFAULT_SAMPLE_METHOD)

    @property
    def sample_ids(self) -> tuple[int, ...]:
        return self.signed.request.sample_ids or ()

    @property
    def request_id(self) -> str:
        return self.signed.request_id

    def config(self) -> ConfigRecord:
        return ConfigRecord({"signed": self.signed.to_json()})


def parse_signed(cfg) -> SignedRequest:
    """The signed request of a ``train.forget`` config (``ValueError`` if missing or malformed; not yet verified)."""
    text = cfg.get("signed") if hasattr(cfg, "get") else None
    if not isinstance(text, str):
        raise ValueError("the forget message carries no signed request (config 'signed')")
    return SignedRequest.from_json(text)


def load_store(state) -> ForgottenStore:
    """The client's forgotten-ids store from ``Context.state`` (a new one on first use)."""
    if STORE_RECORD in state.config_records:
        return ForgottenStore.from_lines(list(state.config_records[STORE_RECORD]["lines"]))
    return ForgottenStore()


def save_store(state, store: ForgottenStore) -> None:
    state[STORE_RECORD] = ConfigRecord({"lines": store.lines})


def refused(reason: str) -> dict:
    return {"metrics": MetricRecord({"refused": 1, "num-examples": 0}), "reason": ConfigRecord({"reason": reason})}


def audit_record_json(record: dict) -> ConfigRecord:
    """An audit record (ids, digest, metrics, cost: no data) for the reply."""
    return ConfigRecord({"json": json.dumps(record, default=float)})


def client_core(trust: KeyDirectory, store: ForgottenStore) -> ForgetCore:
    """A forget core for one client: its key directory and its store (no data learned yet)."""
    return ForgetCore(trust, store=store)


def learn_local(core: ForgetCore, data, partition_id: int) -> None:
    """Register the client's kept local data (all of it owned by the client's owner) and its test data."""
    core.eval_data, core.with_mia = (data.x_test, data.y_test), len(data.y_test) >= 8
    core.learn(data.x, data.y, data.ids, torch.full_like(data.ids, partition_id))
