"""Learn/forget streams: an ordinary Avalanche benchmark's training experiences interleaved with forget requests.

:class:`~avalanche_rm.unlearning.ForgetRequest` names what to forget (sample
ids, whole classes, or everything of one owner) and who asks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

from ..unlearning.auth import HOW_TO_SIGN, SignedRequest
from ..unlearning.requests import ForgetRequest


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
    def requests(self) -> list[SignedRequest]:
        return [e for k, e in self.events if k == "forget"]


def learn_forget_stream(benchmark, schedule: Mapping[int, Sequence[SignedRequest]],
                        experiences: Sequence | None = None) -> LearnForgetStream:
    """Interleave ``benchmark.train_stream`` with forget requests.

    ``schedule[i]`` lists signed requests issued right after learning experience ``i``.
    The experiences' datasets must carry ``sample_ids`` and ``owners`` (the
    benchmarks of this package do).
    """
    exps = list(experiences if experiences is not None else benchmark.train_stream)
    for i in schedule:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(exps):
            raise ValueError(f"schedule key {i!r} is not a training experience index (0..{len(exps) - 1})")
        for r in schedule[i]:
            if isinstance(r, ForgetRequest):
                raise ValueError(f"schedule[{i}] holds an unsigned ForgetRequest; {HOW_TO_SIGN}")
            if not isinstance(r, SignedRequest):
                raise ValueError(f"schedule[{i}] must hold SignedRequest objects, got {type(r).__name__}")
    for e in exps:
        if not hasattr(e.dataset, "sample_ids") or not hasattr(e.dataset, "owners"):
            raise ValueError("experience datasets need 'sample_ids' and 'owners' attributes "
                             "(build them with avalanche_rm.benchmarks.tensor_dataset)")
    events: list[tuple[str, object]] = []
    for i, e in enumerate(exps):
        events.append(("learn", e))
        events += [("forget", r) for r in schedule.get(i, [])]
    return LearnForgetStream(events, benchmark)
