"""The hybrid design's data rule: data that may have to be forgotten never reaches the analogue base."""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from ..hardware.config import HardwareConfig
from ..nn.model import HybridModel, convert_to_hybrid
from ..training import train_classifier


class PrivateDataError(ValueError):
    """Private (forgettable) data was about to be written into analogue cells."""


def check_base_data(owners: torch.Tensor | None, private_owners: Iterable[int], allow_private: bool = False) -> None:
    """Raise :class:`PrivateDataError` if any sample belongs to a private owner (unless overridden)."""
    if owners is None or allow_private:
        return
    private = torch.tensor(sorted(set(int(o) for o in private_owners)), dtype=torch.long)
    hit = torch.isin(owners.long(), private)
    if bool(hit.any()):
        raise PrivateDataError(
            f"{int(hit.sum())} pre-training samples belong to private owners {sorted(set(owners[hit].tolist()))}: "
            "data that may be forgotten must stay in digital adapters; pass allow_private=True to override")


def pretrain_and_program(module: nn.Module, hardware: HardwareConfig, x: torch.Tensor, y: torch.Tensor, *,
                         owners: torch.Tensor | None = None, private_owners: Iterable[int] = (),
                         allow_private: bool = False, epochs: int = 30, lr: float = 1e-2, seed: int = 0,
                         progress: bool = False) -> HybridModel:
    """Train ``module`` in software on public data, then deploy it: convert and write-verify once."""
    check_base_data(owners, private_owners, allow_private)
    torch.manual_seed(seed)
    train_classifier(module, x, y, module.parameters(), epochs=epochs, lr=lr, seed=seed, desc="pretrain base",
                     progress=progress)
    model = convert_to_hybrid(module, hardware)
    model.program(seed=seed)
    return model
