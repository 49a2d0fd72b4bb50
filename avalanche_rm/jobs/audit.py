"""Jobs behind ``avalanche-rm audit verify``, ``avalanche-rm checkpoint scrub`` and ``avalanche-rm keys init``."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ..strategies.checkpoint import scrub_checkpoint
from ..unlearning import AuditKey, AuditLog, ForgottenStore, VerifyResult, generate_keys, verify_log


def verify_files(paths: Iterable[str | Path], key_file: str | Path) -> list[VerifyResult]:
    """Verify each chained log (audit log, forgotten-ids store, federation log) under the controller's key."""
    key = AuditKey.load(key_file)
    return [verify_log(p, key) for p in paths]


def scrub_files(checkpoints: Iterable[str | Path], store_path: str | Path, key_file: str | Path,
                audit_path: str | Path | None = None, delete: bool = False) -> list[dict]:
    """Re-apply, to each checkpoint file, every stored request made after it (atomically), or delete the files.

    The re-applications are recorded in ``audit_path`` (default: the audit log
    beside the store, ``X.forgotten.jsonl`` -> ``X.jsonl``).
    """
    key = AuditKey.load(key_file)
    store_path = Path(store_path)
    if not store_path.exists():
        raise ValueError(f"forgotten-ids store {str(store_path)!r} does not exist")
    store = ForgottenStore(store_path, key)
    if audit_path is None:
        name = store_path.name.replace(".forgotten.jsonl", ".jsonl")
        if name == store_path.name:
            raise ValueError("--audit is needed: the store is not named <audit>.forgotten.jsonl")
        audit_path = store_path.with_name(name)
    audit = AuditLog(audit_path, key)
    return [scrub_checkpoint(c, store, audit, delete=delete) for c in checkpoints]


def init_keys(folder: str | Path, audience: str, owners: Iterable[int] = (), controllers: Iterable[str] = (),
              audit_key: bool = True) -> dict[str, Path]:
    """Fresh keys in ``folder``: ``trust.json`` (the learner's public directory), one private key per
    principal (``owner-<id>.key``, ``controller-<name>.key``, mode 0600) and the controller's ``audit.key``."""
    folder = Path(folder)
    owners, controllers = list(owners), list(controllers)
    if not owners and not controllers:
        raise ValueError("name at least one owner or controller")
    trust, keys = generate_keys(audience, owners, controllers)
    out = {"trust": trust.save(folder / "trust.json")}
    for o in owners:
        out[f"owner {o}"] = keys[o].save(folder / f"owner-{o}.key")
    for c in controllers:
        out[f"controller {c}"] = keys[c].save(folder / f"controller-{c}.key")
    if audit_key:
        out["audit key"] = AuditKey.generate().save(folder / "audit.key")
    return out
