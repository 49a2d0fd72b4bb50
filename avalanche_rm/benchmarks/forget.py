"""Forget requests and learn/forget streams.

A :class:`ForgetRequest` names what to forget (sample ids, whole classes, or
everything of one owner) and who asks. :func:`learn_forget_stream` interleaves
an ordinary Avalanche benchmark's training experiences with such requests.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field
from typing import Iterator, Mapping, Sequence

_counter = itertools.count()


def _int_tuple(name: str, values) -> tuple[int, ...] | None:
    if values is None:
        return None
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"ForgetRequest.{name} must be a sequence of ints, got {values!r}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"ForgetRequest.{name} must hold non-negative ints, got {v!r}")
        out.append(int(v))
    if not out:
        raise ValueError(f"ForgetRequest.{name} is empty")
    return tuple(sorted(set(out)))


@dataclass(frozen=True)
class ForgetRequest:
    """What to forget and who asks.

    Exactly one of ``sample_ids``, ``classes`` or ``owner`` names the data.
    ``requester`` is checked by the strategy: an owner may forget its own data;
    class-level requests need a data controller (``admins`` of the strategy).
    """

    requester: int | str
    sample_ids: tuple[int, ...] | None = None
    classes: tuple[int, ...] | None = None
    owner: int | None = None
    request_id: str = field(default="")

    def __post_init__(self) -> None:
        if isinstance(self.requester, bool) or not isinstance(self.requester, (int, str)) or self.requester == "":
            raise ValueError(f"ForgetRequest.requester must be an owner id or a non-empty name, got {self.requester!r}")
        object.__setattr__(self, "sample_ids", _int_tuple("sample_ids", self.sample_ids))
        object.__setattr__(self, "classes", _int_tuple("classes", self.classes))
        if self.owner is not None and (isinstance(self.owner, bool) or not isinstance(self.owner, int)
                                       or self.owner < 0):
            raise ValueError(f"ForgetRequest.owner must be a non-negative int, got {self.owner!r}")
        named = sum(x is not None for x in (self.sample_ids, self.classes, self.owner))
        if named != 1:
            raise ValueError("ForgetRequest needs exactly one of sample_ids, classes or owner "
                             f"(got {named})")
        if not self.request_id:
            object.__setattr__(self, "request_id", f"req-{next(_counter)}")

    @property
    def kind(self) -> str:
        return "samples" if self.sample_ids is not None else ("classes" if self.classes is not None else "owner")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["kind"] = self.kind
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "ForgetRequest":
        """Parse an untrusted payload (e.g. a JSON message); raises ``ValueError`` on anything malformed."""
        if not isinstance(d, Mapping):
            raise ValueError(f"forget request payload must be a mapping, got {type(d).__name__}")
        allowed = {"requester", "sample_ids", "classes", "owner", "request_id", "kind"}
        unknown = set(d) - allowed
        if unknown:
            raise ValueError(f"forget request payload has unknown field(s) {sorted(unknown)}")
        if "requester" not in d:
            raise ValueError("forget request payload needs a 'requester'")
        kw = {k: d[k] for k in ("requester", "sample_ids", "classes", "owner", "request_id") if k in d}
        if kw.get("request_id") is not None and not isinstance(kw["request_id"], str):
            raise ValueError(f"request_id must be a string, got {kw['request_id']!r}")
        return cls(**kw)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


@dataclass
class LearnForgetStream:
    """Learning experiences interleaved with forget requests; iterate for ``(kind, item)`` events."""

    events: list[tuple[str, object]]
    benchmark: object = None

    def __iter__(self) -> Iterator[tuple[str, object]]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    @property
    def requests(self) -> list[ForgetRequest]:
        return [e for k, e in self.events if k == "forget"]


def learn_forget_stream(benchmark, schedule: Mapping[int, Sequence[ForgetRequest]],
                        experiences: Sequence | None = None) -> LearnForgetStream:
    """Interleave ``benchmark.train_stream`` with forget requests.

    ``schedule[i]`` lists requests issued right after learning experience ``i``.
    The experiences' datasets must carry ``sample_ids`` and ``owners`` (the
    benchmarks of this package do).
    """
    exps = list(experiences if experiences is not None else benchmark.train_stream)
    for i in schedule:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(exps):
            raise ValueError(f"schedule key {i!r} is not a training experience index (0..{len(exps) - 1})")
        for r in schedule[i]:
            if not isinstance(r, ForgetRequest):
                raise ValueError(f"schedule[{i}] must hold ForgetRequest objects, got {type(r).__name__}")
    for e in exps:
        if not hasattr(e.dataset, "sample_ids") or not hasattr(e.dataset, "owners"):
            raise ValueError("experience datasets need 'sample_ids' and 'owners' attributes "
                             "(build them with avalanche_rm.benchmarks.tensor_dataset)")
    events: list[tuple[str, object]] = []
    for i, e in enumerate(exps):
        events.append(("learn", e))
        events += [("forget", r) for r in schedule.get(i, [])]
    return LearnForgetStream(events, benchmark)
