"""What a figure was measured on: every benchmark records it next to its numbers."""

from __future__ import annotations

import platform
import sys

import torch


def describe(device: torch.device) -> dict[str, str | int]:
    """CPU, thread count, accelerator and library versions."""
    info: dict[str, str | int] = {
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "command": " ".join(sys.argv),
    }
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
