"""5-experience class-incremental digits stream: HybridLoRA vs the full-weight baselines on one chip.

Run: .venv/bin/python examples/continual_digits.py [--preset paper-180nm] [--epochs 15]
Data: scikit-learn's bundled digits (real). The base is pre-trained in software on
experience 0 (the "public" classes), programmed once (ADCs calibrated on the same
public data), then experiences 1-4 arrive. AVALANCHE_RM_QUICK=1 runs one epoch each.
"""
from __future__ import annotations

import argparse
import copy
import os

import torch
from avalanche.evaluation.metrics import accuracy_metrics
from avalanche.training import Naive
from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin

from avalanche_rm.benchmarks import split_digits
from avalanche_rm.evaluation import hardware_cost_metrics
from avalanche_rm.hardware import get_preset
from avalanche_rm.nn import convert_to_hybrid
from avalanche_rm.strategies import AnalogFullFinetune, HybridLoRA, RetrainAndReprogram
from avalanche_rm.training import make_mlp
from avalanche_rm.unlearning import dataset_tensors

ACC = "Top1_Acc_Stream/eval_phase/test_stream/Task000"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="paper-180nm")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if os.environ.get("AVALANCHE_RM_QUICK") == "1":
        args.epochs = 1
    torch.manual_seed(args.seed)
    bm = split_digits(5, seed=args.seed)
    hw = get_preset(args.preset)

    def evaluator():
        return EvaluationPlugin(accuracy_metrics(stream=True), *hardware_cost_metrics(), loggers=[])

    base = make_mlp()
    Naive(model=base, optimizer=torch.optim.Adam(base.parameters(), 1e-2), train_mb_size=32, train_epochs=args.epochs,
          evaluator=EvaluationPlugin(loggers=[])).train(bm.train_stream[0])
    public_x = dataset_tensors(bm.train_stream[0].dataset)[0]  # experience 0 plays the public data
    test0 = bm.test_stream[0].dataset
    probe_x = torch.stack([test0[i][0] for i in range(min(64, len(test0)))])  # inference-cost probe

    rows = []
    for name in ("Naive (plain torch, no chip)", "HybridLoRA", "AnalogFullFinetune", "RetrainAndReprogram"):
        torch.manual_seed(args.seed)
        hm = convert_to_hybrid(base, hw)
        hm.program(seed=args.seed, calibration_data=public_x)
        kw = dict(train_mb_size=32, train_epochs=args.epochs, evaluator=evaluator())
        if name.startswith("Naive"):
            m = copy.deepcopy(base)
            s = Naive(model=m, optimizer=torch.optim.Adam(m.parameters(), 1e-2), plugins=[ReplayPlugin(200)], **kw)
        elif name == "HybridLoRA":
            s = HybridLoRA(model=hm, lr=1e-2, rank=8, alpha=16, plugins=[ReplayPlugin(200)], **kw)
        elif name == "AnalogFullFinetune":
            s = AnalogFullFinetune(model=hm, lr=1e-3, plugins=[ReplayPlugin(200)], **kw)
        else:
            s = RetrainAndReprogram(model=hm, software_model=base, lr=1e-2, **kw)
        for exp in bm.train_stream[1:]:
            s.train(exp)
        acc = s.eval(bm.test_stream)[ACC]
        train = hm.ledger.summary("train") if not name.startswith("Naive") else None
        infer = hm.inference_cost(probe_x) if not name.startswith("Naive") else None
        rows.append((name, acc, train, infer))

    print(f"data: scikit-learn digits (real), preset {hw.name}, 4 learning experiences after pre-training\n")
    print(f"{'strategy':<30s} {'stream acc':>10s} {'train energy uJ':>16s} {'train latency ms':>17s} "
          f"{'train pulses':>13s} {'cells written':>14s} {'infer nJ/sample':>16s} {'infer us/sample':>16s}")
    for name, acc, t, inf in rows:
        if t is None:
            print(f"{name:<30s} {100 * acc:9.2f}% " + " ".join(f"{'-':>{w}s}" for w in (16, 17, 13, 14, 16, 16)))
        else:
            print(f"{name:<30s} {100 * acc:9.2f}% {t.energy_pj / 1e6:16.3f} {t.latency_ns / 1e6:17.3f} "
                  f"{t.pulses:13.0f} {t.cells_programmed:14.0f} {inf['energy_pj'] / 1e3:16.2f} "
                  f"{inf['latency_ns'] / 1e3:16.3f}")
    lora = rows[1][2]
    print()
    for name, _, t, _ in rows[2:]:
        print(f"training-cost ratio {name} / HybridLoRA: energy {t.energy_pj / lora.energy_pj:.2f}x, "
              f"latency {t.latency_ns / lora.latency_ns:.2f}x, pulses {t.pulses:.0f} vs {lora.pulses:.0f}")


if __name__ == "__main__":
    main()
