"""Chapter 7 exercises: cutting an image into patches, attention rollout, position-embedding similarity."""

from __future__ import annotations

from collections.abc import Callable

import torch

from attnbook.course import check
from attnbook.vit import attention_rollout, patchify

__all__ = ["check_patchify", "check_rollout", "check_similarity"]


def check_patchify(cut: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """``cut(images, p)``: non-overlapping p x p patches, row by row, each flattened as (C, p, p).

    Shapes: images (B, C, H, W) -> (B, (H / p) * (W / p), C * p * p).
    """
    cases = []
    for seed, (B, C, H, W, p) in enumerate([(1, 1, 4, 4, 2), (2, 1, 6, 9, 3), (2, 3, 8, 4, 4)]):
        x = torch.randn(B, C, H, W, generator=torch.Generator().manual_seed(seed))
        cases.append(((x, p), patchify(x, p)))
    check.cases(cut, cases, "Exercise 7.1 (images to patches)", atol=0.0, rtol=0.0)


def check_rollout(rollout: Callable[[list[torch.Tensor]], torch.Tensor]) -> None:
    """``rollout(weights)``: average heads, add the identity, renormalise rows, multiply across layers.

    Shapes: a list of (B, heads, T, T) attention tensors -> (B, T, T).
    """
    cases = []
    for seed, (L, B, nh, T) in enumerate([(1, 1, 1, 3), (2, 2, 2, 4), (4, 1, 3, 5)]):
        g = torch.Generator().manual_seed(seed)
        weights = [torch.softmax(torch.randn(B, nh, T, T, generator=g), dim=-1) for _ in range(L)]
        cases.append(((weights,), attention_rollout(weights)))
    check.cases(rollout, cases, "Exercise 7.2 (attention rollout)", atol=1e-6)


def check_similarity(similarity: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """``similarity(e)``: the cosine similarity of every pair of rows of ``e``.

    Shapes: e (N, d) -> (N, N).
    """
    cases = []
    for seed, (N, d) in enumerate([(2, 3), (5, 4), (16, 8)]):
        e = torch.randn(N, d, generator=torch.Generator().manual_seed(seed))
        unit = e / e.norm(dim=-1, keepdim=True)
        cases.append(((e,), unit @ unit.T))
    check.cases(similarity, cases, "Exercise 7.3 (cosine similarity of position embeddings)", atol=1e-5)


def _rollout_without_identity(weights):
    result = None
    for w in weights:
        a = w.mean(dim=1)
        result = a if result is None else a @ result
    return result


# Plausible mistakes each check must reject: (what is wrong, function[, pattern the failure must match]).
WRONG_ANSWERS = {
    "check_patchify": [("patches column by column", lambda x, p: patchify(x.transpose(-2, -1), p))],
    "check_rollout": [("no identity for the residual stream", _rollout_without_identity)],
    "check_similarity": [("dot products, not cosines", lambda e: e @ e.T)],
}
