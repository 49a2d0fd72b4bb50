"""Is LoRA continual learning on the chip as stable as in an ideal simulation? ``avalanche-rm stability``.

Protocol (real Olivetti faces, 16x16): a small CNN is pre-trained in software
on the public identities 20-39 (all their images), programmed once per seed
and its ADCs calibrated on that public data; identities 0-19 arrive as a
private class-incremental stream of 5 experiences (4 people each, 5 training
and 5 test images per person). Two learners run on every preset and seed:
``HybridLoRA`` with Avalanche's ``ReplayPlugin``, and Avalanche's stock
``Replay`` with an adapter added by hand (``add_adapter``, Adam over
``model.parameters()``, ``attach_optimizer``). Stream accuracy is measured on
the private test images. The seed sets the chip (programming, read noise) and
the adapter, not the task.

The collapse this guards against: the frozen base's head is confident about
its own (public) classes on every input, so the cross-entropy of a new class
starts around 60 nats and its gradient drives the LoRA branches of the
feature layers to silence the shared features; once the ReLUs are dead the
network outputs its biases (one class for everything) and no gradient can
revive them. The ideal preset collapses the same way. Masking the output
units of classes not trained yet (:class:`~avalanche_rm.strategies.SeenClassesMask`,
Avalanche's ``IncrementalClassifier`` rule) removes it; ``mask=False`` shows it.
"""
from __future__ import annotations

import copy
import statistics

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..report import make_report
from ..benchmarks import public_private_faces
from ..hardware import get_preset
from ..nn import convert_to_hybrid
from ..training import run_epochs
from ..validation import check_int

PUBLIC = range(20, 40)
PRIVATE = 20


def face_cnn(classes: int = 40) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 4 * 4, classes))


def _data(mat_path):
    sp = public_private_faces(5, public_people=PUBLIC, private_people=range(PRIVATE), test_per_person=5,
                              mat_path=mat_path, download=mat_path is None)
    return sp.public_x, sp.public_y, sp.benchmark, sp.test_x, sp.test_y


def _dead_share(model: nn.Module, x: torch.Tensor) -> float:
    """Share of the last ReLU's channels that output zero for every input."""
    acts = []
    hooks = [m.register_forward_hook(lambda m, i, o: acts.append(o.detach())) for m in model.modules()
             if isinstance(m, nn.ReLU)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    a = acts[-1]
    return float((a.amax(dim=(0, 2, 3)) <= 0).float().mean())


def run_one(learner: str, preset: str, seed: int, base: nn.Module, data, epochs: int, mask: bool) -> dict:
    from avalanche.training import Replay
    from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin

    from ..strategies import HybridLoRA, SeenClassesMask

    xp, _, bm, xt, yt = data
    model = convert_to_hybrid(base, get_preset(preset))
    model.program(seed=seed, calibration_data=xp)
    quiet = EvaluationPlugin(loggers=[])
    torch.manual_seed(seed)
    if learner == "HybridLoRA + ReplayPlugin":
        s = HybridLoRA(model=model, rank=4, alpha=8, lr=1e-2, train_epochs=epochs, train_mb_size=32,
                       adapter_seed=seed, mask_unseen_classes=mask, plugins=[ReplayPlugin(200)], evaluator=quiet)
    else:
        model.add_adapter("a", rank=4, alpha=8, seed=seed)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        model.attach_optimizer(opt)
        s = Replay(model=model, optimizer=opt, criterion=nn.CrossEntropyLoss(), mem_size=200, train_epochs=epochs,
                   train_mb_size=32, evaluator=quiet, plugins=[SeenClassesMask()] if mask else None)
    for exp in bm.train_stream:
        s.train(exp)
    model.eval()
    with torch.no_grad():
        pred = model(xt).argmax(1)
    return {"learner": learner, "preset": preset, "seed": seed, "masked": mask,
            "accuracy %": 100 * float((pred == yt).float().mean()),
            "largest predicted-class share %": 100 * float(torch.bincount(pred).max()) / len(pred),
            "dead channels (last conv) %": 100 * _dead_share(model, xt)}


def run_stability(faces_path=None, seeds: int = 5, epochs: int = 40, control: bool = True,
                  progress: bool = True) -> dict:
    """Stream accuracy of both learners on ``ideal`` and ``paper-180nm`` for ``seeds`` chips (and a control
    run without class masking); the report's summary gives each chip's worst gap to the ideal mean."""
    check_int(seeds, "seeds", 1)
    data = _data(faces_path)
    torch.manual_seed(0)
    base = face_cnn()
    xp, yp = data[0], data[1]
    run_epochs(base, torch.optim.AdamW(base.parameters(), lr=1e-2, weight_decay=0.0), xp, yp,
               lambda m, xb, yb, g: F.cross_entropy(m(xb), yb), 30, 32, 0, progress=False)
    learners = ("HybridLoRA + ReplayPlugin", "stock Replay + add_adapter")
    runs = [(lr_, p, s, True) for lr_ in learners for p in ("ideal", "paper-180nm") for s in range(seeds)]
    if control:  # the collapse without the mask, on both presets
        runs += [(lr_, p, 0, False) for lr_ in learners for p in ("ideal", "paper-180nm")]
    rows = [run_one(lr_, p, s, copy.deepcopy(base), data, epochs, m)
            for lr_, p, s, m in tqdm(runs, desc="stability runs", disable=not progress)]
    summary = []
    for lr_ in learners:
        ideal = [r["accuracy %"] for r in rows if r["learner"] == lr_ and r["preset"] == "ideal" and r["masked"]]
        chip = [r["accuracy %"] for r in rows if r["learner"] == lr_ and r["preset"] == "paper-180nm" and r["masked"]]
        mean = statistics.fmean(ideal)
        summary.append({"learner": lr_, "ideal mean %": mean, "paper-180nm mean %": statistics.fmean(chip),
                        "paper-180nm worst seed %": min(chip), "worst gap to ideal mean (points)": mean - min(chip)})
    hw = get_preset("paper-180nm")
    return make_report("stability", preset="ideal, paper-180nm", preset_source=hw.source, seed=0,
                       data="real: Olivetti faces 16x16; public identities 20-39 (base), private 0-19 (stream, 5/5 "
                            "train/test images each)",
                       tables={"summary": summary, "runs": rows})
