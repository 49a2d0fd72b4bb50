"""Forget requests: what to forget, who asks, and (optionally) which method honours it."""
from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field
from typing import Mapping
from ..validation import check_int


class ForgetRefused(ValueError):
    """A forget request that cannot be honoured; nothing was changed."""


def _int_tuple(name: str, values) -> tuple[int, ...] | None:
    if values is None:
        return None
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"ForgetRequest.{name} must be a sequence of ints, got {values!r}")
    out = []
    for v in values:
        check_int(v, f"ForgetRequest.{name}", 0)
        out.append(int(v))
    if not out:
        raise ValueError(f"ForgetRequest.{name} is empty")
    return tuple(sorted(set(out)))


@dataclass(frozen=True)
class ForgetRequest:
    """What to forget and who asks.

    Exactly one of ``sample_ids``, ``classes`` or ``owner`` names the data.
    ``requester`` names who signs it: an owner id (an owner may forget its own
    data) or a data controller's name (class-level requests need one). A
    request is honoured only when signed by that requester's key (see
    :mod:`avalanche_rm.unlearning.auth`); ``request_id`` is a single-use random
    id (a replay of it is refused).
    ``method`` optionally names a registered method
    (:func:`avalanche_rm.unlearning.method_names`) with its ``options`` (an
    objective's options); ``None`` keeps the learner's own. The learner checks
    both before anything changes.
    """

    requester: int | str
    sample_ids: tuple[int, ...] | None = None
    classes: tuple[int, ...] | None = None
    owner: int | None = None
    request_id: str = field(default="")
    method: str | None = None
    options: dict | None = None

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
        if self.method is not None and (not isinstance(self.method, str) or not self.method):
            raise ValueError(f"ForgetRequest.method must be a registered method name or None, got {self.method!r}")
        if self.options is not None:
            if self.method is None:
                raise ValueError("ForgetRequest.options need a method to apply to")
            if not isinstance(self.options, Mapping) or not all(isinstance(k, str) for k in self.options):
                raise ValueError(f"ForgetRequest.options must be a mapping of option names, got {self.options!r}")
            try:
                json.dumps(dict(self.options))
            except (TypeError, ValueError):
                raise ValueError(f"ForgetRequest.options must be JSON values, got {self.options!r}") from None
            object.__setattr__(self, "options", dict(self.options))
        if not self.request_id:
            object.__setattr__(self, "request_id", f"req-{secrets.token_hex(16)}")
        elif not isinstance(self.request_id, str) or len(self.request_id) > 128:
            raise ValueError(f"ForgetRequest.request_id must be a string of at most 128 characters, "
                             f"got {self.request_id!r:.80}")

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
        allowed = {"requester", "sample_ids", "classes", "owner", "request_id", "kind", "method", "options"}
        unknown = set(d) - allowed
        if unknown:
            raise ValueError(f"forget request payload has unknown field(s) {sorted(unknown)}")
        if "requester" not in d:
            raise ValueError("forget request payload needs a 'requester'")
        kw = {k: d[k] for k in ("requester", "sample_ids", "classes", "owner", "request_id", "method", "options")
              if k in d}
        if kw.get("request_id") is not None and not isinstance(kw["request_id"], str):
            raise ValueError(f"request_id must be a string, got {kw['request_id']!r}")
        return cls(**kw)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())
