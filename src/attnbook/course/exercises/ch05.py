"""Chapter 5 exercises: splitting into heads, multi-head attention by hand, grouped-query attention, a GQA layer."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from attnbook.course import check
from attnbook.course.exercises._trial import (OneLayerModel, lag_batch, lag_loss, probe_layer, result_tensor,
                                              run_trial, train_steps, trial_result)
from attnbook.attention import scaled_dot_product_attention
from attnbook.multihead import MultiHeadAttention, split_heads

__all__ = ["check_split_heads", "check_multi_head", "check_grouped_query", "check_gqa_layer"]


def check_split_heads(split: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """``split(x, num_heads)``: cut the last dimension into heads, head axis before the sequence axis.

    Shapes: x (B, T, num_heads * hs) -> (B, num_heads, T, hs).
    """
    cases = []
    for seed, (B, T, nh, hs) in enumerate([(1, 2, 1, 3), (2, 3, 2, 2), (3, 5, 4, 6)]):
        x = torch.randn(B, T, nh * hs, generator=torch.Generator().manual_seed(seed))
        cases.append(((x, nh), split_heads(x, nh)))
    check.cases(split, cases, "Exercise 5.1 (split into heads)", atol=0.0, rtol=0.0)


def check_multi_head(multi_head: Callable[..., torch.Tensor]) -> None:
    """``multi_head(x, W_q, W_k, W_v, W_o, num_heads)``: multi-head self-attention without biases.

    ``Q = x W_q`` (and likewise K, V) split into heads, attention per head, heads
    concatenated, then ``@ W_o``. Shapes: x (B, T, d), every W (d, d) -> (B, T, d).
    """
    cases = []
    for seed, (B, T, d, nh) in enumerate([(1, 3, 4, 1), (2, 5, 8, 2), (2, 6, 12, 4)]):
        torch.manual_seed(seed)
        layer = MultiHeadAttention(d_model=d, num_heads=nh, bias=False)
        x = torch.randn(B, T, d)
        weights = tuple(lin.weight.detach().T.clone() for lin in (layer.w_q, layer.w_k, layer.w_v, layer.w_o))
        with torch.no_grad():
            cases.append(((x, *weights, nh), layer(x)))
    check.cases(multi_head, cases, "Exercise 5.2 (multi-head attention by hand)", atol=1e-5)


def check_grouped_query(grouped: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """``grouped(q, k, v)``: causal attention where each key/value head serves a group of query heads.

    Query head ``i`` uses key/value head ``i // (nh // nkv)``. Shapes: q (B, nh, T, hs),
    k and v (B, nkv, T, hs), nkv divides nh -> (B, nh, T, hs).
    """
    cases = []
    for seed, (B, nh, nkv, T, hs) in enumerate([(1, 2, 2, 3, 4), (2, 4, 2, 5, 3), (1, 6, 1, 4, 8)]):
        g = torch.Generator().manual_seed(seed)
        q = torch.randn(B, nh, T, hs, generator=g)
        k, v = torch.randn(B, nkv, T, hs, generator=g), torch.randn(B, nkv, T, hs, generator=g)
        group = nh // nkv
        expected = scaled_dot_product_attention(q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1),
                                                is_causal=True)[0]
        cases.append(((q, k, v), expected))
    check.cases(grouped, cases, "Exercise 5.3 (grouped-query causal attention)", atol=1e-5)


_LAYER = "Exercise 5.4 (a grouped-query causal attention layer that trains)"
# (d_model, num_heads, num_kv_heads) the layer is built with; the last is the trained one.
GQA_CONFIGS = [(16, 4, 4), (16, 4, 1), (32, 4, 2)]
# The two-back task: 8 random digits; the target at position t >= 2 is the digit at t - 2.
BACK_LENGTH, BACK_VOCAB, BACK_BATCH = 8, 10, 64
# Held-out token accuracy after 100 steps. The solution's, at trial seeds 0, 1, 2 (CPU):
# see GQA_RECORDED; the margin rule (attnbook.course.check) gives GQA_THRESHOLD.
GQA_STEPS, GQA_RECORDED, GQA_THRESHOLD = 100, (1.0, 1.0, 1.0), 0.98


def gqa_layer_trial(make_layer, probes: list, heldout_x: torch.Tensor, steps: int, seed: int = 0) -> dict:
    """Build and train the learner's layer where it lives (when grading: its kernel); plain data back.

    ``probes``: one ``(x, x_with_the_future_changed)`` pair per entry of ``GQA_CONFIGS``.
    Returns ``{"layers": [{"weights", "y", "y_changed"}, ...], "heldout_logits"}`` or
    ``{"problem": message}``; raises ``NotImplementedError`` for a stub.
    """
    with torch.random.fork_rng():  # the caller's random state is left as it was
        layers = []
        for (d, nh, nkv), (x, changed) in zip(GQA_CONFIGS, probes):
            torch.manual_seed(seed)
            probed = probe_layer(lambda: make_layer(d, nh, nkv), f"GroupedQueryAttention({d}, {nh}, {nkv})",
                                 [x, changed])
            if isinstance(probed, str):
                return {"problem": probed}
            weights, (y, y_changed) = probed
            layers.append({"weights": weights, "y": y, "y_changed": y_changed})
        torch.manual_seed(seed)
        d, nh, nkv = GQA_CONFIGS[-1]
        model = OneLayerModel(lambda: make_layer(d, nh, nkv), BACK_VOCAB, d, positions=BACK_LENGTH)
        g = torch.Generator().manual_seed(seed + 1)
        train_steps(model, lambda: lag_batch(g, BACK_VOCAB, BACK_LENGTH, 2, BACK_BATCH),
                    lambda m, ids, target: lag_loss(m(ids), target, 2), steps)
        with torch.no_grad():
            logits = model(heldout_x)
        return {"layers": layers, "heldout_logits": logits.detach()}


def check_gqa_layer(make_layer, *, steps: int = GQA_STEPS, seed: int = 0) -> float:
    """``GroupedQueryAttention(d_model, num_heads, num_kv_heads)``: causal grouped-query self-attention.

    Bias-free ``nn.Linear`` projections ``w_q`` (d -> d), ``w_k`` and ``w_v`` (d -> num_kv_heads
    * head width: what a KV cache stores per token), ``w_o`` (d -> d); query head ``i``
    uses key/value head ``i // (num_heads // num_kv_heads)``; ``(B, T, d) -> (B, T, d)``.
    Four checks, for each of ``GQA_CONFIGS``: (1) the key and value projections have
    ``num_kv_heads * head width`` outputs; (2) **causal**: changing positions 4.. leaves
    outputs 0..3 unchanged; (3) the output equals the package's
    ``MultiHeadAttention(num_kv_heads=...)`` at the layer's own weights; then (4) **it
    trains**: in a small model, ``steps`` Adam steps on the two-back task (output the
    digit two positions earlier) reach a held-out accuracy of at least ``GQA_THRESHOLD``.
    Returns that accuracy. The layer runs in :func:`gqa_layer_trial` (when grading, in the
    submission's kernel); the verdict is computed here, from the data it returns.
    """
    if not callable(make_layer):
        raise TypeError(f"expected a class or function GroupedQueryAttention(d_model, num_heads, num_kv_heads), "
                        f"got {type(make_layer).__name__}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"expected steps to be a positive int, got {steps!r}")
    g = torch.Generator().manual_seed(0)
    probes = []
    for d, _, _ in GQA_CONFIGS:
        x = torch.randn(2, 7, d, generator=g)
        changed = x.clone()
        changed[:, 4:] = torch.randn(2, 3, d, generator=g)
        probes.append((x, changed))
    heldout_x, heldout_y = lag_batch(torch.Generator().manual_seed(123), BACK_VOCAB, BACK_LENGTH, 2, 512)
    result = trial_result(run_trial(make_layer, gqa_layer_trial, _LAYER, probes, heldout_x, steps, seed), _LAYER)
    layers = result.get("layers")
    if not isinstance(layers, list) or len(layers) != len(GQA_CONFIGS):
        raise check.CheckFailed(f"{_LAYER}: the trial returned no result per layer")
    for (d, nh, nkv), (x, _), got in zip(GQA_CONFIGS, probes, layers):
        _judge_layer(d, nh, nkv, x, got)
    logits = result_tensor(result, "heldout_logits", (*heldout_x.shape, BACK_VOCAB), _LAYER)
    accuracy = (logits[:, 2:].argmax(-1) == heldout_y).float().mean().item()
    check.at_least(accuracy, GQA_THRESHOLD, f"{_LAYER}: held-out two-back accuracy after {steps} steps")
    return accuracy


def _judge_layer(d: int, nh: int, nkv: int, x: torch.Tensor, got: dict) -> None:
    where = f"{_LAYER}, GroupedQueryAttention({d}, {nh}, {nkv})"
    kv_width = nkv * (d // nh)
    shapes = {"w_q": (d, d), "w_k": (kv_width, d), "w_v": (kv_width, d), "w_o": (d, d)}
    weights = got.get("weights") if isinstance(got, dict) else None
    if not isinstance(weights, list) or len(weights) != 4:
        raise check.CheckFailed(f"{where}: the trial returned no weights")
    for (name, shape), w in zip(shapes.items(), weights):
        if not isinstance(w, torch.Tensor) or tuple(w.shape) != shape:
            got_shape = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
            raise check.CheckFailed(f"{where}: expected {name} to be nn.Linear({shape[1]}, {shape[0]}) (weight "
                                    f"{shape}), got a weight of shape {got_shape}; keys and values have "
                                    f"num_kv_heads * head width = {kv_width} features, the KV cache per token")
    y, y_changed = got.get("y"), got.get("y_changed")
    if not all(isinstance(t, torch.Tensor) and t.shape == x.shape for t in (y, y_changed)):
        raise check.CheckFailed(f"{where}: the trial returned no outputs of shape {tuple(x.shape)}")
    leak = (y[:, :4] - y_changed[:, :4]).abs().max().item()
    if not leak <= 1e-5:
        raise check.CheckFailed(f"{where}: changing positions 4-6 changed the outputs at positions 0-3 (by up to "
                                f"{leak:.3g}): is the causal mask missing?")
    reference = MultiHeadAttention(d_model=d, num_heads=nh, num_kv_heads=nkv, bias=False)
    with torch.no_grad():
        for lin, w in zip((reference.w_q, reference.w_k, reference.w_v, reference.w_o), weights):
            lin.weight.copy_(w)
        expected = reference(x, is_causal=True)
    gap = (y.float() - expected).abs().max().item()
    if not gap <= 1e-4:
        raise check.CheckFailed(f"{where}: at the layer's own weights its output differs from grouped-query "
                                f"attention by up to {gap:.3g}: query head i must use key/value head "
                                "i // (num_heads // num_kv_heads) (repeat_interleave, not repeat), scores are "
                                "divided by sqrt(head width)")


def _without_output_projection(x, W_q, W_k, W_v, W_o, num_heads):
    B, T, d = x.shape
    q, k, v = (split_heads(x @ W, num_heads) for W in (W_q, W_k, W_v))
    return scaled_dot_product_attention(q, k, v)[0].transpose(1, 2).reshape(B, T, d)  # forgot @ W_o


def _groups_in_wrong_order(q, k, v):
    group = q.shape[1] // k.shape[1]
    return scaled_dot_product_attention(q, k.repeat(1, group, 1, 1), v.repeat(1, group, 1, 1), is_causal=True)[0]


# Plausible mistakes each check must reject: (what is wrong, function[, pattern the failure must match]).
WRONG_ANSWERS = {
    "check_split_heads": [("wrong order of axes", lambda x, nh: x.view(x.shape[0], nh, x.shape[1], -1))],
    "check_multi_head": [("forgot the output projection", _without_output_projection)],
    "check_grouped_query": [("groups repeated in the wrong order", _groups_in_wrong_order)],
    "check_gqa_layer": [("no causal mask", lambda d, h, g: _GQA(d, h, g, causal=False), "causal mask"),
                        ("groups repeated in the wrong order", lambda d, h, g: _GQA(d, h, g, order="repeat"),
                         "repeat_interleave"),
                        ("keys and values as wide as the queries (no smaller cache)",
                         lambda d, h, g: _GQA(d, h, g, full_kv=True), "KV cache")],
}


class _GQA(nn.Module):
    """Likely wrong layers: grouped-query attention without the mask, with groups in the wrong order, or with
    full-width keys and values (each head's own, averaged down to the groups afterwards)."""

    def __init__(self, d_model: int, num_heads: int, num_kv_heads: int, *, causal: bool = True,
                 order: str = "repeat_interleave", full_kv: bool = False):
        super().__init__()
        kv = d_model if full_kv else num_kv_heads * (d_model // num_heads)
        self.w_q, self.w_o = nn.Linear(d_model, d_model, bias=False), nn.Linear(d_model, d_model, bias=False)
        self.w_k, self.w_v = nn.Linear(d_model, kv, bias=False), nn.Linear(d_model, kv, bias=False)
        self.heads, self.kv_heads, self.causal, self.order = num_heads, num_kv_heads, causal, order
        self.full_kv = full_kv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, d = x.shape
        q = split_heads(self.w_q(x), self.heads)
        k, v = (split_heads(w(x), self.heads if self.full_kv else self.kv_heads) for w in (self.w_k, self.w_v))
        group = q.shape[1] // k.shape[1]
        k, v = ((t.repeat_interleave(group, 1) if self.order == "repeat_interleave" else t.repeat(1, group, 1, 1))
                for t in (k, v))
        out = scaled_dot_product_attention(q, k, v, is_causal=self.causal)[0]  # (B, nh, T, hs)
        return self.w_o(out.transpose(1, 2).reshape(B, T, d))
