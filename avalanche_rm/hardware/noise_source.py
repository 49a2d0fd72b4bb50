"""Standard-normal draws for per-read noise, seeded per chip.

An analogue forward pass needs one Gaussian per column read: batch x input
tiles x output columns, about a million for a 512-512-512 MLP at batch 256.
torch's CPU generator (mt19937, one core) takes ~7 ns a draw on a small host,
more than the whole matrix product. Two samplers:

- ``"exact"``: every draw comes from torch's generator.
- ``"table"`` (default): a call takes a window of ``n`` consecutive entries of
  a table of i.i.d. N(0, 1) values at a uniformly random offset. Draws within
  one call are independent exact normals; across calls a value is reused at
  unrelated positions until the table is redrawn, which happens once
  ``reuse`` times its size has been handed out. This is the shared noise
  table of Salimans et al. (2017), "Evolution Strategies as a Scalable
  Alternative to Reinforcement Learning", sec. 2.3, refreshed in epochs.

Both are reproducible from ``seed``, and both pickle with their position in
the stream: a table is rebuilt from ``(seed, epoch)`` instead of being stored,
so a checkpointed chip resumes with the draws it would have made.
"""
from __future__ import annotations

import math
import random

import torch

from ..validation import check_int
from ._validate import check_choice

SAMPLERS = ("exact", "table")


def _epoch_seed(seed: int, epoch: int, size: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + size) % (1 << 63)


class NormalSource:
    """Per-chip source of N(0, 1) draws (see the module docstring for the two samplers)."""

    def __init__(self, mode: str = "table", seed: int = 0, reuse: int = 32, table_min: int = 1 << 22) -> None:
        check_choice("NormalSource", "mode", mode, SAMPLERS)
        check_int(reuse, "NormalSource.reuse", 1)
        check_int(table_min, "NormalSource.table_min", 1)
        self.mode = mode
        self.reuse = reuse
        self.table_min = table_min
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Restart the stream from ``seed``."""
        check_int(seed, "NormalSource.seed", 0)
        self.seed = seed
        # offsets live on the host: choosing a window never waits on a GPU
        self._host = random.Random(seed)
        self._gens: dict[str, torch.Generator] = {}
        # per (device, dtype): [epoch, entries handed out this epoch, table size]; tables themselves are derived
        self._epochs: dict[tuple[str, str], list[int]] = {}
        self._tables: dict[tuple[str, str], torch.Tensor] = {}

    def __getstate__(self) -> dict:
        return {"mode": self.mode, "reuse": self.reuse, "table_min": self.table_min, "seed": self.seed,
                "host": self._host.getstate(), "epochs": {k: list(v) for k, v in self._epochs.items()},
                "gens": {k: g.get_state() for k, g in self._gens.items()}}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["mode"], state["seed"], state["reuse"], state["table_min"])
        self._host.setstate(state["host"])
        self._epochs = {tuple(k): list(v) for k, v in state["epochs"].items()}
        for k, st in state["gens"].items():
            self._generator(torch.device(k)).set_state(st)

    def _generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        g = self._gens.get(key)
        if g is None:
            g = torch.Generator(device=device if device.type != "cpu" else "cpu")
            g.manual_seed(self.seed)
            self._gens[key] = g
        return g

    def _table(self, key: tuple[str, str], device: torch.device, dtype: torch.dtype, n: int) -> torch.Tensor:
        ep = self._epochs.get(key)
        if ep is None:
            ep = self._epochs[key] = [0, 0, max(self.table_min, 4 * n)]
        elif ep[2] < 4 * n or ep[1] + n > self.reuse * ep[2]:
            ep[:] = [ep[0] + 1, 0, max(ep[2], 4 * n)]
            self._tables.pop(key, None)
        table = self._tables.get(key)
        if table is None:
            g = torch.Generator(device=device if device.type != "cpu" else "cpu")
            g.manual_seed(_epoch_seed(self.seed, ep[0], ep[2]))
            table = self._tables[key] = torch.randn(ep[2], generator=g, device=device, dtype=dtype)
        ep[1] += n
        return table

    def normal(self, shape: tuple[int, ...], device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """A tensor of ``shape`` filled with N(0, 1) draws (a view into the table in ``"table"`` mode: read only)."""
        if self.mode == "exact":
            return torch.randn(shape, generator=self._generator(device), device=device, dtype=dtype)
        n = math.prod(shape)
        table = self._table((str(device), str(dtype)), device, dtype, n)
        start = self._host.randrange(table.numel() - n + 1)
        return table[start:start + n].view(shape)
