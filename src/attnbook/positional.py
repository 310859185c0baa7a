"""Positional information for attention: sinusoidal, learned and rotary (RoPE).

Self-attention alone treats its input as a *set*: permute the tokens and the
outputs permute the same way. Three ways to tell it where each token is:

* **sinusoidal** (Vaswani et al., 2017): add a fixed vector of sines and cosines
  of geometrically spaced frequencies, ``PE[p, 2i] = sin(p / base^(2i/d))``,
  ``PE[p, 2i+1] = cos(p / base^(2i/d))``;
* **learned**: add a trained vector per position (BERT, GPT-2, ViT);
* **rotary** (Su et al., 2021): rotate each pair ``(x_2i, x_2i+1)`` of a query or
  key by the angle ``p * base^(-2i/d)``; the dot product of a rotated query at
  ``m`` and key at ``n`` then depends on the positions only through ``n - m``.
"""

from __future__ import annotations

import torch
from torch import nn

from attnbook import _validate

__all__ = ["sinusoidal_encoding", "SinusoidalPositionalEncoding", "LearnedPositionalEmbedding",
           "rotary_angles", "apply_rotary"]


def _even(d: int, name: str, what: str) -> int:
    _validate.positive_int(d, name)
    if d % 2:
        raise ValueError(f"expected an even {name} for {what} (they come in sine/cosine pairs), got {d}")
    return d


def _base(base: object) -> float:
    if isinstance(base, bool) or not isinstance(base, (int, float)) or base <= 1:
        raise ValueError(f"expected a base greater than 1, got {base!r}")
    return float(base)


def _frequencies(d: int, base: float, device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``base^(-2i/d)`` for ``i = 0 .. d/2 - 1``, (d/2,)."""
    return base ** (-torch.arange(0, d, 2, dtype=dtype, device=device) / d)


def sinusoidal_encoding(num_positions: int, d_model: int, *, base: float = 10000.0,
                        device: torch.device | str | None = None) -> torch.Tensor:
    """The fixed sinusoidal position vectors of Vaswani et al. (2017), sines and cosines interleaved.

    Shape:
        -> encoding: (num_positions, d_model), float32
    """
    _validate.positive_int(num_positions, "num_positions")
    _even(d_model, "d_model", "sinusoidal encodings")
    angles = torch.arange(num_positions, dtype=torch.float32, device=device)[:, None] \
        * _frequencies(d_model, _base(base), device)[None, :]  # (T, d/2)
    pe = torch.empty(num_positions, d_model, device=device)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles)
    return pe


def _check_input(x: torch.Tensor, d_model: int, max_len: int) -> None:
    _validate.tensor(x, "x", floating=True)
    if x.dim() < 2 or x.shape[-1] != d_model:
        raise ValueError(f"expected x of shape (..., T, {d_model}), got {tuple(x.shape)}")
    if x.shape[-2] > max_len:
        raise ValueError(f"expected at most max_len={max_len} positions, got {x.shape[-2]}")


class SinusoidalPositionalEncoding(nn.Module):
    """Adds :func:`sinusoidal_encoding` to its input (nothing is learned).

    Shape:
        x: (..., T, d_model) with T <= max_len -> (..., T, d_model)
    """

    def __init__(self, max_len: int, d_model: int, *, base: float = 10000.0):
        super().__init__()
        self.max_len = _validate.positive_int(max_len, "max_len")
        self.d_model = _even(d_model, "d_model", "sinusoidal encodings")
        self.register_buffer("encoding", sinusoidal_encoding(max_len, d_model, base=base), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.d_model, self.max_len)
        return x + self.encoding[: x.shape[-2]].to(x.dtype)


class LearnedPositionalEmbedding(nn.Module):
    """Adds a trained vector per position, initialised small (std 0.02).

    Shape:
        x: (..., T, d_model) with T <= max_len -> (..., T, d_model)
    """

    def __init__(self, max_len: int, d_model: int):
        super().__init__()
        self.max_len = _validate.positive_int(max_len, "max_len")
        self.d_model = _validate.positive_int(d_model, "d_model")
        self.embedding = nn.Parameter(0.02 * torch.randn(max_len, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.d_model, self.max_len)
        return x + self.embedding[: x.shape[-2]].to(x.dtype)


def rotary_angles(positions: torch.Tensor, d: int, *, base: float = 10000.0,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The rotation angle of each pair at each position: ``p * base^(-2i/d)``, in ``dtype``.

    Shape:
        positions: (T,) -> angles: (T, d/2)
    """
    _validate.tensor(positions, "positions", ndim=1)
    _even(d, "d", "rotary embeddings")
    return positions.to(dtype)[:, None] * _frequencies(d, _base(base), positions.device, dtype)[None, :]


def apply_rotary(x: torch.Tensor, positions: torch.Tensor | None = None, *, base: float = 10000.0) -> torch.Tensor:
    """Rotate each consecutive pair ``(x_2i, x_2i+1)`` of every vector by its position's angle (RoPE).

    ``positions`` defaults to ``0, 1, ..., T-1``. Rotations keep lengths, and
    ``<apply_rotary(q)[m], apply_rotary(k)[n]>`` depends on ``m`` and ``n`` only
    through ``n - m``.

    Shape:
        x: (..., T, d) with d even; positions: (T,) -> (..., T, d)
    """
    _validate.tensor(x, "x", floating=True)
    if x.dim() < 2:
        raise ValueError(f"expected x of shape (..., T, d), got {tuple(x.shape)}")
    T, d = x.shape[-2:]
    _even(d, "width d", "rotary embeddings")
    if positions is None:
        positions = torch.arange(T, device=x.device)
    elif positions.dim() != 1 or positions.shape[0] != T:
        raise ValueError(f"expected positions of shape ({T},), got {tuple(positions.shape)}")
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32  # angles at least in float32
    angles = rotary_angles(positions, d, base=base, dtype=dtype)  # (T, d/2)
    cos, sin = torch.cos(angles).to(x.dtype), torch.sin(angles).to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]  # (..., T, d/2) each: the two coordinates of every pair
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out
