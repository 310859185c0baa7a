"""Residue contacts from sequences: co-variation, attention maps and the average-product correction.

A contact predictor scores every pair of positions ``(i, j)`` of an alignment.
:func:`mutual_information` is the classic co-variation score; :class:`FactoredAttention`
(Bhattacharya et al., 2020) is one layer of attention whose queries and keys are the
*positions* and whose values are the *letters*, trained to predict every letter from all
the others; :func:`symmetric_attention_contacts` reads attention maps as contacts (Rao et
al., 2021) after :func:`apc`, the average-product correction (Dunn et al., 2008), which
removes the part of a score explained by how strongly each position scores with
everything. :func:`top_l_precision` scores a prediction against the true contact graph.
"""

from __future__ import annotations

import torch
from torch import nn

from attnbook import _validate
from attnbook.attention import scaled_dot_product_attention
from attnbook.potts import check_sequences

__all__ = ["apc", "mutual_information", "symmetric_attention_contacts", "top_l_precision",
           "FactoredAttention"]


def apc(scores: torch.Tensor) -> torch.Tensor:
    """The average-product correction: ``F_ij - F_i. F_.j / F_..`` (means over ``j != i``), diagonal zeroed.

    Shape:
        scores: (L, L) symmetric -> (L, L)
    """
    _validate.tensor(scores, "scores", ndim=2, floating=True)
    L = scores.shape[0]
    if scores.shape[1] != L or L < 3:
        raise ValueError(f"expected a square (L, L) matrix with L >= 3, got shape {tuple(scores.shape)}")
    off = ~torch.eye(L, dtype=torch.bool, device=scores.device)
    f = scores * off
    row = f.sum(1) / (L - 1)  # (L,): mean over j != i
    total = f.sum() / (L * (L - 1))
    return (f - row[:, None] * row[None, :] / total) * off


def mutual_information(sequences: torch.Tensor, num_states: int, *, pseudocount: float = 0.5) -> torch.Tensor:
    """Mutual information between every two columns of an alignment, in nats (diagonal zero).

    Pair frequencies get ``pseudocount`` added to every cell before normalising.

    Shape:
        sequences: (N, L) letters in [0, q) -> (L, L)
    """
    q = _validate.positive_int(num_states, "num_states")
    _validate.tensor(sequences, "sequences", ndim=2, integer=True)
    check_sequences(sequences, sequences.shape[1], q)
    if isinstance(pseudocount, bool) or not isinstance(pseudocount, (int, float)) or pseudocount < 0:
        raise ValueError(f"expected a non-negative pseudocount, got {pseudocount!r}")
    N, L = sequences.shape
    one_hot = torch.nn.functional.one_hot(sequences, q).double()  # (N, L, q)
    pair = torch.einsum("nia,njb->ijab", one_hot, one_hot) + pseudocount  # (L, L, q, q)
    pair = pair / pair.sum((2, 3), keepdim=True)
    pi, pj = pair.sum(3, keepdim=True), pair.sum(2, keepdim=True)  # (L, L, q, 1), (L, L, 1, q)
    mi = torch.where(pair > 0, pair * (pair.log() - pi.log() - pj.log()), 0.0).sum((2, 3))  # 0 log 0 = 0
    return (mi * ~torch.eye(L, dtype=torch.bool, device=mi.device)).float()


def symmetric_attention_contacts(weights: torch.Tensor) -> torch.Tensor:
    """Contact scores from attention maps: average over sequences and heads, ``A + A^T``, then :func:`apc`.

    Shape:
        weights: (..., L, L) (e.g. (N, heads, L, L)) -> (L, L)
    """
    _validate.tensor(weights, "weights", floating=True)
    if weights.dim() < 2 or weights.shape[-1] != weights.shape[-2]:
        raise ValueError(f"expected attention maps (..., L, L), got shape {tuple(weights.shape)}")
    a = weights.reshape(-1, *weights.shape[-2:]).mean(0)  # (L, L)
    return apc(a + a.T)


def top_l_precision(scores: torch.Tensor, contacts: torch.Tensor, *, min_separation: int = 1,
                    top: int | None = None) -> float:
    """Share of true contacts among the ``top`` (default ``L``) best-scoring pairs ``i < j``.

    Only pairs with ``j - i >= min_separation`` are candidates.

    Shape:
        scores: (L, L); contacts: (L, L) bool -> a float
    """
    _validate.tensor(scores, "scores", ndim=2, floating=True)
    _validate.tensor(contacts, "contacts", ndim=2)
    L = scores.shape[0]
    if scores.shape != (L, L) or contacts.shape != (L, L):
        raise ValueError(f"expected square scores and contacts of the same shape, got "
                         f"{tuple(scores.shape)} and "
                         f"{tuple(contacts.shape)}")
    if contacts.dtype != torch.bool:
        raise TypeError(f"expected a bool contact map, got dtype {contacts.dtype}")
    _validate.positive_int(min_separation, "min_separation")
    i, j = torch.triu_indices(L, L, offset=min_separation)
    k = L if top is None else _validate.positive_int(top, "top")
    if k > i.numel():
        raise ValueError(f"expected top <= {i.numel()} candidate pairs, got {k}")
    best = torch.topk(scores.detach().cpu()[i, j], k).indices
    return contacts.cpu()[i[best], j[best]].float().mean().item()


class FactoredAttention(nn.Module):
    """One layer of factored attention: position queries and keys, letter values (Bhattacharya et al., 2020).

    Head ``h`` attends from position ``i`` to position ``j`` with weights
    ``A^h = softmax_j(Q^h K^h^T / sqrt(d_k))``, ``Q^h, K^h`` learned from position
    embeddings only, the diagonal masked (a position never sees its own letter). The
    letter at ``j`` is one-hot; each head maps it through its own ``q x q`` value
    matrix ``W^h``: ``logits_i(a) = field_i(a) + sum_h sum_j A^h_ij W^h[x_j, a]``.
    Trained to predict every letter from the others (the pseudo-likelihood), it is a
    Potts model whose couplings ``J_ij = sum_h A^h_ij W^h`` factor through attention.

    Shape:
        x: (B, L) letters in [0, q) -> logits (B, L, q); :meth:`weights`: (heads, L, L)
    """

    def __init__(self, length: int, num_states: int, *, num_heads: int = 8, d_k: int = 16, d_pos: int = 16):
        super().__init__()
        self.length, self.num_states = _validate.positive_int(length, "length"), _validate.positive_int(
            num_states, "num_states")
        self.num_heads = _validate.positive_int(num_heads, "num_heads")
        self.d_k = _validate.positive_int(d_k, "d_k")
        self.positions = nn.Parameter(torch.randn(length, _validate.positive_int(d_pos, "d_pos")))
        self.w_q = nn.Linear(d_pos, num_heads * d_k, bias=False)
        self.w_k = nn.Linear(d_pos, num_heads * d_k, bias=False)
        self.values = nn.Parameter(0.1 * torch.randn(num_heads, num_states, num_states))  # W^h[x_j, a]
        self.field = nn.Parameter(torch.zeros(length, num_states))
        self.register_buffer("off_diagonal", ~torch.eye(length, dtype=torch.bool), persistent=False)

    def _qk(self) -> tuple[torch.Tensor, torch.Tensor]:
        L, H, d = self.length, self.num_heads, self.d_k
        q = self.w_q(self.positions).view(L, H, d).transpose(0, 1)  # (H, L, d_k)
        k = self.w_k(self.positions).view(L, H, d).transpose(0, 1)  # (H, L, d_k)
        return q, k

    def weights(self) -> torch.Tensor:
        """The attention maps, one per head, the same for every sequence: (heads, L, L)."""
        q, k = self._qk()
        return scaled_dot_product_attention(q, k, k, self.off_diagonal)[1]  # (H, L, L)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_sequences(x, self.length, self.num_states)
        q, k = self._qk()
        one_hot = nn.functional.one_hot(x, self.num_states).to(q.dtype)[:, None]  # (B, 1, L, q)
        # (B, H, L, q): for each position and head, the attention-weighted share of every letter
        mixed, _ = scaled_dot_product_attention(q, k, one_hot, self.off_diagonal)
        return self.field + torch.einsum("bhic,hca->bia", mixed, self.values)  # (B, L, q)
