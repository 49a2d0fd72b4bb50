"""Every cost formula of avalanche-rm: what each event counts, and how counts become energy and latency.

The hardware model and the layers describe what the chip did; the functions
here turn that into *counts* of the field table (:mod:`avalanche_rm.costs.fields`:
pulses, conversions, MACs and ALU operations by kind and width, bytes by data
class), and :func:`priced` turns counts into energy with the chip's unit prices
(:mod:`avalanche_rm.costs.prices`). Nothing outside ``costs/`` multiplies an
energy constant, and both designs go through the same functions.

Rules (the README's "How costs are defined" states them for readers):
- a weight held in digital memory is read once per sample per layer call
  (recurrent layers: per time step), for both designs; activations move once per
  vector (token, time step, receptive field);
- counts are by data class (``weight``, ``activation``, ``state``); which memory
  level serves them is decided by :mod:`avalanche_rm.costs.residency` and
  applied by :func:`split_traffic`;
- zero inputs drive no crossbar row and gate the digital MACs they feed: that
  saves energy, not cycles (data gating, as in Eyeriss: Chen et al., JSSC 2017),
  so latency counts dense work;
- latency of one unit of work is that of its busiest resource: the crossbar with
  its ADCs, the PE array, or the memory ports (:func:`latency_ns`): branches that
  run in parallel (the analogue read and the digital LoRA branch) overlap, and
  memory traffic takes bandwidth time.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..hardware.config import HardwareConfig
from ..hardware.crossbar import TileGrid
from ..hardware.digital import DigitalUnitConfig
from ..hardware.programming import ProgrammingReport
from .fields import CLASS_TRAFFIC, PRICED
from .prices import Prices, prices

Counts = dict[str, float]
Charges = dict[str, float]

#: FP32 MAC-equivalent operations of one parameter update (estimates: SGD w -= lr g; momentum adds
#: m = mu m + g; Adam/AdamW: two moment updates, bias corrections, sqrt and divide, the step)
OPTIMIZER_OPS = {"sgd": 1.0, "sgd_momentum": 2.0, "adam": 8.0}
#: optimiser moments kept per parameter
OPTIMIZER_MOMENTS = {"sgd": 0, "sgd_momentum": 1, "adam": 2}
#: bytes of a digital bias value (INT32, the accumulator's precision)
BIAS_BYTES = 4.0
#: bytes of a parameter's gradient (FP32, like the master copy it updates)
GRAD_BYTES = 4.0
#: bytes of an activation gradient (the backward pass runs at FP32)
ACT_GRAD_BYTES = 4.0
#: data classes of memory traffic, as the residency places them
CLASSES = ("weight", "activation", "state")
#: memory levels, nearest first
LEVELS = ("local", "sram", "dram")


def combine(*charges: dict[str, float]) -> dict[str, float]:
    """Sum dicts of quantities key by key."""
    out: dict[str, float] = {}
    for c in charges:
        for k, v in c.items():
            out[k] = out.get(k, 0.0) + float(v)
    return out


def scaled(charges: dict[str, float], factor: float) -> dict[str, float]:
    return {k: v * factor for k, v in charges.items()}


@dataclass
class Work:
    """What one unit of chip work counted, and how long each resource is busy with it.

    ``counts``: field-table counts (traffic by data class, not yet by level);
    ``pe_ops``: PE-array operations including those on zero inputs (cycles x PEs);
    ``analog_ns``: crossbar time (tiles in parallel). Works add up; scale by a factor with :meth:`times`.
    """

    counts: Counts = field(default_factory=dict)
    pe_ops: float = 0.0
    analog_ns: float = 0.0

    def __add__(self, other: "Work") -> "Work":
        return Work(combine(self.counts, other.counts), self.pe_ops + other.pe_ops, self.analog_ns + other.analog_ns)

    def times(self, k: float) -> "Work":
        return Work(scaled(self.counts, k), self.pe_ops * k, self.analog_ns * k)


def _ops(**counts: float) -> Counts:
    """Element-wise operations by kind, plus their total (``digital_ops``) and MAC total (``digital_macs``)."""
    out = {k: float(v) for k, v in counts.items() if v}
    ops = sum(v for k, v in out.items() if k.endswith(("_adds", "_muls", "transcendentals")))
    macs = out.get("int8_macs", 0.0) + out.get("fp32_macs", 0.0)
    if ops:
        out["digital_ops"] = ops
    if macs:
        out["digital_macs"] = macs
    return out


def pe_cycles(counts: Counts, digital: DigitalUnitConfig) -> float:
    """PE operations a set of counts takes (a transcendental takes ``transcendental_alu_ops``)."""
    t = counts.get("transcendentals", 0.0) + counts.get("fp32_transcendentals", 0.0)
    return counts.get("digital_macs", 0.0) + counts.get("digital_ops", 0.0) + t * (digital.transcendental_alu_ops - 1)


def _traffic(cls: str, read: float = 0.0, write: float = 0.0) -> Counts:
    out = {}
    if read:
        out[CLASS_TRAFFIC[(cls, "read")]] = float(read)
    if write:
        out[CLASS_TRAFFIC[(cls, "write")]] = float(write)
    return out


# ------------------------------------------------------------------ counts into energy
def priced(counts: Counts, p: Prices) -> Charges:
    """``counts`` plus their energy: each priced field's count x its unit price, by bucket and in total.

    Counts are linear, so this also prices per-unit coefficients (a tensor count times them).
    """
    out = dict(counts)
    total = 0.0
    for f in PRICED:
        n = counts.get(f.name)
        if n:
            e = n * getattr(p, f.price)
            out[f.bucket] = out.get(f.bucket, 0.0) + e
            total += e
    if total:
        out["energy_pj"] = out.get("energy_pj", 0.0) + total
    return out


def energy_pj(counts: Counts, p: Prices) -> float:
    """Total energy of ``counts`` (level traffic included; class traffic must be split first)."""
    return sum(counts.get(f.name, 0.0) * getattr(p, f.price) for f in PRICED)


def split_traffic(counts: Counts, placement: dict[str, tuple[float, float, float]]) -> Counts:
    """Bytes by data class -> bytes by memory level, with ``placement[class] = (local, sram, dram)`` shares."""
    out: Counts = {}
    for cls in CLASSES:
        r = counts.get(CLASS_TRAFFIC[(cls, "read")], 0.0)
        w = counts.get(CLASS_TRAFFIC[(cls, "write")], 0.0)
        if not (r or w):
            continue
        f_local, f_sram, f_dram = placement.get(cls, (0.0, 1.0, 0.0))
        for k, v in (("local_bytes", (r + w) * f_local), ("sram_read_bytes", r * f_sram),
                     ("sram_write_bytes", w * f_sram), ("dram_bytes", (r + w) * f_dram)):
            if v:
                out[k] = out.get(k, 0.0) + v
    return out


def memory_ns(level_bytes: Counts, p: Prices) -> float:
    """Time the memory ports need for ``level_bytes`` (levels work concurrently: the slowest sets it)."""
    return max(level_bytes.get("local_bytes", 0.0) / p.local_bytes_per_ns,
               (level_bytes.get("sram_read_bytes", 0.0) + level_bytes.get("sram_write_bytes", 0.0))
               / p.sram_bytes_per_ns,
               level_bytes.get("dram_bytes", 0.0) / p.dram_bytes_per_ns)


def latency_ns(work: Work, level_bytes: Counts, p: Prices) -> float:
    """The busiest resource: crossbar (with its ADCs), PE array, or memory ports (a roofline; fill ignored)."""
    return max(work.analog_ns, work.pe_ops / p.pe_ops_per_ns, memory_ns(level_bytes, p))


def charge_work(work: Work, placement: dict[str, tuple[float, float, float]], p: Prices) -> Charges:
    """Counts of ``work`` with its traffic split by ``placement``, priced, and its latency."""
    levels = split_traffic(work.counts, placement)
    out = priced(combine(work.counts, levels), p)
    lat = latency_ns(work, levels, p)
    if lat:
        out["latency_ns"] = out.get("latency_ns", 0.0) + lat
    return out


# ------------------------------------------------------------------ analogue array: programming
def programming_latency_ns(hw: HardwareConfig, rounds: float, groups: float) -> float:
    """Row groups one after another: a verify read each, then pulse+verify rounds of the slowest cell."""
    dev = hw.device
    return groups * dev.verify_time_ns + rounds * (dev.pulse_width_ns + dev.verify_time_ns)


def programming_counts(hw: HardwareConfig, report: ProgrammingReport) -> Counts:
    """Counts of a write-verify job (its latency included: write-verify is not a streamed layer)."""
    return {"pulses": float(report.pulses), "pulse_conductance_us": float(report.pulse_g_sum_us),
            "verify_reads": float(report.verify_reads), "verify_conductance_us": float(report.verify_g_sum_us),
            "cells_programmed": float(report.cells), "failed_cells": float(report.failed_cells),
            "latency_ns": programming_latency_ns(hw, report.rounds, report.groups)}


def write_pulse_energy_pj(hw: HardwareConfig, g_sum_us: float, n_pulses: float) -> float:
    """``n_pulses`` write pulses through cells whose conductances sum to ``g_sum_us``: ``V^2 G t_pw + V^2 C_wire``
    per pulse (MLP+NeuroSim ``Cell.cpp``)."""
    p = prices(hw)
    return g_sum_us * p.pulse_pj_per_us + n_pulses * p.pulse_wire_pj


def verify_read_energy_pj(hw: HardwareConfig, g_sum_us: float, n_reads: float) -> float:
    """``n_reads`` verify reads of total conductance ``g_sum_us``: the cell read ``V_r^2 G t`` and a window compare."""
    p = prices(hw)
    return g_sum_us * p.verify_pj_per_us + n_reads * p.verify_compare_pj


def price_programming(hw: HardwareConfig, report: ProgrammingReport) -> ProgrammingReport:
    """Fill a write-verify report's energy and latency from its counts (in place); returns it."""
    if not isinstance(hw, HardwareConfig):
        raise ValueError(f"price_programming needs the chip's HardwareConfig (its ADC prices the verify "
                         f"compare), got {type(hw).__name__}")
    report.pulse_energy_pj = write_pulse_energy_pj(hw, report.pulse_g_sum_us, report.pulses)
    report.verify_energy_pj = verify_read_energy_pj(hw, report.verify_g_sum_us, report.verify_reads)
    report.energy_pj = report.pulse_energy_pj + report.verify_energy_pj
    report.latency_ns = programming_latency_ns(hw, report.rounds, report.groups)
    return report


#: bytes that name one cell of an update delivered from off chip: a 4-byte address and its 1-byte level code
UPDATE_BYTES_PER_CELL = 5.0
#: bytes per cell of a whole array's levels streamed in order (programming a model from reset)
LEVEL_BYTES_PER_CELL = 1.0


def level_stream(cells: float, bytes_per_cell: float) -> Work:
    """Target levels arriving from off chip for ``cells`` cells, through the write-verify controller's input FIFO
    (written once, read once)."""
    b = cells * bytes_per_cell
    return Work({"fifo_bytes": 2.0 * b} if b else {})


def reprogram_plan(n_weights: float, changed_cells: float, from_fp32: bool) -> Work:
    """The controller's plan of a reprogramming job: which cells' target levels changed.

    On chip (``from_fp32``: the new weights are FP32 values, as in full-weight
    training or merging) each weight is quantised to its level code (an FP32
    multiply) and compared with the programmed one (an INT8 compare). An update
    trained off chip arrives as the list of the cells it changes (address and
    level code, :data:`UPDATE_BYTES_PER_CELL` each) through the controller's FIFO.
    """
    if from_fp32:
        c = _ops(int8_adds=n_weights, fp32_muls=n_weights)
        return Work(c, pe_ops=c["digital_ops"] if c else 0.0)
    return level_stream(changed_cells, UPDATE_BYTES_PER_CELL)


# ------------------------------------------------------------------ analogue array: reads
def analog_read(hw: HardwareConfig, grid: TileGrid, n_vectors: float) -> Work:
    """What ``n_vectors`` analogue MVMs of a layer cost besides driven rows and cells.

    ADC: one conversion per weight column per input tile (a differential pair or
    a cell and its reference are sensed as one current). Digital: DAC coding of
    each input (an INT8 compare for the abs-max, an INT8 multiply to scale), the
    tile partial sums (``n_in_tiles - 1`` INT32 adds per output), requantising each
    output to INT8 (an INT32 compare for the abs-max, a 16-bit multiply).
    Activations: the input read once, the output written once (a LoRA branch
    shares that fetch and accumulates into that output). Crossbar time: tiles in
    parallel, ``vector_read_ns`` per vector.
    """
    xbar, dig = hw.crossbar, hw.digital
    conv = float(n_vectors * grid.n_in_tiles * grid.out_features) if xbar.adc_bits is not None else 0.0
    c = _ops(int8_adds=n_vectors * grid.in_features, int8_muls=n_vectors * grid.in_features,
             int32_adds=n_vectors * grid.n_in_tiles * grid.out_features,  # n_in_tiles - 1 partial sums, 1 abs-max
             int16_muls=n_vectors * grid.out_features)
    if conv:
        c["adc_conversions"] = conv
    c.update(_traffic("activation", n_vectors * grid.in_features * dig.activation_bytes,
                      n_vectors * grid.out_features * dig.activation_bytes))
    return Work(c, pe_ops=pe_cycles(c, dig), analog_ns=n_vectors * prices(hw).vector_read_ns)


def driven_row_coefficients(hw: HardwareConfig, grid: TileGrid) -> Counts:
    """Per driven input row (a zero input drives nothing): one DAC drive per output tile, the MACs its cells do."""
    return {"analog_macs": float(grid.out_features * hw.crossbar.cells_per_weight),
            "dac_conversions": float(grid.n_out_tiles)}


def cell_read_coefficients(code_full_scale: float) -> Counts:
    """Per unit of ``sum_rows code^2 G_row`` (uS): ``(code / full scale)^2 G`` summed over the cells."""
    return {"cell_read_us": 1.0 / code_full_scale ** 2}


def transposed_read(hw: HardwareConfig, grid: TileGrid, n_vectors: float, g_mean_us: float) -> Work:
    """The input gradient of training: a transposed read (DACs on columns, ADCs on rows).

    Its inputs are FP32 gradients, not DAC-normalised activations, so cells are
    priced at full swing on the mean cell (an upper bound). Digital: coding each
    gradient (FP32 compare and multiply), the partial sums (INT32 adds),
    rescaling each result to FP32 (an FP32 multiply); the output gradients are
    read and the input gradients written (FP32).
    """
    xbar, dig = hw.crossbar, hw.digital
    macs = n_vectors * grid.in_features * grid.out_features * xbar.cells_per_weight
    c = _ops(fp32_adds=n_vectors * grid.out_features, fp32_muls=n_vectors * (grid.out_features + grid.in_features),
             int32_adds=n_vectors * (grid.n_out_tiles - 1) * grid.in_features)
    c.update({"analog_macs": float(macs), "cell_read_us": float(macs * g_mean_us),
              "dac_conversions": float(n_vectors * grid.out_features * grid.n_in_tiles),
              "adc_conversions": float(n_vectors * grid.in_features * grid.n_out_tiles)})
    c.update(_traffic("activation", n_vectors * grid.out_features * ACT_GRAD_BYTES,
                      n_vectors * grid.in_features * ACT_GRAD_BYTES))
    return Work(c, pe_ops=pe_cycles(c, dig), analog_ns=n_vectors * prices(hw).vector_read_ns)


def weight_gradient(hw: HardwareConfig, grid: TileGrid, n_vectors: float, g_mean_us: float) -> Work:
    """Full-weight training of a crossbar layer: ``dW`` outer products in FP32 on the digital shadow (the
    saved inputs and the output gradients read) plus the transposed read for ``dx``."""
    dig = hw.digital
    c = _ops(fp32_macs=n_vectors * grid.in_features * grid.out_features)
    c.update(_traffic("activation", n_vectors * (grid.in_features * dig.activation_bytes
                                                 + grid.out_features * ACT_GRAD_BYTES)))
    return Work(c, pe_ops=pe_cycles(c, dig)) + transposed_read(hw, grid, n_vectors, g_mean_us)


# ------------------------------------------------------------------ digital unit: layers
def lora_branch(digital: DigitalUnitConfig, n_vectors: float, n_samples: float, rank: int, in_features: int,
                out_features: int, weight_params: float, training: bool) -> Work:
    """The LoRA branches of one layer call (``rank``: their ranks summed), beside the analogue read.

    The branch shares the analogue path's input fetch (the INT8 input is already
    in the PE array) and accumulates into its output (one INT32 add per output;
    the output is requantised once, by the analogue path). Its own work: the
    rank-r intermediate requantised (an INT32 compare and a 16-bit multiply per
    value; it stays in PE registers), ``B h`` (dense INT8 MACs; the input-side
    MACs skip zeros and are counted with :func:`lora_nonzero_coefficients`), and
    its factors read once per sample. Training adds the backward at FP32 (twice
    the forward MACs), the saved input and intermediate read again, ``h`` saved,
    and the branch's input gradient accumulated into the transposed read's (FP32 adds).
    """
    c = _ops(int8_macs=n_vectors * rank * out_features, int32_adds=n_vectors * (rank + out_features),
             int16_muls=n_vectors * rank,
             fp32_macs=2 * n_vectors * rank * out_features if training else 0.0,
             fp32_adds=n_vectors * in_features if training else 0.0)
    c.update(_traffic("weight", n_samples * weight_params * digital.adapter_bytes_per_param))
    if training:
        c = combine(c, _traffic("activation", n_vectors * (in_features + rank) * digital.activation_bytes,
                                n_vectors * rank * digital.activation_bytes))
    # cycles: the input-side MACs run on every input, zero or not
    pe = pe_cycles(c, digital) + n_vectors * rank * in_features * (3 if training else 1)
    return Work(c, pe_ops=pe)


def lora_nonzero_coefficients(rank: int, training: bool) -> Counts:
    """Per non-zero input value of a LoRA branch: ``rank`` INT8 MACs (``A x``), and twice that at FP32 in training."""
    c = {"int8_macs": float(rank), "digital_macs": float(rank)}
    if training:
        c["fp32_macs"] = 2.0 * rank
        c["digital_macs"] += 2.0 * rank
    return c


def digital_rows(digital: DigitalUnitConfig, n_vectors: float, n_samples: float, in_features: int, rows: int,
                 training: bool) -> Work:
    """Output rows computed by the digital unit (a head grown by a class), beside the analogue read.

    Their MACs skip zero inputs (:func:`lora_nonzero_coefficients` with ``rows``);
    each output is requantised, gets its bias and is written; weights and biases
    are read once per sample. Training adds the backward (FP32, the saved input read again).
    """
    c = _ops(int32_adds=2 * n_vectors * rows, int16_muls=n_vectors * rows,
             fp32_adds=n_vectors * in_features if training else 0.0)
    c.update(_traffic("weight", n_samples * rows * (in_features * digital.adapter_bytes_per_param + BIAS_BYTES)))
    c = combine(c, _traffic("activation", n_vectors * in_features * digital.activation_bytes if training else 0.0,
                            n_vectors * rows * digital.activation_bytes))
    pe = pe_cycles(c, digital) + n_vectors * rows * in_features * (3 if training else 1)
    return Work(c, pe_ops=pe)


def bias(digital: DigitalUnitConfig, n_vectors: float, n_samples: float, out_values: int) -> Work:
    """A digital bias (the base's and every active adapter's, pre-summed): an INT32 add per output value, the
    vector read once per sample."""
    c = _ops(int32_adds=n_vectors * out_values)
    c.update(_traffic("weight", n_samples * out_values * BIAS_BYTES))
    return Work(c, pe_ops=pe_cycles(c, digital))


def dense_layer(digital: DigitalUnitConfig, n_vectors: float, n_samples: float, in_features: int,
                out_features: int, has_bias: bool, training: bool) -> Work:
    """One crossbar layer call executed instead by the digital unit (the all-digital reference).

    The same rules as the hybrid's digital work: INT8 MACs of the non-zero inputs
    (:func:`lora_nonzero_coefficients` with ``out_features``), weights read once
    per sample, the input read and the output written once per vector, the
    output requantised (INT32 compare, 16-bit multiply), the bias added. Training
    adds the backward at FP32: the saved input and the output gradient read, the
    input gradient written.
    """
    c = _ops(int32_adds=n_vectors * out_features * (2 if has_bias else 1), int16_muls=n_vectors * out_features)
    w_bytes = in_features * out_features * digital.adapter_bytes_per_param + (out_features * BIAS_BYTES
                                                                              if has_bias else 0.0)
    c.update(_traffic("weight", n_samples * w_bytes))
    rd, wr = n_vectors * in_features * digital.activation_bytes, n_vectors * out_features * digital.activation_bytes
    if training:
        rd += n_vectors * (in_features * digital.activation_bytes + out_features * ACT_GRAD_BYTES)
        wr += n_vectors * in_features * ACT_GRAD_BYTES
    c = combine(c, _traffic("activation", rd, wr))
    pe = pe_cycles(c, digital) + n_vectors * in_features * out_features * (3 if training else 1)
    return Work(c, pe_ops=pe)


def network_work(digital: DigitalUnitConfig, ops: dict[str, float], macs: float, weight_values: float,
                 lookup_values: float, n_samples: float, training: bool) -> Work:
    """The network's digital work outside the crossbar layers (norms, nonlinearities, residual adds, neuron
    updates, embeddings, unconverted matmuls) from a per-sample operation profile, for ``n_samples``.

    ``ops``: per-sample counts by kind (``int8_adds``, ``int32_adds``, ``int8_muls``,
    ``transcendentals``). Unconverted matmuls are INT8 MACs with their weights
    read once per sample; embeddings read their rows. Training adds the backward
    of that work at FP32, twice the forward operations.
    """
    c = _ops(**{k: v * n_samples for k, v in ops.items()}, int8_macs=macs * n_samples)
    if training:
        c = combine(c, _ops(fp32_adds=2 * n_samples * (ops.get("int8_adds", 0.0) + ops.get("int32_adds", 0.0)),
                            fp32_muls=2 * n_samples * ops.get("int8_muls", 0.0),
                            fp32_transcendentals=2 * n_samples * ops.get("transcendentals", 0.0),
                            fp32_macs=2 * n_samples * macs))
    c = combine(c, _traffic("weight", n_samples * weight_values * digital.adapter_bytes_per_param),
                _traffic("activation", n_samples * lookup_values * digital.activation_bytes))
    return Work(c, pe_ops=pe_cycles(c, digital))


def activation_traffic(read_bytes: float = 0.0, write_bytes: float = 0.0) -> Work:
    """Activations moved outside a layer (e.g. a teacher's outputs kept for an unlearning objective)."""
    return Work(_traffic("activation", read_bytes, write_bytes))


def adapter_deployment(nbytes: float) -> Work:
    """Deploying ``nbytes`` of digital weights (an adapter) trained off chip: they arrive through the input FIFO
    (as a reprogramming job's levels do) and are written where the chip keeps the weights its passes read."""
    return Work({**_traffic("weight", write=nbytes), "fifo_bytes": 2.0 * nbytes} if nbytes else {})


# ------------------------------------------------------------------ training
def optimizer_kind(optimizer) -> str:
    """``"adam"``, ``"sgd_momentum"`` or ``"sgd"`` (by class name: a checkpoint re-creates torch's classes)."""
    names = {c.__name__ for c in type(optimizer).__mro__}
    if names & {"Adam", "AdamW", "Adamax", "NAdam", "RAdam"}:
        return "adam"
    if any(g.get("momentum", 0) for g in optimizer.param_groups):
        return "sgd_momentum"
    return "sgd"


def training_state_bytes(digital: DigitalUnitConfig, kind: str, n_params: float) -> float:
    """Digital memory an optimiser needs for ``n_params`` trained parameters (master, gradient, moments)."""
    return n_params * (digital.master_bytes_per_param + GRAD_BYTES + OPTIMIZER_MOMENTS[kind] * digital.moment_bytes)


def optimizer_step(digital: DigitalUnitConfig, kind: str, n_params: float, quantised_params: float = 0.0) -> Work:
    """One optimiser step over ``n_params`` parameters trained on an FP32 master copy.

    Reads the master copy, the gradient and the moments; writes the master copy,
    the moments and the gradient buffer (cleared for the next step); the update
    itself is FP32 arithmetic (:data:`OPTIMIZER_OPS`). ``quantised_params`` of
    them (adapter factors) also get their INT8 copy rewritten for the forward pass.
    """
    if kind not in OPTIMIZER_OPS:
        raise ValueError(f"optimizer kind must be one of {sorted(OPTIMIZER_OPS)}, got {kind!r}")
    state = training_state_bytes(digital, kind, n_params)
    c = combine(_ops(fp32_macs=n_params * OPTIMIZER_OPS[kind]), _traffic("state", state, state),
                _traffic("weight", write=quantised_params * digital.adapter_bytes_per_param), {"steps": 1.0})
    return Work(c, pe_ops=pe_cycles(c, digital))


