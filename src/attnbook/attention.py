"""Scaled dot-product attention, from scratch and fused, and single-head self-attention.

``Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V`` (Vaswani et al., 2017):
every query is compared with every key by a dot product, the scores are scaled
by ``1 / sqrt(d_k)``, turned into weights by a softmax over the keys, and the
weights average the values.

Two implementations of the same function, chosen by name (``attention=`` in every
layer's config):

* ``"scratch"``: :func:`scaled_dot_product_attention`, the book's own few lines; it
  returns the weights, so chapters can show them;
* ``"fused"``: :func:`fused_attention`, PyTorch's
  :func:`torch.nn.functional.scaled_dot_product_attention` (one fused kernel, no
  weights kept: faster and leaner for training). Asking for the weights
  (``need_weights=True``) always takes the scratch path.

Masks follow :mod:`attnbook.masks`: a **boolean** mask says where a query *may attend*
(``True`` = may attend, ``False`` = exactly zero weight); a **floating-point** mask is
*added* to the scores. ``is_causal=True`` is aligned at the bottom right (query ``i``
of ``L`` sees keys ``0 .. i + S - L``; the plain lower triangle when ``L == S``).

A query whose every key is masked out gets all-zero weights and a zero output
(not NaN), which is also what PyTorch's fused kernel returns for a bool mask on the CPU.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from attnbook import _validate
from attnbook.masks import causal_mask, check_mask, combine_masks
from attnbook.masks import padding_mask as key_padding_mask
from attnbook.positional import apply_rotary

__all__ = ["scaled_dot_product_attention", "fused_attention", "compute_attention", "attention_heads", "ATTENTION_KINDS",
           "causal_mask", "key_padding_mask", "SelfAttention"]

ATTENTION_KINDS = ("scratch", "fused")
"""The names ``attention=`` accepts: the from-scratch function or PyTorch's fused kernel."""


def _check_options(is_causal: object, scale: object) -> None:
    if not isinstance(is_causal, bool):
        raise TypeError(f"expected is_causal to be a bool, got {type(is_causal).__name__}")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))):
        raise TypeError(f"expected scale to be a number, got {type(scale).__name__}")


def scaled_dot_product_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                                 mask: torch.Tensor | None = None, *, is_causal: bool = False,
                                 scale: float | None = None, softcap: float | None = None
                                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``softmax(Q K^T * scale + mask) V`` from scratch, returning the output and the weights.

    Args:
        query, key, value: the three inputs; leading dimensions are batch
            dimensions and must broadcast.
        mask: ``None``, a bool mask (True = may attend) or a float mask added to
            the scores; it must broadcast to (..., L, S).
        is_causal: also hide the keys after each query, bottom-right aligned (query
            ``i`` sees keys ``0 .. i + S - L``; see :mod:`attnbook.masks`); combined
            with ``mask`` when both are given.
        scale: the factor on the scores; default ``1 / sqrt(d_k)``.
        softcap: logit soft-capping (Gemma 2): scores ``s`` become ``softcap * tanh(s / softcap)``,
            so none exceeds ``softcap`` in size; ``None`` (default): no cap.

    A query with every key masked gets zero weights and a zero output.

    Shape:
        query: (..., L, d_k); key: (..., S, d_k); value: (..., S, d_v)
        -> output: (..., L, d_v); weights: (..., L, S), each row sums to 1 (or 0 if fully masked)
    """
    _validate.attention_inputs(query, key, value)
    _check_options(is_causal, scale)
    if scale is None:
        scale = 1.0 / math.sqrt(query.shape[-1])
    scores = (query @ key.transpose(-2, -1)) * scale  # (..., L, S)
    if softcap is not None:
        scores = softcap * torch.tanh(scores / _softcap(softcap))  # (..., L, S), each in (-softcap, softcap)
    L, S = scores.shape[-2:]
    allowed = None  # bool, True = may attend
    if mask is not None:
        check_mask(mask, scores.shape)
        if mask.dtype == torch.bool:
            allowed = mask
        else:
            scores = scores + mask.to(scores.dtype)
    if is_causal:
        tri = causal_mask(L, S, device=scores.device)  # (L, S), bottom-right
        allowed = tri if allowed is None else allowed & tri
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # (..., L, S)
    weights = torch.nan_to_num(weights, nan=0.0)  # fully masked rows: exp(-inf)/0 -> 0, not NaN
    return weights @ value, weights  # (..., L, d_v), (..., L, S)


def _softcap(softcap: object) -> float:
    if isinstance(softcap, bool) or not isinstance(softcap, (int, float)) or not softcap > 0:
        raise ValueError(f"expected softcap to be a positive number or None, got {softcap!r}")
    return float(softcap)


def _fused(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None,
           is_causal: bool, scale: float | None, enable_gqa: bool) -> torch.Tensor:
    L, S = query.shape[-2], key.shape[-2]
    if mask is not None and mask.dtype != torch.bool and mask.dtype != query.dtype:
        mask = mask.to(query.dtype)
    if is_causal and (mask is not None or L != S):
        if L > 1:  # a single query after a cache sees every key: nothing to hide
            mask = combine_masks(mask, causal_mask(L, S, device=query.device))  # bottom-right
        is_causal = False
    if enable_gqa and key.shape[-3] == query.shape[-3]:
        enable_gqa = False
    return nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask, is_causal=is_causal,
                                                      scale=scale, enable_gqa=enable_gqa)


def fused_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    mask: torch.Tensor | None = None, *, is_causal: bool = False,
                    scale: float | None = None, enable_gqa: bool = False) -> torch.Tensor:
    """The same function through PyTorch's fused kernel; returns only the output.

    Arguments and masks as :func:`scaled_dot_product_attention` (bottom-right
    ``is_causal``: for ``L != S`` an explicit mask is passed, as PyTorch's own flag is
    top-left). With ``enable_gqa`` the key/value head axis (-3) may be a divisor of
    the query's: each key/value head serves a group of consecutive query heads.

    Shape:
        query: (..., L, d_k); key: (..., S, d_k); value: (..., S, d_v) -> output: (..., L, d_v)
    """
    _validate.attention_inputs(query, key, value, gqa=enable_gqa)
    _check_options(is_causal, scale)
    if mask is not None:
        check_mask(mask, (*query.shape[:-2], query.shape[-2], key.shape[-2]))
    return _fused(query, key, value, mask, is_causal, scale, enable_gqa)


def _repeat_kv(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    group = query.shape[-3] // key.shape[-3]
    if group == 1:
        return key, value
    # each key/value head serves `group` consecutive query heads
    return key.repeat_interleave(group, dim=-3), value.repeat_interleave(group, dim=-3)


def attention_heads(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    mask: torch.Tensor | None = None, *, is_causal: bool = False, kind: str = "scratch",
                    need_weights: bool = False, softcap: float | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Multi-head attention's core, for inputs a layer has already shaped: no checks on the fused path.

    ``softcap`` (see :func:`scaled_dot_product_attention`) takes the scratch path: the
    fused kernel cannot cap its scores.

    Shape:
        query: (B, nh, L, hs); key, value: (B, nkv, S, hs) with nkv dividing nh; mask checked by the caller
        -> output: (B, nh, L, hs); weights: (B, nh, L, S) or None
    """
    if kind == "scratch" or need_weights or softcap is not None:
        key, value = _repeat_kv(query, key, value)
        out, weights = scaled_dot_product_attention(query, key, value, mask, is_causal=is_causal, softcap=softcap)
        return out, (weights if need_weights else None)
    return _fused(query, key, value, mask, is_causal, None, True), None


def compute_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      mask: torch.Tensor | None = None, *, is_causal: bool = False, scale: float | None = None,
                      kind: str = "scratch", need_weights: bool = False, enable_gqa: bool = False
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention by ``kind`` (``"scratch"`` or ``"fused"``); the weights when asked, else ``None``.

    ``need_weights=True`` always takes the scratch path (the fused kernel keeps no weights).
    ``enable_gqa``: as in :func:`fused_attention`; the scratch path repeats each key/value
    head for its group of query heads.

    Shape:
        as :func:`scaled_dot_product_attention` -> output: (..., L, d_v); weights: (..., L, S) or None
    """
    _validate.choice(kind, "attention", ATTENTION_KINDS)
    if kind == "scratch" or need_weights:
        if enable_gqa:
            _validate.attention_inputs(query, key, value, gqa=True)
            key, value = _repeat_kv(query, key, value)
        out, weights = scaled_dot_product_attention(query, key, value, mask, is_causal=is_causal, scale=scale)
        return out, (weights if need_weights else None)
    return fused_attention(query, key, value, mask, is_causal=is_causal, scale=scale, enable_gqa=enable_gqa), None


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
        attention: ``"scratch"`` or ``"fused"`` (see the module docstring).

    Shape:
        x: (B, T, d_model); mask: broadcastable to (B, T, T)
        -> output: (B, T, d_model); weights (if need_weights): (B, T, T)
    """

    def __init__(self, d_model: int, d_head: int | None = None, *, bias: bool = False, rotary: bool = False,
                 rotary_base: float = 10000.0, attention: str = "scratch"):
        super().__init__()
        self.attention = _validate.choice(attention, "attention", ATTENTION_KINDS)
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
        out, weights = compute_attention(q, k, v, mask, is_causal=is_causal, kind=self.attention,
                                         need_weights=need_weights)  # (B, T, d_head), (B, T, T) or None
        out = self.w_o(out)  # (B, T, d_model)
        return (out, weights) if need_weights else out
