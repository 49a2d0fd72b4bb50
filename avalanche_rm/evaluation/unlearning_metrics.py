"""Unlearning verification as an Avalanche metric.

The attacks and metrics themselves live in :mod:`avalanche_rm.unlearning`
(:func:`~avalanche_rm.unlearning.mia`, :class:`~avalanche_rm.unlearning.LiRA`,
:func:`~avalanche_rm.unlearning.verify`). A strategy computes them while the data
to forget are still at hand and keeps only the numbers, in its audit log; this
metric reports them to Avalanche's loggers.
"""
from __future__ import annotations

from avalanche.evaluation import PluginMetric
from avalanche.evaluation.metric_results import MetricValue

from ..unlearning import accuracy_of, mia, predict_proba, verify

__all__ = ["UnlearningMetrics", "accuracy_of", "mia", "predict_proba", "verify"]

#: audit-record metrics reported after each evaluation
REPORTED = ("UA", "RA", "TA", "MIA-efficacy", "forget_acc", "retain_acc", "test_acc", "mia_svc_auc", "mia_loss_auc")


class UnlearningMetrics(PluginMetric[dict]):
    """After every evaluation, the verification of the latest honoured forget request.

    For a strategy with ``forget()`` (see :mod:`avalanche_rm.strategies`) it
    reports, under ``Unlearn_<name>/eval_phase/<stream>_stream``, the metrics its
    audit record holds after the request (UA, RA, TA, MIA-efficacy, forget /
    retain / test accuracy, attack AUCs), plus the current accuracy on the
    retained data. Nothing is reported before the first honoured request. The
    forgotten samples themselves are gone by then: the record was computed
    before they were dropped.
    """

    def __init__(self) -> None:
        super().__init__()
        self._last: dict = {}

    def __str__(self) -> str:
        return "Unlearn"

    def result(self) -> dict:
        return dict(self._last)

    def reset(self) -> None:
        self._last = {}

    def after_eval(self, strategy):
        # the last request carried out (re-applications with nothing held and checkpoint notes have no metrics)
        log = [r for r in getattr(strategy, "audit_log", None) or [] if "metrics_after" in r]
        if not log:
            return None
        after = log[-1]["metrics_after"]
        vals = {k: float(after[k]) for k in REPORTED if k in after}
        reg = strategy.registry
        if len(reg):
            vals["retain_acc_now"] = accuracy_of(strategy.model_for_forgetting(), reg.x, reg.y)
        self._last = vals
        stream = strategy.experience.origin_stream.name if strategy.experience is not None else "eval"
        x = strategy.clock.train_iterations
        return [MetricValue(self, f"Unlearn_{k}/eval_phase/{stream}_stream", v, x) for k, v in vals.items()]
