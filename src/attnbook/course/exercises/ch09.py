"""Chapter 9 exercises: the online softmax, one FlashAttention tile, a sliding-window mask, linear attention."""

from __future__ import annotations

from collections.abc import Callable

import torch

from attnbook.course import check
from attnbook.linear_attention import linear_attention
from attnbook.sparse import sliding_window_mask

__all__ = ["check_online_softmax", "check_flash_step", "check_local_mask", "check_linear_attention"]


def check_online_softmax(online: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """``online(x, block_size)``: the softmax of a 1-D ``x``, read block by block with a running max and sum.

    Some cases have scores around 1000, where ``exp`` without subtracting the maximum
    overflows, and one has its maximum far above the first block's. Shapes: x (N,) -> (N,).
    """
    cases = []
    for seed, (n, block, shift) in enumerate([(5, 2, 0.0), (7, 3, 0.0), (12, 5, 1000.0), (9, 9, -1000.0),
                                              (10, 1, 500.0)]):
        x = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3 + shift
        x[seed % n] += 5.0  # a clear maximum, somewhere other than the first block in most cases
        cases.append(((x, block), torch.softmax(x, dim=0)))
    late = torch.cat([torch.full((4,), -800.0), torch.linspace(0.0, 900.0, 6)]).double()  # the max comes late
    cases.append(((late, 3), torch.softmax(late, dim=0)))
    check.cases(online, cases, "Exercise 9.1 (online softmax)", atol=1e-10)


def check_flash_step(step: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> None:
    """``step(acc, m, l, s, v)``: fold one block of scores and values into the running state.

    ``acc`` (L, d_v) is the unnormalised output so far, ``m`` (L,) the running maximum
    of the scores, ``l`` (L,) the running sum of ``exp(score - m)``; ``s`` (L, B) is
    the new block of scores and ``v`` (B, d_v) its values. Returns the new
    ``(acc, m, l)``. The check starts from ``acc = 0``, ``m = -inf``, ``l = 0``, feeds
    the blocks one after another and compares ``acc / l`` with ``softmax(S) V``.
    """
    def run(scores: torch.Tensor, values: torch.Tensor, block: int) -> torch.Tensor:
        L, S = scores.shape
        acc = torch.zeros(L, values.shape[-1], dtype=scores.dtype)
        m = torch.full((L,), float("-inf"), dtype=scores.dtype)
        l = torch.zeros(L, dtype=scores.dtype)
        for j in range(0, S, block):
            acc, m, l = step(acc, m, l, scores[:, j:j + block], values[j:j + block])
        return acc / l[:, None]

    cases = []
    for seed, (L, S, dv, block, spread) in enumerate([(2, 4, 3, 2, 1.0), (3, 7, 2, 3, 4.0), (4, 10, 5, 4, 30.0)]):
        g = torch.Generator().manual_seed(seed)
        scores = torch.randn(L, S, generator=g, dtype=torch.float64) * spread
        scores[:, -1] += 2 * spread  # the maximum comes late, so the old blocks must be rescaled
        values = torch.randn(S, dv, generator=g, dtype=torch.float64)
        cases.append(((scores, values, block), torch.softmax(scores, dim=-1) @ values))
    check.cases(lambda s, v, b: run(s, v, b), cases, "Exercise 9.2 (one FlashAttention step)", atol=1e-9)


def check_local_mask(local_mask: Callable[[int, int, int], torch.Tensor]) -> None:
    """``local_mask(length, window, num_global)``: bool (length, length), True = may attend.

    Query ``i`` may read key ``j`` when ``|i - j| <= window``, or when ``i`` or ``j`` is
    one of the first ``num_global`` positions (not causal).
    """
    cases = [((length, window, g), sliding_window_mask(length, window, num_global=g))
             for length, window, g in [(5, 1, 0), (8, 2, 1), (10, 0, 2), (12, 3, 3)]]
    check.cases(local_mask, cases, "Exercise 9.3 (sliding-window mask with global tokens)", atol=0.0, rtol=0.0)


def check_linear_attention(linear: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """``linear(q, k, v)``: non-causal linear attention with the feature map ``elu(x) + 1``.

    ``phi(Q) (phi(K)^T V)`` divided row by row by ``phi(Q) sum_j phi(k_j)``.
    Shapes: q (B, L, d), k (B, S, d), v (B, S, d_v) -> (B, L, d_v).
    """
    cases = []
    for seed, (B, L, S, d, dv) in enumerate([(1, 3, 3, 2, 2), (2, 5, 7, 4, 3), (2, 8, 6, 8, 5)]):
        g = torch.Generator().manual_seed(seed)
        q, k = torch.randn(B, L, d, generator=g), torch.randn(B, S, d, generator=g)
        v = torch.randn(B, S, dv, generator=g)
        cases.append(((q, k, v), linear_attention(q, k, v)))
    check.cases(linear, cases, "Exercise 9.4 (linear attention)", atol=1e-5)


def _step_without_rescaling(acc, m, l, s, v):
    m_new = torch.maximum(m, s.amax(-1))
    p = torch.exp(s - m_new[:, None])
    return acc + p @ v, m_new, l * torch.exp(m - m_new) + p.sum(-1)  # forgot to rescale acc


def _no_global_rows(n, w, g):
    return sliding_window_mask(n, w) | (torch.arange(n)[None, :] < g)


# Plausible mistakes each check must reject: (what is wrong, function[, pattern the failure must match]).
WRONG_ANSWERS = {
    "check_online_softmax": [("no running max: exp overflows", lambda x, b: torch.exp(x) / torch.exp(x).sum()),
                             ("the max of the first block only", lambda x, b:
                              torch.exp(x - x[:b].max()) / torch.exp(x - x[:b].max()).sum())],
    "check_flash_step": [("forgot to rescale the accumulator", _step_without_rescaling)],
    "check_local_mask": [("global rows forgotten", _no_global_rows),
                         ("window one too narrow", lambda n, w, g: sliding_window_mask(n, max(w - 1, 0), num_global=g))],
    "check_linear_attention": [("no normalisation", lambda q, k, v:
                                (torch.nn.functional.elu(q) + 1) @ ((torch.nn.functional.elu(k) + 1).mT @ v)),
                               ("softmax attention instead", torch.nn.functional.scaled_dot_product_attention)],
}
