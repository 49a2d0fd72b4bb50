"""Forgetting a person on a hybrid chip (Olivetti faces), as in the reference's face task.

Run: .venv/bin/python examples/unlearning_faces.py [--mat-path ../shared/data/olivettifaces.mat]
Data: the real Olivetti faces from --mat-path, else scikit-learn's fetcher
(downloads when online), else a generated stand-in (smooth random "faces",
clearly labelled as such). People 0-4 are public and pre-trained into the
analogue base; people 5-9 are private, learned with LoRA adapters (hash-sharded
SISA, and a single adapter) while the public images are rehearsed; then person 7
is forgotten. 3 images per person are held out for testing.
"""
from __future__ import annotations

import argparse
import copy
import os

import torch
import torch.nn.functional as F
from avalanche.benchmarks import nc_benchmark
from avalanche.training.plugins import EvaluationPlugin
from torch import nn

from avalanche_rm.benchmarks import ForgetRequest, assign_owners, load_olivetti, tensor_dataset
from avalanche_rm.hardware import get_preset
from avalanche_rm.strategies import FullWeightUnlearning, LoRAUnlearning, ShardedLoRAUnlearning
from avalanche_rm.strategies.policy import pretrain_and_program

DEFAULT_MAT = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "olivettifaces.mat")


def faces(mat_path: str | None) -> tuple[torch.Tensor, torch.Tensor, str]:
    try:
        if mat_path and os.path.exists(mat_path):
            x, y = load_olivetti(mat_path=mat_path)
            return x, y, f"Olivetti faces (real, {mat_path})"
        x, y = load_olivetti(timeout_s=10)
        return x, y, "Olivetti faces (real, scikit-learn fetcher)"
    except (RuntimeError, OSError) as e:
        print(f"real faces unavailable ({e}); using a generated stand-in")
    gen = torch.Generator().manual_seed(0)
    protos = F.avg_pool2d(torch.rand(10, 1, 64, 64, generator=gen), 9, 1, 4)
    x = (protos.repeat_interleave(10, 0) + 0.05 * torch.randn(100, 1, 64, 64, generator=gen)).squeeze(1)
    return x.clamp(0, 1), torch.arange(100) // 10, "generated stand-in (smooth random prototypes + noise)"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mat-path", default=DEFAULT_MAT)
    ap.add_argument("--preset", default="paper-180nm")
    args = ap.parse_args()
    x, y, source = faces(args.mat_path)
    keep = y < 10
    x = F.interpolate(x[keep].unsqueeze(1), size=(16, 16), mode="bilinear", align_corners=False).flatten(1)
    y = y[keep]
    x = (x - x.mean()) / x.std()
    test = torch.zeros(len(y), dtype=torch.bool)
    for c in range(10):
        test[torch.nonzero(y == c).squeeze(1)[:3]] = True
    pub = (y < 5) & ~test
    ids = torch.arange(len(y))
    owners = assign_owners(len(y), 5, 0)
    owners[pub] = 5  # owner 5 = the public set, rehearsed alongside the private people so they are not forgotten
    stream = ~test  # public (rehearsal) + private (people 5-9) training images
    bm = nc_benchmark(tensor_dataset(x[stream], y[stream], sample_ids=ids[stream], owners=owners[stream]),
                      tensor_dataset(x[test], y[test]), 1, task_labels=False, seed=0)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 10))
    base = pretrain_and_program(net, get_preset(args.preset), x[pub], y[pub], epochs=60)
    ev = dict(eval_data=(x[test], y[test]), evaluator=EvaluationPlugin(loggers=[]))
    strategies = {
        "ShardedLoRA (exact)": lambda: ShardedLoRAUnlearning(model=copy.deepcopy(base), n_shards=2, rank=6, alpha=12,
                                                             epochs_per_slice=30, **ev),
        "LoRA neg_ce (w=-0.5)": lambda: LoRAUnlearning(model=copy.deepcopy(base), rank=6, alpha=12, train_epochs=60,
                                                       method="neg_ce", unlearn_epochs=80, **ev),
        "FullWeight neg_ce": lambda: FullWeightUnlearning(model=copy.deepcopy(base), lr=1e-3, train_epochs=30,
                                                          unlearn_lr=1e-3, method="neg_ce", unlearn_epochs=80, **ev),
    }
    print(f"data: {source}; people 0-4 public (base), 5-9 private; forgetting person 7\n")
    print(f"{'strategy':<22s} {'person 7 before':>15s} {'after':>6s} {'others before':>14s} {'after':>6s} "
          f"{'energy uJ':>10s} {'pulses':>8s}")
    for name, make in strategies.items():
        s = make()
        s.train(bm.train_stream[0])
        rec = s.forget(ForgetRequest(requester="controller", classes=(7,)))
        b, a = rec["metrics_before"], rec["metrics_after"]
        print(f"{name:<22s} {100 * b['test_forget_class_acc']:14.1f}% {100 * a['test_forget_class_acc']:5.1f}% "
              f"{100 * b['test_retain_class_acc']:13.1f}% {100 * a['test_retain_class_acc']:5.1f}% "
              f"{rec['cost']['energy_pj'] / 1e6:10.2f} {rec['cost']['pulses']:8.0f}")


if __name__ == "__main__":
    main()
