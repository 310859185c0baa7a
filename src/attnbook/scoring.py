"""Attention scoring: how well does a query match each key?

Two families, both from the RNN era:

* additive (Bahdanau et al., 2015): ``score(q, k) = v^T tanh(W_q q + W_k k)``,
  a one-hidden-layer network over the pair;
* multiplicative (Luong et al., 2015): ``score(q, k) = q^T W k`` ("general"),
  or plain ``q^T k`` ("dot") when query and key have the same width.

Then :func:`masked_softmax` turns scores into weights that sum to one over the
real (unpadded) keys, and :func:`attend` takes the weighted average of values.
"""

from __future__ import annotations

import torch
from torch import nn

from attnbook import _validate
from attnbook import masks

__all__ = ["AdditiveScore", "MultiplicativeScore", "masked_softmax", "attend", "padding_mask"]


def _check_query_keys(query: torch.Tensor, keys: torch.Tensor, query_dim: int, key_dim: int) -> None:
    _validate.tensor(query, "query", ndim=2, floating=True)
    _validate.tensor(keys, "keys", ndim=3, floating=True)
    if query.shape[0] != keys.shape[0]:
        raise ValueError(f"expected query and keys with the same batch size, got {query.shape[0]} and {keys.shape[0]}")
    if query.shape[1] != query_dim:
        raise ValueError(f"expected query of width {query_dim}, got shape {tuple(query.shape)}")
    if keys.shape[2] != key_dim:
        raise ValueError(f"expected keys of width {key_dim}, got shape {tuple(keys.shape)}")


class AdditiveScore(nn.Module):
    """Bahdanau's additive score ``v^T tanh(W_q q + W_k k)``.

    Args:
        query_dim: width of a query (the decoder state).
        key_dim: width of a key (an encoder state).
        hidden_dim: width of the small network's hidden layer.

    Shape:
        query: (B, query_dim); keys: (B, S, key_dim) -> scores: (B, S)
    """

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int):
        super().__init__()
        self.query_dim = _validate.positive_int(query_dim, "query_dim")
        self.key_dim = _validate.positive_int(key_dim, "key_dim")
        _validate.positive_int(hidden_dim, "hidden_dim")
        self.w_q = nn.Linear(query_dim, hidden_dim, bias=False)
        self.w_k = nn.Linear(key_dim, hidden_dim, bias=True)
        self.v = nn.Linear(hidden_dim, 1, bias=False)

    def project_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """``W_k k`` for every key, (B, S, hidden): computed once per source sentence."""
        return self.w_k(keys)

    def forward(self, query: torch.Tensor, keys: torch.Tensor,
                projected_keys: torch.Tensor | None = None) -> torch.Tensor:
        _check_query_keys(query, keys, self.query_dim, self.key_dim)
        pk = self.project_keys(keys) if projected_keys is None else projected_keys
        hidden = torch.tanh(self.w_q(query).unsqueeze(1) + pk)  # (B, S, hidden)
        return self.v(hidden).squeeze(-1)  # (B, S)


class MultiplicativeScore(nn.Module):
    """Luong's multiplicative score: ``q^T W k`` ("general") or ``q^T k`` ("dot").

    Args:
        query_dim, key_dim: widths of query and key.
        learned: with ``True`` a bilinear matrix ``W`` is learned; with ``False``
            the plain dot product is used and the widths must be equal.
        scaled: divide by ``sqrt(key_dim)`` (the transformer's choice, chapter 3).

    Shape:
        query: (B, query_dim); keys: (B, S, key_dim) -> scores: (B, S)
    """

    def __init__(self, query_dim: int, key_dim: int, *, learned: bool = True, scaled: bool = False):
        super().__init__()
        self.query_dim = _validate.positive_int(query_dim, "query_dim")
        self.key_dim = _validate.positive_int(key_dim, "key_dim")
        if not learned and query_dim != key_dim:
            raise ValueError(f"a plain dot product needs query_dim == key_dim, got {query_dim} and {key_dim}")
        self.w = nn.Linear(key_dim, query_dim, bias=False) if learned else None
        self.scale = key_dim**-0.5 if scaled else 1.0

    def project_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """``W k`` for every key, (B, S, query_dim) (the keys themselves for "dot")."""
        return keys if self.w is None else self.w(keys)

    def forward(self, query: torch.Tensor, keys: torch.Tensor,
                projected_keys: torch.Tensor | None = None) -> torch.Tensor:
        _check_query_keys(query, keys, self.query_dim, self.key_dim)
        pk = self.project_keys(keys) if projected_keys is None else projected_keys
        return torch.bmm(pk, query.unsqueeze(-1)).squeeze(-1) * self.scale  # (B, S)


def padding_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """Boolean mask, True where a position is real (may be attended), False on padding.

    The package's one key-padding mask (:func:`attnbook.masks.padding_mask`)
    without its query axis, for the scores of one query per sequence, (B, S).

    Shape:
        lengths: (B,) -> mask: (B, max_len)
    """
    if max_len is not None:
        _validate.positive_int(max_len, "max_len")
    return masks.padding_mask(lengths, max_len)[:, 0]  # (B, 1, S) -> (B, S)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax over the last axis, giving exactly zero weight where ``mask`` is False.

    A row with every position masked gets all-zero weights (not NaN), as
    :func:`attnbook.attention.scaled_dot_product_attention` gives for a fully masked query.

    Shape:
        scores: (..., S); mask: broadcastable to scores, bool -> weights: (..., S)
    """
    _validate.tensor(scores, "scores", floating=True)
    if mask is None:
        return torch.softmax(scores, dim=-1)
    _validate.tensor(mask, "mask")
    if mask.dtype != torch.bool:
        raise TypeError(f"expected a bool mask (True = may attend), got dtype {mask.dtype}")
    try:
        torch.broadcast_shapes(mask.shape, scores.shape)
    except RuntimeError:
        raise ValueError(f"the mask's shape {tuple(mask.shape)} does not broadcast to the scores' "
                         f"shape {tuple(scores.shape)}") from None
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return torch.nan_to_num(weights, nan=0.0)  # fully masked rows: 0/0 -> 0


def attend(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """The context vector: the weights' average of the values.

    Shape:
        weights: (B, S); values: (B, S, D) -> context: (B, D)
    """
    _validate.tensor(weights, "weights", ndim=2, floating=True)
    _validate.tensor(values, "values", ndim=3, floating=True)
    if weights.shape != values.shape[:2]:
        raise ValueError(f"expected weights of shape {tuple(values.shape[:2])} to match the values, "
                         f"got {tuple(weights.shape)}")
    return torch.bmm(weights.unsqueeze(1), values).squeeze(1)
