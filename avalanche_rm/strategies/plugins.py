"""Avalanche plugins that keep the chip's ledger and analogue state in step with training."""
from __future__ import annotations

from avalanche.core import SupervisedPlugin

from ..nn.chip import ChipModel
from ..validation import check_int


class HardwareCostPlugin(SupervisedPlugin):
    """Charges every optimiser step of a chip model to its ledger (master copy, moments, INT8 copies).

    Add it to any Avalanche strategy that trains a :class:`HybridModel` (the
    hybrid strategies add it themselves). It attaches the strategy's optimiser
    with :meth:`~avalanche_rm.nn.chip.ChipModel.attach_optimizer`, which is
    idempotent: an optimiser attached by hand as well is charged once per step.
    """

    def _attach(self, strategy) -> None:
        if isinstance(strategy.model, ChipModel) and strategy.optimizer is not None:
            strategy.model.attach_optimizer(strategy.optimizer)

    def before_training_exp(self, strategy, **kwargs):
        self._attach(strategy)

    def before_training_epoch(self, strategy, **kwargs):
        self._attach(strategy)


class WriteBackPlugin(SupervisedPlugin):
    """Full-weight baselines: after every ``every_n_steps`` optimiser steps, write the updated weights into the cells.

    Each write is a write-verify job from the cells' current state, charged to
    the ``train`` phase (pulses, verify reads, energy, latency).
    """

    def __init__(self, every_n_steps: int = 1) -> None:
        super().__init__()
        check_int(every_n_steps, "every_n_steps", 1)
        self.every_n_steps = every_n_steps
        self._steps = 0

    def after_update(self, strategy, **kwargs):
        self._steps += 1
        if self._steps % self.every_n_steps:
            return
        model = strategy.model
        with model.ledger.phase(model.ledger.current_phase("train")):
            model.write_back_shadows()


class SeenClassesMask(SupervisedPlugin):
    """Masks the output units of classes the strategy has not trained on yet (Avalanche's
    ``IncrementalClassifier(masking=True)`` rule, for a chip model whose head is frozen).

    Without it, a frozen base's confident logits for its own classes make the
    loss of new classes start very high, and LoRA branches on feature layers
    learn to silence the features (dead ReLUs), collapsing the network onto one
    output (see :meth:`~avalanche_rm.nn.model.HybridModel.set_output_classes`).

    The mask starts from the classes the analogue base was trained on
    (``model.base_classes``, set by ``pretrain_and_program``), so a public
    base keeps its own classes while the adapters learn new ones.
    """

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[int] = set()

    def before_training_exp(self, strategy, **kwargs):
        classes = getattr(strategy.experience, "classes_in_this_experience", None)
        if classes is None or not hasattr(strategy.model, "set_output_classes"):
            return
        self.seen |= set(getattr(strategy.model, "base_classes", ())) | {int(c) for c in classes}
        strategy.model.set_output_classes(self.seen)

    def reset(self, model, learned_classes) -> None:
        """After a forget request: the mask a strategy that never learned the forgotten data would have
        (the base's classes and ``learned_classes``, those of the data that remain)."""
        self.seen = set(getattr(model, "base_classes", ())) | {int(c) for c in learned_classes}
        if self.seen and hasattr(model, "set_output_classes"):
            model.set_output_classes(self.seen)
