"""Conductance drift (relaxation) after programming: small model objects the device config selects.

Each model has two verbs, in aihwkit's spirit (``inference/noise``): draw the
per-cell coefficients that stay fixed for a chip (:meth:`coefficients`), and age
conductances from one time to another (:meth:`age`). Both models compose
exactly (ageing 0 -> a then a -> b equals 0 -> b in distribution), so an array
keeps only its current conductances. Results are not clamped here; the array
clamps to its device window.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def _randn(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


@dataclass(frozen=True)
class NoDrift:
    """Conductances stay where they were programmed."""

    def coefficients(self, n_cells: int, generator: torch.Generator) -> torch.Tensor | None:
        return None

    def age(self, g_us: torch.Tensor, t_from_s: float, t_to_s: float, generator: torch.Generator,
            coefficients: torch.Tensor | None = None) -> torch.Tensor:
        return g_us


@dataclass(frozen=True)
class PowerLawDrift:
    """PCM drift (Nandakumar et al. 2019, aihwkit ``PCMLikeNoiseModel``): ``g(t) = g(t1) ((t+t0)/(t1+t0))^-nu``.

    ``nu`` is a fixed per-cell exponent ~ N(``nu_mean``, ``nu_std``), clipped at 0.
    """

    t0_s: float
    nu_mean: float
    nu_std: float

    def coefficients(self, n_cells: int, generator: torch.Generator) -> torch.Tensor:
        nu = self.nu_mean + self.nu_std * torch.randn(n_cells, generator=generator, device=generator.device)
        return nu.clamp_min_(0.0)

    def age(self, g_us: torch.Tensor, t_from_s: float, t_to_s: float, generator: torch.Generator,
            coefficients: torch.Tensor | None = None) -> torch.Tensor:
        dln = math.log(t_to_s + self.t0_s) - math.log(t_from_s + self.t0_s)
        nu = coefficients if coefficients is not None else self.coefficients(g_us.numel(), generator)
        return g_us * torch.exp(-nu.to(g_us.device).view_as(g_us) * dln)


@dataclass(frozen=True)
class LogGaussianDrift:
    """RRAM relaxation (IBM CMO/HfOx as in aihwkit ``ReRamCMONoiseModel``): Brownian in ``ln(t + t0)``.

    Per unit of ln-time the conductance moves by ``mean_us`` on average with a
    standard deviation of ``std_us`` (independent per cell and per call).
    """

    t0_s: float
    mean_us_per_ln_s: float
    std_us_per_sqrt_ln_s: float

    def coefficients(self, n_cells: int, generator: torch.Generator) -> torch.Tensor | None:
        return None

    def age(self, g_us: torch.Tensor, t_from_s: float, t_to_s: float, generator: torch.Generator,
            coefficients: torch.Tensor | None = None) -> torch.Tensor:
        dln = math.log(t_to_s + self.t0_s) - math.log(t_from_s + self.t0_s)
        noise = _randn(tuple(g_us.shape), generator, g_us.device)
        return g_us + self.mean_us_per_ln_s * dln + self.std_us_per_sqrt_ln_s * math.sqrt(dln) * noise


DriftModel = NoDrift | PowerLawDrift | LogGaussianDrift
