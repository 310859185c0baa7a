"""Chapter 6 exercises: layer normalisation, one cached attention step, temperature."""

from __future__ import annotations

from collections.abc import Callable

import torch

from attnbook.course import check
from attnbook.attention import scaled_dot_product_attention

__all__ = ["check_layer_norm", "check_cached_step", "check_temperature"]


def check_layer_norm(layer_norm: Callable[..., torch.Tensor]) -> None:
    """``layer_norm(x, weight, bias)``: normalise over the last dimension (biased variance, eps=1e-5).

    Shapes: x (..., d), weight and bias (d,) -> (..., d).
    """
    cases = []
    for seed, shape in enumerate([(1, 2), (3, 5), (2, 4, 8)]):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(*shape, generator=g) * 3 + 1
        w, b = torch.randn(shape[-1], generator=g), torch.randn(shape[-1], generator=g)
        cases.append(((x, w, b), torch.nn.functional.layer_norm(x, (shape[-1],), w, b, eps=1e-5)))
    check.cases(layer_norm, cases, "Exercise 6.1 (layer normalisation)", atol=1e-4)


def check_cached_step(step: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> None:
    """``step(q, k_new, v_new, k_cache, v_cache)`` -> ``(output, k_cache, v_cache)``.

    Append the new token's key and value to the cache, then let its query attend to
    the whole cache. Shapes: q, k_new, v_new (B, nh, 1, hs); caches (B, nh, T, hs)
    -> output (B, nh, 1, hs), caches (B, nh, T + 1, hs).
    """
    cases = []
    for seed, (B, nh, T, hs) in enumerate([(1, 1, 1, 2), (2, 2, 3, 4), (1, 4, 6, 8)]):
        g = torch.Generator().manual_seed(seed)
        q, k, v = (torch.randn(B, nh, 1, hs, generator=g) for _ in range(3))
        kc, vc = torch.randn(B, nh, T, hs, generator=g), torch.randn(B, nh, T, hs, generator=g)
        k_all, v_all = torch.cat([kc, k], 2), torch.cat([vc, v], 2)  # (B, nh, T + 1, hs)
        expected = scaled_dot_product_attention(q, k_all, v_all)[0]  # (B, nh, 1, hs)
        cases.append(((q, k, v, kc, vc), _pack((expected, k_all, v_all))))
    check.cases(lambda *args: _pack(step(*args)), cases, "Exercise 6.2 (one attention step with a KV cache)",
                atol=1e-5)


def _pack(result: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """The output and both caches, flattened into one tensor to compare (a wrong shape shows as a wrong length)."""
    if not isinstance(result, tuple) or len(result) != 3:
        raise TypeError(f"expected (output, k_cache, v_cache), got {type(result).__name__}")
    out, k, v = result
    return torch.cat([out.flatten(), k.flatten(), v.flatten()])


def check_temperature(probabilities: Callable[[torch.Tensor, float], torch.Tensor]) -> None:
    """``probabilities(logits, temperature)``: ``softmax(logits / temperature)`` over the last dimension.

    Shapes: logits (..., V) -> (..., V).
    """
    cases = []
    for seed, (shape, temperature) in enumerate([((4,), 1.0), ((2, 5), 0.5), ((3, 7), 2.0)]):
        logits = torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 2
        cases.append(((logits, temperature), torch.softmax(logits / temperature, dim=-1)))
    check.cases(probabilities, cases, "Exercise 6.3 (sampling temperature)", atol=1e-6)


# Plausible mistakes each check must reject: (what is wrong, function[, pattern the failure must match]).
WRONG_ANSWERS = {
    "check_layer_norm": [("unbiased variance", lambda x, w, b:
                          (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True) * w + b)],
    "check_cached_step": [("forgot to append the new key and value", lambda q, k, v, kc, vc:
                           (scaled_dot_product_attention(q, kc, vc)[0], kc, vc))],
    "check_temperature": [("multiplied instead of divided", lambda logits, t: torch.softmax(logits * t, dim=-1))],
}
