"""Approximate unlearning: train some parameters with a registered objective on forget + retain data, and stop
where retraining would.

On a hybrid chip the parameters are a fresh adapter (the analogue base is
never written); on the full-weight baseline they are the digital weight
shadows, written back into the cells after each step (``after_step``). Every
forward pass, optimiser step and the stopping check run on the chip and are
charged; so is a teacher's output (SCRUB): it is computed once before training
and kept in digital memory.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..nn.chip import ChipModel
from .attacks import accuracy_of
from .objectives import Objective, ObjectiveContext, get_objective
from ..validation import check_int


#: forget-set accuracy at which a class request stops: a model retrained without the class never predicts it
CLASS_STOP_ACCURACY = 0.02


def stop_accuracy(request_classes, n_classes: int, test_accuracy: float | None) -> float:
    """Forget-set accuracy at which approximate unlearning stops: what retraining without the data would show.

    Class requests: (nearly) 0, since a model retrained without the class never
    predicts it. Sample/owner requests: the accuracy on unseen test data
    (pushing lower is itself a membership signal, as SCRUB+R notes); chance
    level when no test data are at hand.
    """
    if request_classes is not None:
        return CLASS_STOP_ACCURACY
    if test_accuracy is None:
        return 1.0 / max(n_classes, 1)
    return test_accuracy


def train_objective(model: ChipModel, params: list, objective: Objective, forget: tuple, retain: tuple, *,
                    epochs: int, lr: float, batch_size: int | None, n_classes: int,
                    retained_classes: torch.Tensor | None = None, seed: int = 0,
                    after_step: Callable[[torch.optim.Optimizer], None] | None = None,
                    stop_forget_acc: float | None = None, device="cpu") -> int:
    """Run ``objective`` on ``params`` for up to ``epochs``; returns the optimiser steps taken.

    ``batch_size=None`` is full-batch (the reference face recipe: one step per
    epoch). Training stops early once the forget-set accuracy, checked on the
    chip after each epoch, is at most ``stop_forget_acc``; an objective with
    ``settle_epochs`` then runs those epochs in its settling mode, still checked
    every epoch: if the forget set comes back above the target, forgetting
    resumes (the budget, ``epochs``, bounds it all).
    """
    check_int(epochs, "unlearning epochs", 1)
    if not lr > 0:
        raise ValueError(f"unlearning lr must be > 0, got {lr!r}")
    (xf, yf), (xr, yr) = forget, retain
    x = torch.cat([xf, xr]).to(device)
    y = torch.cat([yf, yr]).to(device)
    is_f = torch.cat([torch.ones(len(yf), dtype=torch.bool), torch.zeros(len(yr), dtype=torch.bool)]).to(device)
    bs = batch_size or len(y)
    opt = torch.optim.Adam(params, lr=lr)
    model.attach_optimizer(opt)
    gen = torch.Generator().manual_seed(seed)
    dig = model.hardware.digital
    phase = model.ledger.current_phase("unlearn")
    teacher = None
    if objective.needs_teacher:
        model.eval()
        with torch.no_grad():  # the model before this run: its outputs are kept in digital memory
            teacher = torch.cat([model(x[i:i + 512]) for i in range(0, len(y), 512)]).detach()
        model.meter.activation_traffic(phase, write_bytes=teacher.numel() * dig.activation_bytes)
    ctx = ObjectiveContext(n_classes=n_classes, generator=gen, retained_classes=retained_classes)
    steps = 0
    settle_left = None  # epochs still to run once the stopping rule is met
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=gen).to(device)
        for i in range(0, len(y), bs):
            b = perm[i:i + bs]
            opt.zero_grad()
            out = model(x[b])
            ctx.step = steps
            if teacher is not None:
                ctx.teacher_out = teacher[b]
                model.meter.activation_traffic(phase, read_bytes=ctx.teacher_out.numel() * dig.activation_bytes)
            objective.loss(out, y[b], is_f[b], ctx).backward()
            opt.step()
            steps += 1
            if after_step is not None:
                after_step(opt)
        if stop_forget_acc is None or not len(yf):
            if settle_left is not None:
                settle_left -= 1
                if settle_left <= 0:
                    break
            continue
        model.eval()
        with torch.no_grad():  # the stopping check is an inference on the chip: charged
            acc = float((model(xf.to(device)).argmax(-1) == yf.to(device)).float().mean())
        model.train()
        if settle_left is not None:
            if acc > stop_forget_acc:
                # the repair brought the forget set back: forgetting resumes before the budget runs out
                settle_left, ctx.settling = None, False
                continue
            settle_left -= 1
            if settle_left <= 0:
                break
        elif acc <= stop_forget_acc:
            if objective.settle_epochs <= 0:
                break
            settle_left, ctx.settling = objective.settle_epochs, True
    model.eval()
    return steps


def run_approximate(model: ChipModel, params: list, method: str, options: dict, forget: tuple, retain: tuple, *,
                    epochs: int, lr: float, batch_size: int | None, n_classes: int, classes=None,
                    test: tuple[torch.Tensor, torch.Tensor] | None = None, stop_forget_acc: float | None = None,
                    seed: int = 0, after_step: Callable[[torch.optim.Optimizer], None] | None = None,
                    device="cpu") -> dict:
    """One approximate request end to end: the objective by name, its stopping target, its training run.

    The target is ``stop_forget_acc`` when given, else :func:`stop_accuracy`
    (for sample/owner requests, the current test accuracy, measured with the
    ledger paused). Returns what the audit record keeps of the run.
    """
    objective = get_objective(method, **dict(options or {}))
    if stop_forget_acc is None:
        test_acc = accuracy_of(model, *test) if test is not None and len(test[1]) else None
        stop_forget_acc = stop_accuracy(classes, n_classes, test_acc)
    retained = torch.unique(retain[1]) if len(retain[1]) else None
    steps = train_objective(model, params, objective, forget, retain, epochs=epochs, lr=lr, batch_size=batch_size,
                            n_classes=n_classes, retained_classes=retained, seed=seed, after_step=after_step,
                            stop_forget_acc=stop_forget_acc, device=device)
    return {"method": method, "options": objective.options, "steps": steps, "stop_forget_acc": stop_forget_acc}
