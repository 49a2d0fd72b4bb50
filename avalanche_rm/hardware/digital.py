"""Digital computing unit: PE array with an SRAM buffer that holds the LoRA branches."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ._validate import check_int, check_non_negative, check_positive


@dataclass(frozen=True)
class DigitalUnitConfig:
    """Adapter storage and arithmetic.

    ``adapter_bits`` fake-quantises adapter factors (symmetric, per tensor,
    straight-through gradients); ``None`` keeps float32. Energies are per MAC
    at ``adapter_bits`` precision and per byte moved to or from SRAM.
    """

    adapter_bits: int | None = 8
    activation_bits: int = 8
    sram_kib: float = 256.0
    mac_energy_pj: float = 3.7
    sram_read_energy_pj_per_byte: float = 20.0
    sram_write_energy_pj_per_byte: float = 20.0
    mac_time_ns: float = 10.0
    pe_count: int = 64
    tech_node_nm: float = 180.0
    vdd_v: float = 1.8
    optimizer_state_bytes_per_param: float = 8.0

    def __post_init__(self) -> None:
        o = "DigitalUnitConfig"
        if self.adapter_bits is not None:
            check_int(o, "adapter_bits", self.adapter_bits, 2)
        check_int(o, "activation_bits", self.activation_bits, 2)
        check_positive(o, "sram_kib", self.sram_kib)
        for f in ("mac_energy_pj", "sram_read_energy_pj_per_byte", "sram_write_energy_pj_per_byte",
                  "mac_time_ns", "optimizer_state_bytes_per_param"):
            check_non_negative(o, f, getattr(self, f))
        check_int(o, "pe_count", self.pe_count, 1)
        check_positive(o, "tech_node_nm", self.tech_node_nm)
        check_positive(o, "vdd_v", self.vdd_v)

    @property
    def adapter_bytes_per_param(self) -> float:
        return (self.adapter_bits if self.adapter_bits is not None else 32) / 8.0

    @property
    def activation_bytes(self) -> float:
        return self.activation_bits / 8.0

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
    """
    if bits is None:
        return w
    n = 2 ** (bits - 1) - 1
    scale = w.detach().abs().amax().clamp_min(1e-12) / n
    zero = torch.zeros((), dtype=torch.int32, device=w.device)
    return torch.fake_quantize_per_tensor_affine(w, scale, zero, -n, n)
