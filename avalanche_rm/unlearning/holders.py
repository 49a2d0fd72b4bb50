"""Holders: everything a learner keeps besides its model and registry, each purged or the request refused.

A forget request must leave no trace of the forgotten data wherever a learner
keeps it: replay buffers, episodic memories, teacher models, importance
estimates, optimiser moments, ... This module is the framework-free half: a
:class:`HolderRegistry` of :class:`HolderHandler` s, one per kind of object.
A handler says

- ``applies(obj)``: whether it handles this object;
- ``check(obj, ctx)``: raise :class:`ForgetRefused` (naming the holder and why)
  when its purge could not leave what training without the forgotten data
  would have left. Every holder is checked BEFORE anything changes;
- ``purge(obj, ctx) -> dict``: remove the data; it returns what it removed or
  recomputed (an empty dict: it held nothing of them).

An object that no handler applies to is refused (nothing changes), unless it
speaks for itself with the documented protocol:

- a class attribute ``forget_holds_no_data = True``: it keeps nothing derived
  from training data (counters, settings, references to the model);
- or methods ``forget_purge(ctx) -> dict`` and, optionally,
  ``forget_check(ctx)`` (raising :class:`ForgetRefused`), with the contract of
  a handler. A user's own plugin opts in this way.

The handlers for Avalanche's plugins live with the strategies
(:mod:`avalanche_rm.strategies.holders`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch

from .requests import ForgetRefused, ForgetRequest

#: class attribute by which an object declares it keeps nothing derived from training data
HOLDS_NO_DATA = "forget_holds_no_data"
#: methods by which an object purges itself (``forget_check`` is optional)
SELF_CHECK, SELF_PURGE = "forget_check", "forget_purge"

#: rows compared at once by :meth:`ForgetContext.matches` (bounds the comparison tensor to ~64 MB)
_MATCH_ELEMENTS = 1 << 26


@dataclass
class ForgetContext:
    """What a holder's check and purge see of a request that is being honoured.

    ``forget_x``/``forget_y`` are the rows being forgotten (for holders that
    keep rows without sample ids: found by exact content); ``host`` is the
    learner (an Avalanche strategy, a Flower client) that owns the holders.
    A context lives only for the request: never store it or its rows.
    """

    request: ForgetRequest
    ids: torch.Tensor
    forget_x: torch.Tensor
    forget_y: torch.Tensor
    host: Any = None
    notes: dict = field(default_factory=dict)

    def is_forgotten(self, ids) -> torch.Tensor:
        """Boolean mask: which of ``ids`` (sample ids) the request forgets."""
        ids = torch.as_tensor([int(i) for i in ids] if not torch.is_tensor(ids) else ids, dtype=torch.long)
        return torch.isin(ids, self.ids)

    def matches(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Boolean mask: which rows of ``x`` (with label ``y``, if given) are bit for bit a forgotten row.

        For holders that keep copies of inputs without their sample ids (GEM's
        memory, ...). A retained sample identical to a forgotten one matches
        too: it cannot be told apart, and removing it keeps no forgotten byte.
        """
        n = int(x.shape[0]) if x.dim() else 0
        out = torch.zeros(n, dtype=torch.bool)
        if n == 0 or len(self.forget_x) == 0:
            return out
        a = _bits(x.detach().cpu().reshape(n, -1))
        b = _bits(self.forget_x.detach().cpu().reshape(len(self.forget_x), -1))
        if a.shape[1] != b.shape[1] or a.dtype != b.dtype:
            return out  # another shape or dtype: not a copy of these rows
        fy = self.forget_y.cpu()
        step = max(1, _MATCH_ELEMENTS // max(1, b.numel()))
        for i in range(0, n, step):
            eq = (a[i:i + step, None, :] == b[None, :, :]).all(-1)
            if y is not None:
                eq &= y[i:i + step].cpu().reshape(-1, 1) == fy.reshape(1, -1)
            out[i:i + step] = eq.any(1)
        return out


def _bits(x: torch.Tensor) -> torch.Tensor:
    """The raw bits of floating rows (so -0.0 and NaN payloads compare exactly); other dtypes as they are."""
    if x.dtype == torch.float32:
        return x.contiguous().view(torch.int32)
    if x.dtype == torch.float64:
        return x.contiguous().view(torch.int64)
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.contiguous().view(torch.int16)
    return x


class HolderHandler:
    """How one kind of holder is checked and purged (see the module docstring for the contract).

    ``applies``: a predicate, or a tuple of types matched exactly (a subclass
    may keep more than its parent, so it must be registered or speak for
    itself). ``check`` and ``purge`` default to "holds nothing".
    """

    def __init__(self, name: str, applies: Callable[[Any], bool] | tuple[type, ...],
                 check: Callable[[Any, ForgetContext], None] | None = None,
                 purge: Callable[[Any, ForgetContext], dict] | None = None, treatment: str = "") -> None:
        if isinstance(applies, tuple):
            types = applies
            applies = lambda obj: type(obj) in types  # noqa: E731
        self.name = name
        self._applies = applies
        self._check = check
        self._purge = purge
        #: one line for reports: what the purge leaves and why, or why it refuses
        self.treatment = treatment

    def applies(self, obj) -> bool:
        return bool(self._applies(obj))

    def check(self, obj, ctx: ForgetContext) -> None:
        if self._check is not None:
            self._check(obj, ctx)

    def purge(self, obj, ctx: ForgetContext) -> dict:
        return dict(self._purge(obj, ctx) or {}) if self._purge is not None else {}

    def __repr__(self) -> str:
        return f"HolderHandler({self.name!r})"


class _SelfHandler(HolderHandler):
    """An object that speaks for itself (``forget_holds_no_data`` or ``forget_purge``)."""

    def __init__(self) -> None:
        super().__init__("self", lambda obj: False)

    def check(self, obj, ctx):
        fn = getattr(obj, SELF_CHECK, None)
        if callable(fn):
            fn(ctx)

    def purge(self, obj, ctx):
        fn = getattr(obj, SELF_PURGE, None)
        return dict(fn(ctx) or {}) if callable(fn) else {}


_SELF = _SelfHandler()


def speaks_for_itself(obj) -> bool:
    """Whether ``obj`` declares it holds no data or implements ``forget_purge``."""
    return getattr(type(obj), HOLDS_NO_DATA, False) is True or callable(getattr(obj, SELF_PURGE, None))


class HolderRegistry:
    """Handlers by kind of holder; the last one registered for an object wins (so a user can override)."""

    def __init__(self) -> None:
        self._handlers: list[HolderHandler] = []

    def register(self, handler: HolderHandler) -> HolderHandler:
        if not isinstance(handler, HolderHandler):
            raise ValueError(f"expected a HolderHandler, got {type(handler).__name__}")
        self._handlers.append(handler)
        return handler

    def unregister(self, handler: HolderHandler) -> None:
        self._handlers.remove(handler)

    def handler_for(self, obj) -> HolderHandler | None:
        """The object's own protocol first, else the last registered handler that applies, else ``None``."""
        if speaks_for_itself(obj):
            return _SELF
        for h in reversed(self._handlers):
            if h.applies(obj):
                return h
        return None

    def handlers(self) -> list[HolderHandler]:
        return list(self._handlers)

    # ------------------------------------------------------------ the two steps
    def check(self, holders: Iterable[tuple[str, Any]], ctx: ForgetContext) -> list[tuple[str, Any, HolderHandler]]:
        """Find every holder's handler and run its check; raises :class:`ForgetRefused` naming every problem.

        Runs before anything changes. Returns ``(label, holder, handler)`` for :meth:`purge`.
        """
        resolved, problems = [], []
        for label, obj in holders:
            h = self.handler_for(obj)
            if h is None:
                problems.append(f"{label} ({type(obj).__module__}.{type(obj).__qualname__}): no forget handler "
                                f"knows what it keeps; register one in avalanche_rm.unlearning.holders.HOLDERS, or "
                                f"give the class '{HOLDS_NO_DATA} = True' or a '{SELF_PURGE}(ctx)' method")
                continue
            try:
                h.check(obj, ctx)
            except ForgetRefused as e:
                problems.append(f"{label}: {e}")
                continue
            resolved.append((label, obj, h))
        if problems:
            raise ForgetRefused(f"request {ctx.request.request_id} refused, nothing changed: " + "; ".join(problems))
        return resolved

    @staticmethod
    def purge(resolved: Iterable[tuple[str, Any, HolderHandler]], ctx: ForgetContext) -> dict[str, dict]:
        """Run every checked holder's purge; returns ``{label: what it removed}`` for holders that held anything."""
        out = {}
        for label, obj, h in resolved:
            detail = h.purge(obj, ctx)
            if detail:
                out[label] = detail
        return out


#: the registry every learner uses (Avalanche's handlers are added by :mod:`avalanche_rm.strategies.holders`)
HOLDERS = HolderRegistry()


def refuse(why: str) -> None:
    """Raise :class:`ForgetRefused` from a handler's check (the registry prefixes the holder's label)."""
    raise ForgetRefused(why)


def labelled(objects: Iterable[Any]) -> list[tuple[str, Any]]:
    """``(label, obj)`` with each object's class name as label (``Name#2`` for a second of a kind)."""
    seen: dict[str, int] = {}
    out = []
    for obj in objects:
        name = type(obj).__name__
        seen[name] = seen.get(name, 0) + 1
        out.append((name if seen[name] == 1 else f"{name}#{seen[name]}", obj))
    return out
