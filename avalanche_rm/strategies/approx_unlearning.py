"""Approximate unlearning on adapters (hybrid) or on all weights with write-back (baseline), and the
retrain-and-reprogram exact baseline.

The objectives come from the registry in :mod:`avalanche_rm.unlearning.objectives`
(``neg_ce``, ``random_label``, ``neggrad_plus``, ``scrub``, ... or your own); a
request may name one (``ForgetRequest.method``), else the strategy's ``method``
is used. On a hybrid model a fresh adapter ``unlearn<k>`` is trained and stacked
on the existing ones; the analogue base is never written.
"""
from __future__ import annotations

import torch

from ..nn.model import HybridModel
from ..training import train_classifier
from ..unlearning import get_objective, objective_names, stop_accuracy, train_objective
from .forgetting import ForgetMixin, materialized_subset
from .full_weight import AnalogFullFinetune, RetrainAndReprogram, reprogram_from_software
from .hybrid_lora import HybridLoRA
from ..validation import check_int


def _check_method(method: str) -> str:
    if method not in objective_names():
        raise ValueError(f"unlearning method must be one of {objective_names()}, got {method!r}")
    return method


class _ApproxSettings:
    """Settings shared by the approximate-unlearning strategies; registers each learned experience."""

    def _set_approx(self, method, unlearn_epochs, unlearn_lr, method_options, stop_forget_acc, n_classes,
                    unlearn_batch_size) -> None:
        self.method = _check_method(method)
        get_objective(method, **(method_options or {}))  # options checked now, not at the first request
        check_int(unlearn_epochs, "unlearn_epochs", 1)
        if not unlearn_lr > 0:
            raise ValueError(f"unlearn_lr must be > 0, got {unlearn_lr!r}")
        self.unlearn_epochs, self.unlearn_lr, self.unlearn_batch_size = unlearn_epochs, unlearn_lr, unlearn_batch_size
        self.method_options = dict(method_options or {})
        self.stop_forget_acc, self.n_classes = stop_forget_acc, n_classes

    def train_dataset_adaptation(self, **kwargs):
        super().train_dataset_adaptation(**kwargs)
        self.register_experience(self.experience)

    def _run_objective(self, model: HybridModel, params: list, ids: torch.Tensor, request, seed: int,
                       after_step=None) -> dict:
        method = _check_method(request.method or self.method)
        options = self.method_options if method == self.method else {}
        objective = get_objective(method, **options)
        reg = self.registry
        forget, retain = reg.split(ids)
        n_cls = self.n_classes or int(reg.y.max()) + 1
        if self.stop_forget_acc is not None:
            target = self.stop_forget_acc
        else:
            test = None
            if self.eval_data is not None:
                from ..unlearning import accuracy_of

                test = accuracy_of(model, *self.eval_data)
            target = stop_accuracy(request.classes, n_cls, test)
        retained = torch.unique(retain[1])
        steps = train_objective(model, params, objective, forget, retain, epochs=self.unlearn_epochs,
                                lr=self.unlearn_lr, batch_size=self.unlearn_batch_size, n_classes=n_cls,
                                retained_classes=retained, seed=seed, after_step=after_step,
                                stop_forget_acc=target, device=self.device)
        return {"method": method, "options": objective.options, "steps": steps, "stop_forget_acc": target}


class LoRAUnlearning(ForgetMixin, _ApproxSettings, HybridLoRA):
    """HybridLoRA that also honours forget requests with an approximate objective on a new adapter."""

    def __init__(self, *, method: str = "neg_ce", unlearn_epochs: int = 16, unlearn_lr: float = 1e-2,
                 method_options: dict | None = None, stop_forget_acc: float | None = None,
                 n_classes: int | None = None, unlearn_batch_size: int | None = None, trust=None,
                 audit_path=None, eval_data=None, audit_key=None, store_path=None, **kwargs) -> None:
        self._set_approx(method, unlearn_epochs, unlearn_lr, method_options, stop_forget_acc, n_classes,
                         unlearn_batch_size)
        self.unlearn_adapters: list[str] = []
        self._init_forgetting(trust, audit_path, eval_data, audit_key=audit_key, store_path=store_path)
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
        detail = self._run_objective(model, params, ids, request, self.adapter_seed)
        return {"adapter": name, **detail}


class FullWeightUnlearning(ForgetMixin, _ApproxSettings, AnalogFullFinetune):
    """Baseline: the same approximate objective on every weight, written back after each step."""

    def __init__(self, *, method: str = "neg_ce", unlearn_epochs: int = 16, unlearn_lr: float = 1e-3,
                 method_options: dict | None = None, stop_forget_acc: float | None = None,
                 n_classes: int | None = None, unlearn_batch_size: int | None = None, trust=None,
                 audit_path=None, eval_data=None, audit_key=None, store_path=None, **kwargs) -> None:
        self._set_approx(method, unlearn_epochs, unlearn_lr, method_options, stop_forget_acc, n_classes,
                         unlearn_batch_size)
        self._init_forgetting(trust, audit_path, eval_data, audit_key=audit_key, store_path=store_path)
        super().__init__(**kwargs)

    def _apply_forget(self, ids, request) -> dict:
        model: HybridModel = self.model
        shadows = [layer.weight_shadow for layer in model.hybrid_layers()]
        detail = self._run_objective(model, shadows, ids, request, 0, after_step=lambda opt: model.write_back_shadows())
        return {**detail, "reprogrammed_every_step": True}


class RetrainUnlearning(ForgetMixin, RetrainAndReprogram):
    """Exact baseline: retrain a fresh model in the digital unit on everything retained, then reprogram every cell."""

    def __init__(self, *, trust=None, audit_path=None, eval_data=None, audit_key=None, store_path=None,
                 **kwargs) -> None:
        self._init_forgetting(trust, audit_path, eval_data, audit_key=audit_key, store_path=store_path)
        super().__init__(**kwargs)

    def train_dataset_adaptation(self, **kwargs):
        super().train_dataset_adaptation(**kwargs)
        self.register_experience(self.experience)

    def model_for_forgetting(self):
        return self.hybrid

    def purge_hooks(self) -> list:
        return super().purge_hooks() + [("seen_datasets", self._purge_seen)]

    def _purge_seen(self, ids: torch.Tensor) -> int:
        """The datasets kept for cumulative retraining, without the forgotten samples."""
        idset = set(int(i) for i in ids)
        removed = 0
        for k, ds in enumerate(self._seen):
            keep = [j for j, sid in enumerate(ds.sample_ids) if int(sid) not in idset]
            removed += len(ds) - len(keep)
            self._seen[k] = materialized_subset(ds, keep)  # a view would keep the whole source tensor
        return removed

    def _apply_forget(self, ids, request) -> dict:
        reg = self.registry
        keep = ~torch.isin(reg.ids, ids)
        self.model.module.load_state_dict(self._fresh_software().state_dict())
        self.model.to(self.device)
        train_classifier(self.model, reg.x[keep], reg.y[keep], self.model.parameters(), epochs=self.train_epochs,
                         lr=self.lr, batch_size=self.train_mb_size, seed=self.init_seed, progress=False)
        reprogram_from_software(self.hybrid, self.model, "unlearn")
        return {"retrained_samples": int(keep.sum()), "reprogrammed_cells": self.hybrid.cells}
