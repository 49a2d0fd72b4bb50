"""A learn/forget stream that survives being killed: a checkpoint after every event.

Each event (learn an experience, honour a forget request) is followed by an
atomic Avalanche checkpoint of the whole strategy (model, adapters, ledger,
registry, audit log, RNG state) and the index of the next event. A run killed
at any point resumes from the last checkpoint: an event whose checkpoint was
not written is redone from the state before it, so no honoured request is lost
or applied twice. A request honoured after the last checkpoint is in the
forgotten-ids store (``audit.forgotten.jsonl``): loading the checkpoint
re-applies it (its data never come back) and the stream skips it.

The owners' and the controller's signed requests are made once, on the first
start, and kept in ``setup.json`` with the learner's key directory and, for
this demo, the controller's audit key (a real controller keeps that elsewhere).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from avalanche.training.plugins import EvaluationPlugin

from ..benchmarks import learn_forget_stream, public_private_digits
from ..unlearning import AuditKey, ForgetRequest, KeyDirectory, SignedRequest, accuracy_of, generate_keys
from ..hardware import get_preset
from ..strategies import LoRAUnlearning, maybe_load_checkpoint, pretrain_and_program, save_checkpoint
from ..training import make_mlp


AUDIENCE = "avalanche-rm stream"


def _setup(workdir: Path) -> tuple[KeyDirectory, AuditKey, list[SignedRequest]]:
    """The key directory, audit key and signed requests of this run: made on the first start, then read back."""
    path = workdir / "setup.json"
    if not path.exists():
        trust, keys = generate_keys(AUDIENCE, owners=[3], controllers=["controller"])
        signed = [keys[3].sign(ForgetRequest(requester=3, owner=3), AUDIENCE),
                  keys["controller"].sign(ForgetRequest(requester="controller", classes=(7,)), AUDIENCE)]
        key = AuditKey.generate()
        key.save(workdir / "audit.key")
        tmp = workdir / "setup.json.tmp"
        tmp.write_text(json.dumps({"trust": trust.to_dict(), "audit_key_file": "audit.key",
                                   "requests": [r.to_dict() for r in signed]}))
        os.replace(tmp, path)
    d = json.loads(path.read_text())
    return (KeyDirectory.from_dict(d["trust"]), AuditKey.load(workdir / d["audit_key_file"]),
            [SignedRequest.from_dict(r) for r in d["requests"]])


def _strategy(preset: str, seed: int, sp, workdir: Path, trust: KeyDirectory, key: AuditKey, method: str,
              method_options: dict | None) -> LoRAUnlearning:
    base = pretrain_and_program(make_mlp(), get_preset(preset), sp.public_x, sp.public_y, public=True, epochs=10,
                                seed=seed)
    s = LoRAUnlearning(model=base, rank=4, alpha=8, train_epochs=3, method=method, method_options=method_options,
                       unlearn_epochs=10,
                       eval_data=(sp.test_x, sp.test_y), evaluator=EvaluationPlugin(loggers=[]), trust=trust,
                       audit_path=workdir / "audit.jsonl", audit_key=key)
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
    trust, key, (owner3, class7) = _setup(workdir)
    # a fresh strategy first (same seeds, so the same chip); a checkpoint, if any, then replaces its state and
    # gets every request honoured after it re-applied
    strategy, _ = maybe_load_checkpoint(_strategy(preset, seed, sp, workdir, trust, key, method, method_options),
                                        str(ckpt))
    stream = learn_forget_stream(sp.benchmark, {0: [owner3], 1: [class7]})
    for i, (kind, item) in enumerate(stream):
        if i < strategy.events_done:
            continue
        if kind == "learn":
            strategy.train(item)
        elif not strategy.forget_core.store.used(item.request_id):  # else honoured before the last checkpoint
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
