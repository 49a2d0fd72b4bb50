"""Every energy and latency formula of avalanche-rm, as functions of configs and counts.

Nothing outside this module multiplies an energy constant: the hardware model
counts what the chip does (pulses, verify reads, driven rows, conversions,
MACs, bytes), and these functions turn counts into ledger quantities
(``energy_pj``, its breakdown, ``latency_ns`` and the counts themselves). Both
designs are priced by the same functions, so a ratio never mixes rules.

The one rule for digital weight reads (both designs, every layer): a weight
held in digital memory is read once per *sample* per layer call; within a
sample the PE array keeps it for all of that sample's vectors (conv positions,
tokens). Recurrent layers are called once per time step, so they re-read their
weights every step. Activations move once per vector. Hence per-sample costs do
not depend on how many samples share a batch.

Every charge is linear in its counts (the PE array does ``pe_count``
operations per ``mac_time_ns``), so a charge per vector or per sample can be
computed once and scaled. Memory levels: bytes that fit in the SRAM buffer are priced at SRAM energy,
the rest at DRAM energy (see :mod:`avalanche_rm.costs.residency`); ``fraction``
arguments are the share of a byte class that is SRAM-resident.
"""
from __future__ import annotations

from ..hardware.config import HardwareConfig
from ..hardware.crossbar import TileGrid
from ..hardware.device import RMDeviceConfig
from ..hardware.digital import DigitalUnitConfig
from ..hardware.programming import ProgrammingReport

Charges = dict[str, float]

#: FP32 MAC-equivalent operations of one parameter update (estimates: SGD w -= lr g; momentum adds
#: m = mu m + g; Adam/AdamW: two moment updates, bias corrections, sqrt and divide, the step)
OPTIMIZER_OPS = {"sgd": 1.0, "sgd_momentum": 2.0, "adam": 8.0}
#: optimiser moments kept per parameter
OPTIMIZER_MOMENTS = {"sgd": 0, "sgd_momentum": 1, "adam": 2}
#: bytes of a digital bias value (INT32 accumulator precision)
BIAS_BYTES = 4.0
#: bytes of a parameter's gradient (FP32, like the master copy it updates)
GRAD_BYTES = 4.0


def _add(total: Charges, **q: float) -> Charges:
    for k, v in q.items():
        total[k] = total.get(k, 0.0) + float(v)
    return total


# ------------------------------------------------------------------ memory traffic
def memory_read(digital: DigitalUnitConfig, nbytes: float, fraction: float = 1.0) -> Charges:
    """Reading ``nbytes``, of which ``fraction`` sit in SRAM and the rest off chip."""
    s, d = nbytes * fraction, nbytes * (1.0 - fraction)
    e_s, e_d = s * digital.sram_read_energy_pj_per_byte, d * digital.dram_energy_pj_per_byte
    return {"energy_pj": e_s + e_d, "energy_sram_pj": e_s, "energy_dram_pj": e_d, "sram_read_bytes": s,
            "dram_bytes": d}


def memory_write(digital: DigitalUnitConfig, nbytes: float, fraction: float = 1.0) -> Charges:
    """Writing ``nbytes``, of which ``fraction`` go to SRAM and the rest off chip."""
    s, d = nbytes * fraction, nbytes * (1.0 - fraction)
    e_s, e_d = s * digital.sram_write_energy_pj_per_byte, d * digital.dram_energy_pj_per_byte
    return {"energy_pj": e_s + e_d, "energy_sram_pj": e_s, "energy_dram_pj": e_d, "sram_write_bytes": s,
            "dram_bytes": d}


def spill_surcharge(digital: DigitalUnitConfig, read_bytes: float, write_bytes: float,
                    fraction: float) -> Charges:
    """Moving traffic first priced as SRAM-resident off chip: the difference, for the non-resident share."""
    off = 1.0 - fraction
    if off <= 0 or (read_bytes <= 0 and write_bytes <= 0):
        return {}
    r, w = read_bytes * off, write_bytes * off
    e_d = (r + w) * digital.dram_energy_pj_per_byte
    e_s = r * digital.sram_read_energy_pj_per_byte + w * digital.sram_write_energy_pj_per_byte
    return {"energy_pj": e_d - e_s, "energy_sram_pj": -e_s, "energy_dram_pj": e_d, "sram_read_bytes": -r,
            "sram_write_bytes": -w, "dram_bytes": r + w}


# ------------------------------------------------------------------ digital arithmetic
def digital_macs(digital: DigitalUnitConfig, macs: float, fp32: bool = False) -> Charges:
    """MACs on the PE array (INT8, or FP32 for gradients and updates); latency at ``pe_count`` per cycle."""
    e = macs * (digital.fp32_mac_energy_pj if fp32 else digital.mac_energy_pj)
    return {"energy_pj": e, "energy_digital_pj": e, "digital_macs": macs,
            "latency_ns": macs / digital.pe_count * digital.mac_time_ns}


def mac_coefficients(digital: DigitalUnitConfig, training: bool) -> Charges:
    """Per MAC counted on the device (e.g. MACs driven by non-zero inputs: both designs skip zero inputs,
    the crossbar by not driving the row, the PE array by zero-skipping); training adds the FP32 backward."""
    e = digital.mac_energy_pj + (2 * digital.fp32_mac_energy_pj if training else 0.0)
    return {"energy_pj": e, "energy_digital_pj": e, "digital_macs": 3.0 if training else 1.0,
            "latency_ns": (3.0 if training else 1.0) * digital.mac_time_ns / digital.pe_count}


def alu_ops(digital: DigitalUnitConfig, simple: float, transcendental: float = 0.0) -> Charges:
    """Element-wise operations (adds, compares, multiplies; transcendentals as several ALU operations)."""
    ops = simple + transcendental * digital.transcendental_alu_ops
    e = ops * digital.alu_op_energy_pj
    return {"energy_pj": e, "energy_digital_pj": e, "digital_ops": ops,
            "latency_ns": ops / digital.pe_count * digital.mac_time_ns}


def unit_costs(hw: HardwareConfig) -> dict[str, float]:
    """The per-operation constants reports quote when they explain a ratio (pJ, pJ/B)."""
    dig, xbar = hw.digital, hw.crossbar
    return {"mac_pj": dig.mac_energy_pj, "fp32_mac_pj": dig.fp32_mac_energy_pj, "alu_op_pj": dig.alu_op_energy_pj,
            "sram_read_pj_per_B": dig.sram_read_energy_pj_per_byte,
            "sram_write_pj_per_B": dig.sram_write_energy_pj_per_byte, "dram_pj_per_B": dig.dram_energy_pj_per_byte,
            "adc_pj": xbar.adc_energy_pj, "dac_pj": xbar.dac_energy_pj, "sram_KiB": dig.sram_kib}


def combine(*charges: Charges) -> Charges:
    out: Charges = {}
    for c in charges:
        _add(out, **c)
    return out


def scaled(charges: Charges, factor: float) -> Charges:
    return {k: v * factor for k, v in charges.items()}


# ------------------------------------------------------------------ analogue array: programming
def write_pulse_energy_pj(device: RMDeviceConfig, g_sum_us: float, n_pulses: float) -> float:
    """``n_pulses`` write pulses through cells whose conductances sum to ``g_sum_us``.

    E = V^2 G t_pw + V^2 C_wire per pulse (MLP+NeuroSim ``Cell.cpp`` write energy);
    V^2 [V^2] * G [uS] * t [ns] = 1e-15 J = 1e-3 pJ; V^2 * C [fF] = 1e-3 pJ.
    """
    v2 = device.pulse_voltage_v ** 2
    return v2 * device.pulse_width_ns * 1e-3 * g_sum_us + n_pulses * v2 * device.wire_capacitance_ff * 1e-3


def verify_read_energy_pj(device: RMDeviceConfig, g_sum_us: float, n_reads: float) -> float:
    """``n_reads`` verify reads (cell read plus sense amplifier/ADC) of total conductance ``g_sum_us``."""
    return device.verify_voltage_v ** 2 * device.verify_time_ns * 1e-3 * g_sum_us \
        + n_reads * device.verify_sense_energy_pj


def programming_latency_ns(device: RMDeviceConfig, rounds: float, groups: float) -> float:
    """Row groups one after another: a verify read each, then pulse+verify rounds of the slowest cell."""
    return groups * device.verify_time_ns + rounds * (device.pulse_width_ns + device.verify_time_ns)


def price_programming(device: RMDeviceConfig, report: ProgrammingReport) -> ProgrammingReport:
    """Fill a write-verify report's energy and latency from its counts (in place); returns it."""
    report.pulse_energy_pj = write_pulse_energy_pj(device, report.pulse_g_sum_us, report.pulses)
    report.verify_energy_pj = verify_read_energy_pj(device, report.verify_g_sum_us, report.verify_reads)
    report.energy_pj = report.pulse_energy_pj + report.verify_energy_pj
    report.latency_ns = programming_latency_ns(device, report.rounds, report.groups)
    return report


def programming_charges(report: ProgrammingReport) -> Charges:
    """Ledger quantities of a priced programming job."""
    return {"energy_pj": report.energy_pj, "energy_program_pj": report.energy_pj, "latency_ns": report.latency_ns,
            "pulses": report.pulses, "verify_reads": report.verify_reads, "cells_programmed": report.cells,
            "failed_cells": report.failed_cells}


#: digital operations per weight when a reprogramming job is planned: quantise the new weight to its target
#: level, quantise the old one (both are at hand in the optimiser's pass), compare
TARGET_COMPARE_OPS = 3.0


def target_compare_charges(digital: DigitalUnitConfig, n_weights: float) -> Charges:
    """The controller's plan of a reprogramming job: which cells' target levels changed (every weight)."""
    return alu_ops(digital, TARGET_COMPARE_OPS * n_weights)


# ------------------------------------------------------------------ analogue array: reads
def cell_read_coefficients(device: RMDeviceConfig, code_full_scale: float) -> Charges:
    """Per unit of ``sum_rows code^2 G_row`` (uS): cell read energy ``V_r^2 |x|^2 G t_r`` (x = code / full scale)."""
    c = device.read_voltage_v ** 2 * device.read_time_ns * 1e-3 / code_full_scale ** 2
    return {"energy_analog_pj": c, "energy_pj": c}


def driven_row_coefficients(hw: HardwareConfig, grid: TileGrid) -> Charges:
    """Per driven input row (event-driven: a zero input drives nothing): one DAC per output tile, MACs."""
    xbar = hw.crossbar
    e = grid.n_out_tiles * xbar.dac_energy_pj
    return {"analog_macs": float(grid.out_features * xbar.cells_per_weight), "dac_conversions": float(grid.n_out_tiles),
            "energy_dac_pj": e, "energy_pj": e}


def mvm_fixed_charges(hw: HardwareConfig, grid: TileGrid, n_vectors: int) -> Charges:
    """What a batch of ``n_vectors`` analogue MVMs costs besides rows and cells.

    ADC: one conversion per weight column per input tile (a differential pair or
    a cell and its reference are sensed as one current). Digital: the DAC's
    per-vector abs-max and scaling (2 ALU operations per input), the tile partial
    sums (``n_in_tiles - 1`` adds per output) and the output scaling (1 per
    output). Activation buffer: the input vector read, the output written.
    Latency: tiles in parallel, ``col_mux`` ADC rounds per vector.
    """
    xbar, dig, dev = hw.crossbar, hw.digital, hw.device
    conv = float(n_vectors * grid.n_in_tiles * grid.out_features)
    e_adc = conv * xbar.adc_energy_pj if xbar.adc_bits is not None else 0.0
    ops = n_vectors * (2 * grid.in_features + grid.n_in_tiles * grid.out_features)
    act = dig.activation_bytes
    out = combine({"energy_pj": e_adc, "energy_adc_pj": e_adc, "adc_conversions": conv if xbar.adc_bits else 0.0},
                  alu_ops(dig, ops),
                  memory_read(dig, n_vectors * grid.in_features * act),
                  memory_write(dig, n_vectors * grid.out_features * act))
    out["latency_ns"] = n_vectors * (dev.read_time_ns + xbar.col_mux * xbar.adc_time_ns)
    return out


def transposed_read_charges(hw: HardwareConfig, grid: TileGrid, n_vectors: int, g_mean_us: float) -> Charges:
    """The input gradient of training: a transposed read (DACs on columns, ADCs on rows).

    Its inputs are gradients, not DAC-normalised activations, so they are priced
    at full swing on the mean cell (an upper bound).
    """
    xbar, dev, dig = hw.crossbar, hw.device, hw.digital
    macs = n_vectors * grid.in_features * grid.out_features * xbar.cells_per_weight
    dac = n_vectors * grid.out_features * grid.n_in_tiles
    adc = n_vectors * grid.in_features * grid.n_out_tiles
    cell = macs * dev.read_voltage_v ** 2 * g_mean_us * dev.read_time_ns * 1e-3
    e_dac, e_adc = dac * xbar.dac_energy_pj, adc * xbar.adc_energy_pj
    act = dig.activation_bytes
    out = combine({"energy_pj": cell + e_dac + e_adc, "energy_analog_pj": cell, "energy_dac_pj": e_dac,
                   "energy_adc_pj": e_adc, "analog_macs": macs, "dac_conversions": dac, "adc_conversions": adc},
                  alu_ops(dig, n_vectors * (2 * grid.out_features + grid.n_out_tiles * grid.in_features)),
                  memory_read(dig, n_vectors * grid.out_features * act),
                  memory_write(dig, n_vectors * grid.in_features * act))
    out["latency_ns"] = n_vectors * (dev.read_time_ns + xbar.col_mux * xbar.adc_time_ns)
    return out


def weight_gradient_charges(hw: HardwareConfig, grid: TileGrid, n_vectors: int, g_mean_us: float) -> Charges:
    """Full-weight training of a crossbar layer: ``dW`` outer products in FP32 on the digital shadow (the
    saved inputs and the output gradients read from the activation buffer) plus the transposed read for ``dx``."""
    dig = hw.digital
    macs = n_vectors * grid.in_features * grid.out_features
    return combine(digital_macs(dig, macs, fp32=True),
                   memory_read(dig, n_vectors * (grid.in_features + grid.out_features) * dig.activation_bytes),
                   transposed_read_charges(hw, grid, n_vectors, g_mean_us))


# ------------------------------------------------------------------ digital unit: layers
def digital_linear_charges(digital: DigitalUnitConfig, n_vectors: int, n_samples: int, macs_per_vector: float,
                           weight_params: float, act_read_per_vector: float, act_write_per_vector: float,
                           training: bool, weight_fraction: float = 1.0, act_fraction: float = 1.0) -> Charges:
    """A digital matrix product (LoRA branch, digital head rows, or a dense layer of the reference).

    ``macs_per_vector``: the MACs that do not depend on the input's zeros (those
    that do are charged per counted MAC with :func:`mac_coefficients`).
    Forward MACs at INT8; training adds the backward at FP32 (``2x``: the weight
    gradient and the input gradient). Weights are read once per sample
    (``weight_params`` at the adapter precision). Activations move once per
    vector (``act_read_per_vector`` values read, ``act_write_per_vector``
    written, each quantised on the way: abs-max and scale, 2 ALU operations per
    value); training saves them for the backward pass, which reads them again
    and writes the input gradients.
    """
    macs = n_vectors * macs_per_vector
    rd = n_vectors * act_read_per_vector * digital.activation_bytes
    wr = n_vectors * act_write_per_vector * digital.activation_bytes
    out = combine(digital_macs(digital, macs),
                  memory_read(digital, n_samples * weight_params * digital.adapter_bytes_per_param, weight_fraction),
                  memory_read(digital, rd, act_fraction), memory_write(digital, wr, act_fraction),
                  alu_ops(digital, 2 * n_vectors * (act_read_per_vector + act_write_per_vector)))
    if training:
        out = combine(out, digital_macs(digital, 2 * macs, fp32=True),
                      memory_read(digital, rd + wr, act_fraction), memory_write(digital, rd, act_fraction))
    return out


def bias_charges(digital: DigitalUnitConfig, n_vectors: int, n_samples: int, out_features: int) -> Charges:
    """A digital bias: one add per output value, the bias read once per sample."""
    return combine(alu_ops(digital, n_vectors * out_features),
                   memory_read(digital, n_samples * out_features * BIAS_BYTES))


def optimizer_kind(optimizer) -> str:
    """``"adam"``, ``"sgd_momentum"`` or ``"sgd"`` (by class name: a checkpoint re-creates torch's classes)."""
    names = {c.__name__ for c in type(optimizer).__mro__}
    if names & {"Adam", "AdamW", "Adamax", "NAdam", "RAdam"}:
        return "adam"
    if any(g.get("momentum", 0) for g in optimizer.param_groups):
        return "sgd_momentum"
    return "sgd"


def optimizer_step_charges(digital: DigitalUnitConfig, kind: str, n_params: float, quantised_params: float = 0.0,
                           fraction: float = 1.0, weight_fraction: float = 1.0) -> Charges:
    """One optimiser step over ``n_params`` parameters trained on an FP32 master copy.

    Reads the master copy, the gradient and the moments; writes the master copy,
    the moments and the gradient buffer (cleared for the next step); the update
    itself is FP32 arithmetic (:data:`OPTIMIZER_OPS`). ``quantised_params`` of
    them (adapter factors) also get their INT8 copy rewritten for the forward
    pass. ``fraction``: SRAM-resident share of the training state;
    ``weight_fraction``: of the INT8 copies.
    """
    if kind not in OPTIMIZER_OPS:
        raise ValueError(f"optimizer kind must be one of {sorted(OPTIMIZER_OPS)}, got {kind!r}")
    per_param = training_state_bytes(digital, kind, 1.0)
    out = combine(memory_read(digital, n_params * per_param, fraction),
                  memory_write(digital, n_params * per_param, fraction),
                  memory_write(digital, quantised_params * digital.adapter_bytes_per_param, weight_fraction),
                  digital_macs(digital, n_params * OPTIMIZER_OPS[kind], fp32=True))
    out["steps"] = 1.0
    return out


def training_state_bytes(digital: DigitalUnitConfig, kind: str, n_params: float) -> float:
    """Digital memory an optimiser needs for ``n_params`` trained parameters (master, gradient, moments)."""
    return n_params * (digital.master_bytes_per_param + GRAD_BYTES + OPTIMIZER_MOMENTS[kind] * digital.moment_bytes)


# ------------------------------------------------------------------ network-level digital work
def digital_op_charges(digital: DigitalUnitConfig, simple_ops: float, transcendental_ops: float, macs: float,
                       weight_bytes: float, lookup_bytes: float, training: bool,
                       weight_fraction: float = 1.0) -> Charges:
    """The network's digital work outside the crossbar layers (norms, nonlinearities, residual adds,
    neuron updates, embeddings, unconverted matmuls), from a profile of its operations.

    Training adds the backward of that work as twice the forward operations.
    """
    k = 3.0 if training else 1.0
    return combine(alu_ops(digital, k * simple_ops, k * transcendental_ops),
                   digital_macs(digital, macs), digital_macs(digital, 2 * macs, fp32=True) if training else {},
                   memory_read(digital, weight_bytes, weight_fraction), memory_read(digital, lookup_bytes))


def dense_reference_layer(digital: DigitalUnitConfig, n_vectors: int, n_samples: int, in_features: int,
                          out_features: int, nonzero_inputs: float, has_bias: bool, training: bool,
                          weight_fraction: float) -> Charges:
    """One crossbar layer call executed instead by the digital unit (the all-digital reference).

    The same rules as the hybrid's digital work: INT8 MACs for the non-zero
    inputs (``nonzero_inputs`` x ``out_features``), weights read once per sample
    (from SRAM or, beyond its capacity, DRAM), activations in and out once per
    vector and quantised, the bias added digitally.
    """
    out = combine(digital_linear_charges(digital, n_vectors, n_samples, 0.0, in_features * out_features,
                                         in_features, out_features, training, weight_fraction=weight_fraction),
                  scaled(mac_coefficients(digital, training), nonzero_inputs * out_features))
    if has_bias:
        out = combine(out, bias_charges(digital, n_vectors, n_samples, out_features))
    return out
