"""Tamper-evident logs: the audit log of forget requests (ids, a keyed digest and metrics, never the data).

Every log (the audit log, the forgotten-ids store, a federation's log) is a
:class:`ChainedLog`: JSON lines, the first a genesis line naming the log, each
line carrying its number, the SHA-256 of the line before it and an HMAC-SHA256
of its canonical content under the data controller's :class:`AuditKey` (whose
``key_id`` it records). A sidecar head file (``FILE.head``, MACed) records the
number of lines and the last line's hash, so a truncated tail is caught too.
:func:`verify_log` (``avalanche-rm audit verify FILE --key-file K``) reports
the first line that fails: an edited line (its MAC), a deleted or reordered one
(its number and the previous hash), a truncated tail (the head).

Instead of the forgotten samples a record keeps an HMAC of their bytes under a
digest key derived from the same controller key (its id recorded): whoever holds
the key can later prove that given data were the ones forgotten; nobody else
learns anything about them. The key is never pickled or checkpointed. Limits:
one writer per file; someone who replaces the log *and* its head with older
copies of both rolls it back undetected (compare the head hash ``audit verify``
prints with one kept elsewhere).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .auth import _read_json, canonical_json, write_private

GENESIS_PREV = "0" * 64
_log = logging.getLogger(__name__)


def data_digest(key: bytes, ids: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> str:
    """HMAC-SHA256 under ``key`` of the samples (sorted by id: ids, inputs and labels as bytes)."""
    order = torch.argsort(ids)
    h = hmac.new(key, digestmod=hashlib.sha256)
    h.update(ids[order].to(torch.int64).numpy().tobytes())
    h.update(x[order].detach().to(torch.float32).contiguous().cpu().numpy().tobytes())
    h.update(y[order].to(torch.int64).cpu().numpy().tobytes())
    return h.hexdigest()


class AuditKey:
    """The data controller's secret for log MACs and data digests (separate sub-keys derived from it).

    ``key_id`` names it in every record without revealing it. Never pickled:
    keep it in a file only the controller reads (:meth:`save`, mode 0600).
    """

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, bytes) or len(secret) < 16:
            raise ValueError("audit key must be bytes of length >= 16")
        self._secret = secret
        self._mac_key = hmac.new(secret, b"avalanche-rm/log-mac", hashlib.sha256).digest()
        self._digest_key = hmac.new(secret, b"avalanche-rm/data-digest", hashlib.sha256).digest()
        self.key_id = hmac.new(secret, b"avalanche-rm/key-id", hashlib.sha256).hexdigest()[:16]

    @classmethod
    def generate(cls) -> "AuditKey":
        return cls(secrets.token_bytes(32))

    @classmethod
    def of(cls, key) -> "AuditKey | None":
        """``key`` as an :class:`AuditKey` (bytes are wrapped; ``None`` stays ``None``)."""
        if key is None or isinstance(key, AuditKey):
            return key
        return cls(key)

    def mac(self, data: bytes) -> str:
        return hmac.new(self._mac_key, data, hashlib.sha256).hexdigest()

    def digest(self, ids: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> str:
        """Keyed digest of samples (see :func:`data_digest`); records name its key by ``key_id``."""
        return data_digest(self._digest_key, ids, x, y)

    def save(self, path: str | Path) -> Path:
        return write_private(path, json.dumps({"kind": "avalanche-rm audit key", "key": self._secret.hex(),
                                               "key_id": self.key_id}) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "AuditKey":
        d = _read_json(path, "audit key")
        try:
            return cls(bytes.fromhex(d["key"]))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"audit key file {str(path)!r} holds no valid key") from None

    def __reduce__(self):
        raise TypeError("an AuditKey is the controller's secret: it is never pickled (save it with .save(path))")

    def __repr__(self) -> str:
        return f"AuditKey({self.key_id})"


def _line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _plain(record: dict) -> dict:
    """The record as JSON gives it back (numpy/torch scalars as floats; NaN kept), so MACs re-verify."""
    return json.loads(json.dumps(record, default=float))


def _head_path(path: Path) -> Path:
    return path.with_name(path.name + ".head")


@dataclass
class VerifyResult:
    """What :func:`verify_log` found: ``ok``, the first bad line (1-based) and why, notes that are no fault."""

    path: str
    ok: bool
    lines: int = 0
    bad_line: int | None = None
    problem: str = ""
    notes: list[str] = field(default_factory=list)
    head_hash: str = ""
    log_id: str = ""
    records: list[dict] = field(default_factory=list)

    def message(self) -> str:
        if self.ok:
            extra = "".join(f"; note: {n}" for n in self.notes)
            return (f"{self.path}: ok, {self.lines} lines (chain, MACs and head verified; last line's hash "
                    f"{self.head_hash}: keep it elsewhere to detect a rollback){extra}")
        where = f" line {self.bad_line}" if self.bad_line is not None else ""
        return f"{self.path}{where}: {self.problem}"


def _scan(path: Path, key: "AuditKey | None", kind: str | None = None) -> VerifyResult:
    res = VerifyResult(str(path), False)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        res.problem = "no such file"
        return res
    parts = blob.split(b"\n")
    torn = parts.pop()  # after the last newline: empty, or an unterminated (interrupted) write
    prev = GENESIS_PREV
    for i, raw in enumerate(parts, start=1):
        res.bad_line = i
        try:
            rec = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            res.problem = "not a JSON record (edited?)"
            return res
        if not isinstance(rec, dict) or "mac" not in rec or "line" not in rec:
            res.problem = "not a chained record (no line number or MAC)"
            return res
        if key is not None:
            if rec.get("key_id") != key.key_id:
                res.problem = f"MACed under key {rec.get('key_id')!r}, not under the key given ({key.key_id!r})"
                return res
            body = {k: v for k, v in rec.items() if k != "mac"}
            if not hmac.compare_digest(str(rec["mac"]), key.mac(canonical_json(body))):
                res.problem = "MAC does not verify: the record was edited"
                return res
        if rec["line"] != i:
            res.problem = (f"record numbered {rec['line']!r} where line {i} belongs "
                           "(a line deleted or moved before it)")
            return res
        if rec.get("prev") != prev:
            res.problem = "previous-line hash does not match line {} (a line deleted, moved or edited)".format(i - 1)
            return res
        if i == 1:
            if rec.get("event") != "genesis":
                res.problem = "the first line is not the log's genesis record (lines deleted at the start?)"
                return res
            res.log_id = str(rec.get("log_id", ""))
            if kind is not None and rec.get("log") != kind:
                res.problem = f"this is a {rec.get('log')!r} log, not a {kind!r} log"
                return res
        else:
            res.records.append(rec)
        prev = _line_hash(raw)
    res.bad_line = None
    res.lines = len(parts)
    if not parts:
        res.problem = "empty log (not even a genesis line)"
        return res
    if torn:
        res.notes.append("an unterminated last line (an interrupted write) is not part of the log")
    head_file = _head_path(path)
    if not head_file.exists():
        res.problem = f"head file {head_file.name} is missing: a truncated tail could not be detected"
        return res
    try:
        head = json.loads(head_file.read_text())
        body = {k: v for k, v in head.items() if k != "mac"}
        n_head = int(head["lines"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        res.problem = f"head file {head_file.name} is unreadable"
        return res
    if key is not None and (head.get("key_id") != key.key_id
                            or not hmac.compare_digest(str(head.get("mac")), key.mac(canonical_json(body)))):
        res.problem = f"head file {head_file.name}: MAC does not verify (edited)"
        return res
    if head.get("log_id") != res.log_id:
        res.problem = f"head file {head_file.name} belongs to another log ({head.get('log_id')!r})"
        return res
    if n_head > res.lines:
        res.bad_line = res.lines + 1
        res.problem = (f"truncated: the head records {n_head} lines, the file ends after {res.lines} "
                       f"(line {res.lines + 1} onwards is missing)")
        return res
    if _line_hash(parts[n_head - 1]) != head.get("last"):
        res.bad_line = n_head
        res.problem = "differs from the line the head records (the tail was replaced)"
        return res
    if n_head < res.lines:
        res.notes.append(f"{res.lines - n_head} line(s) after the head (a write interrupted before its head)")
    res.head_hash = _line_hash(parts[-1])
    res.ok = True
    return res


def verify_log(path: str | Path, key: "AuditKey | bytes", kind: str | None = None) -> VerifyResult:
    """Check a chained log's every line (MAC, number, previous hash) and its head; see :class:`VerifyResult`."""
    return _scan(Path(path), AuditKey.of(key), kind)


class ChainedLog:
    """An append-only, hash-chained, MACed JSON-lines log (in memory when ``path`` is ``None``).

    A file log needs the controller's ``key``; an existing file is verified when
    opened and refused if it fails (an interrupted last write is dropped and its
    head repaired, with a warning). An in-memory log without a key is chained but
    not MACed (nothing outlives the process to verify).
    """

    def __init__(self, path: str | Path | None, key: "AuditKey | bytes | None", kind: str) -> None:
        self.path = Path(path) if path is not None else None
        self.key = AuditKey.of(key)
        self.kind = kind
        self.lines: list[str] = []      # in-memory logs only
        if self.path is not None and self.key is None:
            raise ValueError(f"the {kind} at {str(self.path)!r} needs the data controller's audit key (an AuditKey; "
                             "make one with AuditKey.generate().save(FILE) or `avalanche-rm keys init`): a log "
                             "without a MAC key cannot prove it was not edited")
        if self.path is not None and self.path.exists():
            self._open_existing()
        else:
            self.count, self.last, self.log_id = 0, GENESIS_PREV, secrets.token_hex(8)
            self._write({"event": "genesis", "log": kind, "log_id": self.log_id, "created": time.time()})

    def _open_existing(self) -> None:
        res = _scan(self.path, self.key, self.kind)
        if not res.ok:
            where = f" line {res.bad_line}" if res.bad_line is not None else ""
            raise ValueError(f"{self.kind} {str(self.path)!r}{where}: {res.problem}; refusing to append to a log "
                             "that fails verification (see `avalanche-rm audit verify`)")
        blob = self.path.read_bytes()
        parts = blob.split(b"\n")
        torn = parts.pop()
        if torn:
            _log.warning("%s %s: dropping an unterminated last line (an interrupted write)", self.kind, self.path)
            with open(self.path, "r+b") as f:
                f.truncate(len(blob) - len(torn))
                os.fsync(f.fileno())
        self.count, self.last, self.log_id = len(parts), _line_hash(parts[-1]), res.log_id
        self._size = self.path.stat().st_size
        self._write_head()
        self._records = res.records

    def existing_records(self) -> list[dict]:
        """Records (genesis excluded) already in the file when it was opened, or in memory."""
        if self.path is None:
            return [json.loads(line) for line in self.lines[1:]]
        return list(getattr(self, "_records", []))

    @property
    def writable(self) -> bool:
        """Whether this log can append (a file log needs its key: keys are never pickled)."""
        return self.path is None or self.key is not None

    def append(self, record: dict) -> dict:
        if not self.writable:
            raise ValueError(f"the {self.kind} at {str(self.path)!r} has no audit key attached (keys are never "
                             "pickled: re-attach the controller's key before writing)")
        if self.path is not None and (not self.path.exists() or self.path.stat().st_size != self._size):
            raise ValueError(f"the {self.kind} at {str(self.path)!r} changed since this process last wrote it "
                             "(another writer, or an edit): reopen it (one writer per log)")
        return self._write(record)

    def _write(self, record: dict) -> dict:
        rec = _plain(record)
        rec.update(line=self.count + 1, prev=self.last)
        if self.key is not None:
            rec["key_id"] = self.key.key_id
            rec["mac"] = self.key.mac(canonical_json(rec))
        else:
            rec["mac"] = None
        line = canonical_json(rec)
        if self.path is None:
            self.lines.append(line.decode())
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as f:
                f.write(line + b"\n")
                f.flush()
                os.fsync(f.fileno())
                self._size = f.tell()
        self.count += 1
        self.last = _line_hash(line)
        if self.path is not None:
            self._write_head()
        return rec

    def _write_head(self) -> None:
        head = {"lines": self.count, "last": self.last, "log_id": self.log_id, "key_id": self.key.key_id}
        head["mac"] = self.key.mac(canonical_json(head))
        hp = _head_path(self.path)
        tmp = hp.with_name(hp.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(canonical_json(head) + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, hp)

    def __getstate__(self) -> dict:
        d = dict(self.__dict__)
        d["key"] = None  # the controller's secret: never in pickles or checkpoints
        d.pop("_records", None)
        return d


class AuditLog:
    """Records of honoured requests, kept in memory and appended to a chained, MACed log when ``path`` is set.

    ``key``: the controller's :class:`AuditKey` (or its bytes), needed for a log
    file; an in-memory log without one uses a throw-away key for digests (they
    cannot be checked later: pass your key to make them checkable).
    """

    def __init__(self, path: str | Path | None = None, key: "AuditKey | bytes | None" = None) -> None:
        self.key = AuditKey.of(key)
        self.chain = ChainedLog(path, self.key, "audit log")
        if self.key is None:
            self.key = AuditKey.generate()
            self.ephemeral_key = True
        else:
            self.ephemeral_key = False
        self.records: list[dict] = []

    @property
    def path(self) -> Path | None:
        return self.chain.path

    def digest(self, ids: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> str:
        return self.key.digest(ids, x, y)

    def digest_fields(self, ids: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> dict:
        """``data_digest`` and the id of the key it was made with (``None``: a throw-away key)."""
        return {"data_digest": self.digest(ids, x, y),
                "digest_key_id": None if self.ephemeral_key else self.key.key_id}

    def append(self, record: dict) -> dict:
        record = self.chain.append(dict(record, time=time.time()))
        self.records.append(record)
        return record

    def attach_key(self, key: "AuditKey | bytes") -> None:
        """Re-attach the controller's key after unpickling (keys are never pickled)."""
        self.key = AuditKey.of(key)
        self.chain.key = self.key
        self.ephemeral_key = False

    def __len__(self) -> int:
        return len(self.records)

    def __getstate__(self) -> dict:
        d = dict(self.__dict__)
        d["key"] = None  # a controller secret: never in pickles or checkpoints
        return d

    def __setstate__(self, d: dict) -> None:
        self.__dict__.update(d)
        chain = d.get("chain")
        if self.key is None and (chain is None or chain.path is None):
            self.key, self.ephemeral_key = AuditKey.generate(), True
