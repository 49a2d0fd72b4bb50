"""The meter: turns what a chip counted into ledger charges.

Layers, models and jobs describe work (:class:`~avalanche_rm.costs.pricing.Work`:
counts of the field table, traffic by data class, busy times) and hand it to
their chip's :class:`Meter`; the meter prices it with the chip's unit prices
(:func:`~avalanche_rm.costs.prices.prices`), places its traffic on memory
levels (:mod:`avalanche_rm.costs.residency`) and adds the result to the ledger.
Inside a forward pass the work of each layer call is kept until the pass ends,
when the pass's activation need and accesses per byte are known, and then
charged with that placement (so a pass is priced as a whole, exactly as
:func:`avalanche_rm.costs.sensitivity.reprice` prices a recorded run).
Counts that depend on the data (driven rows, cell currents, non-zero inputs,
clipped conversions) arrive as tensors with per-unit coefficients and are
summed on their device.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..hardware.config import HardwareConfig
from ..hardware.crossbar import TileGrid
from ..hardware.programming import ProgrammingReport
from . import pricing
from .ledger import CostLedger
from .prices import Prices, prices
from .pricing import Counts, Work
from .residency import DigitalResidency


_SATURATION = {"adc_saturations": 1.0}


@dataclass
class LayerCall:
    """The event record of one call of a crossbar layer (or of a layer the all-digital reference runs).

    Shapes say what the call did; tensors count what depended on the data:
    ``driven`` rows and ``x2g`` (sum of code^2 G_row) of the analogue read,
    ``saturated`` conversions, non-zero inputs of the digital branches. ``grid``
    ``None``: no analogue read (a digital layer: ``dense`` for the reference).
    ``buffer_bytes``: the activation buffer the call needs (see
    :mod:`avalanche_rm.costs.residency`).
    """

    phase: str
    n_vectors: int
    n_samples: int
    in_features: int
    out_features: int
    buffer_bytes: float
    grid: TileGrid | None = None
    code_full_scale: float = 1.0
    driven: torch.Tensor | None = None
    x2g: torch.Tensor | None = None
    saturated: torch.Tensor | None = None
    lora_rank: int = 0
    lora_params: int = 0
    lora_training: bool = False
    nonzero: torch.Tensor | None = None
    rows: int = 0
    rows_training: bool = False
    bias: bool = False
    dense: bool = False
    dense_training: bool = False

    def key(self) -> tuple:
        return (self.in_features, self.out_features, self.grid, self.lora_rank, self.lora_params, self.lora_training,
                self.rows, self.rows_training, self.bias, self.dense, self.dense_training)


class Meter:
    """One chip's meter (shared by its layers, like its ledger and residency)."""

    def __init__(self, hardware: HardwareConfig, ledger: CostLedger, residency: DigitalResidency) -> None:
        self.ledger = ledger
        self.residency = residency
        self._pass: list[tuple[str, Work]] | None = None
        self.set_hardware(hardware)

    def set_hardware(self, hardware: HardwareConfig) -> None:
        """Price with ``hardware`` from now on (e.g. a buffer sized by a baseline's rule)."""
        self.hardware = hardware
        self.prices: Prices = prices(hardware)
        self.residency.set_hardware(hardware)
        self._coefficients: dict[tuple, dict[str, float]] = {}
        self.__dict__.pop("_works", None)

    # ------------------------------------------------------------ passes
    def begin_pass(self, training: bool) -> None:
        self.residency.begin_pass(training)
        self._pass = []

    def end_pass(self) -> None:
        """Charge the pass's deferred work with the placement its need and traffic give."""
        works, self._pass = self._pass, None
        traffic = {"weight": 0.0, "activation": 0.0}
        for _, w in works or ():
            c = w.counts
            traffic["weight"] += c.get("weight_read_bytes", 0.0) + c.get("weight_write_bytes", 0.0)
            traffic["activation"] += c.get("activation_read_bytes", 0.0) + c.get("activation_write_bytes", 0.0)
        placement = self.residency.end_pass(traffic)
        for phase, w in works or ():
            self.ledger.charge(phase, pricing.charge_work(w, placement, self.prices))

    # ------------------------------------------------------------ charging
    def charge(self, phase: str, work: Work, buffer_bytes: float | None = None) -> None:
        """Charge ``work`` to ``phase`` (deferred to the end of a pass in flight); ``buffer_bytes``: the
        activation buffer this work needs while it runs."""
        if not self.ledger.enabled:
            return
        if buffer_bytes is not None:
            self.residency.activations(buffer_bytes)
        if self._pass is not None:
            self._pass.append((phase, work))
        else:
            self.ledger.charge(phase, pricing.charge_work(work, self.residency.placement, self.prices))

    def charge_counts(self, phase: str, counts: Counts) -> None:
        """Charge counts that move no data and take no streamed time (e.g. a write-verify job's)."""
        if self.ledger.enabled:
            self.ledger.charge(phase, pricing.priced(counts, self.prices))

    def scaled(self, phase: str, value: torch.Tensor, coefficients: Counts) -> None:
        """Charge ``value x coefficients`` for a counted tensor (stays on its device; no data moved, no time)."""
        if not self.ledger.enabled:
            return
        key = tuple(sorted(coefficients.items()))
        coef = self._coefficients.get(key)
        if coef is None:
            coef = self._coefficients[key] = pricing.priced(dict(coefficients), self.prices)
        self.ledger.add_scaled(phase, value, coef)

    def quote(self, work: Work) -> dict[str, float]:
        """What ``work`` would cost now, without charging it (e.g. writing an adapter into the chip)."""
        return pricing.charge_work(work, self.residency.placement, self.prices)

    # ------------------------------------------------------------ layer calls
    def _unit_works(self, call: LayerCall) -> tuple[Work, Work]:
        """(per vector, per sample) work of a call's shape; cached (every charge is linear in both)."""
        key = call.key()
        cache = self.__dict__.setdefault("_works", {})
        got = cache.get(key)
        if got is None:
            got = cache[key] = (self._work(call, 1, 0), self._work(call, 0, 1))
        return got

    def _work(self, c: LayerCall, nv: int, ns: int) -> Work:
        hw, dig = self.hardware, self.hardware.digital
        w = Work()
        if c.grid is not None:
            w = w + pricing.analog_read(hw, c.grid, nv)
        if c.lora_rank:
            w = w + pricing.lora_branch(dig, nv, ns, c.lora_rank, c.in_features, c.out_features, c.lora_params,
                                        c.lora_training)
        if c.rows:
            w = w + pricing.digital_rows(dig, nv, ns, c.in_features, c.rows, c.rows_training)
        if c.dense:
            w = w + pricing.dense_layer(dig, nv, ns, c.in_features, c.out_features, c.bias, c.dense_training)
        elif c.bias:
            w = w + pricing.bias(dig, nv, ns, c.out_features)
        return w

    def layer_call(self, call: LayerCall) -> None:
        """Charge one layer call: the data-dependent counts now, the rest with the pass's placement."""
        if not self.ledger.enabled:
            return
        phase = call.phase
        if call.driven is not None:
            self.scaled(phase, call.driven, pricing.driven_row_coefficients(self.hardware, call.grid))
        if call.x2g is not None:
            self.scaled(phase, call.x2g, pricing.cell_read_coefficients(call.code_full_scale))
        if call.saturated is not None:
            self.scaled(phase, call.saturated, _SATURATION)
        if call.nonzero is not None:
            if call.lora_rank:
                self.scaled(phase, call.nonzero, pricing.lora_nonzero_coefficients(call.lora_rank, call.lora_training))
            if call.rows:
                self.scaled(phase, call.nonzero, pricing.lora_nonzero_coefficients(call.rows, call.rows_training))
            if call.dense:
                self.scaled(phase, call.nonzero, pricing.lora_nonzero_coefficients(call.out_features,
                                                                                   call.dense_training))
        per_vec, per_sample = self._unit_works(call)
        self.charge(phase, per_vec.times(call.n_vectors) + per_sample.times(call.n_samples), call.buffer_bytes)

    def transposed_read(self, phase: str, grid: TileGrid, n_vectors: int, g_mean_us: float) -> None:
        """The input gradient of a crossbar layer (training's backward)."""
        self.charge(phase, pricing.transposed_read(self.hardware, grid, n_vectors, g_mean_us))

    def weight_gradient(self, phase: str, grid: TileGrid, n_vectors: int, g_mean_us: float) -> None:
        """Full-weight training of a crossbar layer: dW on the digital shadow plus the transposed read."""
        self.charge(phase, pricing.weight_gradient(self.hardware, grid, n_vectors, g_mean_us))

    def optimizer_step(self, phase: str, kind: str, n_params: float, quantised_params: float = 0.0) -> None:
        self.charge(phase, pricing.optimizer_step(self.hardware.digital, kind, n_params, quantised_params))

    def network_work(self, phase: str, ops: dict[str, float], macs: float, weight_values: float,
                     lookup_values: float, n_samples: int, training: bool) -> None:
        """Digital work outside the crossbar layers, from a per-sample operation profile."""
        self.charge(phase, pricing.network_work(self.hardware.digital, ops, macs, weight_values, lookup_values,
                                                n_samples, training))

    def activation_traffic(self, phase: str, read_bytes: float = 0.0, write_bytes: float = 0.0) -> None:
        """Activations moved outside a layer (e.g. an unlearning objective's teacher outputs)."""
        self.charge(phase, pricing.activation_traffic(read_bytes, write_bytes))

    # ------------------------------------------------------------ events with their own rules
    def level_stream(self, phase: str, cells: float, bytes_per_cell: float = pricing.LEVEL_BYTES_PER_CELL) -> None:
        """Target levels arriving from off chip for a programming job (see :func:`~avalanche_rm.costs.pricing.level_stream`)."""
        self.charge(phase, pricing.level_stream(cells, bytes_per_cell))

    def reprogram_plan(self, phase: str, n_weights: float, changed_cells: float, from_fp32: bool) -> None:
        """What decides which cells a reprogramming job writes (see :func:`~avalanche_rm.costs.pricing.reprogram_plan`)."""
        self.charge(phase, pricing.reprogram_plan(n_weights, changed_cells, from_fp32))

    def programming(self, report: ProgrammingReport, phase: str, layer: str) -> ProgrammingReport:
        """Price a write-verify job's report (in place), charge it and log it."""
        pricing.price_programming(self.hardware, report)
        self.charge_counts(phase, pricing.programming_counts(self.hardware, report))
        self.ledger.log_event("program", phase, layer=layer, cells=report.cells, pulses=report.pulses,
                              failed_cells=report.failed_cells, energy_pj=report.energy_pj)
        return report

    def __getstate__(self) -> dict:
        d = dict(self.__dict__)
        d["_pass"] = None
        d["_coefficients"] = {}
        d.pop("_works", None)
        return d
