"""Loggers that keep the hardware metrics Avalanche's fixed-column CSVLogger drops."""
from __future__ import annotations

import csv
import os

from avalanche.logging import CSVLogger

from ..costs.fields import METRIC_PREFIX


class HardwareCSVLogger(CSVLogger):
    """Avalanche's ``CSVLogger`` plus ``hardware_metrics.csv``: one row per hardware metric value.

    Columns: ``name, value, x`` where ``name`` is the full Avalanche metric name
    (e.g. ``HW_energy_pJ/train_phase/train_stream/Task000/Exp001``), so the
    names are stable and can be pivoted per experience or stream.
    """

    def __init__(self, log_folder: str | None = None, prefix: str = METRIC_PREFIX) -> None:
        super().__init__(log_folder=log_folder)
        self.prefix = prefix
        self._hw_path = os.path.join(self.log_folder, "hardware_metrics.csv")
        self._hw_file = open(self._hw_path, "w", newline="")
        self._hw_writer = csv.writer(self._hw_file)
        self._hw_writer.writerow(["name", "value", "x"])

    def log_single_metric(self, name, value, x_plot) -> None:
        super().log_single_metric(name, value, x_plot)
        if name.startswith(self.prefix):
            self._hw_writer.writerow([name, value, x_plot])
            self._hw_file.flush()

    def close(self) -> None:
        super().close()
        if not self._hw_file.closed:
            self._hw_file.close()

    def __getstate__(self):
        d = super().__getstate__() if hasattr(super(), "__getstate__") else dict(self.__dict__)
        d = dict(d)
        d.pop("_hw_file", None)
        d.pop("_hw_writer", None)
        return d

    def __setstate__(self, d):
        if hasattr(super(), "__setstate__"):
            super().__setstate__(d)
        else:
            self.__dict__.update(d)
        self._hw_file = open(self._hw_path, "a", newline="")
        self._hw_writer = csv.writer(self._hw_file)
