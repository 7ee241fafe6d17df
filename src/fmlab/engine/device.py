"""The one device resolver: ``"auto"`` → CUDA when present, else CPU.

The engine, the fine-tuning workflow and the GAN lab each had their own copy; with one, a new
workflow cannot disagree with the engine about where ``trainer.device: auto`` runs.
"""

from __future__ import annotations

import torch

from fmlab.errors import ConfigError


def resolve_device(name: str | torch.device, local_rank: int = 0, key: str = "trainer.device") -> torch.device:
    """The ``torch.device`` for a config value.

    Args:
        name: ``"auto"``, or anything ``torch.device`` accepts (``"cpu"``, ``"cuda:1"``).
        local_rank: the CUDA index ``"auto"`` picks under ``torchrun`` (one GPU per process).
        key: the config key named in the error.

    Returns:
        The device; ``"auto"`` gives ``cuda:<local_rank>`` when CUDA is available, else ``cpu``.

    Raises:
        ConfigError: ``name`` is not a torch device.

    Examples:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        return torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"{key}: {name!r} is not a torch device") from None
