"""Approximate unlearning, on adapters only (hybrid) or on all weights with write-back (baseline).

Objectives (``method``):
- ``"neg_ce"``: class-weighted cross-entropy, weight 1 on retained samples and
  ``forget_weight`` (reference face task: -0.5) on forgotten ones;
- ``"random_label"``: forgotten samples get uniformly random other labels,
  redrawn every batch (reference speaker task);
- ``"neggrad_plus"``: ``alpha * CE(retain) - (1 - alpha) * CE(forget)`` (NegGrad+);
- ``"scrub"``: SCRUB (Kurmanji et al. 2023): steps alternate between a max-step
  that pushes the student away from the frozen teacher on the forget samples
  (KL) and a min-step that keeps it close on the retained ones (KL + CE).
On a hybrid model a fresh adapter ``unlearn<k>`` is trained and stacked on the
existing ones; the analogue base is never written.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from ..nn.model import HybridModel
from .forgetting import ForgetMixin
from ..training import train_classifier
from .full_weight import AnalogFullFinetune, RetrainAndReprogram, reprogram_from_software
from .hybrid_lora import HybridLoRA
from .plugins import optimizer_state_bytes

METHODS = ("neg_ce", "random_label", "neggrad_plus", "scrub")


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"unlearning method must be one of {METHODS}, got {method!r}")
    return method


def weighted_ce(out: torch.Tensor, y: torch.Tensor, forget_mask: torch.Tensor, forget_weight: float) -> torch.Tensor:
    """Mean cross-entropy with weight ``forget_weight`` (negative: ascent) on forgotten samples, 1 elsewhere.

    The reference face task's objective (``train_with_gradient_ascent``, weight -0.5).
    """
    w = torch.where(forget_mask, torch.full_like(y, forget_weight, dtype=out.dtype), torch.ones_like(y, dtype=out.dtype))
    return (F.cross_entropy(out, y, reduction="none") * w).mean()


def unlearn_loop(model: HybridModel, params: list, method: str, forget: tuple, retain: tuple, *, epochs: int,
                 lr: float, batch_size: int | None, forget_weight: float = -0.5, neggrad_alpha: float = 0.9,
                 n_classes: int | None = None, seed: int = 0, after_step=None, stop_forget_acc: float | None = None,
                 device="cpu") -> int:
    """Run an approximate-unlearning objective on ``params``; returns optimiser steps taken.

    ``batch_size=None`` is full-batch, as the reference face recipe (one step per epoch).
    """
    _check_method(method)
    (xf, yf), (xr, yr) = forget, retain
    if batch_size is None:
        batch_size = len(yf) + len(yr)
    xf, yf, xr, yr = xf.to(device), yf.to(device), xr.to(device), yr.to(device)
    if n_classes is None:
        n_classes = int(torch.cat([yf, yr]).max()) + 1
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    teacher = copy.deepcopy(model).eval() if method == "scrub" else None
    if teacher is not None:
        teacher.ledger.enabled = False  # the teacher's outputs are recorded once, not re-bought each step
    steps = 0
    model.train()
    for _ in range(epochs):
        x = torch.cat([xf, xr])
        y = torch.cat([yf, yr])
        is_f = torch.cat([torch.ones(len(yf), dtype=torch.bool), torch.zeros(len(yr), dtype=torch.bool)]).to(device)
        perm = torch.randperm(len(y), generator=gen).to(device)
        for i in range(0, len(y), batch_size):
            b = perm[i:i + batch_size]
            xb, yb, fb = x[b], y[b], is_f[b]
            opt.zero_grad()
            out = model(xb)
            if method == "neg_ce":
                loss = weighted_ce(out, yb, fb, forget_weight)
            elif method == "random_label":
                shift = torch.randint(1, n_classes, yb.shape, generator=gen).to(device)
                yb = torch.where(fb, (yb + shift) % n_classes, yb)
                loss = F.cross_entropy(out, yb)
            elif method == "neggrad_plus":
                ce = F.cross_entropy(out, yb, reduction="none")
                lr_ = ce[~fb].mean() if bool((~fb).any()) else out.sum() * 0
                lf = ce[fb].mean() if bool(fb.any()) else out.sum() * 0
                loss = neggrad_alpha * lr_ - (1 - neggrad_alpha) * lf
            else:
                # SCRUB alternates: a max-step on the forget part, then a min-step on the retain part
                with torch.no_grad():
                    t_out = teacher(xb)
                kl = F.kl_div(F.log_softmax(out, -1), F.softmax(t_out, -1), reduction="none").sum(-1)
                if bool(fb.any()) and steps % 2 == 0:
                    loss = -kl[fb].mean()
                elif bool((~fb).any()):
                    loss = kl[~fb].mean() + F.cross_entropy(out[~fb], yb[~fb])
                else:
                    loss = out.sum() * 0
            loss.backward()
            opt.step()
            steps += 1
            if after_step is not None:
                after_step(opt)
        if stop_forget_acc is not None and len(yf):
            model.eval()
            with torch.no_grad(), model.ledger.paused():
                acc = float((model(xf).argmax(-1) == yf).float().mean())
            model.train()
            if acc <= stop_forget_acc:
                break
    model.eval()
    return steps


def stop_target(strategy, request, model) -> float:
    """Forget-set accuracy at which approximate unlearning stops (unless the user fixed one).

    Class requests: chance level. Sample/owner requests: the model's accuracy on
    unseen test data, the level a model retrained without the samples would
    show on them (pushing lower is itself a membership signal, as SCRUB+R notes).
    """
    if strategy.stop_forget_acc is not None:
        return strategy.stop_forget_acc
    n_cls = strategy.n_classes or int(strategy.registry.y.max()) + 1
    if request.classes is not None:
        return 1.0 / n_cls
    if strategy.eval_data is not None:
        from ..evaluation.unlearning_metrics import accuracy_of

        return accuracy_of(model, *strategy.eval_data)
    return 1.0 / n_cls


class _ApproxSettings:
    """Settings shared by the approximate-unlearning strategies; registers each learned experience."""

    def _set_approx(self, method, unlearn_epochs, unlearn_lr, forget_weight, neggrad_alpha, stop_forget_acc,
                    n_classes, unlearn_batch_size) -> None:
        self.method = _check_method(method)
        if isinstance(unlearn_epochs, bool) or not isinstance(unlearn_epochs, int) or unlearn_epochs < 1:
            raise ValueError(f"unlearn_epochs must be a positive int, got {unlearn_epochs!r}")
        if not unlearn_lr > 0:
            raise ValueError(f"unlearn_lr must be > 0, got {unlearn_lr!r}")
        self.unlearn_epochs, self.unlearn_lr, self.unlearn_batch_size = unlearn_epochs, unlearn_lr, unlearn_batch_size
        self.forget_weight, self.neggrad_alpha = forget_weight, neggrad_alpha
        self.stop_forget_acc, self.n_classes = stop_forget_acc, n_classes

    def train_dataset_adaptation(self, **kwargs):
        super().train_dataset_adaptation(**kwargs)
        self.register_experience(self.experience)


class LoRAUnlearning(ForgetMixin, _ApproxSettings, HybridLoRA):
    """HybridLoRA that also honours forget requests with an approximate objective on a new adapter."""

    def __init__(self, *, method: str = "neg_ce", unlearn_epochs: int = 16, unlearn_lr: float = 1e-2,
                 forget_weight: float = -0.5, neggrad_alpha: float = 0.9, stop_forget_acc: float | None = None,
                 n_classes: int | None = None, unlearn_batch_size: int | None = None, admins=("controller",),
                 audit_path=None, eval_data=None, **kwargs) -> None:
        self._set_approx(method, unlearn_epochs, unlearn_lr, forget_weight, neggrad_alpha, stop_forget_acc,
                         n_classes, unlearn_batch_size)
        self.unlearn_adapters: list[str] = []
        self._init_forgetting(admins, audit_path, eval_data)
        super().__init__(**kwargs)

    def model_adaptation(self, model=None):
        model = super().model_adaptation(model)
        # unlearning adapters stay summed into every later forward (switching them off would undo the forgetting)
        model.set_active_adapters(model.active_adapters + [a for a in self.unlearn_adapters if a in model.adapter_names])
        return model

    def _apply_forget(self, ids, request) -> dict:
        model: HybridModel = self.model
        name = f"unlearn{len(self.unlearn_adapters)}"
        model.add_adapter(name, rank=self.rank, alpha=self.alpha, target_modules=self.target_modules,
                          rank_scaling=self.rank_scaling, seed=self.adapter_seed + 1000 + len(self.unlearn_adapters),
                          activate=False, bias=self.adapter_bias)
        self.unlearn_adapters.append(name)
        model.set_active_adapters(list(dict.fromkeys(model.active_adapters + [name])))
        for p in model.adapter_parameters():
            p.requires_grad_(False)
        params = model.adapter_parameters([name])
        for p in params:
            p.requires_grad_(True)
        forget, retain = self.registry.split(ids)
        target = stop_target(self, request, model)
        n = sum(p.numel() for p in params)
        steps = unlearn_loop(model, params, self.method, forget, retain, epochs=self.unlearn_epochs,
                             lr=self.unlearn_lr, batch_size=self.unlearn_batch_size, forget_weight=self.forget_weight,
                             neggrad_alpha=self.neggrad_alpha, n_classes=self.n_classes, seed=self.adapter_seed,
                             after_step=lambda opt: model.record_update(n, optimizer_state_bytes(opt)),
                             stop_forget_acc=target, device=self.device)
        return {"adapter": name, "method": self.method, "steps": steps, "stop_forget_acc": target}


class FullWeightUnlearning(ForgetMixin, _ApproxSettings, AnalogFullFinetune):
    """Baseline: the same approximate objective on every weight, written back after each step."""

    def __init__(self, *, method: str = "neg_ce", unlearn_epochs: int = 16, unlearn_lr: float = 1e-3,
                 forget_weight: float = -0.5, neggrad_alpha: float = 0.9, stop_forget_acc: float | None = None,
                 n_classes: int | None = None, unlearn_batch_size: int | None = None, admins=("controller",),
                 audit_path=None, eval_data=None, **kwargs) -> None:
        self._set_approx(method, unlearn_epochs, unlearn_lr, forget_weight, neggrad_alpha, stop_forget_acc,
                         n_classes, unlearn_batch_size)
        self._init_forgetting(admins, audit_path, eval_data)
        super().__init__(**kwargs)

    def _apply_forget(self, ids, request) -> dict:
        model: HybridModel = self.model
        shadows = [layer.weight_shadow for layer in model.hybrid_layers()]
        forget, retain = self.registry.split(ids)
        target = stop_target(self, request, model)

        def write_back(opt):
            model.write_back_shadows()
            model.record_update(sum(p.numel() for p in shadows), optimizer_state_bytes(opt))

        steps = unlearn_loop(model, shadows, self.method, forget, retain, epochs=self.unlearn_epochs,
                             lr=self.unlearn_lr, batch_size=self.unlearn_batch_size, forget_weight=self.forget_weight,
                             neggrad_alpha=self.neggrad_alpha, n_classes=self.n_classes, after_step=write_back,
                             stop_forget_acc=target, device=self.device)
        return {"method": self.method, "steps": steps, "reprogrammed_every_step": True, "stop_forget_acc": target}


class RetrainUnlearning(ForgetMixin, RetrainAndReprogram):
    """Exact baseline: retrain a fresh model on everything retained, then reprogram every cell."""

    def __init__(self, *, admins=("controller",), audit_path=None, eval_data=None, **kwargs) -> None:
        self._init_forgetting(admins, audit_path, eval_data)
        super().__init__(**kwargs)

    def train_dataset_adaptation(self, **kwargs):
        super().train_dataset_adaptation(**kwargs)
        self.register_experience(self.experience)

    def model_for_forgetting(self):
        return self.hybrid

    def _apply_forget(self, ids, request) -> dict:
        from ..benchmarks.digits import tensor_dataset

        forget_mask = torch.isin(self.registry.ids, ids)
        keep = ~forget_mask
        retained = tensor_dataset(self.registry.x[keep], self.registry.y[keep], sample_ids=self.registry.ids[keep],
                                  owners=self.registry.owners[keep])
        self._seen = [retained]
        sw = self._fresh_software().to(self.device)
        self.model.load_state_dict(sw.state_dict())
        hook = next(p for p in self.plugins if type(p).__name__ == "_DigitalTrainingCost")
        hook.before_training_exp(self)
        train_classifier(self.model, self.registry.x[keep], self.registry.y[keep], self.model.parameters(),
                         epochs=self.train_epochs, lr=self.lr, batch_size=self.train_mb_size, seed=self.init_seed,
                         progress=False)
        reprogram_from_software(self.hybrid, self.model, "unlearn")
        return {"retrained_samples": int(keep.sum()), "reprogrammed_cells": self.hybrid.cells}
