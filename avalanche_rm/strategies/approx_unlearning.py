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
from ..unlearning import JudgePolicy, Method, check_method, run_approximate
from .forgetting import ForgetMixin, materialized_subset
from .full_weight import AnalogFullFinetune, RetrainAndReprogram, reprogram_from_software
from .hybrid_lora import HybridLoRA
from ..validation import check_int


class _ApproxSettings:
    """Settings shared by the approximate-unlearning strategies; registers each learned experience."""

    forget_kinds = ("objective",)

    def _set_approx(self, method, unlearn_epochs, unlearn_lr, method_options, stop_forget_acc, n_classes,
                    unlearn_batch_size) -> None:
        # the strategy's own method is checked now, not at the first request
        self.method, self.method_options = check_method(method, method_options, self.forget_kinds)
        self.method = self.method.name
        check_int(unlearn_epochs, "unlearn_epochs", 1)
        if not unlearn_lr > 0:
            raise ValueError(f"unlearn_lr must be > 0, got {unlearn_lr!r}")
        self.unlearn_epochs, self.unlearn_lr, self.unlearn_batch_size = unlearn_epochs, unlearn_lr, unlearn_batch_size
        self.stop_forget_acc, self.n_classes = stop_forget_acc, n_classes

    def forget_defaults(self) -> tuple[str, dict]:
        return self.method, self.method_options

    def train_dataset_adaptation(self, **kwargs):
        super().train_dataset_adaptation(**kwargs)
        self.register_experience(self.experience)

    def _run_objective(self, model: HybridModel, params: list, ids: torch.Tensor, request, method: Method,
                       options: dict, seed: int, after_step=None) -> dict:
        reg = self.registry
        forget, retain = reg.split(ids)
        n_cls = self.n_classes or int(reg.y.max()) + 1
        return run_approximate(model, params, method.name, options, forget, retain, epochs=self.unlearn_epochs,
                               lr=self.unlearn_lr, batch_size=self.unlearn_batch_size, n_classes=n_cls,
                               classes=request.classes, test=self.eval_data, stop_forget_acc=self.stop_forget_acc,
                               seed=seed, after_step=after_step, device=self.device)


class LoRAUnlearning(_ApproxSettings, ForgetMixin, HybridLoRA):
    """HybridLoRA that also honours forget requests with an approximate objective on a new adapter.

    A request that fails its judgement can be undone (``judge_policy=JudgePolicy(on_fail="rollback")``):
    the new adapter is dropped, the base was never written.
    """

    def __init__(self, *, method: str = "neg_ce", unlearn_epochs: int = 16, unlearn_lr: float = 1e-2,
                 method_options: dict | None = None, stop_forget_acc: float | None = None,
                 n_classes: int | None = None, unlearn_batch_size: int | None = None, trust=None,
                 audit_path=None, eval_data=None, audit_key=None, store_path=None,
                 judge_policy: JudgePolicy | None = None, **kwargs) -> None:
        self._set_approx(method, unlearn_epochs, unlearn_lr, method_options, stop_forget_acc, n_classes,
                         unlearn_batch_size)
        self.unlearn_adapters: list[str] = []
        self._init_forgetting(trust, audit_path, eval_data, audit_key=audit_key, store_path=store_path,
                              judge_policy=judge_policy)
        super().__init__(**kwargs)

    def model_adaptation(self, model=None):
        model = super().model_adaptation(model)
        # unlearning adapters stay summed into every later forward (switching them off would undo the forgetting)
        model.set_active_adapters(model.active_adapters + [a for a in self.unlearn_adapters if a in model.adapter_names])
        return model

    def forget_rollback(self):
        def snapshot():
            return list(self.unlearn_adapters), self.model.active_adapters

        def restore(saved):
            kept, active = saved
            for name in self.unlearn_adapters[len(kept):]:
                if name in self.model.adapter_names:
                    self.model.delete_adapter(name)
            self.unlearn_adapters = kept
            self.model.set_active_adapters(active)

        return snapshot, restore

    def _apply_forget(self, ids, request, method, options) -> dict:
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
        detail = self._run_objective(model, params, ids, request, method, options, self.adapter_seed)
        return {"adapter": name, **detail}


class FullWeightUnlearning(_ApproxSettings, ForgetMixin, AnalogFullFinetune):
    """Baseline: the same approximate objective on every weight, written back after each step."""

    def __init__(self, *, method: str = "neg_ce", unlearn_epochs: int = 16, unlearn_lr: float = 1e-3,
                 method_options: dict | None = None, stop_forget_acc: float | None = None,
                 n_classes: int | None = None, unlearn_batch_size: int | None = None, trust=None,
                 audit_path=None, eval_data=None, audit_key=None, store_path=None,
                 judge_policy: JudgePolicy | None = None, **kwargs) -> None:
        self._set_approx(method, unlearn_epochs, unlearn_lr, method_options, stop_forget_acc, n_classes,
                         unlearn_batch_size)
        self._init_forgetting(trust, audit_path, eval_data, audit_key=audit_key, store_path=store_path,
                              judge_policy=judge_policy)
        super().__init__(**kwargs)

    def _apply_forget(self, ids, request, method, options) -> dict:
        model: HybridModel = self.model
        shadows = [layer.weight_shadow for layer in model.hybrid_layers()]
        detail = self._run_objective(model, shadows, ids, request, method, options, 0,
                                     after_step=lambda opt: model.write_back_shadows())
        return {**detail, "reprogrammed_every_step": True}


class RetrainUnlearning(ForgetMixin, RetrainAndReprogram):
    """Exact baseline: retrain a fresh model in the digital unit on everything retained, then reprogram every cell."""

    forget_kinds = ("retrain",)

    def __init__(self, *, trust=None, audit_path=None, eval_data=None, audit_key=None, store_path=None,
                 judge_policy: JudgePolicy | None = None, **kwargs) -> None:
        self._init_forgetting(trust, audit_path, eval_data, audit_key=audit_key, store_path=store_path,
                              judge_policy=judge_policy)
        super().__init__(**kwargs)

    def forget_defaults(self) -> tuple[str, None]:
        return "retrain", None

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

    def _apply_forget(self, ids, request, method, options) -> dict:
        reg = self.registry
        keep = ~torch.isin(reg.ids, ids)
        self.model.module.load_state_dict(self._fresh_software().state_dict())
        self.model.to(self.device)
        train_classifier(self.model, reg.x[keep], reg.y[keep], self.model.parameters(), epochs=self.train_epochs,
                         lr=self.lr, batch_size=self.train_mb_size, seed=self.init_seed, progress=False)
        reprogram_from_software(self.hybrid, self.model, "unlearn")
        return {"retrained_samples": int(keep.sum()), "reprogrammed_cells": self.hybrid.cells}
