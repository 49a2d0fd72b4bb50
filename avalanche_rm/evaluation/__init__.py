"""Avalanche ``PluginMetric``s and loggers for the hardware bill and for unlearning verification."""
from .hardware_metrics import HardwareCostMetric, TrainableParamsMetric, hardware_cost_metrics
from .loggers import HardwareCSVLogger
from .unlearning_metrics import UnlearningMetrics

__all__ = ["HardwareCSVLogger", "HardwareCostMetric", "TrainableParamsMetric", "UnlearningMetrics",
           "hardware_cost_metrics"]
