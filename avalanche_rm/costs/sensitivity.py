"""Re-pricing a recorded run under other assumptions: the sensitivity table of every headline ratio.

A :class:`Recording` keeps what a measured operation counted (the ledger's
count fields, traffic by data class) and the working set it ran with. Counts
do not depend on prices or buffer sizes, so :func:`reprice` can price the same
run with another unit price, another buffer or another rule for the reference
without running the model again: it re-places the traffic
(:func:`avalanche_rm.costs.residency.place`) with the new capacities and prices
the counts (:func:`avalanche_rm.costs.pricing.priced`). With no change it
gives the ledger's own energy (a pass is metered the same way).

:data:`ASSUMPTIONS` lists every assumption a ratio rests on, with its documented
low and high settings and where the range comes from; :func:`sensitivity_rows`
evaluates ratio functions at each of them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..hardware.config import HardwareConfig
from .fields import ENERGY_BUCKETS, FIELD
from .prices import DRAM_45NM_PJ_PER_BYTE, LOCAL_KIB_PER_PE, local_buffer_bytes, node_factor, prices
from .pricing import Counts, energy_pj, split_traffic
from .residency import place

#: fields a re-pricing recomputes (level traffic, energies, latency); everything else is a count it keeps
_DERIVED = frozenset({"local_bytes", "sram_read_bytes", "sram_write_bytes", "dram_bytes", "energy_pj",
                      "latency_ns", *ENERGY_BUCKETS})
DESIGNS = ("chip", "reference")


@dataclass
class Recording:
    """What one measured operation counted, the working set it ran with, and the chip it ran on."""

    counts: Counts
    needs: dict[str, float]
    density: dict[str, float]
    hardware: HardwareConfig
    design: str = "chip"

    def __post_init__(self) -> None:
        if self.design not in DESIGNS:
            raise ValueError(f"design must be one of {DESIGNS}, got {self.design!r}")
        self.counts = {k: v for k, v in self.counts.items() if k in FIELD and k not in _DERIVED}

    @classmethod
    def of(cls, model, counts: Counts, design: str = "chip") -> "Recording":
        """``counts`` (e.g. a ledger delta) of ``model``, with its current working set."""
        snap = model.residency.snapshot()
        return cls(dict(counts), snap["needs"], snap["density"], model.hardware, design)

    def scaled(self, k: float) -> "Recording":
        return Recording({n: v * k for n, v in self.counts.items()}, self.needs, self.density, self.hardware,
                         self.design)

    def plus(self, other: "Recording") -> "Recording":
        """The counts of both, with this recording's working set (same chip, same run)."""
        c = dict(self.counts)
        for n, v in other.counts.items():
            c[n] = c.get(n, 0.0) + v
        return Recording(c, self.needs, self.density, self.hardware, self.design)


@dataclass(frozen=True)
class Setting:
    """One way an assumption can be set.

    ``both``: a hardware change for both designs; ``chip``: for the hybrid chip
    (and the full-weight baseline on it) only; ``reference``: for the all-digital
    reference, given its own and the chip's hardware; ``scales``: price groups or
    prices multiplied (:data:`avalanche_rm.costs.prices.PRICE_GROUPS`).
    """

    label: str
    both: Callable[[HardwareConfig], HardwareConfig] | None = None
    chip: Callable[[HardwareConfig], HardwareConfig] | None = None
    reference: Callable[[HardwareConfig, HardwareConfig], HardwareConfig] | None = None
    scales: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Assumption:
    """An assumption a ratio rests on: its default, and its documented low and high settings."""

    name: str
    default: str
    settings: tuple[Setting, ...]
    source: str
    drives: tuple[str, ...] = field(default=("training", "deployment", "inference"))


def _hardware(rec: Recording, setting: Setting | None, chip_hw: HardwareConfig | None) -> HardwareConfig:
    hw = rec.hardware
    if setting is None:
        return hw
    if setting.both is not None:
        hw = setting.both(hw)
    if rec.design == "chip" and setting.chip is not None:
        hw = setting.chip(hw)
    if rec.design == "reference" and setting.reference is not None:
        hw = setting.reference(hw, chip_hw if chip_hw is not None else hw)
    return hw


def reprice(rec: Recording, setting: Setting | None = None, chip_hw: HardwareConfig | None = None) -> float:
    """Energy (pJ) of a recorded operation under ``setting`` (``None``: as measured); ``chip_hw``: the hybrid
    chip's hardware, for settings that give the reference the chip's buffer."""
    hw = _hardware(rec, setting, chip_hw)
    p = prices(hw, **dict(setting.scales)) if setting is not None else prices(hw)
    placement = place(local_buffer_bytes(hw), hw.digital.sram_bytes, rec.needs, rec.density)
    counts = dict(rec.counts)
    counts.update(split_traffic(counts, placement))
    return energy_pj(counts, p)


def _replace_digital(**changes) -> Callable[[HardwareConfig], HardwareConfig]:
    return lambda hw: hw.replace(digital=changes)


def _scale_digital(name: str, factor: float) -> Callable[[HardwareConfig], HardwareConfig]:
    return lambda hw: hw.replace(digital={name: getattr(hw.digital, name) * factor})


def _dram(pj_per_byte_45nm: float, node_scaled: bool) -> Callable[[HardwareConfig], HardwareConfig]:
    def change(hw: HardwareConfig) -> HardwareConfig:
        k = node_factor(hw.digital.tech_node_nm, hw.digital.vdd_v) if node_scaled else 1.0
        return hw.replace(digital={"dram_energy_pj_per_byte": pj_per_byte_45nm * k})
    return change


def _local(kib_per_pe: float) -> Callable[[HardwareConfig], HardwareConfig]:
    return lambda hw: hw.replace(digital={"local_buffer_kib": kib_per_pe * hw.digital.pe_count})


def _adc(factor: float) -> Callable[[HardwareConfig], HardwareConfig]:
    return lambda hw: hw.replace(crossbar={"adc_energy_pj": hw.crossbar.adc_energy_pj * factor})


def _conduction(which: str) -> Callable[[HardwareConfig], HardwareConfig]:
    """Cell current flowing for ``t_read`` only (sample-and-hold) or for the whole vector read (all columns held)."""
    def change(hw: HardwareConfig) -> HardwareConfig:
        dev, xbar = hw.device, hw.crossbar
        t_adc = xbar.adc_time_ns if xbar.adc_bits is not None else 0.0
        t = dev.read_time_ns if which == "settle" else xbar.col_mux * (dev.read_time_ns + t_adc)
        over = dict(hw.price_overrides)
        over["cell_read_pj_per_us"] = dev.read_voltage_v ** 2 * t * 1e-3
        return hw.replace(price_overrides=tuple(sorted(over.items())))
    return change


def _chip_buffer(ref: HardwareConfig, chip: HardwareConfig) -> HardwareConfig:
    return ref.replace(digital={"sram_kib": chip.digital.sram_kib})


#: every assumption the three ratios rest on, with its documented range (see the README's sensitivity section)
ASSUMPTIONS: tuple[Assumption, ...] = (
    Assumption("SRAM buffer size (hybrid chip)", "preset (paper-180nm: 64 KiB)",
               (Setting("x0.5", chip=_scale_digital("sram_kib", 0.5)),
                Setting("x8", chip=_scale_digital("sram_kib", 8.0))),
               "the reference does not state its buffer: half the preset's, and one that holds the generation "
               "task's adapters of all 12 blocks (priced by capacity, so a larger buffer has dearer bytes)"),
    Assumption("SRAM energy per byte", "Horowitz's 8 KB / 32 KB / 1 MB points, interpolated by capacity, x16",
               (Setting("x0.5", scales=(("sram", 0.5),)), Setting("x2", scales=(("sram", 2.0),))),
               "a factor 2 either way (estimate): Horowitz's figures are cache reads; a scratchpad without tags "
               "is cheaper, a 180 nm macro with long lines can be dearer"),
    Assumption("local buffers in the PE array", f"{LOCAL_KIB_PER_PE} KiB per PE (Eyeriss)",
               (Setting("none", both=_local(0.0)), Setting("2 KiB per PE", both=_local(2.0))),
               "none (every stationary weight fetched from the SRAM for every sample) to 4x Eyeriss' scratch pads"),
    Assumption("ALU operations (adds, compares, multiplies, transcendentals)", "Horowitz by kind and width, x16",
               (Setting("x0.5", scales=(("alu", 0.5),)), Setting("x2", scales=(("alu", 2.0),))),
               "a factor 2 either way: classical C*V^2 scaling from 45 nm can be off by that much or more "
               "(Stillmaker & Baas 2017)"),
    Assumption("MAC energy (INT8 and FP32)", "Horowitz multiply + accumulator add, x16",
               (Setting("x0.5", scales=(("mac", 0.5),)), Setting("x2", scales=(("mac", 2.0),))),
               "a factor 2 either way (same reason)"),
    Assumption("DRAM energy per byte", "2.0 nJ per 64-bit access (250 pJ/B), the interface's (not node-scaled)",
               (Setting("1.3 nJ/64b", both=_dram(DRAM_45NM_PJ_PER_BYTE["low"], False)),
                Setting("2.6 nJ/64b", both=_dram(DRAM_45NM_PJ_PER_BYTE["high"], False)),
                Setting("2.0 nJ/64b node-scaled", both=_dram(DRAM_45NM_PJ_PER_BYTE["default"], True))),
               "Horowitz's 1.3-2.6 nJ per 64-bit access; and the logic's C*V^2 node rule applied to DRAM too "
               "(x16 at 180 nm), which keeps his DRAM : SRAM proportion"),
    Assumption("ADC energy (the DAC and the verify compare follow it)", "50 fJ/step x 2^8 = 12.8 pJ",
               (Setting("x0.25", chip=_adc(0.25)), Setting("x2", chip=_adc(2.0))),
               "12.5-100 fJ per conversion step (Walden figure of merit; anchors.md quotes 1-50 fJ/step across "
               "nodes for CIM SAR ADCs)"),
    Assumption("cell conduction time", "t_read + t_adc (column connected while converted)",
               (Setting("t_read only", chip=_conduction("settle")), Setting("whole vector read", chip=_conduction("all"))),
               "sample-and-hold per column (ISAAC) to every column held at the read voltage while the others "
               "convert"),
    Assumption("write pulse energy", "2 V, 50 ns, V^2 G t + V^2 C",
               (Setting("10 ns pulses", chip=lambda hw: hw.replace(device={"pulse_width_ns": 10.0})),
                Setting("4 V pulses", chip=lambda hw: hw.replace(device={"pulse_voltage_v": 4.0}))),
               "MLP+NeuroSim's ideal device (10 ns) and DNN+NeuroSim V2.1 (4 V)"),
    Assumption("all-digital reference's buffer", "sized for its own working set",
               (Setting("the hybrid chip's buffer", reference=_chip_buffer),),
               "the issue's fair-baseline rule against the rule used before (the hybrid's buffer)",
               drives=("inference",)),
)


def sensitivity_rows(ratios: dict[str, Callable[[Setting | None], float]],
                     assumptions: tuple[Assumption, ...] = ASSUMPTIONS) -> list[dict]:
    """Each ratio at the default and at every assumption's settings: one row per setting."""
    rows = [{"assumption": "(all defaults)", "setting": "default", **{k: f(None) for k, f in ratios.items()}}]
    for a in assumptions:
        for s in a.settings:
            rows.append({"assumption": a.name, "setting": s.label, **{k: f(s) for k, f in ratios.items()}})
    return rows


def assumption_rows(assumptions: tuple[Assumption, ...] = ASSUMPTIONS) -> list[dict]:
    """The assumptions with their defaults, settings and where the range comes from (for reports)."""
    return [{"assumption": a.name, "default": a.default, "settings": " / ".join(s.label for s in a.settings),
             "range from": a.source} for a in assumptions]


def drivers(rows: list[dict], ratio: str) -> list[tuple[str, float, float]]:
    """Assumptions by how far they move ``ratio``: (assumption, lowest, highest value over its settings)."""
    default = rows[0][ratio]
    spans: dict[str, list[float]] = {}
    for r in rows[1:]:
        spans.setdefault(r["assumption"], [default]).append(r[ratio])
    out = [(a, min(v), max(v)) for a, v in spans.items()]
    return sorted(out, key=lambda t: -(t[2] / t[1] if t[1] > 0 else float("inf")))
