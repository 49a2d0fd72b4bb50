"""Plain supervised training and evaluation loops used by jobs, examples and tests."""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from .nn.chip import ChipModel
from .validation import check_int


def make_mlp(in_features: int = 64, hidden: int = 128, classes: int = 10) -> nn.Module:
    """The reference digits MLP (64-128-64-10 by default) used by the jobs, Flower setup and tests."""
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden // 2), nn.ReLU(),
                         nn.Linear(hidden // 2, classes))


LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]


def ce_loss(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Cross-entropy of ``model(xb)`` against ``yb`` (a :data:`LossFn`)."""
    return nn.functional.cross_entropy(model(xb), yb)


def run_epochs(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn,
               epochs: int, batch_size: int, seed: int = 0, desc: str = "train", progress: bool = True,
               after_step: Callable[[torch.optim.Optimizer], None] | None = None) -> list[float]:
    """Shuffled minibatch epochs of ``loss_fn(model, xb, yb, generator)`` on the optimiser's device.

    Returns the mean loss per epoch; ``after_step(opt)`` runs after each step.
    A chip model gets the optimiser attached, so each step is charged. The
    model is left in eval mode.
    """
    if isinstance(model, ChipModel):
        model.attach_optimizer(opt)  # every step of a chip model is charged (idempotent)
    gen = torch.Generator().manual_seed(seed)
    dev = opt.param_groups[0]["params"][0].device
    x, y = x.to(dev), y.to(dev)
    losses = []
    model.train()
    for _ in tqdm(range(epochs), desc=desc, disable=not progress, leave=False):
        perm = torch.randperm(len(x), generator=gen).to(dev)
        tot = 0.0
        for i in range(0, len(x), batch_size):
            idx = perm[i:i + batch_size]
            opt.zero_grad()
            loss = loss_fn(model, x[idx], y[idx], gen)
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step(opt)
            tot += loss.item() * len(idx)
        losses.append(tot / max(len(x), 1))
    model.eval()
    return losses


def train_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: Iterable[nn.Parameter],
                     epochs: int = 30, lr: float = 1e-2, batch_size: int = 64, seed: int = 0,
                     desc: str = "train", progress: bool = True, on_step=None) -> list[float]:
    """Adam on minibatches; returns the mean loss per epoch. ``on_step()`` runs after each step."""
    check_int(epochs, "epochs", 0)
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    params = [p for p in params]
    if not params:
        raise ValueError("no parameters to train")
    return run_epochs(model, torch.optim.Adam(params, lr=lr), x, y, ce_loss, epochs, batch_size, seed, desc, progress,
                      None if on_step is None else lambda opt: on_step())


@torch.no_grad()
def predictions(model: nn.Module, x: torch.Tensor, batch_size: int = 512, n_classes: int | None = None) -> torch.Tensor:
    """Arg-max class per sample (computed on the model's device, returned on CPU); ``n_classes`` limits the logits."""
    was = model.training
    model.eval()
    dev = next((t.device for t in list(model.parameters()) + list(model.buffers())), torch.device("cpu"))
    out = []
    for i in range(0, len(x), batch_size):
        logits = model(x[i:i + batch_size].to(dev))
        if n_classes is not None:
            logits = logits[:, :n_classes]
        out.append(logits.argmax(-1).cpu())
    model.train(was)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    """Top-1 accuracy in [0, 1]."""
    return int((predictions(model, x, batch_size) == y.cpu()).sum()) / max(len(x), 1)
