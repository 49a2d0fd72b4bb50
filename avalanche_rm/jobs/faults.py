"""Fault and ageing studies: accuracy vs stuck-at faults, drift time and programming noise,
with and without a digital calibration adapter, and drift compensation by LoRA vs reprogramming."""
from __future__ import annotations

import copy

import torch
from tqdm.auto import tqdm

from ..data import load_digits_split
from ..hardware import get_preset
from ..nn import convert_to_hybrid
from ..report import hardware_report, plots
from ..training import accuracy, train_classifier
from ..training import make_mlp

SAF_RATES = (0.0, 0.005, 0.01, 0.02, 0.05)
DRIFT_S = (1.0, 3600.0, 86_400.0, 30 * 86_400.0, 365 * 86_400.0)
PROG_SIGMA_US = (0.5, 1.0, 2.0, 4.0)


def _calibrate(model, data, seed: int, epochs: int) -> None:
    model.add_adapter("calib", rank=4, alpha=8.0, seed=seed, bias=True)
    params = model.adapter_parameters(["calib"])
    with model.ledger.phase("lora-calibration"):
        train_classifier(model, data.x_train, data.y_train, params, epochs=epochs, lr=5e-3, seed=seed,
                         progress=False)


def run_faults(preset: str = "paper-180nm", seed: int = 0, epochs: int = 40, calib_epochs: int = 5,
               progress: bool = True, device: str = "cpu") -> tuple[dict, dict]:
    """Returns ``(report, plots)``; data: scikit-learn digits (real). Runs on the CPU (``device`` must be it)."""
    if str(device) != "cpu":
        raise ValueError(f"the faults job runs its many small chips on the CPU; got device {device!r}")
    if epochs < 1 or calib_epochs < 1:
        raise ValueError(f"epochs and calib_epochs must be >= 1, got {epochs!r}, {calib_epochs!r}")
    hw0 = get_preset(preset)
    torch.manual_seed(seed)
    data = load_digits_split(seed=seed)
    sw = make_mlp()
    train_classifier(sw, data.x_train, data.y_train, sw.parameters(), epochs=epochs, seed=seed, progress=False)
    acc_sw = accuracy(sw, data.x_test, data.y_test)

    def condition(hw, drift_s: float = 0.0) -> dict:
        torch.manual_seed(seed)
        m = convert_to_hybrid(sw, hw)
        rep = m.program(seed=seed, calibration_data=data.x_train)
        if drift_s:
            m.drift(drift_s)
        plain = accuracy(m, data.x_test, data.y_test)
        _calibrate(m, data, seed, calib_epochs)
        return {"acc_no_adapter": plain, "acc_with_adapter": accuracy(m, data.x_test, data.y_test),
                "failed_cells": rep.failed_cells, "model": m}

    saf, drift, noise = [], [], []
    steps = [("saf", r) for r in SAF_RATES] + [("drift", t) for t in DRIFT_S] + [("noise", s) for s in PROG_SIGMA_US]
    for kind, v in tqdm(steps, desc="fault/ageing conditions", disable=not progress):
        if kind == "saf":
            c = condition(hw0.replace(device={"sa0_rate": v / 2, "sa1_rate": v / 2}))
            saf.append({"saf_rate": v, **{k: c[k] for k in ("acc_no_adapter", "acc_with_adapter", "failed_cells")}})
        elif kind == "drift":
            c = condition(hw0, v)
            drift.append({"drift_s": v, **{k: c[k] for k in ("acc_no_adapter", "acc_with_adapter")}})
        else:
            c = condition(hw0.replace(device={"prog_noise_poly_us": (v,), "wv_tolerance_us": max(1.0, v)}))
            noise.append({"prog_sigma_us": v, **{k: c[k] for k in ("acc_no_adapter", "acc_with_adapter")}})

    # drift compensation after a year: retrain the adapter digitally, or reprogram every cell
    year = DRIFT_S[-1]
    torch.manual_seed(seed)
    m = convert_to_hybrid(sw, hw0)
    m.program(seed=seed, calibration_data=data.x_train)
    m.drift(year)
    aged = accuracy(m, data.x_test, data.y_test)
    lora = copy.deepcopy(m)
    snap = lora.ledger.snapshot()
    _calibrate(lora, data, seed, calib_epochs)
    d_lora = lora.ledger.delta_since(snap).get("lora-calibration", {})
    rep = copy.deepcopy(m)
    snap = rep.ledger.snapshot()
    with rep.ledger.phase("reprogram"), torch.no_grad():
        for layer in rep.hybrid_layers():
            layer.reprogram_weight(layer.target_weight())
    d_rep = rep.ledger.delta_since(snap).get("reprogram", {})
    comp = [{"method": "none (aged 1 year)", "accuracy": aged, "energy_pj": 0.0, "pulses": 0.0, "latency_ns": 0.0},
            {"method": "LoRA drift compensation (digital)", "accuracy": accuracy(lora, data.x_test, data.y_test),
             "energy_pj": d_lora.get("energy_pj", 0.0), "pulses": d_lora.get("pulses", 0.0),
             "latency_ns": d_lora.get("latency_ns", 0.0)},
            {"method": "reprogram every cell", "accuracy": accuracy(rep, data.x_test, data.y_test),
             "energy_pj": d_rep.get("energy_pj", 0.0), "pulses": d_rep.get("pulses", 0.0),
             "latency_ns": d_rep.get("latency_ns", 0.0)}]
    # what each compensation costs afterwards, at every inference: per sample
    for row, chip in zip(comp, (m, lora, rep)):
        inf = chip.inference_cost(data.x_test)
        row["infer_energy_pj_per_sample"], row["infer_latency_ns_per_sample"] = inf["energy_pj"], inf["latency_ns"]
    report = hardware_report("faults", hw0, seed=seed, data=data.source, software_accuracy=acc_sw,
                             tables={"stuck-at faults": saf, "drift": drift, "programming noise": noise,
                                     "drift compensation after 1 year": comp})

    def series(rows, key):
        return {"no adapter": [r["acc_no_adapter"] for r in rows], "with adapter": [r["acc_with_adapter"] for r in rows]}

    figs = {"accuracy_vs_saf": plots.accuracy_per_experience(series(saf, "saf_rate"),
                                                             f"accuracy vs stuck-at rate {list(SAF_RATES)}"),
            "accuracy_vs_drift": plots.accuracy_per_experience(series(drift, "drift_s"),
                                                               "accuracy vs drift time (1 s, 1 h, 1 d, 30 d, 1 y)"),
            "accuracy_vs_prog_noise": plots.accuracy_per_experience(series(noise, "prog_sigma_us"),
                                                                    f"accuracy vs programming sigma {list(PROG_SIGMA_US)} uS")}
    return report, figs
