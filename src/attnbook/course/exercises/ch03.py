"""Chapter 3 exercises: scaled dot-product attention, kernel regression, and the entropy of weights."""

from __future__ import annotations

from collections.abc import Callable

import torch

from attnbook.course import check
from attnbook.attention import scaled_dot_product_attention

__all__ = ["check_attention", "check_kernel_regression", "check_entropy"]


def check_attention(attention: Callable[..., torch.Tensor]) -> None:
    """``attention(q, k, v, mask)`` = ``softmax(q k^T / sqrt(d_k))`` with masked keys at zero weight, times ``v``.

    Shapes: q (B, L, d_k), k (B, S, d_k), v (B, S, d_v), mask (B, L, S) bool (True = may attend) or None
    -> (B, L, d_v).
    """
    cases = []
    for seed, (B, L, S, dk, dv, masked) in enumerate([(1, 2, 3, 4, 4, False), (2, 4, 6, 8, 3, False),
                                                      (2, 3, 5, 16, 2, True)]):
        g = torch.Generator().manual_seed(seed)
        q, k, v = torch.randn(B, L, dk, generator=g), torch.randn(B, S, dk, generator=g), torch.randn(B, S, dv, generator=g)
        mask = None
        if masked:
            mask = torch.rand(B, L, S, generator=g) < 0.6
            mask[..., 0] = True  # every query keeps at least one key
        cases.append(((q, k, v, mask), scaled_dot_product_attention(q, k, v, mask)[0]))
    check.cases(attention, cases, "Exercise 3.1 (scaled dot-product attention)", atol=1e-5)


def _nadaraya_watson(x_query: torch.Tensor, x_train: torch.Tensor, y_train: torch.Tensor,
                     bandwidth: float) -> torch.Tensor:
    scores = -((x_query[:, None] - x_train[None, :]) ** 2) / (2 * bandwidth**2)  # (Q, N)
    return torch.softmax(scores, dim=-1) @ y_train  # (Q,)


def check_kernel_regression(kernel_regression: Callable[..., torch.Tensor]) -> None:
    """``kernel_regression(x_query, x_train, y_train, bandwidth)``: Nadaraya-Watson with a Gaussian kernel.

    Each prediction is the average of ``y_train`` weighted by ``exp(-(x_q - x_i)^2 / (2 bandwidth^2))``
    (normalised to sum to one). Shapes: x_query (Q,), x_train (N,), y_train (N,) -> (Q,).
    """
    cases = []
    for seed, (Q, N, h) in enumerate([(3, 4, 1.0), (5, 20, 0.3), (4, 50, 2.0)]):
        g = torch.Generator().manual_seed(seed)
        xq, xt = 5 * torch.rand(Q, generator=g), 5 * torch.rand(N, generator=g)
        yt = torch.sin(xt) + 0.1 * torch.randn(N, generator=g)
        cases.append(((xq, xt, yt, h), _nadaraya_watson(xq, xt, yt, h)))
    check.cases(kernel_regression, cases, "Exercise 3.2 (kernel regression as attention)", atol=1e-5)


def check_entropy(entropy: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """``entropy(weights)``: the entropy in nats of each row, ``-sum_j w_j log w_j``, with ``0 log 0 = 0``.

    Shapes: weights (..., S), rows summing to one -> (...).
    """
    uniform = torch.full((2, 8), 1 / 8)
    one_hot = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    mixed = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.7, 0.1, 0.1, 0.1]])
    g = torch.Generator().manual_seed(0)
    batch = torch.softmax(torch.randn(2, 3, 5, generator=g), dim=-1)
    def ref(w: torch.Tensor) -> torch.Tensor:
        return -(torch.where(w > 0, w * torch.log(w), torch.zeros_like(w))).sum(-1)
    cases = [((w,), ref(w)) for w in (uniform, one_hot, mixed, batch)]
    check.cases(entropy, cases, "Exercise 3.3 (entropy of attention weights)", atol=1e-5)


# Plausible mistakes each check must reject: (what is wrong, function[, pattern the failure must match]).
WRONG_ANSWERS = {
    "check_attention": [("no 1/sqrt(d_k) scaling", lambda q, k, v, mask=None: torch.softmax(q @ k.mT, -1) @ v,
                         r"(?s)Exercise 3.1 .*case 1.*largest difference"),
                        ("ignores the mask", lambda q, k, v, mask=None: scaled_dot_product_attention(q, k, v)[0],
                         r"(?s)Exercise 3.1 .*case 3")],
    "check_kernel_regression": [("weights not normalised", lambda xq, xt, yt, h:
                                 torch.exp(-((xq[:, None] - xt[None, :]) ** 2) / (2 * h**2)) @ yt)],
    "check_entropy": [("0 log 0 gives NaN", lambda w: -(w * torch.log(w)).sum(-1),
                       r"(?s)Exercise 3.3 .*case 2.*got nan")],
}
