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


def attention_inputs(query: object, key: object, value: object, *, gqa: bool = False) -> None:
    """The one check of attention's query, key and value: (..., L, d_k), (..., S, d_k), (..., S, d_v).

    With ``gqa`` the head axis (-3) of key and value may divide the query's (grouped-query attention).
    """
    for name, x in (("query", query), ("key", key), ("value", value)):
        tensor(x, name, floating=True)
        if x.dim() < 2:
            raise ValueError(f"expected {name} with at least 2 dimensions (..., length, width), "
                             f"got shape {tuple(x.shape)}")
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(f"expected query and key of the same width d_k, got {query.shape[-1]} and "
                         f"{key.shape[-1]} (shapes {tuple(query.shape)} and {tuple(key.shape)})")
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(f"expected key and value of the same length (one value per key), got "
                         f"{key.shape[-2]} and {value.shape[-2]} (shapes {tuple(key.shape)} and {tuple(value.shape)})")
    lead = -3 if gqa else -2
    if gqa:
        if query.dim() < 3 or key.dim() < 3 or value.dim() < 3 or key.shape[-3] != value.shape[-3] \
                or query.shape[-3] % key.shape[-3]:
            raise ValueError(f"expected (..., heads, length, width) inputs with as many key as value heads, "
                             f"dividing the query heads (grouped-query attention), got shapes "
                             f"{tuple(query.shape)}, {tuple(key.shape)} and {tuple(value.shape)}")
    if not (query.shape[:lead] == key.shape[:lead] == value.shape[:lead]):
        try:
            torch.broadcast_shapes(query.shape[:lead], key.shape[:lead], value.shape[:lead])
        except RuntimeError:
            raise ValueError(f"expected query, key and value whose leading (batch) dimensions broadcast, got "
                             f"shapes {tuple(query.shape)}, {tuple(key.shape)} and {tuple(value.shape)}") from None


def choice(x: object, name: str, options: tuple[str, ...]) -> str:
    if not isinstance(x, str) or x not in options:
        raise ValueError(f"expected {name} to be one of {', '.join(map(repr, options))}, got {x!r}")
    return x


def probability(x: object, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0.0 <= x < 1.0:
        raise ValueError(f"expected {name} in [0, 1), got {x!r}")
    return float(x)


def token_ids(ids: torch.Tensor, vocab_size: int, name: str = "ids") -> torch.Tensor:
    """Check ``0 <= ids < vocab_size``, on the CPU only: on an accelerator the check would wait
    for the device (a host-device sync every call), and the embedding lookup reports bad ids itself."""
    if ids.device.type == "cpu" and ids.numel():
        low, high = torch.aminmax(ids)
        low, high = int(low), int(high)
        if low < 0 or high >= vocab_size:
            raise ValueError(f"expected {name} in [0, {vocab_size}), got values from {low} to {high}")
    return ids
