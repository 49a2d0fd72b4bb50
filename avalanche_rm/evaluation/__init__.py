"""Avalanche ``PluginMetric``s and loggers for the hardware bill (energy, latency, pulses, cells, ...)."""
from .hardware_metrics import HardwareCostMetric, TrainableParamsMetric, hardware_cost_metrics
from .loggers import HardwareCSVLogger
from .unlearning_metrics import UnlearningMetrics, accuracy_of, mia, predict_proba, unlearning_report

__all__ = ["UnlearningMetrics", "accuracy_of", "mia", "predict_proba", "unlearning_report", "HardwareCSVLogger", "HardwareCostMetric", "TrainableParamsMetric", "hardware_cost_metrics"]
