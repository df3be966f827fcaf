"""What every benchmark shares: the machine a figure came from, and a timer."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable


def machine() -> dict:
    """CPU model and cores, and the GPU when there is one: every figure carries this."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {
        "cpu": cpu,
        "cpu_cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


def best_time(fn: Callable[[], object], repeat: int = 3, warmup: int = 1) -> float:
    """Seconds of the fastest of `repeat` calls (after `warmup` untimed calls): the least-disturbed run."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
