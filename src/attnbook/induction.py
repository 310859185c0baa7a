"""Induction heads: loss by position, repeated random tokens, prefix-matching scores, head ablation.

An **induction head** (Elhage et al., 2021; Olsson et al., 2022) completes patterns of
the form ``... A B ... A -> B``: at the second ``A`` it attends to the token *after*
the earlier ``A`` and copies it. On a sequence of random tokens repeated twice, a model
that has such heads predicts the second copy far better than the first, which no
statistics of the training text can explain: it reads the answer from its own window.

* :func:`loss_by_position`: the mean next-token loss at every position of a batch of
  windows (also the measure of length extrapolation);
* :func:`repeated_tokens`: random tokens, then the same tokens again;
* :func:`prefix_matching_scores`: for each head, the mean attention from a token of the
  second copy to the token after its first occurrence;
* :func:`ablate_heads`: a context manager that zeroes chosen heads' outputs (before the
  output projection), so what they contribute can be measured by its absence.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from attnbook import _validate

__all__ = ["loss_by_position", "repeated_tokens", "prefix_matching_scores", "ablate_heads"]


@torch.no_grad()
def loss_by_position(model: nn.Module, ids: torch.Tensor, targets: torch.Tensor, *, batch_size: int = 16
                     ) -> torch.Tensor:
    """Mean cross-entropy (nats) at each position over a batch of windows, ``batch_size`` windows at a time.

    ``model(ids)`` must return logits (B, T, vocab). Targets of ``-100`` are ignored (a
    position with no target at all gets NaN).

    Shape:
        ids, targets: (B, T) -> loss: (T,)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(model).__name__}")
    _validate.tensor(ids, "ids", ndim=2, integer=True)
    _validate.tensor(targets, "targets", ndim=2, integer=True)
    if targets.shape != ids.shape:
        raise ValueError(f"expected targets of the shape of ids {tuple(ids.shape)}, got {tuple(targets.shape)}")
    _validate.positive_int(batch_size, "batch_size")
    total = torch.zeros(ids.shape[1], device=ids.device)
    count = torch.zeros(ids.shape[1], device=ids.device)
    for i in range(0, len(ids), batch_size):
        x, y = ids[i:i + batch_size], targets[i:i + batch_size]
        logits = model(x)  # (b, T, V)
        nats = nn.functional.cross_entropy(logits.flatten(0, 1).float(), y.flatten().long(), ignore_index=-100,
                                           reduction="none").view(y.shape)  # (b, T)
        valid = y != -100
        total += (nats * valid).sum(0)
        count += valid.sum(0)
    return total / count  # (T,)


def repeated_tokens(batch: int, length: int, vocab_size: int, *, generator: torch.Generator | None = None,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """``length`` tokens drawn uniformly from ``[0, vocab_size)``, then the same ``length`` tokens again.

    Shape:
        -> ids: (batch, 2 * length), ``ids[:, length:] == ids[:, :length]``
    """
    for name, value in (("batch", batch), ("length", length), ("vocab_size", vocab_size)):
        _validate.positive_int(value, name)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"expected generator to be a torch.Generator, got {type(generator).__name__}")
    first = torch.randint(0, vocab_size, (batch, length), generator=generator)
    return torch.cat([first, first], dim=1).to(device)  # (B, 2 * length)


def prefix_matching_scores(weights: torch.Tensor, length: int) -> torch.Tensor:
    """Each head's mean attention from token ``t`` of the second copy to position ``t - length + 1``.

    On :func:`repeated_tokens` (period ``length``), the token at ``t >= length`` last
    occurred at ``t - length``; an induction head attends to the one after it, which is
    the token to predict. A score of 1 is a perfect induction head; a head attending
    uniformly over ``t + 1`` keys scores about ``1 / (t + 1)``.

    Shape:
        weights: (B, heads, 2 * length, 2 * length) (causal attention weights) -> scores: (heads,)
    """
    _validate.tensor(weights, "weights", ndim=4, floating=True)
    _validate.positive_int(length, "length")
    T = weights.shape[-1]
    if weights.shape[-2] != T or T != 2 * length:
        raise ValueError(f"expected weights of shape (B, heads, {2 * length}, {2 * length}) for two copies of "
                         f"length {length}, got {tuple(weights.shape)}")
    t = torch.arange(length, T, device=weights.device)  # queries in the second copy
    return weights[:, :, t, t - length + 1].mean(dim=(0, 2))  # (heads,)


@contextmanager
def ablate_heads(model: nn.Module, heads: Iterable[tuple[int, int]]) -> Iterator[nn.Module]:
    """Inside the ``with`` block, the chosen ``(layer, head)`` outputs of ``model`` are zero.

    ``model.blocks[layer].self_attention`` must be a
    :class:`~attnbook.multihead.MultiHeadAttention`; a forward pre-hook on its output
    projection ``w_o`` zeroes the head's slice of the concatenated heads (zero ablation:
    the head adds nothing to the residual stream but the projection's bias). The hooks
    are removed on leaving, also after an error.
    """
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList):
        raise TypeError(f"expected a model with a ModuleList `blocks` of attention blocks, got "
                        f"{type(model).__name__}")
    chosen: dict[int, list[int]] = {}
    for item in heads:
        if not (isinstance(item, tuple) and len(item) == 2 and all(isinstance(v, int) for v in item)):
            raise TypeError(f"expected (layer, head) pairs of ints, got {item!r}")
        layer, head = item
        attn = blocks[layer].self_attention if 0 <= layer < len(blocks) else None
        if attn is None:
            raise ValueError(f"expected a layer in [0, {len(blocks)}) with self-attention, got {layer}")
        if not 0 <= head < attn.num_heads:
            raise ValueError(f"expected a head in [0, {attn.num_heads}), got {head}")
        chosen.setdefault(layer, []).append(head)
    handles = []
    try:
        for layer, hs in chosen.items():
            attn = blocks[layer].self_attention
            keep = torch.ones(attn.num_heads, attn.head_dim)
            keep[hs] = 0.0
            keep = keep.flatten()  # (d_model,): zero on the ablated heads' channels

            def hook(module: nn.Module, args: tuple, keep: torch.Tensor = keep) -> tuple:
                return (args[0] * keep.to(args[0]),) + args[1:]

            handles.append(attn.w_o.register_forward_pre_hook(hook))
        yield model
    finally:
        for handle in handles:
            handle.remove()
