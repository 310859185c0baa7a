"""Chapter 12 exercises: the ALiBi bias, the prefix-matching score, YaRN's frequencies."""

from __future__ import annotations

from collections.abc import Callable

import torch

from attnbook.course import check
from attnbook.induction import prefix_matching_scores
from attnbook.positional import RopeScaling, alibi_bias, rope_frequencies

__all__ = ["check_alibi", "check_prefix_matching", "check_yarn"]


def _causal_alibi(num_heads: int, length: int) -> torch.Tensor:
    future = torch.ones(length, length, dtype=torch.bool).triu(1)
    return alibi_bias(num_heads, length).masked_fill(future, float("-inf"))


def _finite(x: object) -> object:
    """-inf as a large negative number, so that masked entries compare without inf - inf."""
    return torch.nan_to_num(x, neginf=-1e30) if isinstance(x, torch.Tensor) and x.is_floating_point() else x


def check_alibi(alibi: Callable[[int, int], torch.Tensor]) -> None:
    """``alibi(num_heads, length)``: ALiBi's causal float mask, ``-m_h (i - j)`` for ``j <= i``, ``-inf`` above.

    Slopes ``m_h = 2^(-8h/H)``, ``h = 1..H``. Shapes: -> (num_heads, length, length).
    """
    cases = [((h, n), _finite(_causal_alibi(h, n))) for h, n in [(1, 3), (2, 4), (4, 6), (8, 5)]]
    check.cases(lambda h, n: _finite(alibi(h, n)), cases, "Exercise 12.1 (the ALiBi bias)", atol=1e-6)


def _weights(batch: int, heads: int, length: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    T = 2 * length
    scores = torch.randn(batch, heads, T, T, generator=g, dtype=torch.float64) * 2
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(scores, dim=-1)  # (B, H, T, T), causal


def check_prefix_matching(prefix_matching: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """``prefix_matching(weights, length)``: each head's mean weight from ``t`` to ``t - length + 1``.

    Over the queries ``t = length .. 2 length - 1`` and the batch. Shapes: weights
    (B, H, 2 length, 2 length) -> (H,).
    """
    cases = []
    for seed, (b, h, n) in enumerate([(1, 1, 3), (2, 3, 4), (3, 4, 6)]):
        w = _weights(b, h, n, seed)
        cases.append(((w, n), prefix_matching_scores(w, n)))
    perfect = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    for t in range(8):
        perfect[0, 0, t, t - 4 + 1 if t >= 4 else 0] = 1.0
    cases.append(((perfect, 4), torch.ones(1, dtype=torch.float64)))
    check.cases(prefix_matching, cases, "Exercise 12.2 (the prefix-matching score)", atol=1e-9)


def check_yarn(yarn: Callable[[int, float, int], torch.Tensor]) -> None:
    """``yarn(d, factor, original_length)``: RoPE's frequencies after YaRN's ramp (beta 1 and 32).

    Shapes: -> (d/2,).
    """
    cases = []
    for d, factor, length in [(16, 8.0, 64), (64, 4.0, 256), (128, 16.0, 4096), (32, 2.0, 2048)]:
        expected = rope_frequencies(d, scaling=RopeScaling("yarn", factor, original_length=length),
                                    dtype=torch.float64)
        cases.append(((d, factor, length), expected))
    check.cases(yarn, cases, "Exercise 12.3 (YaRN's frequencies)", rtol=1e-6, atol=1e-12)


def _alibi_wrong_slopes(num_heads: int, length: int) -> torch.Tensor:
    slopes = 2.0 ** (-torch.arange(1, num_heads + 1) / num_heads)  # forgot the 8
    i, j = torch.arange(length)[:, None], torch.arange(length)[None, :]
    return (-slopes[:, None, None] * (i - j)).masked_fill(j > i, float("-inf"))


def _theta(d: int) -> torch.Tensor:
    return 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)


def _yarn_reversed(d: int, factor: float, length: int) -> torch.Tensor:
    theta = _theta(d)
    keep = ((length * theta / (2 * torch.pi) - 1.0) / 31.0).clamp(0, 1)
    return (1 - keep) * theta + keep * theta / factor  # interpolates the fast pairs instead


# Plausible mistakes each check must reject: (what is wrong, function[, pattern the failure must match]).
WRONG_ANSWERS = {
    "check_alibi": [("not causal", lambda h, n: alibi_bias(h, n)),
                    ("slopes 2^(-h/H)", _alibi_wrong_slopes),
                    ("a reward for distance, not a penalty", lambda h, n: -_causal_alibi(h, n).clamp(min=-1e9)
                     .masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf")))],
    "check_prefix_matching": [
        ("attends to the earlier occurrence itself (t - length)",
         lambda w, n: w[:, :, torch.arange(n, 2 * n), torch.arange(n, 2 * n) - n].mean(dim=(0, 2))),
        ("the first copy's queries too",
         lambda w, n: w[:, :, torch.arange(1, 2 * n), (torch.arange(1, 2 * n) - n + 1).clamp(min=0)]
         .mean(dim=(0, 2)))],
    "check_yarn": [("position interpolation: every pair divided", lambda d, s, n: _theta(d) / s),
                   ("the ramp reversed", _yarn_reversed)],
}
