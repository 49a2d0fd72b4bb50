"""Approximate-unlearning objectives, registered by name.

An objective turns a batch's model outputs, targets and forget mask into a loss.
The Avalanche strategies, the reference scenarios and the Flower client all look
objectives up here, so a new method is one registration::

    @register_objective("my_method")
    class MyMethod(Objective):
        def loss(self, out, y, forget, ctx): ...

Registered: ``neg_ce`` (class-weighted cross-entropy, the reference face task), ``finetune``
(the retained data alone, the reference face baseline),
``random_label`` (random relabelling; the reference speaker task uses
``pool="retained", loss="mse"``), ``neggrad_plus`` (NegGrad+), ``scrub`` (SCRUB,
Kurmanji et al. 2023) and ``random_target`` (the reference diffusion task's
``CG``: forgotten samples regress to uniform noise).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

_OBJECTIVES: dict[str, type["Objective"]] = {}


@dataclass
class ObjectiveContext:
    """What an objective may use besides the batch."""

    n_classes: int
    generator: torch.Generator
    step: int = 0
    retained_classes: torch.Tensor | None = None
    teacher_out: torch.Tensor | None = None
    #: set once the stopping rule has been met: the run is in its ``settle_epochs``
    settling: bool = False


class Objective:
    """Base class: ``loss(out, y, forget, ctx)`` with ``forget`` a bool mask of forgotten samples."""

    name = "objective"
    #: the objective needs the outputs of the model before unlearning (``ctx.teacher_out``)
    needs_teacher = False

    @property
    def settle_epochs(self) -> int:
        """Epochs run after the stopping rule is met (``ctx.settling`` set); 0: stop at once."""
        return int(self.options.get("settle_epochs", 0))

    def __init__(self, **options) -> None:
        unknown = set(options) - set(self.defaults())
        if unknown:
            raise ValueError(f"objective {self.name!r} has no option(s) {sorted(unknown)}; "
                             f"options are {sorted(self.defaults())}")
        self.options = {**self.defaults(), **options}

    @classmethod
    def defaults(cls) -> dict:
        return {}

    def loss(self, out: torch.Tensor, y: torch.Tensor, forget: torch.Tensor, ctx: ObjectiveContext) -> torch.Tensor:
        raise NotImplementedError


def register_objective(name: str) -> Callable[[type[Objective]], type[Objective]]:
    """Class decorator: make an :class:`Objective` available as ``name``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"objective name must be a non-empty string, got {name!r}")

    def deco(cls: type[Objective]) -> type[Objective]:
        if name in _OBJECTIVES:
            raise ValueError(f"objective {name!r} is already registered")
        cls.name = name
        _OBJECTIVES[name] = cls
        return cls

    return deco


def objective_names() -> list[str]:
    return sorted(_OBJECTIVES)


def get_objective(name: str, **options) -> Objective:
    """A configured objective by name (``options`` override its defaults)."""
    if name not in _OBJECTIVES:
        raise ValueError(f"unknown unlearning method {name!r}; registered: {objective_names()}")
    return _OBJECTIVES[name](**options)


def _zero(out: torch.Tensor) -> torch.Tensor:
    return out.sum() * 0.0


def weighted_ce(out: torch.Tensor, y: torch.Tensor, forget: torch.Tensor, forget_weight: float) -> torch.Tensor:
    """Mean cross-entropy with weight ``forget_weight`` (negative: ascent) on forgotten samples, 1 elsewhere."""
    w = torch.where(forget, torch.full_like(y, forget_weight, dtype=out.dtype), torch.ones_like(y, dtype=out.dtype))
    return (F.cross_entropy(out, y, reduction="none") * w).mean()


@register_objective("neg_ce")
class NegCE(Objective):
    """Class-weighted cross-entropy: descent on retained samples, weight ``forget_weight`` on forgotten ones
    (the reference face task's ``train_with_gradient_ascent``, weight -0.5)."""

    @classmethod
    def defaults(cls) -> dict:
        return {"forget_weight": -0.5}

    def loss(self, out, y, forget, ctx):
        return weighted_ce(out, y, forget, self.options["forget_weight"])


@register_objective("finetune")
class FineTune(Objective):
    """Fine-tune on the retained data alone (the "FT" baseline of the SalUn / SCRUB tables): forgotten samples
    contribute nothing, and the model drifts away from them as it keeps training."""

    def loss(self, out, y, forget, ctx):
        keep = ~forget
        return F.cross_entropy(out[keep], y[keep]) if bool(keep.any()) else _zero(out)


@register_objective("random_label")
class RandomLabel(Objective):
    """Forgotten samples get a random label, redrawn every batch, and the model fits the relabelled batch.

    ``pool="other"``: any class but the sample's own (SalUn's RL); ``"retained"``:
    one of the classes that remain (the reference speaker task). ``loss`` is
    ``"ce"`` or ``"mse"`` to one-hot outputs (the reference speaker network).
    """

    @classmethod
    def defaults(cls) -> dict:
        return {"pool": "other", "loss": "ce"}

    def __init__(self, **options) -> None:
        super().__init__(**options)
        if self.options["pool"] not in ("other", "retained"):
            raise ValueError(f"random_label pool must be 'other' or 'retained', got {self.options['pool']!r}")
        if self.options["loss"] not in ("ce", "mse"):
            raise ValueError(f"random_label loss must be 'ce' or 'mse', got {self.options['loss']!r}")

    def loss(self, out, y, forget, ctx):
        if self.options["pool"] == "retained" and ctx.retained_classes is not None and len(ctx.retained_classes):
            pool = ctx.retained_classes
            draw = pool[torch.randint(len(pool), y.shape, generator=ctx.generator)].to(y.device)
        else:
            shift = torch.randint(1, max(ctx.n_classes, 2), y.shape, generator=ctx.generator).to(y.device)
            draw = (y + shift) % ctx.n_classes
        target = torch.where(forget, draw, y)
        if self.options["loss"] == "mse":
            return F.mse_loss(out, F.one_hot(target, out.shape[-1]).to(out.dtype))
        return F.cross_entropy(out, target)


@register_objective("neggrad_plus")
class NegGradPlus(Objective):
    """NegGrad+ (Kurmanji et al. 2023): ``alpha * CE(retain) - (1 - alpha) * CE(forget)``."""

    @classmethod
    def defaults(cls) -> dict:
        return {"alpha": 0.9}

    def loss(self, out, y, forget, ctx):
        ce = F.cross_entropy(out, y, reduction="none")
        keep = ~forget
        lr = ce[keep].mean() if bool(keep.any()) else _zero(out)
        lf = ce[forget].mean() if bool(forget.any()) else _zero(out)
        a = self.options["alpha"]
        return a * lr - (1 - a) * lf


@register_objective("scrub")
class Scrub(Objective):
    """SCRUB (Kurmanji et al., NeurIPS 2023): steps alternate between a max-step that pushes the student
    away from the teacher (the model before unlearning) on forgotten samples and a min-step that keeps it
    close on retained ones (KL to the teacher at temperature ``T`` plus ``gamma`` CE). As in the paper's
    schedule (max-steps only in the first epochs), once the forget set is forgotten the run continues
    with ``settle_epochs`` of min-steps alone, which repair what the max-steps cost the retained data (checked
    every epoch: if the repair brings the forget set back, the max-steps resume)."""

    needs_teacher = True

    @classmethod
    def defaults(cls) -> dict:
        return {"T": 1.0, "gamma": 1.0, "settle_epochs": 60}

    def loss(self, out, y, forget, ctx):
        t = self.options["T"]
        kl = F.kl_div(F.log_softmax(out / t, -1), F.softmax(ctx.teacher_out / t, -1), reduction="none").sum(-1)
        keep = ~forget
        if bool(forget.any()) and ctx.step % 2 == 0 and not ctx.settling:
            return -kl[forget].mean()
        if bool(keep.any()):
            return kl[keep].mean() + self.options["gamma"] * F.cross_entropy(out[keep], y[keep])
        return _zero(out)


@register_objective("random_target")
class RandomTarget(Objective):
    """Regression objective for generative models: forgotten samples' targets are replaced by uniform
    noise (the reference diffusion task's ``CG``); ``y`` is the regression target (e.g. epsilon)."""

    def loss(self, out, y, forget, ctx):
        mask = forget.view(-1, *([1] * (y.dim() - 1)))
        noise = torch.rand(y.shape, generator=ctx.generator).to(y.device, y.dtype)
        return F.mse_loss(out, torch.where(mask, noise, y))
