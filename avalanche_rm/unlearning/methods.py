"""Unlearning methods by name: what a request may ask for, what each kind of learner can run, what it guarantees.

Every approximate objective registered in :mod:`.objectives` is a method of
kind ``"objective"``; the built-in exact methods are ``"exact"`` (SISA: retrain
the sharded adapters that held the data), ``"drop"`` (drop the adapters, or a
federated client's contribution, that only the forgotten data trained) and
``"retrain"`` (retrain from scratch without the data and reprogram the array).
A learner (an Avalanche strategy, a Flower client) says which kinds it runs;
:func:`check_method` refuses anything else, or bad options, before anything
changes. A new objective is one ``@register_objective``; a new kind of method
is one :func:`register_method` plus the learner code that runs it.

Guarantees, weakest last: ``"bit-identical"`` (the result equals training
without the data, draw for draw), ``"retrained"`` (a fresh training run
without the data: what retraining gives, with other random draws) and
``"approximate"`` (judged against what retraining would show; see
:mod:`.judge`). A learner may weaken a method's guarantee for one request (a
federated ``"exact"`` request the federation cannot replay is approximate).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from .objectives import get_objective, objective_names
from .requests import ForgetRefused

GUARANTEES = ("bit-identical", "retrained", "approximate")
KINDS = ("objective", "sisa", "drop", "retrain")


@dataclass(frozen=True)
class Method:
    """A named unlearning method: its kind (which learners can run it) and the guarantee it gives."""

    name: str
    kind: str
    guarantee: str
    summary: str


_METHODS: dict[str, Method] = {}


def register_method(name: str, kind: str, guarantee: str, summary: str) -> Method:
    """Make a non-objective method known by ``name`` (objectives register in :mod:`.objectives`)."""
    if kind not in KINDS or kind == "objective":
        raise ValueError(f"method kind must be one of {[k for k in KINDS if k != 'objective']}, got {kind!r}")
    if guarantee not in GUARANTEES:
        raise ValueError(f"guarantee must be one of {GUARANTEES}, got {guarantee!r}")
    if name in _METHODS or name in objective_names():
        raise ValueError(f"method {name!r} is already registered")
    _METHODS[name] = Method(name, kind, guarantee, summary)
    return _METHODS[name]


EXACT = register_method("exact", "sisa", "bit-identical",
                        "retrain the sharded adapters that held the data from their first stage that saw it")
DROP = register_method("drop", "drop", "bit-identical",
                       "drop the adapters (or the federated contribution) only the forgotten data trained")
RETRAIN = register_method("retrain", "retrain", "retrained",
                          "retrain the network from scratch without the data, then reprogram every cell")


def method_names() -> list[str]:
    """Every method a request may name."""
    return sorted(set(_METHODS) | set(objective_names()))


def get_method(name: str) -> Method:
    if name in _METHODS:
        return _METHODS[name]
    if name in objective_names():
        cls = type(get_objective(name))
        return Method(name, "objective", "approximate", (cls.__doc__ or name).strip().split("\n")[0])
    raise ValueError(f"unknown unlearning method {name!r}; methods are {method_names()}")


def weaker(a: str, b: str) -> str:
    """The weaker of two guarantees."""
    return GUARANTEES[max(GUARANTEES.index(a), GUARANTEES.index(b))]


def check_method(name: str, options: Mapping | None, kinds: Iterable[str], request_id: str = "") -> tuple[Method, dict]:
    """The method and its full options for a request, or :class:`ForgetRefused` (nothing has changed yet)
    when the name is unknown, this learner cannot run its kind, or an option is bad."""
    where = f"request {request_id}: " if request_id else ""
    kinds = tuple(kinds)
    try:
        method = get_method(name)
    except ValueError as e:
        raise ForgetRefused(where + str(e)) from None
    if method.kind not in kinds:
        runnable = [m for m in method_names() if get_method(m).kind in kinds]
        raise ForgetRefused(f"{where}method {name!r} ({method.kind}) cannot run on this learner; it runs "
                            f"{runnable}")
    options = dict(options or {})
    if method.kind == "objective":
        try:
            options = dict(get_objective(name, **options).options)
        except (TypeError, ValueError) as e:
            raise ForgetRefused(f"{where}method {name!r}: {e}") from None
    elif options:
        raise ForgetRefused(f"{where}method {name!r} takes no options, got {sorted(options)}")
    return method, options
