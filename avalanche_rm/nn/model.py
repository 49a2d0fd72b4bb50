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

from ..costs.ledger import CostLedger
from ..hardware.config import HardwareConfig
from ..hardware.noise_source import NormalSource
from ..hardware.programming import ProgrammingReport
from .layers import HybridConv2d, HybridLinear, _HybridBase

_ADAPTER_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> float:
    """Bytes of optimiser state per parameter kept in the digital unit (fp32 moments)."""
    # by name: a checkpoint loaded with dill's recurse mode re-creates torch's optimiser classes
    if any(c.__name__ in ("Adam", "AdamW") for c in type(optimizer).__mro__):
        return 8.0
    if any(g.get("momentum", 0) for g in optimizer.param_groups):
        return 4.0
    return 0.0


_RESERVED = frozenset(dir(nn.ParameterDict()))


def _check_adapter_name(name: object) -> str:
    if not isinstance(name, str) or not name or not set(name) <= _ADAPTER_NAME_CHARS:
        raise ValueError(f"adapter name must be a non-empty string of letters, digits, '_' or '-', got {name!r}")
    if name in _RESERVED:
        # a ParameterDict key cannot shadow one of its own attributes (update, keys, pop, ...)
        raise ValueError(f"adapter name {name!r} is reserved (an attribute of torch's ParameterDict); pick another")
    return name


class HybridModel(nn.Module):
    """Wraps a module whose Linear/Conv2d layers were replaced by hybrid layers.

    ``forward`` is the wrapped module's. The model owns one :class:`CostLedger`
    shared by all its hybrid layers (``model.ledger``).
    """

    def __init__(self, module: nn.Module, hardware: HardwareConfig) -> None:
        super().__init__()
        self.base_model = module
        self.hardware = hardware
        self.ledger = CostLedger()
        self._adapter_cfg: dict[str, dict] = {}
        self._active: list[str] = []
        self._optim_hooks: list = []
        self._share_chip_state()

    def _share_chip_state(self) -> None:
        layers = self.hybrid_layers()
        # one chip: one ledger, one read-noise stream and one scratch space for all its layers (run one at a time)
        source = layers[0].noise_source if layers else None
        scratch = layers[0].workspace if layers else None
        for layer in layers:
            layer.ledger = self.ledger
            layer.noise_source = source
            layer.workspace = scratch

    @property
    def noise_source(self) -> NormalSource | None:
        """The chip's read-noise stream (shared by its layers; reseeded by :meth:`program`)."""
        layers = self.hybrid_layers()
        return layers[0].noise_source if layers else None

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
        """Choose how read-noise draws are made: ``"table"`` (default, fast) or ``"exact"``.

        See :mod:`avalanche_rm.hardware.noise_source`; the stream restarts from the chip's seed.
        """
        old = self.noise_source
        if old is None:
            return
        self._use_noise_source(NormalSource(mode, old.seed, old.reuse if reuse is None else reuse, old.table_min))

    def _use_noise_source(self, source: NormalSource) -> None:
        for layer in self.hybrid_layers():
            layer.noise_source = source

    # ------------------------------------------------------------ structure
    def named_hybrid_layers(self) -> Iterator[tuple[str, _HybridBase]]:
        for name, m in self.base_model.named_modules():
            if isinstance(m, _HybridBase):
                yield name, m

    def hybrid_layers(self) -> list[_HybridBase]:
        return [m for _, m in self.named_hybrid_layers()]

    def forward(self, *args, **kwargs):
        return self.base_model(*args, **kwargs)

    @property
    def cells(self) -> int:
        return sum(layer.cells for layer in self.hybrid_layers())

    @property
    def programmed(self) -> bool:
        return all(layer.programmed for layer in self.hybrid_layers())

    # ------------------------------------------------------------ hardware verbs
    def program(self, seed: int = 0) -> ProgrammingReport:
        """Write-verify every analogue cell (deployment); returns the combined report."""
        total = ProgrammingReport()
        with self.ledger.phase(self.ledger.current_phase("deploy")):
            for layer in self.hybrid_layers():
                total += layer.program(seed)
        return total

    def drift(self, seconds: float) -> None:
        """Age every programmed cell by ``seconds``."""
        for layer in self.hybrid_layers():
            layer.drift(seconds)

    def apply_write_noise(self, sigma_us: float, seed: int = 0) -> None:
        """Re-draw every cell as target + N(0, sigma_us) clamped to the window (reference noise model; free)."""
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        for layer in self.hybrid_layers():
            layer.apply_write_noise(sigma_us, seed)

    def conductance_state(self) -> dict[str, torch.Tensor]:
        """Copies of every layer's programmed conductances, for :meth:`load_conductance_state`."""
        return {name: layer.g_us.detach().clone() for name, layer in self.named_hybrid_layers()}

    def load_conductance_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore conductances saved by :meth:`conductance_state` (checked before any write; free)."""
        layers = dict(self.named_hybrid_layers())
        if set(state) != set(layers):
            raise ValueError(f"conductance state layers {sorted(state)} != model layers {sorted(layers)}")
        for name, g in state.items():
            if tuple(g.shape) != tuple(layers[name].g_us.shape) or not torch.isfinite(g).all():
                raise ValueError(f"conductance state {name!r}: expected finite tensor of shape "
                                 f"{tuple(layers[name].g_us.shape)}")
        for name, g in state.items():
            layers[name].set_conductance(g.to(layers[name].g_us.device))

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
        if isinstance(rank, bool) or not isinstance(rank, int) or rank <= 0:
            raise ValueError(f"rank must be a positive int, got {rank!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not torch.isfinite(torch.tensor(float(alpha))):
            raise ValueError(f"alpha must be a finite number, got {alpha!r}")
        layers = self._layers_for(target_modules)
        gen = None
        if seed is not None:
            gen = torch.Generator().manual_seed(int(seed))
        for _, layer in layers:
            a_gen = gen
            if gen is not None and layer.g_us.device.type != "cpu":
                a_gen = torch.Generator(device=layer.g_us.device).manual_seed(int(seed))
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

    # ------------------------------------------------------------ training hooks
    def record_update(self, n_params: int | None = None, optimizer_state_bytes_per_param: float | None = None) -> None:
        """Charge one optimiser step of the trainable adapters to the ledger (SRAM writes)."""
        dig = self.hardware.digital
        if n_params is None:
            n_params = sum(p.numel() for p in self.adapter_parameters() if p.requires_grad and p.grad is not None)
        state = dig.optimizer_state_bytes_per_param if optimizer_state_bytes_per_param is None \
            else optimizer_state_bytes_per_param
        w_bytes = n_params * (dig.adapter_bytes_per_param + state)
        macs = n_params * 2  # read-modify-write update per parameter
        e = w_bytes * dig.sram_write_energy_pj_per_byte + macs * dig.mac_energy_pj
        phase = self.ledger.current_phase("train")
        self.ledger.add(phase, energy_pj=e, energy_sram_pj=w_bytes * dig.sram_write_energy_pj_per_byte,
                        energy_digital_pj=macs * dig.mac_energy_pj, sram_write_bytes=w_bytes, digital_macs=macs,
                        steps=1)

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Charge every ``optimizer.step()`` to the ledger automatically."""
        state_bytes = optimizer_state_bytes(optimizer)

        def hook(opt, args, kwargs):
            ids = {id(p) for p in self.adapter_parameters()}
            n = sum(p.numel() for g in opt.param_groups for p in g["params"] if id(p) in ids and p.grad is not None)
            self.record_update(n, state_bytes)

        self._optim_hooks.append(optimizer.register_step_post_hook(hook))

    # ------------------------------------------------------------ pickling
    def __getstate__(self):
        d = dict(self.__dict__)
        d["_optim_hooks"] = []
        return d

    def __deepcopy__(self, memo):
        cls = self.__class__
        new = cls.__new__(cls)
        memo[id(self)] = new
        for k, v in self.__dict__.items():
            new.__dict__[k] = [] if k == "_optim_hooks" else copy.deepcopy(v, memo)
        return new


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
