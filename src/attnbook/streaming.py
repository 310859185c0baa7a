"""Attention sinks and rolling KV caches: generating past the training window (Xiao et al., 2024).

A trained language model puts a large share of its attention on the very first token,
whatever that token is: an **attention sink**, a place to park attention that no other
key deserves (softmax must give its weights to someone). A **rolling cache** keeps only
the last ``window`` tokens' keys and values, so memory stays fixed however long the
text; evicting the first token removes the sink, and the model's outputs break.
StreamingLLM keeps the first ``sinks`` tokens as well: ``sinks + window`` entries.

* :func:`attention_maps`: every layer's attention weights of a :class:`~attnbook.gpt.GPT`
  (no change to the model: hooks ask each block for them);
* :func:`sink_share`: the share of attention on the first token(s), per layer and head;
* :func:`roll_cache`: evict all but the first ``sinks`` and the last ``window`` entries;
* :func:`streaming_nll`: per-token loss of a text far longer than the context, one token
  at a time with a rolling cache; :func:`recompute_nll`: the same text, each token
  predicted from its last ``context`` tokens re-encoded from scratch (exact, costly).

The new token's position is its index in the cache (StreamingLLM's rule), so these
measurements suit models whose positions live inside attention or nowhere: with learned
absolute positions added to the input, the cached keys carry the positions they were
computed at. :func:`without_positions` turns a GPT's learned positions off (NoPE).
"""

from __future__ import annotations

import torch
from torch import nn

from attnbook import _validate

__all__ = ["attention_maps", "sink_share", "roll_cache", "streaming_nll", "recompute_nll", "without_positions"]


def _gpt(model: object) -> nn.Module:
    from attnbook.gpt import GPT

    if not isinstance(model, GPT):
        raise TypeError(f"expected an attnbook.gpt.GPT, got {type(model).__name__}")
    return model


@torch.no_grad()
def attention_maps(model: nn.Module, ids: torch.Tensor) -> list[torch.Tensor]:
    """Each layer's self-attention weights on ``ids`` (the scratch path computes them).

    Shape:
        ids: (B, T) -> one (B, num_heads, T, T) tensor per layer
    """
    model = _gpt(model)
    maps: list[torch.Tensor] = []

    def ask(module, args, kwargs):
        return args, {**kwargs, "need_weights": True}

    def take(module, args, kwargs, output):
        maps.append(output[-1])  # the weights come last
        rest = output[:-1]
        return rest[0] if len(rest) == 1 else rest

    handles = [h for b in model.blocks for h in (b.register_forward_pre_hook(ask, with_kwargs=True),
                                                 b.register_forward_hook(take, with_kwargs=True))]
    try:
        model(ids)
    finally:
        for h in handles:
            h.remove()
    return maps


def sink_share(maps: list[torch.Tensor], *, first: int = 1, skip: int = 8) -> torch.Tensor:
    """Mean attention weight on the first ``first`` keys, over queries ``skip`` and later and the batch.

    ``skip`` leaves out the first queries, which have few keys to choose from (query 0 sees
    only key 0). Shape: maps [(B, heads, T, T)] per layer -> (layers, heads)
    """
    if not isinstance(maps, (list, tuple)) or not maps:
        raise TypeError(f"expected a non-empty list of attention maps, got {type(maps).__name__}")
    _validate.positive_int(first, "first")
    if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
        raise ValueError(f"expected skip to be an int >= 0, got {skip!r}")
    rows = []
    for w in maps:
        _validate.tensor(w, "each attention map", ndim=4, floating=True)
        if w.shape[-2] <= skip:
            raise ValueError(f"expected more than skip={skip} queries, got maps of shape {tuple(w.shape)}")
        rows.append(w[:, :, skip:, :first].sum(-1).mean(dim=(0, 2)))  # (heads,)
    return torch.stack(rows)  # (layers, heads)


def roll_cache(cache: list[tuple[torch.Tensor, torch.Tensor]], window: int, sinks: int = 0
               ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Keep the first ``sinks`` and the last ``window`` entries of every layer's keys and values.

    Shape:
        cache: [(keys, values)] of (B, heads, T, hs) -> the same with T <= sinks + window
    """
    _validate.positive_int(window, "window")
    if isinstance(sinks, bool) or not isinstance(sinks, int) or sinks < 0:
        raise ValueError(f"expected sinks to be an int >= 0, got {sinks!r}")
    if not isinstance(cache, (list, tuple)) or not cache:
        raise TypeError(f"expected a non-empty list of (keys, values) pairs, got {type(cache).__name__}")
    rolled, done = [], {}
    for pair in cache:
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise TypeError(f"expected each cache entry to be a (keys, values) pair, got {type(pair).__name__}")
        if id(pair[0]) in done:  # a shared cache (kv_share) stays shared
            rolled.append(done[id(pair[0])])
            continue
        new = []
        for t in pair:
            _validate.tensor(t, "cached keys/values", ndim=4)
            T = t.shape[2]
            new.append(t if T <= sinks + window else torch.cat([t[:, :, :sinks], t[:, :, T - window:]], dim=2))
        done[id(pair[0])] = kept = (new[0], new[1])
        rolled.append(kept)
    return rolled


def _check_text(model: nn.Module, ids: object, span: int) -> None:
    _validate.tensor(ids, "ids", ndim=2, integer=True)
    if span >= model.config.block_size:
        raise ValueError(f"expected the cache plus the new token to fit block_size={model.config.block_size}, "
                         f"got {span} + 1")
    if ids.shape[1] <= span + 1:
        raise ValueError(f"expected a text longer than the cache ({span} + 1 tokens), got {ids.shape[1]}")


@torch.no_grad()
def streaming_nll(model: nn.Module, ids: torch.Tensor, window: int, sinks: int = 0) -> torch.Tensor:
    """Per-token loss (nats) of ``ids``, read one token at a time with a rolling KV cache.

    The first ``sinks + window`` tokens are read at once; then every new token attends to
    the cache (the first ``sinks`` tokens and the last ``window``) and itself, and the cache
    is rolled. Entry ``t`` is the loss of predicting ``ids[:, t + 1]``.

    Shape:
        ids: (B, N), N > sinks + window + 1 -> (B, N - 1)
    """
    model = _gpt(model)
    span = _validate.positive_int(window, "window") + sinks
    _check_text(model, ids, span)
    logits, cache = model(ids[:, :span], use_cache=True)  # (B, span, V)
    steps = [logits]
    for t in range(span, ids.shape[1] - 1):
        step, cache = model(ids[:, t:t + 1], past=cache, use_cache=True)  # (B, 1, V)
        cache = roll_cache(cache, window, sinks)
        steps.append(step)
    logits = torch.cat(steps, dim=1)  # (B, N - 1, V)
    return nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")


@torch.no_grad()
def recompute_nll(model: nn.Module, ids: torch.Tensor, context: int, *, chunk: int = 1024) -> torch.Tensor:
    """Per-token loss (nats) of ``ids``, each token predicted from its last ``context`` tokens, from scratch.

    Shape:
        ids: (B, N), N > context -> (B, N - 1); entry ``t`` predicts ``ids[:, t + 1]``
    """
    model = _gpt(model)
    _validate.positive_int(context, "context")
    _validate.positive_int(chunk, "chunk")
    _check_text(model, ids, context - 1)
    B, N = ids.shape
    first = model(ids[:, :context])  # (B, context, V): the first tokens see everything before them
    windows = ids[:, 1:N - 1].unfold(1, context, 1)  # (B, N - 1 - context, context), window t ends at t + context
    flat = windows.reshape(-1, context)
    last = torch.cat([model(flat[i:i + chunk])[:, -1] for i in range(0, len(flat), chunk)])  # (B * n, V)
    logits = torch.cat([first, last.view(B, -1, last.shape[-1])], dim=1)  # (B, N - 1, V)
    return nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")


def without_positions(model: nn.Module) -> nn.Module:
    """Turn a GPT's learned position embeddings off (zero and frozen): a NoPE model. Returns it."""
    model = _gpt(model)
    with torch.no_grad():
        model.position_embedding.weight.zero_()
    model.position_embedding.weight.requires_grad_(False)
    return model
