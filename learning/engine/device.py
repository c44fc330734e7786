"""Device selection: ``auto`` means CUDA when a GPU is visible, else the CPU."""

from __future__ import annotations

import torch

DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda")


class DeviceUnavailableError(RuntimeError):
    """The config asks for a device this machine does not have (e.g. ``cuda`` on a CPU worker)."""


def resolve_device(spec: str = "auto") -> torch.device:
    """The torch device for ``spec``: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:<index>"``.

    Returns ``cuda`` (the current CUDA device) for ``auto`` when CUDA is available, else ``cpu``.
    Raises :class:`DeviceUnavailableError` for ``cuda`` without a GPU and ``ValueError`` for
    any other string.
    """
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"device {spec!r} requested but CUDA is not available on this machine"
            )
        device = torch.device(spec)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"device {spec!r} requested but only {torch.cuda.device_count()} CUDA devices exist"
            )
        return device
    raise ValueError(f"unknown device {spec!r}; use one of {list(DEVICE_CHOICES)} or 'cuda:<index>'")


def describe_device(device: torch.device) -> str:
    """A human-readable name: ``"cpu"`` or the CUDA device's product name (e.g. ``"NVIDIA H200"``)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"
