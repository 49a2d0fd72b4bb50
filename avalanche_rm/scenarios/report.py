"""The standard report of a scenario: accuracy per stage, the bill per phase, and the reference's three ratios."""
from __future__ import annotations

from ..costs import pricing
from ..hardware.config import HardwareConfig
from ..hardware.programming import ProgrammingReport
from ..nn.model import HybridModel
from ..report import hardware_report
from .common import dense_digital_energy_pj, inference_energy_pj, phase_bill, program_jobs

UPDATE_PHASES = ("unlearn", "continual")

RATIO_DEFINITIONS = {
    "training": "full-weight / hybrid compute energy of the unlearning + continual updates "
                "(forward, backward, optimiser; programming excluded)",
    "update incl. write-back": "the same, with the baseline's write-verify write-backs added",
    "deployment": "energy to deploy each update's result: baseline = one write-verify job taking the array "
                  "from its pre-update state to the updated weights; hybrid = writing the new adapter where the "
                  "chip keeps its weights (local buffers, SRAM, or DRAM beyond)",
    "inference vs dense digital": "per-sample energy of the same network run densely in the digital unit "
                                  "(the reference code's count_gpu_operations; its SRAM sized for its own working "
                                  "set) / hybrid chip (analogue base, event-driven rows, plus digital LoRA)",
    "inference vs full-weight chip": "per-sample energy, full-weight baseline chip / hybrid chip",
    "trainable parameters": "weights the baseline updates / adapter parameters the hybrid trains",
}


def _safe_ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("inf") if a > 0 else float("nan")


def cost_rows(hyb: HybridModel, base: HybridModel) -> list[dict]:
    rows = []
    for method, model in (("hybrid LoRA", hyb), ("full-weight baseline", base)):
        for ph in UPDATE_PHASES:
            b = phase_bill(model, ph)
            rows.append({"method": method, "phase": ph, "compute_energy_uJ": b["compute_energy_pj"] / 1e6,
                         "program_energy_uJ": b["program_energy_pj"] / 1e6, "pulses": b["pulses"],
                         "cells_programmed": b["cells_programmed"], "sram_write_kB": b["sram_write_bytes"] / 1e3,
                         "steps": b["steps"]})
    return rows


def ratio_rows(hyb: HybridModel, base: HybridModel, x_infer, trainable_hybrid: int, trainable_base: int,
               deploy: dict[str, ProgrammingReport], adapters: dict[str, list[str]]) -> list[dict]:
    hb = [phase_bill(hyb, p) for p in UPDATE_PHASES]
    bb = [phase_bill(base, p) for p in UPDATE_PHASES]

    def tot(bills, k):
        return sum(b[k] for b in bills)

    written = sum(hyb.adapter_bytes(names) for names in adapters.values())
    # the adapters go where the chip keeps the weights its passes read (the same bill as avalanche-rm paper's)
    sram_pj = hyb.meter.quote(pricing.adapter_deployment(written))["energy_pj"]
    dep_pj = sum(r.energy_pj for r in deploy.values())
    dep_pulses = sum(r.pulses for r in deploy.values())
    e_h = inference_energy_pj(hyb, x_infer)
    e_b = inference_energy_pj(base, x_infer)
    e_d = dense_digital_energy_pj(hyb, x_infer)
    vals = {
        "training": _safe_ratio(tot(bb, "compute_energy_pj"), tot(hb, "compute_energy_pj")),
        "update incl. write-back": _safe_ratio(tot(bb, "compute_energy_pj") + tot(bb, "program_energy_pj"),
                                               tot(hb, "compute_energy_pj") + tot(hb, "program_energy_pj")),
        "deployment": _safe_ratio(dep_pj, sram_pj),
        "inference vs dense digital": _safe_ratio(e_d, e_h),
        "inference vs full-weight chip": _safe_ratio(e_b, e_h),
        "trainable parameters": _safe_ratio(trainable_base, trainable_hybrid),
    }
    detail = {
        "training": f"{tot(bb, 'compute_energy_pj') / 1e6:.4g} uJ vs {tot(hb, 'compute_energy_pj') / 1e6:.4g} uJ",
        "update incl. write-back": f"{(tot(bb, 'compute_energy_pj') + tot(bb, 'program_energy_pj')) / 1e6:.4g} uJ "
                                   f"vs {(tot(hb, 'compute_energy_pj') + tot(hb, 'program_energy_pj')) / 1e6:.4g} uJ",
        "deployment": f"{dep_pj / 1e6:.4g} uJ ({dep_pulses:.0f} pulses, "
                      f"{sum(r.latency_ns for r in deploy.values()) / 1e3:.4g} us) vs {sram_pj / 1e6:.4g} uJ adapter "
                      f"write",
        "inference vs dense digital": f"{e_d / 1e3:.4g} nJ vs {e_h / 1e3:.4g} nJ per sample",
        "inference vs full-weight chip": f"{e_b / 1e3:.4g} nJ vs {e_h / 1e3:.4g} nJ per sample",
        "trainable parameters": f"{trainable_base} vs {trainable_hybrid}",
    }
    return [{"ratio": k, "value": vals[k], "numbers": detail[k], "definition": RATIO_DEFINITIONS[k]} for k in vals]


def scenario_report(name: str, hw: HardwareConfig, seed: int, source: str, accuracy: list[dict], hyb: HybridModel,
                    base: HybridModel, x_infer, prog: ProgrammingReport, deploy: dict[str, ProgrammingReport],
                    adapters: dict[str, list[str]], extra: dict | None = None,
                    trainable_base: int | None = None, noise: list[dict] | None = None,
                    calibration: list[dict] | None = None) -> dict:
    """Assemble the standard report (``avalanche_rm/report/schema.py``) of a scenario run."""
    trainable_h = sum(hyb.adapter_num_parameters(n) for n in hyb.adapter_names)
    if trainable_base is None:
        trainable_base = sum(layer.out_features * layer.in_flat for layer in base.hybrid_layers())
    jobs = {"hybrid LoRA": program_jobs(hyb), "full-weight baseline": program_jobs(base)}
    report = hardware_report(
        f"scenario {name}", hw, seed=seed, data=source, program_jobs=jobs,
        deploy={"cells": prog.cells, "pulses": prog.pulses, "energy_pj": prog.energy_pj,
                "failed_cells": prog.failed_cells, "pulse_histogram": prog.pulse_histogram},
        tables={"accuracy": accuracy, "cost per update phase": cost_rows(hyb, base),
                "ratios (full-weight baseline / hybrid)": ratio_rows(hyb, base, x_infer, trainable_h,
                                                                     trainable_base, deploy, adapters),
                "array programming jobs": [{"method": k, "jobs": v} for k, v in jobs.items()]})
    if noise:
        report["tables"]["write-noise sweep"] = noise
    if calibration:
        report["tables"]["calibration adapter"] = calibration
    report.update(extra or {})
    return report


def scenario_plots(report: dict) -> dict:
    """Plot callables for :func:`avalanche_rm.report.write_report`."""
    from ..report.plots import energy_by_phase, grouped_bars, histogram

    acc = {f"{r['stage']}\n{r['method']}": {k.replace("_pct", ""): r[k] for k in ("forget_pct", "retain_pct", "new_pct")}
           for r in report["tables"]["accuracy"]}
    costs: dict[str, dict[str, float]] = {}
    for r in report["tables"]["cost per update phase"]:
        c = costs.setdefault(r["method"], {})
        c[f"{r['phase']} compute"] = r["compute_energy_uJ"] * 1e6
        c[f"{r['phase']} write-verify"] = r["program_energy_uJ"] * 1e6
    return {"accuracy_per_stage": grouped_bars(acc, "accuracy (%)", "forget / retain / new accuracy per stage"),
            "energy_per_phase": energy_by_phase(costs, "energy of the updates (uJ)"),
            "programming_pulses": histogram(report["deploy"]["pulse_histogram"], "write pulses per cell",
                                            "deployment: pulses per cell", counts=True)}
