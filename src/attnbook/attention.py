"""Scaled dot-product attention, its masks, and single-head self-attention.

``Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V`` (Vaswani et al., 2017):
every query is compared with every key by a dot product, the scores are scaled
by ``1 / sqrt(d_k)``, turned into weights by a softmax over the keys, and the
weights average the values.

Mask convention (the same as :func:`torch.nn.functional.scaled_dot_product_attention`):

* a **boolean** mask says where a query *may attend*: ``True`` = may attend,
  ``False`` = this key gets exactly zero weight;
* a **floating-point** mask is *added* to the scores (``0`` keeps a key,
  ``-inf`` removes it, anything else biases it).

A query whose every key is masked out gets all-zero weights and a zero output
(not NaN), which is also what PyTorch's fused kernel returns.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from attnbook import _validate
from attnbook.positional import apply_rotary

__all__ = ["scaled_dot_product_attention", "causal_mask", "key_padding_mask", "SelfAttention"]


def _check_qkv(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> None:
    for name, x in (("query", query), ("key", key), ("value", value)):
        _validate.tensor(x, name, floating=True)
        if x.dim() < 2:
            raise ValueError(f"expected {name} with at least 2 dimensions (..., length, width), "
                             f"got shape {tuple(x.shape)}")
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(f"expected query and key of the same width d_k, got {query.shape[-1]} and "
                         f"{key.shape[-1]} (shapes {tuple(query.shape)} and {tuple(key.shape)})")
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(f"expected key and value of the same length (one value per key), got "
                         f"{key.shape[-2]} and {value.shape[-2]} (shapes {tuple(key.shape)} and {tuple(value.shape)})")
    try:
        torch.broadcast_shapes(query.shape[:-2], key.shape[:-2], value.shape[:-2])
    except RuntimeError:
        raise ValueError(f"expected query, key and value whose leading (batch) dimensions broadcast, got shapes "
                         f"{tuple(query.shape)}, {tuple(key.shape)} and {tuple(value.shape)}") from None


def _check_mask(mask: torch.Tensor, scores_shape: torch.Size) -> None:
    _validate.tensor(mask, "mask")
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise TypeError(f"expected a bool mask (True = may attend) or a floating-point mask (added to the "
                        f"scores), got dtype {mask.dtype}")
    target = tuple(scores_shape)
    should = target[-mask.dim():] if 0 < mask.dim() <= len(target) else target
    try:
        ok = torch.broadcast_shapes(mask.shape, scores_shape) == scores_shape
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"The shape of the mask is {tuple(mask.shape)}, but should be {should} "
                         f"(it must broadcast to the scores' shape {target}: (..., queries, keys)).")


def causal_mask(num_queries: int, num_keys: int | None = None, *,
                device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean mask letting query ``i`` attend to keys ``0..i`` only (True = may attend).

    With ``num_keys != num_queries`` the triangle is aligned at the top left, as
    ``is_causal=True`` does in PyTorch.

    Shape:
        -> mask: (num_queries, num_keys)
    """
    _validate.positive_int(num_queries, "num_queries")
    num_keys = num_queries if num_keys is None else _validate.positive_int(num_keys, "num_keys")
    return torch.ones(num_queries, num_keys, dtype=torch.bool, device=device).tril()


def key_padding_mask(lengths: torch.Tensor, num_keys: int | None = None) -> torch.Tensor:
    """Boolean mask, True on each sequence's real keys and False on its padding.

    It has a singleton query axis, so it broadcasts against scores of shape (B, L, S).

    Shape:
        lengths: (B,) -> mask: (B, 1, num_keys)
    """
    _validate.tensor(lengths, "lengths", ndim=1, integer=True)
    num_keys = int(lengths.max()) if num_keys is None else _validate.positive_int(num_keys, "num_keys")
    _validate.lengths(lengths, lengths.shape[0], num_keys)
    return (torch.arange(num_keys, device=lengths.device)[None, :] < lengths[:, None]).unsqueeze(1)


def scaled_dot_product_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                                 mask: torch.Tensor | None = None, *, is_causal: bool = False,
                                 scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``softmax(Q K^T * scale + mask) V``, returning the output and the weights.

    Args:
        query, key, value: the three inputs; leading dimensions are batch
            dimensions and must broadcast.
        mask: ``None``, a bool mask (True = may attend) or a float mask added to
            the scores; it must broadcast to (..., L, S).
        is_causal: also hide the keys after each query (top-left triangle, as
            PyTorch's ``is_causal``); combined with ``mask`` when both are given.
        scale: the factor on the scores; default ``1 / sqrt(d_k)``.

    A query with every key masked gets zero weights and a zero output.

    Shape:
        query: (..., L, d_k); key: (..., S, d_k); value: (..., S, d_v)
        -> output: (..., L, d_v); weights: (..., L, S), each row sums to 1 (or 0 if fully masked)
    """
    _check_qkv(query, key, value)
    if not isinstance(is_causal, bool):
        raise TypeError(f"expected is_causal to be a bool, got {type(is_causal).__name__}")
    if scale is None:
        scale = 1.0 / math.sqrt(query.shape[-1])
    elif isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"expected scale to be a number, got {type(scale).__name__}")
    scores = (query @ key.transpose(-2, -1)) * scale  # (..., L, S)
    L, S = scores.shape[-2:]
    allowed = None  # bool, True = may attend
    if mask is not None:
        _check_mask(mask, scores.shape)
        if mask.dtype == torch.bool:
            allowed = mask
        else:
            scores = scores + mask.to(scores.dtype)
    if is_causal:
        tri = causal_mask(L, S, device=scores.device)
        allowed = tri if allowed is None else allowed & tri
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # (..., L, S)
    weights = torch.nan_to_num(weights, nan=0.0)  # fully masked rows: exp(-inf)/0 -> 0, not NaN
    return weights @ value, weights  # (..., L, d_v), (..., L, S)


class SelfAttention(nn.Module):
    """Single-head self-attention: queries, keys and values all come from one sequence.

    ``q = x W_q``, ``k = x W_k``, ``v = x W_v`` (learned), then scaled dot-product
    attention and an output projection back to ``d_model``. With ``rotary=True``
    the queries and keys are rotated by their positions (RoPE, Su et al., 2021)
    before the dot product. Weights are returned when asked, never stored.

    Args:
        d_model: width of the input and output vectors.
        d_head: width of queries, keys and values (default ``d_model``); even for RoPE.
        bias: whether the four projections have biases.
        rotary: apply rotary position embeddings to queries and keys.

    Shape:
        x: (B, T, d_model); mask: broadcastable to (B, T, T)
        -> output: (B, T, d_model); weights (if need_weights): (B, T, T)
    """

    def __init__(self, d_model: int, d_head: int | None = None, *, bias: bool = False, rotary: bool = False,
                 rotary_base: float = 10000.0):
        super().__init__()
        self.d_model = _validate.positive_int(d_model, "d_model")
        self.d_head = d_model if d_head is None else _validate.positive_int(d_head, "d_head")
        if rotary and self.d_head % 2:
            raise ValueError(f"expected an even d_head for rotary embeddings (they rotate pairs), got {self.d_head}")
        self.rotary = bool(rotary)
        self.rotary_base = float(rotary_base)
        self.w_q = nn.Linear(d_model, self.d_head, bias=bias)
        self.w_k = nn.Linear(d_model, self.d_head, bias=bias)
        self.w_v = nn.Linear(d_model, self.d_head, bias=bias)
        self.w_o = nn.Linear(self.d_head, d_model, bias=bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, *, is_causal: bool = False,
                need_weights: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        _validate.tensor(x, "x", ndim=3, floating=True)
        if x.shape[-1] != self.d_model:
            raise ValueError(f"expected x of width d_model={self.d_model}, got shape {tuple(x.shape)}")
        q, k, v = self.w_q(x), self.w_k(x), self.w_v(x)  # (B, T, d_head) each
        if self.rotary:
            q, k = apply_rotary(q, base=self.rotary_base), apply_rotary(k, base=self.rotary_base)
        out, weights = scaled_dot_product_attention(q, k, v, mask, is_causal=is_causal)  # (B, T, d_head), (B, T, T)
        out = self.w_o(out)  # (B, T, d_model)
        return (out, weights) if need_weights else out
