"""Population models: when each simulated device is eligible to train (charging, idle and on
unmetered Wi-Fi at once), how fast it computes, how fast its network is, how often it drops
out while training. Read from a population file (`fedge simulate --population FILE.toml`);
every section and key is optional, with the defaults below:

    [availability]
    model = "diurnal"        # "diurnal", "always", or "trace"
    timezones = [-8, -5, 0, 1, 5.5, 8, 9]   # UTC offsets the devices are spread over (uniformly)
    night_start_h = 23.0     # the local hour a device's nightly window opens, on average ...
    night_start_sd_h = 1.5   # ... with this spread across devices
    night_hours = 6.0        # how long the window lasts, on average ...
    night_hours_sd = 1.5     # ... with this spread
    daytime = 0.03           # the chance of being eligible at a daytime check-in anyway
    trace = "trace.csv"      # model = "trace": rows device,start_s,end_s (virtual seconds from the start)

    [speed]
    model = "lognormal"      # "lognormal", or "classes"
    example_s = 0.002        # seconds per example and epoch on a median device
    sigma = 1.0              # lognormal: exp(sigma x Z), clamped below at 0.2 of the median
    # model = "classes": [[speed.class]] tables with share and example_s, e.g.
    # [[speed.class]]
    # share = 0.7
    # example_s = 0.002

    [network]
    down_mbps = 20.0         # median downlink
    up_mbps = 5.0            # median uplink
    sigma = 0.7              # lognormal spread of both
    upload_failure = 0.0     # the chance an upload's connection breaks (half before the coordinator
                             # has the update, half after, its answer lost); the device retries
                             # as `fedge device` does: backoff with jitter, for up to 120 s

    [dropout]
    training = 0.05          # the chance a device vanishes while training (it comes back later)

The simulation starts at midnight UTC of its virtual day. `write_example_trace` makes the
small trace file shipped as an example (no data is downloaded).
"""

from __future__ import annotations

import csv
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from device_runtime.fleet.availability import read_trace
from simulation.availability import MODELS, AlwaysAvailable, NightlyAvailability, TraceAvailability


DEFAULTS = {
    "availability": {"model": "diurnal", "timezones": [-8, -5, 0, 1, 5.5, 8, 9], "night_start_h": 23.0,
                     "night_start_sd_h": 1.5, "night_hours": 6.0, "night_hours_sd": 1.5, "daytime": 0.03,
                     "trace": ""},
    "speed": {"model": "lognormal", "example_s": 0.002, "sigma": 1.0, "class": []},
    "network": {"down_mbps": 20.0, "up_mbps": 5.0, "sigma": 0.7, "upload_failure": 0.0},
    "dropout": {"training": 0.05},
}
_BOUNDS = {("availability", "night_start_h"): (0.0, 24.0), ("availability", "night_start_sd_h"): (0.0, 12.0),
           ("availability", "night_hours"): (0.0, 24.0), ("availability", "night_hours_sd"): (0.0, 12.0),
           ("availability", "daytime"): (0.0, 1.0), ("speed", "example_s"): (1e-7, 60.0),
           ("speed", "sigma"): (0.0, 5.0), ("network", "down_mbps"): (1e-3, 1e5), ("network", "up_mbps"): (1e-3, 1e5),
           ("network", "sigma"): (0.0, 5.0), ("network", "upload_failure"): (0.0, 0.9),
           ("dropout", "training"): (0.0, 1.0)}


def read_population(path: str | None) -> dict:
    """The population file's settings over the defaults; a bad section, key or value is a
    ValueError naming it."""
    settings = {section: dict(values) for section, values in DEFAULTS.items()}
    if not path:
        return settings
    try:
        raw = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"cannot read the population file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    for section, values in raw.items():
        if section not in DEFAULTS or not isinstance(values, dict):
            raise ValueError(f"{path}: unknown section [{section}]; use {', '.join(DEFAULTS)}")
        for key, value in values.items():
            if key not in DEFAULTS[section]:
                raise ValueError(f"{path}: unknown key {section}.{key}; use {', '.join(DEFAULTS[section])}")
            bounds = _BOUNDS.get((section, key))
            if bounds is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                       or not bounds[0] <= value <= bounds[1] or not math.isfinite(value)):
                raise ValueError(f"{path}: {section}.{key} must be a number in [{bounds[0]:g}, {bounds[1]:g}]")
            settings[section][key] = value
    if settings["availability"]["model"] not in MODELS:
        raise ValueError(f"{path}: availability.model must be one of {', '.join(repr(m) for m in MODELS)}")
    if settings["speed"]["model"] not in ("lognormal", "classes"):
        raise ValueError(f"{path}: speed.model must be 'lognormal' or 'classes'")
    if settings["speed"]["model"] == "classes":
        classes = settings["speed"]["class"]
        if not classes or not all(isinstance(c, dict) and set(c) == {"share", "example_s"} for c in classes):
            raise ValueError(f"{path}: speed.model 'classes' needs [[speed.class]] tables with share and example_s")
    if settings["availability"]["model"] == "trace" and not settings["availability"]["trace"]:
        raise ValueError(f"{path}: availability.model 'trace' needs availability.trace = \"FILE.csv\"")
    return settings


@dataclass
class Population:
    """Each device's sampled traits, as arrays indexed by device, and ``availability``, the
    availability model over them (`simulation.availability`). A value: other settings make
    another population (`dataclasses.replace`), not an edit of this one."""

    settings: dict
    tz_h: np.ndarray  # UTC offset
    night_start_h: np.ndarray  # local hour the nightly window opens
    night_hours: np.ndarray
    example_s: np.ndarray  # compute seconds per example and epoch
    slowdown: np.ndarray  # fleet's --train-time multiplier: max(1, exp(sigma x Z)), as `fedge fleet --speed` draws it
    down_bps: np.ndarray  # bytes per second
    up_bps: np.ndarray
    windows: dict[int, list[tuple[float, float]]] = field(default_factory=dict)  # trace model

    def __post_init__(self) -> None:
        a = self.settings["availability"]
        if a["model"] == "always":
            self.availability = AlwaysAvailable()
        elif a["model"] == "trace":
            self.availability = TraceAvailability(self.windows)
        else:
            self.availability = NightlyAvailability(self.tz_h, self.night_start_h, self.night_hours, a["daytime"])

    @classmethod
    def sample(cls, settings: dict, n: int, rng: np.random.Generator) -> "Population":
        a, s, net = settings["availability"], settings["speed"], settings["network"]
        tz = rng.choice(np.asarray(a["timezones"], float), n)
        start = np.mod(a["night_start_h"] + a["night_start_sd_h"] * rng.standard_normal(n), 24.0)
        hours = np.clip(a["night_hours"] + a["night_hours_sd"] * rng.standard_normal(n), 0.5, 23.5)
        if s["model"] == "classes":
            shares = np.asarray([c["share"] for c in s["class"]], float)
            speeds = np.asarray([c["example_s"] for c in s["class"]], float)
            example_s = speeds[rng.choice(len(speeds), n, p=shares / shares.sum())]
            slowdown = np.maximum(1.0, example_s / speeds.min())
        else:
            factor = np.exp(s["sigma"] * rng.standard_normal(n))
            example_s = s["example_s"] * np.maximum(0.2, factor)
            slowdown = np.maximum(1.0, factor)
        down = net["down_mbps"] * 1e6 / 8 * np.exp(net["sigma"] * rng.standard_normal(n))
        up = net["up_mbps"] * 1e6 / 8 * np.exp(net["sigma"] * rng.standard_normal(n))
        windows = read_trace(a["trace"]) if a["model"] == "trace" else {}
        return cls(settings, tz, start, hours, example_s, slowdown, down, up, windows)

    @property
    def dropout(self) -> float:
        return float(self.settings["dropout"]["training"])

    @property
    def upload_failure(self) -> float:
        return float(self.settings["network"]["upload_failure"])


def write_example_trace(path: str | Path, devices: int = 20, days: int = 2, seed: int = 0) -> Path:
    """A small availability trace (device,start_s,end_s), a night window per device and day,
    generated here (no data is downloaded)."""
    rng = np.random.default_rng(seed)
    path = Path(path)
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["# device", "start_s", "end_s"])
        for d in range(devices):
            tz = rng.choice([-8, -5, 0, 1, 8])
            for day in range(days):
                start = (day * 24 + (23 - tz) % 24 + rng.normal(0, 1.0)) * 3600.0
                out.writerow([d, f"{max(0.0, start):.0f}", f"{max(0.0, start) + rng.uniform(4, 8) * 3600:.0f}"])
    return path
