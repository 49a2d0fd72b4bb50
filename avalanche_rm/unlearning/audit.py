"""The audit log of honoured forget requests: ids, a keyed digest and metrics, never the data.

Each record says what was asked, which ids it covered, what changed, the
verification metrics before and after, and the hardware bill. Instead of the
forgotten samples it keeps an HMAC-SHA256 of their bytes under a secret key: the
data controller, who holds the key, can later prove that given data were the
ones forgotten; anyone without the key learns nothing about them (a plain or
publicly salted hash would let an attacker test guesses). The key is never
pickled or checkpointed.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path

import torch


def data_digest(key: bytes, ids: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> str:
    """HMAC-SHA256 under ``key`` of the samples (sorted by id: ids, inputs and labels as bytes)."""
    order = torch.argsort(ids)
    h = hmac.new(key, digestmod=hashlib.sha256)
    h.update(ids[order].to(torch.int64).numpy().tobytes())
    h.update(x[order].detach().to(torch.float32).contiguous().cpu().numpy().tobytes())
    h.update(y[order].to(torch.int64).cpu().numpy().tobytes())
    return h.hexdigest()


class AuditLog:
    """Records of honoured requests, kept in memory and appended to a JSON-lines file when ``path`` is set.

    ``key``: the controller's secret for :func:`data_digest` (a random one per
    log if not given; pass your own to verify digests later).
    """

    def __init__(self, path: str | Path | None = None, key: bytes | None = None) -> None:
        if key is not None and (not isinstance(key, bytes) or len(key) < 16):
            raise ValueError("audit key must be bytes of length >= 16")
        self.path = Path(path) if path is not None else None
        self.key = key if key is not None else secrets.token_bytes(32)
        self.records: list[dict] = []

    def digest(self, ids: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> str:
        return data_digest(self.key, ids, x, y)

    def append(self, record: dict) -> dict:
        record = dict(record, time=time.time())
        self.records.append(record)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:
                f.write(json.dumps(record, default=float) + "\n")
        return record

    def __len__(self) -> int:
        return len(self.records)

    def __getstate__(self) -> dict:
        d = dict(self.__dict__)
        d["key"] = None  # a controller secret: never in pickles or checkpoints
        return d

    def __setstate__(self, d: dict) -> None:
        self.__dict__.update(d)
        if self.key is None:
            self.key = secrets.token_bytes(32)
