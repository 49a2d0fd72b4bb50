"""Verification metrics of an unlearning run, named as the literature's tables (SalUn, SCRUB).

- ``UA`` unlearning accuracy = 1 - accuracy on the forget set;
- ``RA`` accuracy on the retained training data; ``TA`` on held-out test data;
- ``MIA-efficacy``: share of forgotten samples the SVC attack calls non-members;
- ``RTE``: run time of the unlearning (s);
plus the hardware bill (energy, pulses, cells written) and, against a model
retrained without the data, the average gap over UA, RA, TA and MIA-efficacy.
All values are fractions in [0, 1] except RTE and the bill.
"""
from __future__ import annotations

import math

import torch

from .attacks import accuracy_of, mia, wilson_interval

GAP_KEYS = ("UA", "RA", "TA", "MIA-efficacy")


def verify(model, forget: tuple[torch.Tensor, torch.Tensor], retain: tuple[torch.Tensor, torch.Tensor],
           test: tuple[torch.Tensor, torch.Tensor] | None = None, classes=None, with_mia: bool = True,
           seed: int = 0) -> dict[str, float]:
    """Accuracies and attacks on the current model.

    Sample and owner requests: membership attacks on the forget set against
    held-out test data (:func:`~avalanche_rm.unlearning.attacks.mia`: with
    their power, intervals and counts; "no power" is NaN). Class requests use a
    class-level measure instead, since a per-sample attack on a forgotten class
    only measures generalisation: the recall of the forgotten classes on
    held-out data (``test_forget_class_acc``) with its Wilson interval and
    count, beside the test accuracy on the remaining classes.
    """
    out = {"forget_acc": accuracy_of(model, *forget), "retain_acc": accuracy_of(model, *retain),
           "n_forget": float(len(forget[1])), "n_retain": float(len(retain[1]))}
    if test is not None and len(test[1]):
        xt, yt = test
        out["test_acc"] = accuracy_of(model, xt, yt)
        if classes is not None:
            m = torch.isin(yt, torch.tensor(list(classes)))
            n = int(m.sum())
            out["test_forget_class_acc"] = accuracy_of(model, xt[m], yt[m])
            out["test_retain_class_acc"] = accuracy_of(model, xt[~m], yt[~m])
            out["class_recall_n"] = float(n)
            if n:
                lo, hi = wilson_interval(out["test_forget_class_acc"] * n, n)
                out["class_recall_lo"], out["class_recall_hi"] = lo, hi
        elif with_mia and len(forget[1]) > 0 and len(yt) >= 4 and len(retain[1]) >= 2:
            out.update(mia(model, forget, retain, test, seed=seed))
    out.update(literature_names(out))
    return out


def literature_names(m: dict[str, float]) -> dict[str, float]:
    """UA / RA / TA / MIA-efficacy from the raw verification metrics.

    As in SalUn's class-wise tables, ``TA`` of a class request is the test
    accuracy on the classes that remain.
    """
    out = {"UA": 1.0 - m["forget_acc"] if not math.isnan(m.get("forget_acc", float("nan"))) else float("nan"),
           "RA": m.get("retain_acc", float("nan")),
           "TA": m.get("test_retain_class_acc", m.get("test_acc", float("nan")))}
    if "mia_efficacy" in m:
        out["MIA-efficacy"] = m["mia_efficacy"]
    return out


def gap_to_retrain(method: dict[str, float], retrain: dict[str, float]) -> float:
    """Average absolute gap over UA, RA, TA and MIA-efficacy (SalUn's "Avg. Gap"), in the same units."""
    gaps = [abs(method[k] - retrain[k]) for k in GAP_KEYS
            if k in method and k in retrain and not (math.isnan(method[k]) or math.isnan(retrain[k]))]
    return sum(gaps) / len(gaps) if gaps else float("nan")


def unlearning_row(name: str, record: dict, retrain: dict | None = None) -> dict:
    """One row of a literature-style unlearning table from an audit record (``forget()``'s return value).

    ``TA_before`` (what the strategy had learned), UA, RA, TA and MIA-efficacy
    in %, RTE in s, the hardware bill (energy,
    latency, pulses, cells written) and, given the record of retraining without
    the data (``retrain``), the average gap to it in % points.
    """
    a, b = record["metrics_after"], record["metrics_before"]
    c = record["cost"]
    row = {"method": name, "TA_before": 100.0 * b.get("TA", float("nan"))}
    for k in GAP_KEYS:
        row[k] = 100.0 * a.get(k, float("nan"))
    row.update({"RTE_s": record["wall_time_s"], "energy_uJ": c["energy_pj"] / 1e6, "latency_ms": c["latency_ns"] / 1e6,
                "pulses": c["pulses"], "cells_written": c["cells_programmed"]})
    if retrain is not None:
        row["gap_to_retrain"] = 100.0 * gap_to_retrain(a, retrain["metrics_after"])
    return row
