"""Face recognition (reference ``FaceRecognition/``): MLP-Mixer, forget one identity, then learn a new one.

Hybrid LoRA recipe (reference code): learn people 0-4 (6 outputs, class 5 kept
for later) in software, program the chip once, forget person 2 with a rank-6
adapter trained by class-weighted cross-entropy (weight -0.5 on the forgotten
class: descent on the rest, ascent on it), then learn person 5 with a second
rank-8 adapter on the other people. Baseline on the same chip: fine-tune every
weight on the retained people (unlearning), then on people {0,1,3,4,5}
(continual), writing the weights into the cells after every step.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from ..hardware import get_preset
from ..training import ce_loss, predictions
from .common import (AnalogWriteBack, NoiseStudy, Recipe, ScenarioForgetting, accuracy_row, deploy_base, fit,
                     objective_loss)
from .data import ScenarioData, face_data
from .models import FACE_LORA_TARGETS, MLPMixer
from .noise import noise_tables, stage_evaluator
from .report import scenario_report


@dataclass
class FaceConfig:
    """The reference face recipe (``run_unlearn.sh``, ``run_continual.sh``, baselines); epochs scale with ``epoch_scale``."""
    #: the hybrid design's unlearning method and options (None: the reference recipe's objective)
    unlearn_method: str | None = None
    unlearn_options: dict | None = None

    initial_classes: int = 5
    n_outputs: int = 6
    forget_class: int = 2
    new_class: int = 5
    forget_weight: float = -0.5
    unlearn_rank: int = 6
    unlearn_alpha: float = 4.0
    cl_rank: int = 8
    cl_alpha: float = 4.0
    composition: str = "summed"
    pretrain: Recipe = field(default_factory=lambda: Recipe(300, 0.01))
    unlearn: Recipe = field(default_factory=lambda: Recipe(16, 0.01))
    unlearn_baseline: Recipe = field(default_factory=lambda: Recipe(200, 0.01))
    continual: Recipe = field(default_factory=lambda: Recipe(100, 0.01))
    continual_baseline: Recipe = field(default_factory=lambda: Recipe(200, 0.005))
    write_every: int = 1
    epoch_scale: float = 1.0
    noise: NoiseStudy = field(default_factory=NoiseStudy)
    calibration: Recipe = field(default_factory=lambda: Recipe(50, 0.01))

    def __post_init__(self) -> None:
        if self.composition not in ("summed", "switched"):
            raise ValueError(f"composition must be 'summed' or 'switched', got {self.composition!r}")
        if not self.epoch_scale > 0:
            raise ValueError(f"epoch_scale must be > 0, got {self.epoch_scale!r}")
        if not 0 <= self.forget_class < self.initial_classes <= self.new_class < self.n_outputs:
            raise ValueError(f"need 0 <= forget_class ({self.forget_class}) < initial_classes "
                             f"({self.initial_classes}) <= new_class ({self.new_class}) < n_outputs ({self.n_outputs})")

    def r(self, name: str) -> Recipe:
        rec = getattr(self, name)
        return rec if self.epoch_scale == 1.0 else rec.scaled(self.epoch_scale)


def run_faces(cfg: FaceConfig | None = None, *, data: ScenarioData | None = None, preset: str = "paper-180nm",
              seed: int = 0, device: str = "cpu", progress: bool = True) -> dict:
    """Run the face scenario (hybrid LoRA vs full-weight baseline on one chip); returns the report dict."""
    cfg = cfg or FaceConfig()
    data = data or face_data(cfg.n_outputs, standin=True)
    hw = get_preset(preset)
    c0, f, new = cfg.initial_classes, cfg.forget_class, cfg.new_class
    retain = [c for c in range(c0) if c != f]
    xtr, ytr, xte, yte = data.x_train, data.y_train, data.x_test, data.y_test
    first = ytr < c0
    first_te = yte < c0
    keep_new = torch.isin(ytr, torch.tensor(retain + [new]))
    keep_new_te = torch.isin(yte, torch.tensor(list(range(c0)) + [new]))
    retain_tr = torch.isin(ytr, torch.tensor(retain))

    torch.manual_seed(seed)
    sw = MLPMixer(n_classes=cfg.n_outputs, image_size=xtr.shape[-1]).to(device)
    fit(sw, sw.parameters(), xtr[first], ytr[first], ce_loss, cfg.r("pretrain"), seed, "faces: pretrain", progress=progress)
    software_pred = predictions(sw, xte[first_te])

    hyb, prog = deploy_base(sw, hw, seed, xtr[first][:512], "the reference recipe: people 0-4, the person later "
                            "forgotten included (approximate unlearning on adapters)", device)
    base = copy.deepcopy(hyb)  # the baseline's chip: same programmed state, its own ledger from here on
    calib_chip = copy.deepcopy(hyb)

    rows = [accuracy_row("pretrained", "software", software_pred, yte[first_te], [f], retain, []),
            accuracy_row("pretrained", "programmed chip", predictions(hyb, xte[first_te]), yte[first_te], [f], retain, [])]

    # the data controller's request to forget person f, honoured by each design through the unlearning core
    forgetting = ScenarioForgetting(xtr, ytr, first, [f], (xte[first_te], yte[first_te]),
                                    cfg.unlearn_method or "neg_ce",
                                    cfg.unlearn_options if cfg.unlearn_method else {"forget_weight": cfg.forget_weight})

    # ---- hybrid: unlearning adapter, then a continual adapter
    hyb.add_adapter("unlearn", rank=cfg.unlearn_rank, alpha=cfg.unlearn_alpha, target_modules=FACE_LORA_TARGETS,
                    rank_scaling=False, seed=seed)
    forgetting.honour("hybrid LoRA", hyb, lambda method, options: fit(
        hyb, hyb.adapter_parameters(["unlearn"]), xtr[first], ytr[first],
        objective_loss(method, [f], cfg.n_outputs, **options), cfg.r("unlearn"), seed, "faces: LoRA unlearn",
        progress=progress))
    rows.append(accuracy_row("unlearned", "hybrid LoRA", predictions(hyb, xte[first_te]), yte[first_te], [f], retain, []))
    for p in hyb.adapter_parameters(["unlearn"]):
        p.requires_grad_(False)
    hyb.add_adapter("learn", rank=cfg.cl_rank, alpha=cfg.cl_alpha, target_modules=FACE_LORA_TARGETS,
                    rank_scaling=False, seed=seed + 1, activate=False)
    hyb.set_active_adapters(["unlearn", "learn"] if cfg.composition == "summed" else ["learn"])
    with hyb.ledger.phase("continual"):
        fit(hyb, hyb.adapter_parameters(["learn"]), xtr[keep_new], ytr[keep_new], ce_loss, cfg.r("continual"), seed,
            "faces: LoRA continual", progress=progress)
    rows.append(accuracy_row("continual", "hybrid LoRA", predictions(hyb, xte[keep_new_te]), yte[keep_new_te], [f],
                             retain, [new]))

    # ---- baseline: full-weight fine-tuning written back into the cells
    wb = AnalogWriteBack(base, every=cfg.write_every)

    def baseline_unlearn(method: str, options: dict) -> None:
        # the reference baseline fine-tunes every weight on the retained people ("finetune"; full batch, so the
        # same steps as the objective over all of the first people's data)
        with wb.update("unlearn"):
            fit(base, wb.params(), xtr[retain_tr], ytr[retain_tr], ce_loss, cfg.r("unlearn_baseline"), seed,
                "faces: full-weight unlearn", after_step=wb.after_step, progress=progress)

    forgetting.honour("full-weight baseline", base, baseline_unlearn, last=True, method="finetune")
    alive = forgetting.alive  # person f's training images are gone from here on
    rows.append(accuracy_row("unlearned", "full-weight baseline", predictions(base, xte[first_te]), yte[first_te], [f],
                             retain, []))
    with wb.update("continual"):
        fit(base, wb.params(), xtr[keep_new], ytr[keep_new], ce_loss, cfg.r("continual_baseline"), seed,
            "faces: full-weight continual", after_step=wb.after_step, progress=progress)
    wb.freeze()
    rows.append(accuracy_row("continual", "full-weight baseline", predictions(base, xte[keep_new_te]),
                             yte[keep_new_te], [f], retain, [new]))

    stages = [("pretrained", [], stage_evaluator(xte[first_te], yte[first_te], [f], retain, [])),
              ("unlearned", ["unlearn"], stage_evaluator(xte[first_te], yte[first_te], [f], retain, [])),
              ("continual", hyb.active_adapters,
               stage_evaluator(xte[keep_new_te], yte[keep_new_te], [f], retain, [new]))]
    noise_rows, calib = noise_tables(cfg.noise, hyb, stages, calib_chip, xtr[first & alive], ytr[first & alive],
                                     stage_evaluator(xte[first_te], yte[first_te], [], list(range(c0)), []), ce_loss,
                                     cfg.r("calibration"), rank=8, alpha=32.0, target_modules=FACE_LORA_TARGETS,
                                     seed=seed, progress=progress)

    return scenario_report("faces", hw, seed, data.source, rows, hyb, base, xte[keep_new_te], prog, wb.deploy,
                           {"unlearn": ["unlearn"], "continual": ["learn"]}, extra={
        "config": {"composition": cfg.composition, "epoch_scale": cfg.epoch_scale, "write_every": cfg.write_every},
        "classes": {"forget": [f], "retain": retain, "new": [new]}, "forget_audit": forgetting.audit()},
        noise=noise_rows, calibration=calib)
