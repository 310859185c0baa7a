"""Chapter 4 exercises: self-attention by hand, sinusoidal encodings, rotary embeddings, a RoPE layer that trains."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from attnbook.course import check
from attnbook.course.exercises._trial import (OneLayerModel, lag_batch, lag_loss, probe_layer, result_tensor,
                                              run_trial, train_steps, trial_result)
from attnbook.attention import SelfAttention, scaled_dot_product_attention
from attnbook.positional import apply_rotary, sinusoidal_encoding

__all__ = ["check_self_attention", "check_sinusoidal", "check_rotary", "check_rotary_layer"]


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


_LAYER = "Exercise 4.4 (a rotary self-attention layer that trains)"
# The previous-token task: 8 random digits, the target at position t >= 1 is the digit at t - 1.
PREV_LENGTH, PREV_VOCAB, PREV_WIDTH, PREV_BATCH = 8, 10, 32, 64
# Held-out token accuracy after 80 steps. The solution's, at trial seeds 0, 1, 2 (CPU):
# 1.000, 1.000, 1.000; the margin rule (attnbook.course.check) gives 0.98. Without any
# position information the same model reaches 0.31 (seed 0; the first wrong answer below).
PREV_STEPS, PREV_THRESHOLD = 80, 0.98


def rotary_layer_trial(make_layer: Callable[[int], nn.Module], x: torch.Tensor, perm: torch.Tensor,
                       heldout_x: torch.Tensor, steps: int, seed: int = 0) -> dict:
    """Build and train the learner's layer where it lives (when grading: its kernel); plain data back.

    Returns ``{"weights": [W_q, W_k, W_v, W_o], "y", "y_perm", "heldout_logits"}`` or
    ``{"problem": message}``; raises ``NotImplementedError`` for a stub. The verdict is
    :func:`check_rotary_layer`'s, from this data.
    """
    with torch.random.fork_rng():  # the caller's random state is left as it was
        torch.manual_seed(seed)
        probed = probe_layer(lambda: make_layer(x.shape[-1]), f"RotarySelfAttention({x.shape[-1]})", [x, x[:, perm]])
        if isinstance(probed, str):
            return {"problem": probed}
        weights, (y, y_perm) = probed
        torch.manual_seed(seed)
        model = OneLayerModel(lambda: make_layer(PREV_WIDTH), PREV_VOCAB, PREV_WIDTH)  # no positions
        g = torch.Generator().manual_seed(seed + 1)
        train_steps(model, lambda: lag_batch(g, PREV_VOCAB, PREV_LENGTH, 1, PREV_BATCH),
                    lambda m, ids, y_batch: lag_loss(m(ids), y_batch, 1), steps)
        with torch.no_grad():
            logits = model(heldout_x)
        return {"weights": weights, "y": y, "y_perm": y_perm, "heldout_logits": logits.detach()}


def check_rotary_layer(make_layer: Callable[[int], nn.Module], *, steps: int = PREV_STEPS,
                       seed: int = 0) -> float:
    """``RotarySelfAttention(d_model)``: single-head self-attention with RoPE on queries and keys.

    Four bias-free ``nn.Linear(d_model, d_model)`` projections ``w_q``, ``w_k``, ``w_v``,
    ``w_o``; ``(B, T, d_model) -> (B, T, d_model)``. Three checks, in this order:
    (1) **positions**: permuting the input must not merely permute the output (with no
    position information it would); (2) **RoPE**: the output equals the package's
    ``SelfAttention(rotary=True)`` at the layer's own weights (rotate the queries and keys,
    not the values or the input); (3) **it trains**: in a small model with no other
    position information, ``steps`` Adam steps on the previous-token task (a task about
    relative order) reach a held-out token accuracy of at least ``PREV_THRESHOLD``.
    Returns that accuracy. The layer runs in :func:`rotary_layer_trial` (when grading, in
    the submission's kernel); the verdict is computed here, from the data it returns.
    """
    if not callable(make_layer):
        raise TypeError(f"expected a class or function RotarySelfAttention(d_model), got "
                        f"{type(make_layer).__name__}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"expected steps to be a positive int, got {steps!r}")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, PREV_WIDTH, generator=g)
    perm = torch.tensor([5, 2, 0, 4, 1, 3])
    heldout_x, heldout_y = lag_batch(torch.Generator().manual_seed(123), PREV_VOCAB, PREV_LENGTH, 1, 512)
    result = run_trial(make_layer, rotary_layer_trial, _LAYER, x, perm, heldout_x, steps, seed)
    return _judge_rotary_layer(result, x, perm, heldout_x, heldout_y, steps)


def _judge_rotary_layer(result: dict, x: torch.Tensor, perm: torch.Tensor, heldout_x: torch.Tensor,
                        heldout_y: torch.Tensor, steps: int) -> float:
    result = trial_result(result, _LAYER)
    y, y_perm = (result_tensor(result, key, tuple(x.shape), _LAYER) for key in ("y", "y_perm"))
    d = x.shape[-1]
    if (y_perm - y[:, perm]).abs().max().item() <= 1e-5:
        raise check.CheckFailed(f"{_LAYER}: permuting the input only permuted the output, so the layer sees no "
                                "positions: rotate the queries and keys by their positions before the scores")
    weights = result.get("weights")
    if not isinstance(weights, (list, tuple)) or len(weights) != 4 or any(
            not isinstance(w, torch.Tensor) or tuple(w.shape) != (d, d) for w in weights):
        raise check.CheckFailed(f"{_LAYER}: expected w_q, w_k, w_v, w_o of shape ({d}, {d}) (nn.Linear({d}, {d}))")
    reference = SelfAttention(d, rotary=True)
    with torch.no_grad():
        for lin, w in zip((reference.w_q, reference.w_k, reference.w_v, reference.w_o), weights):
            lin.weight.copy_(w)
        expected = reference(x)
    gap = (y - expected).abs().max().item()
    if not gap <= 1e-4:
        raise check.CheckFailed(f"{_LAYER}: at the layer's own weights, its output differs from RoPE "
                                f"self-attention (softmax(R q (R k)^T / sqrt(d)) v, then w_o) by up to {gap:.3g}: "
                                "rotate the projected queries and keys (not the values or the input), and scale "
                                "by sqrt(d_model)")
    logits = result_tensor(result, "heldout_logits", (*heldout_x.shape, PREV_VOCAB), _LAYER)
    accuracy = (logits[:, 1:].argmax(-1) == heldout_y).float().mean().item()
    check.at_least(accuracy, PREV_THRESHOLD,
                   f"{_LAYER}: held-out previous-token accuracy after {steps} steps")
    return accuracy


class _NoRotation(nn.Module):
    """A likely wrong layer: self-attention with no positions at all."""

    def __init__(self, d_model: int):
        super().__init__()
        self.w_q, self.w_k, self.w_v, self.w_o = (nn.Linear(d_model, d_model, bias=False) for _ in range(4))

    def rotate(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        return q, k, v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.rotate(self.w_q(x), self.w_k(x), self.w_v(x))
        return self.w_o(scaled_dot_product_attention(q, k, v)[0])


class _ValuesRotated(_NoRotation):
    """A likely wrong layer: the values rotated too (the scores keep the offset property, the output does not)."""

    def rotate(self, q, k, v):
        return apply_rotary(q), apply_rotary(k), apply_rotary(v)


# Plausible mistakes each check must reject: (what is wrong, function[, pattern the failure must match]).
WRONG_ANSWERS = {
    "check_self_attention": [("no 1/sqrt(d_k) scaling", lambda x, W_q, W_k, W_v:
                              torch.softmax((x @ W_q) @ (x @ W_k).T, dim=-1) @ (x @ W_v))],
    "check_sinusoidal": [("sin and cos swapped", lambda n, d:
                          sinusoidal_encoding(n, d).view(n, d // 2, 2).flip(-1).reshape(n, d))],
    "check_rotary": [("no rotation (only position 0 is right)", lambda x: x, r"(?s)Exercise 4.3 .*case 2"),
                     ("rotate-half pairing (i, i + d/2) instead of neighbouring pairs", lambda x:
                      apply_rotary(x.view(x.shape[0], 2, -1).transpose(1, 2).reshape(x.shape))
                      .view(x.shape[0], -1, 2).transpose(1, 2).reshape(x.shape), r"(?s)Exercise 4.3 .*case 2")],
    "check_rotary_layer": [("no rotation: the layer sees no positions", _NoRotation, "only permuted the output"),
                           ("the values rotated too", _ValuesRotated, "not the values")],
}
