"""The device a run trains on."""

from __future__ import annotations

import torch

from models.common import device_available, prepare_device, resolve_device
from rlgen.config.base import RunConfig
from rlgen.errors import ConfigError


def training_device(cfg: RunConfig) -> torch.device:
    """The device a config asks for; raises ConfigError if this machine does not have it."""
    device = resolve_device(cfg.device)
    if not device_available(device):
        raise ConfigError(f"device={cfg.device!r} is not available on this machine; use --set device=cpu or auto.")
    prepare_device(device)
    return device
