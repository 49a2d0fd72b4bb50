"""Shared pieces of the scenario recipes: training loops, on-chip full-weight updates, metrics, bills."""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import torch
from torch import nn

from ..costs.fields import TABLE_KEYS
from ..hardware.config import HardwareConfig
from ..hardware.programming import ProgrammingReport
from ..nn.model import HybridModel, convert_to_hybrid
from ..nn.reference import dense_reference
from ..training import LossFn, run_epochs
from ..unlearning import ForgetCore, ForgetRequest, ObjectiveContext, generate_keys, get_objective
from ..validation import check_int


@dataclass
class Recipe:
    """One training run: optimiser, learning rate, epochs, batch (``None`` = full batch, as the face code)."""

    epochs: int
    lr: float
    batch_size: int | None = None
    optimizer: str = "adam"
    momentum: float = 0.9

    def __post_init__(self) -> None:
        check_int(self.epochs, "epochs", 0)
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise ValueError(f"batch_size must be None or an int >= 1, got {self.batch_size!r}")
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise ValueError(f"optimizer must be adam, adamw or sgd, got {self.optimizer!r}")

    def steps_per_epoch(self, n_samples: int) -> int:
        """Optimiser steps one epoch over ``n_samples`` takes."""
        return -(-n_samples // (self.batch_size or n_samples))

    def scaled(self, epoch_fraction: float) -> "Recipe":
        """The same recipe with ``epochs`` scaled (small settings for tests), at least one epoch."""
        return Recipe(max(1, round(self.epochs * epoch_fraction)), self.lr, self.batch_size, self.optimizer,
                      self.momentum)

    def make_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum)
        if self.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=self.lr, weight_decay=0.0)
        return torch.optim.Adam(params, lr=self.lr)


def fit(model: nn.Module, params: Iterable[nn.Parameter], x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn,
        recipe: Recipe, seed: int = 0, desc: str = "train",
        after_step: Callable[[torch.optim.Optimizer], None] | None = None, progress: bool = True) -> list[float]:
    """:func:`avalanche_rm.training.run_epochs` with ``recipe``'s optimiser; mean loss per epoch.

    A :class:`HybridModel` gets the optimiser attached, so every step of its
    adapters is charged; ``after_step(optimizer)`` runs after each step (e.g. an
    analogue write-back for full-weight baselines).
    """
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters")
    opt = recipe.make_optimizer(params)
    if isinstance(model, HybridModel):
        model.attach_optimizer(opt)
    return run_epochs(model, opt, x, y, loss_fn, recipe.epochs, recipe.batch_size or len(x), seed, desc, progress,
                      after_step)


def deploy_base(software: nn.Module, hardware: HardwareConfig, seed: int, calibration_inputs,
                provenance: str, device="cpu") -> tuple[HybridModel, ProgrammingReport]:
    """Program the software base once and calibrate its ADCs on data it was trained on.

    ``provenance`` states which data the analogue base learned (reported with
    the results): the reference recipes program the base with the initial
    task's data, the class later forgotten included, and forget it
    approximately on adapters, as the reference does.
    """
    hyb = convert_to_hybrid(software, hardware).to(device)
    args = calibration_inputs if isinstance(calibration_inputs, tuple) else (calibration_inputs,)
    rep = hyb.program(seed=seed, calibration_data=tuple(a.to(device) for a in args))
    hyb.base_provenance = provenance
    return hyb, rep


def objective_loss(method: str, forget_classes: list[int], n_classes: int, retained: list[int] | None = None,
                   **options) -> LossFn:
    """A registered unlearning objective as a :data:`~avalanche_rm.training.LossFn` over class labels."""
    objective = get_objective(method, **options)
    forget = torch.tensor(forget_classes, dtype=torch.long)
    kept = torch.tensor(retained, dtype=torch.long) if retained is not None else None

    def loss(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        ctx = ObjectiveContext(n_classes=n_classes, generator=gen, retained_classes=kept)
        return objective.loss(model(xb), yb, torch.isin(yb, forget.to(yb.device)), ctx)

    return loss


class ScenarioForgetting:
    """A scenario's unlearning phases through the unlearning core (one :class:`ForgetCore` per design).

    The reference recipes forget whole classes on the data controller's
    request: each design's request is validated, measured before and after on
    the data still at hand, judged and recorded like any other; the recipe's
    own training loop is the action. The rows of ``x``/``y`` it covers are
    forgotten by the scenario once every design has honoured the request
    (:attr:`alive`: later phases, calibration included, use only what remains).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor, classes: list[int],
                 test: tuple[torch.Tensor, torch.Tensor] | None, method: str, options: dict | None = None) -> None:
        self.x, self.y, self.classes = x, y, list(classes)
        self.rows = rows.nonzero().flatten() if rows.dtype == torch.bool else rows
        self.test, self.method, self.options = test, method, dict(options or {})
        self.alive = torch.ones(len(y), dtype=torch.bool)
        self.records: dict[str, dict] = {}
        # the scenario plays the data controller: it signs its own class request for each design
        self._trust, self._keys = generate_keys("scenario", controllers=["controller"])

    def honour(self, design: str, model: HybridModel, run: Callable[[str, dict], None], *, last: bool = False,
               measure=None, method: str | None = None, options: dict | None = None) -> dict:
        """``run(method, options)`` trains the design's unlearning recipe (``method``/``options``: the design's
        own, default the scenario's); ``last`` purges the scenario's rows."""
        method = method or self.method
        options = dict(options or {}) if method != self.method or options is not None else self.options
        core = ForgetCore(self._trust, eval_data=self.test, with_mia=False)
        rows = self.rows
        core.learn(self.x[rows], self.y[rows], rows.clone(), self.y[rows].clone())

        def apply(ids, request, method, options) -> dict:
            run(method.name, options)
            return {"recipe": design}

        def purge(ids: torch.Tensor) -> int:
            self.alive[ids] = False
            return int(len(ids))

        request = ForgetRequest(requester="controller", classes=tuple(self.classes), method=method,
                                options=options or None)
        signed = self._keys["controller"].sign(request, self._trust.audience)
        rec = core.honour(signed, model=model, ledger=model.ledger, apply=apply, default_method=method,
                          default_options=options, kinds=("objective",), who=f"scenario ({design})",
                          purge=[("scenario_data", purge)] if last else (), measure=measure)
        self.records[design] = rec
        return rec

    def audit(self) -> list[dict]:
        """The records of every design (ids and digests, never the data)."""
        return [{"design": d, **{k: r[k] for k in ("method", "options", "guarantee", "status", "judgement",
                                                   "n_samples", "data_digest", "purged", "cost",
                                                   "metrics_before", "metrics_after")}}
                for d, r in self.records.items()]


@dataclass
class NoiseStudy:
    """Write-noise Monte Carlo (reference: sigma 1-10 uS, 100 draws) and the calibration adapter."""

    sigmas_us: tuple[float, ...] = tuple(float(s) for s in range(1, 11))
    runs: int = 100
    calibration_sigma_us: float = 2.0
    calibration: Recipe | None = None  # None: the scenario's own default

    def __post_init__(self) -> None:
        check_int(self.runs, "noise runs", 0)
        if any(not 0 <= float(s) < float("inf") for s in self.sigmas_us):
            raise ValueError(f"noise sigmas must be finite and >= 0 uS, got {self.sigmas_us!r}")
        if not 0 <= self.calibration_sigma_us < float("inf"):
            raise ValueError(f"calibration sigma must be finite and >= 0 uS, got {self.calibration_sigma_us!r}")


# ------------------------------------------------------------------ full-weight baselines on the chip
class AnalogWriteBack:
    """Full-weight training on the chip: digital shadows get the gradients, and every
    ``every`` optimiser steps the new weights are write-verified into the cells.

    Use :meth:`params` as the optimiser's parameters and :meth:`after_step` as
    :func:`fit`'s hook. ``extra`` holds further trainable digital parameters
    (e.g. a grown head row) that are optimised but never written to cells.
    """

    def __init__(self, model: HybridModel, every: int = 1) -> None:
        if every < 1:
            raise ValueError(f"write-back interval must be >= 1 step, got {every!r}")
        self.model, self.every = model, every
        self.shadows = [layer.enable_weight_training() for layer in model.hybrid_layers()]
        self.extra: list[nn.Parameter] = []
        self._steps = 0
        self.deploy: dict[str, ProgrammingReport] = {}

    def set_interval(self, every: int) -> None:
        """Write back every ``every`` optimiser steps from now on (the step count restarts)."""
        if every < 1:
            raise ValueError(f"write-back interval must be >= 1 step, got {every!r}")
        self.every, self._steps = every, 0

    def params(self) -> list[nn.Parameter]:
        for s in self.shadows:
            s.requires_grad_(True)
        return self.shadows + self.extra

    def after_step(self, opt: torch.optim.Optimizer) -> None:
        self._steps += 1  # the step itself is charged by the optimiser attached in fit()
        if self._steps % self.every == 0:
            self.model.write_back_shadows()

    @contextlib.contextmanager
    def update(self, name: str) -> Iterator[None]:
        """One update request, charged to ledger phase ``name``.

        Also prices deploying its result the way an off-chip-trained model would be
        deployed: one write-verify job taking a copy of the chip from its state
        before the update to the final weights (``self.deploy[name]``; not charged
        to this chip's ledger).
        """
        before = copy.deepcopy(self.model)
        with self.model.ledger.phase(name):
            yield
        with torch.no_grad():
            rep = ProgrammingReport()
            for (_, layer), (_, old) in zip(self.model.named_hybrid_layers(), before.named_hybrid_layers()):
                rep += old.reprogram_weight(layer.weight_shadow.detach(), phase="deploy-update", from_fp32=False)
        self.deploy[name] = rep

    def freeze(self) -> None:
        """Stop training the shadows (evaluation afterwards reads the cells only)."""
        for s in self.shadows:
            s.requires_grad_(False)


def program_jobs(model: HybridModel) -> int:
    """How many times the whole array was programmed (jobs on the first layer, from the ledger's events)."""
    first = next(iter(dict(model.named_hybrid_layers())))
    return sum(1 for e in model.ledger.events if e["kind"] == "program" and e.get("layer") == first)


# ------------------------------------------------------------------ metrics
def group_accuracy(pred: torch.Tensor, y: torch.Tensor, classes: Iterable[int]) -> float:
    """Accuracy over the samples of ``classes`` (NaN when none)."""
    m = torch.isin(y, torch.tensor(list(classes), dtype=y.dtype))
    return float((pred[m] == y[m]).float().mean()) if bool(m.any()) else float("nan")


def accuracy_row(stage: str, method: str, pred: torch.Tensor, y: torch.Tensor, forget: list[int], retain: list[int],
                 new: list[int]) -> dict:
    """The reference logs' columns: overall / forget / retain / new accuracy (in %)."""
    return {"stage": stage, "method": method,
            "overall_pct": 100 * group_accuracy(pred, y, torch.unique(y).tolist()),
            "forget_pct": 100 * group_accuracy(pred, y, forget) if forget else float("nan"),
            "retain_pct": 100 * group_accuracy(pred, y, retain),
            "new_pct": 100 * group_accuracy(pred, y, new) if new else float("nan")}


# ------------------------------------------------------------------ bills
def phase_bill(model: HybridModel, phase: str) -> dict[str, float]:
    """Totals of one ledger phase, split into programming and compute (training/inference) energy."""
    s = model.ledger.by_phase().get(phase, {})
    prog = s.get("energy_program_pj", 0.0)
    return {"compute_energy_pj": s.get("energy_pj", 0.0) - prog, "program_energy_pj": prog,
            **{k: s.get(k, 0.0) for k in TABLE_KEYS}, "steps": s.get("steps", 0.0)}


Inputs = torch.Tensor | tuple[torch.Tensor, ...]


def inference_energy_pj(model: HybridModel, inputs: Inputs) -> float:
    """Chip energy per sample of one inference pass (charged to ledger phase ``infer-probe``)."""
    return model.inference_cost(inputs).get("energy_pj", 0.0)


def dense_digital_energy_pj(model: HybridModel, inputs: Inputs) -> float:
    """Energy per sample of the same network run by the digital unit alone (the one all-digital reference)."""
    return dense_reference(model, inputs).get("energy_pj", 0.0)
