"""Checkpoint helpers around Avalanche's ``save_checkpoint`` / ``maybe_load_checkpoint`` that never resurrect data.

A forgetting strategy's checkpoint records where its forgotten-ids store stood
when it was written (the store's id and ``seq``). Loading it into a strategy
opened on that store re-applies every request honoured after the checkpoint
(through the unlearning core, recorded in the audit log as a re-application),
so forgotten samples never come back; a checkpoint that cannot be checked (the
strategy has no durable store, or another store, or a store behind the
checkpoint) is refused with :class:`CheckpointRefused` and the strategy is left
as it was. :func:`scrub_checkpoint` rewrites an older checkpoint file the same
way (or deletes it): ``avalanche-rm checkpoint scrub``.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import dill
import torch

from ..unlearning import AuditLog, ForgetCore

_log = logging.getLogger(__name__)


class CheckpointRefused(ValueError):
    """A checkpoint that could bring forgotten data back; the strategy was left unchanged."""


def save_checkpoint(strategy, path: str, exclude=None) -> None:
    """Avalanche's ``save_checkpoint``, made to work on torch 2.14 + dill 0.4 and written atomically.

    dill must pickle torch's optimiser functions by value (``recurse``), or it
    fails on a typing_extensions sentinel; the file is written to a temporary
    name and renamed, so a crash never leaves a half-written checkpoint. A
    forgetting strategy's checkpoint carries its store's id and ``seq`` (never
    the audit key).
    """
    from avalanche.checkpointing import save_checkpoint as _save

    dill.settings["recurse"] = True
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix="ckpt-tmp-", suffix=".pkl")
    os.close(fd)
    try:
        _save(strategy, tmp, exclude=exclude)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _forgets(strategy) -> bool:
    return isinstance(getattr(strategy, "forget_core", None), ForgetCore)


def maybe_load_checkpoint(strategy, path: str, map_location=None, allow_unverified: bool = False):
    """Avalanche's ``maybe_load_checkpoint`` (returns ``(strategy, next_experience_index)``) that never resurrects.

    For a forgetting strategy (build it as for a fresh run: same key
    directory, audit log, audit key and store), every request honoured after
    the checkpoint was written is re-applied before this returns. Raises
    :class:`CheckpointRefused` (the strategy unchanged) if that cannot be
    checked: ``allow_unverified=True`` loads anyway when the strategy has no
    durable store, with a warning and an audit record saying so.
    """
    from avalanche.checkpointing import maybe_load_checkpoint as _load

    dill.settings["recurse"] = True
    if not _forgets(strategy) or not os.path.exists(path):
        return _load(strategy, path, map_location=map_location)
    live = strategy.forget_core
    before, live_records = dict(strategy.__dict__), list(live.audit.records)
    strategy, n = _load(strategy, path, map_location=map_location)
    try:
        restore_forgetting(strategy, live, str(path), allow_unverified)
    except Exception as e:
        strategy.__dict__.clear()
        strategy.__dict__.update(before)
        live.audit.records = live_records
        if isinstance(e, CheckpointRefused):
            raise
        # some requests may have been re-applied (and logged) on the discarded state: say so in the log
        live.audit.append({"event": "checkpoint-refused", "checkpoint": str(path), "reason": repr(e)})
        raise CheckpointRefused(f"checkpoint {str(path)!r}: re-applying the requests made after it failed "
                                f"({type(e).__name__}: {e}); the strategy is unchanged") from e
    return strategy, n


def restore_forgetting(strategy, live: ForgetCore, source: str, allow_unverified: bool = False) -> list[dict]:
    """After a checkpoint's state replaced ``strategy``'s: attach ``live``'s key directory, audit log and store,
    and re-apply every stored request made after the checkpoint. Returns the re-application records."""
    loaded = strategy.forget_core
    ck_store = getattr(loaded, "store", None)  # absent: a checkpoint older than the forgotten-ids store
    if not live.store.durable:
        if not allow_unverified:
            raise CheckpointRefused(
                f"checkpoint {source!r} belongs to a strategy that forgets, and this strategy has no durable "
                "forgotten-ids store to check it against: requests made after it was written would be lost and "
                "their data come back. Build the strategy with the store it was written with (audit_path/store_path "
                "and audit_key), or pass allow_unverified=True to load it anyway (logged)")
    elif ck_store is not None:
        if ck_store.store_id != live.store.store_id:
            raise CheckpointRefused(f"checkpoint {source!r} was written with forgotten-ids store {ck_store.store_id!r}, "
                                    f"not with this strategy's ({live.store.store_id!r} at {live.store.path})")
        if ck_store.seq > live.store.seq:
            raise CheckpointRefused(f"checkpoint {source!r} was written at store seq {ck_store.seq}, but the store at "
                                    f"{live.store.path} holds only {live.store.seq} request(s): it was truncated or "
                                    "replaced by an older copy")
    # checked: the live key directory, audit log (with the checkpoint's records) and store replace the pickled ones
    loaded.trust = live.trust
    loaded.__dict__.pop("admins", None)
    live.audit.records = list(getattr(loaded.audit, "records", []))
    loaded.audit = live.audit
    if not live.store.durable:
        _log.warning("checkpoint %s loaded without a forgotten-ids store: requests made after it are not re-applied",
                     source)
        loaded.store = ck_store if ck_store is not None and not ck_store.durable else live.store
        loaded.audit.append({"event": "checkpoint-unverified", "checkpoint": source,
                             "reason": "loaded with allow_unverified=True and no durable store"})
        return []
    if ck_store is None:
        after, note = 0, "predates the forgotten-ids store: every stored request is re-applied where its data are held"
    else:
        after, note = ck_store.seq, f"written at store seq {ck_store.seq}"
    loaded.store = live.store
    records = [strategy.reapply(e, reason=f"checkpoint {source} {note}") for e in live.store.entries_after(after)]
    loaded.forgotten_ids = torch.unique(torch.cat([loaded.forgotten_ids, live.store.forgotten_ids()]))
    return records


def scrub_checkpoint(path: str | Path, store, audit: AuditLog, delete: bool = False) -> dict:
    """Bring a checkpoint file up to ``store`` (re-apply later requests, save atomically) or delete it.

    ``store`` and ``audit`` must carry the controller's key. Returns what was done.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"checkpoint {str(path)!r} does not exist")
    if delete:
        path.unlink()
        audit.append({"event": "checkpoint-deleted", "checkpoint": str(path)})
        return {"checkpoint": str(path), "action": "deleted"}
    dill.settings["recurse"] = True
    ckp = torch.load(path, pickle_module=dill, weights_only=False)
    strategy = ckp.get("strategy") if isinstance(ckp, dict) else None
    if not _forgets(strategy):
        raise ValueError(f"{str(path)!r} is not a checkpoint of a forgetting strategy (avalanche_rm save_checkpoint)")
    live = ForgetCore(strategy.forget_core.__dict__.get("trust"), audit, store=store)
    records = restore_forgetting(strategy, live, str(path))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="ckpt-tmp-", suffix=".pkl")
    os.close(fd)
    try:
        torch.save(ckp, tmp, pickle_module=dill)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return {"checkpoint": str(path), "action": "rewritten", "reapplied": len(records),
            "samples_forgotten": sum(r["n_samples"] for r in records)}
