"""Iterative write-verify programming of resistive-memory cells, vectorised.

Every cell in a job gets one verify read; a cell whose read already lies
inside the acceptance window of its target (``wv_tolerance_us``) is left alone.
The others get a write pulse and a verify read per round until their read lies
inside the guard band (the window shrunk by ``verify_guard_sigmas`` read-noise
sigmas, so that a cell accepted on a noisy read is inside the window with high
confidence). Converged cells drop out (index compaction), so the cost of a
round follows the number of cells still being programmed, not the array size.
Stuck cells never move; they burn pulses until the iteration limit unless their
stuck value already lies inside the window.

This module counts (pulses, verify reads, the conductance each pulse and read
sees, rounds per row group); :mod:`avalanche_rm.costs.pricing` turns the counts
into energy and latency.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ._validate import check_choice
from .device import RMDeviceConfig, stuck_value_us
from .noise_source import PROGRAMMING_SAMPLERS, TableWindows


@dataclass
class ProgrammingReport:
    """Summary of one programming job (plain numbers, JSON-friendly).

    The counts come from :func:`write_verify`; ``energy_pj``, ``pulse_energy_pj``,
    ``verify_energy_pj`` and ``latency_ns`` are filled by
    :func:`avalanche_rm.costs.pricing.price_programming`.
    """

    cells: int = 0
    pulses: int = 0
    verify_reads: int = 0
    failed_cells: int = 0
    energy_pj: float = 0.0
    pulse_energy_pj: float = 0.0
    verify_energy_pj: float = 0.0
    latency_ns: float = 0.0
    pulse_g_sum_us: float = 0.0     # sum over pulses of the cell's conductance when pulsed
    verify_g_sum_us: float = 0.0    # sum over verify reads of the conductance read
    rounds: int = 0                 # sum over row groups of the slowest cell's pulses
    groups: int = 0                 # row groups programmed one after another
    error_rms_us: float = 0.0
    pulse_histogram: list[int] = field(default_factory=list)
    failed_per_layer: dict[str, int] = field(default_factory=dict)
    failed_per_tile: dict[str, list] = field(default_factory=dict)
    remapped_columns: dict[str, int] = field(default_factory=dict)

    def __iadd__(self, other: "ProgrammingReport") -> "ProgrammingReport":
        n0, n1 = self.cells, other.cells
        ssq = self.error_rms_us ** 2 * n0 + other.error_rms_us ** 2 * n1
        for f in ("cells", "pulses", "verify_reads", "failed_cells", "energy_pj", "pulse_energy_pj",
                  "verify_energy_pj", "latency_ns", "pulse_g_sum_us", "verify_g_sum_us", "rounds", "groups"):
            setattr(self, f, getattr(self, f) + getattr(other, f))
        self.error_rms_us = (ssq / max(n0 + n1, 1)) ** 0.5
        h = list(self.pulse_histogram)
        for i, c in enumerate(other.pulse_histogram):
            if i < len(h):
                h[i] += c
            else:
                h.append(c)
        self.pulse_histogram = h
        for k, v in other.failed_per_layer.items():
            self.failed_per_layer[k] = self.failed_per_layer.get(k, 0) + v
        self.failed_per_tile.update(other.failed_per_tile)
        self.remapped_columns.update(other.remapped_columns)
        return self

    @property
    def pulses_per_cell(self) -> float:
        return self.pulses / self.cells if self.cells else 0.0

    @property
    def success_rate(self) -> float:
        return 1.0 - self.failed_cells / self.cells if self.cells else 1.0

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["pulses_per_cell"] = self.pulses_per_cell
        d["success_rate"] = self.success_rate
        return d


@dataclass
class WriteVerifyResult:
    """Per-cell outcome of :func:`write_verify` (tensors) plus the report."""

    g_us: torch.Tensor
    pulses: torch.Tensor
    failed: torch.Tensor
    report: ProgrammingReport


def write_verify(device: RMDeviceConfig, g_start_us: torch.Tensor, g_target_us: torch.Tensor,
                 generator: torch.Generator, fault_code: torch.Tensor | None = None,
                 parallel_cells: int = 128, sampler: str = "exact") -> WriteVerifyResult:
    """Program cells from ``g_start_us`` towards ``g_target_us`` (tensors of equal shape).

    Pulse model: ``g <- clamp(g + write_gain * (target - g) + N(0, sigma(target)))``
    (the device's :meth:`~RMDeviceConfig.programming_noise`). Verify reads see the
    device's read noise. A cell whose first read lies within ``wv_tolerance_us`` of
    its target gets no pulse; a pulsed cell stops once its read lies within the
    guard band ``wv_tolerance_us - verify_guard_sigmas * sigma_read``.

    Latency counts: ``parallel_cells`` consecutive cells are programmed together
    (one row at a time, as row-parallel write schemes do); a group takes as many
    pulse+verify rounds as its slowest cell.

    ``sampler``: where the pulse and read noise come from. ``"exact"`` (default)
    draws every value from ``generator``; ``"table"`` takes windows of a shared
    N(0, 1) table at offsets seeded from ``generator``
    (:class:`~avalanche_rm.hardware.noise_source.TableWindows`: draws within a
    call are distinct exact normals; torch's CPU generator is ~25 % of a job, so
    this runs ~1.4x faster with the same outcome statistics, but other draws than
    ``"exact"``: every programmed chip differs from the one ``"exact"`` gives).
    Both are reproducible from the generator's state, and both advance it.
    """
    check_choice("write_verify", "sampler", sampler, PROGRAMMING_SAMPLERS)
    if g_start_us.shape != g_target_us.shape:
        raise ValueError(f"g_start_us shape {tuple(g_start_us.shape)} != g_target_us shape "
                         f"{tuple(g_target_us.shape)}")
    if not torch.isfinite(g_target_us).all():
        raise ValueError("g_target_us contains NaN or Inf")
    dev = g_target_us.device
    target = g_target_us.reshape(-1).to(torch.float32)
    g = g_start_us.reshape(-1).to(device=dev, dtype=torch.float32).clone()
    n = target.numel()
    stuck_all = None
    if fault_code is not None:
        fault_code = fault_code.reshape(-1).to(dev)
        g = stuck_value_us(device, fault_code, g)
        if bool((fault_code != 0).any()):
            stuck_all = fault_code != 0
    pulses = torch.zeros(n, dtype=torch.int32, device=dev)
    sigma_read = device.read_noise().sigma_us
    prog = device.programming_noise()
    tol = device.wv_tolerance_us
    # pulsed cells converge into a guard band, so that a cell accepted on a noisy read sits inside the window
    tol_verify = max(tol - device.verify_guard_sigmas * sigma_read, 0.25 * tol)
    g_lo, g_hi, gain = device.g_min_us, device.g_max_us, device.write_gain
    const_sigma = prog.constant_us

    if sampler == "table":
        windows = TableWindows(int(torch.randint(0, 2 ** 62, (1,), generator=generator, device=generator.device)))

        def randn(m: int) -> torch.Tensor:  # read-only view
            return windows.normal(m, dev)
    else:
        def randn(m: int) -> torch.Tensor:
            return torch.randn(m, generator=generator, device=generator.device).to(dev)

    reading = g if sigma_read == 0 else g + sigma_read * randn(n)
    sum_g_verify = g.sum()
    n_verify = n
    # the first read decides against the acceptance window itself: cells already inside it are left alone
    idx = torch.nonzero((reading - target).abs() > tol).squeeze(1)
    del reading
    ga, ta = g[idx], target[idx]
    sa = const_sigma if const_sigma is not None else prog.sigma_us(ta)
    st = stuck_all[idx] if stuck_all is not None else None
    pc = torch.zeros(idx.numel(), dtype=torch.int32, device=dev)  # pulses per slot
    act: torch.Tensor | None = None  # None: every slot still programming
    sum_g_pulse = torch.zeros((), device=dev)
    # read noise can only flip the verify decision near the window edge
    band = 8.0 * sigma_read
    k = 0

    def flush(rows: torch.Tensor | None) -> None:
        """Write finished slots (``rows`` of the slot arrays; None = all) back to the cell arrays."""
        if rows is None:
            g[idx] = ga
            pulses[idx] = pc
            return
        sel = idx.index_select(0, rows)
        g[sel] = ga.index_select(0, rows)
        pulses[sel] = pc.index_select(0, rows)

    while k < device.wv_max_iterations and idx.numel() > 0:
        k += 1
        m = idx.numel()
        if act is None:
            sum_g_pulse = sum_g_pulse + ga.sum()
        else:
            actf = act.to(ga.dtype)
            sum_g_pulse = sum_g_pulse + torch.dot(ga, actf)
        noise = randn(m)
        new = torch.lerp(ga, ta, gain)
        (new.add_(noise, alpha=sa) if const_sigma is not None else new.addcmul_(noise, sa)).clamp_(g_lo, g_hi)
        if st is not None:
            new = torch.where(st, ga, new)
        if act is not None:
            new = torch.where(act, new, ga)  # finished slots stay put until compaction
            pc.add_(act.to(pc.dtype))
            sum_g_verify = sum_g_verify + torch.dot(new, actf)
        else:
            pc.add_(1)
            sum_g_verify = sum_g_verify + new.sum()
        err = (new - ta).abs_()
        keep = err > tol_verify
        if sigma_read > 0:
            near = (err - tol_verify).abs_() < band
            if act is not None:
                near &= act
            rows = torch.nonzero(near).squeeze(1)
            nb = rows.numel()
            if nb:
                r = new.index_select(0, rows) + sigma_read * randn(nb) - ta.index_select(0, rows)
                keep.index_put_((rows,), r.abs_() > tol_verify)
        if act is not None:
            keep &= act
            n_verify += int(act.sum())
        else:
            n_verify += m
        ga = new
        n_keep = int(keep.sum())
        if n_keep == 0:
            flush(None)
            idx = idx[:0]
            break
        if n_keep < 0.6 * m:  # compact: slots of finished cells go back to the array
            flush(torch.nonzero(~keep).squeeze(1))
            rows = torch.nonzero(keep).squeeze(1)
            idx, ga, ta, pc = (t.index_select(0, rows) for t in (idx, ga, ta, pc))
            if const_sigma is None:
                sa = sa.index_select(0, rows)
            if st is not None:
                st = st.index_select(0, rows)
            act = None
        else:
            act = keep
    if idx.numel() > 0:
        flush(None)

    failed = (g - target).abs() > tol
    n_pulses = int(pulses.sum())
    pad = (-n) % parallel_cells
    grouped = torch.nn.functional.pad(pulses, (0, pad)).view(-1, parallel_cells)
    hist = torch.bincount(pulses.to(torch.int64)).tolist() if n else []
    err = g - target
    report = ProgrammingReport(
        cells=n, pulses=n_pulses, verify_reads=int(n_verify), failed_cells=int(failed.sum()),
        pulse_g_sum_us=float(sum_g_pulse), verify_g_sum_us=float(sum_g_verify),
        rounds=int(grouped.amax(dim=1).sum()), groups=int(grouped.shape[0]),
        error_rms_us=float(err.pow(2).mean().sqrt()) if n else 0.0, pulse_histogram=hist,
    )
    return WriteVerifyResult(g.view_as(g_target_us), pulses.view(g_target_us.shape), failed.view(g_target_us.shape),
                             report)


def residual_write_noise(device: RMDeviceConfig, g_target_us: torch.Tensor, sigma_us: float,
                         generator: torch.Generator) -> torch.Tensor:
    """Conductances after a one-shot write with residual error ``N(0, sigma_us)``, clamped to the window.

    The reference code's deployment model (arXiv 2601.10037 code, ``rram_eval_basic``):
    additive Gaussian on G, no verify loop, sigma swept over 1-10 uS.
    """
    if isinstance(sigma_us, bool) or not isinstance(sigma_us, (int, float)) or not sigma_us >= 0 \
            or sigma_us == float("inf"):
        raise ValueError(f"sigma_us must be a finite number >= 0, got {sigma_us!r}")
    noise = torch.randn(g_target_us.shape, generator=generator, device=g_target_us.device)
    return (g_target_us + float(sigma_us) * noise).clamp(device.g_min_us, device.g_max_us)
