"""Membership-inference attacks used to verify unlearning.

- Loss-threshold attack (Yeom et al. 2018): the per-sample loss ranks candidates;
  its ROC-AUC is reported.
- SVC attack (Unlearn-Saliency / SalUn ``SVC_MIA``): an RBF ``SVC(C=3, gamma="auto")``
  on (true-class confidence, entropy), fitted on retained samples (members) vs
  half of the test set (non-members), scored on the forget set; ``mia_efficacy``
  is the share of forgotten samples it calls non-members (SalUn's MIA-Efficacy).
  Both attacks first show they have power (members vs non-members they were not
  fitted on, AUC interval above 0.5) or report "no power" instead of a figure.
- LiRA (Carlini et al., S&P 2022) with shadow models: each shadow trains on a
  random half of a candidate population, and a sample's logit-scaled confidence
  on the target is scored by the likelihood ratio of the shadows that saw it
  (IN) against those that did not (OUT), with Gaussians of one global variance
  per side (their recommendation when shadows are few). On a hybrid chip the
  shadows are cheap: only an adapter trains, the base is fixed.
An AUC near 0.5 means the attacker cannot tell the candidates apart. Every
attack here is the simulator's measurement, not chip work: the ledger is paused.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from ..validation import check_int


@torch.no_grad()
def predict_proba(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Softmax outputs on ``x`` (eval mode, ledger paused), on the CPU."""
    ledger = getattr(model, "ledger", None)
    was = model.training
    model.eval()
    dev = next((t.device for t in list(model.parameters()) + list(model.buffers())), torch.device("cpu"))
    outs = []
    ctx = ledger.paused() if ledger is not None else torch.no_grad()
    with ctx:
        for i in range(0, len(x), batch_size):
            outs.append(F.softmax(model(x[i:i + batch_size].to(dev)).float(), dim=-1).cpu())
    model.train(was)
    return torch.cat(outs) if outs else torch.zeros(0)


def accuracy_of(model, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy in [0, 1] (NaN for an empty set)."""
    if len(y) == 0:
        return float("nan")
    return float((predict_proba(model, x).argmax(1) == y.cpu()).float().mean())


def _features(p: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    conf = p.gather(1, y.view(-1, 1)).squeeze(1).clamp_min(1e-12)
    ent = -(p.clamp_min(1e-12).log() * p).sum(1)
    return torch.stack([conf, ent], 1).numpy()


def _loss(p: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    return (-p.gather(1, y.view(-1, 1)).squeeze(1).clamp_min(1e-12).log()).numpy()


def roc_auc(members_score: np.ndarray, nonmembers_score: np.ndarray) -> float:
    """ROC-AUC of scores where higher means "member"."""
    from sklearn.metrics import roc_auc_score

    y = np.concatenate([np.ones(len(members_score)), np.zeros(len(nonmembers_score))])
    return float(roc_auc_score(y, np.concatenate([members_score, nonmembers_score])))


#: two-sided normal quantile of the reported intervals (95 %)
Z95 = 1.959963984540054


def auc_interval(auc: float, n_members: int, n_nonmembers: int, z: float = Z95) -> tuple[float, float]:
    """Confidence interval of a ROC-AUC from its Hanley-McNeil (1982) standard error, clipped to [0, 1]."""
    a, n1, n2 = float(auc), int(n_members), int(n_nonmembers)
    if n1 < 1 or n2 < 1 or math.isnan(a):
        return float("nan"), float("nan")
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n2 - 1) * (q2 - a * a)) / (n1 * n2)
    se = math.sqrt(max(var, 0.0))
    if se == 0.0:  # a perfect separation: the error formula degenerates; fall back to one sample's resolution
        se = 1.0 / math.sqrt(n1 * n2)
    return max(0.0, a - z * se), min(1.0, a + z * se)


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion (``successes`` of ``n``)."""
    if n < 1:
        return float("nan"), float("nan")
    p = successes / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def mia(model, forget: tuple[torch.Tensor, torch.Tensor], retain: tuple[torch.Tensor, torch.Tensor],
        test: tuple[torch.Tensor, torch.Tensor], seed: int = 0) -> dict[str, float]:
    """SVC and loss-threshold attacks on the forget set against held-out test data, with their power.

    Test data are split in halves: one trains the SVC (with as many retained
    samples as members), the other is the non-member reference. *Power* comes
    first: each attack is scored on retained samples it was not fitted on
    (members) against the reference half; an attack whose AUC interval holds
    0.5 cannot tell members from non-members on this model, and its forget-set
    figures are reported as NaN with ``mia_has_power = 0`` ("no power"), never
    as a number. Every AUC comes with a 95 % interval and its sample counts.
    """
    from sklearn.svm import SVC

    (xf, yf), (xr, yr), (xt, yt) = forget, retain, test
    if len(yf) == 0 or len(yt) < 4 or len(yr) < 2:
        raise ValueError(f"MIA needs a non-empty forget set, >= 2 retained and >= 4 test samples, got "
                         f"{len(yf)}/{len(yr)}/{len(yt)}")
    rng = np.random.default_rng(seed)
    pt = predict_proba(model, xt)
    perm = rng.permutation(len(yt))
    shadow_t, eval_t = perm[: len(perm) // 2], perm[len(perm) // 2:]
    pr = predict_proba(model, xr)
    r_perm = rng.permutation(len(yr))
    n_fit = min(len(shadow_t), len(yr) // 2)
    r_fit, r_held = r_perm[:n_fit], r_perm[n_fit:][: max(len(eval_t), 1) * 4]
    ft, fr = _features(pt, yt.cpu()), _features(pr, yr.cpu())
    x_fit = np.concatenate([fr[r_fit], ft[shadow_t]])
    y_fit = np.concatenate([np.ones(len(r_fit)), np.zeros(len(shadow_t))])
    svc = SVC(C=3, gamma="auto", kernel="rbf").fit(x_fit, y_fit)
    pf = predict_proba(model, xf)
    ff = _features(pf, yf.cpu())
    lt, lr, lf = -_loss(pt, yt.cpu())[eval_t], -_loss(pr, yr.cpu())[r_held], -_loss(pf, yf.cpu())
    dt, dr, df = svc.decision_function(ft[eval_t]), svc.decision_function(fr[r_held]), svc.decision_function(ff)
    out = {"mia_n_forget": float(len(yf)), "mia_n_test": float(len(eval_t)), "mia_n_retain": float(len(r_held))}
    for name, (m_score, f_score, t_score) in {"loss": (lr, lf, lt), "svc": (dr, df, dt)}.items():
        power = roc_auc(m_score, t_score)
        lo, hi = auc_interval(power, len(m_score), len(t_score))
        has = lo > 0.5
        auc = roc_auc(f_score, t_score)
        flo, fhi = auc_interval(auc, len(f_score), len(t_score))
        nan = float("nan")
        out.update({f"mia_{name}_power_auc": power, f"mia_{name}_power_lo": lo, f"mia_{name}_power_hi": hi,
                    f"mia_{name}_has_power": float(has), f"mia_{name}_auc": auc if has else nan,
                    f"mia_{name}_auc_lo": flo if has else nan, f"mia_{name}_auc_hi": fhi if has else nan})
    svc_power = bool(out["mia_svc_has_power"])
    out["mia_has_power"] = float(bool(out["mia_loss_has_power"]) or svc_power)
    out["mia_efficacy"] = float((svc.predict(ff) == 0).mean()) if svc_power else float("nan")
    out["mia_efficacy_lo"], out["mia_efficacy_hi"] = (
        wilson_interval(float((svc.predict(ff) == 0).sum()), len(yf)) if svc_power else (float("nan"),) * 2)
    return out


def format_auc(m: dict, name: str = "loss") -> str:
    """``"0.53 [0.41, 0.65] n=47/23"`` for an attack's forget-set AUC, or ``"no power (0.51 [0.44, 0.58])"``."""
    nf, nt = int(m.get("mia_n_forget", 0)), int(m.get("mia_n_test", 0))
    if f"mia_{name}_has_power" not in m:
        return "-"
    if not m[f"mia_{name}_has_power"]:
        return (f"no power ({m[f'mia_{name}_power_auc']:.2f} [{m[f'mia_{name}_power_lo']:.2f}, "
                f"{m[f'mia_{name}_power_hi']:.2f}])")
    return f"{m[f'mia_{name}_auc']:.2f} [{m[f'mia_{name}_auc_lo']:.2f}, {m[f'mia_{name}_auc_hi']:.2f}] n={nf}/{nt}"


def logit_confidence(model, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """LiRA's statistic: ``log p_y - log(1 - p_y)`` of the model on each sample."""
    p = predict_proba(model, x).double().gather(1, y.cpu().view(-1, 1)).squeeze(1)
    p = p.clamp(1e-12, 1 - 1e-12)
    return (p.log() - (1 - p).log()).numpy()


class LiRA:
    """Likelihood-ratio membership attack with shadow models over a fixed candidate population.

    ``train_fn(x, y, seed)`` returns a model trained the way the target was (for
    a hybrid chip: an adapter on the same programmed base). Each of ``n_shadows``
    shadows trains on a random half of ``(x, y)``.
    """

    def __init__(self, train_fn: Callable[[torch.Tensor, torch.Tensor, int], torch.nn.Module], x: torch.Tensor,
                 y: torch.Tensor, n_shadows: int = 8, seed: int = 0) -> None:
        check_int(n_shadows, "n_shadows", 2)
        self.x, self.y = x, y
        gen = torch.Generator().manual_seed(seed)
        n = len(y)
        # balanced halves: every candidate is IN for half of the shadows
        masks = []
        for k in range(n_shadows // 2):
            perm = torch.randperm(n, generator=gen)
            m = torch.zeros(n, dtype=torch.bool)
            m[perm[: n // 2]] = True
            masks += [m, ~m]
        if n_shadows % 2:
            m = torch.zeros(n, dtype=torch.bool)
            m[torch.randperm(n, generator=gen)[: n // 2]] = True
            masks.append(m)
        self.in_mask = torch.stack(masks)                      # [K, N]
        phis = []
        for k, m in enumerate(masks):
            shadow = train_fn(x[m], y[m], seed * 1000 + k)
            phis.append(logit_confidence(shadow, x, y))
            del shadow
        self.phi = np.stack(phis)                              # [K, N]

    def scores(self, model, index: torch.Tensor) -> np.ndarray:
        """Log-likelihood ratios (higher = member) of the population samples ``index`` under ``model``."""
        idx = index.cpu().numpy()
        target = logit_confidence(model, self.x[index], self.y[index])
        phi, m = self.phi[:, idx], self.in_mask[:, idx].numpy()
        mu_in = np.where(m.any(0), (phi * m).sum(0) / np.maximum(m.sum(0), 1), np.nan)
        mu_out = np.where((~m).any(0), (phi * ~m).sum(0) / np.maximum((~m).sum(0), 1), np.nan)
        res_in = (phi - mu_in)[m]
        res_out = (phi - mu_out)[~m]
        s_in = max(float(np.std(res_in)) if res_in.size > 1 else 1.0, 1e-3)
        s_out = max(float(np.std(res_out)) if res_out.size > 1 else 1.0, 1e-3)

        def logpdf(v, mu, s):
            return -0.5 * ((v - mu) / s) ** 2 - math.log(s)

        return np.nan_to_num(logpdf(target, mu_in, s_in) - logpdf(target, mu_out, s_out), nan=0.0)

    def auc(self, model, members: torch.Tensor, nonmembers: torch.Tensor) -> float:
        """ROC-AUC separating population indices ``members`` from ``nonmembers`` under ``model``."""
        return roc_auc(self.scores(model, members), self.scores(model, nonmembers))
