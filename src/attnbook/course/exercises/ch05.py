"""Chapter 5 exercises: splitting into heads, multi-head attention by hand, grouped-query attention."""

from __future__ import annotations

from collections.abc import Callable

import torch

from attnbook.course import check
from attnbook.attention import scaled_dot_product_attention
from attnbook.multihead import MultiHeadAttention, split_heads

__all__ = ["check_split_heads", "check_multi_head", "check_grouped_query"]


def check_split_heads(split: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """``split(x, num_heads)``: cut the last dimension into heads, head axis before the sequence axis.

    Shapes: x (B, T, num_heads * hs) -> (B, num_heads, T, hs).
    """
    cases = []
    for seed, (B, T, nh, hs) in enumerate([(1, 2, 1, 3), (2, 3, 2, 2), (3, 5, 4, 6)]):
        x = torch.randn(B, T, nh * hs, generator=torch.Generator().manual_seed(seed))
        cases.append(((x, nh), split_heads(x, nh)))
    check.cases(split, cases, "Exercise 5.1 (split into heads)", atol=0.0, rtol=0.0)


def check_multi_head(multi_head: Callable[..., torch.Tensor]) -> None:
    """``multi_head(x, W_q, W_k, W_v, W_o, num_heads)``: multi-head self-attention without biases.

    ``Q = x W_q`` (and likewise K, V) split into heads, attention per head, heads
    concatenated, then ``@ W_o``. Shapes: x (B, T, d), every W (d, d) -> (B, T, d).
    """
    cases = []
    for seed, (B, T, d, nh) in enumerate([(1, 3, 4, 1), (2, 5, 8, 2), (2, 6, 12, 4)]):
        torch.manual_seed(seed)
        layer = MultiHeadAttention(d_model=d, num_heads=nh, bias=False)
        x = torch.randn(B, T, d)
        weights = tuple(lin.weight.detach().T.clone() for lin in (layer.w_q, layer.w_k, layer.w_v, layer.w_o))
        with torch.no_grad():
            cases.append(((x, *weights, nh), layer(x)))
    check.cases(multi_head, cases, "Exercise 5.2 (multi-head attention by hand)", atol=1e-5)


def check_grouped_query(grouped: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """``grouped(q, k, v)``: causal attention where each key/value head serves a group of query heads.

    Query head ``i`` uses key/value head ``i // (nh // nkv)``. Shapes: q (B, nh, T, hs),
    k and v (B, nkv, T, hs), nkv divides nh -> (B, nh, T, hs).
    """
    cases = []
    for seed, (B, nh, nkv, T, hs) in enumerate([(1, 2, 2, 3, 4), (2, 4, 2, 5, 3), (1, 6, 1, 4, 8)]):
        g = torch.Generator().manual_seed(seed)
        q = torch.randn(B, nh, T, hs, generator=g)
        k, v = torch.randn(B, nkv, T, hs, generator=g), torch.randn(B, nkv, T, hs, generator=g)
        group = nh // nkv
        expected = scaled_dot_product_attention(q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1),
                                                is_causal=True)[0]
        cases.append(((q, k, v), expected))
    check.cases(grouped, cases, "Exercise 5.3 (grouped-query causal attention)", atol=1e-5)


def _without_output_projection(x, W_q, W_k, W_v, W_o, num_heads):
    B, T, d = x.shape
    q, k, v = (split_heads(x @ W, num_heads) for W in (W_q, W_k, W_v))
    return scaled_dot_product_attention(q, k, v)[0].transpose(1, 2).reshape(B, T, d)  # forgot @ W_o


def _groups_in_wrong_order(q, k, v):
    group = q.shape[1] // k.shape[1]
    return scaled_dot_product_attention(q, k.repeat(1, group, 1, 1), v.repeat(1, group, 1, 1), is_causal=True)[0]


# Plausible mistakes each check must reject: (what is wrong, function[, pattern the failure must match]).
WRONG_ANSWERS = {
    "check_split_heads": [("wrong order of axes", lambda x, nh: x.view(x.shape[0], nh, x.shape[1], -1))],
    "check_multi_head": [("forgot the output projection", _without_output_projection)],
    "check_grouped_query": [("groups repeated in the wrong order", _groups_in_wrong_order)],
}
