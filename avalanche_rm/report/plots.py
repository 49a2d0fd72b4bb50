"""Plots for reports (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def accuracy_per_experience(series: dict[str, list[float]], title: str = "accuracy after each experience",
                            axis: str = "experience"):
    """Accuracy after each experience (or round): one line per series, integer ticks labelled by step."""
    def draw(path: Path) -> None:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        n = max((len(ys) for ys in series.values()), default=0)
        for name, ys in series.items():
            ax.plot(range(1, len(ys) + 1), [100 * y for y in ys], marker="o", label=name)
        ax.set_xticks(range(1, n + 1), [str(i) for i in range(1, n + 1)])
        ax.set_xlabel(f"{axis} (1 = after the first {axis})")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(title)
        ax.legend(fontsize=7)
        _save(fig, path)
    return draw


def energy_by_phase(costs: dict[str, dict[str, float]], title: str = "energy per phase (uJ)"):
    """Stacked bars: one bar per strategy, one segment per phase."""
    def draw(path: Path) -> None:
        phases = sorted({p for c in costs.values() for p in c})
        fig, ax = plt.subplots(figsize=(6.5, 3.8))
        names = list(costs)
        bottom = [0.0] * len(names)
        for ph in phases:
            vals = [costs[n].get(ph, 0.0) / 1e6 for n in names]
            ax.bar(names, vals, bottom=bottom, label=ph)
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.set_ylabel("energy (uJ)")
        ax.set_title(title)
        ax.tick_params(axis="x", labelsize=7, rotation=15)
        ax.legend(fontsize=7)
        _save(fig, path)
    return draw


def histogram(values: list[float] | list[int], xlabel: str, title: str, counts: bool = False, bins: int = 50):
    """``counts=True``: ``values[i]`` is the count of bin ``i`` (e.g. a pulse histogram)."""
    def draw(path: Path) -> None:
        fig, ax = plt.subplots(figsize=(5.5, 3.2))
        if counts:
            ax.bar(range(len(values)), values)
        else:
            ax.hist(values, bins=bins)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("cells")
        ax.set_title(title)
        _save(fig, path)
    return draw


def before_after(rows: dict[str, tuple[float, float, float, float]], title: str = "forget / retain accuracy"):
    """rows: name -> (forget before, forget after, retain before, retain after)."""
    def draw(path: Path) -> None:
        fig, ax = plt.subplots(figsize=(7.5, 3.5))
        names = list(rows)
        w = 0.2
        xs = range(len(names))
        labels = ("forget before", "forget after", "retain before", "retain after")
        for k in range(4):
            ax.bar([x + (k - 1.5) * w for x in xs], [100 * rows[n][k] for n in names], w, label=labels[k])
        ax.set_xticks(list(xs))
        ax.set_xticklabels(names, fontsize=7, rotation=15)
        ax.set_ylabel("accuracy (%)")
        ax.set_title(title)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        _save(fig, path)
    return draw


def grouped_bars(groups: dict[str, dict[str, float]], ylabel: str, title: str, log: bool = False):
    """One group of bars per key of ``groups``, one bar per series inside it (missing/NaN drawn as 0)."""
    def draw(path: Path) -> None:
        names = list(groups)
        series = list(dict.fromkeys(s for g in groups.values() for s in g))
        fig, ax = plt.subplots(figsize=(max(5.5, 1.1 * len(names)), 3.6))
        w = 0.8 / max(len(series), 1)
        for k, s in enumerate(series):
            vals = [groups[n].get(s, 0.0) for n in names]
            vals = [0.0 if v != v else v for v in vals]  # NaN -> 0
            ax.bar([i + (k - (len(series) - 1) / 2) * w for i in range(len(names))], vals, w, label=s)
        ax.set_xticks(list(range(len(names))))
        ax.set_xticklabels(names, fontsize=7, rotation=15)
        if log:
            ax.set_yscale("log")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        if len(series) > 1:
            ax.legend(fontsize=7)
        _save(fig, path)
    return draw
