"""Positional information for attention: sinusoidal, learned, rotary (RoPE) and ALiBi.

Self-attention alone treats its input as a *set*: permute the tokens and the
outputs permute the same way. Three ways to tell it where each token is:

* **sinusoidal** (Vaswani et al., 2017): add a fixed vector of sines and cosines
  of geometrically spaced frequencies, ``PE[p, 2i] = sin(p / base^(2i/d))``,
  ``PE[p, 2i+1] = cos(p / base^(2i/d))``;
* **learned**: add a trained vector per position (BERT, GPT-2, ViT);
* **rotary** (Su et al., 2021): rotate each pair ``(x_2i, x_2i+1)`` of a query or
  key by the angle ``p * base^(-2i/d)``; the dot product of a rotated query at
  ``m`` and key at ``n`` then depends on the positions only through ``n - m``;
* **ALiBi** (Press et al., 2022): add nothing to the tokens; subtract
  ``m_h * |i - j|`` from head ``h``'s score of query ``i`` for key ``j``, with one fixed
  slope ``m_h`` per head (:func:`alibi_slopes`, :func:`alibi_bias`).

RoPE trained at one context length can be stretched to a longer one by changing its
frequencies (:class:`RopeScaling`, :func:`rope_frequencies`): **position
interpolation** (Chen et al., 2023) divides every angle by the factor ``s``;
**NTK-aware** scaling (bloc97, 2023) raises the base to ``base * s^(d / (d - 2))``, which
leaves the fastest pair alone and slows the slowest by ``s``; **YaRN** (Peng et al.,
2023) interpolates only the pairs whose wavelength is long compared with the training
length (a linear ramp between ``beta_slow`` and ``beta_fast`` rotations in the
training window) and sharpens the softmax by ``(0.1 ln s + 1)^2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from attnbook import _validate

__all__ = ["sinusoidal_encoding", "SinusoidalPositionalEncoding", "LearnedPositionalEmbedding",
           "rotary_angles", "apply_rotary", "rotate_pairs", "RopeScaling", "ROPE_SCALINGS", "rope_frequencies",
           "rotary_cos_sin", "alibi_slopes", "alibi_bias"]


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


ROPE_SCALINGS = ("none", "pi", "ntk", "yarn")
"""The RoPE scalings :class:`RopeScaling` knows: none, position interpolation, NTK-aware, YaRN."""


def _positive_number(x: object, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x <= 0:
        raise ValueError(f"expected {name} to be a positive number, got {x!r}")
    return float(x)


@dataclass(frozen=True)
class RopeScaling:
    """How to stretch RoPE trained at ``original_length`` tokens to ``factor`` times as many.

    Attributes:
        kind: ``"none"``, ``"pi"`` (position interpolation), ``"ntk"`` (NTK-aware base) or ``"yarn"``.
        factor: the stretch ``s`` (1: no change for every kind).
        original_length: the training context (YaRN's ramp is measured in it; required for ``"yarn"``).
        beta_fast, beta_slow: YaRN's ramp: pairs that turn more than ``beta_fast`` times in
            the training window keep their frequency, fewer than ``beta_slow`` are interpolated.
    """

    kind: str = "none"
    factor: float = 1.0
    original_length: int | None = None
    beta_fast: float = 32.0
    beta_slow: float = 1.0

    def __post_init__(self) -> None:
        _validate.choice(self.kind, "RoPE scaling kind", ROPE_SCALINGS)
        factor = _positive_number(self.factor, "factor")
        if factor < 1:
            raise ValueError(f"expected a factor >= 1 (scaling stretches to a longer context), got {factor}")
        if self.original_length is not None:
            _validate.positive_int(self.original_length, "original_length")
        elif self.kind == "yarn":
            raise ValueError("expected original_length (the training context) for YaRN, got None")
        fast, slow = _positive_number(self.beta_fast, "beta_fast"), _positive_number(self.beta_slow, "beta_slow")
        if slow >= fast:
            raise ValueError(f"expected beta_slow < beta_fast, got {slow} and {fast}")

    @property
    def attention_factor(self) -> float:
        """YaRN's factor on queries and keys, ``0.1 ln s + 1`` (so the logits grow by its square); else 1."""
        return 0.1 * math.log(self.factor) + 1.0 if self.kind == "yarn" else 1.0


def rope_frequencies(d: int, *, base: float = 10000.0, scaling: RopeScaling | None = None,
                     dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor:
    """The angle per position of each pair, ``base^(-2i/d)``, after ``scaling``.

    Shape:
        -> frequencies: (d/2,)
    """
    _even(d, "d", "rotary embeddings")
    base = _base(base)
    if scaling is not None and not isinstance(scaling, RopeScaling):
        raise TypeError(f"expected scaling to be a RopeScaling or None, got {type(scaling).__name__}")
    s = scaling or RopeScaling()
    if s.kind == "ntk":
        base = base * s.factor ** (d / (d - 2)) if d > 2 else base
    freq = _frequencies(d, base, device, dtype)  # (d/2,)
    if s.kind == "pi":
        freq = freq / s.factor
    elif s.kind == "yarn":
        turns = s.original_length * freq / (2 * math.pi)  # rotations of each pair in the training window
        keep = ((turns - s.beta_slow) / (s.beta_fast - s.beta_slow)).clamp(0, 1)  # 1: keep, 0: interpolate
        freq = keep * freq + (1 - keep) * freq / s.factor
    return freq


def rotary_angles(positions: torch.Tensor, d: int, *, base: float = 10000.0,
                  dtype: torch.dtype = torch.float32, scaling: RopeScaling | None = None) -> torch.Tensor:
    """The rotation angle of each pair at each position: ``p * base^(-2i/d)`` (after ``scaling``), in ``dtype``.

    Shape:
        positions: (T,) -> angles: (T, d/2)
    """
    _validate.tensor(positions, "positions", ndim=1)
    _even(d, "d", "rotary embeddings")
    freq = rope_frequencies(d, base=base, scaling=scaling, dtype=dtype, device=positions.device)
    return positions.to(dtype)[:, None] * freq[None, :]


def rotary_cos_sin(positions: torch.Tensor, d: int, *, base: float = 10000.0, scaling: RopeScaling | None = None,
                   dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosines and sines of :func:`rotary_angles`, times YaRN's attention factor when it applies.

    Shape:
        positions: (T,) -> cos, sin: (T, d/2) each
    """
    angles = rotary_angles(positions, d, base=base, dtype=dtype, scaling=scaling)  # (T, d/2)
    factor = 1.0 if scaling is None else scaling.attention_factor
    return factor * torch.cos(angles), factor * torch.sin(angles)


def rotate_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each consecutive pair ``(x_2i, x_2i+1)`` by the angle whose cosine and sine are given.

    Shape:
        x: (..., T, d); cos, sin: (T, d/2) -> (..., T, d)
    """
    _validate.tensor(x, "x", floating=True)
    if x.dim() < 2 or x.shape[-1] % 2:
        raise ValueError(f"expected x of shape (..., T, d) with d even, got {tuple(x.shape)}")
    want = (x.shape[-2], x.shape[-1] // 2)
    for name, t in (("cos", cos), ("sin", sin)):
        _validate.tensor(t, name, floating=True)
        if tuple(t.shape) != want:
            raise ValueError(f"expected {name} of shape {want}, got {tuple(t.shape)}")
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]  # (..., T, d/2) each: the two coordinates of every pair
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)  # interleaved again


def apply_rotary(x: torch.Tensor, positions: torch.Tensor | None = None, *, base: float = 10000.0,
                 scaling: RopeScaling | None = None) -> torch.Tensor:
    """Rotate each consecutive pair ``(x_2i, x_2i+1)`` of every vector by its position's angle (RoPE).

    ``positions`` defaults to ``0, 1, ..., T-1``. Rotations keep lengths, and
    ``<apply_rotary(q)[m], apply_rotary(k)[n]>`` depends on ``m`` and ``n`` only
    through ``n - m``. ``scaling`` stretches the frequencies (:class:`RopeScaling`).

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
    return rotate_pairs(x, *rotary_cos_sin(positions, d, base=base, scaling=scaling, dtype=dtype))


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """ALiBi's fixed slope per head: ``2^(-8h/H)`` for ``h = 1..H`` (Press et al., 2022).

    For a head count that is not a power of two, the paper's rule: the slopes of the
    next lower power of two ``n``, then every other slope of ``2n`` heads.

    Shape:
        -> slopes: (num_heads,)
    """
    _validate.positive_int(num_heads, "num_heads")

    def powers(n: int) -> list[float]:
        return [2.0 ** (-8.0 * h / n) for h in range(1, n + 1)]

    n = 2 ** math.floor(math.log2(num_heads))
    slopes = powers(n) + powers(2 * n)[0::2][: num_heads - n]
    return torch.tensor(slopes)


def alibi_bias(num_heads: int, num_queries: int, num_keys: int | None = None, *,
               device: torch.device | str | None = None) -> torch.Tensor:
    """ALiBi's additive score bias ``-m_h |i - j|``, queries aligned to the last keys (as after a cache).

    Query ``i`` sits at position ``num_keys - num_queries + i``; combine with a causal
    mask for a language model (the bias itself is symmetric).

    Shape:
        -> bias: (num_heads, num_queries, num_keys), float32
    """
    _validate.positive_int(num_queries, "num_queries")
    S = num_queries if num_keys is None else _validate.positive_int(num_keys, "num_keys")
    if S < num_queries:
        raise ValueError(f"expected num_keys >= num_queries (queries come last), got {S} and {num_queries}")
    i = torch.arange(S - num_queries, S, device=device)[:, None]  # (L, 1) query positions
    j = torch.arange(S, device=device)[None, :]  # (1, S) key positions
    return -alibi_slopes(num_heads).to(device)[:, None, None] * (i - j).abs()  # (H, L, S)
