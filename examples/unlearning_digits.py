"""Forget requests on a hybrid chip: every strategy, two requests, one table.

Run: .venv/bin/python examples/unlearning_digits.py [--preset paper-180nm] [--seed 0]
Data: scikit-learn's bundled digits (real). Classes 0-4 of a public 30 % are
pre-trained into the analogue base; the rest (all ten classes, five owners) is
private and learned by each strategy. Then (a) the controller asks to forget
class 7, and (b) owner 2 asks to forget 5 % of its samples.
"""
from __future__ import annotations

import argparse
import copy

import torch
from avalanche.training.plugins import EvaluationPlugin

from avalanche_rm.benchmarks import ForgetRequest, public_private_digits
from avalanche_rm.hardware import get_preset
from avalanche_rm.jobs.basic import make_mlp
from avalanche_rm.strategies import FullWeightUnlearning, LoRAUnlearning, RetrainUnlearning, ShardedLoRAUnlearning
from avalanche_rm.strategies.forgetting import dataset_tensors
from avalanche_rm.strategies.policy import pretrain_and_program


def build(name: str, base, sp, seed: int):
    ev = EvaluationPlugin(loggers=[])
    common = dict(eval_data=(sp.test_x, sp.test_y), evaluator=ev)
    torch.manual_seed(seed)
    if name == "ShardedLoRA (exact, SISA)":
        return ShardedLoRAUnlearning(model=copy.deepcopy(base), n_shards=3, n_slices=2, rank=8, alpha=16, epochs_per_slice=10,
                                     seed=seed, **common)
    if name.startswith("LoRA "):
        method = name.split()[1]
        return LoRAUnlearning(model=copy.deepcopy(base), rank=8, alpha=16, train_epochs=15, method=method,
                              unlearn_epochs=80, **common)
    if name.startswith("FullWeight"):
        return FullWeightUnlearning(model=copy.deepcopy(base), lr=1e-3, unlearn_lr=1e-3, train_epochs=5,
                                    method="neg_ce", unlearn_epochs=80, **common)
    return RetrainUnlearning(model=copy.deepcopy(base), software_model=make_mlp(), train_epochs=15, **common)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="paper-180nm")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sp = public_private_digits(1, public_fraction=0.3, n_owners=5, seed=args.seed, public_classes=range(5))
    base = pretrain_and_program(make_mlp(), get_preset(args.preset), sp.public_x, sp.public_y, epochs=30,
                                seed=args.seed)
    _, _, ids, owners = dataset_tensors(sp.benchmark.train_stream[0].dataset)
    mine = ids[owners == 2]
    pick = mine[torch.randperm(len(mine), generator=torch.Generator().manual_seed(args.seed))[: max(1, len(mine) // 20)]]
    requests = {"forget class 7": ForgetRequest(requester="controller", classes=(7,)),
                f"forget 5% of owner 2 ({len(pick)} samples)": ForgetRequest(requester=2, sample_ids=tuple(pick.tolist()))}
    names = ["ShardedLoRA (exact, SISA)", "LoRA neg_ce", "LoRA random_label", "LoRA neggrad_plus", "LoRA scrub",
             "FullWeight neg_ce (write-back)", "Retrain + reprogram (exact)"]
    print(f"data: {sp.source}; preset {args.preset}\n")
    for label, req in requests.items():
        print(f"== {label}")
        hdr = (f"{'strategy':<30s} {'forget':>7s} {'retain':>7s} {'test':>7s} {'MIA AUC':>8s} {'wall s':>7s} "
               f"{'energy uJ':>10s} {'pulses':>9s}")
        print(hdr)
        costs = {}
        for name in names:
            s = build(name, base, sp, args.seed)
            s.train(sp.benchmark.train_stream[0])
            rec = s.forget(req)
            a = rec["metrics_after"]
            forget = a.get("test_forget_class_acc", a["forget_acc"])
            retain = a.get("test_retain_class_acc", a["retain_acc"])
            costs[name] = rec["cost"]
            print(f"{name:<30s} {100 * forget:6.1f}% {100 * retain:6.1f}% {100 * a['test_acc']:6.1f}% "
                  f"{a.get('mia_loss_auc', float('nan')):8.3f} {rec['wall_time_s']:7.2f} "
                  f"{rec['cost']['energy_pj'] / 1e6:10.2f} {rec['cost']['pulses']:9.0f}")
        r, s_ = costs["Retrain + reprogram (exact)"], costs["ShardedLoRA (exact, SISA)"]
        print(f"deployment-cost ratio retrain-and-reprogram / sharded LoRA: energy {r['energy_pj'] / s_['energy_pj']:.1f}x, "
              f"latency {r['latency_ns'] / max(s_['latency_ns'], 1):.1f}x, pulses {r['pulses']:.0f} vs {s_['pulses']:.0f}\n")
    print("forget/retain: held-out test accuracy of the forgotten / other classes for the class request, and "
          "training-set accuracy of the forgotten / retained samples for the owner request. MIA AUC: loss-threshold "
          "attack, forgotten samples vs unseen test samples (0.5 = indistinguishable).")


if __name__ == "__main__":
    main()
