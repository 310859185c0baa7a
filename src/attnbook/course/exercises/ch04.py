"""Chapter 4 exercises: self-attention by hand, sinusoidal encodings, and rotary embeddings."""

from __future__ import annotations

from collections.abc import Callable

import torch

from attnbook.course import check
from attnbook.attention import scaled_dot_product_attention
from attnbook.positional import apply_rotary, sinusoidal_encoding

__all__ = ["check_self_attention", "check_sinusoidal", "check_rotary"]


def check_self_attention(self_attention: Callable[..., torch.Tensor]) -> None:
    """``self_attention(x, W_q, W_k, W_v)``: ``softmax(x W_q (x W_k)^T / sqrt(d_k)) x W_v``.

    Shapes: x (T, d_model), W_q and W_k (d_model, d_k), W_v (d_model, d_v) -> (T, d_v).
    """
    cases = []
    for seed, (T, d, dk, dv) in enumerate([(2, 3, 2, 2), (5, 8, 4, 6), (7, 16, 16, 3)]):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(T, d, generator=g)
        wq, wk, wv = torch.randn(d, dk, generator=g), torch.randn(d, dk, generator=g), torch.randn(d, dv, generator=g)
        cases.append(((x, wq, wk, wv), scaled_dot_product_attention(x @ wq, x @ wk, x @ wv)[0]))
    check.cases(self_attention, cases, "Exercise 4.1 (self-attention by hand)", atol=1e-4)


def check_sinusoidal(sinusoidal: Callable[[int, int], torch.Tensor]) -> None:
    """``sinusoidal(num_positions, d_model)``: ``PE[p, 2i] = sin(p / 10000^(2i/d))``, ``PE[p, 2i+1] = cos(...)``.

    Shapes: -> (num_positions, d_model).
    """
    cases = [((n, d), sinusoidal_encoding(n, d)) for n, d in [(1, 2), (4, 6), (50, 32)]]
    check.cases(sinusoidal, cases, "Exercise 4.2 (sinusoidal encoding)", atol=1e-5)


def check_rotary(rotary: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """``rotary(x)``: rotate each pair ``(x[p, 2i], x[p, 2i+1])`` by the angle ``p / 10000^(2i/d)``.

    Shapes: x (T, d), d even -> (T, d).
    """
    cases = []
    for seed, (T, d) in enumerate([(1, 2), (3, 4), (9, 16)]):
        x = torch.randn(T, d, generator=torch.Generator().manual_seed(seed))
        cases.append(((x,), apply_rotary(x)))
    check.cases(rotary, cases, "Exercise 4.3 (rotary position embedding)", atol=1e-5)


# Plausible mistakes each check must reject: (what is wrong, function[, pattern the failure must match]).
WRONG_ANSWERS = {
    "check_self_attention": [("no 1/sqrt(d_k) scaling", lambda x, W_q, W_k, W_v:
                              torch.softmax((x @ W_q) @ (x @ W_k).T, dim=-1) @ (x @ W_v))],
    "check_sinusoidal": [("sin and cos swapped", lambda n, d:
                          sinusoidal_encoding(n, d).view(n, d // 2, 2).flip(-1).reshape(n, d))],
    "check_rotary": [("no rotation (only position 0 is right)", lambda x: x, r"(?s)Exercise 4.3 .*case 2")],
}
