"""Which memory level holds each class of digital data: placement by accesses per byte.

Three data classes share the digital unit's memory:
- ``weight``: the stationary digital weights a pass reads (the active adapters'
  INT8 factors, digital head rows, the biases pre-summed per layer; for the
  all-digital reference every weight). Adapters that are stored but not active
  are read by no pass and take no buffer;
- ``activation``: the activations in flight. Inference runs one sample at a time
  and a layer streams its vectors, so a layer call needs one vector in and out
  (a token or time step; a convolution its input rows under the kernel and one
  output row); training keeps every layer's inputs and outputs of the minibatch
  for the backward pass;
- ``state``: the training state of the attached optimisers (FP32 master copy,
  gradient, moments).

Levels, nearest first: the PE array's local buffers (the activation buffers and
register files beside the PEs: a weight that fits there stays in the PE array
across samples instead of being fetched from the SRAM buffer for every
sample), the SRAM buffer, DRAM. Each level is filled, nearest first, in order
of accesses per byte in the last pass (ties: activations, weights, state): in
inference the activations in flight (written and read every token) come before
the weights (read once per sample), in training the weights (read once per
sample of the minibatch) before the saved activations (about three accesses)
and the state (read and written once per step). What does not fit lives in
DRAM and every access to it is priced so (``sram_overflow="spill"``), or is
refused with an error naming the sizes (``sram_overflow="error"``).
:func:`place` is the rule; the meter applies it when a pass ends, and the
sensitivity table applies it to a recorded run.
"""
from __future__ import annotations

from ..hardware.config import HardwareConfig
from .prices import local_buffer_bytes

Placement = dict[str, tuple[float, float, float]]
#: tie order when two classes are touched equally often per byte
_TIE = {"activation": 0, "weight": 1, "state": 2}
#: accesses per byte of training state in one step (read once, written once)
STATE_ACCESSES = 2.0


class SramOverflowError(ValueError):
    """The digital unit's working set does not fit in SRAM and the preset refuses to spill."""


def resident_fraction(needed_bytes: float, free_bytes: float) -> float:
    """Share of ``needed_bytes`` that fits in ``free_bytes``."""
    if needed_bytes <= 0:
        return 1.0
    return min(1.0, max(0.0, free_bytes) / needed_bytes)


def place(local_bytes: float, sram_bytes: float, needs: dict[str, float], density: dict[str, float]) -> Placement:
    """``(local, sram, dram)`` shares of each data class: the levels are filled nearest first, the classes in
    order of accesses per byte (see the module docstring)."""
    order = sorted(("activation", "weight", "state"), key=lambda c: (-density.get(c, 0.0), _TIE[c]))
    rest = {c: max(needs.get(c, 0.0), 0.0) for c in order}
    shares: dict[str, list[float]] = {c: [0.0, 0.0, 0.0] for c in order}
    for level, capacity in enumerate((local_bytes, sram_bytes)):
        free = max(float(capacity), 0.0)
        for c in order:
            taken = min(rest[c], free)
            free -= taken
            rest[c] -= taken
            if needs.get(c, 0.0) > 0:
                shares[c][level] = taken / needs[c]
    out: Placement = {}
    for c in order:
        if needs.get(c, 0.0) <= 0:  # traffic of a class nothing declared (e.g. a layer used on its own): SRAM
            out[c] = (0.0, 1.0, 0.0)
        else:
            loc, s = shares[c][0], shares[c][1]
            d = 1.0 - loc - s
            out[c] = (loc, s, d if d > 1e-12 else 0.0)
    return out


class DigitalResidency:
    """The digital unit's working set and its placement; one per chip, shared by its layers."""

    def __init__(self, hardware: HardwareConfig) -> None:
        self.set_hardware(hardware)
        self.weight_bytes = 0.0
        self.state_bytes = 0.0
        self.activation_bytes = 0.0          # buffer need of the last pass
        self.train_activation_bytes = 0.0    # buffer need of the last training pass
        self.density: dict[str, float] = {"activation": 0.0, "weight": 0.0, "state": STATE_ACCESSES}
        self._pass: dict | None = None
        self.placement: Placement = {}
        self._place()

    def set_hardware(self, hardware: HardwareConfig) -> None:
        self.hardware = hardware
        self.digital = hardware.digital
        self.local_capacity = local_buffer_bytes(hardware)

    @property
    def capacity(self) -> float:
        return float(self.digital.sram_bytes)

    def needs(self) -> dict[str, float]:
        return {"weight": self.weight_bytes, "activation": self.activation_bytes, "state": self.state_bytes}

    def _check(self, what: str, needed: float) -> None:
        cap = self.capacity + self.local_capacity
        if self.digital.sram_overflow == "error" and needed > cap:
            raise SramOverflowError(
                f"{what} need {needed / 1024:.1f} KiB of digital memory but the SRAM and local buffers hold "
                f"{cap / 1024:.1f} KiB (sram_kib={self.digital.sram_kib}); use a larger sram_kib or "
                "sram_overflow='spill' to price the excess at DRAM energy")

    def _place(self) -> None:
        self.placement = place(self.local_capacity, self.capacity, self.needs(), self.density)

    def set_weights(self, nbytes: float) -> None:
        """Stationary digital weights the chip's passes read (active adapters, head rows, biases)."""
        self._check("the weights read by a pass", nbytes)
        if nbytes != self.weight_bytes:
            self.weight_bytes = float(nbytes)
            self._place()

    def set_state(self, nbytes: float) -> None:
        """Training state (master copy, gradients, moments) of the attached optimisers."""
        self._check("the weights, the last training pass's activations and the training state",
                    self.weight_bytes + self.train_activation_bytes + nbytes)
        if nbytes != self.state_bytes:
            self.state_bytes = float(nbytes)
            self._place()

    # ------------------------------------------------------------ one forward pass
    def begin_pass(self, training: bool) -> None:
        self._pass = {"training": training, "need": 0.0}

    @property
    def in_pass(self) -> bool:
        return self._pass is not None

    def activations(self, buffer_bytes: float) -> None:
        """A layer call needs ``buffer_bytes`` of activation buffer (see the module docstring)."""
        p = self._pass
        if p is None:
            return
        if p["training"]:
            p["need"] += buffer_bytes
        else:
            p["need"] = max(p["need"], buffer_bytes)
        self._check("the weights and the activations in flight", self.weight_bytes + p["need"])

    def end_pass(self, traffic: dict[str, float]) -> Placement:
        """Close the pass: its activation need and, from its traffic by class, the accesses per byte; re-place."""
        p, self._pass = self._pass, None
        if p is None:
            return self.placement
        self.activation_bytes = p["need"]
        if p["training"]:
            self.train_activation_bytes = p["need"]
        self.density["state"] = STATE_ACCESSES if p["training"] else 0.0  # an inference pass never touches it
        for cls in ("weight", "activation"):
            need = self.weight_bytes if cls == "weight" else self.activation_bytes
            self.density[cls] = traffic.get(cls, 0.0) / need if need > 0 else 0.0
        self._place()
        return self.placement

    def footprint(self) -> dict[str, float]:
        """Bytes each class needs, the capacities, and the placement (for reports and re-pricing)."""
        a = self.train_activation_bytes
        return {"weights_B": self.weight_bytes, "adapters_B": self.weight_bytes, "activations_B": self.activation_bytes,
                "training_activations_B": a, "training_state_B": self.state_bytes,
                "total_B": self.weight_bytes + max(a, self.activation_bytes) + self.state_bytes,
                "sram_B": self.capacity, "local_B": self.local_capacity}

    def snapshot(self) -> dict:
        """What :func:`place` needs to re-place a recorded run under other capacities."""
        return {"needs": self.needs(), "density": dict(self.density)}

    def __getstate__(self) -> dict:
        d = dict(self.__dict__)
        d["_pass"] = None
        return d
