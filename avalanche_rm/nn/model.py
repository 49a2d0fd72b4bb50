"""Hybrid model wrapper: an analogue base programmed once, named LoRA adapters on top.

Verbs follow PEFT (``add_adapter``, ``delete_adapter``, ``set_active_adapters``,
``adapter_state_dict``, ``merge_adapter``) with one difference that matters on
this hardware: merging an adapter reprograms the analogue cells it changes,
and that write-verify job is charged to the ledger.
"""
from __future__ import annotations

import contextlib
import copy
from typing import Iterable, Iterator

import torch
from torch import nn

from ..costs import pricing
from ..hardware._validate import check_choice
from ..hardware.config import HardwareConfig
from ..hardware.noise_source import PROGRAMMING_SAMPLERS, NormalSource
from ..hardware.programming import ProgrammingReport
from .chip import ChipModel
from .layers import HybridConv2d, HybridLinear, _HybridBase
from ..validation import check_int

_ADAPTER_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
#: logit given to output units outside :meth:`HybridModel.set_output_classes` (Avalanche's IncrementalClassifier value)
MASK_VALUE = -1000.0

_RESERVED = frozenset(dir(nn.ParameterDict()))


def _check_adapter_name(name: object) -> str:
    if not isinstance(name, str) or not name or not set(name) <= _ADAPTER_NAME_CHARS:
        raise ValueError(f"adapter name must be a non-empty string of letters, digits, '_' or '-', got {name!r}")
    if name in _RESERVED:
        # a ParameterDict key cannot shadow one of its own attributes (update, keys, pop, ...)
        raise ValueError(f"adapter name {name!r} is reserved (an attribute of torch's ParameterDict); pick another")
    return name


class HybridModel(ChipModel):
    """Wraps a module whose Linear/Conv2d layers were replaced by hybrid layers.

    ``forward`` is the wrapped module's. The model owns one :class:`CostLedger`
    shared by all its hybrid layers (``model.ledger``), one SRAM working set
    (``model.residency``) and one read-noise stream; every forward pass also
    charges the digital work outside the crossbar layers (see
    :mod:`avalanche_rm.nn.profile`).
    """

    def __init__(self, module: nn.Module, hardware: HardwareConfig) -> None:
        super().__init__(hardware)
        self.base_model = module
        self._adapter_cfg: dict[str, dict] = {}
        self._active: list[str] = []
        self._output_classes: torch.Tensor | None = None
        self._base_classes: tuple[int, ...] = ()
        self._share_chip_state()

    def _share_chip_state(self) -> None:
        layers = self.hybrid_layers()
        # one chip: one ledger, SRAM, read-noise stream and scratch space for all its layers (run one at a time)
        source = layers[0].array.noise_source if layers else None
        scratch = layers[0].array.workspace if layers else None
        for layer in layers:
            layer.residency = self.residency
            layer.meter = self.meter  # and with it the chip's ledger
            layer.array.noise_source = source
            layer.array.workspace = scratch

    @property
    def noise_source(self) -> NormalSource | None:
        """The chip's read-noise stream (shared by its layers; reseeded by :meth:`program`)."""
        layers = self.hybrid_layers()
        return layers[0].array.noise_source if layers else None

    @contextlib.contextmanager
    def fork_read_noise(self, seed: int) -> Iterator[NormalSource | None]:
        """Inside the block read noise comes from a fresh stream seeded ``seed``; the chip's own stream
        resumes unchanged after it (the read-noise analogue of ``torch.random.fork_rng``)."""
        old = self.noise_source
        if old is None:
            yield None
            return
        forked = NormalSource(old.mode, seed, old.reuse, old.table_min)
        self._use_noise_source(forked)
        try:
            yield forked
        finally:
            self._use_noise_source(old)

    def set_noise_sampler(self, mode: str, reuse: int | None = None) -> None:
        """Choose how read-noise draws are made: ``"table"`` (default, fast), ``"exact"`` (torch's generator)
        or ``"counter"`` (fresh draws from a counter-based generator; fast with the fused read).

        See :mod:`avalanche_rm.hardware.noise_source`; the stream restarts from the chip's seed.
        """
        old = self.noise_source
        if old is None:
            return
        self._use_noise_source(NormalSource(mode, old.seed, old.reuse if reuse is None else reuse, old.table_min))

    def set_programming_sampler(self, mode: str) -> None:
        """Where write-verify's pulse and read noise come from in later programming jobs: ``"exact"`` (default,
        torch's generator) or ``"table"`` (windows of a shared table, ~1.4x faster; see
        :func:`~avalanche_rm.hardware.programming.write_verify`). Chips programmed either way differ cell by cell."""
        check_choice("", "programming sampler", mode, PROGRAMMING_SAMPLERS)
        for layer in self.hybrid_layers():
            layer.array.programming_sampler = mode

    def _use_noise_source(self, source: NormalSource) -> None:
        for layer in self.hybrid_layers():
            layer.array.noise_source = source

    # ------------------------------------------------------------ structure
    def frozen_statistics(self) -> list[nn.Module]:
        """Modules of the base outside the hybrid layers that keep running statistics (BatchNorm, InstanceNorm
        with ``track_running_stats``): part of the deployed base, so they stay in eval mode."""
        return [m for m in self.base_model.modules()
                if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats]

    def train(self, mode: bool = True) -> "HybridModel":
        """``nn.Module.train``, except that running statistics of the base never update: the deployed chip
        applies them as a fixed affine map, and updating them would let the base learn from private data
        (a later forget request could not undo it)."""
        super().train(mode)
        for m in self.frozen_statistics():
            m.train(False)
        return self

    def named_hybrid_layers(self) -> Iterator[tuple[str, _HybridBase]]:
        for name, m in self.base_model.named_modules():
            if isinstance(m, _HybridBase):
                yield name, m

    def hybrid_layers(self) -> list[_HybridBase]:
        cached = self.__dict__.get("_layer_list")
        if cached is None:  # the layers never change after conversion; the hot path asks for them every pass
            cached = self.__dict__["_layer_list"] = [m for _, m in self.named_hybrid_layers()]
        return list(cached)

    def _run(self, *args, **kwargs):
        out = self.base_model(*args, **kwargs)
        cls = self._output_classes
        if cls is not None and isinstance(out, torch.Tensor):
            mask = torch.full((out.shape[-1],), MASK_VALUE, device=out.device, dtype=out.dtype)
            mask[cls[cls < out.shape[-1]].to(out.device)] = 0.0
            out = out + mask
        return out

    def set_output_classes(self, classes: Iterable[int] | None) -> None:
        """Give output units outside ``classes`` a logit of -1000 (``None``: every unit counts).

        Avalanche's ``IncrementalClassifier(masking=True)`` does the same for units
        of classes not seen yet. On a frozen base it matters: the base's head is
        confident about its own classes on every input, so without the mask the
        cross-entropy of new classes starts very high and its gradient drives LoRA
        branches on feature layers to silence the shared features (dead ReLUs).
        """
        if classes is None:
            self._output_classes = None
            return
        cls = torch.tensor(sorted({int(c) for c in classes}), dtype=torch.long)
        if len(cls) == 0 or bool((cls < 0).any()):
            raise ValueError(f"output classes must be non-empty and non-negative, got {list(classes)}")
        self._output_classes = cls

    @property
    def output_classes(self) -> list[int] | None:
        return None if self._output_classes is None else self._output_classes.tolist()

    @property
    def base_classes(self) -> tuple[int, ...]:
        """Classes the analogue base was trained on (set by ``pretrain_and_program``): output masks keep them."""
        return self.__dict__.get("_base_classes", ())

    @base_classes.setter
    def base_classes(self, classes: Iterable[int]) -> None:
        cls = tuple(sorted({int(c) for c in classes}))
        if any(c < 0 for c in cls):
            raise ValueError(f"base classes must be non-negative, got {list(classes)}")
        self._base_classes = cls

    def _read_weight_bytes(self) -> float:
        dig = self.hardware.digital
        total = 0.0
        for layer in self.hybrid_layers():
            n, n_bias = layer.read_digital_params()
            total += n * dig.adapter_bytes_per_param + n_bias * pricing.BIAS_BYTES
        return total

    def set_hardware(self, hardware: HardwareConfig) -> None:
        """Price this chip's work with ``hardware`` from now on (the layers share the chip's meter)."""
        super().set_hardware(hardware)

    def _quantised_params(self) -> set[int]:
        out = {id(p) for layer in self.hybrid_layers() for d in (layer.lora_A, layer.lora_B) for p in d.values()}
        for layer in self.hybrid_layers():
            if getattr(layer, "digital_weight", None) is not None:
                out.add(id(layer.digital_weight))
        return out

    @property
    def cells(self) -> int:
        return sum(layer.cells for layer in self.hybrid_layers())

    @property
    def programmed(self) -> bool:
        return all(layer.programmed for layer in self.hybrid_layers())

    # ------------------------------------------------------------ hardware verbs
    def program(self, seed: int = 0, calibration_data=None) -> ProgrammingReport:
        """Write-verify every analogue cell (deployment); returns the combined report.

        ``calibration_data`` (inputs, or a tuple of the forward's arguments) then
        calibrates the ADC ranges (:meth:`calibrate_adc`).
        """
        total = ProgrammingReport()
        with self.ledger.phase(self.ledger.current_phase("deploy")):
            for layer in self.hybrid_layers():
                total += layer.program(seed)
        self.last_programming = total
        if calibration_data is not None:
            self.calibrate_adc(calibration_data)
        return total

    @torch.no_grad()
    def calibrate_adc(self, inputs, batch_size: int = 256, max_samples: int = 2048) -> dict[str, int]:
        """Set every ADC's full scale from the partial sums these inputs produce (chip state, saved with it).

        The inputs (a tensor, or a tuple of the forward's arguments with a shared
        batch dimension) run through the chip with the ADCs bypassed; each ADC then
        gets the ``adc_calibration_percentile`` of what its columns produced. The
        reads are charged to ledger phase ``calibrate``. Returns the number of
        partial-sum samples per layer. Use public or non-forgettable data.
        """
        if not self.programmed:
            raise RuntimeError("program() the chip before calibrating its ADCs")
        args = inputs if isinstance(inputs, tuple) else (inputs,)
        if not args or not all(isinstance(a, torch.Tensor) for a in args) or args[0].dim() == 0 \
                or any(a.shape[0] != args[0].shape[0] for a in args):
            raise ValueError("calibration inputs must be a tensor or a tuple of tensors with one batch dimension")
        n = min(int(args[0].shape[0]), max_samples)
        if n == 0:
            raise ValueError("calibration inputs are empty")
        check_int(batch_size, "batch_size", 1)
        layers = dict(self.named_hybrid_layers())
        dev = next(iter(self.buffers())).device
        was = self.training
        self.eval()
        for layer in layers.values():
            layer.array.begin_calibration()
        try:
            with self.ledger.phase("calibrate"):
                for i in range(0, n, batch_size):
                    self(*[a[i:min(i + batch_size, n)].to(dev) for a in args])
            seen = {name: layer.array.end_calibration() for name, layer in layers.items()}
        finally:
            for layer in layers.values():
                layer.array._calibration = None
            self.train(was)
        return seen

    @property
    def adc_calibrated(self) -> bool:
        return all(bool(layer.array.adc_calibrated) for layer in self.hybrid_layers())

    def drift(self, seconds: float) -> None:
        """Age every programmed cell by ``seconds``."""
        for layer in self.hybrid_layers():
            layer.drift(seconds)

    def apply_write_noise(self, sigma_us: float, seed: int = 0) -> None:
        """Re-draw every cell as target + N(0, sigma_us) clamped to the window (reference noise model; free)."""
        check_int(seed, "seed", 0)
        for layer in self.hybrid_layers():
            layer.apply_write_noise(sigma_us, seed)

    def conductance_state(self) -> dict[str, torch.Tensor]:
        """Copies of every layer's programmed conductances, for :meth:`load_conductance_state`."""
        return {name: layer.array.g_us.detach().clone() for name, layer in self.named_hybrid_layers()}

    def load_conductance_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore conductances saved by :meth:`conductance_state` (checked before any write; free)."""
        layers = dict(self.named_hybrid_layers())
        if set(state) != set(layers):
            raise ValueError(f"conductance state layers {sorted(state)} != model layers {sorted(layers)}")
        for name, g in state.items():
            if tuple(g.shape) != tuple(layers[name].array.g_us.shape) or not torch.isfinite(g).all():
                raise ValueError(f"conductance state {name!r}: expected finite tensor of shape "
                                 f"{tuple(layers[name].array.g_us.shape)}")
        for name, g in state.items():
            layers[name].set_conductance(g.to(layers[name].array.g_us.device))

    def set_analog_noise(self, enabled: bool) -> None:
        """Switch per-read noise on the analogue MVMs (programming state is unaffected)."""
        for layer in self.hybrid_layers():
            layer.analog_noise = bool(enabled)

    # ------------------------------------------------------------ adapters
    @property
    def adapter_names(self) -> list[str]:
        return list(self._adapter_cfg)

    @property
    def active_adapters(self) -> list[str]:
        return list(self._active)

    def _layers_for(self, target_modules: Iterable[str] | None) -> list[tuple[str, _HybridBase]]:
        layers = list(self.named_hybrid_layers())
        if target_modules is None:
            return layers
        targets = list(target_modules)
        chosen = [(n, m) for n, m in layers if any(n == t or n.endswith("." + t) for t in targets)]
        if not chosen:
            raise ValueError(f"target_modules {targets} match no hybrid layer; layers are {[n for n, _ in layers]}")
        return chosen

    def add_adapter(self, name: str, rank: int = 8, alpha: float = 16.0, target_modules: Iterable[str] | None = None,
                    rank_scaling: bool = True, seed: int | None = None, activate: bool = True,
                    bias: bool = False) -> None:
        """Add LoRA branch ``name`` of ``rank`` to the target hybrid layers (default: all).

        ``rank_scaling=True`` scales by ``alpha/rank`` (PEFT); ``False`` by bare
        ``alpha`` (the reference face code). B starts at zero, so outputs do not
        change until the adapter is trained. ``bias=True`` adds a per-adapter
        output bias (PEFT's ``lora_bias``), also digital.
        """
        _check_adapter_name(name)
        if name in self._adapter_cfg:
            raise ValueError(f"adapter {name!r} already exists; adapters are {self.adapter_names}")
        check_int(rank, "rank", 1)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not torch.isfinite(torch.tensor(float(alpha))):
            raise ValueError(f"alpha must be a finite number, got {alpha!r}")
        layers = self._layers_for(target_modules)
        gen = None
        if seed is not None:
            gen = torch.Generator().manual_seed(int(seed))
        for _, layer in layers:
            a_gen = gen
            if gen is not None and layer.array.g_us.device.type != "cpu":
                a_gen = torch.Generator(device=layer.array.g_us.device).manual_seed(int(seed))
            layer.update_layer(name, rank, alpha, rank_scaling, a_gen, bias=bias)
        self._adapter_cfg[name] = {"rank": rank, "alpha": float(alpha), "rank_scaling": rank_scaling,
                                   "bias": bias, "layers": [n for n, _ in layers]}
        if activate:
            self.set_active_adapters(self._active + [name])

    def delete_adapter(self, name: str) -> None:
        """Drop adapter ``name`` everywhere (its SRAM is freed; no analogue cell changes)."""
        if name not in self._adapter_cfg:
            raise ValueError(f"no adapter named {name!r}; adapters are {self.adapter_names}")
        for _, layer in self.named_hybrid_layers():
            if name in layer.lora_A:
                layer.delete_adapter(name)
        del self._adapter_cfg[name]
        self._active = [a for a in self._active if a != name]

    def set_active_adapters(self, names: str | Iterable[str]) -> None:
        """Adapters whose outputs are summed in the forward pass (``[]`` = base only)."""
        names = [names] if isinstance(names, str) else list(names)
        unknown = [n for n in names if n not in self._adapter_cfg]
        if unknown:
            raise ValueError(f"unknown adapter(s) {unknown}; adapters are {self.adapter_names}")
        names = list(dict.fromkeys(names))
        for layer in self.hybrid_layers():
            layer.set_adapter(names)
        self._active = names

    def adapter_parameters(self, names: Iterable[str] | None = None) -> list[nn.Parameter]:
        """LoRA factors of ``names`` (default: every adapter)."""
        if names is not None:
            names = [names] if isinstance(names, str) else list(names)
            unknown = [n for n in names if n not in self._adapter_cfg]
            if unknown:
                raise ValueError(f"unknown adapter(s) {unknown}; adapters are {self.adapter_names}")
        out: list[nn.Parameter] = []
        for layer in self.hybrid_layers():
            out += layer.adapter_parameters(names)
        return out

    def adapter_config(self, name: str) -> dict:
        if name not in self._adapter_cfg:
            raise ValueError(f"no adapter named {name!r}; adapters are {self.adapter_names}")
        return copy.deepcopy(self._adapter_cfg[name])

    def adapter_state_dict(self, name: str) -> dict[str, torch.Tensor]:
        """``{"<layer>.lora_A": A, "<layer>.lora_B": B}`` for adapter ``name`` (detached copies)."""
        if name not in self._adapter_cfg:
            raise ValueError(f"no adapter named {name!r}; adapters are {self.adapter_names}")
        sd = {}
        for lname, layer in self.named_hybrid_layers():
            if name in layer.lora_A:
                sd[f"{lname}.lora_A"] = layer.lora_A[name].detach().clone()
                sd[f"{lname}.lora_B"] = layer.lora_B[name].detach().clone()
                if name in layer.lora_bias:
                    sd[f"{lname}.lora_bias"] = layer.lora_bias[name].detach().clone()
        return sd

    def load_adapter_state_dict(self, name: str, state: dict[str, torch.Tensor]) -> None:
        """Overwrite adapter ``name`` from :meth:`adapter_state_dict` output; checked before any write."""
        current = self.adapter_state_dict(name)
        if set(state) != set(current):
            raise ValueError(f"adapter state keys {sorted(state)} do not match adapter {name!r} keys {sorted(current)}")
        for k, v in state.items():
            if not isinstance(v, torch.Tensor) or tuple(v.shape) != tuple(current[k].shape):
                raise ValueError(f"adapter state {k!r}: expected shape {tuple(current[k].shape)}, "
                                 f"got {getattr(v, 'shape', type(v).__name__)}")
            if not torch.isfinite(v).all():
                raise ValueError(f"adapter state {k!r} contains NaN or Inf")
        layers = dict(self.named_hybrid_layers())
        with torch.no_grad():
            for k, v in state.items():
                lname, which = k.rsplit(".", 1)
                getattr(layers[lname], which)[name].copy_(v)

    def adapter_num_parameters(self, name: str | None = None) -> int:
        return sum(p.numel() for p in self.adapter_parameters(None if name is None else [name]))

    def adapter_bytes(self, names: Iterable[str] | None = None) -> float:
        """SRAM bytes the adapters occupy at the digital unit's precision."""
        n = sum(p.numel() for p in self.adapter_parameters(names))
        return n * self.hardware.digital.adapter_bytes_per_param

    def merge_adapter(self, name: str) -> ProgrammingReport:
        """Fold adapter ``name`` into the analogue base by reprogramming the changed cells.

        This is the expensive path the hybrid design avoids: every affected cell
        is verified, and those whose target level moved get write pulses. The
        adapter is deleted afterwards.
        """
        if name not in self._adapter_cfg:
            raise ValueError(f"no adapter named {name!r}; adapters are {self.adapter_names}")
        total = ProgrammingReport()
        with self.ledger.phase(self.ledger.current_phase("merge")), torch.no_grad():
            for _, layer in self.named_hybrid_layers():
                if name in layer.lora_A:
                    new_w = layer.target_weight() + layer.get_delta_weight(name)
                    total += layer.reprogram_weight(new_w)
                    if name in layer.lora_bias:
                        if layer.bias is None:
                            layer.bias = torch.zeros_like(layer.lora_bias[name])
                        layer.bias.add_(layer.lora_bias[name].detach())
        self.ledger.log_event("merge_adapter", self.ledger.current_phase("merge"), adapter=name, pulses=total.pulses)
        self.delete_adapter(name)
        return total

    def write_back_shadows(self, phase: str = "train") -> ProgrammingReport:
        """Write-verify every layer's digital weight shadow (full-weight training) into its cells.

        Charged to ``phase`` unless a ledger phase is open. Layers without a
        shadow are left alone.
        """
        total = ProgrammingReport()
        with torch.no_grad():
            for layer in self.hybrid_layers():
                shadow = getattr(layer, "weight_shadow", None)
                if shadow is not None:
                    total += layer.reprogram_weight(shadow.detach(), phase=phase)
        return total

    def sram_footprint(self) -> dict[str, float]:
        """The digital unit's working set (bytes): the weights a pass reads (active adapters, head rows, biases),
        the activations of the last pass and of the last training pass, the training state of the attached
        optimisers; against the SRAM and the local buffers."""
        self.residency.set_weights(self._read_weight_bytes() * self.stored_copies)
        return self.residency.footprint()

    def to_software(self, merge_active: bool = True) -> nn.Module:
        """The wrapped network with every hybrid layer back as ``nn.Linear``/``nn.Conv2d``.

        Weights are the targets the cells encode (plus the active adapters' deltas
        with ``merge_active``), biases and digital head rows included: the same
        function, to run on another design (e.g. the all-digital reference).
        """
        sw = copy.deepcopy(self.base_model)
        for name, layer in list(self.named_hybrid_layers()):
            w = layer.target_weight().detach().clone()
            if merge_active:
                for a in layer.active_adapters:
                    w = w + layer.get_delta_weight(a).detach()
            bias = layer.bias.detach().clone() if layer.bias is not None else None
            if isinstance(layer, HybridConv2d):
                new = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                                layer.dilation, bias=bias is not None)
                new.weight.data.copy_(w.view_as(new.weight))
            else:
                k = layer.digital_out_features
                new = nn.Linear(layer.in_features, layer.out_features + k, bias=bias is not None or k > 0)
                rows = [w] + ([layer.digital_weight.detach()] if k else [])
                new.weight.data.copy_(torch.cat(rows))
                if new.bias is not None:
                    b = bias if bias is not None else torch.zeros(layer.out_features, device=w.device)
                    new.bias.data.copy_(torch.cat([b] + ([layer.digital_bias.detach()] if k else [])))
            if bias is not None and new.bias is not None and isinstance(layer, HybridConv2d):
                new.bias.data.copy_(bias)
            if merge_active and new.bias is not None:
                for a in layer.active_adapters:
                    if a in layer.lora_bias:
                        new.bias.data[: layer.out_features] += layer.lora_bias[a].detach()
            parent_name, _, attr = name.rpartition(".")
            parent = sw.get_submodule(parent_name) if parent_name else sw
            setattr(parent, attr, new.to(w.device))
        return sw


def convert_to_hybrid(module: nn.Module, hardware: HardwareConfig, target_modules: Iterable[str] | None = None,
                      inplace: bool = False) -> HybridModel:
    """Replace Linear/Conv2d layers (default: all; else those named in ``target_modules``) by hybrid layers.

    Returns an unprogrammed :class:`HybridModel`; call ``program(seed)`` to deploy it.
    """
    if not isinstance(module, nn.Module):
        raise ValueError(f"module must be an nn.Module, got {type(module).__name__}")
    if not isinstance(hardware, HardwareConfig):
        raise ValueError(f"hardware must be a HardwareConfig, got {type(hardware).__name__}")
    if isinstance(module, HybridModel):
        raise ValueError("module is already a HybridModel")
    root = module if inplace else copy.deepcopy(module)
    targets = None if target_modules is None else list(target_modules)
    replaced = []

    def wanted(name: str) -> bool:
        return targets is None or any(name == t or name.endswith("." + t) for t in targets)

    for name, child in list(root.named_modules()):
        if not name or not wanted(name):
            continue
        if isinstance(child, nn.Linear):
            new = HybridLinear.from_linear(child, hardware, name=name)
        elif isinstance(child, nn.Conv2d):
            new = HybridConv2d(child, hardware, name=name)
        else:
            continue
        new = new.to(child.weight.device)
        parent_name, _, attr = name.rpartition(".")
        parent = root.get_submodule(parent_name) if parent_name else root
        setattr(parent, attr, new)
        replaced.append(name)
    if isinstance(root, (nn.Linear, nn.Conv2d)) and (targets is None or "" in targets):
        new = HybridLinear.from_linear(root, hardware, name="layer") if isinstance(root, nn.Linear) \
            else HybridConv2d(root, hardware, name="layer")
        root = nn.Sequential()
        root.add_module("layer", new)
        replaced.append("layer")
    if not replaced:
        raise ValueError(f"no Linear/Conv2d layer matched target_modules={targets}")
    for p in root.parameters():
        p.requires_grad_(False)
    return HybridModel(root, hardware)
