"""Hybrid resistive-memory hardware models (torch only): what the chip is and does, never what it costs.

- :mod:`.device`: the RM cell (window, levels, faults) and the models it selects:
  :mod:`.noise_models` (programming and read noise), :mod:`.drift` (relaxation);
- :mod:`.programming`: the write-verify loop;
- :mod:`.crossbar`: tiling, weight/conductance mapping, DAC/ADC and the analogue MVM (the eager reference);
- :mod:`.fused`: the same read compiled into fused kernels (opt-in: ``set_fused(True)``);
- :mod:`.noise_source`: per-chip read-noise samplers (table, exact, counter) and programming-noise windows;
- :mod:`.array`: one layer's cells and periphery state (program, reprogram, drift, ADC calibration, read);
- :mod:`.digital`: the digital unit holding the LoRA branches;
- :mod:`.presets`: named, cited configurations.
Pricing lives in :mod:`avalanche_rm.costs` (unit prices in :mod:`avalanche_rm.costs.prices`).
"""
from .array import AnalogArray
from .config import HardwareConfig
from .crossbar import CrossbarConfig
from .device import RMDeviceConfig
from .digital import DigitalUnitConfig, fake_quantize
from .drift import LogGaussianDrift, NoDrift, PowerLawDrift
from .fused import fused_enabled, set_fused
from .noise_models import ProgrammingNoise, ReadNoise
from .presets import get_preset, list_presets
from .programming import ProgrammingReport, WriteVerifyResult, write_verify

__all__ = [
    "AnalogArray",
    "CrossbarConfig",
    "DigitalUnitConfig",
    "HardwareConfig",
    "LogGaussianDrift",
    "NoDrift",
    "PowerLawDrift",
    "ProgrammingNoise",
    "ProgrammingReport",
    "RMDeviceConfig",
    "ReadNoise",
    "WriteVerifyResult",
    "fake_quantize",
    "fused_enabled",
    "get_preset",
    "list_presets",
    "set_fused",
    "write_verify",
]
