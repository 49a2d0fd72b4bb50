"""Reusable scratch tensors for the simulator's hot path.

An analogue MVM makes several batch-sized temporaries (DAC codes, their
squares, per-tile partial sums four times the size of the output). Fresh
multi-megabyte tensors are page-faulted in on every call by the host
allocator, which on a small CPU host costs more than the arithmetic. A
:class:`Workspace` hands out the same storage again. It is per thread, and
what it hands out is valid only until the next request under the same name.
"""
from __future__ import annotations

import math
import threading

import torch


class Workspace:
    """Named scratch buffers, grown on demand, one set per thread (dropped on copy/pickle)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def get(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """An uninitialised tensor of ``shape`` with ``like``'s device and dtype."""
        bufs = getattr(self._local, "bufs", None)
        if bufs is None:
            bufs = self._local.bufs = {}
        n = math.prod(shape)
        key = (name, like.device, like.dtype)
        buf = bufs.get(key)
        if buf is None or buf.numel() < n:
            buf = torch.empty(n, device=like.device, dtype=like.dtype)
            bufs[key] = buf
        return buf[:n].view(shape)

    def clear(self) -> None:
        self._local = threading.local()

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()
