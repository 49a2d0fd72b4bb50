"""Third-party warnings known to be noise in avalanche-rm runs, and the one switch that silences them.

The CLI calls :func:`silence_known_noise` before anything imports Avalanche or
Flower; library users may call it too. Only the warnings listed in
:data:`KNOWN_NOISE` are filtered (matched on category and message); every other
warning, and every avalanche-rm warning (e.g. uncalibrated ADCs), still shows.
"""
from __future__ import annotations

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


def silence_known_noise() -> None:
    """Ignore exactly the warnings in :data:`KNOWN_NOISE` (idempotent)."""
    for category, message, _ in KNOWN_NOISE:
        warnings.filterwarnings("ignore", message=f".*{message}", category=category)
