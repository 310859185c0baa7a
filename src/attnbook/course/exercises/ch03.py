"""Chapter 3 exercises: scaled dot-product attention, kernel regression, and the entropy of weights."""

from __future__ import annotations

from collections.abc import Callable

import torch

from attnbook.attention import scaled_dot_product_attention
from attnbook.course import check
from attnbook.course.exercises._guard import guarded

__all__ = ["check_attention", "check_kernel_regression", "check_entropy"]


_ATTENTION = "Exercise 3.1 (scaled dot-product attention)"
ATTENTION_FORBIDDEN = ["torch.nn.functional:scaled_dot_product_attention",
                       "torch.nn.functional:multi_head_attention_forward",
                       "torch.nn:MultiheadAttention.forward",
                       "attnbook.attention:scaled_dot_product_attention"]


def _attention_cases() -> list[tuple[str, list]]:
    """(what the cases test, [((q, k, v, mask, is_causal), expected output), ...])."""
    groups: dict[str, list] = {"no mask": [], "a boolean mask (True = may attend)": [],
                               "is_causal with fewer queries than keys (query i sees keys up to "
                               "i + S - L)": [],
                               "a query whose keys are all masked (zero output, not NaN)": []}
    names = list(groups)
    shapes = [(0, (1, 2, 3, 4, 4)), (0, (2, 4, 6, 8, 3)), (1, (2, 3, 5, 16, 2)), (2, (2, 3, 5, 8, 4)),
              (2, (1, 4, 4, 4, 2)), (3, (2, 3, 4, 8, 3))]
    for seed, (group, (B, L, S, dk, dv)) in enumerate(shapes):
        g = torch.Generator().manual_seed(seed)
        q, k = torch.randn(B, L, dk, generator=g), torch.randn(B, S, dk, generator=g)
        v = torch.randn(B, S, dv, generator=g)
        mask, causal = None, group == 2
        if group in (1, 3):
            mask = torch.rand(B, L, S, generator=g) < 0.6
            mask[..., 0] = True  # every query keeps at least one key...
            if group == 3:
                mask[0, 1] = False  # ...but this one
        want = scaled_dot_product_attention(q, k, v, mask, is_causal=causal)[0]
        groups[names[group]].append(((q, k, v, mask, causal), want))
    return list(groups.items())


def check_attention(attention: Callable[..., torch.Tensor]) -> None:
    """``attention(q, k, v, mask=None, is_causal=False)``: ``softmax(q k^T / sqrt(d_k)) v`` by hand.

    Masked keys get zero weight, ``is_causal`` aligns the triangle at the bottom right
    (query i sees keys 0..i + S - L), a query with every key masked gets a zero output.
    Calling ``F.scaled_dot_product_attention``, ``nn.MultiheadAttention`` or the package's
    ``scaled_dot_product_attention`` fails the check. Shapes: q (B, L, d_k), k (B, S, d_k),
    v (B, S, d_v), mask (B, L, S) bool or None -> (B, L, d_v).
    """
    run = guarded(attention, ATTENTION_FORBIDDEN)
    for what, cases in _attention_cases():
        check.cases(run, cases, f"{_ATTENTION}, {what}", atol=1e-5)
    print(f"PASS  {_ATTENTION}: every case, with no library attention called")


def _attention_top_left(q, k, v, mask=None, is_causal=False):
    """The causal triangle aligned at the top left (PyTorch's is_causal), not the book's."""
    L, S = q.shape[-2], k.shape[-2]
    keep = torch.ones(L, S, dtype=torch.bool)
    keep = keep.tril() if is_causal else keep
    keep = keep & mask if mask is not None else keep
    scores = (q @ k.mT / q.shape[-1] ** 0.5).masked_fill(~keep, float("-inf"))
    return torch.softmax(scores, -1).nan_to_num(0.0) @ v


def _attention_nan_rows(q, k, v, mask=None, is_causal=False):
    """Right except that a fully masked query gets NaN (softmax of all -inf)."""
    L, S = q.shape[-2], k.shape[-2]
    keep = torch.ones(L, S, dtype=torch.bool)
    keep = keep.tril(S - L) if is_causal else keep
    keep = keep & mask if mask is not None else keep
    scores = (q @ k.mT / q.shape[-1] ** 0.5).masked_fill(~keep, float("-inf"))
    return torch.softmax(scores, -1) @ v


def _attention_by_library(q, k, v, mask=None, is_causal=False):
    """Right answers, but by calling the fused kernel the exercise forbids."""
    return scaled_dot_product_attention(q, k, v, mask, is_causal=is_causal)[0]


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
    name = "Exercise 3.2 (kernel regression as attention)"

    def averaged(*args):  # a weighted average of y_train stays within y_train's range
        got = kernel_regression(*args)
        y = args[2]
        if isinstance(got, torch.Tensor) and got.shape == args[0].shape and got.numel() and (
                got.min() < y.min() - 1e-5 or got.max() > y.max() + 1e-5):
            raise ValueError(f"a prediction ({float(got.abs().max()):.3g}) lies outside the range of y_train "
                             f"[{float(y.min()):.3g}, {float(y.max()):.3g}]: the weights must sum to one")
        return got

    check.cases(averaged, cases, name, atol=1e-5)


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
    "check_attention": [("no 1/sqrt(d_k) scaling", lambda q, k, v, mask=None, is_causal=False:
                         torch.softmax(q @ k.mT, -1) @ v, r"(?s)Exercise 3.1 .*no mask, case 1.*largest"),
                        ("ignores the mask", lambda q, k, v, mask=None, is_causal=False:
                         torch.softmax(q @ k.mT / q.shape[-1] ** 0.5, -1) @ v, r"(?s)boolean mask"),
                        ("causal triangle aligned at the top left", _attention_top_left, r"is_causal with fewer"),
                        ("a fully masked query gives NaN", _attention_nan_rows, r"(?s)all masked.*got nan"),
                        ("calls F.scaled_dot_product_attention", _attention_by_library,
                         r"asks you not to use")],
    "check_kernel_regression": [("weights not normalised", lambda xq, xt, yt, h:
                                 torch.exp(-((xq[:, None] - xt[None, :]) ** 2) / (2 * h**2)) @ yt,
                                 r"must sum to one")],
    "check_entropy": [("0 log 0 gives NaN", lambda w: -(w * torch.log(w)).sum(-1),
                       r"(?s)Exercise 3.3 .*case 2.*got nan")],
}
