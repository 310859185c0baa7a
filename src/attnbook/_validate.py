"""Shared argument checks: every message says what was expected and what was got."""

from __future__ import annotations

import torch


def tensor(x: object, name: str, *, ndim: int | None = None, floating: bool = False,
           integer: bool = False) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected {name} to be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"expected {name} to have {ndim} dimensions, got {x.dim()} (shape {tuple(x.shape)})")
    if floating and not x.is_floating_point():
        raise TypeError(f"expected {name} to be a floating-point tensor, got dtype {x.dtype}")
    if integer and (x.is_floating_point() or x.dtype == torch.bool or x.is_complex()):
        raise TypeError(f"expected {name} to be an integer tensor, got dtype {x.dtype}")
    return x


def positive_int(x: object, name: str) -> int:
    if isinstance(x, bool) or not isinstance(x, int):
        raise TypeError(f"expected {name} to be an int, got {type(x).__name__}")
    if x < 1:
        raise ValueError(f"expected {name} to be positive, got {x}")
    return x


def lengths(lengths: torch.Tensor, batch: int, max_len: int, name: str = "lengths") -> torch.Tensor:
    tensor(lengths, name, ndim=1, integer=True)
    if lengths.shape[0] != batch:
        raise ValueError(f"expected {name} of shape ({batch},), got {tuple(lengths.shape)}")
    if lengths.numel() and (int(lengths.min()) < 1 or int(lengths.max()) > max_len):
        raise ValueError(f"expected {name} in [1, {max_len}], got values from {int(lengths.min())} "
                         f"to {int(lengths.max())}")
    return lengths
