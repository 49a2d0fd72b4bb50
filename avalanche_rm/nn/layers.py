"""Hybrid layers: a frozen analogue base on RM crossbars plus digital LoRA branches.

A layer holds an :class:`~avalanche_rm.hardware.array.AnalogArray` (the cells
and their periphery state, all buffers) and the LoRA factors, which are
``nn.Parameter``s keyed by adapter name, PEFT style (``lora_A[name]``,
``lora_B[name]``): Avalanche puts every parameter into the optimiser and
EWC/SI iterate them, so the analogue base must not be parameters.

Forward: ``y = analogue(W x) + sum_active scaling * B(A x) + bias``. The
analogue part goes through DAC coding, per-tile MVMs with read noise and the
ADCs; its backward pass is the straight-through transpose of the programmed
weights (a transposed crossbar read, charged as such). The LoRA branch runs in
the digital unit at ``activation_bits`` x ``adapter_bits``: its input, its
rank-r intermediate and its output are fake-quantised (straight-through).
Layers only count: each call emits one event record (:class:`~avalanche_rm.costs.meter.LayerCall`)
to the chip's meter, which prices it (:mod:`avalanche_rm.costs`).
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..costs.ledger import CostLedger
from ..costs.meter import LayerCall, Meter
from ..costs.residency import DigitalResidency
from ..hardware import crossbar as xb
from ..hardware.array import AnalogArray
from ..hardware.config import HardwareConfig
from ..hardware.digital import fake_quantize, fake_quantize_per_sample
from ..hardware.programming import ProgrammingReport
from .profile import hybrid_layer_scope


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
        layer._meter_backward(grad_out.numel() // grad_out.shape[layer._out_dim])
        return layer._input_grad(grad_out, ctx.in_shape), None, None


class _HybridBase(nn.Module):
    """Shared machinery of :class:`HybridLinear` and :class:`HybridConv2d` (2-D weight view)."""

    out_features: int
    in_flat: int

    def _init_base(self, weight2d: torch.Tensor, bias: torch.Tensor | None, hardware: HardwareConfig,
                   name: str) -> None:
        if not isinstance(hardware, HardwareConfig):
            raise ValueError(f"hardware must be a HardwareConfig, got {type(hardware).__name__}")
        if bias is not None and not torch.isfinite(bias).all():
            raise ValueError(f"{name or type(self).__name__}: bias contains NaN or Inf")
        self.hardware = hardware
        self.layer_name = name
        self.array = AnalogArray(weight2d, hardware, name)
        self.residency = DigitalResidency(hardware)
        self.meter = Meter(hardware, CostLedger(), self.residency)
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
        self._read: dict | None = None

    @property
    def ledger(self) -> CostLedger:
        """The ledger this layer's meter charges (the chip's, once in a :class:`HybridModel`)."""
        return self.meter.ledger

    @ledger.setter
    def ledger(self, ledger: CostLedger) -> None:
        self.meter.ledger = ledger

    # ------------------------------------------------------------ the analogue array
    @property
    def programmed(self) -> bool:
        return self.array.programmed

    @property
    def cells(self) -> int:
        return self.array.cells

    @property
    def grid(self) -> xb.TileGrid:
        return self.array.grid

    def target_weight(self) -> torch.Tensor:
        """Weights the target levels encode (what perfect programming would give), ``[out, in_flat]``."""
        return self.array.target_weight()

    def effective_weight(self) -> torch.Tensor:
        """Weights the programmed (and drifted) conductances encode, ``[out, in_flat]``."""
        return self.array.effective_weight()

    def program(self, seed: int, phase: str = "deploy") -> ProgrammingReport:
        """Write-verify every cell from its current state to its target (the targets arrive from off chip, one
        level code per cell); charge the ledger."""
        phase = self.ledger.current_phase(phase)
        rep = self.meter.programming(self.array.program(seed), phase, self.layer_name)
        self.meter.level_stream(phase, rep.cells)
        return rep

    def reprogram_weight(self, new_weight2d: torch.Tensor, phase: str = "deploy",
                         from_fp32: bool = True) -> ProgrammingReport:
        """Change the analogue base to ``new_weight2d`` by write-verify (see :meth:`AnalogArray.reprogram`).

        Besides the write-verify job, what decides the cells that enter it is charged: ``from_fp32`` (on-chip
        training, merging) the comparison of every weight's new and programmed level in the digital unit; else
        (an update trained off chip) receiving the list of changed cells.
        """
        phase = self.ledger.current_phase(phase)
        rep = self.meter.programming(self.array.reprogram(new_weight2d), phase, self.layer_name)
        self.meter.reprogram_plan(phase, new_weight2d.numel(), rep.cells, from_fp32)
        return rep

    def drift(self, seconds: float) -> None:
        """Age the programmed cells by ``seconds`` more (stuck cells do not move)."""
        self.array.drift(seconds)

    def set_conductance(self, g_us: torch.Tensor) -> None:
        """Overwrite the weight cells (a simulator what-if, not a chip write: nothing is charged)."""
        self.array.set_conductance(g_us)

    def apply_write_noise(self, sigma_us: float, seed: int) -> None:
        """The reference code's one-shot write-noise model on the weight cells (a study tool; free)."""
        self.array.apply_write_noise(sigma_us, seed)

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
        ref = self.array.g_us
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

    def adapter_parameters(self, names: Iterable[str] | None = None) -> list[nn.Parameter]:
        names = list(self.lora_A) if names is None else [n for n in names if n in self.lora_A]
        out = []
        for n in names:
            out += [self.lora_A[n], self.lora_B[n]] + ([self.lora_bias[n]] if n in self.lora_bias else [])
        return out

    def stored_digital_params(self) -> tuple[int, int]:
        """(adapter factors and digital output rows held at adapter precision, digital bias values)."""
        n = sum(p.numel() for n_ in self.lora_A for p in (self.lora_A[n_], self.lora_B[n_]))
        n_bias = sum(p.numel() for p in self.lora_bias.values())
        return n, n_bias

    def read_digital_params(self) -> tuple[int, int]:
        """(values at adapter precision, bias values) a forward pass reads: the active adapters' factors and
        head rows, and one bias vector (the base's and the active adapters' biases, pre-summed)."""
        n = sum(self.lora_A[a].numel() + self.lora_B[a].numel() for a in self.active_adapters)
        has_bias = self.bias is not None or any(a in self.lora_bias for a in self.active_adapters)
        return n, self.out_features if has_bias else 0

    # ------------------------------------------------------------ compute
    # how a layer feeds the crossbar: Linear rows are vectors; HybridConv2d overrides these for patches
    _out_dim = -1

    def _encode(self, x: torch.Tensor, pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """DAC codes of the layer input, ``(alpha [n, 1], buffer [n, in + pad], codes [n, in])``."""
        return xb.dac_encode(self.hardware.crossbar, x, pad, self.array.workspace)

    def _to_output(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return y

    def _input_grad(self, grad_out: torch.Tensor, in_shape: torch.Size) -> torch.Tensor:
        """Straight-through input gradient: the transposed read of the programmed weights."""
        return grad_out @ self.array.prepared()[1]

    def _shadow_out(self, x: torch.Tensor, shadow: torch.Tensor) -> torch.Tensor:
        return x @ shadow.t()

    #: whether the fused read codes this layer's inputs itself (vectors) or takes codes made by :meth:`_encode`
    _fused_codes_inside = True

    def _fused_to_output(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return y

    def _analog_forward(self, x: torch.Tensor, phase: str | None = None) -> torch.Tensor:
        if self.array.fusable():
            n_d = xb.dac_levels(self.hardware.crossbar)
            if self._fused_codes_inside:
                y, driven, x2g, saturated = self.array.read_fused(x, read_noise=self.analog_noise)
            else:  # the codes go in already laid out on the tiles (padded), as the eager read takes them
                alpha, buf, _ = self._encode(x, xb.input_pad(self.hardware.crossbar, self.grid))
                y, driven, x2g, saturated = self.array.read_fused(buf, alpha, read_noise=self.analog_noise,
                                                                  images=int(x.shape[0]))
                y = self._fused_to_output(y, x)
            self._note_read(driven, x2g, saturated, n_d, y.numel() // self.out_features, phase)
            return y
        alpha, buf, codes = self._encode(x, xb.input_pad(self.hardware.crossbar, self.grid))
        res = self.array.read(buf, codes, alpha, read_noise=self.analog_noise)
        if self.ledger.enabled:  # the counts are a pass over the codes: skipped when nothing is charged
            driven, x2g = self.array.counts(res)
            self._note_read(driven, x2g, res.saturated, res.code_full_scale, codes.shape[0], phase)
        return self._to_output(res.y, x)

    def _phase(self) -> str:
        return self.ledger.current_phase("train" if (self.training and torch.is_grad_enabled()) else "infer")

    def _note_read(self, driven: torch.Tensor, x2g: torch.Tensor, saturated: torch.Tensor | None,
                   code_full_scale: float, n: int, phase: str | None = None) -> None:
        """Keep one batch of ``n`` analogue reads' counts for the call's event record (see :meth:`_meter_call`)."""
        self._read = {"driven": driven, "x2g": x2g, "saturated": saturated, "code_full_scale": code_full_scale,
                      "n": n, "phase": phase or self._phase()}

    def _meter_call(self, n_vectors: int, n_samples: int, buffer_bytes: float, nonzero: torch.Tensor | None = None,
                    lora_rank: int = 0, lora_params: int = 0, lora_training: bool = False, rows: int = 0,
                    rows_training: bool = False, bias: bool = False) -> None:
        """Emit this call's event record (the analogue read noted by :meth:`_note_read` plus the digital work)."""
        read, self._read = self._read, None
        if not self.ledger.enabled:
            return
        phase = read["phase"] if read is not None else self._phase()
        call = LayerCall(phase, n_vectors, n_samples, self.in_flat, self.out_features, buffer_bytes,
                         lora_rank=lora_rank, lora_params=lora_params, lora_training=lora_training, nonzero=nonzero,
                         rows=rows, rows_training=rows_training, bias=bias)
        if read is not None:
            call.grid, call.code_full_scale = self.grid, read["code_full_scale"]
            call.driven, call.x2g, call.saturated = read["driven"], read["x2g"], read["saturated"]
        self.meter.layer_call(call)

    def _meter_backward(self, n: int) -> None:
        """Transposed read for the input gradient: DACs on columns, ADCs on rows."""
        # autograd runs backward with grad mode off, so the phase cannot be inferred from it
        self.meter.transposed_read(self.ledger.current_phase("train"), self.grid, n, self.array.mean_cell_us())

    def _training_pass(self) -> bool:
        return self.training and torch.is_grad_enabled()

    def _base(self, x2: torch.Tensor) -> torch.Tensor:
        shadow = getattr(self, "weight_shadow", None)
        if shadow is not None and shadow.requires_grad and torch.is_grad_enabled():
            # full-weight training: the chip computes the output, gradients reach the digital shadow
            phase = self._phase()
            with torch.no_grad():
                y = self._analog_forward(x2, phase)
            lin = self._shadow_out(x2, shadow)
            # dW outer products in the digital unit plus the transposed analogue read for dx
            self.meter.weight_gradient(phase, self.grid, lin.numel() // lin.shape[self._out_dim],
                                       self.array.mean_cell_us())
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

    def _lora_terms(self) -> tuple[list[str], int, int, bool, bool]:
        """(active names, rank sum, stored factor values, whether any has a bias, whether any is trained)."""
        names = self.active_adapters
        rsum = sum(self.r[n] for n in names)
        n_params = sum(self.lora_A[n].numel() + self.lora_B[n].numel() for n in names)
        has_bias = any(n in self.lora_bias for n in names)
        grad = torch.is_grad_enabled() and any(p.requires_grad for p in self.adapter_parameters(names))
        return names, rsum, n_params, has_bias, grad

    def extra_repr(self) -> str:
        return f"adapters={list(self.lora_A)}, active={self.active_adapters}"


def _samples(x: torch.Tensor) -> int:
    """Samples in a layer input: its leading dimension (a weight is read once per sample)."""
    return int(x.shape[0]) if x.dim() > 1 else 1


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
        ref = self.array.g_us
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

    def stored_digital_params(self) -> tuple[int, int]:
        n, n_bias = super().stored_digital_params()
        k = self.digital_out_features
        return n + k * self.in_features, n_bias + k

    def read_digital_params(self) -> tuple[int, int]:
        n, n_bias = super().read_digital_params()
        k = self.digital_out_features
        return n + k * self.in_features, n_bias + k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with hybrid_layer_scope():
            return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor(self.layer_name or "HybridLinear", x, self.in_features, -1)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        n, ns = x2.shape[0], _samples(x)
        self._read = None
        y = self._base(x2)
        dig = self.hardware.digital
        k = self.digital_out_features
        metering = self.ledger.enabled
        # the INT8 input of the digital unit, and its non-zero count, are shared by the LoRA branches and head rows
        xq = nz = None
        if self.active_adapters or k:
            xq = fake_quantize_per_sample(x2, dig.activation_bits, ns)
            nz = torch.count_nonzero(xq.detach()) if metering else None
        rsum = n_params = 0
        lora_bias = lora_grad = rows_grad = False
        if self.active_adapters:
            names, rsum, n_params, lora_bias, lora_grad = self._lora_terms()
            bits, abits = dig.adapter_bits, dig.activation_bits
            for name in names:
                a = fake_quantize(self.lora_A[name], bits)
                b = fake_quantize(self.lora_B[name], bits)
                h = fake_quantize_per_sample(xq @ a.t(), abits, ns)
                y = y + fake_quantize_per_sample((h @ b.t()) * self.scaling[name], abits, ns)
                if name in self.lora_bias:
                    y = y + self.lora_bias[name]
        if self.bias is not None:
            y = y + self.bias
        if k:
            dw = fake_quantize(self.digital_weight, dig.adapter_bits)
            y = torch.cat([y, fake_quantize_per_sample(xq @ dw.t(), dig.activation_bits, ns) + self.digital_bias],
                          dim=-1)
            rows_grad = torch.is_grad_enabled() and self.digital_weight.requires_grad
        if metering:
            training = self._training_pass()
            act = dig.activation_bytes
            # training keeps the call's input and output for the backward pass; inference streams one vector
            buf = (x2.numel() + y.numel()) * act if training else (self.in_features + self.out_features + k) * act
            self._meter_call(n, ns, buf, nz, rsum, n_params, lora_grad and self.training, k,
                             rows_grad and self.training, self.bias is not None or lora_bias)
        return y.reshape(*lead, self.out_features + k)


def _window_max(a: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], out: tuple[int, int]
                ) -> torch.Tensor:
    """``F.max_pool2d(a, kernel, stride)`` as a running maximum over the kernel's rows, then its columns.

    The same values (a maximum is exact), from 2 (k - 1) elementwise passes: on
    a one-channel map torch's CPU pooling ran 3-20x slower (0.60 ms against 0.03 ms
    for a 64 x 34 x 34 map, 3x3 window, stride 1).
    """
    (kh, kw), (sh, sw), (ho, wo) = kernel, stride, out
    rows = a[..., 0:(ho - 1) * sh + 1:sh, :]
    for i in range(1, kh):  # a loop over the kernel's offsets, not over cells
        rows = torch.maximum(rows, a[..., i:i + (ho - 1) * sh + 1:sh, :])
    cols = rows[..., 0:(wo - 1) * sw + 1:sw]
    for j in range(1, kw):
        cols = torch.maximum(cols, rows[..., j:j + (wo - 1) * sw + 1:sw])
    return cols


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
        if self.dilation != (1, 1):
            cols = F.unfold(x, self.kernel_size, dilation=self.dilation, padding=self.padding, stride=self.stride)
            return xb.dac_encode(xbar, cols.transpose(1, 2).reshape(-1, self.in_flat), pad, self.array.workspace)
        ho, wo = self._out_hw(x.shape[2], x.shape[3])
        xp = self._padded(x)
        amax = xp.abs().amax(dim=1, keepdim=True)
        alpha = _window_max(amax, self.kernel_size, self.stride, (ho, wo)).clamp_min_(xb.ALPHA_FLOOR)  # [n, 1, ho, wo]
        buf, codes = self._gather_fields(xp, pad, xb.dac_levels(xbar) / alpha, xbar.dac_bits is not None)
        return alpha.view(-1, 1), buf, codes

    def _padded(self, x: torch.Tensor) -> torch.Tensor:
        ph, pw = self.padding
        return F.pad(x, (pw, pw, ph, ph)) if (ph or pw) else x

    def _gather_fields(self, xp: torch.Tensor, pad: int, scale: torch.Tensor | None = None, round_codes: bool = False
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every receptive field of the padded input ``xp`` as a row (undilated convolutions): ``(buffer
        [fields, in + pad] with a zero tail, its [fields, in] head)``, each field times its ``scale``
        ``[n, 1, ho, wo]`` and rounded when asked (DAC coding), else copied as is (the bench's floor)."""
        n, c = xp.shape[:2]
        kh, kw = self.kernel_size
        ho, wo = (xp.shape[2] - kh) // self.stride[0] + 1, (xp.shape[3] - kw) // self.stride[1] + 1
        ws = self.array.workspace
        patches = xp.unfold(2, kh, self.stride[0]).unfold(3, kw, self.stride[1])  # [n, c, ho, wo, kh, kw]
        # scale in im2col order [n, c, kh, kw, ho, wo] (long contiguous inner loops), then lay the
        # vectors out as rows: two vectorised passes beat one six-dimensional gather
        cols = xb.scratch(ws, "patches", (n, c, kh, kw, ho, wo), xp)
        if scale is None:
            cols.copy_(patches.permute(0, 1, 4, 5, 2, 3))
        else:
            torch.mul(patches.permute(0, 1, 4, 5, 2, 3), scale.view(n, 1, 1, 1, ho, wo), out=cols)
        if round_codes:
            cols.round_()
        buf, codes = xb.code_buffer(n * ho * wo, self.in_flat, pad, xp, ws)
        codes.view(n, ho * wo, self.in_flat).copy_(cols.view(n, self.in_flat, ho * wo).transpose(1, 2))
        return buf, codes

    _fused_codes_inside = False

    def _patch_nonzeros(self, x: torch.Tensor) -> torch.Tensor:
        """Non-zero values over every receptive field of ``x`` (what a zero-skipping digital conv multiplies)."""
        with torch.no_grad():
            ind = (x != 0).to(x.dtype).sum(1, keepdim=True)
            ones = torch.ones(1, 1, *self.kernel_size, device=x.device, dtype=x.dtype)
            return F.conv2d(ind, ones, stride=self.stride, padding=self.padding, dilation=self.dilation).sum()

    def _to_output(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ho, wo = self._out_hw(x.shape[2], x.shape[3])
        return y.view(x.shape[0], ho, wo, self.out_channels).permute(0, 3, 1, 2).contiguous()

    def _fused_to_output(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The fused read's channels-first output ``[n, out, ho * wo]`` as an image batch."""
        return y.view(x.shape[0], self.out_channels, *self._out_hw(x.shape[2], x.shape[3]))

    def _input_grad(self, grad_out: torch.Tensor, in_shape: torch.Size) -> torch.Tensor:
        w = self.array.prepared()[1].view(self.out_channels, self.in_channels, *self.kernel_size)
        return torch.nn.grad.conv2d_input(in_shape, w, grad_out, self.stride, self.padding, self.dilation)

    def _shadow_out(self, x: torch.Tensor, shadow: torch.Tensor) -> torch.Tensor:
        w = shadow.view(self.out_channels, self.in_channels, *self.kernel_size)
        return F.conv2d(x, w, None, self.stride, self.padding, self.dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with hybrid_layer_scope():
            return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor(self.layer_name or "HybridConv2d", x, self.in_channels, -3)
        if x.dim() != 4:
            raise ValueError(f"{self.layer_name or 'HybridConv2d'}: expected a 4-D input, got shape {tuple(x.shape)}")
        self._read = None
        y = self._base(x)
        n, ns = y.numel() // self.out_channels, x.shape[0]
        metering = self.ledger.enabled
        nz = None
        rsum = n_params = 0
        lora_bias = lora_grad = False
        if self.active_adapters:
            names, rsum, n_params, lora_bias, lora_grad = self._lora_terms()
            bits, abits = self.hardware.digital.adapter_bits, self.hardware.digital.activation_bits
            xq = fake_quantize_per_sample(x, abits, ns)
            for name in names:
                a = fake_quantize(self.lora_A[name], bits)
                b = fake_quantize(self.lora_B[name], bits)
                h_ = fake_quantize_per_sample(F.conv2d(xq, a, stride=self.stride, padding=self.padding,
                                                       dilation=self.dilation), abits, ns)
                y = y + fake_quantize_per_sample(F.conv2d(h_, b) * self.scaling[name], abits, ns)
                if name in self.lora_bias:
                    y = y + self.lora_bias[name].view(1, -1, 1, 1)
            nz = self._patch_nonzeros(xq) if metering else None
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        if metering:
            act = self.hardware.digital.activation_bytes
            if self._training_pass():
                buf = (x[0].numel() + y[0].numel()) * ns * act
            else:  # a line buffer: the input rows under the kernel (padded) and one output row
                w_in = x.shape[3] + 2 * self.padding[1]
                buf = (self.kernel_size[0] * w_in * self.in_channels + y.shape[3] * self.out_channels) * act
            self._meter_call(n, ns, buf, nz, rsum, n_params, lora_grad and self.training, bias=self.bias is not None
                             or lora_bias)
        return y
