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
from .noise_source import NormalSource
from .workspace import Workspace

MAPPINGS = ("differential", "offset")
SCALE_MODES = ("tensor", "column")
# floor of the DAC scale: n_d / floor stays finite in float32, and an all-zero input still codes to 0
ALPHA_FLOOR = 1e-30
FAILURE_POLICIES = ("report", "remap")


@dataclass(frozen=True)
class CrossbarConfig:
    """Array geometry and periphery.

    ``mapping="differential"`` stores each weight on a pair (G+, G-), both at
    ``g_min`` for zero; ``mapping="offset"`` stores it on one cell around
    ``g_zero_us`` with a reference current subtracted before the ADC (the
    reference chip's scheme: 20-80 uS, zero at 50 uS).
    ``adc_range_fraction`` is the ADC full scale as a fraction of the largest
    current a tile column can carry; ``1.0`` never clips.
    ``failure_policy``: cells that never converge are always reported per tile;
    ``"remap"`` also moves each affected weight column of a tile onto one of its
    ``spare_cols`` spare columns (fresh cells, programmed and charged).
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
    failure_policy: str = "report"
    spare_cols: int = 0

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
        check_choice(o, "failure_policy", self.failure_policy, FAILURE_POLICIES)
        check_int(o, "spare_cols", self.spare_cols, 0)
        if self.failure_policy == "remap" and self.spare_cols == 0:
            raise ValueError(f"{o}.spare_cols must be > 0 when failure_policy='remap', got 0")

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


def delta_conductance(xbar: CrossbarConfig, device: RMDeviceConfig, g_us: torch.Tensor) -> torch.Tensor:
    """Signed conductance that the column sensing sees (drops the cell axis), in uS."""
    if xbar.mapping == "differential":
        return g_us[0] - g_us[1]
    return g_us[0] - zero_conductance_us(xbar, device)


# ------------------------------------------------------------------ MVM
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


@dataclass
class MVMResult:
    """Output of :func:`analog_linear` plus what the cost model needs."""

    y: torch.Tensor          # [B, out], weight units
    codes: torch.Tensor      # [B, in], DAC codes (integers when dac_bits is set)
    code_full_scale: float   # codes / code_full_scale = input normalised to [-1, 1]
    codes_sq: torch.Tensor | None = None  # codes ** 2 when the noise model already needed it


@dataclass
class PreparedMVM:
    """What :func:`analog_linear` derives from the programmed state alone (layers cache it between reads).

    ``w``: conductances in ADC codes per DAC code, ``[in, out]`` for one input
    tile (or no ADC), else ``[n_in_tiles, rows, out]`` zero-padded;
    ``nd_adc``: uS per ADC code times the DAC full scale (``None`` without ADC);
    ``out_factor``: output codes -> weight units, per unit of input abs-max.
    """

    w: torch.Tensor
    nd_adc: torch.Tensor | None
    out_factor: torch.Tensor


def prepare_mvm(xbar: CrossbarConfig, dg_us: torch.Tensor, grid: TileGrid, adc_fs_us: torch.Tensor,
                scale_us: torch.Tensor) -> PreparedMVM:
    """Fold the ADC step, tiling and weight scale into tensors that stay valid until the cells change."""
    n_d = dac_levels(xbar)
    if xbar.adc_bits is None:
        return PreparedMVM(dg_us, None, 1.0 / (n_d * scale_us))
    adc_step = adc_fs_us / adc_levels(xbar)         # uS x (normalised input) per ADC code
    nd_adc = n_d * adc_step
    w = dg_us * (1.0 / nd_adc)                      # ADC codes per DAC code
    if grid.n_in_tiles > 1:
        pad = grid.in_padded - grid.in_features
        w = (torch.nn.functional.pad(w, (0, 0, 0, pad)) if pad else w).view(grid.n_in_tiles, xbar.rows, -1)
    return PreparedMVM(w, nd_adc, nd_adc / (n_d * scale_us))


def analog_linear(xbar: CrossbarConfig, device: RMDeviceConfig, x: torch.Tensor, dg_us: torch.Tensor | None,
                  scale_us: torch.Tensor, grid: TileGrid, adc_fs_us: torch.Tensor, read_noise: bool = True,
                  noise: NormalSource | None = None, prepared: PreparedMVM | None = None,
                  workspace: Workspace | None = None) -> MVMResult:
    """``x @ W^T`` computed the way the crossbar does it, in as few passes as possible.

    1. DAC: per-sample abs-max ``alpha``; inputs become integer codes in
       ``[-n_d, n_d]`` (``n_d = 2^(dac_bits-1) - 1``).
    2. Each input tile (``rows`` inputs) drives its columns: partial sums
       ``codes_tile @ dG_tile`` (signed conductance ``dg_us``, input-major
       ``[in, out]``).
    3. Read noise: Gaussian per cell per read; the sum of a column's cell errors
       is drawn directly as ``sigma * ||codes_tile|| * sqrt(cells_per_weight)``
       (the same distribution, one draw per column read instead of one per cell).
       Draws come from ``noise`` (a chip's :class:`NormalSource`), else from
       torch's global generator.
    4. ADC: each tile's column sum is clipped to the calibrated full scale and
       rounded to one of ``2 n_a + 1`` codes; tiles are then added digitally.
    The ADC step is folded into the conductances before the matmul, so the
    partial sums come out directly in ADC codes. ``prepared`` is
    :func:`prepare_mvm`'s result if the caller keeps one (``dg_us`` is then unused).
    With a ``workspace`` the temporaries reuse its storage, and ``codes`` in the
    result stay valid only until the next call with that workspace.
    """
    if prepared is None:
        prepared = prepare_mvm(xbar, dg_us, grid, adc_fs_us, scale_us)
    alpha, buf, codes = dac_encode(xbar, x, input_pad(xbar, grid), workspace)
    return analog_mvm(xbar, device, buf, codes, alpha, grid, prepared, read_noise, noise, workspace)


def dac_levels(xbar: CrossbarConfig) -> float:
    """``n_d``: the largest DAC code (``1.0`` for an ideal DAC)."""
    return float(2 ** (xbar.dac_bits - 1) - 1) if xbar.dac_bits is not None else 1.0


def adc_levels(xbar: CrossbarConfig) -> float:
    """``n_a``: the largest ADC code (the crossbar must have an ADC)."""
    return float(2 ** (xbar.adc_bits - 1) - 1)


def input_pad(xbar: CrossbarConfig, grid: TileGrid) -> int:
    """Zero inputs appended to a vector so that its tiles are a free view (only needed with per-tile ADCs)."""
    return grid.in_padded - grid.in_features if (grid.n_in_tiles > 1 and xbar.adc_bits is not None) else 0


def scratch(workspace: Workspace | None, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """A temporary from ``workspace``, or a fresh one without."""
    if workspace is None:
        return torch.empty(shape, device=like.device, dtype=like.dtype)
    return workspace.get(name, shape, like)


def code_buffer(n_vectors: int, in_features: int, pad: int, like: torch.Tensor,
                workspace: Workspace | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(``[n, in + pad]`` buffer with a zero tail, its ``[n, in]`` head) for DAC codes."""
    buf = scratch(workspace, "codes", (n_vectors, in_features + pad), like)
    if pad:
        buf[:, in_features:].zero_()
        return buf, buf[:, :in_features]
    return buf, buf


def dac_encode(xbar: CrossbarConfig, x: torch.Tensor, pad: int = 0,
               workspace: Workspace | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-vector abs-max scaling and DAC rounding of ``x [n, in]``: ``(alpha [n, 1], buffer, codes)``."""
    buf, codes = code_buffer(x.shape[0], x.shape[1], pad, x, workspace)
    alpha = torch.abs(x, out=codes).amax(dim=-1, keepdim=True).clamp_min_(ALPHA_FLOOR)
    torch.mul(x, dac_levels(xbar) / alpha, out=codes)
    if xbar.dac_bits is not None:
        codes.round_()
    return alpha, buf, codes


def analog_mvm(xbar: CrossbarConfig, device: RMDeviceConfig, buf: torch.Tensor, codes: torch.Tensor,
               alpha: torch.Tensor, grid: TileGrid, prepared: PreparedMVM, read_noise: bool = True,
               noise: NormalSource | None = None, workspace: Workspace | None = None) -> MVMResult:
    """Steps 2-4 of :func:`analog_linear` on DAC codes (``buf``: codes with their zero tail, see :func:`dac_encode`)."""
    n_d = dac_levels(xbar)
    b, t = codes.shape[0], grid.n_in_tiles
    sigma = device.read_noise_sigma_us * math.sqrt(xbar.cells_per_weight) if read_noise else 0.0
    sq = None
    if sigma > 0:
        sqb = torch.mul(buf, buf, out=scratch(workspace, "codes_sq", tuple(buf.shape), buf))
        sq = sqb[:, :codes.shape[1]]  # the codes' own columns, without the zero tail
    w = prepared.w

    def draws(shape: tuple[int, ...]) -> torch.Tensor:
        if noise is None:
            return torch.randn(shape, device=codes.device, dtype=codes.dtype)
        return noise.normal(shape, codes.device, codes.dtype)

    if xbar.adc_bits is None:
        y = codes @ w
        if sigma > 0:
            # without per-tile rounding the tiles' noises add up: one draw per output
            norm = sq.sum(-1, keepdim=True).sqrt_().mul_(sigma)
            y.addcmul_(draws(tuple(y.shape)), norm)
    else:
        n_a = adc_levels(xbar)
        if t == 1:
            partial = (codes @ w).unsqueeze(0)
        else:
            partial = torch.bmm(buf.view(b, t, xbar.rows).transpose(0, 1), w,
                                out=scratch(workspace, "partial", (t, b, w.shape[-1]), buf))  # [T, B, out]
        if sigma > 0:
            norm = sqb.view(b, t, -1).sum(-1).t().unsqueeze(-1).sqrt_().mul_(sigma / prepared.nd_adc)
            partial.addcmul_(draws(tuple(partial.shape)), norm)
        partial.clamp_(-n_a, n_a).round_()
        y = partial.sum(0) if t > 1 else partial[0]
    # back to weight units: y_code * (uS per code) * alpha / (n_d * uS per weight unit)
    if prepared.out_factor.numel() == 1:
        y = y.mul_(alpha * prepared.out_factor)
    else:
        y = y.mul_(alpha).mul_(prepared.out_factor)
    return MVMResult(y, codes, n_d, sq)


def tile_layout(dg_us: torch.Tensor, grid: TileGrid, rows: int) -> torch.Tensor:
    """Input-major ``[in, out]`` signed conductances -> ``[n_in_tiles, rows, out]`` (zero-padded)."""
    w = dg_us
    if grid.in_padded != grid.in_features:
        w = torch.nn.functional.pad(w, (0, 0, 0, grid.in_padded - grid.in_features))
    return w.reshape(grid.n_in_tiles, rows, grid.out_features)


# ------------------------------------------------------------------ energy
@dataclass
class MVMCost:
    """Counted quantities of a batch of analogue MVMs.

    ``driven_rows`` and ``cell_energy_pj`` are tensors (left on device); the
    other counters are linear in ``driven_rows`` or fixed by the shapes.
    """

    driven_rows: torch.Tensor
    cell_energy_pj: torch.Tensor
    macs_per_row: float
    dac_per_row: float
    dac_energy_pj_per_row: float
    adc_conversions: float
    adc_energy_pj: float
    latency_ns: float


def mvm_cost(xbar: CrossbarConfig, device: RMDeviceConfig, codes: torch.Tensor, code_full_scale: float,
             g_row_sum_us: torch.Tensor, grid: TileGrid, n_vectors: int, cells_per_weight: int,
             codes_sq: torch.Tensor | None = None, workspace: Workspace | None = None) -> MVMCost:
    """Energy of ``n_vectors`` MVMs: DAC per driven row, cells, ADC per column read.

    Only rows whose input is non-zero are driven (event-driven), so a silent
    input costs no DAC conversion, no cell current and no analogue MAC.
    ``codes / code_full_scale`` is the DAC-normalised input in ``[-1, 1]``,
    ``[n_vectors, in]`` (``codes_sq``: its square, if already computed);
    ``g_row_sum_us`` is the total conductance on each input row ``[in]``.
    """
    shape = tuple(codes.shape)
    sq = codes_sq
    if sq is None:
        sq = torch.mul(codes, codes, out=scratch(workspace, "cost_sq", shape, codes))
    if xbar.dac_bits is not None:
        # integer codes: min(code^2, 1) is the driven-row indicator (count_nonzero is single-threaded)
        driven = torch.clamp(sq, max=1.0, out=scratch(workspace, "cost_ind", shape, codes)).sum()
    else:
        driven = torch.count_nonzero(sq)
    # cell energy = sum_i V_read^2 |x_i|^2 G_row_i t_read  (input amplitude scales the read voltage)
    v2t = device.read_voltage_v ** 2 * device.read_time_ns * 1e-3 / code_full_scale ** 2
    cell_e = torch.dot(sq.sum(0), g_row_sum_us) * v2t
    # differential pairs are sensed as one current difference: one conversion per weight column
    adc_conv = float(n_vectors * grid.n_in_tiles * grid.out_features)
    # tiles run in parallel; each vector needs col_mux sequential ADC rounds
    per_vec_ns = device.read_time_ns + xbar.col_mux * xbar.adc_time_ns
    return MVMCost(driven, cell_e, float(grid.out_features * cells_per_weight), float(grid.n_out_tiles),
                   grid.n_out_tiles * xbar.dac_energy_pj, adc_conv, adc_conv * xbar.adc_energy_pj,
                   n_vectors * per_vec_ns)


def failures_per_tile(xbar: CrossbarConfig, failed: torch.Tensor, grid: TileGrid) -> torch.Tensor:
    """Failed-cell counts ``[n_in_tiles, n_out_tiles]`` from a ``[cells_per_weight, in, out]`` mask."""
    f = failed.sum(0).to(torch.int64)  # [in, out]
    pad_in = grid.n_in_tiles * xbar.rows - f.shape[0]
    wpt = xbar.weights_per_tile_col
    pad_out = grid.n_out_tiles * wpt - f.shape[1]
    f = torch.nn.functional.pad(f, (0, pad_out, 0, pad_in))
    return f.view(grid.n_in_tiles, xbar.rows, grid.n_out_tiles, wpt).sum(dim=(1, 3))
