"""Device state probes for Linux edge devices (Raspberry Pi OS and the like).

- charging: any ``/sys/class/power_supply/*`` of type Mains/USB that is ``online``, or a
  battery whose ``status`` is Charging/Full. A board with no battery (a Pi on its
  power supply) counts as charging with battery 1.0.
- unmetered: the default route's interface (``/proc/net/route``) is Wi-Fi (has a
  ``wireless`` entry in sysfs) or Ethernet; a cellular modem (wwan*, usb*, rmnet*, ppp*) is metered.
- idle: 1-minute load average below 0.5 per core.

Every probe can be overridden, for emulators and tests, by ``FEDGE_CHARGING``,
``FEDGE_UNMETERED``, ``FEDGE_IDLE`` (1/0/true/false) and ``FEDGE_BATTERY`` (0..1), or by
the `fedge device` flags of the same names.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from protocol.messages import DeviceState

SYS = Path("/sys/class/power_supply")


def _flag(name: str) -> bool | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return value.strip().lower() in ("1", "true", "yes", "on")


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def probe_power(root: Path = SYS) -> tuple[bool, float]:
    supplies = list(root.iterdir()) if root.is_dir() else []
    batteries = [s for s in supplies if _read(s / "type") == "Battery"]
    online = any(_read(s / "online") == "1" for s in supplies if _read(s / "type") in ("Mains", "USB", "USB_PD"))
    if not batteries:
        return True, 1.0
    capacity = _read(batteries[0] / "capacity")
    level = int(capacity) / 100.0 if capacity.isdigit() else 0.0
    charging = online or _read(batteries[0] / "status") in ("Charging", "Full")
    return charging, min(max(level, 0.0), 1.0)


def probe_unmetered(route_file: Path = Path("/proc/net/route"), net: Path = Path("/sys/class/net")) -> bool:
    iface = ""
    for line in _read(route_file).splitlines()[1:]:
        fields = line.split()
        if len(fields) > 2 and fields[1] == "00000000":
            iface = fields[0]
            break
    if not iface or iface.startswith(("wwan", "rmnet", "ppp", "usb")):
        return False
    return (net / iface / "wireless").exists() or iface.startswith(("eth", "en", "wl"))


def probe_idle() -> bool:
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1) < 0.5
    except OSError:
        return False


def probe_state(runtime_version: str, overrides: dict | None = None) -> DeviceState:
    overrides = overrides or {}
    charging, battery = probe_power()
    env_battery = os.environ.get("FEDGE_BATTERY")
    values = {
        "charging": _flag("FEDGE_CHARGING"),
        "unmetered": _flag("FEDGE_UNMETERED"),
        "idle": _flag("FEDGE_IDLE"),
        "battery": float(env_battery) if env_battery else None,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return DeviceState(
        charging=charging if values["charging"] is None else values["charging"],
        unmetered=probe_unmetered() if values["unmetered"] is None else values["unmetered"],
        idle=probe_idle() if values["idle"] is None else values["idle"],
        battery=battery if values["battery"] is None else float(values["battery"]),
        free_storage_mb=shutil.disk_usage(".").free / 2**20,
        runtime="litert",
        runtime_version=runtime_version,
    )
