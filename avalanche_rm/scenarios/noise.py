"""Write-noise studies as in the reference (``rram_eval_basic_*``), and the LoRA calibration adapter.

The reference deploys each weight tensor on one cell per weight (20-80 uS,
zero at 50 uS, one scale per tensor), adds Gaussian write noise of sigma
1..10 uS once, clamps to the window, and reports mean/min/max/std accuracy
over 100 draws. :func:`write_noise_sweep` does this on a programmed
:class:`HybridModel` (any preset; the ``paper-180nm`` preset has exactly that
mapping) and restores the chip afterwards. :func:`calibrate` trains a LoRA
branch on clean labels over the noisy frozen base (the reference's
``train_restore_lora.py``): accuracy comes back without reprogramming a cell.
"""
from __future__ import annotations

import contextlib
import statistics
from typing import Callable, Iterable, Iterator

import torch
from tqdm.auto import tqdm

from ..nn.model import HybridModel
from ..training import LossFn, predictions
from .common import NoiseStudy, Recipe, fit, group_accuracy
from ..validation import check_int

Evaluate = Callable[[HybridModel], dict[str, float]]


@contextlib.contextmanager
def study_state(model: HybridModel) -> Iterator[None]:
    """Run a what-if on the chip: conductances, read-noise switch and ledger are restored on exit."""
    saved = model.conductance_state()
    noise = [layer.analog_noise for layer in model.hybrid_layers()]
    try:
        with model.ledger.paused():
            yield
    finally:
        model.load_conductance_state(saved)
        for layer, on in zip(model.hybrid_layers(), noise):
            layer.analog_noise = on


def write_noise_sweep(model: HybridModel, evaluate: Evaluate, sigmas_us: Iterable[float] = range(1, 11),
                      runs: int = 100, seed: int = 0, read_noise: bool = False, label: str = "",
                      progress: bool = True) -> list[dict]:
    """Monte-Carlo accuracy under one-shot write noise; one row per (sigma, metric).

    ``evaluate(model)`` returns named accuracies in [0, 1] (e.g. overall, forget,
    retain). Draw ``r`` at ``sigma`` uses seed ``seed + r`` for every sigma, so
    sigmas are compared on the same underlying normal draws. Read noise is off
    by default, as in the reference. The chip is left exactly as it was.
    """
    sigmas = [float(s) for s in sigmas_us]
    if not sigmas or any(not (s >= 0 and s < float("inf")) for s in sigmas):
        raise ValueError(f"sigmas_us must be finite numbers >= 0, got {sigmas}")
    check_int(runs, "runs", 1)
    rows = []
    with study_state(model):
        model.set_analog_noise(read_noise)
        clean = evaluate(model)
        for sigma in tqdm(sigmas, desc=f"write-noise sweep {label}".strip(), disable=not progress, leave=False):
            draws: dict[str, list[float]] = {k: [] for k in clean}
            for r in range(runs):
                model.apply_write_noise(sigma, seed + r)
                for k, v in evaluate(model).items():
                    draws[k].append(v)
            for k, vals in draws.items():
                rows.append({"model": label, "sigma_us": sigma, "metric": k, "runs": runs,
                             "mean_pct": 100 * statistics.fmean(vals), "min_pct": 100 * min(vals),
                             "max_pct": 100 * max(vals),
                             "std_pct": 100 * (statistics.pstdev(vals) if len(vals) > 1 else 0.0),
                             "delta_vs_programmed_pct": 100 * (statistics.fmean(vals) - clean[k])})
    return rows


def calibrate(model: HybridModel, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn, recipe: Recipe,
              name: str = "calibration", rank: int = 8, alpha: float = 16.0,
              target_modules: Iterable[str] | None = None, seed: int = 0, progress: bool = True) -> str:
    """Train LoRA branch ``name`` on clean data over the (noisy) frozen base; other adapters stay frozen.

    Charged to ledger phase ``calibrate``. Returns the adapter name; it is left active.
    """
    frozen = {id(p): p.requires_grad for p in model.adapter_parameters()}
    for p in model.adapter_parameters():
        p.requires_grad_(False)
    model.add_adapter(name, rank=rank, alpha=alpha, target_modules=target_modules, seed=seed)
    try:
        with model.ledger.phase("calibrate"):
            fit(model, model.adapter_parameters([name]), x, y, loss_fn, recipe, seed, f"calibrate {name}",
                progress=progress)
    finally:
        for p in model.adapter_parameters():
            if id(p) in frozen:
                p.requires_grad_(frozen[id(p)])
    return name


def stage_evaluator(x: torch.Tensor, y: torch.Tensor, forget: list[int], retain: list[int], new: list[int],
                    n_classes: int | None = None) -> Evaluate:
    """Accuracies (overall / forget / retain / new) on ``x``, logits limited to the first ``n_classes``."""

    def evaluate(model: HybridModel) -> dict[str, float]:
        pred = predictions(model, x, n_classes=n_classes)
        out = {"overall": group_accuracy(pred, y, torch.unique(y).tolist())}
        for key, cls in (("forget", forget), ("retain", retain), ("new", new)):
            if cls:
                out[key] = group_accuracy(pred, y, cls)
        return out

    return evaluate


def sweep_stages(model: HybridModel, stages: list[tuple[str, list[str], Evaluate]], sigmas_us: Iterable[float],
                 runs: int, seed: int = 0, progress: bool = True) -> list[dict]:
    """:func:`write_noise_sweep` for each ``(label, active adapters, evaluate)`` stage of one chip."""
    active = model.active_adapters
    rows: list[dict] = []
    try:
        for label, adapters, evaluate in stages:
            model.set_active_adapters(adapters)
            rows += write_noise_sweep(model, evaluate, sigmas_us, runs, seed, label=label, progress=progress)
    finally:
        model.set_active_adapters(active)
    return rows


def calibration_study(chip: HybridModel, sigma_us: float, x_train: torch.Tensor, y_train: torch.Tensor,
                      evaluate: Evaluate, loss_fn: LossFn, recipe: Recipe, rank: int = 8, alpha: float = 16.0,
                      target_modules: Iterable[str] | None = None, seed: int = 0, progress: bool = True) -> dict:
    """Write noise of ``sigma_us`` on a programmed chip without adapters, then a calibration adapter.

    Returns accuracies as programmed, with noise, and calibrated, and the share of
    the loss the adapter recovered. ``chip`` is modified (noise + adapter).
    """
    if chip.adapter_names:
        raise ValueError(f"calibration starts from a chip without adapters; it has {chip.adapter_names}")
    with chip.ledger.paused():
        clean = evaluate(chip)["overall"]
        chip.apply_write_noise(sigma_us, seed)
        noisy = evaluate(chip)["overall"]
    calibrate(chip, x_train, y_train, loss_fn, recipe, rank=rank, alpha=alpha, target_modules=target_modules,
              seed=seed, progress=progress)
    with chip.ledger.paused():
        fixed = evaluate(chip)["overall"]
    lost = clean - noisy
    bill = chip.ledger.by_phase().get("calibrate", {})
    return {"sigma_us": sigma_us, "programmed_pct": 100 * clean, "with_write_noise_pct": 100 * noisy,
            "calibrated_pct": 100 * fixed, "recovered_share": (fixed - noisy) / lost if lost > 0 else float("nan"),
            "adapter_params": chip.adapter_num_parameters("calibration"),
            "calibration_energy_uJ": bill.get("energy_pj", 0.0) / 1e6, "write_pulses": bill.get("pulses", 0.0)}


def noise_tables(study: NoiseStudy, chip: HybridModel, stages: list[tuple[str, list[str], Evaluate]],
                 calib_chip: HybridModel, x_train: torch.Tensor, y_train: torch.Tensor, calib_evaluate: Evaluate,
                 loss_fn: LossFn, recipe: Recipe, rank: int, alpha: float, target_modules: Iterable[str],
                 seed: int = 0, progress: bool = True) -> tuple[list[dict], list[dict]]:
    """A scenario's two noise tables: the sweep over ``stages`` of ``chip`` and one calibration study.

    ``study.calibration`` overrides the scenario's calibration ``recipe``; both
    tables are empty when ``study.runs`` is 0.
    """
    if not study.runs:
        return [], []
    rows = sweep_stages(chip, stages, study.sigmas_us, study.runs, seed, progress)
    calib = calibration_study(calib_chip, study.calibration_sigma_us, x_train, y_train, calib_evaluate, loss_fn,
                              study.calibration or recipe, rank=rank, alpha=alpha, target_modules=target_modules,
                              seed=seed, progress=progress)
    return rows, [calib]
