"""Digital computing unit: PE array with an SRAM buffer that holds the LoRA branches."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ._validate import check_choice, check_int, check_non_negative, check_positive


SRAM_OVERFLOW = ("spill", "error")


@dataclass(frozen=True)
class DigitalUnitConfig:
    """The digital unit: a PE array, an SRAM buffer for adapters, optimiser state and activations.

    Precision: forward MACs of the LoRA branch at ``adapter_bits`` x
    ``activation_bits`` (INT8 by default: adapter factors and the activations into
    and out of the branch are fake-quantised, straight-through); gradients and the
    optimiser update in FP32 on an FP32 master copy of every trained parameter
    (``master_bytes_per_param``, plus ``moment_bytes`` per optimiser moment).
    What exceeds ``sram_kib`` lives off chip: ``sram_overflow="spill"`` prices those
    bytes at ``dram_energy_pj_per_byte``, ``"error"`` refuses.
    Energies are per MAC / ALU operation and per byte moved.
    """

    adapter_bits: int | None = 8
    activation_bits: int | None = 8
    sram_kib: float = 256.0
    mac_energy_pj: float = 3.7
    alu_op_energy_pj: float = 3.7
    transcendental_alu_ops: float = 4.0
    fp32_mac_energy_pj: float = 74.0
    sram_read_energy_pj_per_byte: float = 20.0
    sram_write_energy_pj_per_byte: float = 20.0
    dram_energy_pj_per_byte: float = 250.0
    sram_overflow: str = "spill"
    mac_time_ns: float = 10.0
    pe_count: int = 64
    tech_node_nm: float = 180.0
    vdd_v: float = 1.8
    master_bytes_per_param: float = 4.0
    moment_bytes: float = 4.0

    def __post_init__(self) -> None:
        o = "DigitalUnitConfig"
        if self.adapter_bits is not None:
            check_int(o, "adapter_bits", self.adapter_bits, 2)
        if self.activation_bits is not None:
            check_int(o, "activation_bits", self.activation_bits, 2)
        check_positive(o, "sram_kib", self.sram_kib)
        for f in ("mac_energy_pj", "alu_op_energy_pj", "transcendental_alu_ops", "fp32_mac_energy_pj",
                  "sram_read_energy_pj_per_byte", "sram_write_energy_pj_per_byte", "dram_energy_pj_per_byte",
                  "mac_time_ns", "master_bytes_per_param", "moment_bytes"):
            check_non_negative(o, f, getattr(self, f))
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


def scale_energy_from_45nm(energy_45nm_pj: float, node_nm: float, vdd_v: float) -> float:
    """Classical C*V^2 scaling of a 45 nm / 0.9 V energy (Horowitz ISSCC 2014) to another node.

    Capacitance scales with feature size, energy with C*V^2. Stillmaker & Baas
    (Integration 2017) show this can be off for deep nodes; it is a documented
    first-order estimate, and every preset states the numbers it used.
    """
    return energy_45nm_pj * (node_nm / 45.0) * (vdd_v / 0.9) ** 2


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
