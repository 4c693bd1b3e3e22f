"""What a figure was measured on, and when: every benchmark records it next to its numbers."""

from __future__ import annotations

import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

import torch


def command() -> str:
    """How this process was started, as one would type it: `python -m benchmarks.image_speed --seconds 15`."""
    script, args = Path(sys.argv[0]), sys.argv[1:]
    if script.parent.name == "benchmarks" and script.suffix == ".py":
        module = "benchmarks" if script.stem == "__main__" else f"benchmarks.{script.stem}"
        return " ".join(["python -m", module, *args])
    return " ".join(sys.argv)


def cores() -> int:
    """CPU cores this process may run on (its affinity: a container's share, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 0


def describe(device: torch.device) -> dict[str, str | int]:
    """CPU, cores, thread count, accelerator, library versions, the command and the date (UTC)."""
    info: dict[str, str | int] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": cores(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "command": command(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
