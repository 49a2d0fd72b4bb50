"""Unit prices of every counted event, derived from the technology a hardware preset describes.

Every constant below cites its source. A preset states the chip's technology
(node, supply, buffer sizes, ADC energy, pulse voltages); :func:`prices`
turns it into one :class:`Prices` (pJ per counted event, bytes per ns), which
:func:`avalanche_rm.costs.pricing.priced` applies to counts through the field
table (:mod:`avalanche_rm.costs.fields`).

Rules:
- *Digital arithmetic by kind and width*: Horowitz (ISSCC 2014, 45 nm, 0.9 V)
  gives 8- and 32-bit integer adds and multiplies and FP32 adds and multiplies.
  A MAC is a multiply plus an add at the accumulator's width (INT8 x INT8 into
  INT32; FP32). A compare costs an add of its width (a magnitude comparator is a
  subtractor: Weste & Harris, *CMOS VLSI Design*, 4th ed., ch. 11). A 16-bit
  multiply follows the width-squared law through Horowitz's 8- and 32-bit points
  (0.2 pJ x (32/8)^2 = 3.2 pJ, his 3.1 pJ).
- *Memory by capacity and level*: SRAM energy per byte grows with capacity
  (longer word and bit lines): interpolated log-log through Horowitz's 8 KB,
  32 KB and 1 MB points (64-bit reads: 10, 20, 100 pJ), extrapolated below 8 KB
  with the 8-32 KB slope down to a register file's energy (32-bit access 1 pJ
  at 45 nm: Han et al., EIE, ISCA 2016, Table I, after Horowitz). Above 1 MB
  (his largest point) a buffer is built of 1 MB banks and an access reads one
  bank: the 1 MB price, the wires between banks not counted (an underestimate
  for very large buffers). Writes are priced as reads (Horowitz gives reads).
  The PE array's local buffers are priced at their per-PE capacity; the input
  FIFO through which updates arrive from off chip at the register file's energy.
- *One node rule for logic and SRAM; DRAM by its interface*: every 45 nm
  logic and SRAM energy scales by C*V^2 with C proportional to the node
  (Horowitz's figures to the preset's node and supply). Stillmaker & Baas
  (Integration 58, 2017) show classical scaling can be off by a large factor
  at deep nodes: a first-order rule, swept in the sensitivity table. DRAM
  energy is set by the DRAM device and its board interface, not by the
  accelerator's node: the default is Horowitz's DDR3-era 2.0 nJ per 64-bit
  access (the middle of his 1.3-2.6 nJ), unscaled; the sensitivity table
  sweeps 1.3 and 2.6 nJ and the node rule applied to DRAM as well (x16 at
  180 nm). ``dram_energy_pj_per_byte`` fixes it.
- *Periphery*: ADC energy is the preset's (a Walden figure of merit x 2^bits,
  Walden, IEEE JSAC 17(4), 1999). A verify read's sense is a window compare:
  two comparator decisions, each priced as a 1-bit conversion at the same
  figure of merit. A row DAC drive costs a quarter of an ADC conversion: ISAAC
  (Shafiee et al., ISCA 2016, Table 1, 32 nm) spends 4 mW on the 8x128 one-bit
  row DACs and 16 mW on the 8 ADCs that convert the same crossbars' 1,024
  columns in each 100 ns cycle.
- *Cell reads*: ``V_r^2 (x/x_fs)^2 G t`` over every cell a driven row passes
  current through, ``t = t_read + t_adc``: the columns that share an ADC are
  connected one group at a time, each settling and then held through its own
  conversion (NeuroSim's column-multiplexed read; the vector takes
  ``col_mux (t_read + t_adc)``).
- *Write pulses*: ``V^2 G t_pw + V^2 C_wire`` (MLP+NeuroSim ``Cell.cpp``); verify
  cell read ``V_r^2 G t_verify``.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

from ..hardware.config import HardwareConfig

# ------------------------------------------------------------------ 45 nm / 0.9 V reference (Horowitz, ISSCC 2014)
REF_NODE_NM = 45.0
REF_VDD_V = 0.9
#: pJ per operation at 45 nm, 0.9 V (Horowitz 2014; int16 multiply by the width-squared law, see above)
OPS_45NM_PJ = {"int8_add": 0.03, "int32_add": 0.1, "fp32_add": 0.9,
               "int8_mul": 0.2, "int16_mul": 0.2 * (16 / 8) ** 2, "int32_mul": 3.1, "fp32_mul": 3.7}
#: SRAM read energy by capacity at 45 nm: (bytes, pJ per byte) from 64-bit reads of 10, 20 and 100 pJ (Horowitz)
SRAM_POINTS_45NM = ((8 * 1024, 10.0 / 8), (32 * 1024, 20.0 / 8), (1024 * 1024, 100.0 / 8))
#: the floor: a register file access, 1 pJ per 32 bits at 45 nm (Han et al., EIE, ISCA 2016, Table I)
REGISTER_FILE_45NM_PJ_PER_BYTE = 1.0 / 4
#: DRAM, pJ per byte: 1.3-2.6 nJ per 64-bit access (Horowitz, DDR3 era); the default is the middle, 2.0 nJ
DRAM_45NM_PJ_PER_BYTE = {"low": 1300.0 / 8, "default": 2000.0 / 8, "high": 2600.0 / 8}
#: row DAC drive / ADC conversion energy (ISAAC, Table 1: 4 mW for 1,024 one-bit DACs against 16 mW for the
#: ADCs converting the same 1,024 columns per 100 ns cycle)
DAC_PER_ADC = 4.0 / 16.0
#: comparator decisions of a verify read's window compare (above the lower bound, below the upper bound)
VERIFY_DECISIONS = 2
#: local buffer per processing element when a preset does not say (Eyeriss' scratch pads: ~0.5 KB per PE,
#: Chen et al., ISCA 2016)
LOCAL_KIB_PER_PE = 0.5


def node_factor(node_nm: float, vdd_v: float) -> float:
    """C*V^2 scaling of a 45 nm / 0.9 V energy to ``node_nm`` / ``vdd_v`` (C proportional to the node)."""
    return (node_nm / REF_NODE_NM) * (vdd_v / REF_VDD_V) ** 2


def sram_pj_per_byte_45nm(capacity_bytes: float) -> float:
    """SRAM energy per byte at 45 nm for a buffer of ``capacity_bytes`` (log-log through Horowitz's points)."""
    if not capacity_bytes > 0:
        raise ValueError(f"SRAM capacity must be > 0 bytes, got {capacity_bytes!r}")
    pts = SRAM_POINTS_45NM
    if capacity_bytes >= pts[-1][0]:  # banks of the largest size: an access reads one
        return pts[-1][1]
    if capacity_bytes <= pts[0][0]:
        (c0, e0), (c1, e1) = pts[0], pts[1]
    else:
        i = next(i for i in range(len(pts) - 1) if capacity_bytes <= pts[i + 1][0])
        (c0, e0), (c1, e1) = pts[i], pts[i + 1]
    slope = math.log(e1 / e0) / math.log(c1 / c0)
    e = e0 * (capacity_bytes / c0) ** slope
    return max(e, REGISTER_FILE_45NM_PJ_PER_BYTE)


@dataclass(frozen=True)
class Prices:
    """Unit prices (pJ per counted event) and bandwidths of one chip; field names are the field table's prices."""

    int8_mac_pj: float
    fp32_mac_pj: float
    int8_add_pj: float
    int32_add_pj: float
    fp32_add_pj: float
    int8_mul_pj: float
    int16_mul_pj: float
    fp32_mul_pj: float
    transcendental_pj: float
    fp32_transcendental_pj: float
    local_pj_per_byte: float
    fifo_pj_per_byte: float
    sram_read_pj_per_byte: float
    sram_write_pj_per_byte: float
    dram_pj_per_byte: float
    dac_pj: float
    adc_pj: float
    cell_read_pj_per_us: float
    pulse_pj_per_us: float
    pulse_wire_pj: float
    verify_pj_per_us: float
    verify_compare_pj: float
    # bandwidths (bytes per ns) and throughputs used by latency
    local_bytes_per_ns: float
    sram_bytes_per_ns: float
    dram_bytes_per_ns: float
    pe_ops_per_ns: float
    vector_read_ns: float

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


#: price groups the sensitivity table scales together
PRICE_GROUPS: dict[str, tuple[str, ...]] = {
    "alu": ("int8_add_pj", "int32_add_pj", "fp32_add_pj", "int8_mul_pj", "int16_mul_pj", "fp32_mul_pj",
            "transcendental_pj", "fp32_transcendental_pj"),
    "mac": ("int8_mac_pj", "fp32_mac_pj"),
    "sram": ("sram_read_pj_per_byte", "sram_write_pj_per_byte"),
    "local": ("local_pj_per_byte",),
    "dram": ("dram_pj_per_byte",),
}
PRICE_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Prices))


def local_buffer_bytes(hw: HardwareConfig) -> float:
    """The PE array's local buffers in total (the preset's, else :data:`LOCAL_KIB_PER_PE` per PE)."""
    dig = hw.digital
    kib = dig.local_buffer_kib if dig.local_buffer_kib is not None else LOCAL_KIB_PER_PE * dig.pe_count
    return kib * 1024.0


@functools.lru_cache(maxsize=256)
def _prices(hw: HardwareConfig, scales: tuple[tuple[str, float], ...]) -> Prices:
    dig, xbar, dev = hw.digital, hw.crossbar, hw.device
    k = node_factor(dig.tech_node_nm, dig.vdd_v)
    op = {name: e * k for name, e in OPS_45NM_PJ.items()}
    int8_mac = op["int8_mul"] + op["int32_add"]
    fp32_mac = op["fp32_mul"] + op["fp32_add"]
    if dig.sram_energy_pj_per_byte is not None:
        sram = dig.sram_energy_pj_per_byte
    else:
        sram = sram_pj_per_byte_45nm(dig.sram_bytes) * k
    local_total = local_buffer_bytes(hw)
    local = sram_pj_per_byte_45nm(local_total / dig.pe_count) * k if local_total > 0 else sram
    dram = dig.dram_energy_pj_per_byte if dig.dram_energy_pj_per_byte is not None \
        else DRAM_45NM_PJ_PER_BYTE["default"]  # its interface's energy, not the accelerator's node
    adc_bits = xbar.adc_bits if xbar.adc_bits is not None else 8
    fom = xbar.adc_energy_pj / 2 ** adc_bits  # pJ per conversion step (Walden)
    dac = xbar.dac_energy_pj if xbar.dac_energy_pj is not None else DAC_PER_ADC * xbar.adc_energy_pj
    verify_cmp = dev.verify_sense_energy_pj if dev.verify_sense_energy_pj is not None \
        else VERIFY_DECISIONS * fom * 2 ** 1
    t_adc = xbar.adc_time_ns if xbar.adc_bits is not None else 0.0
    t_conduct = dev.read_time_ns + t_adc
    out = Prices(
        int8_mac_pj=int8_mac, fp32_mac_pj=fp32_mac,
        int8_add_pj=op["int8_add"], int32_add_pj=op["int32_add"], fp32_add_pj=op["fp32_add"],
        int8_mul_pj=op["int8_mul"], int16_mul_pj=op["int16_mul"], fp32_mul_pj=op["fp32_mul"],
        transcendental_pj=dig.transcendental_alu_ops * int8_mac,
        fp32_transcendental_pj=dig.transcendental_alu_ops * fp32_mac,
        local_pj_per_byte=local, fifo_pj_per_byte=REGISTER_FILE_45NM_PJ_PER_BYTE * k,
        sram_read_pj_per_byte=sram, sram_write_pj_per_byte=sram, dram_pj_per_byte=dram,
        dac_pj=dac, adc_pj=xbar.adc_energy_pj if xbar.adc_bits is not None else 0.0,
        # V^2 [V^2] * G [uS] * t [ns] = 1e-15 J = 1e-3 pJ; V^2 * C [fF] = 1e-3 pJ
        cell_read_pj_per_us=dev.read_voltage_v ** 2 * t_conduct * 1e-3,
        pulse_pj_per_us=dev.pulse_voltage_v ** 2 * dev.pulse_width_ns * 1e-3,
        pulse_wire_pj=dev.pulse_voltage_v ** 2 * dev.wire_capacitance_ff * 1e-3,
        verify_pj_per_us=dev.verify_voltage_v ** 2 * dev.verify_time_ns * 1e-3,
        verify_compare_pj=verify_cmp,
        # every PE reads its own local buffer, two bytes a cycle (Eyeriss' 16-bit scratch pads)
        local_bytes_per_ns=2.0 * dig.pe_count / dig.mac_time_ns,
        sram_bytes_per_ns=dig.sram_bytes_per_cycle / dig.mac_time_ns,
        dram_bytes_per_ns=dig.dram_bandwidth_gb_s,
        pe_ops_per_ns=dig.pe_count / dig.mac_time_ns,
        vector_read_ns=xbar.col_mux * (dev.read_time_ns + t_adc),
    )
    changes = dict(hw.price_overrides)
    for group, factor in scales:
        for name in PRICE_GROUPS.get(group, (group,)):
            changes[name] = changes.get(name, getattr(out, name)) * factor
    return dataclasses.replace(out, **changes) if changes else out


def prices(hw: HardwareConfig, **scales: float) -> Prices:
    """The unit prices of ``hw``; ``scales`` multiply a price group of :data:`PRICE_GROUPS` or one price
    (the sensitivity table's low and high settings), after the preset's ``price_overrides``."""
    for name, v in scales.items():
        if name not in PRICE_GROUPS and name not in PRICE_NAMES:
            raise ValueError(f"unknown price or price group {name!r}; groups: {sorted(PRICE_GROUPS)}, "
                             f"prices: {list(PRICE_NAMES)}")
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ValueError(f"price scale {name}={v!r} must be a finite number >= 0")
    bad = [n for n, _ in hw.price_overrides if n not in PRICE_NAMES]
    if bad:
        raise ValueError(f"unknown price override(s) {bad}; prices are {list(PRICE_NAMES)}")
    return _prices(hw, tuple(sorted(scales.items())))


def unit_costs(hw: HardwareConfig) -> dict[str, float]:
    """The per-operation constants reports quote when they explain a ratio (pJ, pJ/B, KiB)."""
    p = prices(hw)
    return {"int8_mac_pj": p.int8_mac_pj, "fp32_mac_pj": p.fp32_mac_pj, "int8_add_pj": p.int8_add_pj,
            "int32_add_pj": p.int32_add_pj, "int8_mul_pj": p.int8_mul_pj, "fp32_mul_pj": p.fp32_mul_pj,
            "local_pj_per_B": p.local_pj_per_byte, "sram_pj_per_B": p.sram_read_pj_per_byte,
            "dram_pj_per_B": p.dram_pj_per_byte, "adc_pj": p.adc_pj, "dac_pj": p.dac_pj,
            "verify_compare_pj": p.verify_compare_pj, "sram_KiB": hw.digital.sram_kib,
            "local_KiB": local_buffer_bytes(hw) / 1024}
