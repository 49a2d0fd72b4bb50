"""scikit-learn's bundled 8x8 digits (1,797 images): real data, no download."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch


@dataclass
class DigitsSplit:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    source: str = "scikit-learn load_digits (real, bundled)"


def load_digits_split(test_fraction: float = 0.25, seed: int = 0, flatten: bool = True) -> DigitsSplit:
    """Stratified train/test split of the digits, pixels scaled to [0, 1].

    ``flatten=False`` gives ``[N, 1, 8, 8]`` images for convolutional models.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    xtr, xte, ytr, yte = _split(test_fraction, seed)
    shape = (-1, 64) if flatten else (-1, 1, 8, 8)
    # copies: callers may modify their split without touching the cache
    return DigitsSplit(torch.from_numpy(xtr.copy()).reshape(shape), torch.from_numpy(ytr.copy()).long(),
                       torch.from_numpy(xte.copy()).reshape(shape), torch.from_numpy(yte.copy()).long())


@lru_cache(maxsize=8)
def _split(test_fraction: float, seed: int):
    """scikit-learn parses the bundled CSV on every call (~25 ms); parse each split once per process."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    return tuple(train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y))
