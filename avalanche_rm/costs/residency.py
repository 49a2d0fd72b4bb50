"""What fits in the digital unit's SRAM buffer, and what lives off chip.

The buffer (``DigitalUnitConfig.sram_kib``) is filled by how often its bytes
are touched:
1. the INT8 copies of every stored adapter (and digital head rows), read by
   every sample;
2. the activations of the pass in flight, touched by every layer call. Inference
   runs one sample at a time (as weights are read once per sample), so it needs
   the largest layer call's activations of one sample; training keeps every
   layer's saved activations of the whole minibatch until the backward pass;
3. while an optimiser is attached, the training state of what it trains (FP32
   master copy, gradient buffer, moments), touched once per step: it gets what
   the last training pass's activations left free.
Bytes beyond the capacity live in DRAM and every access to them is priced at
``dram_energy_pj_per_byte`` (``sram_overflow="spill"``), or the access is
refused with an error naming the sizes (``sram_overflow="error"``).
"""
from __future__ import annotations

from ..hardware.digital import DigitalUnitConfig
from . import pricing


class SramOverflowError(ValueError):
    """The digital unit's working set does not fit in SRAM and the preset refuses to spill."""


def resident_fraction(needed_bytes: float, free_bytes: float) -> float:
    """Share of ``needed_bytes`` that fits in ``free_bytes`` of SRAM."""
    if needed_bytes <= 0:
        return 1.0
    return min(1.0, max(0.0, free_bytes) / needed_bytes)


class DigitalResidency:
    """Tracks the digital unit's working set; one per chip, shared by its layers."""

    def __init__(self, digital: DigitalUnitConfig) -> None:
        self.digital = digital
        self.weight_bytes = 0.0
        self.state_bytes = 0.0
        self.train_activation_bytes = 0.0   # buffer need of the latest training pass
        self._pass: dict | None = None

    @property
    def capacity(self) -> float:
        return float(self.digital.sram_bytes)

    def _check(self, what: str, needed: float) -> None:
        if self.digital.sram_overflow == "error" and needed > self.capacity:
            raise SramOverflowError(
                f"{what} need {needed / 1024:.1f} KiB of digital memory but the SRAM holds "
                f"{self.capacity / 1024:.1f} KiB (sram_kib={self.digital.sram_kib}); use a larger sram_kib or "
                "sram_overflow='spill' to price the excess at DRAM energy")

    def set_weights(self, nbytes: float) -> None:
        """INT8 adapter copies and digital head rows stored on the chip."""
        self._check("stored adapters", nbytes)
        self.weight_bytes = float(nbytes)

    def set_state(self, nbytes: float) -> None:
        """Training state (master copy, gradients, moments) of the attached optimisers."""
        self._check("stored adapters, the last training pass's activations and the training state",
                    self.weight_bytes + self.train_activation_bytes + nbytes)
        self.state_bytes = float(nbytes)

    def weight_fraction(self) -> float:
        return resident_fraction(self.weight_bytes, self.capacity)

    def state_fraction(self) -> float:
        return resident_fraction(self.state_bytes, self.capacity - self.weight_bytes - self.train_activation_bytes)

    # ------------------------------------------------------------ activations of one forward pass
    def begin_pass(self, training: bool) -> None:
        self._pass = {"training": training, "need": 0.0, "read": 0.0, "write": 0.0}

    def activations(self, read_bytes: float, write_bytes: float, buffer_bytes: float, n_samples: int = 1) -> None:
        """A layer call over ``n_samples`` moved ``read``/``write`` activation bytes and needed
        ``buffer_bytes`` of buffer for all its samples."""
        p = self._pass
        if p is None:
            return
        p["read"] += read_bytes
        p["write"] += write_bytes
        if p["training"]:
            p["need"] += buffer_bytes
        else:
            p["need"] = max(p["need"], buffer_bytes / max(n_samples, 1))
        self._check("stored adapters and the activations in flight", self.weight_bytes + p["need"])

    def end_pass(self) -> pricing.Charges:
        """Close the pass: the surcharge for activation traffic that did not fit in SRAM."""
        p, self._pass = self._pass, None
        if p is None:
            return {}
        if p["training"]:
            self.train_activation_bytes = p["need"]
        free = self.capacity - self.weight_bytes
        return pricing.spill_surcharge(self.digital, p["read"], p["write"], resident_fraction(p["need"], free))

    def footprint(self) -> dict[str, float]:
        """Bytes each class needs and the SRAM it has (for reports)."""
        a = self.train_activation_bytes
        return {"adapters_B": self.weight_bytes, "training_activations_B": a, "training_state_B": self.state_bytes,
                "total_B": self.weight_bytes + a + self.state_bytes, "sram_B": self.capacity}

    def __getstate__(self) -> dict:
        d = dict(self.__dict__)
        d["_pass"] = None
        return d
