"""One layer's analogue array: what the cells are and what reading and writing them does.

An :class:`AnalogArray` holds the state of the crossbar tiles that store one
weight matrix: target levels, programmed conductances, the offset mapping's
reference columns, stuck-at faults, spare-column remapping, drift age and the
ADC ranges calibrated for its columns. Its verbs (program, reprogram, drift,
calibrate, read) change that state and return reports of what the chip did
(pulses, verify reads, driven rows, conversions); they charge nothing.
:mod:`avalanche_rm.costs.pricing` prices the reports and the layers in
:mod:`avalanche_rm.nn` hold an array, as aihwkit's layers hold a tile.

Cells are stored input-major, ``[cells_per_weight, in, out]``, so a tile of
``rows`` inputs is a free view.
"""
from __future__ import annotations

import hashlib
import math
import warnings
import weakref

import torch
from torch import nn

from . import crossbar as xb
from . import fused
from .config import HardwareConfig
from .device import fault_mask, level_dtype, level_to_conductance, quantize_to_levels
from .noise_source import NormalSource
from .programming import ProgrammingReport, residual_write_noise, write_verify
from .workspace import Workspace
from ..validation import check_int

#: partial-sum values an array keeps per calibration run (a seeded subsample beyond this)
CALIBRATION_SAMPLE_ELEMENTS = 1 << 24

_UNCALIBRATED = ("avalanche-rm: analogue reads use worst-case ADC ranges because the ADCs were never calibrated "
                 "(typical partial sums then span a few ADC codes). Call model.calibrate_adc(x) on representative "
                 "inputs (pretrain_and_program does it), or set CrossbarConfig(adc_range='worst_case') to use "
                 "worst-case ranges on purpose.")


def sub_seed(seed: int, *tags: object) -> int:
    """Stable 63-bit seed derived from a chip seed and tags (array name, purpose)."""
    h = hashlib.blake2b(repr((int(seed),) + tags).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


def seeded_generator(seed: int, device: torch.device) -> torch.Generator:
    gen_dev = device if device.type == "cuda" else torch.device("cpu")
    g = torch.Generator(device=gen_dev)
    g.manual_seed(seed)
    return g


class AnalogArray(nn.Module):
    """The RM cells (and their periphery state) that store one ``[out, in]`` weight matrix."""

    #: where write-verify's pulse and verify-read noise come from (``write_verify``'s ``sampler``)
    programming_sampler = "exact"

    def __init__(self, weight2d: torch.Tensor, hardware: HardwareConfig, name: str = "") -> None:
        super().__init__()
        if not isinstance(hardware, HardwareConfig):
            raise ValueError(f"hardware must be a HardwareConfig, got {type(hardware).__name__}")
        if weight2d.dim() != 2:
            raise ValueError(f"{name or 'AnalogArray'}: weight must be 2-D [out, in], got {tuple(weight2d.shape)}")
        if not torch.isfinite(weight2d).all():
            raise ValueError(f"{name or 'AnalogArray'}: weight contains NaN or Inf")
        self.hardware, self.name = hardware, name
        self.out_features, self.in_flat = int(weight2d.shape[0]), int(weight2d.shape[1])
        self.noise_source = NormalSource()
        self.workspace = Workspace()
        dev, xbar = hardware.device, hardware.crossbar
        w = weight2d.detach().to(torch.float32)
        self.grid = xb.tile_grid(xbar, self.out_features, self.in_flat)
        scale = xb.weight_scale_us(xbar, dev, w)
        g_t = xb.weight_to_conductance(xbar, dev, w, scale).transpose(1, 2).contiguous()
        self.register_buffer("scale_us", scale)
        self.register_buffer("target", self._encode_target(g_t))
        # a fresh array sits at g_min (formed and reset) until programmed
        self.register_buffer("g_us", torch.full_like(g_t, dev.g_min_us))
        n_ref = self.grid.n_out_tiles if xbar.mapping == "offset" else 0
        self.register_buffer("g_ref_us", torch.full((n_ref, self.in_flat), dev.g_min_us))
        self.register_buffer("g_row_sum_us", torch.zeros(self.in_flat))
        self.register_buffer("adc_fs_us", torch.ones(self.out_features))
        self.register_buffer("adc_calibrated", torch.zeros((), dtype=torch.bool))
        self.register_buffer("verified", torch.zeros((), dtype=torch.bool))
        self.register_buffer("age_s", torch.zeros((), dtype=torch.float64))
        self.register_buffer("chip_seed", torch.full((), -1, dtype=torch.int64))
        self.register_buffer("drift_calls", torch.zeros((), dtype=torch.int64))
        # (input tile, weight column) pairs moved onto spare columns after failed programming
        self.register_buffer("remapped", torch.zeros(self.grid.n_in_tiles, self.out_features, dtype=torch.bool))
        self._calibration: list[torch.Tensor] | None = None

    # ------------------------------------------------------------ properties
    @property
    def programmed(self) -> bool:
        return int(self.chip_seed) >= 0

    @property
    def weight_cells(self) -> int:
        return self.g_us.numel()

    @property
    def cells(self) -> int:
        """Every programmed cell: the weights' and the reference columns'."""
        return self.g_us.numel() + self.g_ref_us.numel()

    def _encode_target(self, g_t: torch.Tensor) -> torch.Tensor:
        """Compact target: level indices (or uS for a continuous device).

        A differential pair always has one cell at g_min, so its two targets fit
        in one signed number: +l on G+, -l on G- (half the storage).
        """
        dev = self.hardware.device
        if self.hardware.crossbar.mapping == "differential":
            if dev.n_levels is None:
                return (g_t[0] - g_t[1]).unsqueeze(0)
            lv = quantize_to_levels(dev, g_t)
            return (lv[0] - lv[1]).to(level_dtype(dev.n_levels)).unsqueeze(0)
        return g_t if dev.n_levels is None else quantize_to_levels(dev, g_t).to(level_dtype(dev.n_levels))

    def target_conductance(self) -> torch.Tensor:
        """Target conductance of every weight cell, ``[cells_per_weight, in, out]`` in uS."""
        dev = self.hardware.device
        if self.hardware.crossbar.mapping == "differential":
            d = self.target[0].to(torch.float32)
            pair = torch.stack([d.clamp_min(0), (-d).clamp_min(0)])
            return dev.g_min_us + (pair if dev.n_levels is None else pair * dev.level_step_us)
        if dev.n_levels is None:
            return self.target
        return level_to_conductance(dev, self.target)

    def reference_target_us(self) -> float:
        return xb.zero_conductance_us(self.hardware.crossbar, self.hardware.device)

    def delta_us(self, g_us: torch.Tensor | None = None, g_ref_us: torch.Tensor | None = None) -> torch.Tensor:
        """Signed conductance each weight contributes to its column current, ``[in, out]``."""
        hw = self.hardware
        g = self.g_us if g_us is None else g_us
        ref = self.g_ref_us if g_ref_us is None else g_ref_us
        return xb.delta_conductance(hw.crossbar, hw.device, g, ref if ref.numel() else None)

    def target_weight(self) -> torch.Tensor:
        """Weights the target levels encode (perfect programming, ideal reference), ``[out, in]``."""
        hw = self.hardware
        return (xb.delta_conductance(hw.crossbar, hw.device, self.target_conductance()) / self.scale_us).t()

    def effective_weight(self) -> torch.Tensor:
        """Weights the programmed (and drifted) cells encode, ``[out, in]``."""
        return self.prepared()[1].clone()

    # ------------------------------------------------------------ faults
    def fault_codes(self, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Stuck-at codes of the weight cells (spares where remapped) and of the reference cells."""
        dev = self.hardware.device
        gen = seeded_generator(sub_seed(seed, self.name, "faults"), self.g_us.device)
        code = fault_mask(dev, self.weight_cells, gen, self.g_us.device).view_as(self.g_us)
        if bool(self.remapped.any()):
            # remapped columns live on spare cells, with faults of their own
            sgen = seeded_generator(sub_seed(seed, self.name, "spare-faults"), self.g_us.device)
            spare = fault_mask(dev, self.weight_cells, sgen, self.g_us.device).view_as(self.g_us)
            rows = self.hardware.crossbar.rows
            mask = self.remapped.repeat_interleave(rows, dim=0)[: self.in_flat].unsqueeze(0).expand_as(code)
            code = torch.where(mask, spare, code)
        rgen = seeded_generator(sub_seed(seed, self.name, "ref-faults"), self.g_us.device)
        ref = fault_mask(dev, self.g_ref_us.numel(), rgen, self.g_us.device).view_as(self.g_ref_us)
        return code, ref

    # ------------------------------------------------------------ writing
    def program(self, seed: int) -> ProgrammingReport:
        """Write-verify every cell (weights and reference columns) from its current state to its target."""
        check_int(seed, "seed", 0)
        hw = self.hardware
        dev, xbar = hw.device, hw.crossbar
        codes, ref_codes = self.fault_codes(seed)
        gen = seeded_generator(sub_seed(seed, self.name, "program"), self.g_us.device)
        result = write_verify(dev, self.g_us, self.target_conductance(), gen, fault_code=codes,
                              parallel_cells=xbar.program_parallel_cells, sampler=self.programming_sampler)
        self.g_us.copy_(result.g_us)
        rep = result.report
        if self.g_ref_us.numel():
            rgen = seeded_generator(sub_seed(seed, self.name, "program-ref"), self.g_us.device)
            ref = write_verify(dev, self.g_ref_us, torch.full_like(self.g_ref_us, self.reference_target_us()), rgen,
                               fault_code=ref_codes, parallel_cells=xbar.program_parallel_cells,
                               sampler=self.programming_sampler)
            self.g_ref_us.copy_(ref.g_us)
            rep += ref.report
        self.chip_seed.fill_(seed)
        # read noise is the chip's own: its stream restarts with every deployment (shared across a model's arrays)
        self.noise_source.reseed(sub_seed(seed, "read-noise"))
        self.age_s.zero_()
        self.drift_calls.zero_()
        if xbar.failure_policy == "remap" and rep.failed_cells:
            rep += self._remap_failed(result.failed, seed)
        self._after_write()
        self._report_failures(rep)
        return rep

    def _report_failures(self, rep: ProgrammingReport) -> None:
        tol = self.hardware.device.wv_tolerance_us
        failed = (self.g_us - self.target_conductance()).abs() > tol
        per_tile = xb.failures_per_tile(self.hardware.crossbar, failed, self.grid)
        if self.g_ref_us.numel():
            ref = ((self.g_ref_us - self.reference_target_us()).abs() > tol).to(torch.int64)  # [n_out_tiles, in]
            pad = self.grid.in_padded - self.in_flat
            ref = torch.nn.functional.pad(ref, (0, pad)).view(self.grid.n_out_tiles, self.grid.n_in_tiles, -1)
            per_tile = per_tile + ref.sum(-1).t()
        rep.failed_cells = int(per_tile.sum())
        rep.failed_per_layer = {self.name: rep.failed_cells}
        rep.failed_per_tile = {self.name: per_tile.tolist()}
        rep.remapped_columns = {self.name: int(self.remapped.sum())}

    def _remap_failed(self, failed: torch.Tensor, seed: int) -> ProgrammingReport:
        """Move (tile, column) pairs holding failed cells onto spare columns, as far as spares last."""
        xbar = self.hardware.crossbar
        rows = xbar.rows
        col_fail = failed.any(0)  # [in, out]
        pad = self.grid.n_in_tiles * rows - self.in_flat
        per_tile = torch.nn.functional.pad(col_fail, (0, 0, 0, pad)).view(self.grid.n_in_tiles, rows, -1).any(1)
        wpt = xbar.weights_per_tile_col
        want = per_tile & ~self.remapped
        chosen = torch.zeros_like(want)
        for t_out in range(self.grid.n_out_tiles):  # a handful of tiles, not cells
            block = want[:, t_out * wpt:(t_out + 1) * wpt]
            used = self.remapped[:, t_out * wpt:(t_out + 1) * wpt].sum(1, keepdim=True)
            rank = block.cumsum(1) + used
            chosen[:, t_out * wpt:(t_out + 1) * wpt] = block & (rank <= xbar.spare_cols)
        if not bool(chosen.any()):
            return ProgrammingReport()
        self.remapped |= chosen
        cell_mask = chosen.repeat_interleave(rows, dim=0)[: self.in_flat].unsqueeze(0).expand_as(self.g_us)
        idx = torch.nonzero(cell_mask.reshape(-1)).squeeze(1)
        dev = self.hardware.device
        gen = seeded_generator(sub_seed(seed, self.name, "spare-program"), self.g_us.device)
        target = self.target_conductance().reshape(-1)[idx]
        codes = self.fault_codes(seed)[0].reshape(-1)[idx]
        res = write_verify(dev, torch.full_like(target, dev.g_min_us), target, gen, fault_code=codes,
                           parallel_cells=xbar.program_parallel_cells, sampler=self.programming_sampler)
        self.g_us.view(-1)[idx] = res.g_us
        return res.report

    def reprogram(self, new_weight2d: torch.Tensor) -> ProgrammingReport:
        """Change the stored weights to ``new_weight2d`` by write-verify from the current state.

        The per-tensor/column scales are kept. The controller compares target
        levels: while the cells are as last verified (no drift or what-if since),
        only cells whose target level changed enter the job; each gets a verify
        read, and those already inside the acceptance window of the new target get
        no pulse. After drift every cell is verified again. Weights outside the
        programmable range are clipped to the window.
        """
        if not self.programmed:
            raise RuntimeError(f"{self.name}: program() the array before reprogramming it")
        if tuple(new_weight2d.shape) != (self.out_features, self.in_flat):
            raise ValueError(f"{self.name}: new weight shape {tuple(new_weight2d.shape)} != "
                             f"{(self.out_features, self.in_flat)}")
        if not torch.isfinite(new_weight2d).all():
            raise ValueError(f"{self.name}: new weight contains NaN or Inf")
        hw = self.hardware
        g_t = xb.weight_to_conductance(hw.crossbar, hw.device, new_weight2d.detach().float().to(self.g_us.device),
                                       self.scale_us)
        target = self._encode_target(g_t.transpose(1, 2).contiguous())
        seed = int(self.chip_seed)
        calls = int(self.drift_calls) + 1
        changed = (target != self.target).expand_as(self.g_us)  # a changed pair target moves both of its cells
        self.target.copy_(target)
        codes = self.fault_codes(seed)[0]
        gen = seeded_generator(sub_seed(seed, self.name, "reprogram", calls), self.g_us.device)
        goal = self.target_conductance()
        if bool(self.verified):
            idx = torch.nonzero(changed.reshape(-1)).squeeze(1)
            res = write_verify(hw.device, self.g_us.reshape(-1)[idx], goal.reshape(-1)[idx], gen,
                               fault_code=codes.reshape(-1)[idx],
                               parallel_cells=hw.crossbar.program_parallel_cells, sampler=self.programming_sampler)
            self.g_us.view(-1)[idx] = res.g_us
        else:
            res = write_verify(hw.device, self.g_us, goal, gen, fault_code=codes,
                               parallel_cells=hw.crossbar.program_parallel_cells, sampler=self.programming_sampler)
            self.g_us.copy_(res.g_us)
        self.drift_calls.fill_(calls)
        self.age_s.zero_()
        self._after_write()
        rep = res.report
        rep.failed_per_layer = {self.name: rep.failed_cells}
        return rep

    def drift(self, seconds: float) -> None:
        """Age every cell by ``seconds`` more (stuck cells do not move)."""
        if not self.programmed:
            raise RuntimeError(f"{self.name}: program() the array before drifting it")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) \
                or seconds < 0:
            raise ValueError(f"drift seconds must be a finite number >= 0, got {seconds!r}")
        if seconds == 0:
            return
        dev = self.hardware.device
        law = dev.drift_law()
        seed = int(self.chip_seed)
        calls = int(self.drift_calls) + 1
        t0 = float(self.age_s)
        codes, ref_codes = self.fault_codes(seed)
        for g, code, tag in ((self.g_us, codes, "drift"), (self.g_ref_us, ref_codes, "drift-ref")):
            if g.numel() == 0:
                continue
            gen = seeded_generator(sub_seed(seed, self.name, tag, calls), g.device)
            coef_gen = seeded_generator(sub_seed(seed, self.name, tag, "coefficients"), g.device)
            coef = law.coefficients(g.numel(), coef_gen)
            new = law.age(g.clone(), t0, t0 + float(seconds), gen, coef).clamp_(dev.g_min_us, dev.g_max_us)
            g.copy_(torch.where(code != 0, g, new))
        self.age_s.fill_(t0 + float(seconds))
        self.drift_calls.fill_(calls)
        self.verified.fill_(False)
        self._after_write(rescale_adc=False)

    def set_conductance(self, g_us: torch.Tensor) -> None:
        """Overwrite the weight cells ``[cells_per_weight, in, out]`` (a simulator what-if, not a chip write)."""
        if not self.programmed:
            raise RuntimeError(f"{self.name}: program() the array before setting its conductances")
        if tuple(g_us.shape) != tuple(self.g_us.shape):
            raise ValueError(f"{self.name}: conductance shape {tuple(g_us.shape)} != {tuple(self.g_us.shape)}")
        if not torch.isfinite(g_us).all():
            raise ValueError(f"{self.name}: conductances contain NaN or Inf")
        self.g_us.copy_(g_us)
        self.verified.fill_(False)
        self._after_write(rescale_adc=False)

    def apply_write_noise(self, sigma_us: float, seed: int) -> None:
        """Replace the weight cells by one-shot writes: target + N(0, sigma_us), clamped to the window.

        The reference code's deployment model (additive Gaussian on G after an
        ideal write-verify, no verify loop). Reference columns keep their
        programmed state. A study tool: the caller charges nothing for it.
        """
        if not self.programmed:
            raise RuntimeError(f"{self.name}: program() the array before adding write noise")
        gen = seeded_generator(sub_seed(seed, self.name, "write-noise"), self.g_us.device)
        g = residual_write_noise(self.hardware.device, self.target_conductance(), sigma_us, gen)
        codes = self.fault_codes(int(self.chip_seed))[0]
        self.g_us.copy_(torch.where(codes != 0, self.g_us, g))
        self.verified.fill_(False)
        self._after_write(rescale_adc=False)

    def _after_write(self, rescale_adc: bool = True) -> None:
        """Refresh the per-row conductance sums; worst-case ADC ranges follow the new cells."""
        if rescale_adc:
            self.verified.fill_(True)
        row = self.g_us.sum(dim=(0, 2))
        if self.g_ref_us.numel():
            row = row + self.g_ref_us.sum(0)
        self.g_row_sum_us.copy_(row)
        xbar = self.hardware.crossbar
        if xbar.adc_bits is not None and (xbar.adc_range == "worst_case" or not bool(self.adc_calibrated)):
            self.adc_fs_us.copy_(xb.worst_case_full_scale_us(xbar, self.delta_us(), self.grid))

    # ------------------------------------------------------------ ADC calibration
    def begin_calibration(self) -> None:
        """Collect the partial sums of the following reads (ADC bypassed) for :meth:`end_calibration`."""
        self._calibration = []

    def _subsample(self, rows: torch.Tensor, *tags: object) -> torch.Tensor:
        """At most ``CALIBRATION_SAMPLE_ELEMENTS`` values of ``[n, out]`` partial sums: a seeded choice of rows."""
        cap = max(1024, CALIBRATION_SAMPLE_ELEMENTS // max(self.out_features, 1))
        if rows.shape[0] <= cap:
            return rows
        gen = seeded_generator(sub_seed(max(int(self.chip_seed), 0), self.name, *tags), rows.device)
        return rows[torch.randperm(rows.shape[0], generator=gen, device=gen.device)[:cap].to(rows.device)]

    def _collect(self, partial_us: torch.Tensor) -> None:
        t, n, out = partial_us.shape
        rows = partial_us.detach().abs().reshape(t * n, out)
        self._calibration.append(self._subsample(rows, "calibration", len(self._calibration)))

    def end_calibration(self) -> int:
        """Set every ADC's full scale from the collected partial sums; returns how many were seen."""
        if self._calibration is None:
            raise RuntimeError(f"{self.name}: end_calibration() without begin_calibration()")
        samples, self._calibration = self._calibration, None
        if not samples:
            raise ValueError(f"{self.name}: no analogue read happened during calibration")
        allrows = self._subsample(torch.cat(samples), "calibration-pool")
        xbar = self.hardware.crossbar
        if xbar.adc_bits is not None and xbar.adc_range == "calibrated":  # worst-case ranges ignore the data
            self.adc_fs_us.copy_(xb.calibrated_full_scale_us(xbar, allrows))
            self.adc_calibrated.fill_(True)
        return int(allrows.shape[0])

    @property
    def calibrating(self) -> bool:
        return self._calibration is not None

    def _warn_uncalibrated(self) -> None:
        xbar = self.hardware.crossbar
        if xbar.adc_bits is not None and xbar.adc_range == "calibrated" and not bool(self.adc_calibrated) \
                and self._calibration is None:
            warnings.warn(_UNCALIBRATED, UserWarning, stacklevel=5)  # caller of the layer's _analog_forward

    # ------------------------------------------------------------ reading
    def _memo(self, name: str, state: tuple[torch.Tensor, ...], compute):
        """``compute()``, cached under ``name`` until a tensor of ``state`` is written in place or replaced.

        The key holds the in-place version counters of the state tensors, so any
        write (programming, drift, what-ifs, ``load_state_dict``) invalidates it;
        weak references make a buffer replaced by a new tensor (e.g. ``.to()``)
        never match an old entry. Inference mode computes afresh and stores
        nothing: inference tensors carry no version counter and cannot be reused
        in autograd.
        """
        if torch.is_inference_mode_enabled() or any(t.is_inference() for t in state):
            return compute()
        cached = self.__dict__.get(name)
        if cached is not None and all(ref() is t and t._version == v for (ref, v), t in zip(cached[0], state)):
            return cached[1]
        value = compute()
        self.__dict__[name] = (tuple((weakref.ref(t), t._version) for t in state), value)
        return value

    def prepared(self) -> tuple[xb.PreparedMVM, torch.Tensor]:
        """(MVM operands, effective weight ``[out, in]``), recomputed only when the cells or ADC ranges change."""
        def compute() -> tuple[xb.PreparedMVM, torch.Tensor]:
            dg = self.delta_us()
            prepared = xb.prepare_mvm(self.hardware.crossbar, dg, self.grid, self.adc_fs_us, self.scale_us)
            return prepared, (dg / self.scale_us).t()

        return self._memo("_prepared_cache", (self.g_us, self.g_ref_us, self.adc_fs_us, self.scale_us), compute)

    def mean_cell_us(self) -> float:
        """Mean conductance of the cells a driven row passes current through (uS), cached until the cells change."""
        return self._memo("_mean_cell_cache", (self.g_row_sum_us,),
                          lambda: float(self.g_row_sum_us.sum()) / self.cells)

    def read_sigma_us(self, enabled: bool) -> float:
        """Read-noise std per column read and unit input norm (0 when switched off)."""
        if not enabled:
            return 0.0
        return self.hardware.device.read_noise().column_sigma_us(self.hardware.crossbar.cells_per_read)

    def _prepared_for_read(self) -> xb.PreparedMVM:
        """The MVM operands, after the checks every read makes (programmed; ADCs calibrated, else a warning)."""
        if not self.programmed:
            raise RuntimeError(f"{self.name}: the analogue array is not programmed yet; call program(seed)")
        self._warn_uncalibrated()
        return self.prepared()[0]

    def read(self, buf: torch.Tensor, codes: torch.Tensor, alpha: torch.Tensor, read_noise: bool = True) -> xb.MVMResult:
        """One batch of analogue MVMs on DAC codes (see :func:`avalanche_rm.hardware.crossbar.analog_mvm`)."""
        prepared = self._prepared_for_read()
        return xb.analog_mvm(self.hardware.crossbar, self.read_sigma_us(read_noise), buf, codes, alpha, self.grid,
                             prepared, noise=self.noise_source, workspace=self.workspace,
                             tap=self._collect if self._calibration is not None else None,
                             quantize=self._calibration is None)

    def fusable(self) -> bool:
        """Whether reads can take the fused compiled path now (switched on, an ADC, no calibration running)."""
        return fused.fused_enabled() and self.hardware.crossbar.adc_bits is not None and self._calibration is None

    def read_fused(self, x: torch.Tensor, alpha: torch.Tensor | None = None, read_noise: bool = True,
                   images: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """DAC coding, MVMs and counts in one compiled call (:mod:`avalanche_rm.hardware.fused`).

        ``x``: input vectors ``[n, in]`` (coded inside), or, with ``alpha [n, 1]``,
        DAC codes already made (see :func:`~avalanche_rm.hardware.crossbar.dac_encode`; ``[n, in]``, or the
        buffer zero-padded to whole tiles); ``images``: with codes, the number of images whose receptive
        fields they are, to get ``y`` channels first (see :func:`~avalanche_rm.hardware.fused.codes_read`).
        Draws the same noise as :meth:`read` would. Returns ``(y, driven rows,
        sum code^2 G_row, saturated conversions)``.
        """
        n_vectors = x.shape[0]
        prepared = self._prepared_for_read()
        xbar = self.hardware.crossbar
        sigma = self.read_sigma_us(read_noise)
        draws = keys = None
        if sigma > 0:
            t = prepared.w.shape[0] if prepared.w.dim() == 3 else 1
            if self.noise_source.mode == "counter":
                keys = self.noise_source.counter_keys(x.device)
            else:
                draws = self.noise_source.normal((t, n_vectors, self.out_features), x.device, x.dtype)
        head = ("linear", x) if alpha is None else ("codes", x, alpha)
        extra = {"images": images} if alpha is not None else {}
        w_conv = None
        if fused.grouped_tiles(x.device):
            w_conv = self._memo("_conv_weight_cache", (prepared.w,), lambda: fused.conv_weight(prepared.w))
        return fused.run(*head, prepared.w, w_conv, prepared.inv_step, prepared.out_factor, self.g_row_sum_us, draws,
                         keys, n_d=xb.dac_levels(xbar), n_a=xb.adc_levels(xbar), sigma=sigma, rows=xbar.rows,
                         dac_round=xbar.dac_bits is not None, **extra)

    def counts(self, res: xb.MVMResult) -> tuple[torch.Tensor, torch.Tensor]:
        """(driven rows, sum of code^2 * row conductance) of a read, for the cost model."""
        return xb.mvm_counts(res.codes, self.g_row_sum_us, self.hardware.crossbar.dac_bits is not None,
                             res.codes_sq, self.workspace)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        # a chip rebuilt from its state (e.g. a Flower client's Context.state) reads with its own noise stream
        if self.programmed:
            self.noise_source.reseed(sub_seed(int(self.chip_seed), "read-noise"))

    def __getstate__(self):
        d = dict(self.__dict__)
        d.pop("_prepared_cache", None)  # derived data, and weak references do not pickle
        d.pop("_mean_cell_cache", None)
        d.pop("_conv_weight_cache", None)
        d["_calibration"] = None
        return d

    def extra_repr(self) -> str:
        return (f"out={self.out_features}, in={self.in_flat}, tiles={self.grid.n_in_tiles}x{self.grid.n_out_tiles}, "
                f"preset={self.hardware.name}")
