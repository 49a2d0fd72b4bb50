"""Digital computing unit: PE array with an SRAM buffer that holds the LoRA branches."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ._validate import check_choice, check_int, check_non_negative, check_positive


SRAM_OVERFLOW = ("spill", "error")


@dataclass(frozen=True)
class DigitalUnitConfig:
    """The digital unit: a PE array with local buffers, an SRAM buffer, and DRAM behind it.

    It states the technology; :func:`avalanche_rm.costs.prices.prices` derives
    every energy from it (node and supply, buffer capacities), so nothing here is
    an energy except the optional fixed prices ``sram_energy_pj_per_byte`` and
    ``dram_energy_pj_per_byte`` (``None``: derived; see :mod:`avalanche_rm.costs.prices`).

    Precision: forward MACs of the LoRA branch at ``adapter_bits`` x
    ``activation_bits`` (INT8 by default: adapter factors and the activations into
    and out of the branch are fake-quantised, straight-through); gradients and the
    optimiser update in FP32 on an FP32 master copy of every trained parameter
    (``master_bytes_per_param``, plus ``moment_bytes`` per optimiser moment).
    Memory levels: the PE array's local buffers (``local_buffer_kib`` in total;
    ``None``: 0.5 KiB per PE) hold stationary weights, the SRAM buffer
    (``sram_kib``) the rest of the working set, DRAM what does not fit
    (``sram_overflow="spill"``; ``"error"`` refuses). Throughput: ``pe_count``
    operations per ``mac_time_ns`` (one MAC or element-wise operation per PE and
    cycle; a transcendental takes ``transcendental_alu_ops``), the SRAM moves
    ``sram_bytes_per_cycle`` per cycle, DRAM ``dram_bandwidth_gb_s``.
    """

    adapter_bits: int | None = 8
    activation_bits: int | None = 8
    sram_kib: float = 256.0
    local_buffer_kib: float | None = None
    transcendental_alu_ops: float = 4.0
    sram_overflow: str = "spill"
    mac_time_ns: float = 10.0
    pe_count: int = 64
    tech_node_nm: float = 180.0
    vdd_v: float = 1.8
    sram_bytes_per_cycle: float = 8.0
    dram_bandwidth_gb_s: float = 3.2
    sram_energy_pj_per_byte: float | None = None
    dram_energy_pj_per_byte: float | None = None
    master_bytes_per_param: float = 4.0
    moment_bytes: float = 4.0

    def __post_init__(self) -> None:
        o = "DigitalUnitConfig"
        if self.adapter_bits is not None:
            check_int(o, "adapter_bits", self.adapter_bits, 2)
        if self.activation_bits is not None:
            check_int(o, "activation_bits", self.activation_bits, 2)
        check_positive(o, "sram_kib", self.sram_kib)
        for f in ("transcendental_alu_ops", "mac_time_ns", "master_bytes_per_param", "moment_bytes"):
            check_non_negative(o, f, getattr(self, f))
        for f in ("local_buffer_kib", "sram_energy_pj_per_byte", "dram_energy_pj_per_byte"):
            if getattr(self, f) is not None:
                check_non_negative(o, f, getattr(self, f))
        for f in ("sram_bytes_per_cycle", "dram_bandwidth_gb_s", "mac_time_ns"):
            check_positive(o, f, getattr(self, f))
        check_choice(o, "sram_overflow", self.sram_overflow, SRAM_OVERFLOW)
        check_int(o, "pe_count", self.pe_count, 1)
        check_positive(o, "tech_node_nm", self.tech_node_nm)
        check_positive(o, "vdd_v", self.vdd_v)

    @property
    def adapter_bytes_per_param(self) -> float:
        return (self.adapter_bits if self.adapter_bits is not None else 32) / 8.0

    @property
    def activation_bytes(self) -> float:
        return (self.activation_bits if self.activation_bits is not None else 32) / 8.0

    @property
    def sram_bytes(self) -> int:
        return int(self.sram_kib * 1024)

    def replace(self, **changes) -> "DigitalUnitConfig":
        return dataclasses.replace(self, **changes)


def fake_quantize(w: torch.Tensor, bits: int | None) -> torch.Tensor:
    """Symmetric per-tensor fake quantisation with a straight-through gradient.

    The scale maps the largest magnitude to the top code, so nothing clips and the
    gradient passes unchanged. torch's fused op keeps this to a few kernels per call.
    Used for adapter factors (``adapter_bits``); activations use
    :func:`fake_quantize_per_sample`.
    """
    if bits is None:
        return w
    n = 2 ** (bits - 1) - 1
    scale = w.detach().abs().amax().clamp_min(1e-12) / n
    return torch.fake_quantize_per_tensor_affine(w, scale, _zero_point(w.device), -n, n)


_ZERO_POINTS: dict[torch.device, torch.Tensor] = {}


def _zero_point(device: torch.device) -> torch.Tensor:
    """The int32 zero point of symmetric quantisation (one per device: creating it was a call per use)."""
    z = _ZERO_POINTS.get(device)
    if z is None:
        with torch.inference_mode(False):  # made once, used in and out of inference mode
            z = _ZERO_POINTS[device] = torch.zeros((), dtype=torch.int32, device=device)
    return z


def fake_quantize_per_sample(x: torch.Tensor, bits: int | None, n_samples: int) -> torch.Tensor:
    """Symmetric fake quantisation with one dynamic scale per sample (the leading ``n_samples`` rows of ``x``).

    The digital unit quantises the activations into and out of the LoRA branch to
    ``activation_bits`` with a scale register per sample (inference runs one sample
    at a time, so a sample's codes never depend on what else shares its batch).
    The gradient passes straight through.
    """
    if bits is None:
        return x
    n = 2 ** (bits - 1) - 1
    rows = x.detach().reshape(n_samples, -1)
    scale = rows.abs().amax(dim=1, keepdim=True).clamp_min_(1e-12).div_(n)
    q = torch.div(rows, scale).round_().mul_(scale).view_as(x)
    # q is the value of the former ``x + (q - x)`` bit for bit (q and x lie within a factor 2 of each other or q is
    # 0, so q - x is exact, Sterbenz), without its two extra passes
    if not (torch.is_grad_enabled() and x.requires_grad):
        return q
    return _StraightThrough.apply(x, q)


class _StraightThrough(torch.autograd.Function):
    """Forward: the quantised value; backward: the gradient unchanged (straight-through estimator)."""

    @staticmethod
    def forward(ctx, x, q):  # type: ignore[override]
        return q

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return grad, None
