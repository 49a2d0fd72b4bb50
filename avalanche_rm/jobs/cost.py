"""Price a model on a preset: programming once, training per sample (adapter vs full weight), inference per sample."""
from __future__ import annotations

import importlib

import torch
from torch import nn

from ..hardware import get_preset
from ..report import hardware_report, plots
from ..nn import convert_to_hybrid, dense_reference
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


def run_cost(model: str = "mlp", preset: str = "paper-180nm", seed: int = 0, batch: int = 32, rank: int = 4,
             device: str = "cpu") -> dict:
    """Per-operation bill of ``model`` on ``preset`` (random inputs in [0, 1]; costs scale with activity).

    Every row is priced by :mod:`avalanche_rm.costs.pricing`; the all-digital row is the one reference
    (:func:`avalanche_rm.nn.dense_reference`): the same network in the digital unit, same rules.
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
    rows = [{"operation": "program every cell once", "per": "chip", "energy_pj": prog.energy_pj,
             "latency_ns": prog.latency_ns, "pulses": prog.pulses, "cells": prog.cells}]

    def measure(label: str, fn, per: str = "sample") -> dict:
        snap = hyb.ledger.snapshot()
        fn()
        tot = hyb.ledger.total_since(snap)
        k = batch if per == "sample" else 1
        row = {"operation": label, "per": per, "energy_pj": tot.get("energy_pj", 0.0) / k,
               "latency_ns": tot.get("latency_ns", 0.0) / k, "pulses": tot.get("pulses", 0.0) / k,
               "cells": tot.get("cells_programmed", 0.0) / k}
        rows.append(row)
        return row

    measure("calibrate the ADCs (these inputs)", lambda: hyb.calibrate_adc(x), per="chip")
    hyb.eval()

    def infer():
        with torch.no_grad():
            hyb(x)

    measure("inference (analogue base)", infer)
    hyb.add_adapter("a", rank=rank, alpha=2.0 * rank, seed=seed)
    with torch.no_grad():  # a trained adapter: every LoRA MAC is real work
        for p in hyb.adapter_parameters(["a"]):
            p.normal_(0, 0.01, generator=torch.Generator().manual_seed(seed))
    measure("inference (base + LoRA)", infer)
    ref = dense_reference(hyb, x)
    rows.append({"operation": "inference, the same network in the digital unit (all-digital reference)",
                 "per": "sample", "energy_pj": ref.get("energy_pj", 0.0), "latency_ns": ref.get("latency_ns", 0.0),
                 "pulses": 0.0, "cells": 0.0})

    hyb.train()
    opt = torch.optim.Adam(hyb.adapter_parameters(), lr=1e-2)
    hyb.attach_optimizer(opt)

    def lora_step():
        opt.zero_grad()
        nn.functional.cross_entropy(hyb(x).flatten(1)[:, :10], y).backward()
        opt.step()

    measure("training step, LoRA only (hybrid)", lora_step)
    hyb.delete_adapter("a")
    shadows = [layer.enable_weight_training() for layer in hyb.hybrid_layers()]
    opt2 = torch.optim.Adam(shadows, lr=1e-2)
    hyb.attach_optimizer(opt2)

    def full_step():
        opt2.zero_grad()
        nn.functional.cross_entropy(hyb(x).flatten(1)[:, :10], y).backward()
        opt2.step()
        hyb.write_back_shadows()

    measure("training step, all weights + write-back", full_step)
    foot = hyb.sram_footprint()
    return hardware_report("cost", hw, seed=seed,
                           data=f"random inputs in [0, 1], shape {tuple(shape)}, batch {batch} (a stand-in: costs "
                                "depend on activity)",
                           model=model, cells=hyb.cells, tables={"cost per operation": rows},
                           **{"sram_footprint_B (full-weight training)": foot})


def cost_plots(rep: dict) -> dict:
    """Energy per operation (log scale)."""
    ops = {r["operation"]: {"energy": r["energy_pj"] / 1e3} for r in rep["tables"]["cost per operation"]}
    return {"energy_per_operation": plots.grouped_bars(ops, "energy (nJ)", "energy per operation", log=True)}
