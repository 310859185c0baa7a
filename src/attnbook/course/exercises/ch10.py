"""Chapter 10 exercises: attention per image region, monotonic alignment, the selective scan, scaling exponents,
the average-product correction and a text-to-image cross-attention."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from attnbook.course import check
from attnbook.alignment import monotonic_share
from attnbook.attention import scaled_dot_product_attention
from attnbook.contacts import apc
from attnbook.cost import fit_power_law
from attnbook.crossmodal import attention_by_region
from attnbook.ssm import selective_scan_reference

__all__ = ["check_region_attention", "check_monotonic_share", "check_selective_scan", "check_power_law",
           "check_apc", "check_image_to_word_attention"]


def check_region_attention(region_attention: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]) -> None:
    """``region_attention(weights, regions, num_regions)``: the attention each region receives.

    ``weights`` (B, T, S), ``regions`` (S,) the region index of every input element,
    -> (B, T, num_regions), the sum of the weights of each region's elements.
    """
    cases = []
    for seed, (B, T, S, R) in enumerate([(1, 1, 4, 2), (2, 3, 6, 3), (2, 4, 12, 4)]):
        g = torch.Generator().manual_seed(seed)
        weights = torch.softmax(torch.randn(B, T, S, generator=g), dim=-1)
        regions = torch.randint(0, R, (S,), generator=g)
        regions[:R] = torch.arange(R)  # every region has at least one element
        regions = regions[torch.randperm(S, generator=g)]  # not sorted: no slicing shortcut
        cases.append(((weights, regions, R), attention_by_region(weights, regions, R)))
    check.cases(region_attention, cases, "Exercise 10.1 (attention per region)", atol=1e-6)


def check_monotonic_share(share: Callable[[torch.Tensor], float]) -> None:
    """``share(path)``: the share of consecutive steps whose position does not decrease.

    ``path`` (B, T) integer positions -> a float; equal positions count as monotonic.
    """
    cases = [((torch.tensor([[0, 1, 2, 3]]),), 1.0), ((torch.tensor([[3, 2, 1, 0]]),), 0.0),
             ((torch.tensor([[0, 0, 2, 1]]),), 2 / 3), ((torch.tensor([[1, 1], [2, 0]]),), 0.5)]
    g = torch.Generator().manual_seed(0)
    path = torch.randint(0, 9, (5, 7), generator=g)
    cases.append(((path,), monotonic_share(path)))
    check.cases(share, cases, "Exercise 10.2 (monotonic share)", atol=1e-9)


def check_selective_scan(scan: Callable[..., torch.Tensor]) -> None:
    """``scan(x, delta, A, B, C)``: the selective scan as a loop, without the skip term D.

    ``h_t = exp(delta_t A) h_{t-1} + delta_t B_t x_t`` (h starts at zero), ``y_t = C_t . h_t``.
    Shapes: x, delta (batch, L, D); A (D, N); B, C (batch, L, N) -> y (batch, L, D).
    """
    cases = []
    for seed, (Bt, L, D, N) in enumerate([(1, 3, 2, 1), (2, 5, 3, 4), (2, 9, 4, 3)]):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(Bt, L, D, generator=g)
        delta = 0.1 + torch.rand(Bt, L, D, generator=g)
        A = -(0.5 + torch.rand(D, N, generator=g))
        B, C = torch.randn(Bt, L, N, generator=g), torch.randn(Bt, L, N, generator=g)
        cases.append(((x, delta, A, B, C), selective_scan_reference(x, delta, A, B, C)))
    check.cases(scan, cases, "Exercise 10.3 (the selective scan as a loop)", atol=1e-5)


def check_power_law(fit: Callable[[np.ndarray, np.ndarray], float]) -> None:
    """``fit(lengths, seconds)``: the exponent ``p`` of ``seconds = c * lengths ** p``, by least squares in log-log.

    Both arguments are 1-D NumPy arrays of positive numbers; return a float.
    """
    lengths = np.array([256.0, 512.0, 1024.0, 2048.0, 4096.0])
    rng = np.random.default_rng(0)
    cases = []
    for c, p in [(1e-6, 1.0), (3e-9, 2.0), (2e-5, 1.37)]:
        seconds = c * lengths ** p * np.exp(0.05 * rng.standard_normal(lengths.shape))
        cases.append(((lengths, seconds), fit_power_law(lengths, seconds)[0]))
    check.cases(fit, cases, "Exercise 10.4 (fitting a scaling exponent)", atol=1e-6)


def check_apc(correct: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """``correct(F)``: the average-product correction of a symmetric (L, L) score matrix.

    ``F_ij - F_i. F_.j / F_..``, where ``F_i.`` is the mean of row ``i`` over ``j != i`` and
    ``F_..`` the mean of all off-diagonal entries; the diagonal is ignored and returned as zero.
    """
    cases = []
    for seed, L in enumerate([3, 5, 9]):
        g = torch.Generator().manual_seed(seed)
        a = torch.rand(L, L, generator=g)
        F = a + a.T + 3 * torch.diag(torch.rand(L, generator=g))  # a diagonal that must not count
        cases.append(((F,), apc(F)))
    check.cases(correct, cases, "Exercise 10.5 (the average-product correction)", atol=1e-5)


def check_image_to_word_attention(attend: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> None:
    """``attend(patches, words, w_q, w_k, w_v)``: one head of cross-attention from image patches to words.

    ``patches`` (B, S, d), ``words`` (B, W, d), ``w_q, w_k, w_v`` (d, d_h) -> ``(output, weights)``:
    queries from the patches, keys and values from the words, scores scaled by ``1 / sqrt(d_h)``;
    output (B, S, d_h), weights (B, S, W) with every row summing to 1.
    """
    outputs, weights = [], []
    for seed, (B, S, W, d, dh) in enumerate([(1, 2, 3, 4, 2), (2, 6, 3, 8, 4), (2, 12, 5, 8, 8)]):
        g = torch.Generator().manual_seed(seed)
        patches, words = torch.randn(B, S, d, generator=g), torch.randn(B, W, d, generator=g)
        w_q, w_k, w_v = (torch.randn(d, dh, generator=g) for _ in range(3))
        out, w = scaled_dot_product_attention(patches @ w_q, words @ w_k, words @ w_v)
        outputs.append(((patches, words, w_q, w_k, w_v), out))
        weights.append(((patches, words, w_q, w_k, w_v), w))
    check.cases(lambda *args: attend(*args)[1], weights, "Exercise 10.6 (image-to-word attention), the weights",
                atol=1e-5)
    check.cases(lambda *args: attend(*args)[0], outputs, "Exercise 10.6 (image-to-word attention), the output",
                atol=1e-5)


# Plausible mistakes each check must reject: (what is wrong, function[, pattern the failure must match]).
WRONG_ANSWERS = {
    "check_region_attention": [("assumed contiguous, equal-sized regions", lambda w, r, R:
                                w.reshape(*w.shape[:-1], R, -1).sum(-1))],
    "check_monotonic_share": [("standing still counted as a step back", lambda p:
                               (p[:, 1:] > p[:, :-1]).float().mean().item())],
    "check_selective_scan": [("forgot to discretise B with delta", lambda x, d, A, B, C:
                              selective_scan_reference(x, d, A, B / d.mean(), C)),
                             ("forgets with exp(A), not exp(delta A)", lambda x, d, A, B, C:
                              selective_scan_reference(x, torch.ones_like(d), A, B * d[..., :1], C))],
    "check_power_law": [("the ratio of the last two points, not a fit", lambda n, s:
                         float(np.log(s[-1] / s[-2]) / np.log(n[-1] / n[-2])))],
    "check_apc": [("means taken over the diagonal too", lambda F:
                   (F - torch.outer(F.mean(1), F.mean(0)) / F.mean()) * (1 - torch.eye(F.shape[0]))),
                  ("the diagonal left in place", lambda F: apc(F) + torch.diag(F.diagonal()))],
    "check_image_to_word_attention": [("the roles swapped: words ask, patches answer",
                                       lambda p, w, q, k, v: _attend(w, p, q, k, v)),
                                      ("scores not scaled by 1 / sqrt(d_h)", lambda p, w, q, k, v:
                                       _attend(p * q.shape[1] ** 0.5, w, q, k, v))],
}


def _attend(queries_from, keys_from, w_q, w_k, w_v):
    return scaled_dot_product_attention(queries_from @ w_q, keys_from @ w_k, keys_from @ w_v)
