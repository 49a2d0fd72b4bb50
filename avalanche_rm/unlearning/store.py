"""The durable forgotten-ids store: what was forgotten, by which request, in which order.

One entry per honoured request (its id, kind, method, the whole request, the
verified principal and the sample ids it covered), numbered by ``seq`` and
written, chained and MACed like the audit log (:class:`~.audit.ChainedLog`)
*before* the request is reported honoured. It is the authority on two things:

- replays: a request id in the store was used and is refused again, also by a
  new process that opens the same store;
- resurrection: a checkpoint records the store's ``seq`` when written; loading
  it re-applies every entry after that (:mod:`avalanche_rm.strategies.checkpoint`),
  and no forgotten id may be learned again.

Keep it beside the audit log, under the same controller key. Without a path it
lives in memory (replays are then refused only within the process, and a
checkpoint of such a learner cannot be checked when loaded).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .audit import AuditKey, ChainedLog, _line_hash

KIND = "forgotten-ids store"


class ForgottenStore:
    """Append-only record of honoured requests and the sample ids they forgot (see the module doc)."""

    def __init__(self, path: str | Path | None = None, key: "AuditKey | bytes | None" = None) -> None:
        self.chain = ChainedLog(path, key, KIND)
        self.entries: list[dict] = self.chain.existing_records()
        self._used = {e["request_id"] for e in self.entries}

    @classmethod
    def from_lines(cls, lines: list[str]) -> "ForgottenStore":
        """An in-memory store restored from :attr:`lines` (e.g. a Flower client's ``Context.state``)."""
        store = cls.__new__(cls)
        chain = ChainedLog.__new__(ChainedLog)
        if not lines:
            raise ValueError("a stored forgotten-ids store has at least its genesis line")
        chain.path, chain.key, chain.kind, chain.lines = None, None, KIND, list(lines)
        chain.count, chain.last, chain.log_id = len(lines), _line_hash(lines[-1].encode()), json.loads(lines[0])["log_id"]
        store.chain = chain
        store.entries = chain.existing_records()
        store._used = {e["request_id"] for e in store.entries}
        return store

    @property
    def lines(self) -> list[str]:
        """The log's lines (in-memory stores only)."""
        return list(self.chain.lines)

    @property
    def path(self) -> Path | None:
        return self.chain.path

    @property
    def durable(self) -> bool:
        return self.chain.path is not None

    @property
    def store_id(self) -> str:
        return self.chain.log_id

    @property
    def seq(self) -> int:
        """Number of requests recorded (the last entry's ``seq``)."""
        return len(self.entries)

    def used(self, request_id: str) -> bool:
        return request_id in self._used

    def append(self, *, request: dict, principal: str, sample_ids: torch.Tensor, signature: dict,
               method: str | None = None, options: dict | None = None) -> dict:
        """Record an honoured request (call before reporting it honoured); returns the entry with its ``seq``.
        ``method``/``options``: what honoured it (a re-application runs the same)."""
        if request["request_id"] in self._used:
            raise ValueError(f"request id {request['request_id']!r} is already in the store")
        entry = self.chain.append({"event": "forgotten", "seq": self.seq + 1, "request_id": request["request_id"],
                                   "kind": request["kind"], "method": method or request.get("method"),
                                   "options": dict(options or {}), "request": request,
                                   "principal": principal, "signature": signature,
                                   "sample_ids": sorted(int(i) for i in sample_ids)})
        self.entries.append(entry)
        self._used.add(entry["request_id"])
        return entry

    def entries_after(self, seq: int) -> list[dict]:
        return [e for e in self.entries if e["seq"] > seq]

    def forgotten_ids(self) -> torch.Tensor:
        ids = sorted({int(i) for e in self.entries for i in e["sample_ids"]})
        return torch.tensor(ids, dtype=torch.long)

    def attach_key(self, key: "AuditKey | bytes") -> None:
        self.chain.key = AuditKey.of(key)

    def __getstate__(self) -> dict:
        d = dict(self.__dict__)
        if self.durable:  # the file is the authority; a checkpoint keeps where it was (id, seq), not a copy
            d["entries"] = [{"seq": e["seq"], "request_id": e["request_id"]} for e in self.entries]
            d["_used"] = set()
        return d
