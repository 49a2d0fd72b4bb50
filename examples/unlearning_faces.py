"""Forgetting a person, and some of a person's photos, on a hybrid chip (real Olivetti faces).

Run: .venv/bin/python examples/unlearning_faces.py [--mat-path ../shared/data/olivettifaces.mat] [--out DIR]
Data: the real Olivetti faces from --mat-path (else scikit-learn's fetcher,
which downloads when online). Images are 16x16. People 20-39 are public: a
small CNN is pre-trained on all their images and programmed into the analogue
base. People 0-19 are private (each owns their 5 training images; 5 more per
person are held out): every strategy learns them, then (a) the data controller
asks to forget person 7, and (b) person 3 asks to forget 2 of their photos.
Same columns as examples/unlearning_digits.py.
AVALANCHE_RM_QUICK=1 shrinks every epoch count (the test suite's smoke run).
"""
from __future__ import annotations

import argparse
import copy
import os

import torch
from avalanche.training.plugins import EvaluationPlugin
from torch import nn

from avalanche_rm.benchmarks import public_private_faces
from avalanche_rm.hardware import get_preset
from avalanche_rm.report import hardware_report, markdown_table, write_report
from avalanche_rm.strategies import (FullWeightUnlearning, LoRAUnlearning, RetrainUnlearning, ShardedLoRAUnlearning,
                                     compare_unlearning, pretrain_and_program)
from avalanche_rm.unlearning import ForgetRequest, dataset_tensors, generate_keys

QUICK = os.environ.get("AVALANCHE_RM_QUICK") == "1"
DEFAULT_MAT = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "olivettifaces.mat")
RETRAIN = "retrain + reprogram (exact)"
RETRAIN_ADAPTER = "retrain adapter (exact)"
LORA_LR = 1e-2  # every adapter strategy learns with the same recipe
METHODS = ("neg_ce", "random_label", "neggrad_plus", "scrub")


def ep(n: int) -> int:
    return max(1, n // 8) if QUICK else n


def face_cnn(classes: int = 40) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 4 * 4, classes))


def factories(base, sp, seed: int, trust) -> dict:
    common = dict(eval_data=(sp.test_x, sp.test_y), evaluator=EvaluationPlugin(loggers=[]), trust=trust)
    out = {RETRAIN_ADAPTER: lambda: ShardedLoRAUnlearning(model=copy.deepcopy(base), n_shards=1, n_slices=1, rank=8,
                                                          alpha=16, lr=LORA_LR, epochs_per_slice=ep(60), seed=seed,
                                                          **common),
           RETRAIN: lambda: RetrainUnlearning(model=copy.deepcopy(base), software_model=face_cnn(), lr=3e-3,
                                              train_epochs=ep(60), **common),
           "sharded LoRA (exact, SISA)": lambda: ShardedLoRAUnlearning(
               model=copy.deepcopy(base), n_shards=2, rank=8, alpha=16, lr=LORA_LR, epochs_per_slice=ep(60), seed=seed,
               **common)}
    for m in METHODS:
        out[f"LoRA {m}"] = lambda m=m: LoRAUnlearning(model=copy.deepcopy(base), rank=8, alpha=16, lr=LORA_LR,
                                                      train_epochs=ep(60), method=m, unlearn_epochs=ep(140), **common)
    out["full-weight neg_ce (write-back)"] = lambda: FullWeightUnlearning(
        model=copy.deepcopy(base), lr=1e-2, unlearn_lr=1e-3, train_epochs=ep(60), method="neg_ce",
        unlearn_epochs=ep(80), **common)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mat-path", default=DEFAULT_MAT)
    ap.add_argument("--preset", default="paper-180nm")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="folder for report.json / report.md")
    args = ap.parse_args()
    mat = args.mat_path if os.path.exists(args.mat_path) else None
    sp = public_private_faces(1, seed=args.seed, mat_path=mat, download=mat is None)
    hw = get_preset(args.preset)
    torch.manual_seed(args.seed)
    base = pretrain_and_program(face_cnn(), hw, sp.public_x, sp.public_y, public=True, epochs=ep(60), lr=3e-3,
                                seed=args.seed)
    exp = sp.benchmark.train_stream[0]
    _, _, ids, owners = dataset_tensors(exp.dataset)
    mine = ids[owners == 3]
    # each request is signed by its requester; the strategies hold only the public keys (trust)
    trust, keys = generate_keys("example unlearning_faces", owners=[3], controllers=["controller"])
    person7 = ForgetRequest(requester="controller", classes=(7,))
    photos = ForgetRequest(requester=3, sample_ids=tuple(mine[:2].tolist()))
    requests = {"person 7 (controller)": keys["controller"].sign(person7, trust.audience),
                "2 photos of person 3": keys[3].sign(photos, trust.audience)}
    fs = factories(base, sp, args.seed, trust)
    # the gap's reference: retraining without the data, in each design (adapter methods: the adapter)
    refs = {n: RETRAIN if n.startswith(("full-weight", "retrain +")) else RETRAIN_ADAPTER for n in fs}
    tables, _ = compare_unlearning(fs, exp, requests, retrain=refs)
    print(f"data: {sp.source}; preset {hw.name}\n")
    for label, rows in tables.items():
        print(f"== forget {label}\n" + markdown_table(rows))
    if args.out:
        write_report(args.out, hardware_report("example unlearning_faces", hw, seed=args.seed, data=sp.source,
                                               tables=tables))


if __name__ == "__main__":
    main()
