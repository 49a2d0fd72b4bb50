"""Price a model on a preset: programming once, training per sample (adapter vs full weight), inference per sample."""
from __future__ import annotations

import importlib

import torch
from torch import nn

from ..costs import pricing
from ..costs.sensitivity import ASSUMPTIONS, Recording, assumption_rows, reprice, sensitivity_rows
from ..hardware import get_preset
from ..nn import convert_to_hybrid, reference_model
from ..report import hardware_report, plots
from ..training import make_mlp


def named_model(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    """A named architecture, or ``package.module:factory`` returning ``(module, input_shape)`` or a module."""
    if name == "mlp":
        return make_mlp(), (64,)
    if name == "mlp512":
        return nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)), (512,)
    if name == "cnn":
        return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                             nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 8 * 8, 10)), (3, 32, 32)
    if ":" in name:
        mod, _, attr = name.partition(":")
        try:
            obj = getattr(importlib.import_module(mod), attr)()
        except (ImportError, AttributeError) as e:
            raise ValueError(f"cannot load model {name!r}: {e}") from e
        if isinstance(obj, tuple):
            return obj
        raise ValueError(f"{name!r} must return (module, input_shape) so the model can be priced")
    raise ValueError(f"unknown model {name!r}; use mlp, mlp512, cnn or package.module:factory")


def macro_check(preset: str = "paper-180nm", seed: int = 0, vectors: int = 64) -> list[dict]:
    """Energy per MAC and TOPS/W of one full analogue tile (``rows`` x ``cols``) read with inputs uniform in
    [0, 1] on a programmed random layer, as the simulator prices it: the array with its DACs and ADCs (what
    macro papers report), and with the digital periphery (DAC coding, partial sums, requantisation, activation
    buffer)."""
    hw = get_preset(preset)
    torch.manual_seed(seed)
    rows, cols = hw.crossbar.rows, hw.crossbar.weights_per_tile_col
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(vectors, rows, generator=gen)
    chip = convert_to_hybrid(nn.Linear(rows, cols, bias=False), hw)
    chip.program(seed=seed, calibration_data=x)
    c = chip.inference_cost(x)
    macs = rows * cols
    macro = c.get("energy_analog_pj", 0.0) + c.get("energy_dac_pj", 0.0) + c.get("energy_adc_pj", 0.0)
    out = []
    for scope, e in ((f"{rows}x{cols} tile: array + DACs + ADCs", macro),
                     ("the same with the digital periphery (coding, partial sums, requantisation, buffers)",
                      c.get("energy_pj", 0.0))):
        out.append({"scope": scope, "energy per vector nJ": e / 1e3, "pJ per MAC": e / macs,
                    "TOPS/W (2 ops per MAC)": 2 * macs / e if e > 0 else float("nan"),
                    "cells nJ": c.get("energy_analog_pj", 0.0) / 1e3, "DACs nJ": c.get("energy_dac_pj", 0.0) / 1e3,
                    "ADCs nJ": c.get("energy_adc_pj", 0.0) / 1e3, "latency ns": c.get("latency_ns", 0.0)})
    return out


def run_cost(model: str = "mlp", preset: str = "paper-180nm", seed: int = 0, batch: int = 32, rank: int = 4,
             device: str = "cpu") -> dict:
    """Per-operation bill of ``model`` on ``preset`` (random inputs in [0, 1]; costs scale with activity).

    Every row is priced by the chip's meter (:mod:`avalanche_rm.costs`); the all-digital row is the one
    reference (:func:`avalanche_rm.nn.dense_reference`): the same network in the digital unit, same rules, its
    SRAM sized for its own working set. Three ratios (training step, deployment, inference) are re-priced under
    every documented assumption (:mod:`avalanche_rm.costs.sensitivity`).
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch!r}")
    hw = get_preset(preset)
    torch.manual_seed(seed)
    module, shape = named_model(model)
    hyb = convert_to_hybrid(module, hw).to(device)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, *shape, generator=gen).to(device)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)
    # ADC ranges calibrated on a separate batch of the same input distribution
    prog = hyb.program(seed=seed, calibration_data=torch.rand(min(batch, 64), *shape, generator=gen).to(device))
    deploy = hyb.ledger.by_phase()["deploy"]  # write-verify of every cell and its levels arriving
    rows = [{"operation": "program every cell once", "per": "chip", "energy_pj": deploy["energy_pj"],
             "latency_ns": prog.latency_ns, "pulses": prog.pulses, "cells": prog.cells}]
    rec: dict[str, Recording] = {"program": Recording.of(hyb, deploy)}

    def measure(label: str, fn, per: str = "sample", key: str | None = None, model_=None) -> dict:
        m = model_ if model_ is not None else hyb
        snap = m.ledger.snapshot()
        fn()
        tot = m.ledger.total_since(snap)
        k = batch if per == "sample" else 1
        row = {"operation": label, "per": per, "energy_pj": tot.get("energy_pj", 0.0) / k,
               "latency_ns": tot.get("latency_ns", 0.0) / k, "pulses": tot.get("pulses", 0.0) / k,
               "cells": tot.get("cells_programmed", 0.0) / k}
        rows.append(row)
        if key is not None:
            rec[key] = Recording.of(m, {n: v / k for n, v in tot.items()})
        return row

    measure("calibrate the ADCs (these inputs)", lambda: hyb.calibrate_adc(x), per="chip")
    hyb.eval()

    def infer():
        with torch.no_grad():
            hyb(x)

    measure("inference (analogue base)", infer, key="infer_chip")
    hyb.add_adapter("a", rank=rank, alpha=2.0 * rank, seed=seed)
    with torch.no_grad():  # a trained adapter: every LoRA MAC is real work
        for p in hyb.adapter_parameters(["a"]):
            p.normal_(0, 0.01, generator=torch.Generator().manual_seed(seed))
    measure("inference (base + LoRA)", infer, key="infer_hybrid")
    rec["adapter_write"] = Recording.of(hyb, pricing.adapter_deployment(hyb.adapter_bytes(["a"])).counts)
    ref = reference_model(hyb, x)

    def infer_ref():
        with torch.no_grad():
            ref.eval()
            ref(x)

    measure("inference, the same network in the digital unit (all-digital reference, SRAM sized for its "
            "working set)", infer_ref, key="infer_reference", model_=ref)
    rec["infer_reference"].design = "reference"
    rows[-1]["energy_pj (reference at the chip's SRAM)"] = reprice(rec["infer_reference"], _CHIP_BUFFER, hw)

    hyb.train()
    opt = torch.optim.Adam(hyb.adapter_parameters(), lr=1e-2)
    hyb.attach_optimizer(opt)

    def lora_step():
        opt.zero_grad()
        nn.functional.cross_entropy(hyb(x).flatten(1)[:, :10], y).backward()
        opt.step()

    measure("training step, LoRA only (hybrid)", lora_step, key="train_hybrid")
    hyb.delete_adapter("a")
    shadows = [layer.enable_weight_training() for layer in hyb.hybrid_layers()]
    opt2 = torch.optim.Adam(shadows, lr=1e-2)
    hyb.attach_optimizer(opt2)

    def full_step():
        opt2.zero_grad()
        nn.functional.cross_entropy(hyb(x).flatten(1)[:, :10], y).backward()
        opt2.step()
        hyb.write_back_shadows()

    measure("training step, all weights + write-back", full_step, key="train_full")
    foot = hyb.sram_footprint()

    def ratios(s):
        e = {k: reprice(r, s, hw) for k, r in rec.items()}
        return {"training": e["train_full"] / e["train_hybrid"],
                "deployment": e["program"] / e["adapter_write"],
                "inference": e["infer_reference"] / e["infer_hybrid"]}

    sens = sensitivity_rows({k: (lambda k: lambda s: ratios(s)[k])(k) for k in ("training", "deployment",
                                                                                 "inference")})
    return hardware_report("cost", hw, seed=seed,
                           data=f"random inputs in [0, 1], shape {tuple(shape)}, batch {batch} (a stand-in: costs "
                                "depend on activity)",
                           model=model, cells=hyb.cells,
                           tables={"cost per operation": rows, "sensitivity": sens, "assumptions": assumption_rows(),
                                   "analogue macro check (128x128 tile)": macro_check(preset, seed)},
                           ratio_definitions={
                               "training": "one training step per sample, all weights with write-back / LoRA only",
                               "deployment": "programming every cell once / writing the adapter",
                               "inference": "all-digital reference (SRAM sized for its working set) / base + LoRA"},
                           **{"sram_footprint_B (full-weight training)": foot})


#: the reference given the hybrid chip's buffer
_CHIP_BUFFER = next(s for a in ASSUMPTIONS for s in a.settings if s.label == "the hybrid chip's buffer")


def format_cost(rep: dict) -> str:
    """What ``avalanche-rm cost`` prints."""
    from ..report import markdown_table

    t = rep["tables"]
    lines = [markdown_table(t["cost per operation"]),
             "ratios (" + "; ".join(f"{k} = {v}" for k, v in rep["ratio_definitions"].items()) + ") at each "
             "assumption's documented low and high (re-priced from the same runs; ranges in report.json "
             "'assumptions'):", "", markdown_table(t["sensitivity"]),
             "analogue macro check (compare with published RRAM macros in the README):", "",
             markdown_table(t["analogue macro check (128x128 tile)"])]
    return "\n".join(lines)


def cost_plots(rep: dict) -> dict:
    """Energy per operation (log scale)."""
    ops = {r["operation"]: {"energy": r["energy_pj"] / 1e3} for r in rep["tables"]["cost per operation"]}
    return {"energy_per_operation": plots.grouped_bars(ops, "energy (nJ)", "energy per operation", log=True)}
