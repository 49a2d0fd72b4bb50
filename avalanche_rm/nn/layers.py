"""Hybrid layers: a frozen analogue base on RM crossbars plus digital LoRA branches.

The analogue base is held in buffers (programmed conductances and target
levels), never in parameters: Avalanche puts every parameter into the
optimiser and EWC/SI iterate them. LoRA factors are ``nn.Parameter``s keyed by
adapter name, PEFT style (``lora_A[name]``, ``lora_B[name]``).

Forward: ``y = analogue(W x) + sum_active scaling * B(A x) + bias``. The
analogue part goes through DAC quantisation, per-tile MVM with read noise and
ADC quantisation; its backward pass is the straight-through transpose of the
programmed weights (a transposed crossbar read, charged as such).
"""
from __future__ import annotations

import hashlib
import math
import weakref
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..costs.ledger import CostLedger
from ..hardware import crossbar as xb
from ..hardware.config import HardwareConfig
from ..hardware.device import (
    apply_drift,
    drift_nu,
    fault_mask,
    level_dtype,
    level_to_conductance,
    quantize_to_levels,
)
from ..hardware.digital import fake_quantize
from ..hardware.noise_source import NormalSource
from ..hardware.workspace import Workspace
from ..hardware.programming import ProgrammingReport, residual_write_noise, write_verify


def _sub_seed(seed: int, *tags: object) -> int:
    """Stable 63-bit seed derived from a chip seed and tags (layer name, purpose)."""
    h = hashlib.blake2b(repr((int(seed),) + tags).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


def _generator(seed: int, device: torch.device) -> torch.Generator:
    gen_dev = device if device.type == "cuda" else torch.device("cpu")
    g = torch.Generator(device=gen_dev)
    g.manual_seed(seed)
    return g


def check_tensor(name: str, x: torch.Tensor, features: int, dim: int) -> None:
    """Raise ``ValueError`` naming the layer for a wrong shape, dtype or non-finite input."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: input must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name}: input dtype must be floating point, got {x.dtype}")
    if x.dim() == 0 or x.shape[dim] != features:
        raise ValueError(f"{name}: expected {features} features on dim {dim}, got shape {tuple(x.shape)}")
    # one reduction instead of an elementwise mask: NaN/Inf propagate into the sum (which can also
    # overflow on finite inputs, hence the full check then)
    if not math.isfinite(float(x.detach().sum())) and not torch.isfinite(x).all():
        raise ValueError(f"{name}: input contains NaN or Inf")


class _AnalogMatmul(torch.autograd.Function):
    """Analogue forward, straight-through transposed backward (charged to the ledger)."""

    @staticmethod
    def forward(ctx, x, layer: "_HybridBase", phase: str):  # type: ignore[override]
        ctx.layer = layer
        ctx.in_shape = x.shape
        return layer._analog_forward(x, phase)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        layer: _HybridBase = ctx.layer
        layer._charge_backward(grad_out.numel() // grad_out.shape[layer._out_dim])
        return layer._input_grad(grad_out, ctx.in_shape), None, None


class _HybridBase(nn.Module):
    """Shared machinery of :class:`HybridLinear` and :class:`HybridConv2d` (2-D weight view)."""

    out_features: int
    in_flat: int

    def _init_base(self, weight2d: torch.Tensor, bias: torch.Tensor | None, hardware: HardwareConfig,
                   name: str) -> None:
        if not isinstance(hardware, HardwareConfig):
            raise ValueError(f"hardware must be a HardwareConfig, got {type(hardware).__name__}")
        if not torch.isfinite(weight2d).all():
            raise ValueError(f"{name or type(self).__name__}: weight contains NaN or Inf")
        if bias is not None and not torch.isfinite(bias).all():
            raise ValueError(f"{name or type(self).__name__}: bias contains NaN or Inf")
        self.hardware = hardware
        self.layer_name = name
        self.ledger: CostLedger = CostLedger()
        self.noise_source = NormalSource()
        self.workspace = Workspace()
        dev, xbar = hardware.device, hardware.crossbar
        w = weight2d.detach().to(torch.float32)
        self.grid = xb.tile_grid(xbar, self.out_features, self.in_flat)
        scale = xb.weight_scale_us(xbar, dev, w)
        # cells are stored input-major, [cells_per_weight, in, out]: a tile is then a free view
        g_t = xb.weight_to_conductance(xbar, dev, w, scale).transpose(1, 2).contiguous()
        self.register_buffer("scale_us", scale)
        self.register_buffer("target", self._encode_target(g_t))
        # a fresh array sits at g_min (formed and reset) until programmed
        self.register_buffer("g_us", torch.full_like(g_t, dev.g_min_us))
        self.register_buffer("g_row_sum_us", torch.zeros(self.in_flat))
        self.register_buffer("adc_fs_us", torch.ones(()))
        self.register_buffer("age_s", torch.zeros((), dtype=torch.float64))
        self.register_buffer("chip_seed", torch.full((), -1, dtype=torch.int64))
        self.register_buffer("drift_calls", torch.zeros((), dtype=torch.int64))
        # (input tile, weight column) pairs moved onto spare columns after failed programming
        self.register_buffer("remapped", torch.zeros(self.grid.n_in_tiles, self.out_features, dtype=torch.bool))
        if bias is not None:
            self.register_buffer("bias", bias.detach().to(torch.float32).clone())
        else:
            self.register_buffer("bias", None)
        self.lora_A = nn.ParameterDict()
        self.lora_B = nn.ParameterDict()
        self.lora_bias = nn.ParameterDict()
        self.r: dict[str, int] = {}
        self.lora_alpha: dict[str, float] = {}
        self.scaling: dict[str, float] = {}
        self.active_adapters: list[str] = []
        self.analog_noise = True

    # ------------------------------------------------------------ properties
    @property
    def programmed(self) -> bool:
        return int(self.chip_seed) >= 0

    @property
    def cells(self) -> int:
        return self.g_us.numel()

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
            signed_dtype = torch.int8 if dev.n_levels <= 128 else (torch.int16 if dev.n_levels <= 32768 else torch.int32)
            return (lv[0] - lv[1]).to(signed_dtype).unsqueeze(0)
        return g_t if dev.n_levels is None else quantize_to_levels(dev, g_t).to(level_dtype(dev.n_levels))

    def target_conductance(self) -> torch.Tensor:
        """Target conductance of every cell, ``[cells_per_weight, in, out]`` in uS."""
        dev = self.hardware.device
        if self.hardware.crossbar.mapping == "differential":
            d = self.target[0].to(torch.float32)
            pair = torch.stack([d.clamp_min(0), (-d).clamp_min(0)])
            return dev.g_min_us + (pair if dev.n_levels is None else pair * dev.level_step_us)
        if dev.n_levels is None:
            return self.target
        return level_to_conductance(dev, self.target)

    def _to_weight(self, g_us: torch.Tensor) -> torch.Tensor:
        hw = self.hardware
        return (xb.delta_conductance(hw.crossbar, hw.device, g_us) / self.scale_us).t()

    def effective_weight(self) -> torch.Tensor:
        """Weights the programmed (and drifted) conductances encode, ``[out, in_flat]``."""
        return self._derived()[1].clone()

    def target_weight(self) -> torch.Tensor:
        """Weights the target levels encode (what perfect programming would give)."""
        return self._to_weight(self.target_conductance())

    # ------------------------------------------------------------ programming
    def _fault_code(self, seed: int) -> torch.Tensor:
        gen = _generator(_sub_seed(seed, self.layer_name, "faults"), self.g_us.device)
        code = fault_mask(self.hardware.device, self.cells, gen, self.g_us.device).view_as(self.g_us)
        if bool(self.remapped.any()):
            # remapped columns live on spare cells, with faults of their own
            sgen = _generator(_sub_seed(seed, self.layer_name, "spare-faults"), self.g_us.device)
            spare = fault_mask(self.hardware.device, self.cells, sgen, self.g_us.device).view_as(self.g_us)
            rows = self.hardware.crossbar.rows
            mask = self.remapped.repeat_interleave(rows, dim=0)[: self.in_flat].unsqueeze(0).expand_as(code)
            code = torch.where(mask, spare, code)
        return code

    def program(self, seed: int, phase: str = "deploy") -> ProgrammingReport:
        """Write-verify every cell from its current state to its target; charge the ledger."""
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        gen = _generator(_sub_seed(seed, self.layer_name, "program"), self.g_us.device)
        result = write_verify(self.hardware.device, self.g_us, self.target_conductance(), gen,
                              fault_code=self._fault_code(seed),
                              parallel_cells=self.hardware.crossbar.program_parallel_cells)
        self.g_us.copy_(result.g_us)
        self.chip_seed.fill_(seed)
        # read noise is the chip's own: its stream restarts with every deployment (shared across a model's layers)
        self.noise_source.reseed(_sub_seed(seed, "read-noise"))
        self.age_s.zero_()
        self.drift_calls.zero_()
        rep = result.report
        if self.hardware.crossbar.failure_policy == "remap" and rep.failed_cells:
            rep += self._remap_failed(result.failed, seed)
        self._refresh_adc()
        failed = (self.g_us - self.target_conductance()).abs() > self.hardware.device.wv_tolerance_us
        rep.failed_cells = int(failed.sum())
        rep.failed_per_layer = {self.layer_name: rep.failed_cells}
        rep.failed_per_tile = {self.layer_name: xb.failures_per_tile(self.hardware.crossbar, failed, self.grid).tolist()}
        rep.remapped_columns = {self.layer_name: int(self.remapped.sum())}
        self._charge_programming(rep, phase)
        return rep

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
        gen = _generator(_sub_seed(seed, self.layer_name, "spare-program"), self.g_us.device)
        target = self.target_conductance().reshape(-1)[idx]
        codes = self._fault_code(seed).reshape(-1)[idx]
        res = write_verify(dev, torch.full_like(target, dev.g_min_us), target, gen, fault_code=codes,
                           parallel_cells=xbar.program_parallel_cells)
        flat = self.g_us.view(-1)
        flat[idx] = res.g_us
        return res.report

    def reprogram_weight(self, new_weight2d: torch.Tensor, phase: str = "deploy") -> ProgrammingReport:
        """Change the analogue base to ``new_weight2d`` by write-verify from the current state.

        The per-tensor/column scales are kept, so cells whose target level does
        not change need only their verify read. Weights outside the programmable
        range are clipped to the window.
        """
        if not self.programmed:
            raise RuntimeError(f"{self.layer_name}: program() the layer before reprogramming it")
        if tuple(new_weight2d.shape) != (self.out_features, self.in_flat):
            raise ValueError(f"{self.layer_name}: new weight shape {tuple(new_weight2d.shape)} != "
                             f"{(self.out_features, self.in_flat)}")
        if not torch.isfinite(new_weight2d).all():
            raise ValueError(f"{self.layer_name}: new weight contains NaN or Inf")
        hw = self.hardware
        g_t = xb.weight_to_conductance(hw.crossbar, hw.device, new_weight2d.detach().float(), self.scale_us)
        g_t = g_t.transpose(1, 2).contiguous()
        target = self._encode_target(g_t)
        seed = int(self.chip_seed)
        calls = int(self.drift_calls) + 1
        gen = _generator(_sub_seed(seed, self.layer_name, "reprogram", calls), self.g_us.device)
        self.target.copy_(target)
        result = write_verify(hw.device, self.g_us, self.target_conductance(), gen,
                              fault_code=self._fault_code(seed), parallel_cells=hw.crossbar.program_parallel_cells)
        self.g_us.copy_(result.g_us)
        self.drift_calls.fill_(calls)
        self.age_s.zero_()
        self._refresh_adc()
        rep = result.report
        rep.failed_per_layer = {self.layer_name: rep.failed_cells}
        self._charge_programming(rep, phase)
        return rep

    def _charge_programming(self, rep: ProgrammingReport, phase: str) -> None:
        phase = self.ledger.current_phase(phase)
        self.ledger.add(phase, energy_pj=rep.energy_pj, energy_program_pj=rep.energy_pj,
                        latency_ns=rep.latency_ns, pulses=rep.pulses, verify_reads=rep.verify_reads,
                        cells_programmed=rep.cells, failed_cells=rep.failed_cells)
        self.ledger.log_event("program", phase, layer=self.layer_name, cells=rep.cells, pulses=rep.pulses,
                              failed_cells=rep.failed_cells, energy_pj=rep.energy_pj)

    def _tiles(self) -> torch.Tensor:
        hw = self.hardware
        dg = xb.delta_conductance(hw.crossbar, hw.device, self.g_us)
        if self.grid.n_in_tiles == 1:
            return dg.unsqueeze(0)
        return xb.tile_layout(dg, self.grid, hw.crossbar.rows)

    def _refresh_adc(self) -> None:
        """Recalibrate the ADC range and cache per-row conductance sums after any write or drift."""
        self.adc_fs_us.copy_(xb.adc_full_scale_us(self.hardware.crossbar, self._tiles()))
        self.g_row_sum_us.copy_(self.g_us.sum(dim=(0, 2)))

    def drift(self, seconds: float) -> None:
        """Age the programmed cells by ``seconds`` more (stuck cells do not move)."""
        if not self.programmed:
            raise RuntimeError(f"{self.layer_name}: program() the layer before drifting it")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) \
                or seconds < 0:
            raise ValueError(f"drift seconds must be a finite number >= 0, got {seconds!r}")
        if seconds == 0:
            return
        dev = self.hardware.device
        seed = int(self.chip_seed)
        calls = int(self.drift_calls) + 1
        t0 = float(self.age_s)
        gen = _generator(_sub_seed(seed, self.layer_name, "drift", calls), self.g_us.device)
        nu = None
        if dev.drift_model == "power_law":
            nu_gen = _generator(_sub_seed(seed, self.layer_name, "nu"), self.g_us.device)
            nu = drift_nu(dev, self.cells, nu_gen).to(self.g_us.device).view_as(self.g_us)
        new = apply_drift(dev, self.g_us.clone(), t0, t0 + float(seconds), gen, nu)
        stuck = self._fault_code(seed) != 0
        self.g_us.copy_(torch.where(stuck, self.g_us, new))
        self.age_s.fill_(t0 + float(seconds))
        self.drift_calls.fill_(calls)
        self._refresh_adc()

    def set_conductance(self, g_us: torch.Tensor) -> None:
        """Overwrite the cells' conductances ``[cells_per_weight, in, out]`` (a simulator what-if, not a
        chip write: nothing is charged). Used to restore a saved state after a noise study."""
        if not self.programmed:
            raise RuntimeError(f"{self.layer_name}: program() the layer before setting its conductances")
        if tuple(g_us.shape) != tuple(self.g_us.shape):
            raise ValueError(f"{self.layer_name}: conductance shape {tuple(g_us.shape)} != {tuple(self.g_us.shape)}")
        if not torch.isfinite(g_us).all():
            raise ValueError(f"{self.layer_name}: conductances contain NaN or Inf")
        self.g_us.copy_(g_us)
        self._refresh_adc()

    def apply_write_noise(self, sigma_us: float, seed: int) -> None:
        """Replace the programmed state by one-shot writes: target + N(0, sigma_us), clamped to the window.

        This is the reference code's deployment model (additive Gaussian on G after
        an ideal write-verify, no verify loop); it is a study tool and charges nothing.
        """
        if not self.programmed:
            raise RuntimeError(f"{self.layer_name}: program() the layer before adding write noise")
        gen = _generator(_sub_seed(seed, self.layer_name, "write-noise"), self.g_us.device)
        g = residual_write_noise(self.hardware.device, self.target_conductance(), sigma_us, gen)
        stuck = self._fault_code(int(self.chip_seed)) != 0
        self.g_us.copy_(torch.where(stuck, self.g_us, g))
        self._refresh_adc()

    # ------------------------------------------------------------ adapters
    def _lora_shapes(self, rank: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        raise NotImplementedError

    def update_layer(self, name: str, rank: int, alpha: float, rank_scaling: bool = True,
                     generator: torch.Generator | None = None, bias: bool = False) -> None:
        """Add LoRA branch ``name`` (A Kaiming-uniform, B zeros: outputs unchanged at creation).

        ``bias=True`` gives the branch its own output bias (PEFT's ``lora_bias``),
        held in the digital unit like the base bias.
        """
        if name in self.lora_A:
            raise ValueError(f"{self.layer_name}: adapter {name!r} already exists")
        a_shape, b_shape = self._lora_shapes(rank)
        ref = self.g_us
        a = torch.empty(a_shape, device=ref.device, dtype=torch.float32)
        fan_in = math.prod(a_shape[1:])
        bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)) bound
        a.uniform_(-bound, bound, generator=generator)
        self.lora_A[name] = nn.Parameter(a)
        self.lora_B[name] = nn.Parameter(torch.zeros(b_shape, device=ref.device, dtype=torch.float32))
        if bias:
            self.lora_bias[name] = nn.Parameter(torch.zeros(self.out_features, device=ref.device, dtype=torch.float32))
        self.r[name] = rank
        self.lora_alpha[name] = float(alpha)
        self.scaling[name] = float(alpha) / rank if rank_scaling else float(alpha)

    def delete_adapter(self, name: str) -> None:
        if name not in self.lora_A:
            raise ValueError(f"{self.layer_name}: no adapter named {name!r}")
        del self.lora_A[name]
        del self.lora_B[name]
        if name in self.lora_bias:
            del self.lora_bias[name]
        for d in (self.r, self.lora_alpha, self.scaling):
            d.pop(name, None)
        self.active_adapters = [a for a in self.active_adapters if a != name]

    def set_adapter(self, names: Iterable[str]) -> None:
        names = list(names)
        self.active_adapters = [n for n in names if n in self.lora_A]

    def get_delta_weight(self, name: str) -> torch.Tensor:
        """The adapter's contribution as a dense ``[out, in_flat]`` weight (quantised as stored)."""
        bits = self.hardware.digital.adapter_bits
        a = fake_quantize(self.lora_A[name], bits).reshape(self.r[name], -1)
        b = fake_quantize(self.lora_B[name], bits).reshape(self.out_features, self.r[name])
        return (b @ a) * self.scaling[name]

    # ------------------------------------------------------------ compute
    def _derived(self) -> tuple[xb.PreparedMVM, torch.Tensor]:
        """(prepared MVM operands, effective weight ``[out, in]``), recomputed only when the cells change.

        The key holds the in-place version counters of the state buffers, so any
        write (programming, drift, noise studies, ``load_state_dict``) invalidates it.
        """
        state = (self.g_us, self.adc_fs_us, self.scale_us)
        cached = self.__dict__.get("_derived_cache")
        inference = torch.is_inference_mode_enabled()
        if cached is not None and not inference and all(
                ref() is t and t._version == v for (ref, v), t in zip(cached[0], state)):
            return cached[1], cached[2]
        hw = self.hardware
        dg = xb.delta_conductance(hw.crossbar, hw.device, self.g_us)
        prepared = xb.prepare_mvm(hw.crossbar, dg, self.grid, self.adc_fs_us, self.scale_us)
        eff = (dg / self.scale_us).t()
        if not inference:  # inference-mode tensors carry no version counter and cannot be reused in autograd
            # weak references: a buffer replaced by a new tensor (e.g. .to()) never matches an old entry
            self.__dict__["_derived_cache"] = (tuple((weakref.ref(t), t._version) for t in state), prepared, eff)
        return prepared, eff

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        # a chip rebuilt from its state (e.g. a Flower client's Context.state) reads with its own noise stream
        if self.programmed:
            self.noise_source.reseed(_sub_seed(int(self.chip_seed), "read-noise"))

    def __getstate__(self):
        d = dict(self.__dict__)
        d.pop("_derived_cache", None)  # derived data, and weak references do not pickle
        return d

    # how a layer feeds the crossbar: Linear rows are vectors; HybridConv2d overrides these for patches
    _out_dim = -1

    def _encode(self, x: torch.Tensor, pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """DAC codes of the layer input, ``(alpha [n, 1], buffer [n, in + pad], codes [n, in])``."""
        return xb.dac_encode(self.hardware.crossbar, x, pad, self.workspace)

    def _to_output(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return y

    def _input_grad(self, grad_out: torch.Tensor, in_shape: torch.Size) -> torch.Tensor:
        """Straight-through input gradient: the transposed read of the programmed weights."""
        return grad_out @ self._derived()[1]

    def _shadow_out(self, x: torch.Tensor, shadow: torch.Tensor) -> torch.Tensor:
        return x @ shadow.t()

    def _analog_forward(self, x: torch.Tensor, phase: str | None = None) -> torch.Tensor:
        hw = self.hardware
        prepared, _ = self._derived()
        alpha, buf, codes = self._encode(x, xb.input_pad(hw.crossbar, self.grid))
        res = xb.analog_mvm(hw.crossbar, hw.device, buf, codes, alpha, self.grid, prepared,
                            read_noise=self.analog_noise, noise=self.noise_source, workspace=self.workspace)
        self._charge_forward(res, codes.shape[0], phase)
        return self._to_output(res.y, x)

    def _phase(self) -> str:
        return self.ledger.current_phase("train" if (self.training and torch.is_grad_enabled()) else "infer")

    def _charge_forward(self, res: xb.MVMResult, n: int, phase: str | None = None) -> None:
        if not self.ledger.enabled:
            return
        hw = self.hardware
        cpw = hw.crossbar.cells_per_weight
        c = xb.mvm_cost(hw.crossbar, hw.device, res.codes, res.code_full_scale, self.g_row_sum_us, self.grid, n, cpw,
                        codes_sq=res.codes_sq, workspace=self.workspace)
        phase = phase or self._phase()
        led = self.ledger
        led.add_scaled(phase, c.driven_rows, {"analog_macs": c.macs_per_row, "dac_conversions": c.dac_per_row,
                                              "energy_dac_pj": c.dac_energy_pj_per_row,
                                              "energy_pj": c.dac_energy_pj_per_row})
        led.add_scaled(phase, c.cell_energy_pj, {"energy_analog_pj": 1.0, "energy_pj": 1.0})
        led.add(phase, energy_pj=c.adc_energy_pj, energy_adc_pj=c.adc_energy_pj, adc_conversions=c.adc_conversions,
                latency_ns=c.latency_ns)

    def _charge_backward(self, n: int) -> None:
        """Transposed read for the input gradient: DACs on columns, ADCs on rows."""
        if not self.ledger.enabled:
            return
        hw = self.hardware
        xbar = hw.crossbar
        g = self.grid
        macs = n * self.in_flat * self.out_features * xbar.cells_per_weight
        dac = n * self.out_features * g.n_in_tiles
        adc = n * self.in_flat * g.n_out_tiles
        # inputs of a transposed read are gradients, not DAC-normalised activations: price them at
        # full swing on the mean cell (an upper bound)
        g_mean = self.g_row_sum_us.sum() / self.cells
        cell_e = macs * hw.device.read_voltage_v ** 2 * g_mean * hw.device.read_time_ns * 1e-3
        e = cell_e + dac * xbar.dac_energy_pj + adc * xbar.adc_energy_pj
        lat = n * (hw.device.read_time_ns + xbar.col_mux * xbar.adc_time_ns)
        # autograd runs backward with grad mode off, so the phase cannot be inferred from it
        self.ledger.add(self.ledger.current_phase("train"), energy_pj=e, energy_analog_pj=cell_e, energy_dac_pj=dac * xbar.dac_energy_pj,
                        energy_adc_pj=adc * xbar.adc_energy_pj, latency_ns=lat, analog_macs=macs,
                        dac_conversions=dac, adc_conversions=adc)

    def _charge_digital(self, n_vectors: int, n_params: int, macs_per_vector: int, act_per_vector: int,
                        grad: bool) -> None:
        if not self.ledger.enabled:
            return
        dig = self.hardware.digital
        macs = n_vectors * macs_per_vector * (3 if grad else 1)  # backward: dA, dB and dx
        sram_r = n_params * dig.adapter_bytes_per_param + n_vectors * act_per_vector * dig.activation_bytes
        e_mac = macs * dig.mac_energy_pj
        e_sram = sram_r * dig.sram_read_energy_pj_per_byte
        lat = math.ceil(macs / dig.pe_count) * dig.mac_time_ns
        self.ledger.add(self._phase(), energy_pj=e_mac + e_sram, energy_digital_pj=e_mac, energy_sram_pj=e_sram,
                        digital_macs=macs, sram_read_bytes=sram_r, latency_ns=lat)

    def _base(self, x2: torch.Tensor) -> torch.Tensor:
        if not self.programmed:
            raise RuntimeError(f"{self.layer_name}: the analogue base is not programmed yet; call program(seed)")
        shadow = getattr(self, "weight_shadow", None)
        if shadow is not None and shadow.requires_grad and torch.is_grad_enabled():
            # full-weight training: the chip computes the output, gradients reach the digital shadow
            phase = self._phase()
            with torch.no_grad():
                y = self._analog_forward(x2, phase)
            lin = self._shadow_out(x2, shadow)
            self._charge_weight_gradient(lin.numel() // lin.shape[self._out_dim])
            return y + (lin - lin.detach())
        if not (torch.is_grad_enabled() and x2.requires_grad):
            return self._analog_forward(x2)
        # autograd runs Function.forward with grad mode off: decide the phase out here
        return _AnalogMatmul.apply(x2, self, self._phase())

    def enable_weight_training(self) -> nn.Parameter:
        """Add a trainable digital shadow of the analogue weights (full-weight baselines).

        The forward value still comes from the programmed cells; updates reach the
        chip only when :meth:`reprogram_weight` writes the shadow back.
        """
        if getattr(self, "weight_shadow", None) is None:
            self.weight_shadow = nn.Parameter(self.target_weight().detach().clone())
        return self.weight_shadow

    def _charge_weight_gradient(self, n: int) -> None:
        """dW outer products in the digital unit plus the transposed analogue read for dx."""
        if not self.ledger.enabled:
            return
        dig = self.hardware.digital
        macs = n * self.in_flat * self.out_features
        self.ledger.add(self.ledger.current_phase("train"), energy_pj=macs * dig.mac_energy_pj,
                        energy_digital_pj=macs * dig.mac_energy_pj, digital_macs=macs,
                        latency_ns=math.ceil(macs / dig.pe_count) * dig.mac_time_ns)
        self._charge_backward(n)

    def adapter_parameters(self, names: Iterable[str] | None = None) -> list[nn.Parameter]:
        names = list(self.lora_A) if names is None else [n for n in names if n in self.lora_A]
        out = []
        for n in names:
            out += [self.lora_A[n], self.lora_B[n]] + ([self.lora_bias[n]] if n in self.lora_bias else [])
        return out

    def extra_repr(self) -> str:
        hw = self.hardware
        return (f"out={self.out_features}, in={self.in_flat}, tiles={self.grid.n_in_tiles}x{self.grid.n_out_tiles}, "
                f"preset={hw.name}, adapters={list(self.lora_A)}, active={self.active_adapters}")


class HybridLinear(_HybridBase):
    """``nn.Linear`` with its weight on RM crossbars and LoRA branches in the digital unit."""

    def __init__(self, in_features: int, out_features: int, hardware: HardwareConfig, bias: bool = True,
                 weight: torch.Tensor | None = None, bias_value: torch.Tensor | None = None, name: str = "") -> None:
        super().__init__()
        if in_features <= 0 or out_features <= 0:
            raise ValueError(f"in_features and out_features must be > 0, got {in_features}, {out_features}")
        self.in_features = in_features
        self.in_flat = in_features
        self.out_features = out_features
        if weight is None:
            ref = nn.Linear(in_features, out_features, bias=bias)
            weight, bias_value = ref.weight, ref.bias
        if tuple(weight.shape) != (out_features, in_features):
            raise ValueError(f"weight shape {tuple(weight.shape)} != (out_features, in_features) = "
                             f"{(out_features, in_features)}")
        if bias and bias_value is None:
            bias_value = torch.zeros(out_features)
        self._init_base(weight, bias_value if bias else None, hardware, name)

    @classmethod
    def from_linear(cls, layer: nn.Linear, hardware: HardwareConfig, name: str = "") -> "HybridLinear":
        return cls(layer.in_features, layer.out_features, hardware, bias=layer.bias is not None,
                   weight=layer.weight, bias_value=layer.bias, name=name)

    def _lora_shapes(self, rank: int):
        return (rank, self.in_features), (self.out_features, rank)

    def add_digital_outputs(self, weight: torch.Tensor, bias: torch.Tensor | None = None,
                            trainable: bool = False) -> None:
        """Append output rows computed in the digital unit (e.g. a classifier head grown by a class).

        Growing the head this way writes SRAM, never an analogue cell. The rows are
        appended after the analogue outputs; ``trainable=True`` lets a baseline
        optimise them (they are then parameters with ``requires_grad``).
        """
        if weight.dim() != 2 or weight.shape[1] != self.in_features:
            raise ValueError(f"{self.layer_name}: digital output weight must be [k, {self.in_features}], "
                             f"got {tuple(weight.shape)}")
        if bias is not None and tuple(bias.shape) != (weight.shape[0],):
            raise ValueError(f"{self.layer_name}: digital output bias must be [{weight.shape[0]}], "
                             f"got {tuple(bias.shape)}")
        if not torch.isfinite(weight).all() or (bias is not None and not torch.isfinite(bias).all()):
            raise ValueError(f"{self.layer_name}: digital outputs contain NaN or Inf")
        ref = self.g_us
        w = weight.detach().to(ref.device, torch.float32)
        b = torch.zeros(w.shape[0], device=ref.device) if bias is None else bias.detach().to(ref.device, torch.float32)
        old_w = getattr(self, "digital_weight", None)
        if old_w is not None:
            w = torch.cat([old_w.detach(), w])
            b = torch.cat([self.digital_bias.detach(), b])
        self.digital_weight = nn.Parameter(w, requires_grad=trainable)
        self.digital_bias = nn.Parameter(b, requires_grad=trainable)

    @property
    def digital_out_features(self) -> int:
        w = getattr(self, "digital_weight", None)
        return 0 if w is None else int(w.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor(self.layer_name or "HybridLinear", x, self.in_features, -1)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        y = self._base(x2)
        if self.active_adapters:
            bits = self.hardware.digital.adapter_bits
            n_params = 0
            macs = 0
            acts = self.in_features + self.out_features
            for name in self.active_adapters:
                a = fake_quantize(self.lora_A[name], bits)
                b = fake_quantize(self.lora_B[name], bits)
                y = y + (x2 @ a.t()) @ b.t() * self.scaling[name]
                if name in self.lora_bias:
                    y = y + self.lora_bias[name]
                n_params += a.numel() + b.numel()
                macs += a.numel() + b.numel()
                acts += self.r[name]
            grad = torch.is_grad_enabled() and any(p.requires_grad for p in self.adapter_parameters(self.active_adapters))
            self._charge_digital(x2.shape[0], n_params, macs, acts, grad and self.training)
        if self.bias is not None:
            y = y + self.bias
        k = self.digital_out_features
        if k:
            dw = fake_quantize(self.digital_weight, self.hardware.digital.adapter_bits)
            y = torch.cat([y, x2 @ dw.t() + self.digital_bias], dim=-1)
            self._charge_digital(x2.shape[0], dw.numel(), dw.numel(), self.in_features + k,
                                 self.training and self.digital_weight.requires_grad and torch.is_grad_enabled())
        return y.reshape(*lead, self.out_features + k)


class HybridConv2d(_HybridBase):
    """``nn.Conv2d`` (groups=1) lowered to crossbar MVMs by im2col, LoRA as conv(A) then 1x1 conv(B)."""

    def __init__(self, conv: nn.Conv2d, hardware: HardwareConfig, name: str = "") -> None:
        super().__init__()
        if conv.groups != 1:
            raise ValueError(f"{name or 'HybridConv2d'}: groups={conv.groups} is not supported (only groups=1)")
        if conv.padding_mode != "zeros":
            raise ValueError(f"{name or 'HybridConv2d'}: padding_mode={conv.padding_mode!r} is not supported")
        if isinstance(conv.padding, str):
            raise ValueError(f"{name or 'HybridConv2d'}: string padding {conv.padding!r} is not supported; "
                             "give explicit integers")
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size, self.stride = tuple(conv.kernel_size), tuple(conv.stride)
        self.padding, self.dilation = tuple(conv.padding), tuple(conv.dilation)
        self.out_features = conv.out_channels
        self.in_flat = conv.in_channels * self.kernel_size[0] * self.kernel_size[1]
        self._init_base(conv.weight.reshape(conv.out_channels, -1), conv.bias, hardware, name)

    def _lora_shapes(self, rank: int):
        return (rank, self.in_channels, *self.kernel_size), (self.out_channels, rank, 1, 1)

    _out_dim = 1

    def _out_hw(self, h: int, w: int) -> tuple[int, int]:
        kh, kw = self.kernel_size
        ho = (h + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        wo = (w + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        return ho, wo

    def _encode(self, x: torch.Tensor, pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """DAC codes of every receptive field (one crossbar input vector per output pixel), in ``(c, kh, kw)`` order.

        The patches are a strided view of the padded input, scaled and rounded
        as they are gathered (no separate im2col); each field's abs-max is a
        max-pool of the channel-wise abs-max.
        """
        xbar = self.hardware.crossbar
        n, c, h, w = x.shape
        ho, wo = self._out_hw(h, w)
        kh, kw = self.kernel_size
        if self.dilation != (1, 1):
            cols = F.unfold(x, self.kernel_size, dilation=self.dilation, padding=self.padding, stride=self.stride)
            return xb.dac_encode(xbar, cols.transpose(1, 2).reshape(-1, self.in_flat), pad, self.workspace)
        ph, pw = self.padding
        xp = F.pad(x, (pw, pw, ph, ph)) if (ph or pw) else x
        amax = xp.abs().amax(dim=1, keepdim=True)
        alpha = F.max_pool2d(amax, self.kernel_size, self.stride).clamp_min_(xb.ALPHA_FLOOR)  # [n, 1, ho, wo]
        patches = xp.unfold(2, kh, self.stride[0]).unfold(3, kw, self.stride[1])  # [n, c, ho, wo, kh, kw]
        # scale in im2col order [n, c, kh, kw, ho, wo] (long contiguous inner loops), then lay the
        # vectors out as rows: two vectorised passes beat one six-dimensional gather
        cols = xb.scratch(self.workspace, "patches", (n, c, kh, kw, ho, wo), x)
        torch.mul(patches.permute(0, 1, 4, 5, 2, 3), (xb.dac_levels(xbar) / alpha).view(n, 1, 1, 1, ho, wo), out=cols)
        if xbar.dac_bits is not None:
            cols.round_()
        buf, codes = xb.code_buffer(n * ho * wo, self.in_flat, pad, x, self.workspace)
        codes.view(n, ho * wo, self.in_flat).copy_(cols.view(n, self.in_flat, ho * wo).transpose(1, 2))
        return alpha.view(-1, 1), buf, codes

    def _to_output(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ho, wo = self._out_hw(x.shape[2], x.shape[3])
        return y.view(x.shape[0], ho, wo, self.out_channels).permute(0, 3, 1, 2).contiguous()

    def _input_grad(self, grad_out: torch.Tensor, in_shape: torch.Size) -> torch.Tensor:
        w = self._derived()[1].view(self.out_channels, self.in_channels, *self.kernel_size)
        return torch.nn.grad.conv2d_input(in_shape, w, grad_out, self.stride, self.padding, self.dilation)

    def _shadow_out(self, x: torch.Tensor, shadow: torch.Tensor) -> torch.Tensor:
        w = shadow.view(self.out_channels, self.in_channels, *self.kernel_size)
        return F.conv2d(x, w, None, self.stride, self.padding, self.dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor(self.layer_name or "HybridConv2d", x, self.in_channels, -3)
        if x.dim() != 4:
            raise ValueError(f"{self.layer_name or 'HybridConv2d'}: expected a 4-D input, got shape {tuple(x.shape)}")
        y = self._base(x)
        if self.active_adapters:
            bits = self.hardware.digital.adapter_bits
            n_params = macs = 0
            acts = self.in_flat + self.out_channels
            for name in self.active_adapters:
                a = fake_quantize(self.lora_A[name], bits)
                b = fake_quantize(self.lora_B[name], bits)
                h_ = F.conv2d(x, a, stride=self.stride, padding=self.padding, dilation=self.dilation)
                y = y + F.conv2d(h_, b) * self.scaling[name]
                if name in self.lora_bias:
                    y = y + self.lora_bias[name].view(1, -1, 1, 1)
                n_params += a.numel() + b.numel()
                macs += a.numel() + b.numel()
                acts += self.r[name]
            grad = torch.is_grad_enabled() and any(p.requires_grad for p in self.adapter_parameters(self.active_adapters))
            self._charge_digital(y.numel() // self.out_channels, n_params, macs, acts, grad and self.training)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y
