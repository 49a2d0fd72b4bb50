"""The basic main job: software MLP -> programmed hybrid chip -> LoRA calibration -> ageing."""
from __future__ import annotations

import time

import torch

from ..data import load_digits_split
from ..hardware import get_preset
from ..nn import convert_to_hybrid
from ..report import make_report, plots
from ..training import accuracy, make_mlp, train_classifier
from ..validation import check_int

DAY_S = 86_400.0
YEAR_S = 365.0 * DAY_S



def run_basic_job(preset: str = "paper-180nm", seed: int = 0, epochs: int = 40, adapter_epochs: int = 15,
                  rank: int = 4, alpha: float = 8.0, device: str = "cpu", progress: bool = True) -> dict:
    """Train on digits, deploy on ``preset``, calibrate with one LoRA adapter, age the chip.

    Returns accuracies (software / programmed / + adapter / after drift) and the cost ledger.
    """
    check_int(epochs, "epochs", 1)
    check_int(adapter_epochs, "adapter_epochs", 0)
    hw = get_preset(preset)
    dev = torch.device(device)
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    data = load_digits_split(seed=seed)
    xtr, ytr, xte, yte = data.x_train.to(dev), data.y_train.to(dev), data.x_test.to(dev), data.y_test.to(dev)
    software = make_mlp().to(dev)
    train_classifier(software, xtr, ytr, software.parameters(), epochs=epochs, lr=1e-2, seed=seed,
                     desc="pretrain (software)", progress=progress)
    acc = {"software": accuracy(software, xte, yte)}

    model = convert_to_hybrid(software, hw).to(dev)
    report = model.program(seed=seed, calibration_data=xtr)  # ADC ranges from the data the base was trained on
    acc["programmed"] = accuracy(model, xte, yte)

    model.add_adapter("calib", rank=rank, alpha=alpha, seed=seed)
    opt_params = model.adapter_parameters(["calib"])
    train_classifier(model, xtr, ytr, opt_params, epochs=adapter_epochs, lr=5e-3, seed=seed,
                     desc="LoRA calibration", progress=progress)
    acc["programmed+adapter"] = accuracy(model, xte, yte)

    for label, seconds in (("1 day", DAY_S), ("1 year", YEAR_S)):
        model.drift(seconds - float(model.hybrid_layers()[0].array.age_s))
        model.set_active_adapters([])
        acc[f"drift {label}"] = accuracy(model, xte, yte)
        model.set_active_adapters(["calib"])
        acc[f"drift {label}+adapter"] = accuracy(model, xte, yte)

    with_adapter = model.inference_cost(xte)
    model.set_active_adapters([])
    chip_only = model.inference_cost(xte)
    model.set_active_adapters(["calib"])
    return {
        "job": "basic",
        "inference_per_sample": [{"model": "chip + calibration adapter", "energy_pj": with_adapter["energy_pj"],
                                  "latency_ns": with_adapter["latency_ns"]},
                                 {"model": "chip alone", "energy_pj": chip_only["energy_pj"],
                                  "latency_ns": chip_only["latency_ns"]}],
        "data": data.source,
        "preset": hw.name,
        "preset_source": hw.source,
        "seed": seed,
        "accuracy": acc,
        "programming": report.as_dict(),
        "adapter_params": model.adapter_num_parameters(),
        "analog_cells": model.cells,
        "ledger": model.ledger.by_phase(),
        "ledger_table": model.ledger.table(),
        "wall_s": time.perf_counter() - t0,
    }


def format_basic_report(rep: dict) -> str:
    lines = [f"data: {rep['data']}", f"preset: {rep['preset']}  seed: {rep['seed']}", "", "accuracy (test)"]
    for k, v in rep["accuracy"].items():
        lines.append(f"  {k:<24s} {100 * v:6.2f} %")
    p = rep["programming"]
    lines += ["", f"programming: {p['cells']} cells, {p['pulses']} pulses ({p['pulses_per_cell']:.2f}/cell), "
                  f"{p['failed_cells']} failed, {p['energy_pj'] / 1e6:.3f} uJ, {p['latency_ns'] / 1e3:.1f} us",
              f"adapter: {rep['adapter_params']} parameters in SRAM vs {rep['analog_cells']} analogue cells",
              "", "inference per sample (one eval pass over the test set, per sample)"]
    for r in rep["inference_per_sample"]:
        lines.append(f"  {r['model']:<28s} {r['energy_pj'] / 1e3:8.2f} nJ  {r['latency_ns'] / 1e3:8.3f} us")
    lines += ["", "cost ledger", rep["ledger_table"]]
    return "\n".join(lines)


def basic_report(rep: dict, seed: int) -> dict:
    """The standard report of :func:`run_basic_job`'s result."""
    return make_report("basic", preset=rep["preset"], preset_source=rep["preset_source"], seed=seed, data=rep["data"],
                       tables={"accuracy": [{"stage": k, "accuracy": v} for k, v in rep["accuracy"].items()],
                               "ledger": [{"phase": p, **v} for p, v in rep["ledger"].items()],
                               "inference per sample": rep["inference_per_sample"]},
                       programming=rep["programming"])


def basic_plots(rep: dict) -> dict:
    """Accuracy per stage, energy per phase and the deployment's pulses per cell."""
    return {"accuracy_per_stage": plots.grouped_bars({k: {"accuracy": 100 * v} for k, v in rep["accuracy"].items()},
                                                     "test accuracy (%)", "accuracy per stage"),
            "energy_by_phase": plots.energy_by_phase({"hybrid chip": {p: v.get("energy_pj", 0.0)
                                                                      for p, v in rep["ledger"].items()}}),
            "programming_pulses": plots.histogram(rep["programming"]["pulse_histogram"], "write pulses per cell",
                                                  "deployment: pulses per cell", counts=True)}
