"""Forget requests in a federation: the client handler and the message formats both sides share.

A request travels as a ``train.forget`` message whose ``config`` record carries
the owner's token, the kind (``client``: everything of that client;
``samples``: the named sample ids), the method (any registered objective, or
``"exact"`` for a client that trains sharded adapters) and a request id. The
client checks the token, then honours the request through the same unlearning
core as the Avalanche strategies (:class:`~avalanche_rm.unlearning.ForgetCore`):
verification before and after, the action, the purge of every local copy of
the data, and an audit record (ids and a keyed digest, never the data) that
goes back to the server with the metrics.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass

import torch
from flwr.app import ConfigRecord, MetricRecord

from ..unlearning import ForgetCore, ForgetRequest, check_method
from ..validation import check_int

#: the method name of exact sample-level unlearning on sharded client adapters
EXACT = "exact"
#: the method of a whole-client request: the server drops the client's contribution
DROP = "drop"
#: the method of a samples request that names none
DEFAULT_SAMPLE_METHOD = "neg_ce"
KINDS = ("client", "samples")


def owner_token(secret: str, partition_id: int) -> str:
    """The token that proves a forget request comes from the owner of ``partition_id``'s data."""
    return hmac.new(secret.encode(), f"partition-{partition_id}".encode(), hashlib.sha256).hexdigest()


def token_ok(secret: str, partition_id: int, token: object) -> bool:
    return hmac.compare_digest(str(token), owner_token(secret, partition_id))


@dataclass
class FederatedForgetRequest:
    """``kind="client"`` forgets a whole client (method ``"drop"``: the server drops its contribution);
    ``kind="samples"`` names sample ids on that client, honoured by ``method`` (a registered objective,
    default ``"neg_ce"``, with its ``options``, or ``"exact"`` on a client with sharded adapters)."""

    partition_id: int
    token: str
    kind: str = "client"
    sample_ids: tuple[int, ...] = ()
    method: str = ""
    request_id: str = ""
    options: dict | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        check_int(self.partition_id, "partition_id", 0)
        if self.kind == "samples" and not self.sample_ids:
            raise ValueError("a samples request needs sample_ids")
        if self.kind == "client":
            if self.method not in ("", DROP):
                raise ValueError(f"a client request drops the client's contribution (method {DROP!r}); "
                                 f"got method {self.method!r}")
            self.method = DROP
        else:
            self.method = self.method or DEFAULT_SAMPLE_METHOD
            # the client checks again (it knows whether it has shards); a bad name or option fails here first
            _, self.options = check_method(self.method, self.options, ("objective", "sisa"))
        if not self.request_id:
            self.request_id = f"fl-{self.partition_id}-{self.kind}-{abs(hash(self.sample_ids)) % 10 ** 8}"

    def config(self) -> ConfigRecord:
        return ConfigRecord({"token": self.token, "kind": self.kind, "sample-ids": [int(i) for i in self.sample_ids],
                             "method": self.method, "request-id": self.request_id,
                             "options-json": json.dumps(self.options or {})})


def refused(reason: str) -> dict:
    return {"metrics": MetricRecord({"refused": 1, "num-examples": 0}), "reason": ConfigRecord({"reason": reason})}


def local_request(cfg, partition_id: int) -> ForgetRequest:
    """The client-side :class:`ForgetRequest` of a ``train.forget`` config (the owner asks for its own data)."""
    kind = str(cfg.get("kind", ""))
    rid = str(cfg.get("request-id", "")) or ""
    method = str(cfg.get("method", "")) or None
    try:
        options = json.loads(str(cfg.get("options-json", "{}"))) or None
    except json.JSONDecodeError as e:
        raise ValueError(f"options-json is not JSON: {e}") from None
    if kind == "client":
        return ForgetRequest(requester=partition_id, owner=partition_id, request_id=rid, method=method)
    if kind == "samples":
        return ForgetRequest(requester=partition_id, sample_ids=tuple(int(i) for i in cfg.get("sample-ids", [])),
                             request_id=rid, method=method, options=options if method else None)
    raise ValueError(f"unknown forget kind {kind!r}")


def audit_record_json(record: dict) -> ConfigRecord:
    """An audit record (ids, digest, metrics, cost: no data) for the reply."""
    return ConfigRecord({"json": json.dumps(record, default=float)})


def client_core(x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor, partition_id: int,
                test: tuple[torch.Tensor, torch.Tensor]) -> ForgetCore:
    """A forget core over a client's kept local data (the client is the only owner; no controller)."""
    core = ForgetCore(admins=(), eval_data=test, with_mia=len(test[1]) >= 8)
    core.registry.add(x, y, ids, torch.full_like(ids, partition_id))
    return core
