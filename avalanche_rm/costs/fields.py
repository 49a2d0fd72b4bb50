"""The one table of cost fields: every ledger quantity with its unit and meaning.

Every list of cost keys in avalanche-rm is generated from :data:`FIELDS`: the
ledger's :data:`~avalanche_rm.costs.ledger.QUANTITIES`, the Avalanche metrics
(:mod:`avalanche_rm.evaluation.hardware_metrics`), the Flower replies and the
federation audit (:mod:`avalanche_rm.flower`), a forget request's audit record
(:data:`AUDIT_KEYS`), the ledger's table and the reports.

A *count* field with a ``price`` is turned into energy by the meter: ``count x
getattr(prices, price)`` pJ, added to the energy field named by ``bucket`` and
to ``energy_pj`` (:func:`avalanche_rm.costs.pricing.priced`). Adding a per-op
cost is therefore three files: its field here, its unit price in
:mod:`avalanche_rm.costs.prices`, and the layer (or array report) that counts it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Field:
    """One cost field.

    ``metric``: ``(switch, Avalanche metric name)`` when
    :func:`~avalanche_rm.evaluation.hardware_cost_metrics` offers it (``metric_on``:
    on by default); ``reply``: sent in Flower replies (as the kebab-case name);
    ``audit``: kept in a forget request's audit record; ``table``: a column of
    :meth:`CostLedger.table`; ``price``/``bucket``: see the module docstring.
    """

    name: str
    unit: str
    meaning: str
    price: str | None = None
    bucket: str | None = None
    metric: tuple[str, str] | None = None
    metric_on: bool = False
    reply: bool = False
    audit: bool = False
    table: bool = False

    @property
    def reply_key(self) -> str:
        """The field's key in a Flower ``MetricRecord`` (Flower's kebab-case convention)."""
        return self.name.replace("_", "-")


_E = "energy"
FIELDS: tuple[Field, ...] = (
    # ------------------------------------------------------------ totals
    Field("energy_pj", "pJ", "total energy (the sum of the energy_* breakdown)", metric=(_E, "HW_energy_pJ"),
          metric_on=True, reply=True, audit=True, table=True),
    Field("latency_ns", "ns", "latency: per layer call the busiest of crossbar, PE array and memory ports; "
          "write-verify rounds one after another", metric=("latency", "HW_latency_ns"), metric_on=True, audit=True,
          table=True),
    # ------------------------------------------------------------ energy breakdown (buckets)
    Field("energy_program_pj", "pJ", "write pulses and verify reads of write-verify jobs"),
    Field("energy_analog_pj", "pJ", "current through the cells during analogue reads"),
    Field("energy_dac_pj", "pJ", "row DACs of analogue reads"),
    Field("energy_adc_pj", "pJ", "column ADC conversions of analogue reads"),
    Field("energy_digital_pj", "pJ", "arithmetic of the digital unit (MACs and ALU operations)"),
    Field("energy_local_pj", "pJ", "accesses to the PE array's local buffers (stationary weights)"),
    Field("energy_sram_pj", "pJ", "accesses to the SRAM buffer"),
    Field("energy_dram_pj", "pJ", "off-chip DRAM accesses"),
    # ------------------------------------------------------------ analogue array: programming
    Field("pulses", "write pulses", "write pulses of write-verify jobs", price="pulse_wire_pj",
          bucket="energy_program_pj", metric=("pulses", "HW_pulses"), metric_on=True, reply=True, audit=True,
          table=True),
    Field("pulse_conductance_us", "uS", "conductance of the pulsed cells, summed over pulses (V^2 G t_pw)",
          price="pulse_pj_per_us", bucket="energy_program_pj"),
    Field("verify_reads", "verify reads", "verify reads (a cell read and a window compare)", price="verify_compare_pj",
          bucket="energy_program_pj"),
    Field("verify_conductance_us", "uS", "conductance read by verify reads, summed (V^2 G t_verify)",
          price="verify_pj_per_us", bucket="energy_program_pj"),
    Field("cells_programmed", "cells", "cells that entered a write-verify job",
          metric=("cells", "HW_programmed_cells"), metric_on=True, reply=True, audit=True, table=True),
    Field("failed_cells", "cells", "cells left outside the acceptance window"),
    # ------------------------------------------------------------ analogue array: reads
    Field("analog_macs", "MACs", "multiply-accumulates done by cells (driven rows x columns)",
          metric=("analog_macs", "HW_analog_MACs"), table=True),
    Field("cell_read_us", "uS", "sum over cells a driven row passes current through of (input/full scale)^2 G",
          price="cell_read_pj_per_us", bucket="energy_analog_pj"),
    Field("dac_conversions", "conversions", "row DAC drives (one per driven row and output tile)", price="dac_pj",
          bucket="energy_dac_pj"),
    Field("adc_conversions", "conversions", "column ADC conversions (one per column and input tile)", price="adc_pj",
          bucket="energy_adc_pj"),
    Field("adc_saturations", "conversions", "conversions beyond the ADC's full scale (clipped; estimated from ~16 "
          "vectors per batch)"),
    # ------------------------------------------------------------ digital unit: arithmetic by kind and width
    Field("int8_macs", "MACs", "INT8 x INT8 multiplies accumulated at INT32", price="int8_mac_pj",
          bucket="energy_digital_pj"),
    Field("fp32_macs", "MACs", "FP32 multiply-adds (backward passes, optimiser updates)", price="fp32_mac_pj",
          bucket="energy_digital_pj"),
    Field("int8_adds", "operations", "INT8 adds and compares (ReLU, max, abs-max, level compares)",
          price="int8_add_pj", bucket="energy_digital_pj"),
    Field("int32_adds", "operations", "INT32 adds and compares on accumulators (partial sums, biases, reductions)",
          price="int32_add_pj", bucket="energy_digital_pj"),
    Field("fp32_adds", "operations", "FP32 adds and compares (backward element-wise work)", price="fp32_add_pj",
          bucket="energy_digital_pj"),
    Field("int8_muls", "operations", "INT8 multiplies (scaling INT8 values)", price="int8_mul_pj",
          bucket="energy_digital_pj"),
    Field("int16_muls", "operations", "16-bit fixed-point multiplies (requantising accumulators to INT8)",
          price="int16_mul_pj", bucket="energy_digital_pj"),
    Field("fp32_muls", "operations", "FP32 multiplies (backward element-wise work, weight-to-level quantisation)",
          price="fp32_mul_pj", bucket="energy_digital_pj"),
    Field("transcendentals", "operations", "exp, log, tanh, sqrt, divide at INT8 (piecewise-linear unit)",
          price="transcendental_pj", bucket="energy_digital_pj"),
    Field("fp32_transcendentals", "operations", "the same at FP32 (backward passes)", price="fp32_transcendental_pj",
          bucket="energy_digital_pj"),
    Field("digital_macs", "MACs", "all digital MACs (INT8 and FP32)", metric=("digital_macs", "HW_digital_MACs"),
          audit=True, table=True),
    Field("digital_ops", "operations", "all digital element-wise operations (adds, compares, multiplies, "
          "transcendentals)"),
    # ------------------------------------------------------------ memory traffic by level (priced)
    Field("local_bytes", "B", "bytes read or written in the PE array's local buffers", price="local_pj_per_byte",
          bucket="energy_local_pj"),
    Field("fifo_bytes", "B", "bytes through the input FIFO: updates arriving from off chip (target levels, "
          "adapter factors); a register level", price="fifo_pj_per_byte", bucket="energy_local_pj"),
    Field("sram_read_bytes", "B", "bytes read from the SRAM buffer", price="sram_read_pj_per_byte",
          bucket="energy_sram_pj"),
    Field("sram_write_bytes", "B", "bytes written to the SRAM buffer", price="sram_write_pj_per_byte",
          bucket="energy_sram_pj", metric=("sram", "HW_sram_write_B"), table=True),
    Field("dram_bytes", "B", "bytes read or written off chip", price="dram_pj_per_byte", bucket="energy_dram_pj",
          audit=True),
    # ------------------------------------------------------------ memory traffic by data class (all levels)
    Field("weight_read_bytes", "B", "digital weights read (adapters, head rows, biases, the reference's weights)"),
    Field("weight_write_bytes", "B", "digital weights written (INT8 copies after optimiser steps)"),
    Field("activation_read_bytes", "B", "activations and gradients read"),
    Field("activation_write_bytes", "B", "activations and gradients written"),
    Field("state_read_bytes", "B", "training state read (FP32 master copies, gradients, moments)"),
    Field("state_write_bytes", "B", "training state written"),
    # ------------------------------------------------------------ bookkeeping
    Field("samples", "samples", "samples processed"),
    Field("steps", "optimizer steps", "optimiser steps"),
)

#: field name -> field
FIELD: dict[str, Field] = {f.name: f for f in FIELDS}
#: count fields that have a unit price
PRICED: tuple[Field, ...] = tuple(f for f in FIELDS if f.price)
#: the energy breakdown fields, in table order
ENERGY_BUCKETS: tuple[str, ...] = tuple(dict.fromkeys(f.bucket for f in PRICED))
#: ledger quantities a forget request's audit record reports
AUDIT_KEYS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.audit)
#: ledger quantities a Flower client sends with its replies
REPLY_KEYS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.reply)
#: default columns of :meth:`CostLedger.table`
TABLE_KEYS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.table)
#: traffic fields by data class and direction: (class, direction) -> field
CLASS_TRAFFIC: dict[tuple[str, str], str] = {
    (c, d): f"{c}_{d}_bytes" for c in ("weight", "activation", "state") for d in ("read", "write")}
#: prefix of every hardware metric name (Avalanche) and of the columns loggers keep
METRIC_PREFIX = "HW_"


def reply_metrics(costs: dict[str, float]) -> dict[str, float]:
    """The reply fields of ``costs`` under their Flower keys (missing ones as 0)."""
    return {FIELD[k].reply_key: float(costs.get(k, 0.0)) for k in REPLY_KEYS}


def from_reply(metrics) -> dict[str, float]:
    """The reply fields read back from a Flower ``MetricRecord`` (or dict), under their ledger names."""
    return {k: float(metrics.get(FIELD[k].reply_key, 0.0)) for k in REPLY_KEYS}


def describe() -> list[dict]:
    """The table as rows (name, unit, meaning, price), for reports and the README."""
    return [{"field": f.name, "unit": f.unit, "meaning": f.meaning, "price": f.price or ""} for f in FIELDS]
