"""The fused analogue read: DAC coding, per-tile MVMs, read noise, ADCs, tile sum and cost counts in one graph.

The eager path (:func:`~avalanche_rm.hardware.crossbar.dac_encode`,
:func:`~avalanche_rm.hardware.crossbar.analog_mvm`,
:func:`~avalanche_rm.hardware.crossbar.mvm_counts`) is the reference: every
pass there is a separate sweep over a batch-sized tensor. The functions here
compute the same values out of place and are compiled with ``torch.compile``
(inductor: C++/OpenMP on CPU, Triton on CUDA), which fuses the passes around
the matrix products into a few loops; ``"counter"`` read noise is generated
inside the fused loop (:func:`~avalanche_rm.hardware.noise_source.counter_normals`).

On a CPU with oneDNN (torch's MKL-DNN), the per-tile matrix products run as
one grouped 1x1 convolution (:func:`tile_partials`): on this project's host (an
AMD EPYC, where MKL's GEMM is slow) it is 1.7-3x faster than ``torch.bmm`` for
the same partial sums (``python -m avalanche_rm.bench`` prints the two routes),
which may differ from MKL's in the last bit.
Agreement with the eager path (``tests/test_fused.py``) on the same noise
stream: outputs to 1e-5 relative except where float rounding moves a value
across an ADC rounding boundary (one ADC step, on at most 0.1 % of outputs;
the compiled kernels may contract multiply-adds); driven-row and conductance
counts to 1e-5 relative; saturation counts to 1 %.

Switch: off by default, like ``torch.compile`` itself; ``AVALANCHE_RM_FUSED=1``
in the environment or :func:`set_fused` turns it on (``AVALANCHE_RM_FUSED=0`` /
``set_fused(False)`` off again). Compile time is paid once per layer shape
and noise input (1-18 s per graph on a 2-core host, less once inductor's
on-disk cache holds it; ``python -m avalanche_rm.bench`` prints it), which a
short job does not win back. If compiling fails (no C++ compiler, an
unsupported device), the read falls back to the eager path for the rest of the
process after one log line.
"""
from __future__ import annotations

import logging
import os
import time

import torch
import torch.nn.functional as F

from .crossbar import ALPHA_FLOOR, SATURATION_SAMPLE
from .noise_source import counter_normals

logger = logging.getLogger("avalanche_rm")

ENV_SWITCH = "AVALANCHE_RM_FUSED"


_ON, _OFF = ("1", "true", "on", "yes"), ("", "0", "false", "off", "no")


def parse_switch(value: str) -> bool:
    """``AVALANCHE_RM_FUSED``'s value as a bool; anything but 1/true/on/yes or 0/false/off/no is refused."""
    v = value.strip().lower()
    if v not in _ON + _OFF:
        raise ValueError(f"{ENV_SWITCH} must be one of {_ON + _OFF[1:]}, got {value!r}")
    return v in _ON


class _State:
    enabled = parse_switch(os.environ.get(ENV_SWITCH, "0"))
    failed: str | None = None
    compiled: dict = {}
    seen: set = set()
    compile_seconds: dict = {}


def set_fused(enabled: bool) -> None:
    """Turn the fused read on or off for this process (the eager path is always available)."""
    if not isinstance(enabled, bool):
        raise ValueError(f"set_fused: enabled must be a bool, got {enabled!r}")
    _State.enabled = enabled


def fused_enabled() -> bool:
    """Whether reads go through the compiled path (switched on and not fallen back)."""
    return _State.enabled and _State.failed is None


def fallback_reason() -> str | None:
    """Why the fused read fell back to eager in this process, or None."""
    return _State.failed


def compile_seconds() -> dict[str, float]:
    """Wall seconds spent in first calls (compilation) per compiled function and input shape."""
    return dict(_State.compile_seconds)


# ------------------------------------------------------------------ tile products
def grouped_tiles(device: torch.device) -> bool:
    """Whether per-tile products on ``device`` run as a oneDNN grouped convolution (CPU with MKL-DNN)."""
    return device.type == "cpu" and torch.backends.mkldnn.is_available()


def conv_weight(w: torch.Tensor) -> torch.Tensor:
    """Tile weights ``[t, rows, out]`` (or one tile ``[in, out]``) as grouped 1x1 convolution weights
    ``[t * out, rows, 1, 1]`` (group ``i`` is tile ``i``)."""
    if w.dim() == 2:
        return w.t().contiguous().view(w.shape[1], w.shape[0], 1, 1)
    t, rows, out = w.shape
    return w.transpose(1, 2).reshape(t * out, rows, 1, 1).contiguous()


def tile_partials(buf: torch.Tensor, w_conv: torch.Tensor, t: int) -> torch.Tensor:
    """Partial sums ``[t, b, out]`` of the tiles of ``buf [b, t * rows]`` (contiguous): tile ``i``'s rows times
    its weights, as one grouped 1x1 convolution over ``b`` positions.

    The vectors are viewed as a channels-last image (``[1, t * rows, b, 1]``,
    no copy); the output comes back channels-last, ``[b, t, out]`` in memory.
    """
    b, width = buf.shape
    image = buf.as_strided((1, width, b, 1), (b * width, 1, width, width))
    part = F.conv2d(image, w_conv, groups=t)  # [1, t * out, b, 1]
    return part.permute(0, 2, 3, 1).reshape(b, t, -1).transpose(0, 1)


# ------------------------------------------------------------------ the computation (out of place, traceable)
def _mvm(codes: torch.Tensor, alpha: torch.Tensor, w: torch.Tensor, w_conv: torch.Tensor | None,
         inv_step: torch.Tensor, out_factor: torch.Tensor, g_row_sum: torch.Tensor, draws: torch.Tensor | None,
         keys: torch.Tensor | None, n_d: float, n_a: float, sigma: float, rows: int, dac_round: bool,
         images: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """From DAC codes ``[b, in]`` (or already zero-padded to the tiles, ``[b, t * rows]``) to
    ``(y [b, out], driven rows, sum code^2 G_row, saturated conversions)``.

    ``w_conv``: ``w`` as :func:`conv_weight` lays it out, to take :func:`tile_partials`; ``None``: ``bmm``.
    ``images > 0``: the vectors are the receptive fields of that many images, in order; ``y`` comes out
    channels first, ``[images, out, b / images]`` (written so by the fused pass, not by a separate transpose).
    """
    b, width = codes.shape
    n_in = g_row_sum.shape[0]
    out = w.shape[-1]
    if w.dim() == 3:
        t = w.shape[0]
        buf = F.pad(codes, (0, t * rows - width)) if t * rows != width else codes
        if w_conv is not None:
            partial = tile_partials(buf, w_conv, t)
        else:
            partial = torch.bmm(buf.view(b, t, rows).transpose(0, 1), w)  # [t, b, out]
    else:
        t, buf = 1, codes
        partial = tile_partials(codes, w_conv, 1) if w_conv is not None else (codes @ w).unsqueeze(0)
    sq = buf * buf  # the padding's zeros add nothing below
    if sigma > 0:
        norm = sq.view(b, t, -1).sum(-1).t().unsqueeze(-1) if t > 1 else sq.sum(-1).view(1, b, 1)
        norm = norm.sqrt() * (sigma / n_d)
        z = counter_normals(t * b * out, keys) if keys is not None else draws
        partial = partial + z.view(t, b, out) * (norm * inv_step)
    step = max(1, b // SATURATION_SAMPLE)
    sample = partial[:, ::step]
    saturated = (sample.abs() > n_a).sum().to(codes.dtype) * (b / sample.shape[1])
    y = partial.clamp(-n_a, n_a).round().sum(0) * alpha * out_factor
    if images:
        y = y.view(images, b // images, out).transpose(1, 2).contiguous()
    # the counts reduce each vector first, in the same pass over the codes as the norms, and add the vectors'
    # sums in float64: a float32 total over a large batch drifted by 6e-5 (16384 fields of 144 codes)
    g = F.pad(g_row_sum, (0, buf.shape[1] - n_in)) if buf.shape[1] != n_in else g_row_sum
    x2g = (sq * g).sum(-1).double().sum().to(codes.dtype)
    if dac_round:
        driven = sq.clamp(max=1.0).sum(-1).double().sum().to(codes.dtype)
    else:
        driven = torch.count_nonzero(sq).to(codes.dtype)
    return y, driven, x2g, saturated


def linear_read(x: torch.Tensor, w: torch.Tensor, w_conv: torch.Tensor | None, inv_step: torch.Tensor,
                out_factor: torch.Tensor, g_row_sum: torch.Tensor, draws: torch.Tensor | None,
                keys: torch.Tensor | None, n_d: float, n_a: float, sigma: float, rows: int, dac_round: bool):
    """Per-vector abs-max DAC coding of ``x [b, in]`` then :func:`_mvm`."""
    alpha = x.abs().amax(dim=-1, keepdim=True).clamp_min(ALPHA_FLOOR)
    codes = x * (n_d / alpha)
    if dac_round:
        codes = codes.round()
    return _mvm(codes, alpha, w, w_conv, inv_step, out_factor, g_row_sum, draws, keys, n_d, n_a, sigma, rows,
                dac_round)


def codes_read(codes: torch.Tensor, alpha: torch.Tensor, w: torch.Tensor, w_conv: torch.Tensor | None,
               inv_step: torch.Tensor, out_factor: torch.Tensor, g_row_sum: torch.Tensor, draws: torch.Tensor | None,
               keys: torch.Tensor | None, n_d: float, n_a: float, sigma: float, rows: int, dac_round: bool,
               images: int = 0):
    """:func:`_mvm` on DAC codes coded elsewhere (convolutions: the layer gathers and codes its receptive fields
    eagerly; compiled, the gather recomputed each field's abs-max for every element and ran slower)."""
    return _mvm(codes, alpha, w, w_conv, inv_step, out_factor, g_row_sum, draws, keys, n_d, n_a, sigma, rows,
                dac_round, images)


_FUNCTIONS = {"linear": linear_read, "codes": codes_read}


def run(kind: str, *args, **static):
    """Call the compiled ``kind`` read (``"linear"``: from inputs, ``"codes"``: from DAC codes and their scales);
    eager after a compile failure (logged once)."""
    fn = _FUNCTIONS[kind]
    if not fused_enabled():
        return fn(*args, **static)
    compiled = _State.compiled.get(kind)
    if compiled is None:
        # dynamic=False: one specialised kernel per layer shape; the recompile limit is raised for models with
        # many distinct layers (each shape is its own cache entry)
        compiled = _State.compiled[kind] = torch.compile(fn, dynamic=False)
    w, w_conv, draws, keys = args[-7], args[-6], args[-2], args[-1]
    key = (kind, args[0].shape, w.shape, args[0].device, draws is not None, keys is not None, w_conv is not None)
    first = key not in _State.seen
    t0 = time.perf_counter()
    try:
        with _recompile_limit():
            out = compiled(*args, **static)
    except Exception as exc:  # noqa: BLE001 - any compiler failure means: use the reference path
        _State.failed = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        logger.warning("avalanche-rm: the fused analogue read could not be compiled (%s); using the eager path "
                       "for the rest of this process (set %s=0 to skip the attempt)", _State.failed[:300],
                       ENV_SWITCH)
        return fn(*args, **static)
    if first:  # the label is formatted once per graph, not on every read
        _State.seen.add(key)
        noise = "table/exact draws" if draws is not None else "counter draws" if keys is not None else "no noise"
        label = f"{kind} x{tuple(key[1])} w{tuple(key[2])} {key[3]} {noise}"
        _State.compile_seconds[label] = time.perf_counter() - t0
    return out


class _recompile_limit:
    """Let dynamo keep one entry per layer shape (its default of 8 would silently fall back on large models)."""

    LIMIT = 256

    def __enter__(self):
        cfg = torch._dynamo.config
        self.name = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
        self.old = getattr(cfg, self.name)
        setattr(cfg, self.name, max(self.old, self.LIMIT))
        return self

    def __exit__(self, *exc) -> None:
        setattr(torch._dynamo.config, self.name, self.old)
