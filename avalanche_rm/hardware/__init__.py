"""Hybrid resistive-memory hardware models (torch/numpy only).

- :mod:`.device`: the RM cell (window, levels, noise, drift, faults, pulse energy);
- :mod:`.programming`: write-verify loop;
- :mod:`.crossbar`: tiling, weight/conductance mapping, analogue MVM and its energy;
- :mod:`.digital`: the digital unit holding LoRA branches;
- :mod:`.presets`: named, cited configurations.
"""
from .config import HardwareConfig
from .crossbar import CrossbarConfig
from .device import RMDeviceConfig
from .digital import DigitalUnitConfig, fake_quantize
from .presets import get_preset, list_presets
from .programming import ProgrammingReport, WriteVerifyResult, write_verify

__all__ = [
    "CrossbarConfig",
    "DigitalUnitConfig",
    "HardwareConfig",
    "ProgrammingReport",
    "RMDeviceConfig",
    "WriteVerifyResult",
    "fake_quantize",
    "get_preset",
    "list_presets",
    "write_verify",
]
