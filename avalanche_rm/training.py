"""Plain supervised training and evaluation loops used by jobs, examples and tests."""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn
from tqdm.auto import tqdm


def make_mlp(in_features: int = 64, hidden: int = 128, classes: int = 10) -> nn.Module:
    """The reference digits MLP (64-128-64-10 by default) used by the jobs, Flower setup and tests."""
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden // 2), nn.ReLU(),
                         nn.Linear(hidden // 2, classes))


def train_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: Iterable[nn.Parameter],
                     epochs: int = 30, lr: float = 1e-2, batch_size: int = 64, seed: int = 0,
                     desc: str = "train", progress: bool = True, on_step=None) -> list[float]:
    """Adam on minibatches; returns the mean loss per epoch. ``on_step()`` runs after each step."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be an int >= 0, got {epochs!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    params = [p for p in params]
    if not params:
        raise ValueError("no parameters to train")
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    dev = params[0].device
    x, y = x.to(dev), y.to(dev)
    losses = []
    model.train()
    for _ in tqdm(range(epochs), desc=desc, disable=not progress, leave=False):
        perm = torch.randperm(len(x), generator=gen).to(dev)
        tot = 0.0
        for i in range(0, len(x), batch_size):
            idx = perm[i:i + batch_size]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            if on_step is not None:
                on_step()
            tot += loss.item() * len(idx)
        losses.append(tot / max(len(x), 1))
    model.eval()
    return losses


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    """Top-1 accuracy in [0, 1]."""
    was = model.training
    model.eval()
    dev = next((b.device for b in list(model.parameters()) + list(model.buffers())), torch.device("cpu"))
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((model(x[i:i + batch_size].to(dev)).argmax(-1).cpu() == y[i:i + batch_size]).sum())
    model.train(was)
    return correct / max(len(x), 1)
