"""Chapter 8 exercises: a positional head score, mean pooling, and a head-pruning mask."""

from __future__ import annotations

from collections.abc import Callable

import torch

from attnbook.course import check
from attnbook.heads import gates_without, prune_order
from attnbook.sentence_embeddings import mean_pool

__all__ = ["check_previous_token_weight", "check_mean_pool", "check_prune_mask"]


def _attention(g: torch.Generator, heads: int, T: int) -> torch.Tensor:
    return torch.softmax(3 * torch.randn(heads, T, T, generator=g), dim=-1)  # (heads, T, T), rows sum to 1


def check_previous_token_weight(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """``fn(att)``: each head's mean weight from token ``i`` to token ``i - 1``, over ``i = 1 .. T-1``.

    Shapes: att (heads, T, T) -> (heads,).
    """
    cases = []
    for seed, (heads, T) in enumerate([(1, 2), (3, 5), (12, 9)]):
        att = _attention(torch.Generator().manual_seed(seed), heads, T)
        i = torch.arange(1, T)
        cases.append(((att,), att[:, i, i - 1].mean(dim=-1)))
    check.cases(fn, cases, "Exercise 8.1 (weight on the previous token)", atol=1e-6)


def check_mean_pool(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """``fn(hidden, mask)``: the mean of the real tokens' vectors (mask 1), scaled to length one.

    Shapes: hidden (B, T, d), mask (B, T) of 0/1 -> (B, d).
    """
    cases = []
    for seed, (lengths, d) in enumerate([([3], 4), ([5, 2], 6), ([4, 4, 1], 8)]):
        g = torch.Generator().manual_seed(seed)
        T = max(lengths)
        hidden = torch.randn(len(lengths), T, d, generator=g) + 1.0
        mask = (torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]).long()  # (B, T)
        hidden = hidden + 50.0 * (1 - mask)[..., None]  # padding rows are far away: including them is visible
        cases.append(((hidden, mask), mean_pool(hidden, mask)))
    check.cases(fn, cases, "Exercise 8.2 (mean pooling)", atol=1e-5)


def check_prune_mask(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """``fn(importance, n)``: gates of ones with zeros at the ``n`` least important heads.

    Shapes: importance (layers, heads), distinct values -> (layers, heads) float of 0/1.
    """
    cases = []
    for seed, (layers, heads, n) in enumerate([(1, 4, 1), (2, 3, 0), (6, 12, 30), (3, 4, 12)]):
        importance = torch.rand(layers, heads, generator=torch.Generator().manual_seed(seed))
        cases.append(((importance, n), gates_without(layers, heads, prune_order(importance)[:n])))
    check.cases(fn, cases, "Exercise 8.3 (head-pruning mask)", atol=0.0, rtol=0.0)


# Plausible mistakes each check must reject: (what is wrong, function[, pattern the failure must match]).
WRONG_ANSWERS = {
    "check_previous_token_weight": [("the next token instead of the previous", lambda att:
                                     att[:, torch.arange(att.shape[-1] - 1), torch.arange(1, att.shape[-1])].mean(-1))],
    "check_mean_pool": [("padding included in the mean", lambda h, m: torch.nn.functional.normalize(h.mean(1), dim=-1)),
                        ("forgot to normalise", lambda h, m: (h * m[..., None]).sum(1) / m.sum(1, keepdim=True))],
    "check_prune_mask": [("removed the most important heads", lambda imp, n:
                          gates_without(imp.shape[0], imp.shape[1], prune_order(-imp)[:n]))],
}
