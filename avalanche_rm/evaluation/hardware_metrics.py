"""Hardware cost as Avalanche metrics, so every logger shows it next to accuracy.

Values are ledger deltas over the reported unit (one training experience, one
evaluated experience, one evaluated stream), read from ``strategy.model.ledger``.
Names follow Avalanche: ``HW_energy_pJ/train_phase/train_stream/Task000/Exp001``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from avalanche.evaluation import PluginMetric
from avalanche.evaluation.metric_results import MetricValue
from avalanche.evaluation.metric_utils import get_metric_name

from ..costs.fields import FIELDS

if TYPE_CHECKING:
    from avalanche.training.templates import SupervisedTemplate

#: switch -> (metric name, ledger quantity), from the field table (:mod:`avalanche_rm.costs.fields`)
LABELS = {f.metric[0]: (f.metric[1], f.name) for f in FIELDS if f.metric}
#: switches on by default
DEFAULT_ON = frozenset(f.metric[0] for f in FIELDS if f.metric and f.metric_on)


def _ledger(strategy):
    return getattr(strategy.model, "ledger", None)


class HardwareCostMetric(PluginMetric[float]):
    """One ledger quantity per training experience and/or per evaluated experience and stream."""

    def __init__(self, label: str, quantity: str, experience: bool = True, stream: bool = True) -> None:
        super().__init__()
        self.label, self.quantity = label, quantity
        self.per_experience, self.per_stream = experience, stream
        self._start: float | None = None
        self._stream_start: float | None = None
        self._value: float | None = None

    def __str__(self) -> str:
        return self.label

    def _now(self, strategy) -> float | None:
        ledger = _ledger(strategy)
        return None if ledger is None else ledger.total()[self.quantity]

    def result(self) -> float | None:
        return self._value

    def reset(self) -> None:
        self._value = None

    def _emit(self, strategy, value: float, add_experience: bool, add_task) -> list[MetricValue]:
        self._value = value
        name = get_metric_name(self, strategy, add_experience=add_experience, add_task=add_task)
        return [MetricValue(self, name, value, strategy.clock.train_iterations)]

    def _since(self, strategy, start: float | None, wanted: bool, per_experience: bool):
        now = self._now(strategy)
        if now is None or start is None or not wanted:
            return None
        return self._emit(strategy, now - start, per_experience, per_experience)

    # training: one value per experience
    def before_training_exp(self, strategy: "SupervisedTemplate"):
        self._start = self._now(strategy)

    def after_training_exp(self, strategy: "SupervisedTemplate"):
        return self._since(strategy, self._start, self.per_experience, True)

    # evaluation: per experience and per stream
    def before_eval(self, strategy: "SupervisedTemplate"):
        self._stream_start = self._now(strategy)

    def before_eval_exp(self, strategy: "SupervisedTemplate"):
        self._start = self._now(strategy)

    def after_eval_exp(self, strategy: "SupervisedTemplate"):
        return self._since(strategy, self._start, self.per_experience, True)

    def after_eval(self, strategy: "SupervisedTemplate"):
        return self._since(strategy, self._stream_start, self.per_stream, False)


class TrainableParamsMetric(PluginMetric[int]):
    """Parameters the optimiser actually updates in each training experience."""

    def __init__(self) -> None:
        super().__init__()
        self._value: int | None = None

    def __str__(self) -> str:
        return "HW_trainable_params"

    def result(self) -> int | None:
        return self._value

    def reset(self) -> None:
        self._value = None

    def after_training_exp(self, strategy: "SupervisedTemplate"):
        opt = strategy.optimizer
        self._value = sum(p.numel() for g in opt.param_groups for p in g["params"] if p.requires_grad)
        name = get_metric_name(self, strategy, add_experience=True, add_task=True)
        return [MetricValue(self, name, self._value, strategy.clock.train_iterations)]


def hardware_cost_metrics(*, trainable_params: bool = True, experience: bool = True, stream: bool = True,
                          **switches: bool) -> list[PluginMetric]:
    """Metrics for ``EvaluationPlugin(*hardware_cost_metrics(...), loggers=...)``.

    ``switches``: one per metric of the field table (``energy``, ``latency``, ``pulses``, ``cells`` on by
    default; ``analog_macs``, ``digital_macs``, ``sram`` off), e.g. ``hardware_cost_metrics(sram=True)``.
    """
    unknown = sorted(set(switches) - set(LABELS))
    if unknown:
        raise ValueError(f"unknown hardware metric switch(es) {unknown}; choose from {sorted(LABELS)}")
    wanted = {k: bool(switches.get(k, k in DEFAULT_ON)) for k in LABELS}
    out: list[PluginMetric] = [HardwareCostMetric(*LABELS[k], experience=experience, stream=stream)
                               for k, on in wanted.items() if on]
    if trainable_params:
        out.append(TrainableParamsMetric())
    return out
