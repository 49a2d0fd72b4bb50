"""Standard-normal draws for per-read noise, seeded per chip.

An analogue forward pass needs one Gaussian per column read: batch x input
tiles x output columns, about a million for a 512-512-512 MLP at batch 256.
torch's CPU generator (mt19937, one core) takes ~2.4 ns a draw on this 2-core host,
more than the whole matrix product. Three samplers:

- ``"exact"``: every draw comes from torch's generator.
- ``"table"`` (default): a call takes a window of ``n`` consecutive entries of
  a table of i.i.d. N(0, 1) values at a uniformly random offset. Draws within
  one call are independent exact normals; across calls a value is reused at
  unrelated positions until the table is redrawn, which happens once
  ``reuse`` times its size has been handed out. This is the shared noise
  table of Salimans et al. (2017), "Evolution Strategies as a Scalable
  Alternative to Reinforcement Learning", sec. 2.3, refreshed in epochs.

- ``"counter"``: a counter-based generator (Salmon et al. 2011, "Parallel
  random numbers: as easy as 1, 2, 3", the scheme of Philox): draw ``i`` of a
  call is a hash of ``(i, call key)`` turned into a normal by Box-Muller, so
  every draw is fresh, as in ``"exact"``, and costs a few integer operations
  that the fused read (:mod:`avalanche_rm.hardware.fused`) computes inside its
  kernel; without it the same values come from eager torch (about 8x slower
  than ``"exact"``). The hash is Wellons' ``lowbias32``: two rounds with
  32-bit call keys mixed in give the radius' uniform (32 bits: tails to 6.8
  sigma), one more round the angle's (24 bits).

All are reproducible from ``seed``, and all pickle with their position in
the stream: a table is rebuilt from ``(seed, epoch)`` instead of being stored,
so a checkpointed chip resumes with the draws it would have made.
"""
from __future__ import annotations

import math
import random

import torch

from ..validation import check_int
from ._validate import check_choice

SAMPLERS = ("exact", "table", "counter")
#: samplers of write-verify's pulse and verify-read noise (:func:`~avalanche_rm.hardware.programming.write_verify`)
PROGRAMMING_SAMPLERS = ("exact", "table")
#: seed of the process-wide tables that programming jobs draw windows from (a constant: every job is reproducible
#: from its own generator alone, whatever else ran in the process)
SHARED_TABLE_SEED = 0x5EED
SHARED_TABLE_MIN = 1 << 22
_SHARED_TABLES: dict[tuple[int, str, str], torch.Tensor] = {}


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

    def counter_keys(self, device: torch.device) -> torch.Tensor:
        """The next call's three 32-bit keys (``"counter"`` mode), as an int64 tensor on ``device``."""
        return torch.tensor([self._host.getrandbits(32) for _ in range(3)], dtype=torch.int64, device=device)

    def normal(self, shape: tuple[int, ...], device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """A tensor of ``shape`` filled with N(0, 1) draws (a view into the table in ``"table"`` mode: read only)."""
        if self.mode == "exact":
            return torch.randn(shape, generator=self._generator(device), device=device, dtype=dtype)
        if self.mode == "counter":
            return counter_normals(math.prod(shape), self.counter_keys(device)).to(dtype).view(shape)
        n = math.prod(shape)
        table = self._table((str(device), str(dtype)), device, dtype, n)
        start = self._host.randrange(table.numel() - n + 1)
        return table[start:start + n].view(shape)


# ------------------------------------------------------------------ counter-based draws
_M32 = 0xFFFFFFFF


def _signed(c: int) -> int:
    """A 32-bit constant as a signed int below 2**31 in magnitude: ``x * c`` never overflows int64 for x < 2**32."""
    return c - (1 << 32) if c >= (1 << 31) else c


_LB1, _LB2 = _signed(0x7FEB352D), _signed(0x846CA68B)


def _lowbias32(x: torch.Tensor) -> torch.Tensor:
    """Wellons' ``lowbias32`` integer hash on 32-bit values held in int64."""
    x = x ^ (x >> 16)
    x = (x * _LB1) & _M32
    x = x ^ (x >> 15)
    x = (x * _LB2) & _M32
    return x ^ (x >> 16)


def counter_normals(n: int, keys: torch.Tensor) -> torch.Tensor:
    """``n`` float32 N(0, 1) draws from the counter generator under ``keys`` (int64 ``[3]``), on keys' device.

    Pure torch on purpose: the fused read traces this same function into its
    kernel, so both paths draw identical values (to float rounding of log/cos).
    """
    i = torch.arange(n, dtype=torch.int64, device=keys.device)
    j = i >> 1  # draws 2j and 2j + 1 share a Box-Muller pair: cosine and sine of one angle
    a = _lowbias32(_lowbias32(j ^ keys[0]) ^ keys[1])
    b = _lowbias32(a ^ keys[2])
    u1 = (a.to(torch.float32) + 0.5) * (1.0 / 4294967296.0)
    u2 = (b >> 8).to(torch.float32) * (1.0 / 16777216.0)
    r = torch.sqrt(-2.0 * torch.log(u1))
    # sin(t) = cos(t - pi/2): one transcendental per draw
    return r * torch.cos(2.0 * math.pi * u2 - (i & 1).to(torch.float32) * (0.5 * math.pi))


def shared_table(size: int, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A process-wide table of ``size`` i.i.d. N(0, 1) values, derived from ``SHARED_TABLE_SEED`` and ``size`` only."""
    key = (size, str(device), str(dtype))
    t = _SHARED_TABLES.get(key)
    if t is None:
        g = torch.Generator(device=device if device.type != "cpu" else "cpu")
        g.manual_seed(_epoch_seed(SHARED_TABLE_SEED, 0, size))
        t = _SHARED_TABLES[key] = torch.randn(size, generator=g, device=device, dtype=dtype)
    return t


class TableWindows:
    """Standard-normal draws for one write-verify job: windows of a shared table at offsets seeded by the job.

    The same scheme as :class:`NormalSource`'s ``"table"`` sampler (Salimans et
    al. 2017, sec. 2.3): the draws of one call are distinct, independent exact
    normals; across calls values recur at unrelated positions. The table is
    shared by every job in the process and fixed by its size (a power of two, at
    least four times the largest call), so no job pays for drawing it again and
    a job's draws depend on its seed only. Returned tensors are read-only views.
    """

    def __init__(self, seed: int) -> None:
        self._host = random.Random(seed)

    def normal(self, n: int, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        size = max(SHARED_TABLE_MIN, 1 << max(0, 4 * n - 1).bit_length())
        table = shared_table(size, device, dtype)
        start = self._host.randrange(size - n + 1)
        return table[start:start + n]
