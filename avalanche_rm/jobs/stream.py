"""A learn/forget stream that survives being killed: a checkpoint after every event.

Each event (learn an experience, honour a forget request) is followed by an
atomic Avalanche checkpoint of the whole strategy (model, adapters, ledger,
registry, audit log, RNG state) and the index of the next event. A run killed
at any point resumes from the last checkpoint: an event whose checkpoint was
not written is redone from the state before it, so no honoured request is lost
or applied twice.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from avalanche.training.plugins import EvaluationPlugin

from ..benchmarks import learn_forget_stream, public_private_digits
from ..unlearning import ForgetRequest, accuracy_of
from ..hardware import get_preset
from ..strategies import LoRAUnlearning, maybe_load_checkpoint, pretrain_and_program, save_checkpoint
from ..training import make_mlp


def _strategy(preset: str, seed: int, sp, method: str, method_options: dict | None) -> LoRAUnlearning:
    base = pretrain_and_program(make_mlp(), get_preset(preset), sp.public_x, sp.public_y, public=True, epochs=10,
                                seed=seed)
    s = LoRAUnlearning(model=base, rank=4, alpha=8, train_epochs=3, method=method, method_options=method_options,
                       unlearn_epochs=10, eval_data=(sp.test_x, sp.test_y), evaluator=EvaluationPlugin(loggers=[]))
    s.events_done = 0
    return s


def run_stream(workdir: str | Path, preset: str = "paper-180nm", seed: int = 0, method: str = "neg_ce",
               method_options: dict | None = None) -> dict:
    """Run (or resume) the stream in ``workdir``; writes and returns ``result.json``. ``method`` (with
    ``method_options``) is the strategy's unlearning objective."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ckpt = workdir / "checkpoint.pkl"
    torch.manual_seed(seed)
    sp = public_private_digits(2, public_fraction=0.3, n_owners=5, seed=seed, public_classes=range(5),
                               fixed_class_order=list(range(10)))
    test = (sp.test_x, sp.test_y)
    # a fresh strategy first (same seeds, so the same chip); a checkpoint, if any, then replaces its state
    strategy, _ = maybe_load_checkpoint(_strategy(preset, seed, sp, method, method_options), str(ckpt))
    stream = learn_forget_stream(sp.benchmark, {0: [ForgetRequest(requester=3, owner=3)],
                                                1: [ForgetRequest(requester="controller", classes=(7,))]})
    for i, (kind, item) in enumerate(stream):
        if i < strategy.events_done:
            continue
        if kind == "learn":
            strategy.train(item)
        else:
            strategy.forget(item)
        strategy.events_done = i + 1
        save_checkpoint(strategy, str(ckpt))
    result = {"events": len(stream), "test_acc": accuracy_of(strategy.model, *test),
              "ledger": strategy.model.ledger.total().as_dict(),
              "audit": [{k: r[k] for k in ("request", "n_samples", "affected", "cost")} for r in strategy.audit_log]}
    tmp = workdir / "result.json.tmp"
    tmp.write_text(json.dumps(result, default=float))
    os.replace(tmp, workdir / "result.json")
    return result


if __name__ == "__main__":
    import sys

    run_stream(sys.argv[1])
