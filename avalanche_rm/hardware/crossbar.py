"""Crossbar array: tiling, weight <-> conductance mapping, analogue MVM and its energy.

A weight matrix ``W [out, in]`` is cut into tiles of ``rows`` inputs by
``cols`` physical columns. Inputs drive rows through DACs; each tile's column
currents are digitised by ADCs (``col_mux`` columns share one ADC) and the
partial sums of the input tiles are added digitally.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from ._validate import check_choice, check_finite, check_int, check_non_negative, check_positive
from .device import RMDeviceConfig

MAPPINGS = ("differential", "offset")
SCALE_MODES = ("tensor", "column")


@dataclass(frozen=True)
class CrossbarConfig:
    """Array geometry and periphery.

    ``mapping="differential"`` stores each weight on a pair (G+, G-), both at
    ``g_min`` for zero; ``mapping="offset"`` stores it on one cell around
    ``g_zero_us`` with a reference current subtracted before the ADC (the
    reference chip's scheme: 20-80 uS, zero at 50 uS).
    ``adc_range_fraction`` is the ADC full scale as a fraction of the largest
    current a tile column can carry; ``1.0`` never clips.
    """

    rows: int = 128
    cols: int = 128
    mapping: str = "differential"
    g_zero_us: float | None = None
    weight_scale: str = "tensor"
    dac_bits: int | None = 8
    adc_bits: int | None = 8
    adc_range_fraction: float = 1.0
    adc_energy_pj: float = 2.0
    adc_time_ns: float = 10.0
    dac_energy_pj: float = 0.05
    col_mux: int = 8
    program_parallel_cells: int = 128

    def __post_init__(self) -> None:
        o = "CrossbarConfig"
        check_int(o, "rows", self.rows, 1)
        check_int(o, "cols", self.cols, 1)
        check_choice(o, "mapping", self.mapping, MAPPINGS)
        check_choice(o, "weight_scale", self.weight_scale, SCALE_MODES)
        if self.mapping == "differential" and self.cols < 2:
            raise ValueError(f"{o}.cols must be >= 2 for differential mapping, got {self.cols!r}")
        if self.g_zero_us is not None:
            check_finite(o, "g_zero_us", self.g_zero_us)
        if self.dac_bits is not None:
            check_int(o, "dac_bits", self.dac_bits, 2)
        if self.adc_bits is not None:
            check_int(o, "adc_bits", self.adc_bits, 2)
        frac = check_positive(o, "adc_range_fraction", self.adc_range_fraction)
        if frac > 1.0:
            raise ValueError(f"{o}.adc_range_fraction must lie in (0, 1], got {self.adc_range_fraction!r}")
        for f in ("adc_energy_pj", "adc_time_ns", "dac_energy_pj"):
            check_non_negative(o, f, getattr(self, f))
        check_int(o, "col_mux", self.col_mux, 1)
        check_int(o, "program_parallel_cells", self.program_parallel_cells, 1)

    @property
    def cells_per_weight(self) -> int:
        return 2 if self.mapping == "differential" else 1

    @property
    def weights_per_tile_col(self) -> int:
        """Output weights that fit across one tile's columns."""
        return self.cols // self.cells_per_weight

    def replace(self, **changes) -> "CrossbarConfig":
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class TileGrid:
    """How an ``[out, in]`` matrix lies on tiles."""

    out_features: int
    in_features: int
    n_in_tiles: int
    n_out_tiles: int
    in_padded: int

    @property
    def n_tiles(self) -> int:
        return self.n_in_tiles * self.n_out_tiles


def tile_grid(xbar: CrossbarConfig, out_features: int, in_features: int) -> TileGrid:
    n_in = math.ceil(in_features / xbar.rows)
    n_out = math.ceil(out_features / xbar.weights_per_tile_col)
    return TileGrid(out_features, in_features, n_in, n_out, n_in * xbar.rows)


# ------------------------------------------------------------------ mapping
def zero_conductance_us(xbar: CrossbarConfig, device: RMDeviceConfig) -> float:
    """Conductance that encodes weight 0 on one cell."""
    if xbar.mapping == "differential":
        return device.g_min_us
    if xbar.g_zero_us is not None:
        return xbar.g_zero_us
    return 0.5 * (device.g_min_us + device.g_max_us)


def weight_scale_us(xbar: CrossbarConfig, device: RMDeviceConfig, weight: torch.Tensor) -> torch.Tensor:
    """uS per unit weight: the largest |w| (per tensor or per output column) uses the full swing."""
    if xbar.mapping == "differential":
        swing = device.g_max_us - device.g_min_us
    else:
        g0 = zero_conductance_us(xbar, device)
        if not device.g_min_us <= g0 <= device.g_max_us:
            raise ValueError(
                f"CrossbarConfig.g_zero_us must lie inside the device window "
                f"[{device.g_min_us}, {device.g_max_us}], got {g0!r}"
            )
        swing = min(device.g_max_us - g0, g0 - device.g_min_us)
        if swing <= 0:
            raise ValueError(f"CrossbarConfig.g_zero_us={g0!r} leaves no conductance swing")
    if xbar.weight_scale == "tensor":
        wmax = weight.abs().max().reshape(1)
    else:
        wmax = weight.abs().amax(dim=1)
    wmax = torch.where(wmax > 0, wmax, torch.ones_like(wmax))
    return (swing / wmax).to(torch.float32)


def weight_to_conductance(xbar: CrossbarConfig, device: RMDeviceConfig, weight: torch.Tensor,
                          scale_us: torch.Tensor) -> torch.Tensor:
    """Target conductances, shape ``[cells_per_weight, out, in]``, before level quantisation."""
    s = scale_us.view(-1, 1) if scale_us.numel() > 1 else scale_us
    if xbar.mapping == "differential":
        g_pos = device.g_min_us + (weight.clamp_min(0) * s)
        g_neg = device.g_min_us + ((-weight).clamp_min(0) * s)
        return torch.stack([g_pos, g_neg]).clamp_(device.g_min_us, device.g_max_us)
    g0 = zero_conductance_us(xbar, device)
    return (g0 + weight * s).clamp_(device.g_min_us, device.g_max_us).unsqueeze(0)


def conductance_to_weight(xbar: CrossbarConfig, device: RMDeviceConfig, g_us: torch.Tensor,
                          scale_us: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`weight_to_conductance` (same shapes)."""
    s = scale_us.view(-1, 1) if scale_us.numel() > 1 else scale_us
    return delta_conductance(xbar, device, g_us) / s


def delta_conductance(xbar: CrossbarConfig, device: RMDeviceConfig, g_us: torch.Tensor) -> torch.Tensor:
    """Signed conductance that the column sensing sees (drops the cell axis), in uS."""
    if xbar.mapping == "differential":
        return g_us[0] - g_us[1]
    return g_us[0] - zero_conductance_us(xbar, device)


# ------------------------------------------------------------------ MVM
def _quantize_symmetric(x: torch.Tensor, bound: torch.Tensor, bits: int) -> torch.Tensor:
    """Uniform mid-tread quantiser on [-bound, bound] with 2^(bits-1)-1 positive steps; clips."""
    n = float(2 ** (bits - 1) - 1)
    step = bound / n
    return torch.round(torch.clamp(x / step, -n, n)) * step


def dac_quantize(xbar: CrossbarConfig, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantise inputs to ``dac_bits`` with a per-sample abs-max range.

    Returns the quantised input normalised to [-1, 1] and the per-sample scale.
    """
    alpha = x.abs().amax(dim=-1, keepdim=True)
    alpha = torch.where(alpha > 0, alpha, torch.ones_like(alpha))
    xn = x / alpha
    if xbar.dac_bits is not None:
        n = float(2 ** (xbar.dac_bits - 1) - 1)
        xn = torch.round(xn * n) / n
    return xn, alpha


def adc_full_scale_us(xbar: CrossbarConfig, dg_tiles_us: torch.Tensor) -> torch.Tensor:
    """ADC full scale (uS x normalised input) calibrated on the programmed array.

    The largest current any tile column can carry for inputs in [-1, 1] is
    ``max_col sum_rows |dG|``; the ADC range is ``adc_range_fraction`` of it
    (CrossSim's "calibrated range"). ``1.0`` never clips; smaller values trade
    clipping of rare large sums for finer steps.
    """
    worst = dg_tiles_us.abs().sum(dim=1).amax()
    worst = torch.where(worst > 0, worst, torch.ones_like(worst))
    return (xbar.adc_range_fraction * worst).reshape(())


def analog_mvm(xbar: CrossbarConfig, device: RMDeviceConfig, x: torch.Tensor, dg_tiles_us: torch.Tensor,
               grid: TileGrid, adc_fs_us: torch.Tensor, generator: torch.Generator | None,
               read_noise: bool = True) -> torch.Tensor:
    """Analogue ``x @ dG`` over tiles, returned in uS x (normalised input) units, ``[B, out]``.

    ``x`` is ``[B, in]`` already DAC-normalised; ``dg_tiles_us`` is the signed
    conductance laid out as ``[n_in_tiles, rows, out]``. Read noise is
    Gaussian per cell per read; the sum of ``rows`` independent cell errors on
    one column is drawn directly as ``sigma * ||x_tile|| * sqrt(cells_per_weight)``
    (the same distribution, one draw per column read instead of one per cell).
    Each tile's column sums are clipped and rounded by its ADC before the
    digital accumulation over input tiles.
    """
    b = x.shape[0]
    if grid.n_in_tiles == 1:
        # one input tile: no padding to the full row count needed
        xt = x.unsqueeze(0)
        partial = (x @ dg_tiles_us[0, : grid.in_features]).unsqueeze(0)
    else:
        if grid.in_padded != grid.in_features:
            x = torch.nn.functional.pad(x, (0, grid.in_padded - grid.in_features))
        xt = x.view(b, grid.n_in_tiles, xbar.rows).transpose(0, 1)  # [T, B, rows]
        partial = torch.bmm(xt, dg_tiles_us)  # [T, B, out]
    sigma = device.read_noise_sigma_us
    if read_noise and sigma > 0:
        norm = torch.linalg.vector_norm(xt, dim=-1, keepdim=True).mul_(sigma * math.sqrt(xbar.cells_per_weight))
        noise = torch.randn(partial.shape, generator=generator, device=partial.device, dtype=partial.dtype)
        partial.addcmul_(noise, norm)
    if xbar.adc_bits is None:
        return partial.sum(0)
    # ADC: clip to the calibrated full scale and round to integer codes, in place
    n = float(2 ** (xbar.adc_bits - 1) - 1)
    step = adc_fs_us / n
    partial.div_(step).clamp_(-n, n).round_()
    return partial.sum(0).mul_(step)


def tile_layout(dg_us: torch.Tensor, grid: TileGrid, rows: int) -> torch.Tensor:
    """Input-major ``[in, out]`` signed conductances -> ``[n_in_tiles, rows, out]`` (zero-padded)."""
    w = dg_us
    if grid.in_padded != grid.in_features:
        w = torch.nn.functional.pad(w, (0, 0, 0, grid.in_padded - grid.in_features))
    return w.reshape(grid.n_in_tiles, rows, grid.out_features)


# ------------------------------------------------------------------ energy
@dataclass
class MVMCost:
    """Counted quantities of one batch of analogue MVMs (tensors stay on device)."""

    analog_macs: torch.Tensor
    dac_conversions: torch.Tensor
    adc_conversions: float
    cell_energy_pj: torch.Tensor
    dac_energy_pj: torch.Tensor
    adc_energy_pj: float
    latency_ns: float


def mvm_cost(xbar: CrossbarConfig, device: RMDeviceConfig, x: torch.Tensor, g_row_sum_us: torch.Tensor,
             grid: TileGrid, n_vectors: int, cells_per_weight: int) -> MVMCost:
    """Energy of ``n_vectors`` MVMs: DAC per driven row, cells, ADC per column read.

    Only rows whose input is non-zero are driven (event-driven), so a silent
    input costs no DAC conversion, no cell current and no analogue MAC.
    ``x`` is the DAC-normalised input in ``[-1, 1]``, ``[n_vectors, in]``;
    ``g_row_sum_us`` is the total conductance on each input row ``[in]``.
    """
    xx = x * x
    n_active_rows = (xx > 0).sum()
    analog_macs = n_active_rows * (grid.out_features * cells_per_weight)
    dac_conv = n_active_rows * grid.n_out_tiles
    # cell energy = sum_i V_read^2 |x_i|^2 G_row_i t_read  (input amplitude scales the read voltage)
    v2t = device.read_voltage_v ** 2 * device.read_time_ns * 1e-3
    cell_e = torch.dot(xx.sum(0), g_row_sum_us) * v2t
    # differential pairs are sensed as one current difference: one conversion per weight column
    adc_conv = float(n_vectors * grid.n_in_tiles * grid.out_features)
    adc_e = adc_conv * xbar.adc_energy_pj
    # tiles run in parallel; each vector needs col_mux sequential ADC rounds
    per_vec_ns = device.read_time_ns + xbar.col_mux * xbar.adc_time_ns
    return MVMCost(analog_macs, dac_conv, adc_conv, cell_e, dac_conv * xbar.dac_energy_pj, adc_e,
                   n_vectors * per_vec_ns)
