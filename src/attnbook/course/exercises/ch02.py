"""Chapter 2 exercises: additive scores, a masked softmax, and reading off an alignment."""

from __future__ import annotations

from collections.abc import Callable

import torch

from attnbook.course import check
from attnbook.scoring import AdditiveScore, masked_softmax, padding_mask

__all__ = ["check_additive_scores", "check_masked_softmax", "check_hard_alignment"]


def check_additive_scores(additive_scores: Callable[..., torch.Tensor]) -> None:
    """``additive_scores(query, keys, W_q, W_k, b_k, v)`` = ``v^T tanh(W_q q + W_k k + b_k)``.

    Shapes: query (B, Dq), keys (B, S, Dk), W_q (A, Dq), W_k (A, Dk), b_k (A,), v (A,) -> (B, S).
    """
    cases = []
    for seed, (B, S, dq, dk, a) in enumerate([(1, 3, 2, 2, 4), (3, 5, 4, 6, 8)]):
        torch.manual_seed(seed)
        score = AdditiveScore(dq, dk, a)
        q, k = torch.randn(B, dq), torch.randn(B, S, dk)
        with torch.no_grad():
            want = score(q, k)
        args = (q, k, score.w_q.weight.detach(), score.w_k.weight.detach(), score.w_k.bias.detach(),
                score.v.weight.detach()[0])
        cases.append((args, want))
    check.cases(additive_scores, cases, "Exercise 2.1 (additive scores)", atol=1e-5)


def check_masked_softmax(softmax_with_lengths: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """``softmax_with_lengths(scores, lengths)``: softmax over the first ``lengths[b]`` keys, 0 after.

    Shapes: scores (B, S), lengths (B,) -> weights (B, S).
    """
    cases = []
    for seed, lengths in enumerate([[3], [1, 4, 2], [5, 5]]):
        torch.manual_seed(seed)
        lens = torch.tensor(lengths)
        scores = torch.randn(len(lengths), 5) * 3
        cases.append(((scores, lens), masked_softmax(scores, padding_mask(lens, 5))))
    check.cases(softmax_with_lengths, cases, "Exercise 2.2 (masked softmax)", atol=1e-6)


def check_hard_alignment(hard_alignment: Callable[[torch.Tensor, list[str]], list[str]]) -> None:
    """``hard_alignment(weights, source)``: for each output row, the source token it weighs most.

    Shapes: weights (T, S) -> a list of T tokens from ``source`` (length S).
    """
    w = torch.tensor([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1], [0.0, 0.1, 0.9]])
    src = ["sieben", "und", "achtzig"]
    cases = [((w, src), ["und", "sieben", "achtzig"]),
             ((w[[2, 0]], src), ["achtzig", "und"]),
             ((torch.eye(2), ["a", "b"]), ["a", "b"])]
    check.cases(hard_alignment, cases, "Exercise 2.3 (hard alignment)")


# Plausible mistakes each check must reject: (what is wrong, function[, pattern the failure must match]).
WRONG_ANSWERS = {
    "check_additive_scores": [("forgot the bias", lambda q, k, W_q, W_k, b_k, v:
                               torch.tanh((q @ W_q.T)[:, None, :] + k @ W_k.T) @ v)],
    "check_masked_softmax": [("ignores the lengths", lambda scores, lengths: torch.softmax(scores, dim=-1))],
    "check_hard_alignment": [("the least weighted token",
                              lambda w, src: [src[int(j)] for j in torch.as_tensor(w).argmin(dim=-1)])],
}
