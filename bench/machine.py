"""What the benchmarks say about the machine they ran on, and how they keep a process on its
own cores (so that on 2 cores a coordinator and its load client do not share one)."""

from __future__ import annotations

import os
import platform
import subprocess


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() + f" x{os.cpu_count()}"
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def pin(pid: int, cores: set[int]) -> bool:
    """Keep a process (0: this one), all its threads, on ``cores`` (util-linux's taskset: the
    threads it made already are pinned one by one); False where the machine has one core."""
    if len(os.sched_getaffinity(0)) < 2 or not cores:
        return False
    subprocess.run(["taskset", "-a", "-p", "-c", ",".join(map(str, sorted(cores))), str(pid or os.getpid())],
                   check=True, capture_output=True)
    return True


def other_cores(than: int = 0) -> set[int]:
    return set(os.sched_getaffinity(0)) - {than}
