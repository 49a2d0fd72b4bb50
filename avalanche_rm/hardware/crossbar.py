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
ADC_RANGES = ("calibrated", "worst_case")


@dataclass(frozen=True)
class CrossbarConfig:
    """Array geometry and periphery.

    ``mapping="differential"`` stores each weight on a pair (G+, G-), both at
    ``g_min`` for zero; ``mapping="offset"`` stores it on one cell around
    ``g_zero_us`` with a reference current subtracted before the ADC (the
    reference chip's scheme: 20-80 uS, zero at 50 uS).
    ADC ranges (``adc_range``): ``"calibrated"`` (default) sets the full scale
    of each tile column block's ADCs from calibration inputs, at the
    ``adc_calibration_percentile`` of the partial sums its columns produced (as chips do: NeuRRAM calibrates its
    cores on data, ISAAC sizes ADCs for the observed range, aihwkit bounds
    outputs with ``out_bound`` and bound management, CrossSim calibrates
    ``calibrated_range`` on data); ``"worst_case"`` uses the largest current the
    ADC's columns can carry for inputs in [-1, 1], which never clips but leaves
    typical partial sums a few codes wide. ``adc_range_fraction`` scales either
    range (headroom < 1 trades clipping for resolution).
    ``dac_energy_pj`` (per row drive) ``None``: derived from the ADC's energy by
    :mod:`avalanche_rm.costs.prices` (a quarter of a conversion, as in ISAAC).
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
    adc_range: str = "calibrated"
    adc_calibration_percentile: float = 99.9
    adc_range_fraction: float = 1.0
    adc_energy_pj: float = 2.0
    adc_time_ns: float = 10.0
    dac_energy_pj: float | None = None
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
        check_choice(o, "adc_range", self.adc_range, ADC_RANGES)
        pct = check_positive(o, "adc_calibration_percentile", self.adc_calibration_percentile)
        if pct > 100.0:
            raise ValueError(f"{o}.adc_calibration_percentile must lie in (0, 100], got "
                             f"{self.adc_calibration_percentile!r}")
        frac = check_positive(o, "adc_range_fraction", self.adc_range_fraction)
        if frac > 1.0:
            raise ValueError(f"{o}.adc_range_fraction must lie in (0, 1], got {self.adc_range_fraction!r}")
        for f in ("adc_energy_pj", "adc_time_ns"):
            check_non_negative(o, f, getattr(self, f))
        for f in ("dac_energy_pj",):  # optional: None means derived by avalanche_rm.costs.prices
            if getattr(self, f) is not None:
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
    def cells_per_read(self) -> int:
        """Cells whose read noise a sensed output sees: a differential pair, or a cell and its reference cell."""
        return 2

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


def reference_per_column(xbar: CrossbarConfig, g_ref_us: torch.Tensor, out_features: int) -> torch.Tensor:
    """Reference conductances ``[n_out_tiles, in]`` laid out per weight column, ``[in, out]``."""
    return g_ref_us.t().repeat_interleave(xbar.weights_per_tile_col, dim=1)[:, :out_features]


def delta_conductance(xbar: CrossbarConfig, device: RMDeviceConfig, g_us: torch.Tensor,
                      g_ref_us: torch.Tensor | None = None) -> torch.Tensor:
    """Signed conductance that the column sensing sees, ``[in, out]`` in uS.

    Differential pairs: ``G+ - G-``. Offset mapping: the cell minus its tile's
    reference cell on the same row (``g_ref_us [n_out_tiles, in]``; without it, an
    ideal reference at the zero conductance).
    """
    if xbar.mapping == "differential":
        return g_us[0] - g_us[1]
    if g_ref_us is None:
        return g_us[0] - zero_conductance_us(xbar, device)
    return g_us[0] - reference_per_column(xbar, g_ref_us, g_us.shape[-1])




# ------------------------------------------------------------------ ADC ranges
# One ADC range per tile column block: the ADCs of one tile's columns share a range, and the tiles stacked
# on the same outputs (the input tiles) share it too, so their partial sums add without rescaling.
def _per_block_max(xbar: CrossbarConfig, per_column: torch.Tensor) -> torch.Tensor:
    """Each column's value replaced by the largest in its tile column block, ``[out]``."""
    out = per_column.numel()
    k = xbar.weights_per_tile_col
    pad = (-out) % k
    padded = torch.nn.functional.pad(per_column, (0, pad))
    return padded.view(-1, k).amax(dim=1).repeat_interleave(k)[:out]


def worst_case_full_scale_us(xbar: CrossbarConfig, dg_us: torch.Tensor, grid: "TileGrid") -> torch.Tensor:
    """ADC full scale per column ``[out]`` (uS x normalised input, constant per tile block) that never clips.

    The largest current a tile column can carry for inputs in [-1, 1] is its
    ``sum_rows |dG|``; a tile block's ADCs are sized for the worst of its columns
    over all input tiles, times ``adc_range_fraction``.
    """
    a = dg_us.abs()
    if grid.n_in_tiles > 1:
        a = tile_layout(a, grid, xbar.rows).sum(1).amax(0)
    else:
        a = a.sum(0)
    fs = _per_block_max(xbar, a) * xbar.adc_range_fraction
    return torch.where(fs > 0, fs, torch.ones_like(fs))


def calibrated_full_scale_us(xbar: CrossbarConfig, abs_partials_us: torch.Tensor) -> torch.Tensor:
    """ADC full scale per column ``[out]`` (constant per tile block) from observed partial sums ``[n, out]``.

    A tile block's ADCs get the ``adc_calibration_percentile`` of the magnitudes
    its columns produced (all input tiles pooled), times ``adc_range_fraction``.
    """
    n, out = abs_partials_us.shape
    k = xbar.weights_per_tile_col
    pad = (-out) % k
    v = torch.nn.functional.pad(abs_partials_us, (0, pad)).view(n, -1, k).permute(1, 0, 2).reshape(-1, n * k)
    kth = max(1, min(v.shape[1], int(round(xbar.adc_calibration_percentile / 100.0 * v.shape[1]))))
    fs = v.kthvalue(kth, dim=1).values.repeat_interleave(k)[:out] * xbar.adc_range_fraction
    return torch.where(fs > 0, fs, torch.ones_like(fs))


# ------------------------------------------------------------------ MVM
@dataclass
class MVMResult:
    """Output of :func:`analog_mvm` plus the counts the cost model needs."""

    y: torch.Tensor          # [B, out], weight units
    codes: torch.Tensor      # [B, in], DAC codes (integers when dac_bits is set)
    code_full_scale: float   # codes / code_full_scale = input normalised to [-1, 1]
    codes_sq: torch.Tensor | None = None  # codes ** 2 when the noise model already needed it
    saturated: torch.Tensor | None = None  # 0-d: conversions whose input lay beyond the ADC's full scale


@dataclass
class PreparedMVM:
    """What :func:`analog_mvm` derives from the cells and the ADC ranges alone (arrays cache it between reads).

    ``w``: signed conductance per DAC code, ``[in, out]`` (one input tile, or no
    ADC) or ``[n_in_tiles, rows, out]`` zero-padded; with an ADC it is divided
    by each column's ADC step, so partial sums come out in ADC codes.
    ``inv_step``: 1 / ADC step per column (``None`` without ADC), for read noise
    drawn in uS; ``inv_step_block``: the same per tile column block (it is
    constant inside a block). ``out_factor``: output codes (or uS) -> weight
    units per unit of input abs-max, ``[out]`` or a scalar.
    """

    w: torch.Tensor
    inv_step: torch.Tensor | None
    out_factor: torch.Tensor
    inv_step_block: torch.Tensor | None = None
    block: int = 1


def prepare_mvm(xbar: CrossbarConfig, dg_us: torch.Tensor, grid: TileGrid, adc_fs_us: torch.Tensor,
                scale_us: torch.Tensor) -> PreparedMVM:
    """Fold the DAC scale, tiling, ADC steps and weight scale into tensors valid until the cells change."""
    n_d = dac_levels(xbar)
    if xbar.adc_bits is None:
        return PreparedMVM(dg_us / n_d, None, 1.0 / scale_us)
    step = adc_fs_us / adc_levels(xbar)             # uS x (normalised input) per ADC code, [out]
    w = dg_us / (n_d * step)                        # ADC codes per DAC code
    if grid.n_in_tiles > 1:
        w = tile_layout(w, grid, xbar.rows)
    # each block's ADCs share one range over the input tiles, so the step folds into the output factor
    k = xbar.weights_per_tile_col
    inv = 1.0 / step
    return PreparedMVM(w, inv, step / scale_us, inv[::k].contiguous(), k)


#: vectors per batch whose ADC saturations are counted (the count is scaled to the whole batch)
SATURATION_SAMPLE = 16


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


def analog_mvm(xbar: CrossbarConfig, read_sigma_us: float, buf: torch.Tensor, codes: torch.Tensor,
               alpha: torch.Tensor, grid: TileGrid, prepared: PreparedMVM, noise: NormalSource | None = None,
               workspace: Workspace | None = None, tap=None, quantize: bool = True) -> MVMResult:
    """``x @ W^T`` the way the crossbar computes it, from DAC codes (see :func:`dac_encode`).

    1. Each input tile (``rows`` inputs) drives its columns: partial sums
       ``codes_tile @ dG_tile``.
    2. Read noise (``read_sigma_us`` per column read and unit input norm, see
       :meth:`~avalanche_rm.hardware.noise_models.ReadNoise.column_sigma_us`):
       one Gaussian per column read from ``noise`` (a chip's
       :class:`NormalSource`), else torch's generator.
    3. ADC: each tile's column sum is clipped to its column's full scale and
       rounded to one of ``2 n_a + 1`` codes; tiles are then added digitally.
    ``tap(partials_us)`` (calibration) receives each call's partial sums in uS x
    normalised input, ``[n_in_tiles, n, out]``, before the ADC; ``quantize=False``
    bypasses the ADC (an ideal readout, as during calibration).
    """
    n_d = dac_levels(xbar)
    b, t = codes.shape[0], grid.n_in_tiles
    sigma = read_sigma_us
    sq = None
    if sigma > 0:
        sqb = torch.mul(buf, buf, out=scratch(workspace, "codes_sq", tuple(buf.shape), buf))
        sq = sqb[:, :codes.shape[1]]  # the codes' own columns, without the zero tail
    w = prepared.w

    def draws(shape: tuple[int, ...]) -> torch.Tensor:
        if noise is None:
            return torch.randn(shape, device=codes.device, dtype=codes.dtype)
        return noise.normal(shape, codes.device, codes.dtype)

    saturated = None
    if xbar.adc_bits is None:
        y = codes @ w
        if sigma > 0:
            # without per-tile rounding the tiles' noises add up: one draw per output
            norm = sq.sum(-1, keepdim=True).sqrt_().mul_(sigma / n_d)
            y.addcmul_(draws(tuple(y.shape)), norm)
        if tap is not None:
            tap(y.unsqueeze(0))
    else:
        n_a = adc_levels(xbar)
        if t == 1:
            partial = (codes @ w).unsqueeze(0)
        else:
            partial = torch.bmm(buf.view(b, t, xbar.rows).transpose(0, 1), w,
                                out=scratch(workspace, "partial", (t, b, w.shape[-1]), buf))  # [T, B, out]
        if tap is not None:
            tap(partial * (1.0 / prepared.inv_step))
        if sigma > 0:
            # noise in uS per unit input norm, converted to ADC codes: the step is constant in a tile block,
            # so it scales the per-read norm, not every draw
            norm = sqb.view(b, t, -1).sum(-1).t().unsqueeze(-1).sqrt_().mul_(sigma / n_d)  # [T, B, 1]
            inv_b, k = prepared.inv_step_block, prepared.block
            out = partial.shape[-1]
            if inv_b.numel() == 1:
                partial.addcmul_(draws(tuple(partial.shape)), norm.mul_(inv_b))
            elif out % k == 0:
                nb = out // k
                partial.view(t, b, nb, k).addcmul_(draws(tuple(partial.shape)).view(t, b, nb, k),
                                                   norm.unsqueeze(-1) * inv_b.view(1, 1, nb, 1))
            else:
                z = torch.mul(draws(tuple(partial.shape)), prepared.inv_step,
                              out=scratch(workspace, "noise", tuple(partial.shape), buf))
                partial.addcmul_(z, norm)
        saturated = None
        if quantize:
            # conversions beyond full scale, counted before the clip on about SATURATION_SAMPLE vectors of the
            # batch and scaled to the batch (an exact count costs a full extra pass: ~15 % of a forward)
            step = max(1, b // SATURATION_SAMPLE)
            sample = partial[:, ::step]
            saturated = torch.abs(sample).gt_(n_a).sum() * (b / sample.shape[1])
            partial.clamp_(-n_a, n_a).round_()
        y = partial.sum(0) if t > 1 else partial[0]
    # back to weight units: y * (uS per code) * alpha / (uS per weight unit)
    if prepared.out_factor.numel() == 1:
        y = y.mul_(alpha * prepared.out_factor)
    else:
        y = y.mul_(alpha).mul_(prepared.out_factor)
    return MVMResult(y, codes, n_d, sq, saturated)


def tile_layout(dg_us: torch.Tensor, grid: TileGrid, rows: int) -> torch.Tensor:
    """Input-major ``[in, out]`` tensor -> ``[n_in_tiles, rows, out]`` (zero-padded)."""
    w = dg_us
    if grid.in_padded != grid.in_features:
        w = torch.nn.functional.pad(w, (0, 0, 0, grid.in_padded - grid.in_features))
    return w.reshape(grid.n_in_tiles, rows, w.shape[-1])


def mvm_counts(codes: torch.Tensor, g_row_sum_us: torch.Tensor, dac_quantised: bool,
               codes_sq: torch.Tensor | None = None,
               workspace: Workspace | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """What a batch of MVMs physically does: ``(driven rows, sum over rows of code^2 * G_row)`` (0-d tensors).

    Only rows whose input is non-zero are driven (event-driven). ``g_row_sum_us``
    is the total conductance on each input row ``[in]`` (every cell a driven row
    passes current through, reference cells included). Both stay on the device.
    """
    shape = tuple(codes.shape)
    sq = codes_sq
    if sq is None:
        sq = torch.mul(codes, codes, out=scratch(workspace, "cost_sq", shape, codes))
    if dac_quantised:
        # integer codes: min(code^2, 1) is the driven-row indicator (count_nonzero is single-threaded)
        driven = torch.clamp(sq, max=1.0, out=scratch(workspace, "cost_ind", shape, codes)).sum()
    else:
        driven = torch.count_nonzero(sq).to(codes.dtype)
    return driven, torch.dot(sq.sum(0), g_row_sum_us)


def failures_per_tile(xbar: CrossbarConfig, failed: torch.Tensor, grid: TileGrid) -> torch.Tensor:
    """Failed-cell counts ``[n_in_tiles, n_out_tiles]`` from a ``[cells_per_weight, in, out]`` mask."""
    f = failed.sum(0).to(torch.int64)  # [in, out]
    pad_in = grid.n_in_tiles * xbar.rows - f.shape[0]
    wpt = xbar.weights_per_tile_col
    pad_out = grid.n_out_tiles * wpt - f.shape[1]
    f = torch.nn.functional.pad(f, (0, pad_out, 0, pad_in))
    return f.view(grid.n_in_tiles, xbar.rows, grid.n_out_tiles, wpt).sum(dim=(1, 3))
