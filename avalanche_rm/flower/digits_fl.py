"""A ready-made federated digits setup: public base, one owner per client (used by tests, examples, CLI)."""
from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

# no Avalanche import here: each ClientApp process of the deployment engine imports this module
from ..data import assign_owners, load_digits_split
from ..training import make_mlp, train_classifier
from .client import ClientData


@lru_cache(maxsize=4)
def _pretrained_state(seed: int, public_fraction: float):
    d = load_digits_split(seed=seed)
    n = len(d.y_train)
    pub = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))[: int(public_fraction * n)]
    torch.manual_seed(seed)
    m = make_mlp()
    train_classifier(m, d.x_train[pub], d.y_train[pub], m.parameters(), epochs=30, seed=seed, progress=False)
    return {k: v.clone() for k, v in m.state_dict().items()}, pub


def base_fn(seed: int = 0, public_fraction: float = 0.3) -> nn.Module:
    """The pre-trained software base (identical on every client; cached per process)."""
    m = make_mlp()
    m.load_state_dict(_pretrained_state(seed, public_fraction)[0])
    return m


def calibration_fn(seed: int = 0, public_fraction: float = 0.3) -> torch.Tensor:
    """Public inputs to calibrate every chip's ADCs (the data the base was trained on)."""
    d = load_digits_split(seed=seed)
    return d.x_train[_pretrained_state(seed, public_fraction)[1]]


def data_fn(partition_id: int, num_partitions: int, seed: int = 0, public_fraction: float = 0.3) -> ClientData:
    """Client ``partition_id`` owns the private training samples assigned to owner ``partition_id``."""
    d = load_digits_split(seed=seed)
    n = len(d.y_train)
    _, pub = _pretrained_state(seed, public_fraction)
    owners = assign_owners(n, num_partitions, seed)
    private = torch.ones(n, dtype=torch.bool)
    private[pub] = False
    mine = private & (owners == partition_id)
    ids = torch.arange(n)
    tmask = assign_owners(len(d.y_test), num_partitions, seed + 3) == partition_id
    return ClientData(d.x_train[mine], d.y_train[mine], ids[mine], d.x_test[tmask], d.y_test[tmask])
