"""Chapter 11 exercises: the cache per token, MLA weight absorption, sink-keeping eviction, soft-capping."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from attnbook.attention import scaled_dot_product_attention
from attnbook.course import check

__all__ = ["check_kv_bytes", "check_absorb", "check_evict", "check_softcap"]


def check_kv_bytes(kv_bytes: Callable[..., Any]) -> None:
    """``kv_bytes(num_layers, num_kv_heads, head_dim, dtype_bytes, latent=None, share=1)`` -> bytes per token.

    Expected values from :func:`attnbook.kv_variants.kv_bytes_formula` on the matching GPTConfig.
    """
    from attnbook.gpt import GPTConfig
    from attnbook.kv_variants import kv_bytes_formula

    cases = []
    for layers, heads, kv_heads, head_dim, dtype_bytes, latent, share in [
            (32, 32, 32, 128, 2, None, 1), (32, 32, 8, 128, 2, None, 1), (2, 4, 1, 16, 4, None, 1),
            (60, 128, 128, 128, 2, 512, 1), (12, 8, 2, 64, 2, None, 2), (4, 4, 4, 16, 4, 32, 2)]:
        config = GPTConfig(100, 16, d_model=heads * head_dim, num_heads=heads, num_layers=layers,
                           num_kv_heads=kv_heads if latent is None else None, kv_latent=latent, kv_share=share)
        expected = kv_bytes_formula(config, context=16, dtype_bytes=dtype_bytes)
        cases.append(((layers, kv_heads, head_dim, dtype_bytes, latent, share), float(expected)))
    check.cases(lambda *a: float(kv_bytes(*a)), cases, "Exercise 11.1 (the cache per token)")


def _absorbed_output(absorb: Callable[..., Any], layer, x: torch.Tensor) -> torch.Tensor:
    nh, r = layer.num_heads, layer.latent
    result = absorb(layer.w_q.weight.detach().clone(), layer.w_uk.weight.detach().clone(),
                    layer.w_uv.weight.detach().clone(), layer.w_o.weight.detach().clone(), nh)
    if not isinstance(result, tuple) or len(result) != 2:
        raise TypeError(f"expected (w_q_abs, w_o_abs), got {type(result).__name__}")
    w_q_abs, w_o_abs = result
    B, T, d = x.shape
    q = (x @ w_q_abs.T).view(B, T, nh, r).transpose(1, 2)  # (B, nh, T, r)
    c = layer.w_dkv(x).unsqueeze(1)  # (B, 1, T, r)
    o, _ = scaled_dot_product_attention(q, c, c, is_causal=True)  # default scale 1 / sqrt(r)
    return o.transpose(1, 2).reshape(B, T, nh * r) @ w_o_abs.T  # (B, T, d)


def check_absorb(absorb: Callable[..., Any]) -> None:
    """``absorb(w_q, w_uk, w_uv, w_o, num_heads)`` -> ``(w_q_abs (nh * r, d), w_o_abs (d, nh * r))``.

    The check runs attention on the latent with the returned weights (queries ``x w_q_abs^T``
    split into heads of width r, keys = values = ``x W_dkv^T``, scale ``1 / sqrt(r)``) and
    compares with the package's plain :class:`~attnbook.kv_variants.LatentAttention`.
    """
    from attnbook.kv_variants import LatentAttention
    from attnbook.multihead import MultiHeadConfig

    cases = []
    for seed, (d, nh, r, T) in enumerate([(8, 2, 4, 5), (16, 4, 8, 7), (32, 4, 16, 6)]):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            layer = LatentAttention(MultiHeadConfig(d, nh, bias=False), r)
            x = torch.randn(2, T, d)
        with torch.no_grad():
            cases.append(((layer, x), layer(x, is_causal=True)))
    with torch.no_grad():
        check.cases(lambda layer, x: _absorbed_output(absorb, layer, x), cases,
                    "Exercise 11.2 (MLA weight absorption)", atol=1e-5)


def check_evict(evict: Callable[..., Any]) -> None:
    """``evict(keys, values, window, sinks)`` -> the first ``sinks`` and last ``window`` entries (axis 2).

    Expected values from :func:`attnbook.streaming.roll_cache`. Shapes: (B, heads, T, hs).
    """
    from attnbook.streaming import roll_cache

    cases = []
    for seed, (T, window, sinks) in enumerate([(10, 4, 2), (6, 4, 2), (9, 5, 0), (12, 3, 4), (3, 8, 1)]):
        g = torch.Generator().manual_seed(seed)
        k, v = torch.randn(2, 3, T, 4, generator=g), torch.randn(2, 3, T, 4, generator=g)
        kept = roll_cache([(k, v)], window, sinks)[0]
        cases.append(((k, v, window, sinks), _pack(kept)))
    check.cases(lambda *a: _pack(evict(*a)), cases, "Exercise 11.3 (sink-keeping eviction)")


def _pack(pair: Any) -> torch.Tensor:
    if not isinstance(pair, tuple) or len(pair) != 2:
        raise TypeError(f"expected (keys, values), got {type(pair).__name__}")
    k, v = pair
    return torch.cat([torch.tensor([float(k.shape[2])]), k.flatten(), v.flatten()])  # the length, then the values


def _capped_by_package(scores: torch.Tensor, cap: float) -> torch.Tensor:
    """Capped scores read back from the package's attention: two keys, scores s and 0, log(w0 / w1)."""
    q = scores.reshape(-1, 1, 1).double()  # one query per score, width 1
    k = torch.tensor([[1.0], [0.0]], dtype=torch.float64)  # scores s * 1 and s * 0
    _, w = scaled_dot_product_attention(q, k.expand(len(q), 2, 1), torch.zeros(len(q), 2, 1, dtype=torch.float64),
                                        scale=1.0, softcap=cap)  # (N, 1, 2)
    return (w[:, 0, 0].log() - w[:, 0, 1].log()).reshape(scores.shape).float()


def check_softcap(softcap: Callable[..., Any]) -> None:
    """``softcap(scores, cap)`` -> ``cap * tanh(scores / cap)``, element-wise; any shape."""
    cases = []
    for seed, (shape, cap) in enumerate([((5,), 5.0), ((2, 3), 1.0), ((2, 2, 4), 30.0)]):
        s = torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 3 * cap
        cases.append(((s, cap), _capped_by_package(s, cap)))
    check.cases(softcap, cases, "Exercise 11.4 (soft-capping)", atol=1e-4)


def _no_stretch(w_q, w_uk, w_uv, w_o, nh):
    d, r = w_uk.shape
    hs = d // nh
    q = torch.einsum("hsr,hsd->hrd", w_uk.view(nh, hs, r), w_q.view(nh, hs, d)).reshape(nh * r, d)
    o = torch.einsum("dhs,hsr->dhr", w_o.view(d, nh, hs), w_uv.view(nh, hs, r)).reshape(d, nh * r)
    return q, o


def _keys_for_values(w_q, w_uk, w_uv, w_o, nh):
    q, _ = _no_stretch(w_q, w_uk, w_uv, w_o, nh)
    _, o = _no_stretch(w_q, w_uk, w_uk, w_o, nh)
    d, r = w_uk.shape
    return q * math.sqrt(r / (d // nh)), o


def _no_sinks(k, v, window, sinks):
    return k[:, :, -window:], v[:, :, -window:]


def _always_concatenate(k, v, window, sinks):
    T = k.shape[2]
    keep = lambda t: torch.cat([t[:, :, :sinks], t[:, :, max(0, T - window):]], dim=2)  # noqa: E731
    return keep(k), keep(v)


# Plausible mistakes each check must reject: (what is wrong, function[, pattern the failure must match]).
WRONG_ANSWERS = {
    "check_kv_bytes": [("forgot the factor 2 (keys and values)",
                        lambda L, h, d, b, latent=None, share=1: L // share * (latent or h * d) * b),
                       ("ignored sharing", lambda L, h, d, b, latent=None, share=1:
                        L * (latent if latent is not None else 2 * h * d) * b)],
    "check_absorb": [("forgot the scale sqrt(r / d_h)", _no_stretch),
                     ("folded W_uk into the output instead of W_uv", _keys_for_values)],
    "check_evict": [("kept no sinks", _no_sinks),
                    ("duplicates entries when nothing needs evicting", _always_concatenate)],
    "check_softcap": [("tanh without scaling back", lambda s, c: torch.tanh(s / c)),
                      ("a hard clamp", lambda s, c: s.clamp(-c, c))],
}
