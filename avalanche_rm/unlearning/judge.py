"""Whether an approximate forget request did what it promised: judged against what retraining would show.

Exact methods need no judgement: their result *is* what retraining without
the data gives. An approximate method is judged on the metrics the core
measured before and after it, while the data were still at hand:

- **forget set**: a class request must bring the forgotten classes' accuracy
  to about 0 (what a model that never saw them gives; a measure may state
  another retrained level, e.g. a generator's chance rate); a sample or owner
  request must not raise the forget set's accuracy (by more than one sample)
  and must not push it far below the retrained level, estimated as the lower
  of its accuracy before and the test accuracy (a forgotten sample classified
  worse than unseen data is itself a membership signal);
- **membership**: where the loss attack has power, its forget-set AUC must be
  near 0.5, from either side (an AUC of 0.28 is as telling as 0.72);
- **the rest of the model**: retained and test (remaining classes) accuracy
  may not fall by more than the policy's bound.

Tolerances widen with the binomial standard error of the forget set, so a
10-sample request is not failed on one sample's noise. A request that fails
is *flagged* in its record; the caller chooses what a flag means
(:attr:`JudgePolicy.on_fail`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..validation import check_number
from .approximate import CLASS_STOP_ACCURACY

ON_FAIL = ("flag", "rollback", "raise")


class ForgetFlagged(UserWarning):
    """Warned when an approximate request is honoured but flagged (``JudgePolicy(on_fail="flag")``); a caller that
    reports each record's ``status`` itself may filter this category."""


class ForgetFailed(RuntimeError):
    """An approximate forget request failed its judgement and the policy said not to keep the result."""

    def __init__(self, message: str, record: dict | None = None) -> None:
        super().__init__(message)
        self.record = record


@dataclass(frozen=True)
class JudgePolicy:
    """The bounds an approximate request is judged by, and what a failure means.

    ``on_fail``: ``"flag"`` keeps the result, purges the data and records the
    request as flagged (with every failed check); ``"rollback"`` restores the
    model from before the request, keeps the data and raises
    :class:`ForgetFailed` (possible where the method only wrote adapters);
    ``"raise"`` keeps the result and the data and raises.
    """

    max_retain_drop: float = 0.05
    max_test_drop: float = 0.05
    forget_tolerance: float = 0.05
    mia_band: float = 0.1
    z: float = 2.0
    on_fail: str = "flag"

    def __post_init__(self) -> None:
        for name in ("max_retain_drop", "max_test_drop", "forget_tolerance", "mia_band", "z"):
            check_number(getattr(self, name), f"JudgePolicy.{name}", 0.0)
        if self.on_fail not in ON_FAIL:
            raise ValueError(f"JudgePolicy.on_fail must be one of {ON_FAIL}, got {self.on_fail!r}")

    def as_dict(self) -> dict:
        return asdict(self)


def _nan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def judge(guarantee: str, classes, before: dict, after: dict, policy: JudgePolicy) -> dict:
    """``{"status": "exact"|"honoured"|"flagged", "checks": {name: {...,"ok"}}, "failed": [names]}``."""
    if guarantee != "approximate":
        return {"status": "exact", "checks": {}, "failed": []}
    checks: dict[str, dict] = {}
    n = max(int(before.get("n_forget", 0)), 1)
    fb, fa = before.get("forget_acc", float("nan")), after.get("forget_acc", float("nan"))
    if classes is not None:
        recall = after.get("test_forget_class_acc", fa)
        # a measure may state what a model never trained on the classes scores (a generator's chance level)
        ref = after.get("forget_retrained_estimate", CLASS_STOP_ACCURACY) + policy.forget_tolerance
        checks["forget_classes_forgotten"] = {"value": recall, "at_most": ref, "ok": not _nan(recall) and recall <= ref}
    else:
        test_b = before.get("test_acc", float("nan"))
        target = fb if _nan(test_b) else min(fb, test_b)
        tol = max(policy.forget_tolerance, policy.z * math.sqrt(max(target * (1 - target), 0.0) / n))
        checks["forget_not_raised"] = {"before": fb, "after": fa, "at_most": fb + 1.0 / n,
                                       "ok": fa <= fb + 1.0 / n + 1e-9}
        checks["forget_not_overshot"] = {"after": fa, "retrained_estimate": target, "at_least": target - tol,
                                         "ok": fa >= target - tol - 1e-9}
        if after.get("mia_loss_has_power"):
            auc, lo, hi = after["mia_loss_auc"], after["mia_loss_auc_lo"], after["mia_loss_auc_hi"]
            near = abs(auc - 0.5) <= policy.mia_band or lo <= 0.5 <= hi
            checks["membership_near_chance"] = {"auc": auc, "interval": [lo, hi], "band": policy.mia_band, "ok": near}
    rb, ra = before.get("retain_acc", float("nan")), after.get("retain_acc", float("nan"))
    if not _nan(rb):
        checks["retain_kept"] = {"before": rb, "after": ra, "max_drop": policy.max_retain_drop,
                                 "ok": not _nan(ra) and ra >= rb - policy.max_retain_drop - 1e-9}
    tb, ta = before.get("TA", float("nan")), after.get("TA", float("nan"))
    if not _nan(tb):
        checks["test_kept"] = {"before": tb, "after": ta, "max_drop": policy.max_test_drop,
                               "ok": not _nan(ta) and ta >= tb - policy.max_test_drop - 1e-9}
    failed = [k for k, c in checks.items() if not c["ok"]]
    return {"status": "flagged" if failed else "honoured", "checks": checks, "failed": failed}
