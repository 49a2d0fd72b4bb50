"""The whole hybrid chip: RM device, crossbar periphery and digital unit."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from .crossbar import CrossbarConfig
from .device import RMDeviceConfig
from .digital import DigitalUnitConfig


@dataclass(frozen=True)
class HardwareConfig:
    """A hybrid analogue-digital accelerator; ``source`` cites every number in it."""

    device: RMDeviceConfig = field(default_factory=RMDeviceConfig)
    crossbar: CrossbarConfig = field(default_factory=CrossbarConfig)
    digital: DigitalUnitConfig = field(default_factory=DigitalUnitConfig)
    name: str = "custom"
    source: str = "user supplied"
    #: fixed unit prices by name (see :class:`avalanche_rm.costs.prices.Prices`), e.g. ``(("adc_pj", 3.1),)``
    price_overrides: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        for f, cls in (("device", RMDeviceConfig), ("crossbar", CrossbarConfig), ("digital", DigitalUnitConfig)):
            if not isinstance(getattr(self, f), cls):
                raise ValueError(f"HardwareConfig.{f} must be a {cls.__name__}, got {type(getattr(self, f)).__name__}")
        if isinstance(self.price_overrides, dict):
            object.__setattr__(self, "price_overrides", tuple(sorted(self.price_overrides.items())))
        pairs = tuple(tuple(p) for p in self.price_overrides)
        for p in pairs:
            if len(p) != 2 or not isinstance(p[0], str) or isinstance(p[1], bool) \
                    or not isinstance(p[1], (int, float)) or not math.isfinite(p[1]) or p[1] < 0:
                raise ValueError(f"HardwareConfig.price_overrides must be (name, pJ >= 0) pairs, got {p!r}")
        object.__setattr__(self, "price_overrides", tuple((n, float(v)) for n, v in pairs))
        g0 = self.crossbar.g_zero_us
        if self.crossbar.mapping == "offset" and g0 is not None:
            if not self.device.g_min_us < g0 < self.device.g_max_us:
                raise ValueError(
                    f"CrossbarConfig.g_zero_us must lie strictly inside the device window "
                    f"({self.device.g_min_us}, {self.device.g_max_us}), got {g0!r}"
                )

    def replace(self, **changes) -> "HardwareConfig":
        """Copy with fields changed; nested configs accept dicts of their own fields."""
        for f in ("device", "crossbar", "digital"):
            if isinstance(changes.get(f), dict):
                changes[f] = dataclasses.replace(getattr(self, f), **changes[f])
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "HardwareConfig":
        d = dict(d)
        kw = {}
        for f, sub in (("device", RMDeviceConfig), ("crossbar", CrossbarConfig), ("digital", DigitalUnitConfig)):
            if f in d:
                v = dict(d.pop(f))
                if f == "device" and v.get("prog_noise_poly_us") is not None:
                    v["prog_noise_poly_us"] = tuple(v["prog_noise_poly_us"])
                unknown = set(v) - {x.name for x in dataclasses.fields(sub)}
                if unknown:
                    raise ValueError(f"unknown {sub.__name__} field(s): {sorted(unknown)}")
                kw[f] = sub(**v)
        if "price_overrides" in d:
            d["price_overrides"] = tuple(tuple(p) for p in d["price_overrides"])
        unknown = set(d) - {"name", "source", "price_overrides"}
        if unknown:
            raise ValueError(f"unknown HardwareConfig field(s): {sorted(unknown)}")
        return cls(**kw, **d)
