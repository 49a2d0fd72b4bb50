"""The all-digital reference: the same network run by the chip's digital unit alone.

:class:`DigitalReferenceModel` wraps a plain torch network and charges every
forward pass (and, when trained, every optimiser step) with the same pricing
rules as the hybrid chip's digital unit: INT8 MACs of the non-zero inputs,
weights read once per sample, activations in and out once per vector, digital
biases, and the network's other digital work (norms, nonlinearities) from the
same operation profile. It is the one dense reference of ``avalanche-rm cost``,
the scenarios and ``avalanche-rm paper``, and the model the retrain-from-scratch
baselines train.

Its buffer, by the stated rule (:data:`BUFFER_RULES`): ``"working_set"`` (the
default of :func:`dense_reference`) gives it an SRAM sized for its own working
set, so no weight streams from DRAM; ``"chip"`` gives it the hybrid chip's SRAM.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..costs import pricing
from ..costs.meter import LayerCall
from ..hardware.config import HardwareConfig
from ..hardware.digital import fake_quantize_per_sample
from .chip import ChipModel
from .profile import enter_layer, exit_layer

#: how the reference's SRAM is sized: its own working set, or the hybrid chip's buffer
BUFFER_RULES = ("working_set", "chip")


def _nonzero_inputs(module: nn.Module, x: torch.Tensor, bits: int | None) -> torch.Tensor:
    """Non-zero INT8 inputs of a Linear (per vector) or of every receptive field of a Conv2d."""
    xq = fake_quantize_per_sample(x.detach(), bits, int(x.shape[0]) if x.dim() > 1 else 1)
    if isinstance(module, nn.Conv2d):
        ind = (xq != 0).to(x.dtype).sum(1, keepdim=True)
        ones = torch.ones(1, 1, *module.kernel_size, device=x.device, dtype=x.dtype)
        return torch.nn.functional.conv2d(ind, ones, stride=module.stride, padding=module.padding,
                                          dilation=module.dilation).sum()
    return torch.count_nonzero(xq)


class DigitalReferenceModel(ChipModel):
    """``module`` executed densely by ``hardware``'s digital unit, charged like the hybrid's digital work."""

    def __init__(self, module: nn.Module, hardware: HardwareConfig) -> None:
        super().__init__(hardware)
        self.module = module
        for m in module.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.register_forward_pre_hook(self._enter)
                m.register_forward_hook(self._meter_layer)

    @staticmethod
    def _enter(module, inputs):
        enter_layer()  # the layer's own arithmetic is metered by _meter_layer, not by the operation profile

    def _meter_layer(self, module, inputs, output) -> None:
        try:
            if self.ledger.enabled:
                self._meter(module, inputs[0], output)
        finally:
            exit_layer()

    def _meter(self, module, x: torch.Tensor, output: torch.Tensor) -> None:
        dig = self.hardware.digital
        act = dig.activation_bytes
        training = self.training and torch.is_grad_enabled()
        if isinstance(module, nn.Conv2d):
            n_vectors = output.numel() // output.shape[1]
            in_f, out_f = module.weight[0].numel(), module.out_channels
            line = module.kernel_size[0] * (x.shape[3] + 2 * module.padding[1]) * module.in_channels
            need = (line + output.shape[3] * out_f) * act
        else:
            n_vectors = x.numel() // module.in_features
            in_f, out_f = module.in_features, module.out_features
            need = (in_f + out_f) * act
        if training:
            need = (x.numel() + output.numel()) * act
        n_samples = int(x.shape[0]) if x.dim() > 1 else 1
        phase = self.ledger.current_phase("train" if training else "infer")
        self.meter.layer_call(LayerCall(phase, n_vectors, n_samples, in_f, out_f, need,
                                        nonzero=_nonzero_inputs(module, x, dig.activation_bits),
                                        bias=module.bias is not None, dense=True, dense_training=training))

    def _run(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def _read_weight_bytes(self) -> float:
        dig = self.hardware.digital
        total = 0.0
        for m in self.module.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                total += m.weight.numel() * dig.adapter_bytes_per_param
                if m.bias is not None:
                    total += m.bias.numel() * pricing.BIAS_BYTES
        return total

    def _quantised_params(self) -> set[int]:
        return {id(m.weight) for m in self.module.modules() if isinstance(m, (nn.Linear, nn.Conv2d))}

    @torch.no_grad()
    def size_buffer(self, inputs) -> float:
        """Give this reference an SRAM that holds its inference working set (what its local buffers do not):
        its weights and the activations in flight on ``inputs``. Returns the buffer in KiB."""
        args = inputs if isinstance(inputs, tuple) else (inputs,)
        dev = next(iter(list(self.buffers()) + list(self.parameters()))).device
        was, saved = self.training, self.ledger.state_dict()
        self.eval()
        try:
            self(*[a[:1].to(dev) for a in args])  # one sample: what the pass needs
        finally:
            self.ledger.load_state_dict(saved)
            self.train(was)
        need = self.residency.needs()
        local = self.residency.local_capacity
        sram_b = max(need["weight"] + need["activation"] - local, 0.0)
        kib = math.ceil(max(sram_b, 1024.0)) / 1024.0
        self.set_hardware(self.hardware.replace(digital={"sram_kib": kib}))
        return kib


def dense_reference(model, inputs, buffer_rule: str = "working_set") -> dict[str, float]:
    """Per-sample bill of the same network (targets plus active adapters) run by the digital unit alone.

    The one all-digital reference of every ratio ``avalanche-rm`` prints (it
    stores as many copies of the network as ``model.stored_copies``).
    ``buffer_rule``: ``"working_set"`` sizes its SRAM for its own working set;
    ``"chip"`` gives it the hybrid chip's SRAM.
    """
    if buffer_rule not in BUFFER_RULES:
        raise ValueError(f"buffer_rule must be one of {BUFFER_RULES}, got {buffer_rule!r}")
    ref = reference_model(model, inputs, buffer_rule)
    return ref.inference_cost(inputs)


def reference_model(model, inputs, buffer_rule: str = "working_set") -> DigitalReferenceModel:
    """The all-digital reference of ``model`` (see :func:`dense_reference`), its buffer sized by ``buffer_rule``."""
    if buffer_rule not in BUFFER_RULES:
        raise ValueError(f"buffer_rule must be one of {BUFFER_RULES}, got {buffer_rule!r}")
    ref = DigitalReferenceModel(model.to_software(merge_active=True), model.hardware)
    ref.stored_copies = model.stored_copies
    dev = next(iter(model.buffers())).device
    ref = ref.to(dev)
    if buffer_rule == "working_set":
        ref.size_buffer(inputs)
    return ref
