"""Speaker authentication (reference ``SpeakerAuthentication/``): spiking LSM, forget a speaker, add one.

Hybrid LoRA recipe (reference code): train the SNN on speakers 0-4 in software
(MSE to one-hot, SGD 0.05, batch 128), program the chip once, forget speaker 1
with a rank-8 adapter on ``fc1``/``fc1h`` trained with random relabelling (each
forgotten sample gets a random retained label, fresh every batch), then grow the
head by one class (a frozen random row, here held in the digital unit: no cell
is written) and learn speaker 5 with a second adapter and 30 % rehearsal of the
retained speakers. Baseline on the same chip: the same objectives on every
weight (head row trainable, full rehearsal), written back into the cells.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from ..hardware import get_preset
from ..nn.model import HybridModel
from ..training import predictions
from .common import (AnalogWriteBack, NoiseStudy, Recipe, ScenarioForgetting, accuracy_row, deploy_base, fit,
                     objective_loss)
from .data import ScenarioData, speaker_data
from .models import SPEAKER_LORA_TARGETS, SpikingLSM
from .noise import noise_tables, stage_evaluator
from .report import scenario_report


@dataclass
class SpeakerConfig:
    """The reference speaker recipe (``train_*.py``); epochs scale with ``epoch_scale``.

    ``write_back`` is how often the baseline writes its weights into the cells:
    ``"step"`` (default, as the reference baseline updates every step) or ``"epoch"`` (cheaper to simulate,
    but momentum SGD against cells that lag a whole epoch behind can diverge).
    """
    #: the hybrid design's unlearning method and options (None: the reference recipe's objective)
    unlearn_method: str | None = None
    unlearn_options: dict | None = None

    initial_classes: int = 5
    forget_class: int = 1
    new_class: int = 5
    hidden: int = 512
    rank: int = 8
    alpha: float = 16.0
    rehearsal: float = 0.3
    pretrain: Recipe = field(default_factory=lambda: Recipe(300, 0.05, 128, "sgd"))
    unlearn: Recipe = field(default_factory=lambda: Recipe(60, 0.05, 128, "sgd"))
    continual: Recipe = field(default_factory=lambda: Recipe(60, 0.05, 128, "sgd"))
    write_back: str = "step"
    epoch_scale: float = 1.0
    noise: NoiseStudy = field(default_factory=NoiseStudy)
    calibration: Recipe = field(default_factory=lambda: Recipe(60, 0.05, 128, "sgd"))

    def __post_init__(self) -> None:
        if self.write_back not in ("epoch", "step"):
            raise ValueError(f"write_back must be 'epoch' or 'step', got {self.write_back!r}")
        if not 0.0 <= self.rehearsal <= 1.0:
            raise ValueError(f"rehearsal must lie in [0, 1], got {self.rehearsal!r}")
        if not self.epoch_scale > 0:
            raise ValueError(f"epoch_scale must be > 0, got {self.epoch_scale!r}")
        if not 0 <= self.forget_class < self.initial_classes <= self.new_class:
            raise ValueError(f"need 0 <= forget_class ({self.forget_class}) < initial_classes "
                             f"({self.initial_classes}) <= new_class ({self.new_class})")

    def r(self, name: str) -> Recipe:
        rec = getattr(self, name)
        return rec if self.epoch_scale == 1.0 else rec.scaled(self.epoch_scale)


def _one_hot_mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(out, nn.functional.one_hot(y, out.shape[-1]).to(out.dtype))


def mse_loss(model, xb, yb, gen):
    return _one_hot_mse(model(xb), yb)


def rehearsal_loss(new_classes: list[int], keep_old: float):
    """MSE to one-hot on all new-class samples and a random ``keep_old`` share of the others, per batch."""
    new_t = torch.tensor(new_classes)

    def loss(model, xb, yb, gen):
        keep = torch.isin(yb, new_t.to(yb.device)) | (torch.rand(len(yb), generator=gen) < keep_old).to(yb.device)
        if not bool(keep.any()):
            return model(xb[:1]).sum() * 0.0
        return _one_hot_mse(model(xb[keep]), yb[keep])

    return loss


def grow_head(model: HybridModel, gen: torch.Generator, trainable: bool) -> None:
    """Add one output to ``fc2``: a row ~ N(mean, std) of the old rows, bias 0, in the digital unit."""
    head = dict(model.named_hybrid_layers())["fc2"]
    w = head.target_weight()
    row = torch.randn(1, w.shape[1], generator=gen) * w.std() + w.mean()
    head.add_digital_outputs(row.to(w.device), torch.zeros(1, device=w.device), trainable=trainable)


def run_speakers(cfg: SpeakerConfig | None = None, *, data: ScenarioData | None = None, preset: str = "paper-180nm",
                 seed: int = 0, device: str = "cpu", progress: bool = True) -> dict:
    """Run the speaker scenario (hybrid LoRA vs full-weight baseline on one chip); returns the report dict."""
    cfg = cfg or SpeakerConfig()
    data = data or speaker_data(standin=True)
    hw = get_preset(preset)
    c0, f, new = cfg.initial_classes, cfg.forget_class, cfg.new_class
    retain = [c for c in range(c0) if c != f]
    xtr, ytr, xte, yte = data.x_train, data.y_train, data.x_test, data.y_test
    first, first_te = ytr < c0, yte < c0
    cl_tr = torch.isin(ytr, torch.tensor(retain + [new]))
    cl_te = torch.isin(yte, torch.tensor(list(range(c0)) + [new]))

    torch.manual_seed(seed)
    sw = SpikingLSM(in_features=xtr.shape[-1], hidden=cfg.hidden, n_classes=c0).to(device)
    fit(sw, sw.parameters(), xtr[first], ytr[first], mse_loss, cfg.r("pretrain"), seed, "speakers: pretrain",
        progress=progress)
    rows = [accuracy_row("pretrained", "software", predictions(sw, xte[first_te]), yte[first_te], [f], retain, [])]
    hyb, prog = deploy_base(sw, hw, seed, xtr[first][:512], "the reference recipe: speakers 0-4, the speaker "
                            "later forgotten included (approximate unlearning on adapters)", device)
    base = copy.deepcopy(hyb)
    calib_chip = copy.deepcopy(hyb)
    rows.append(accuracy_row("pretrained", "programmed chip", predictions(hyb, xte[first_te]), yte[first_te], [f],
                             retain, []))
    # the data controller's request to forget speaker f, honoured by each design through the unlearning core
    # (both run the reference's random relabelling: labels redrawn from the retained speakers, MSE to one-hot)
    forgetting = ScenarioForgetting(xtr, ytr, first, [f], (xte[first_te], yte[first_te]),
                                    cfg.unlearn_method or "random_label",
                                    cfg.unlearn_options if cfg.unlearn_method else {"pool": "retained", "loss": "mse"})

    def relabel(method: str, options: dict):
        return objective_loss(method, [f], len(retain) + 1, retained=retain, **options)

    # ---- hybrid
    hyb.add_adapter("unlearn", rank=cfg.rank, alpha=cfg.alpha, target_modules=SPEAKER_LORA_TARGETS, seed=seed)
    forgetting.honour("hybrid LoRA", hyb, lambda method, options: fit(
        hyb, hyb.adapter_parameters(["unlearn"]), xtr[first], ytr[first], relabel(method, options), cfg.r("unlearn"),
        seed, "speakers: LoRA unlearn", progress=progress))
    rows.append(accuracy_row("unlearned", "hybrid LoRA", predictions(hyb, xte[first_te]), yte[first_te], [f], retain, []))
    for p in hyb.adapter_parameters(["unlearn"]):
        p.requires_grad_(False)
    grow_head(hyb, torch.Generator().manual_seed(seed + 7), trainable=False)
    hyb.add_adapter("learn", rank=cfg.rank, alpha=cfg.alpha, target_modules=SPEAKER_LORA_TARGETS, seed=seed + 1)
    with hyb.ledger.phase("continual"):
        fit(hyb, hyb.adapter_parameters(["learn"]), xtr[cl_tr], ytr[cl_tr], rehearsal_loss([new], cfg.rehearsal),
            cfg.r("continual"), seed, "speakers: LoRA continual", progress=progress)
    rows.append(accuracy_row("continual", "hybrid LoRA", predictions(hyb, xte[cl_te]), yte[cl_te], [f], retain, [new]))

    # ---- baseline: every weight, written back into the cells
    wb = AnalogWriteBack(base, every=1 if cfg.write_back == "step" else cfg.unlearn.steps_per_epoch(int(first.sum())))

    def baseline_unlearn(method: str, options: dict) -> None:
        with wb.update("unlearn"):
            fit(base, wb.params(), xtr[first], ytr[first], relabel(method, options), cfg.r("unlearn"), seed,
                "speakers: full-weight unlearn", after_step=wb.after_step, progress=progress)

    forgetting.honour("full-weight baseline", base, baseline_unlearn, last=True)
    alive = forgetting.alive  # speaker f's training recordings are gone from here on
    rows.append(accuracy_row("unlearned", "full-weight baseline", predictions(base, xte[first_te]), yte[first_te], [f],
                             retain, []))
    grow_head(base, torch.Generator().manual_seed(seed + 7), trainable=True)
    head = dict(base.named_hybrid_layers())["fc2"]
    wb.extra = [head.digital_weight, head.digital_bias]
    wb.set_interval(1 if cfg.write_back == "step" else cfg.continual.steps_per_epoch(int(cl_tr.sum())))
    with wb.update("continual"):
        fit(base, wb.params(), xtr[cl_tr], ytr[cl_tr], mse_loss, cfg.r("continual"), seed,
            "speakers: full-weight continual", after_step=wb.after_step, progress=progress)
    wb.freeze()
    rows.append(accuracy_row("continual", "full-weight baseline", predictions(base, xte[cl_te]), yte[cl_te], [f],
                             retain, [new]))

    rate = _spike_rate(hyb, xte[cl_te][:256])
    stages = [("pretrained", [], stage_evaluator(xte[first_te], yte[first_te], [f], retain, [], n_classes=c0)),
              ("unlearned", ["unlearn"], stage_evaluator(xte[first_te], yte[first_te], [f], retain, [], n_classes=c0)),
              ("continual", hyb.active_adapters, stage_evaluator(xte[cl_te], yte[cl_te], [f], retain, [new]))]
    noise_rows, calib = noise_tables(cfg.noise, hyb, stages, calib_chip, xtr[first & alive], ytr[first & alive],
                                     stage_evaluator(xte[first_te], yte[first_te], [], list(range(c0)), []), mse_loss,
                                     cfg.r("calibration"), rank=cfg.rank, alpha=cfg.alpha,
                                     target_modules=SPEAKER_LORA_TARGETS, seed=seed, progress=progress)
    return scenario_report("speakers", hw, seed, data.source, rows, hyb, base, xte[cl_te], prog, wb.deploy,
                           {"unlearn": ["unlearn"], "continual": ["learn"]}, extra={
                               "config": {"hidden": cfg.hidden, "epoch_scale": cfg.epoch_scale,
                                          "write_back": cfg.write_back, "rehearsal": cfg.rehearsal},
                               "classes": {"forget": [f], "retain": retain, "new": [new]},
                               "forget_audit": forgetting.audit(),
                               "input_spike_density": float((xte > 0).float().mean()),
                               "hidden_spike_rate": rate}, noise=noise_rows, calibration=calib)


def _spike_rate(model: HybridModel, x: torch.Tensor) -> float:
    with model.ledger.paused():
        predictions(model, x)
    return float(model.base_model.last_rate)
