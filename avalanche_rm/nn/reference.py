"""The all-digital reference: the same network run by the chip's digital unit alone.

:class:`DigitalReferenceModel` wraps a plain torch network and charges every
forward pass (and, when trained, every optimiser step) with the same pricing
rules as the hybrid chip's digital unit: INT8 MACs of the non-zero inputs,
weights read once per sample from SRAM (DRAM beyond its capacity), activations
in and out once per vector, digital biases, and the network's other digital work
(norms, nonlinearities) from the same operation profile. It is the one dense
reference of ``avalanche-rm cost``, the scenarios and ``avalanche-rm paper``, and
the model the retrain-from-scratch baselines train.
"""
from __future__ import annotations

import torch
from torch import nn

from ..costs import pricing
from ..hardware.config import HardwareConfig
from ..hardware.digital import fake_quantize_per_sample
from .chip import ChipModel
from .profile import enter_layer, exit_layer


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
                m.register_forward_hook(self._charge_layer)

    @staticmethod
    def _enter(module, inputs):
        enter_layer()  # the layer's own arithmetic is priced by _charge_layer, not by the operation profile

    def _charge_layer(self, module, inputs, output) -> None:
        try:
            if self.ledger.enabled:
                self._charge(module, inputs[0], output)
        finally:
            exit_layer()

    def _charge(self, module, x: torch.Tensor, output: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            n_vectors = output.numel() // output.shape[1]
            in_f, out_f = module.weight[0].numel(), module.out_channels
        else:
            n_vectors = x.numel() // module.in_features
            in_f, out_f = module.in_features, module.out_features
        n_samples = int(x.shape[0]) if x.dim() > 1 else 1
        dig = self.hardware.digital
        training = self.training and torch.is_grad_enabled()
        self.residency.set_weights(self._stored_weight_bytes() * self.stored_copies)
        phase = self.ledger.current_phase("train" if training else "infer")
        self.ledger.charge(phase, pricing.dense_reference_layer(dig, n_vectors, n_samples, in_f, out_f, 0.0,
                                                                module.bias is not None, training,
                                                                self.residency.weight_fraction()))
        nz = _nonzero_inputs(module, x, dig.activation_bits)
        self.ledger.add_scaled(phase, nz, pricing.scaled(pricing.mac_coefficients(dig, training), out_f))
        act = dig.activation_bytes
        rd, wr = n_vectors * in_f * act, n_vectors * out_f * act
        self.residency.activations(rd, wr, rd + wr, n_samples)

    def _run(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def _stored_weight_bytes(self) -> float:
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


def dense_reference(model, inputs) -> dict[str, float]:
    """Per-sample bill of the same network (targets plus active adapters) run by the digital unit alone.

    The one all-digital reference of every ratio ``avalanche-rm`` prints (it
    stores as many copies of the network as ``model.stored_copies``).
    """
    ref = DigitalReferenceModel(model.to_software(merge_active=True), model.hardware)
    ref.stored_copies = model.stored_copies
    dev = next(iter(model.buffers())).device
    return ref.to(dev).inference_cost(inputs)
