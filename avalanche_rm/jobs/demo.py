"""The main job: pre-train a base on public classes, program it, learn new classes on adapters,
serve two forget requests (the data controller forgets a class; an owner forgets all of its data), and compare
the bill with the full-weight baselines on the same chip."""
from __future__ import annotations

import copy
import time
import warnings

import torch
from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin
from tqdm.auto import tqdm

from ..costs.fields import TABLE_KEYS
from ..benchmarks import public_private_digits
from ..unlearning import ForgetFlagged, ForgetRequest, accuracy_of, format_auc, generate_keys
from ..hardware import get_preset
from ..report import hardware_report, plots
from ..strategies import FullWeightUnlearning, LoRAUnlearning, RetrainUnlearning, pretrain_and_program
from ..training import make_mlp
from ..validation import check_int

STRATEGIES = ("hybrid LoRA", "full-weight write-back", "retrain + reprogram")
PHASES = ("deploy", "train", "unlearn")
#: the inference row: one eval-mode pass over the test set on the final chip, per sample
INFER = "infer (per sample)"


def run_demo(preset: str = "paper-180nm", seed: int = 0, epochs: int = 30, adapter_epochs: int = 10,
             unlearn_epochs: int = 40, forget_class: int = 7, forget_owner: int = 2, method: str = "neg_ce",
             method_options: dict | None = None, device: str = "cpu", progress: bool = True) -> tuple[dict, dict]:
    """Returns ``(report, plots)`` for :func:`avalanche_rm.report.write_report`.

    ``method`` (with ``method_options``) is the approximate objective of the hybrid and full-weight
    strategies; retraining is exact. After the class request, owner ``forget_owner`` asks for all of its
    data to be forgotten (a sample-level request, where a membership attack applies).
    """
    for name, v, lo in (("epochs", epochs, 1), ("adapter_epochs", adapter_epochs, 1), ("unlearn_epochs", unlearn_epochs, 1)):
        check_int(v, name, lo)
    if not 5 <= forget_class <= 9:
        raise ValueError(f"forget_class must be one of the private classes 5..9, got {forget_class!r}")
    t0 = time.perf_counter()
    hw = get_preset(preset)
    torch.manual_seed(seed)
    sp = public_private_digits(2, public_fraction=0.3, n_owners=5, seed=seed, public_classes=range(5),
                               fixed_class_order=list(range(10)))
    # the base learns public classes 0-4 only: data nobody can ask to forget
    base = pretrain_and_program(make_mlp().to(device), hw, sp.public_x.to(device), sp.public_y.to(device),
                                public=True, epochs=epochs, seed=seed, progress=progress)
    prog = base.last_programming
    g_err = torch.cat([(layer.array.g_us - layer.array.target_conductance()).flatten()
                       for layer in base.hybrid_layers()])
    test = (sp.test_x.to(device), sp.test_y.to(device))
    acc_base = accuracy_of(base, *test)
    rows_acc, rows_cost, energy, ba, curves = [], [], {}, {}, {}
    # the data controller signs the class request; each strategy holds only its public key
    trust, keys = generate_keys("avalanche-rm demo", owners=[forget_owner], controllers=["controller"])
    ev = dict(eval_data=test, device=device, trust=trust)
    for name in tqdm(STRATEGIES, desc="strategies", disable=not progress):
        torch.manual_seed(seed)
        quiet = EvaluationPlugin(loggers=[])
        if name == "hybrid LoRA":
            s = LoRAUnlearning(model=copy.deepcopy(base), rank=8, alpha=16, train_epochs=adapter_epochs,
                               method=method, method_options=method_options, unlearn_epochs=unlearn_epochs,
                               evaluator=quiet, plugins=[ReplayPlugin(300)], **ev)
        elif name == "full-weight write-back":
            s = FullWeightUnlearning(model=copy.deepcopy(base), lr=1e-3, unlearn_lr=1e-3, train_epochs=adapter_epochs,
                                     method=method, method_options=method_options, unlearn_epochs=unlearn_epochs,
                                     evaluator=quiet, plugins=[ReplayPlugin(300)], **ev)
        else:
            s = RetrainUnlearning(model=copy.deepcopy(base), software_model=make_mlp(), train_epochs=adapter_epochs,
                                  evaluator=quiet, **ev)
        chip = s.model_for_forgetting()
        accs = []
        for exp in sp.benchmark.train_stream:
            s.train(exp)
            accs.append(accuracy_of(chip, *test))
        curves[name] = [acc_base] + accs
        with warnings.catch_warnings():
            # a flagged request is a row of the table with its failed checks (below), not a warning on the console
            warnings.simplefilter("ignore", ForgetFlagged)
            rec = s.forget(keys["controller"].sign(ForgetRequest(requester="controller", classes=(forget_class,)),
                                                   trust.audience))
            own = s.forget(keys[forget_owner].sign(ForgetRequest(requester=forget_owner, owner=forget_owner),
                                                   trust.audience))
        b, a = rec["metrics_before"], rec["metrics_after"]
        ba[name] = (b["test_forget_class_acc"], a["test_forget_class_acc"], b["test_retain_class_acc"],
                    a["test_retain_class_acc"])
        ob, oa = own["metrics_before"], own["metrics_after"]
        rows_acc.append({"strategy": name, "acc_base": acc_base, "acc_exp1": accs[0], "acc_exp2": accs[1],
                         "forget_before": ba[name][0], "forget_after": ba[name][1], "retain_before": ba[name][2],
                         "retain_after": ba[name][3], "test_after": a["test_acc"],
                         "class_recall_n": a.get("class_recall_n", 0.0),
                         "class_recall_lo": a.get("class_recall_lo", float("nan")),
                         "class_recall_hi": a.get("class_recall_hi", float("nan")),
                         "class_status": rec["status"], "class_guarantee": rec["guarantee"],
                         "class_failed_checks": ",".join(rec["judgement"]["failed"]),
                         "owner_samples": own["n_samples"], "owner_forget_before": ob["forget_acc"],
                         "owner_forget_after": oa["forget_acc"], "owner_test_after": oa.get("test_acc", float("nan")),
                         "owner_mia_before": format_auc(ob), "owner_mia_after": format_auc(oa),
                         **{f"owner_{k}": oa[k] for k in oa if k.startswith("mia_")},
                         "owner_status": own["status"], "owner_guarantee": own["guarantee"],
                         "owner_failed_checks": ",".join(own["judgement"]["failed"])})
        by_phase = chip.ledger.by_phase()
        energy[name] = {p: by_phase[p]["energy_pj"] for p in PHASES if p in by_phase}
        # accuracy checks above run with the ledger on but are not part of a phase's bill; inference is
        # measured on its own: one pass over the test set on the final chip, per sample
        per_sample = chip.inference_cost(test[0])
        for ph in PHASES + (INFER,):
            v = per_sample if ph == INFER else by_phase.get(ph, {})
            rows_cost.append({"strategy": name, "phase": ph, **{k: v.get(k, 0.0) for k in TABLE_KEYS}})
    ratios = []
    hyb = {r["phase"]: r for r in rows_cost if r["strategy"] == "hybrid LoRA"}
    for name in STRATEGIES[1:]:
        for ph in ("train", "unlearn", INFER):
            base_row = next(r for r in rows_cost if r["strategy"] == name and r["phase"] == ph)
            h = hyb[ph]
            ratios.append({"baseline": name, "phase": ph,
                           "energy_ratio": base_row["energy_pj"] / h["energy_pj"] if h["energy_pj"] else float("nan"),
                           "latency_ratio": base_row["latency_ns"] / h["latency_ns"] if h["latency_ns"] else float("nan"),
                           "baseline_pulses": base_row["pulses"], "hybrid_pulses": h["pulses"]})
    report = hardware_report(
        "demo", hw, seed=seed, data=sp.source + " (real data)",
        programming={k: v for k, v in prog.as_dict().items() if k != "pulse_histogram"},
        forget_requests=[{"requester": "controller", "classes": [forget_class]},
                         {"requester": forget_owner, "owner": forget_owner}],
        method={"name": method, "options": dict(method_options or {})},
        tables={"accuracy and forgetting": rows_acc, "cost per phase": rows_cost, "baseline / hybrid ratios": ratios},
        wall_s=time.perf_counter() - t0)
    figs = {
        "accuracy_per_experience": plots.accuracy_per_experience(curves),
        "energy_by_phase": plots.energy_by_phase(energy),
        "programming_pulses": plots.histogram(prog.pulse_histogram, "write pulses per cell",
                                              "write-verify pulses (deployment)", counts=True),
        "conductance_error": plots.histogram(g_err.cpu().tolist(), "programmed - target conductance (uS)",
                                             "conductance error after write-verify"),
        "forget_retain": plots.before_after(ba, f"forgetting class {forget_class}"),
        "inference_per_sample": plots.grouped_bars(
            {r["strategy"]: {"energy (nJ)": r["energy_pj"] / 1e3, "latency (us)": r["latency_ns"] / 1e3}
             for r in rows_cost if r["phase"] == INFER}, "per sample", "inference cost per sample (final chip)"),
    }
    return report, figs


def format_demo(report: dict) -> str:
    acc = report["tables"]["accuracy and forgetting"]
    owner = report["forget_requests"][1]["owner"]
    lines = [f"data: {report['data']}", f"preset: {report['preset']}  seed: {report['seed']}", "",
             f"{'strategy':<24s} {'base':>6s} {'exp1':>6s} {'exp2':>6s} {'class recall b/a [95% CI, n]':>34s} "
             f"{'retain b/a':>12s} {'status':>9s}"]
    for r in acc:
        ci = f"[{100 * r['class_recall_lo']:3.0f},{100 * r['class_recall_hi']:3.0f}] n={int(r['class_recall_n'])}"
        lines.append(f"{r['strategy']:<24s} {100 * r['acc_base']:5.1f}% {100 * r['acc_exp1']:5.1f}% "
                     f"{100 * r['acc_exp2']:5.1f}% {100 * r['forget_before']:5.1f}/{100 * r['forget_after']:4.1f}% "
                     f"{ci:>19s} {100 * r['retain_before']:5.1f}/{100 * r['retain_after']:4.1f}% "
                     f"{r['class_status']:>9s}" + (f" ({r['class_failed_checks']})" if r["class_failed_checks"] else ""))
    lines += ["", f"owner {owner} forgets all of its data: forget-set accuracy, and the loss attack's AUC on it "
                  "against unseen test data [95% CI] (with members/non-members; 'no power': the attack cannot "
                  "tell the model's own training data from unseen data, so no figure is given)",
              f"{'strategy':<24s} {'samples':>7s} {'forget b/a':>12s} {'MIA before':>28s} {'MIA after':>28s} "
              f"{'status':>9s}"]
    for r in acc:
        lines.append(f"{r['strategy']:<24s} {r['owner_samples']:7d} {100 * r['owner_forget_before']:5.1f}/"
                     f"{100 * r['owner_forget_after']:4.1f}% {r['owner_mia_before']:>28s} {r['owner_mia_after']:>28s} "
                     f"{r['owner_status']:>9s}" + (f" ({r['owner_failed_checks']})" if r["owner_failed_checks"] else ""))
    lines += ["", f"{'strategy':<24s} {'phase':<18s} {'energy':>12s} {'latency':>12s} {'pulses':>10s} "
                  f"{'cells written':>14s}"]
    for r in report["tables"]["cost per phase"]:
        if r["phase"] == INFER:  # per sample: nJ and us
            e, t = f"{r['energy_pj'] / 1e3:8.2f} nJ", f"{r['latency_ns'] / 1e3:8.3f} us"
        else:
            e, t = f"{r['energy_pj'] / 1e6:8.2f} uJ", f"{r['latency_ns'] / 1e6:8.3f} ms"
        lines.append(f"{r['strategy']:<24s} {r['phase']:<18s} {e:>12s} {t:>12s} {r['pulses']:10.0f} "
                     f"{r['cells_programmed']:14.0f}")
    lines.append("")
    for r in report["tables"]["baseline / hybrid ratios"]:
        lines.append(f"{r['baseline']} / hybrid LoRA, {r['phase']}: energy {r['energy_ratio']:.2f}x, "
                     f"latency {r['latency_ratio']:.2f}x, pulses {r['baseline_pulses']:.0f} vs {r['hybrid_pulses']:.0f}")
    return "\n".join(lines)
