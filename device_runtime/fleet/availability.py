"""When an emulated device reports itself charging, on Wi-Fi and idle: always, a diurnal cycle
per device (its own phase, a time zone), or a trace of availability windows."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field


def read_trace(path: str) -> dict[int, list[tuple[float, float]]]:
    """An availability trace: CSV rows device_index,start_s,end_s (a header or # lines skipped)."""
    windows: dict[int, list[tuple[float, float]]] = {}
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if not row or row[0].startswith("#") or not row[0].strip().isdigit():
                continue
            windows.setdefault(int(row[0]), []).append((float(row[1]), float(row[2])))
    return windows


@dataclass
class Availability:
    """always | diurnal[:PERIOD_S] | trace:FILE (CSV rows: device_index,start_s,end_s)."""

    kind: str = "always"
    period_s: float = 60.0
    windows: dict[int, list[tuple[float, float]]] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str) -> "Availability":
        kind, _, arg = spec.partition(":")
        if kind == "always":
            return cls()
        if kind == "diurnal":
            return cls("diurnal", float(arg or 60.0))
        if kind == "trace":
            return cls("trace", windows=read_trace(arg))
        raise ValueError(f"unknown availability {spec!r}; use always, diurnal[:PERIOD_S] or trace:FILE")

    def available(self, index: int, phase: float, elapsed: float) -> bool:
        if self.kind == "always":
            return True
        if self.kind == "diurnal":
            # Each device has its own time zone (phase); available ~half of the "day", peaking at night.
            return math.sin(2 * math.pi * (elapsed / self.period_s + phase)) > -0.2
        return any(a <= elapsed < b for a, b in self.windows.get(index, []))
