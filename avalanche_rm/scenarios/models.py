"""The reference's three networks, as plain torch modules that :func:`convert_to_hybrid` maps onto RM.

Shapes follow the reference code (arXiv 2601.10037, MrLinNing/RMAdaptiveMachine):
the face MLP-Mixer (``FaceRecognition/``), the spiking liquid-state network
(``SpeakerAuthentication/``) and, scaled down to 8x8 images, a class-conditional
diffusion denoiser whose MLP blocks (``fc1``/``fc2``) are the LoRA targets as in
its DiT (``ImageGeneration/``).
"""
from __future__ import annotations

import math

import torch
from torch import nn


class RMSNorm(nn.Module):
    """``x / sqrt(mean(x^2) + eps) * gain``.

    The reference adds eps outside the root; inside, an all-zero token (a blank
    patch, common in digit images) keeps a finite gradient.
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.gain = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.gain


class _MLP(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(nn.functional.gelu(self.fc1(x)))


class MixerBlock(nn.Module):
    """Token mixing then channel mixing, each pre-normed with a residual."""

    def __init__(self, n_tokens: int, channels: int, hidden: int) -> None:
        super().__init__()
        self.token_norm = RMSNorm(channels)
        self.token = _MLP(n_tokens, hidden)
        self.channel_norm = RMSNorm(channels)
        self.channel = _MLP(channels, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, tokens, channels]
        x = x + self.token(self.token_norm(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel(self.channel_norm(x))


class MLPMixer(nn.Module):
    """The reference face model: 2 layers, 20 channels, 32 hidden, 16x16 input, patch 4, bias-free linears.

    LoRA targets in the reference: ``channel.fc1``, ``channel.fc2`` of every block and ``head``.
    """

    def __init__(self, n_layers: int = 2, channels: int = 20, hidden: int = 32, n_classes: int = 6,
                 image_size: int = 16, patch_size: int = 4, in_channels: int = 1) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        self.image_size, self.patch_size, self.in_channels = image_size, patch_size, in_channels
        n_tokens = (image_size // patch_size) ** 2
        self.patch = nn.Linear(patch_size * patch_size * in_channels, channels, bias=False)
        self.blocks = nn.ModuleList(MixerBlock(n_tokens, channels, hidden) for _ in range(n_layers))
        self.norm = RMSNorm(channels)
        self.head = nn.Linear(channels, n_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if x.shape[1:] != (self.in_channels, self.image_size, self.image_size):
            raise ValueError(f"MLPMixer expects [B, {self.in_channels}, {self.image_size}, {self.image_size}], "
                             f"got {list(x.shape)}")
        p = self.patch_size
        b, c, h, w = x.shape
        tokens = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // p) * (w // p), -1)
        z = self.patch(tokens)
        for blk in self.blocks:
            z = blk(z)
        return self.head(self.norm(z).mean(1))


FACE_LORA_TARGETS = ("channel.fc1", "channel.fc2", "head")


class _RectSpike(torch.autograd.Function):
    """Heaviside spike with the reference's rectangular surrogate: 1/(2w) inside |u - vth| < w."""

    @staticmethod
    def forward(ctx, u, vth: float, width: float):  # type: ignore[override]
        ctx.save_for_backward(u)
        ctx.vth, ctx.width = vth, width
        return (u > vth).to(u.dtype)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (u,) = ctx.saved_tensors
        window = ((u - ctx.vth).abs() < ctx.width).to(grad.dtype) / (2 * ctx.width)
        return grad * window, None, None


class SpikingLSM(nn.Module):
    """The reference speaker network: LIF layer with recurrence, 140 -> 512 -> classes, T time steps.

    Per step ``mem = mem * decay * (1 - spike) + fc1(x_t) + fc1h(spike)``;
    ``spike = mem > vth``; output ``fc2(mean_t spike)``. Inputs are spike counts
    ``[B, T, in]``: on the hybrid chip a silent input row drives no DAC and no cell,
    so analogue energy follows spike activity. ``last_rate`` holds the mean hidden
    firing rate of the latest forward pass.
    """

    def __init__(self, in_features: int = 140, hidden: int = 512, n_classes: int = 5, decay: float = 0.5,
                 vth: float = 0.3, surrogate_width: float = 0.25) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc1h = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, n_classes)
        self.decay, self.vth, self.width = decay, vth, surrogate_width
        self.hidden = hidden
        self.last_rate = float("nan")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3:
            raise ValueError(f"SpikingLSM expects spike counts [B, T, in], got {list(x.shape)}")
        b, steps, _ = x.shape
        mem = x.new_zeros(b, self.hidden)
        spike = x.new_zeros(b, self.hidden)
        total = x.new_zeros(b, self.hidden)
        for t in range(steps):  # recurrence: each step needs the previous step's spikes
            mem = mem * self.decay * (1.0 - spike) + self.fc1(x[:, t]) + self.fc1h(spike)
            spike = _RectSpike.apply(mem, self.vth, self.width)
            total = total + spike
        rate = total / steps
        self.last_rate = float(rate.detach().mean())
        return self.fc2(rate)


SPEAKER_LORA_TARGETS = ("fc1", "fc1h")


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer diffusion steps ``t`` ``[B]`` -> ``[B, dim]`` (as in DiT)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class DenoiserBlock(nn.Module):
    """adaLN-Zero modulated MLP block (the DiT block with its attention/conv mixer removed)."""

    def __init__(self, hidden: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Linear(hidden, 3 * hidden)
        self.fc1 = nn.Linear(hidden, hidden * mlp_ratio)
        self.fc2 = nn.Linear(hidden * mlp_ratio, hidden)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.ada(nn.functional.silu(cond)).chunk(3, dim=-1)
        z = self.norm(h) * (1 + scale) + shift
        return h + gate * self.fc2(nn.functional.gelu(self.fc1(z)))


class DiffusionDenoiser(nn.Module):
    """Class-conditional epsilon-predictor for flattened images (default 8x8 digits).

    ``n_classes`` real labels plus one null label (index ``n_classes``) for
    classifier-free guidance. LoRA targets as in the reference DiT: every
    ``fc1``/``fc2`` (see :data:`GENERATION_LORA_TARGETS`).
    """

    def __init__(self, data_dim: int = 64, hidden: int = 128, depth: int = 3, mlp_ratio: int = 4,
                 n_classes: int = 10, time_dim: int = 64) -> None:
        super().__init__()
        self.data_dim, self.n_classes, self.time_dim = data_dim, n_classes, time_dim
        self.inp = nn.Linear(data_dim, hidden)
        self.t_fc1 = nn.Linear(time_dim, hidden)
        self.t_fc2 = nn.Linear(hidden, hidden)
        self.label = nn.Embedding(n_classes + 1, hidden)
        self.blocks = nn.ModuleList(DenoiserBlock(hidden, mlp_ratio) for _ in range(depth))
        self.out_norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.out = nn.Linear(hidden, data_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        temb = self.t_fc2(nn.functional.silu(self.t_fc1(timestep_embedding(t, self.time_dim))))
        cond = temb + self.label(y)
        h = self.inp(x)
        for blk in self.blocks:
            h = blk(h, cond)
        return self.out(self.out_norm(h))


GENERATION_LORA_TARGETS = ("fc1", "fc2")
