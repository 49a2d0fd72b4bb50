"""The hybrid design's data rule: data that may have to be forgotten never reaches the analogue base.

Programming a base needs a statement of where its training data came from:
either per-sample ``owners`` (every one must be :data:`PUBLIC_OWNER`; a private
owner's sample is refused), or ``public=True``, an explicit statement that the
whole set is public and will never be the subject of a forget request.
"""
from __future__ import annotations

import torch
from torch import nn

from ..hardware.config import HardwareConfig
from ..nn.model import HybridModel, convert_to_hybrid
from ..training import train_classifier

#: owner id of public data (anything else is a private owner's)
PUBLIC_OWNER = -1


class PrivateDataError(ValueError):
    """Private (forgettable) data, or data of unstated provenance, was about to be written into analogue cells."""


def check_base_data(n_samples: int, owners: torch.Tensor | None, public: bool, allow_private: bool = False) -> None:
    """Raise :class:`PrivateDataError` unless the base's training data are stated to be public."""
    if allow_private:
        return
    if owners is None:
        if not public:
            raise PrivateDataError(
                "state where the base's training data come from: pass owners= (one id per sample, "
                f"{PUBLIC_OWNER} for public data) or public=True; data that may be forgotten must stay in digital "
                "adapters")
        return
    owners = torch.as_tensor(owners)
    if owners.numel() != n_samples:
        raise PrivateDataError(f"owners has {owners.numel()} entries for {n_samples} samples")
    private = owners.long() != PUBLIC_OWNER
    if bool(private.any()):
        raise PrivateDataError(
            f"{int(private.sum())} pre-training samples belong to private owners "
            f"{sorted(set(owners[private].tolist()))[:10]}: data that may be forgotten must stay in digital "
            "adapters; pass allow_private=True to override")


def pretrain_and_program(module: nn.Module, hardware: HardwareConfig, x: torch.Tensor, y: torch.Tensor, *,
                         owners: torch.Tensor | None = None, public: bool = False, allow_private: bool = False,
                         epochs: int = 30, lr: float = 1e-2, seed: int = 0, calibration_samples: int = 512,
                         progress: bool = False) -> HybridModel:
    """Train ``module`` in software on public data, then deploy it: convert, write-verify once, calibrate the ADCs.

    The ADC ranges are calibrated on (up to ``calibration_samples`` of) the same
    public data, which therefore never includes anything forgettable either.
    """
    check_base_data(len(y), owners, public, allow_private)
    torch.manual_seed(seed)
    train_classifier(module, x, y, module.parameters(), epochs=epochs, lr=lr, seed=seed, desc="pretrain base",
                     progress=progress)
    model = convert_to_hybrid(module, hardware)
    dev = next(module.parameters()).device
    model.program(seed=seed, calibration_data=x[:calibration_samples].to(dev))
    model.base_classes = torch.unique(torch.as_tensor(y)).tolist()
    return model
