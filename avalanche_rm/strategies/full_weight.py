"""Full-weight baselines priced on the same chip: every weight update is a write-verify job."""
from __future__ import annotations

import copy

import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.templates import SupervisedTemplate
from torch import nn
from torch.nn import CrossEntropyLoss

from ..nn.model import HybridModel
from ..nn.reference import DigitalReferenceModel
from .hybrid_lora import _default_evaluator
from .plugins import HardwareCostPlugin, SeenClassesMask, WriteBackPlugin


def _check_model(model) -> None:
    if not isinstance(model, HybridModel):
        raise ValueError(f"model must be a HybridModel (see convert_to_hybrid), got {type(model).__name__}")
    if not model.programmed:
        raise ValueError("model must be programmed first; call model.program(seed)")
    if model.adapter_names:
        raise ValueError(f"full-weight baselines train the analogue weights; remove adapters {model.adapter_names}")


class AnalogFullFinetune(SupervisedTemplate):
    """Train every analogue weight; after each optimiser step the new weights are written back.

    The forward pass runs on the programmed (noisy, quantised) cells; the
    gradients update a digital shadow copy (mixed-precision training), which
    :class:`WriteBackPlugin` programs into the array after every
    ``write_every`` steps. Updates smaller than the programming resolution
    never reach the cells, as on a real chip. ``mask_unseen_classes`` as in
    :class:`~avalanche_rm.strategies.HybridLoRA`.
    """

    def __init__(self, *, model: HybridModel, optimizer: torch.optim.Optimizer | None = None, lr: float = 1e-2,
                 write_every: int = 1, criterion=None, train_mb_size: int = 32, train_epochs: int = 1,
                 eval_mb_size: int = 256, device="cpu", plugins=None, evaluator=None, eval_every: int = -1,
                 mask_unseen_classes: bool = True, **base_kwargs) -> None:
        _check_model(model)
        shadows = [layer.enable_weight_training() for layer in model.hybrid_layers()]
        if optimizer is None:
            optimizer = torch.optim.Adam(shadows, lr=lr)
        plugins = list(plugins or []) + [HardwareCostPlugin(), WriteBackPlugin(write_every)]
        if mask_unseen_classes and not any(isinstance(p, SeenClassesMask) for p in plugins):
            plugins.append(SeenClassesMask())  # the same output rule as HybridLoRA, so both designs compare fairly
        super().__init__(model=model, optimizer=optimizer, criterion=criterion or CrossEntropyLoss(),
                         train_mb_size=train_mb_size, train_epochs=train_epochs, eval_mb_size=eval_mb_size,
                         device=device, plugins=plugins,
                         evaluator=evaluator if evaluator is not None else _default_evaluator,
                         eval_every=eval_every, **base_kwargs)


def reprogram_from_software(hybrid: HybridModel, software: nn.Module, phase: str) -> None:
    """Write a software model's Linear/Conv2d weights into the matching analogue cells (charged to ``phase``);
    biases are digital and are copied."""
    if isinstance(software, DigitalReferenceModel):
        software = software.module
    sw_layers = {n: m for n, m in software.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
    with torch.no_grad(), hybrid.ledger.phase(phase):
        for name, layer in hybrid.named_hybrid_layers():
            src = sw_layers[name]
            layer.reprogram_weight(src.weight.detach().reshape(layer.out_features, -1).to(layer.array.g_us.device))
            if layer.bias is not None and src.bias is not None:
                layer.bias.copy_(src.bias.detach())


class _ReprogramAfterExperience(SupervisedPlugin):
    """Writes the retrained software weights into every analogue cell at the end of each experience."""

    def after_training_exp(self, strategy, **kwargs):
        reprogram_from_software(strategy.hybrid, strategy.model, "train")


class RetrainAndReprogram(SupervisedTemplate):
    """Retrain a fresh full model on all data seen so far, then reprogram the whole array.

    Training runs in the chip's digital unit on a copy of the architecture
    (re-initialised every experience from ``init_seed``), a
    :class:`~avalanche_rm.nn.reference.DigitalReferenceModel` charged to the
    chip's ledger by the same rules as the hybrid's digital work. At the end of
    each experience every cell is write-verified to the new weights. Evaluation
    runs on the chip.
    """

    def __init__(self, *, model: HybridModel, software_model: nn.Module, lr: float = 1e-2, init_seed: int = 0,
                 criterion=None, train_mb_size: int = 32, train_epochs: int = 1, eval_mb_size: int = 256,
                 device="cpu", plugins=None, evaluator=None, eval_every: int = -1, **base_kwargs) -> None:
        _check_model(model)
        self.hybrid = model
        self.software_template = copy.deepcopy(software_model)
        self.init_seed, self.lr = init_seed, lr
        self._seen: list = []
        sw = DigitalReferenceModel(self._fresh_software(), model.hardware)
        sw.ledger = model.ledger  # one chip: the digital unit's work lands on the chip's bill
        plugins = list(plugins or []) + [HardwareCostPlugin(), _ReprogramAfterExperience()]
        super().__init__(model=sw, optimizer=torch.optim.Adam(sw.parameters(), lr=lr),
                         criterion=criterion or CrossEntropyLoss(), train_mb_size=train_mb_size,
                         train_epochs=train_epochs, eval_mb_size=eval_mb_size, device=device, plugins=plugins,
                         evaluator=evaluator if evaluator is not None else _default_evaluator,
                         eval_every=eval_every, **base_kwargs)

    def _fresh_software(self) -> nn.Module:
        sw = copy.deepcopy(self.software_template)
        gen = torch.Generator().manual_seed(self.init_seed)
        for m in sw.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                bound = 1.0 / m.weight[0].numel() ** 0.5
                with torch.no_grad():
                    m.weight.uniform_(-bound, bound, generator=gen)
                    if m.bias is not None:
                        m.bias.uniform_(-bound, bound, generator=gen)
        return sw

    def train_dataset_adaptation(self, **kwargs):
        from avalanche.benchmarks.utils import concat_datasets

        self._seen.append(self.experience.dataset)
        self.adapted_dataset = concat_datasets(self._seen).train()

    def model_adaptation(self, model=None):
        if self.is_training and model is None:
            # retraining from scratch: a fresh copy of the architecture every experience
            fresh = self._fresh_software().to(self.device)
            self.model.module.load_state_dict(fresh.state_dict())
        return super().model_adaptation(model)

    def make_optimizer(self, **kwargs):
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.lr)

    def eval(self, exp_list, **kwargs):
        sw = self.model
        self.model = self.hybrid
        try:
            return super().eval(exp_list, **kwargs)
        finally:
            self.model = sw
