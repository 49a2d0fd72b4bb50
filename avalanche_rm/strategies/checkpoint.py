"""Checkpoint helpers around Avalanche's ``save_checkpoint`` / ``maybe_load_checkpoint``."""
from __future__ import annotations

import os
import tempfile

import dill


def save_checkpoint(strategy, path: str, exclude=None) -> None:
    """Avalanche's ``save_checkpoint``, made to work on torch 2.14 + dill 0.4 and written atomically.

    dill must pickle torch's optimiser functions by value (``recurse``), or it
    fails on a typing_extensions sentinel; the file is written to a temporary
    name and renamed, so a crash never leaves a half-written checkpoint.
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


def maybe_load_checkpoint(strategy, path: str, map_location=None):
    """Avalanche's ``maybe_load_checkpoint`` (returns ``(strategy, next_experience_index)``)."""
    from avalanche.checkpointing import maybe_load_checkpoint as _load

    dill.settings["recurse"] = True
    return _load(strategy, path, map_location=map_location)
