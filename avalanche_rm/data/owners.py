"""Which data owner each sample belongs to (shared by the Avalanche streams and the Flower partitions)."""
from __future__ import annotations

import torch

from ..validation import check_int


def assign_owners(n: int, n_owners: int, seed: int) -> torch.Tensor:
    """Deterministic, balanced owner ids in ``0..n_owners-1`` for ``n`` samples."""
    check_int(n_owners, "n_owners", 1)
    gen = torch.Generator().manual_seed(seed + 7919)
    return (torch.randperm(n, generator=gen) % n_owners).long()
