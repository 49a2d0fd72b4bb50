"""Resistive-memory cell model: conductance window, levels, noise, drift and faults.

All conductances are in microsiemens (uS), times in seconds unless the name says
otherwise. The device config is a frozen dataclass validated on construction; the
functions below apply its physics to whole tensors of cells at once.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from .drift import DriftModel, LogGaussianDrift, NoDrift, PowerLawDrift
from .noise_models import ProgrammingNoise, ReadNoise
from ._validate import (
    check_choice,
    check_finite,
    check_fraction,
    check_int,
    check_non_negative,
    check_positive,
)

DRIFT_MODELS = ("none", "power_law", "log_gaussian")


@dataclass(frozen=True)
class RMDeviceConfig:
    """One resistive-memory cell type and the write-verify loop that programs it.

    Programming noise is applied on every write pulse: after a pulse the cell
    lands at ``g + write_gain * (g_target - g) + N(0, sigma(g_target))`` where
    ``sigma`` is ``prog_noise_rel_sigma * g_max_us`` or, when given, the
    polynomial ``sum(c_k * (g / g_max_us) ** k)`` (aihwkit's PCM form).
    ``verify_sense_energy_pj`` (the sense of one verify read) ``None``: derived by
    :mod:`avalanche_rm.costs.prices` (a window compare at the ADC's figure of merit).
    """

    g_min_us: float = 20.0
    g_max_us: float = 80.0
    n_levels: int | None = 64
    # programming (per write pulse)
    prog_noise_rel_sigma: float = 1.0 / 60.0
    prog_noise_poly_us: tuple[float, ...] | None = None
    write_gain: float = 0.6
    # write-verify loop
    wv_tolerance_us: float = 1.0
    wv_max_iterations: int = 50
    pulse_voltage_v: float = 2.0
    pulse_width_ns: float = 50.0
    wire_capacitance_ff: float = 20.0
    verify_voltage_v: float = 0.2
    verify_time_ns: float = 10.0
    verify_sense_energy_pj: float | None = None
    verify_guard_sigmas: float = 2.0
    # read
    read_noise_sigma_us: float = 0.0
    read_voltage_v: float = 0.2
    read_time_ns: float = 10.0
    # drift / relaxation after programming
    drift_model: str = "none"
    drift_t0_s: float = 1.0
    drift_nu_mean: float = 0.0
    drift_nu_std: float = 0.0
    drift_mean_us_per_ln_s: float = 0.0
    drift_std_us_per_sqrt_ln_s: float = 0.0
    # stuck-at faults: SA0 stuck at g_min (off), SA1 stuck at g_max (on)
    sa0_rate: float = 0.0
    sa1_rate: float = 0.0

    def __post_init__(self) -> None:
        o = "RMDeviceConfig"
        g_min = check_non_negative(o, "g_min_us", self.g_min_us)
        g_max = check_positive(o, "g_max_us", self.g_max_us)
        if g_max <= g_min:
            raise ValueError(
                f"{o}.g_max_us must be > g_min_us, got g_min_us={self.g_min_us!r}, "
                f"g_max_us={self.g_max_us!r}"
            )
        if self.n_levels is not None:
            check_int(o, "n_levels", self.n_levels, 2)
        check_non_negative(o, "prog_noise_rel_sigma", self.prog_noise_rel_sigma)
        if self.prog_noise_poly_us is not None:
            if len(self.prog_noise_poly_us) == 0:
                raise ValueError(f"{o}.prog_noise_poly_us must hold at least one coefficient")
            for c in self.prog_noise_poly_us:
                check_finite(o, "prog_noise_poly_us", c)
            object.__setattr__(self, "prog_noise_poly_us", tuple(float(c) for c in self.prog_noise_poly_us))
        gain = check_positive(o, "write_gain", self.write_gain)
        if gain > 1.0:
            raise ValueError(f"{o}.write_gain must lie in (0, 1], got {self.write_gain!r}")
        check_positive(o, "wv_tolerance_us", self.wv_tolerance_us)
        check_int(o, "wv_max_iterations", self.wv_max_iterations, 1)
        for f in ("pulse_voltage_v", "pulse_width_ns", "verify_voltage_v", "verify_time_ns",
                  "read_voltage_v", "read_time_ns", "drift_t0_s"):
            check_positive(o, f, getattr(self, f))
        for f in ("wire_capacitance_ff", "verify_guard_sigmas", "read_noise_sigma_us",
                  "drift_nu_std", "drift_std_us_per_sqrt_ln_s"):
            check_non_negative(o, f, getattr(self, f))
        for f in ("verify_sense_energy_pj",):  # optional: None means derived by avalanche_rm.costs.prices
            if getattr(self, f) is not None:
                check_non_negative(o, f, getattr(self, f))
        check_finite(o, "drift_nu_mean", self.drift_nu_mean)
        check_finite(o, "drift_mean_us_per_ln_s", self.drift_mean_us_per_ln_s)
        check_choice(o, "drift_model", self.drift_model, DRIFT_MODELS)
        sa0 = check_fraction(o, "sa0_rate", self.sa0_rate)
        sa1 = check_fraction(o, "sa1_rate", self.sa1_rate)
        if sa0 + sa1 > 1.0:
            raise ValueError(f"{o}.sa0_rate + sa1_rate must be <= 1, got {sa0 + sa1!r}")

    # ------------------------------------------------------------------ derived
    @property
    def g_range_us(self) -> float:
        return self.g_max_us - self.g_min_us

    @property
    def level_step_us(self) -> float:
        """Spacing of programmable levels; 0 for a continuous (``n_levels=None``) device."""
        if self.n_levels is None:
            return 0.0
        return self.g_range_us / (self.n_levels - 1)

    def replace(self, **changes) -> "RMDeviceConfig":
        """Copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ models the config selects
    def programming_noise(self) -> ProgrammingNoise:
        """Per-pulse programming-noise model (a constant or aihwkit's polynomial in g/g_max)."""
        coeffs = self.prog_noise_poly_us if self.prog_noise_poly_us is not None \
            else (self.prog_noise_rel_sigma * self.g_max_us,)
        return ProgrammingNoise(tuple(coeffs), self.g_max_us)

    def read_noise(self) -> ReadNoise:
        return ReadNoise(self.read_noise_sigma_us)

    def drift_law(self) -> DriftModel:
        """The drift model named by ``drift_model`` with this device's parameters."""
        if self.drift_model == "power_law":
            return PowerLawDrift(self.drift_t0_s, self.drift_nu_mean, self.drift_nu_std)
        if self.drift_model == "log_gaussian":
            return LogGaussianDrift(self.drift_t0_s, self.drift_mean_us_per_ln_s, self.drift_std_us_per_sqrt_ln_s)
        return NoDrift()


# ---------------------------------------------------------------------- level coding and faults
def quantize_to_levels(device: RMDeviceConfig, g_us: torch.Tensor) -> torch.Tensor:
    """Integer level index (0 .. n_levels-1) closest to each conductance."""
    if device.n_levels is None:
        raise ValueError("quantize_to_levels needs RMDeviceConfig.n_levels, got None (continuous device)")
    step = device.level_step_us
    idx = torch.round((g_us - device.g_min_us) / step)
    return idx.clamp_(0, device.n_levels - 1)


def level_to_conductance(device: RMDeviceConfig, level: torch.Tensor) -> torch.Tensor:
    return device.g_min_us + level.to(torch.float32) * device.level_step_us


def level_dtype(n_levels: int | None) -> torch.dtype:
    """Smallest dtype that stores a target level index (or its negative), or float32 for a continuous device."""
    if n_levels is None:
        return torch.float32
    if n_levels <= 128:
        return torch.int8
    if n_levels <= 32768:
        return torch.int16
    return torch.int32


def fault_mask(device: RMDeviceConfig, n_cells: int, generator: torch.Generator,
               device_str: torch.device | str = "cpu") -> torch.Tensor:
    """Per-cell fault code: 0 healthy, 1 stuck-at-0 (g_min), 2 stuck-at-1 (g_max).

    Drawn from ``generator`` so that a chip's faults are a fixed property of its seed.
    """
    code = torch.zeros(n_cells, dtype=torch.int8, device=device_str)
    if device.sa0_rate == 0.0 and device.sa1_rate == 0.0:
        return code
    u = torch.rand(n_cells, generator=generator, device=generator.device).to(device_str)
    code[u < device.sa0_rate] = 1
    code[(u >= device.sa0_rate) & (u < device.sa0_rate + device.sa1_rate)] = 2
    return code


def stuck_value_us(device: RMDeviceConfig, code: torch.Tensor, g_us: torch.Tensor) -> torch.Tensor:
    """``g_us`` with stuck cells (``code`` 1/2) at g_min / g_max."""
    g = torch.where(code == 1, torch.full_like(g_us, device.g_min_us), g_us)
    return torch.where(code == 2, torch.full_like(g_us, device.g_max_us), g)
