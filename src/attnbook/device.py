"""Choosing where tensors live: CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

import os

import torch

__all__ = ["pick_device", "describe"]


def pick_device(prefer: str | None = None, *, verbose: bool = True) -> torch.device:
    """Return the best available device: CUDA, then Apple MPS, then CPU.

    ``prefer`` forces one (``"cpu"``, ``"cuda"``, ``"mps"``); the environment
    variable ``ATTNBOOK_DEVICE`` does the same for a whole run. With ``verbose``
    the choice is printed, so a notebook shows where it runs.
    """
    choice = prefer if prefer is not None else os.environ.get("ATTNBOOK_DEVICE") or None
    if choice is not None:
        if not isinstance(choice, str) or choice.split(":")[0] not in {"cpu", "cuda", "mps"}:
            raise ValueError(f"expected a device of 'cpu', 'cuda' or 'mps', got {choice!r}")
        kind = choice.split(":")[0]
        if kind == "cuda" and not torch.cuda.is_available():
            raise ValueError("expected a CUDA GPU for device 'cuda', but torch.cuda.is_available() is False")
        if kind == "mps" and not _mps_available():
            raise ValueError("expected Apple's MPS for device 'mps', but it is not available")
        device = torch.device(choice)
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    elif _mps_available():
        device = torch.device("mps")
    else:
        device = torch.device("cpu")
    if verbose:
        print(f"Running on {describe(device)}")
    return device


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def describe(device: torch.device | str) -> str:
    """A short human description of ``device`` (GPU name, or CPU thread count)."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "mps":
        return "mps (Apple GPU)"
    return f"cpu ({torch.get_num_threads()} threads)"
