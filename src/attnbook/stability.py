"""Watching attention logits: what QK-norm and soft-capping keep in check (Dehghani et al., 2023; Gemma 2).

At large learning rates the queries and keys of a transformer can grow until a few
attention scores ``q . k / sqrt(d)`` are huge: the softmax saturates to one key, its
gradient vanishes, and training stalls or diverges. Two fixes are options of every
:class:`~attnbook.multihead.MultiHeadAttention` (so of :class:`~attnbook.gpt.GPTConfig`):

* ``qk_norm=True``: RMS-normalise each head's queries and keys (a learned scale per
  dimension) before the dot product, so a score's size is bounded by the scales, not by
  how large the projections have grown;
* ``softcap=c``: pass every score through ``c * tanh(s / c)``: no score exceeds ``c``.

:func:`max_attention_logit` measures the largest score a GPT computes (before the cap),
the quantity both fixes bound; :func:`diverged` is the sweep's verdict on a run.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from attnbook import _validate

__all__ = ["max_attention_logit", "diverged"]


@torch.no_grad()
def max_attention_logit(model: nn.Module, ids: torch.Tensor) -> float:
    """The largest attention score ``q . k / sqrt(head_dim)`` (before soft-capping) any head computes on ``ids``.

    Only scores a query may use count (key at or before the query). Hooks read each
    block's normalised input; the model is unchanged.

    Shape:
        ids: (B, T) -> a float
    """
    from attnbook.gpt import GPT
    from attnbook.masks import causal_mask

    if not isinstance(model, GPT):
        raise TypeError(f"expected an attnbook.gpt.GPT, got {type(model).__name__}")
    _validate.tensor(ids, "ids", ndim=2, integer=True)
    largest: list[torch.Tensor] = []

    def watch(block):
        def hook(module, args, output):
            attn = block.self_attention
            q, k, _ = attn._qkv(output)  # (B, nh, T, hs), (B, nkv, T, hs)
            k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, nh, T, T)
            allowed = causal_mask(q.shape[2], device=q.device)
            largest.append(scores.masked_fill(~allowed, float("-inf")).amax())
        return hook

    handles = [b.norm1.register_forward_hook(watch(b)) for b in model.blocks
               if b.config.kv_latent is None and hasattr(b.self_attention, "w_k")]
    if not handles:
        raise ValueError("expected a GPT with plain (not latent) attention in some block, got none")
    try:
        model(ids)
    finally:
        for h in handles:
            h.remove()
    return float(torch.stack(largest).max())


def diverged(final_loss: float, *, limit: float) -> bool:
    """A run diverged when its final loss is not finite or above ``limit`` (e.g. the unigram loss)."""
    if isinstance(final_loss, bool) or not isinstance(final_loss, (int, float)):
        raise TypeError(f"expected final_loss to be a number, got {type(final_loss).__name__}")
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not math.isfinite(limit):
        raise ValueError(f"expected a finite limit, got {limit!r}")
    return not math.isfinite(final_loss) or final_loss > limit
