"""DDPM training objective, the reference's forgetting target, and ancestral sampling with guidance.

As the reference DiT code (``gaussian_diffusion.py``): epsilon prediction on a
linear beta schedule, and for unlearning the ``"CG"`` objective, which replaces
the epsilon target of forgotten-class samples by uniform random noise.
"""
from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from ..unlearning import ObjectiveContext, get_objective
from ..validation import check_int


class DiffusionSchedule:
    """Linear beta schedule over ``steps`` (DiT's 1e-4..0.02 for 1,000 steps, rescaled to ``steps``)."""

    def __init__(self, steps: int = 100, beta_start: float = 1e-4, beta_end: float = 0.02) -> None:
        check_int(steps, "diffusion steps", 2)
        scale = 1000.0 / steps
        self.steps = steps
        self.betas = torch.linspace(scale * beta_start, scale * beta_end, steps, dtype=torch.float64)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, 0)
        prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])
        self.posterior_var = self.betas * (1 - prev) / (1 - self.alphas_cumprod)
        self.coef_x0 = self.betas * prev.sqrt() / (1 - self.alphas_cumprod)
        self.coef_xt = (1 - prev) * self.alphas.sqrt() / (1 - self.alphas_cumprod)

    def _at(self, v: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return v.to(like.device)[t].to(like.dtype).unsqueeze(-1)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        a = self._at(self.alphas_cumprod, t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise


def diffusion_loss(schedule: DiffusionSchedule, null_label: int, forget_classes: list[int] | None = None,
                   p_uncond: float = 0.1, hold_share: float = 0.0, method: str = "random_target",
                   options: dict | None = None):
    """Loss for :func:`avalanche_rm.scenarios.common.fit`: MSE to epsilon, labels dropped with ``p_uncond``.

    Samples of ``forget_classes`` get a uniform-noise target instead of their
    epsilon (the reference's ``mu_type='CG'``), which steers their generations
    away from the class. ``hold_share > 0`` keeps a forgetting in place while
    other classes are learnt, without the forgotten data: that share of each
    batch is relabelled to a random forgotten class and gets the noise target.
    ``method`` (with ``options``) is the registered regression objective applied to forgotten samples.
    """
    forget = torch.tensor(forget_classes or [], dtype=torch.long)
    if hold_share and not len(forget):
        raise ValueError("hold_share needs forget_classes")
    objective = get_objective(method, **dict(options or {}))

    def loss(model: nn.Module, x0: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        n = len(x0)
        if hold_share:
            hold = (torch.rand(n, generator=gen) < hold_share).to(y.device)
            draw = forget[torch.randint(len(forget), (n,), generator=gen)].to(y.device)
            y = torch.where(hold, draw, y)
        t = torch.randint(schedule.steps, (n,), generator=gen).to(x0.device)
        noise = torch.randn(x0.shape, generator=gen).to(x0.device)
        drop = (torch.rand(n, generator=gen) < p_uncond).to(y.device)
        y_in = torch.where(drop, torch.full_like(y, null_label), y)
        pred = model(schedule.q_sample(x0, t, noise), t, y_in)
        if not len(forget):
            return nn.functional.mse_loss(pred, noise)
        # the registered "random_target" objective: forgotten samples regress to uniform noise (reference "CG")
        ctx = ObjectiveContext(n_classes=null_label, generator=gen)
        return objective.loss(pred, noise, torch.isin(y, forget.to(y.device)), ctx)

    return loss


@torch.no_grad()
def sample(model: nn.Module, schedule: DiffusionSchedule, labels: torch.Tensor, data_dim: int, null_label: int,
           guidance: float = 1.0, seed: int = 0, progress: bool = False) -> torch.Tensor:
    """Ancestral DDPM sampling of one sample per label, clipped to [-1, 1].

    Classifier-free guidance ``eps = (1 + w) eps(y) - w eps(null)`` with
    ``w = guidance`` (0 = plain conditional); both halves run in one batch.
    """
    was = model.training
    model.eval()
    dev = next((t.device for t in list(model.parameters()) + list(model.buffers())), torch.device("cpu"))
    gen = torch.Generator().manual_seed(seed)
    n = len(labels)
    y = labels.to(dev)
    x = torch.randn(n, data_dim, generator=gen).to(dev)
    y2 = torch.cat([y, torch.full_like(y, null_label)]) if guidance else y
    ac = schedule.alphas_cumprod
    for i in tqdm(reversed(range(schedule.steps)), total=schedule.steps, desc="sampling", disable=not progress,
                  leave=False):
        t = torch.full((len(y2),), i, device=dev, dtype=torch.long)
        eps = model(torch.cat([x, x]) if guidance else x, t, y2)
        if guidance:
            eps = (1 + guidance) * eps[:n] - guidance * eps[n:]
        a = float(ac[i])
        x0 = ((x - (1 - a) ** 0.5 * eps) / a ** 0.5).clamp(-1, 1)
        mean = float(schedule.coef_x0[i]) * x0 + float(schedule.coef_xt[i]) * x
        if i > 0:
            x = mean + float(schedule.posterior_var[i]) ** 0.5 * torch.randn(x.shape, generator=gen).to(dev)
        else:
            x = mean
    model.train(was)
    return x.clamp(-1, 1).cpu()
