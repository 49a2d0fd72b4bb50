"""Avalanche plugins that keep the hybrid chip's ledger and analogue state in step with training."""
from __future__ import annotations

from avalanche.core import SupervisedPlugin

from ..nn.model import HybridModel, optimizer_state_bytes


class HardwareCostPlugin(SupervisedPlugin):
    """Charges each optimiser step of the adapters to ``strategy.model.ledger`` (SRAM writes).

    Add it to any Avalanche strategy that trains a :class:`HybridModel`; the
    hybrid strategies add it themselves.
    """

    def after_update(self, strategy, **kwargs):
        model = strategy.model
        if not isinstance(model, HybridModel):
            return
        ids = {id(p) for p in model.adapter_parameters()}
        n = sum(p.numel() for g in strategy.optimizer.param_groups for p in g["params"]
                if id(p) in ids and p.grad is not None)
        if n:
            model.record_update(n, optimizer_state_bytes(strategy.optimizer))


class WriteBackPlugin(SupervisedPlugin):
    """Full-weight baselines: after every optimiser step, write the updated weights into the cells.

    Each write is a write-verify job from the cells' current state, charged to
    the ``train`` phase (pulses, verify reads, energy, latency).
    """

    def __init__(self, every_n_steps: int = 1) -> None:
        super().__init__()
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps!r}")
        self.every_n_steps = every_n_steps
        self._steps = 0

    def after_update(self, strategy, **kwargs):
        self._steps += 1
        if self._steps % self.every_n_steps:
            return
        model = strategy.model
        with model.ledger.phase("train"):
            model.write_back_shadows()
        n = sum(p.numel() for g in strategy.optimizer.param_groups for p in g["params"] if p.grad is not None)
        model.record_update(n, optimizer_state_bytes(strategy.optimizer))
