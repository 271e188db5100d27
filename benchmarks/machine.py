"""How busy the machine is while a benchmark runs: load average, and the cores other processes use."""
from __future__ import annotations

import os
import time
from pathlib import Path


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def busy_cpu_seconds() -> float:
    """CPU seconds spent busy by the whole machine since boot (all processes, /proc/stat)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return float("nan")
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """Cores kept busy by *other* processes while a block runs: machine busy time − this process's CPU time."""

    def __enter__(self):
        self.busy, self.own, self.wall = busy_cpu_seconds(), time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.wall
        self.cores = max(0.0, (busy_cpu_seconds() - self.busy) - (time.process_time() - self.own)) / max(wall, 1e-9)
        return False


def wait_for_quiet(max_cores: float, window: float = 5.0, timeout: float = 1800.0) -> float:
    """Block until other processes use less than ``max_cores`` over ``window`` s (or ``timeout``); returns that load."""
    deadline = time.perf_counter() + timeout
    while True:
        with OtherLoad() as load:
            time.sleep(window)
        if load.cores < max_cores or time.perf_counter() > deadline:
            return load.cores
