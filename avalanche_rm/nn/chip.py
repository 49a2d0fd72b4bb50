"""What every simulated chip model charges the same way: its forward pass's digital work and its optimiser steps.

:class:`ChipModel` is the shared base of :class:`~avalanche_rm.nn.model.HybridModel`
(analogue base + digital LoRA) and :class:`~avalanche_rm.nn.reference.DigitalReferenceModel`
(the same network run by the digital unit alone), so both designs are priced
by one set of rules: every charge goes through the chip's :class:`~avalanche_rm.costs.meter.Meter`.
"""
from __future__ import annotations

import weakref

import torch
from torch import nn

from ..costs import pricing
from ..costs.ledger import CostLedger
from ..costs.meter import Meter
from ..costs.residency import DigitalResidency
from ..hardware.config import HardwareConfig
from .profile import DigitalOpCounter, DigitalProfile, batch_size, per_sample, profile_key


class ChipModel(nn.Module):
    """A network on one chip: one ledger, one SRAM working set, charged forward passes and optimiser steps."""

    def __init__(self, hardware: HardwareConfig) -> None:
        super().__init__()
        if not isinstance(hardware, HardwareConfig):
            raise ValueError(f"hardware must be a HardwareConfig, got {type(hardware).__name__}")
        self.hardware = hardware
        self.residency = DigitalResidency(hardware)
        self.meter = Meter(hardware, CostLedger(), self.residency)
        self._optim_hooks: list = []
        self._attached: weakref.WeakSet = weakref.WeakSet()
        self._profiles: dict[tuple, DigitalProfile] = {}
        #: identical copies of this network the chip stores (a measurement on one block standing for several)
        self.stored_copies = 1

    @property
    def ledger(self) -> CostLedger:
        """The chip's ledger (what its meter charges); assigning one makes this chip charge it."""
        return self.meter.ledger

    @ledger.setter
    def ledger(self, ledger: CostLedger) -> None:
        self.meter.ledger = ledger

    # ------------------------------------------------------------ hooks for subclasses
    def _run(self, *args, **kwargs):
        raise NotImplementedError

    def _read_weight_bytes(self) -> float:
        """Digital weights a forward pass reads (adapter precision; biases at INT32)."""
        raise NotImplementedError

    def set_hardware(self, hardware: HardwareConfig) -> None:
        """Price this chip's work with ``hardware`` from now on (its digital unit's sizes and prices)."""
        self.hardware = hardware
        self.meter.set_hardware(hardware)

    def _quantised_params(self) -> set[int]:
        """Ids of trainable parameters that keep an INT8 copy for the forward pass."""
        return set()

    # ------------------------------------------------------------ forward
    def forward(self, *args, **kwargs):
        led = self.ledger
        if not led.enabled:
            return self._run(*args, **kwargs)
        training = self.training and torch.is_grad_enabled()
        self.residency.set_weights(self._read_weight_bytes() * self.stored_copies)
        self.meter.begin_pass(training)
        key = profile_key(args, kwargs, training)
        prof = self._profiles.get(key)
        try:
            if prof is None:
                with DigitalOpCounter() as counter:
                    out = self._run(*args, **kwargs)
                prof = self._profiles[key] = per_sample(counter.p, batch_size(args))
            else:
                out = self._run(*args, **kwargs)
            self.meter.network_work(led.current_phase("train" if training else "infer"), prof.ops, prof.macs,
                                    prof.weight_values, prof.lookup_values, batch_size(args), training)
        finally:
            self.meter.end_pass()
        return out

    def digital_profile(self, *args, **kwargs) -> DigitalProfile:
        """The per-sample digital work outside crossbar layers of a forward pass on these inputs (uncharged)."""
        with self.ledger.paused(), torch.no_grad(), DigitalOpCounter() as counter:
            self._run(*args, **kwargs)
        return per_sample(counter.p, batch_size(args))

    @torch.no_grad()
    def inference_cost(self, inputs) -> dict[str, float]:
        """Ledger quantities per sample of one eval-mode pass on ``inputs`` (a tensor or a tuple of arguments).

        Charged to ledger phase ``infer-probe`` (so it never mixes with a run's own inference).
        """
        args = inputs if isinstance(inputs, tuple) else (inputs,)
        dev = next(iter(list(self.buffers()) + list(self.parameters()))).device
        was = self.training
        self.eval()
        snap = self.ledger.snapshot()
        try:
            with self.ledger.phase("infer-probe"):
                self(*[a.to(dev) for a in args])
        finally:
            self.train(was)
        n = max(int(args[0].shape[0]), 1)
        return {k: v / n for k, v in self.ledger.total_since(snap).items()}

    # ------------------------------------------------------------ optimiser steps
    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Charge every ``optimizer.step()`` to the ledger (idempotent: attaching twice charges once).

        A step is priced on the FP32 master copy of the trained parameters that
        belong to this model: reads and writes of the master copy, gradients and
        moments, the FP32 update, and the rewrite of their INT8 copies
        (:func:`avalanche_rm.costs.pricing.optimizer_step_charges`).
        """
        if optimizer in self._attached:
            return
        kind = pricing.optimizer_kind(optimizer)
        mine = {id(p) for p in self.parameters()}
        n = sum(p.numel() for g in optimizer.param_groups for p in g["params"] if id(p) in mine and p.requires_grad)
        if n:  # the training state is part of the working set from the first pass on
            self.residency.set_state(pricing.training_state_bytes(self.hardware.digital, kind, n) * self.stored_copies)
        ref = weakref.ref(self)

        def hook(opt, args, kwargs):
            model = ref()
            if model is not None:
                model._meter_step(opt, kind)

        self._optim_hooks.append(optimizer.register_step_post_hook(hook))
        self._attached.add(optimizer)

    def _meter_step(self, optimizer: torch.optim.Optimizer, kind: str) -> None:
        if not self.ledger.enabled:
            return
        mine = {id(p) for p in self.parameters()}
        quant = self._quantised_params()
        n = nq = 0
        for g in optimizer.param_groups:
            for p in g["params"]:
                if id(p) in mine and p.grad is not None:
                    n += p.numel()
                    if id(p) in quant:
                        nq += p.numel()
        if n == 0:
            return
        k = self.stored_copies
        self.residency.set_weights(self._read_weight_bytes() * k)
        self.residency.set_state(pricing.training_state_bytes(self.hardware.digital, kind, n) * k)
        self.meter.optimizer_step(self.ledger.current_phase("train"), kind, n, nq)

    # ------------------------------------------------------------ pickling
    def __getstate__(self):
        d = dict(self.__dict__)
        d["_optim_hooks"] = []
        d["_attached"] = None
        return d

    def __setstate__(self, d):
        self.__dict__.update(d)
        self._attached = weakref.WeakSet()

    def __deepcopy__(self, memo):
        import copy

        cls = self.__class__
        new = cls.__new__(cls)
        memo[id(self)] = new
        for k, v in self.__dict__.items():
            if k == "_optim_hooks":
                new.__dict__[k] = []
            elif k == "_attached":
                new.__dict__[k] = weakref.WeakSet()
            else:
                new.__dict__[k] = copy.deepcopy(v, memo)
        return new
