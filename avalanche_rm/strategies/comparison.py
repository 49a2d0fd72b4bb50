"""Side-by-side unlearning runs: the same experience and requests for every strategy, one table per request."""
from __future__ import annotations

from typing import Callable

from tqdm.auto import tqdm

from ..unlearning import SignedRequest, unlearning_row


def compare_unlearning(factories: dict[str, Callable[[], object]], experience, requests: dict[str, SignedRequest],
                       retrain: str | dict[str, str] | None = None,
                       progress: bool = True) -> tuple[dict[str, list[dict]], dict]:
    """For each request, a fresh strategy per factory learns ``experience`` and honours the request.

    Each request is signed for the strategies' audience (they are fresh copies
    of one learner, each with its own store, so each honours it once).

    ``retrain`` names the strategy whose result is the reference of the gap
    (retraining without the data), or maps each strategy to its own reference
    (e.g. adapter methods to retraining the adapter, full-weight methods to
    retraining and reprogramming). Returns ``(tables, records)``: per request
    label, one :func:`unlearning_row` per strategy, and the audit records.
    """
    refs = {name: retrain for name in factories} if isinstance(retrain, str) else dict(retrain or {})
    unknown = sorted({r for r in refs.values() if r not in factories} | (set(refs) - set(factories)))
    if unknown:
        raise ValueError(f"retrain reference(s) {unknown} are not among the strategies {sorted(factories)}")
    tables, records = {}, {}
    for label, request in requests.items():
        recs = {}
        for name, make in tqdm(list(factories.items()), desc=label, disable=not progress, leave=False):
            strategy = make()
            strategy.train(experience)
            recs[name] = strategy.forget(request)
        tables[label] = [unlearning_row(n, r, recs[refs[n]] if n in refs else None) for n, r in recs.items()]
        records[label] = recs
    return tables, records
