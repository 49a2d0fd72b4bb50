"""Verification of unlearning: forget/retain/test accuracy and membership-inference attacks.

Attacks follow the unlearning literature's cheap standard:
- SVC attack (Unlearn-Saliency / SalUn ``SVC_MIA``): an RBF ``SVC(C=3, gamma="auto")``
  on (true-class confidence, entropy) features, fitted on retained samples
  (members) vs half of the test set (non-members), then scored on the forget
  set (members?) vs the other half of the test set;
- loss-threshold attack (Yeom et al. 2018): the per-sample loss ranks forget vs
  test samples; its ROC-AUC is reported.
An AUC near 0.5 means the attacker cannot tell the forgotten samples from data
the model never saw. Evaluation here is simulator-side: the chip's ledger is
paused, so verifying costs no simulated energy.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from avalanche.evaluation import PluginMetric
from avalanche.evaluation.metric_results import MetricValue


@torch.no_grad()
def predict_proba(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    ledger = getattr(model, "ledger", None)
    was = model.training
    model.eval()
    dev = next((t.device for t in list(model.parameters()) + list(model.buffers())), torch.device("cpu"))
    outs = []
    ctx = ledger.paused() if ledger is not None else torch.no_grad()
    with ctx:
        for i in range(0, len(x), batch_size):
            outs.append(F.softmax(model(x[i:i + batch_size].to(dev)), dim=-1).cpu())
    model.train(was)
    return torch.cat(outs) if outs else torch.zeros(0)


def _features(p: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    conf = p.gather(1, y.view(-1, 1)).squeeze(1).clamp_min(1e-12)
    ent = -(p.clamp_min(1e-12).log() * p).sum(1)
    return torch.stack([conf, ent], 1).numpy()


def _loss(p: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    return (-p.gather(1, y.view(-1, 1)).squeeze(1).clamp_min(1e-12).log()).numpy()


def mia(model, forget: tuple[torch.Tensor, torch.Tensor], retain: tuple[torch.Tensor, torch.Tensor],
        test: tuple[torch.Tensor, torch.Tensor], seed: int = 0) -> dict[str, float]:
    """SVC and loss-threshold membership inference on the forget set; AUC 0.5 = indistinguishable."""
    from sklearn.metrics import roc_auc_score
    from sklearn.svm import SVC

    (xf, yf), (xr, yr), (xt, yt) = forget, retain, test
    if len(yf) == 0 or len(yt) < 4 or len(yr) == 0:
        raise ValueError(f"MIA needs non-empty forget/retain sets and >= 4 test samples, got "
                         f"{len(yf)}/{len(yr)}/{len(yt)}")
    rng = np.random.default_rng(seed)
    pt = predict_proba(model, xt)
    perm = rng.permutation(len(yt))
    shadow_t, eval_t = perm[: len(perm) // 2], perm[len(perm) // 2:]
    pr = predict_proba(model, xr)
    r_idx = rng.permutation(len(yr))[: len(shadow_t)]
    ft = _features(pt, yt)
    x_fit = np.concatenate([_features(pr, yr)[r_idx], ft[shadow_t]])
    y_fit = np.concatenate([np.ones(len(r_idx)), np.zeros(len(shadow_t))])
    svc = SVC(C=3, gamma="auto", kernel="rbf").fit(x_fit, y_fit)
    pf = predict_proba(model, xf)
    ff = _features(pf, yf)
    x_ev = np.concatenate([ff, ft[eval_t]])
    y_ev = np.concatenate([np.ones(len(ff)), np.zeros(len(eval_t))])
    dec = svc.decision_function(x_ev)
    pred = svc.predict(x_ev)
    loss_ev = np.concatenate([_loss(pf, yf), _loss(pt, yt)[eval_t]])
    return {
        "mia_svc_auc": float(roc_auc_score(y_ev, dec)),
        "mia_svc_accuracy": float((pred == y_ev).mean()),
        "mia_efficacy": float((svc.predict(ff) == 0).mean()),  # SalUn: forget samples judged non-members
        "mia_loss_auc": float(roc_auc_score(y_ev, -loss_ev)),
    }


def accuracy_of(model, x: torch.Tensor, y: torch.Tensor) -> float:
    if len(y) == 0:
        return float("nan")
    return float((predict_proba(model, x).argmax(1) == y).float().mean())


def unlearning_report(model, forget: tuple[torch.Tensor, torch.Tensor], retain: tuple[torch.Tensor, torch.Tensor],
                      test: tuple[torch.Tensor, torch.Tensor], test_forget: tuple[torch.Tensor, torch.Tensor] | None = None,
                      with_mia: bool = True, seed: int = 0) -> dict[str, float]:
    """Forget/retain/test accuracy (and MIA). ``test_forget``: held-out samples of forgotten classes."""
    out = {"forget_acc": accuracy_of(model, *forget), "retain_acc": accuracy_of(model, *retain),
           "test_acc": accuracy_of(model, *test)}
    if test_forget is not None:
        out["test_forget_acc"] = accuracy_of(model, *test_forget)
    if with_mia and len(forget[1]) > 0:
        out.update(mia(model, forget, retain, test, seed=seed))
    return out


class UnlearningMetrics(PluginMetric[dict]):
    """After every evaluation, verifies what the strategy has forgotten so far.

    For a strategy with ``forget()`` (see ``avalanche_rm.strategies``) it
    reports, under ``Unlearn_<name>/eval_phase/<stream>_stream``: accuracy on
    all forgotten samples (``forget_acc``), on the retained training data
    (``retain_acc``), on the strategy's ``eval_data`` (``test_acc``) and, with
    ``mia=True``, the membership-inference AUCs on the forgotten samples.
    Nothing is reported before the first honoured request.
    """

    def __init__(self, mia: bool = True, seed: int = 0) -> None:
        super().__init__()
        self.with_mia, self.seed = mia, seed
        self._last: dict = {}

    def __str__(self) -> str:
        return "Unlearn"

    def result(self) -> dict:
        return dict(self._last)

    def reset(self) -> None:
        self._last = {}

    def after_eval(self, strategy):
        forgotten = getattr(strategy, "forgotten_data", None)
        if forgotten is None or len(forgotten[1]) == 0:
            return None
        model = strategy.model_for_forgetting()
        reg = strategy.registry
        test = strategy.eval_data if strategy.eval_data is not None else (reg.x[:0], reg.y[:0])
        vals = {"forget_acc": accuracy_of(model, *forgotten), "retain_acc": accuracy_of(model, reg.x, reg.y)}
        if len(test[1]):
            vals["test_acc"] = accuracy_of(model, *test)
            if self.with_mia and len(test[1]) >= 4 and len(reg.y):
                m = mia(model, forgotten, (reg.x, reg.y), test, seed=self.seed)
                vals.update({k: m[k] for k in ("mia_svc_auc", "mia_loss_auc")})
        self._last = vals
        stream = strategy.experience.origin_stream.name if strategy.experience is not None else "eval"
        x = strategy.clock.train_iterations
        return [MetricValue(self, f"Unlearn_{k}/eval_phase/{stream}_stream", v, x) for k, v in vals.items()]
