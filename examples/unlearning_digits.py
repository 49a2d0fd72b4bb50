"""Forget requests on a hybrid chip: every unlearning method, a class request and a sample request, one table each.

Run: .venv/bin/python examples/unlearning_digits.py [--preset paper-180nm] [--seed 0] [--out DIR]
Data: scikit-learn's bundled digits (real). Classes 0-4 of a public 30 % are
pre-trained into the analogue base (public data, stated); the rest (all ten
classes, five owners) is private and learned by each strategy. Then (a) the
data controller asks to forget class 7, and (b) owner 2 asks to forget 5 % of
its samples. Columns as in SalUn / SCRUB tables (UA, RA, TA, MIA-efficacy, RTE)
plus the chip's bill and the average gap to retraining without the data.
AVALANCHE_RM_QUICK=1 shrinks every epoch count (the test suite's smoke run).
"""
from __future__ import annotations

import argparse
import copy
import os

import torch
from avalanche.training.plugins import EvaluationPlugin

from avalanche_rm.benchmarks import public_private_digits
from avalanche_rm.hardware import get_preset
from avalanche_rm.report import hardware_report, markdown_table, write_report
from avalanche_rm.strategies import (FullWeightUnlearning, LoRAUnlearning, RetrainUnlearning, ShardedLoRAUnlearning,
                                     compare_unlearning, pretrain_and_program)
from avalanche_rm.training import make_mlp
from avalanche_rm.unlearning import ForgetRequest, dataset_tensors, generate_keys

QUICK = os.environ.get("AVALANCHE_RM_QUICK") == "1"
RETRAIN = "retrain + reprogram (exact)"
RETRAIN_ADAPTER = "retrain adapter (exact)"
METHODS = ("neg_ce", "random_label", "neggrad_plus", "scrub")


def ep(n: int) -> int:
    return max(1, n // 8) if QUICK else n


def factories(base, sp, seed: int, trust) -> dict:
    common = dict(eval_data=(sp.test_x, sp.test_y), evaluator=EvaluationPlugin(loggers=[]), trust=trust)
    out = {RETRAIN_ADAPTER: lambda: ShardedLoRAUnlearning(model=copy.deepcopy(base), n_shards=1, n_slices=1, rank=8,
                                                          alpha=16, epochs_per_slice=ep(15), seed=seed, **common),
           RETRAIN: lambda: RetrainUnlearning(model=copy.deepcopy(base), software_model=make_mlp(),
                                              train_epochs=ep(15), **common),
           "sharded LoRA (exact, SISA)": lambda: ShardedLoRAUnlearning(
               model=copy.deepcopy(base), n_shards=3, n_slices=2, rank=8, alpha=16, epochs_per_slice=ep(10),
               seed=seed, **common)}
    for m in METHODS:
        out[f"LoRA {m}"] = lambda m=m: LoRAUnlearning(model=copy.deepcopy(base), rank=8, alpha=16, train_epochs=ep(15),
                                                      method=m, unlearn_epochs=ep(140), **common)
    out["full-weight neg_ce (write-back)"] = lambda: FullWeightUnlearning(
        model=copy.deepcopy(base), lr=1e-2, unlearn_lr=1e-3, train_epochs=ep(15), method="neg_ce",
        unlearn_epochs=ep(80), **common)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="paper-180nm")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="folder for report.json / report.md")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    hw = get_preset(args.preset)
    sp = public_private_digits(1, public_fraction=0.3, n_owners=5, seed=args.seed, public_classes=range(5))
    base = pretrain_and_program(make_mlp(), hw, sp.public_x, sp.public_y, public=True, epochs=ep(30), seed=args.seed)
    exp = sp.benchmark.train_stream[0]
    _, _, ids, owners = dataset_tensors(exp.dataset)
    mine = ids[owners == 2]
    pick = mine[torch.randperm(len(mine), generator=torch.Generator().manual_seed(args.seed))[: max(1, len(mine) // 20)]]
    # each request is signed by its requester; the strategies hold only the public keys (trust)
    trust, keys = generate_keys("example unlearning_digits", owners=[2], controllers=["controller"])
    class7 = ForgetRequest(requester="controller", classes=(7,))
    samples = ForgetRequest(requester=2, sample_ids=tuple(pick.tolist()))
    requests = {"class 7 (controller)": keys["controller"].sign(class7, trust.audience),
                f"{len(pick)} samples of owner 2": keys[2].sign(samples, trust.audience)}
    fs = factories(base, sp, args.seed, trust)
    # the gap's reference: retraining without the data, in each design (adapter methods: the adapter)
    refs = {n: RETRAIN if n.startswith(("full-weight", "retrain +")) else RETRAIN_ADAPTER for n in fs}
    tables, _ = compare_unlearning(fs, exp, requests, retrain=refs)
    print(f"data: {sp.source} (real); preset {hw.name}\n")
    for label, rows in tables.items():
        print(f"== forget {label}\n" + markdown_table(rows))
    print("UA = 1 - accuracy on the forgotten training samples, RA on the retained ones, TA on held-out test data "
          "(the remaining classes for a class request); MIA-efficacy: share of forgotten samples an SVC attack calls "
          "non-members; RTE: wall time of the request; gap: mean |difference| to retraining over UA/RA/TA/MIA.")
    if args.out:
        write_report(args.out, hardware_report("example unlearning_digits", hw, seed=args.seed,
                                               data=sp.source + " (real)", tables=tables))


if __name__ == "__main__":
    main()
