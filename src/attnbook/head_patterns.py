"""What does each head look at? Mean attention on positional, special-token and syntactic targets.

For one sentence, a *relation* is a list of ``(query, key)`` token-index pairs, e.g.
"previous token" = every ``(i, i - 1)``. A head's score for a relation is its mean
weight from each query to its key (mean over the pairs); averaged over many sentences
this gives one ``(layers, heads)`` map per relation, as in Clark et al. (2019).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from attnbook import _validate

__all__ = ["relation_weight", "standard_relations", "pattern_maps"]

Pairs = Sequence[tuple[int, int]]


def relation_weight(attentions: torch.Tensor, pairs: Pairs) -> torch.Tensor:
    """Mean weight from each query to its key, over ``pairs``, for every layer and head.

    Shape:
        attentions (layers, heads, T, T) -> (layers, heads)
    """
    _validate.tensor(attentions, "attentions", ndim=4, floating=True)
    if not pairs:
        raise ValueError("expected at least one (query, key) pair, got none")
    T = attentions.shape[-1]
    q = torch.tensor([p[0] for p in pairs])
    k = torch.tensor([p[1] for p in pairs])
    if int(q.min()) < 0 or int(k.min()) < 0 or int(q.max()) >= T or int(k.max()) >= T:
        raise ValueError(f"expected token indices in [0, {T}), got pairs {list(pairs)[:5]}...")
    return attentions[:, :, q, k].mean(dim=-1)  # (layers, heads, P) -> (layers, heads)


def standard_relations(tokens: Sequence[str]) -> dict[str, list[tuple[int, int]]]:
    """The positional and special-token relations of a ``[CLS] ... [SEP]`` sequence.

    Queries are the word tokens (not ``[CLS]``/``[SEP]``). Relations: previous token,
    next token, itself, ``[CLS]``, ``[SEP]``, and "same word elsewhere" (another
    position with the same token, when the sentence repeats a word).
    """
    if isinstance(tokens, str) or not all(isinstance(t, str) for t in tokens):
        raise TypeError("expected a sequence of token strings")
    T = len(tokens)
    if T < 4 or tokens[0] != "[CLS]" or tokens[-1] != "[SEP]":
        raise ValueError(f"expected at least two words between [CLS] and [SEP], got {list(tokens)}")
    words = range(1, T - 1)
    relations = {
        "previous token": [(i, i - 1) for i in words if i >= 2],
        "next token": [(i, i + 1) for i in words if i <= T - 3],
        "itself": [(i, i) for i in words],
        "[CLS]": [(i, 0) for i in words],
        "[SEP]": [(i, T - 1) for i in words],
        "same word elsewhere": [(i, j) for i in words for j in words if i != j and tokens[i].lower() == tokens[j].lower()],
    }
    return relations


def pattern_maps(examples: Sequence[tuple[torch.Tensor, Mapping[str, Pairs]]]) -> dict[str, torch.Tensor]:
    """Average each relation's ``(layers, heads)`` score over the sentences that have it.

    ``examples``: one ``(attentions, relations)`` per sentence, attentions of shape
    (layers, heads, T, T) and relations a mapping name -> pairs (empty lists skipped).

    Shape:
        -> {name: (layers, heads)}
    """
    if not examples:
        raise ValueError("expected at least one (attentions, relations) example, got none")
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    for attentions, relations in examples:
        for name, pairs in relations.items():
            if not pairs:
                continue
            score = relation_weight(attentions, pairs)
            sums[name] = sums.get(name, 0) + score
            counts[name] = counts.get(name, 0) + 1
    return {name: sums[name] / counts[name] for name in sums}
