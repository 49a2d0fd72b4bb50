"""Cost ledger: every programming job, training step and inference call of a hybrid model.

Counters accumulate per phase (``deploy``, ``train``, ``infer``, or any phase a
caller opens with :meth:`CostLedger.phase`). Hot-path quantities arrive as
tensors and are summed on their device; they become Python numbers only when
read, so a CUDA forward pass never waits on the host.
"""
from __future__ import annotations

import contextlib
import copy
import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterator

import torch

from .fields import FIELDS, TABLE_KEYS

#: Every counter a ledger keeps, with its unit (generated from the field table, :mod:`avalanche_rm.costs.fields`).
QUANTITIES: dict[str, str] = {f.name: f.unit for f in FIELDS}


_KNOWN = frozenset(QUANTITIES)


@dataclass
class CostSummary:
    """Plain-number totals of one phase (or of everything)."""

    values: dict[str, float]

    def __getitem__(self, key: str) -> float:
        return self.values.get(key, 0.0)

    def __getattr__(self, key: str) -> float:
        if key in QUANTITIES:
            return self.values.get(key, 0.0)
        raise AttributeError(key)

    def as_dict(self) -> dict[str, float]:
        return {k: self.values.get(k, 0.0) for k in QUANTITIES}


class CostLedger:
    """Accumulates hardware costs per phase; attach one to each hybrid model."""

    def __init__(self) -> None:
        self._totals: dict[str, dict[str, float]] = defaultdict(dict)
        # hot-path tensors wait here un-summed; folding them costs one op per key, not one per call
        self._pending: dict[tuple[str, str], list[torch.Tensor]] = {}
        self._scaled: dict[tuple[str, tuple], list[torch.Tensor]] = {}
        self._n_pending = 0
        self._events: list[dict] = []
        self._phase_stack: list[str] = []
        self._lock = threading.Lock()
        self.enabled = True

    # ------------------------------------------------------------ phase
    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator["CostLedger"]:
        """Charge everything inside the block to phase ``name``."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"phase name must be a non-empty string, got {name!r}")
        self._phase_stack.append(name)
        try:
            yield self
        finally:
            self._phase_stack.pop()

    @contextlib.contextmanager
    def paused(self) -> Iterator["CostLedger"]:
        """Charge nothing inside the block (e.g. simulator-side evaluation)."""
        old, self.enabled = self.enabled, False
        try:
            yield self
        finally:
            self.enabled = old

    def current_phase(self, default: str) -> str:
        return self._phase_stack[-1] if self._phase_stack else default

    # ------------------------------------------------------------ record
    def add(self, phase: str, **quantities: float | torch.Tensor) -> None:
        """Add counted quantities (numbers or 0-d tensors) to ``phase``."""
        if not self.enabled:
            return
        with self._lock:
            tot = self._totals[phase]
            for k, v in quantities.items():
                if k not in QUANTITIES:
                    raise ValueError(f"unknown ledger quantity {k!r}; known: {sorted(QUANTITIES)}")
                if isinstance(v, torch.Tensor):
                    self._pending.setdefault((phase, k), []).append(v.detach())
                    self._n_pending += 1
                else:
                    tot[k] = tot.get(k, 0.0) + float(v)
            if self._n_pending > 4096:
                self._fold()

    def add_times(self, phase: str, n: float, charges: dict[str, float]) -> None:
        """Add ``n`` times each of ``charges`` (a per-unit bill computed once) to ``phase``."""
        if not self.enabled or not n:
            return
        if not charges.keys() <= _KNOWN:
            raise ValueError(f"unknown ledger quantities {sorted(set(charges) - _KNOWN)}; known: {sorted(QUANTITIES)}")
        with self._lock:
            tot = self._totals[phase]
            for k, v in charges.items():
                tot[k] = tot.get(k, 0.0) + n * v

    def charge(self, phase: str, charges: dict[str, float]) -> None:
        """Add a dict of quantities (what :mod:`avalanche_rm.costs.pricing` returns) to ``phase``."""
        if charges:
            self.add(phase, **charges)

    def add_scaled(self, phase: str, value: torch.Tensor, coefficients: dict[str, float]) -> None:
        """Add ``coef * value`` to each named quantity, for one tensor ``value``.

        Several counters of an MVM are linear in one counted tensor (e.g. driven
        rows give MACs, DAC conversions and DAC energy); recording the tensor once
        with its coefficients keeps the hot path to a single append.
        """
        if not self.enabled:
            return
        for k in coefficients:
            if k not in QUANTITIES:
                raise ValueError(f"unknown ledger quantity {k!r}; known: {sorted(QUANTITIES)}")
        key = (phase, tuple(sorted(coefficients.items())))
        with self._lock:
            self._scaled.setdefault(key, []).append(value.detach() if value.requires_grad else value)
            self._n_pending += 1
            if self._n_pending > 4096:
                self._fold()

    def _fold(self) -> None:
        """Sum each pending list into one tensor (stays on device; no host sync)."""
        for store in (self._pending, self._scaled):
            for key, vals in store.items():
                if len(vals) > 1:
                    store[key] = [torch.stack([v.to(torch.float64).reshape(()) for v in vals]).sum()]
        self._n_pending = len(self._pending) + len(self._scaled)

    def log_event(self, kind: str, phase: str, **info) -> None:
        """Keep a record of a discrete job (programming, merge, forget request, ...)."""
        if self.enabled:
            self._events.append({"kind": kind, "phase": phase, **info})

    def _flush(self) -> None:
        with self._lock:
            self._fold()
            for (phase, k), vals in self._pending.items():
                if vals:
                    self._totals[phase][k] = self._totals[phase].get(k, 0.0) + float(vals[0])
            for (phase, coefs), vals in self._scaled.items():
                if vals:
                    v = float(vals[0])
                    for k, c in coefs:
                        self._totals[phase][k] = self._totals[phase].get(k, 0.0) + c * v
            self._pending.clear()
            self._scaled.clear()
            self._n_pending = 0

    # ------------------------------------------------------------ read
    @property
    def phases(self) -> list[str]:
        self._flush()
        return list(self._totals)

    @property
    def events(self) -> list[dict]:
        return list(self._events)

    def summary(self, phase: str | None = None) -> CostSummary:
        """Totals of one phase, or of all phases when ``phase`` is None."""
        self._flush()
        if phase is not None:
            return CostSummary(dict(self._totals.get(phase, {})))
        out: dict[str, float] = {}
        for tot in self._totals.values():
            for k, v in tot.items():
                out[k] = out.get(k, 0.0) + v
        return CostSummary(out)

    def total(self) -> CostSummary:
        return self.summary(None)

    def by_phase(self) -> dict[str, dict[str, float]]:
        self._flush()
        return {p: CostSummary(dict(t)).as_dict() for p, t in self._totals.items()}

    def snapshot(self) -> dict[str, dict[str, float]]:
        """Deep copy of the totals, for deltas (see :meth:`delta_since`)."""
        return copy.deepcopy(self.by_phase())

    def delta_since(self, snap: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        now = self.by_phase()
        out = {}
        for p, vals in now.items():
            before = snap.get(p, {})
            d = {k: v - before.get(k, 0.0) for k, v in vals.items()}
            if any(v != 0 for v in d.values()):
                out[p] = d
        return out

    def total_since(self, snap: dict[str, dict[str, float]]) -> dict[str, float]:
        """Every quantity charged since ``snap``, summed over phases."""
        delta = self.delta_since(snap)
        keys = dict.fromkeys(k for p in delta.values() for k in p)
        return {k: sum(p.get(k, 0.0) for p in delta.values()) for k in keys}

    def reset(self) -> None:
        with self._lock:
            self._totals.clear()
            self._pending.clear()
            self._scaled.clear()
            self._n_pending = 0
            self._events.clear()

    # ------------------------------------------------------------ state
    def state_dict(self) -> dict:
        self._flush()
        return {"totals": copy.deepcopy(dict(self._totals)), "events": copy.deepcopy(self._events)}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict) or "totals" not in state:
            raise ValueError("ledger state must be a dict with a 'totals' entry")
        with self._lock:
            self._pending.clear()
            self._scaled.clear()
            self._n_pending = 0
            self._totals = defaultdict(dict, copy.deepcopy(state["totals"]))
            self._events = copy.deepcopy(state.get("events", []))

    def __getstate__(self) -> dict:
        self._flush()
        d = dict(self.__dict__)
        d["_lock"] = None
        d["_pending"] = {}
        d["_scaled"] = {}
        return d

    def __setstate__(self, d: dict) -> None:
        self.__dict__.update(d)
        self.__dict__.setdefault("_scaled", {})
        self._lock = threading.Lock()

    def __deepcopy__(self, memo) -> "CostLedger":
        new = CostLedger()
        st = self.state_dict()
        new.load_state_dict(st)
        new.enabled = self.enabled
        new._phase_stack = list(self._phase_stack)
        return new

    def table(self, phases: list[str] | None = None, keys: tuple[str, ...] = TABLE_KEYS) -> str:
        """A plain-text table of totals per phase."""
        data = self.by_phase()
        phases = phases or list(data)
        header = ["phase"] + [f"{k}" for k in keys]
        rows = [[p] + [f"{data.get(p, {}).get(k, 0.0):.4g}" for k in keys] for p in phases]
        tot = self.total().as_dict()
        rows.append(["TOTAL"] + [f"{tot.get(k, 0.0):.4g}" for k in keys])
        widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
        line = lambda r: "  ".join(c.rjust(w) for c, w in zip(r, widths))  # noqa: E731
        return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])
