"""Avalanche ``PluginMetric``s and loggers for the hardware bill (energy, latency, pulses, cells, ...)."""
from .hardware_metrics import HardwareCostMetric, TrainableParamsMetric, hardware_cost_metrics
from .loggers import HardwareCSVLogger

__all__ = ["HardwareCSVLogger", "HardwareCostMetric", "TrainableParamsMetric", "hardware_cost_metrics"]
