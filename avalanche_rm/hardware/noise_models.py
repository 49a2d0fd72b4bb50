"""Programming and read noise of a resistive-memory cell: small model objects the device config selects."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ProgrammingNoise:
    """Per-pulse programming noise: ``sigma(g) = sum_k c_k (g / g_max)^k`` uS (aihwkit's PCM polynomial form).

    One coefficient is a constant sigma; the cell lands at
    ``g + gain (target - g) + N(0, sigma(target))`` after a pulse.
    """

    coefficients_us: tuple[float, ...]
    g_max_us: float

    @property
    def constant_us(self) -> float | None:
        """The sigma when it does not depend on the target, else ``None``."""
        return self.coefficients_us[0] if len(self.coefficients_us) == 1 else None

    def sigma_us(self, g_target_us: torch.Tensor) -> torch.Tensor:
        x = g_target_us / self.g_max_us
        sigma = torch.zeros_like(g_target_us)
        for c in reversed(self.coefficients_us):  # Horner
            sigma = sigma * x + c
        return sigma.clamp_min(0.0)


@dataclass(frozen=True)
class ReadNoise:
    """Gaussian read noise of one cell read, ``sigma_us`` (short-term, independent per read)."""

    sigma_us: float

    def column_sigma_us(self, cells_per_read: int) -> float:
        """Std of a sensed column current per unit of (normalised) input norm.

        A column read sums independent cell errors, so the sum is drawn directly as
        ``sigma * ||x|| * sqrt(cells)`` (one draw per column read instead of one per cell);
        ``cells_per_read`` is 2 for a differential pair and for a cell sensed against a
        reference cell.
        """
        return self.sigma_us * cells_per_read ** 0.5
