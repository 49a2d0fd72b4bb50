"""Third-party warnings known to be noise in avalanche-rm runs, and the one switch that silences them.

The CLI calls :func:`silence_known_noise` before anything imports Avalanche or
Flower; library users may call it too. Only the warnings listed in
:data:`KNOWN_NOISE` are filtered (matched on category and message); every other
warning, and every avalanche-rm warning (e.g. uncalibrated ADCs), still shows.
"""
from __future__ import annotations

import re
import warnings

#: (category, message regex, why it is noise here)
KNOWN_NOISE: tuple[tuple[type[Warning], str, str], ...] = (
    (UserWarning, r"no QP solver found",
     "Avalanche imports qpsolvers for GEM at import time; no avalanche-rm code path solves a QP"),
    (UserWarning, r"No loggers specified, metrics will not be logged",
     "avalanche-rm jobs pass loggers=[] on purpose and print their own tables"),
    (DeprecationWarning, r"Call to deprecated function update",
     "raised inside Avalanche 0.6's own ReplayPlugin (its storage policy), not by avalanche-rm code"),
    (FutureWarning, r"Ray will no longer override accelerator visible devices",
     "a Ray notice about a future default; simulated chips request no GPU"),
)


def _is_noise(message, category) -> bool:
    text = str(message)
    return any(issubclass(category, cat) and re.search(pattern, text) for cat, pattern, _ in KNOWN_NOISE)


def silence_known_noise() -> None:
    """Ignore exactly the warnings in :data:`KNOWN_NOISE` (idempotent).

    Besides the usual filters, ``warnings.showwarning`` is wrapped: Avalanche's
    ``@deprecated`` re-inserts a ``"once"`` filter in front of all others on
    every call, so a filter alone cannot hold that one back.
    """
    for category, message, _ in KNOWN_NOISE:
        warnings.filterwarnings("ignore", message=f".*{message}", category=category)
    show = warnings.showwarning
    if getattr(show, "_avalanche_rm_quiet", False):
        return

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if not _is_noise(message, category):
            show(message, category, filename, lineno, file, line)

    showwarning._avalanche_rm_quiet = True
    warnings.showwarning = showwarning
