"""Linear attention: a kernel feature map in place of the softmax (Katharopoulos et al., 2020).

Softmax attention weighs value ``j`` for query ``i`` by ``exp(q_i . k_j)``. Replace that
similarity by a dot product of *features*, ``phi(q_i) . phi(k_j)`` with a positive
``phi`` (here ``elu(x) + 1``), and the sum can be regrouped:

    out_i = phi(q_i)^T (sum_j phi(k_j) v_j^T) / (phi(q_i)^T sum_j phi(k_j)).

The bracket is one ``d_k x d_v`` matrix shared by all queries, computed once: cost and
memory grow linearly with the length instead of quadratically. With a causal mask the
sums run over ``j <= i`` only: a running state, updated token by token (here chunk by
chunk), which makes a causal linear-attention model an RNN. The price: ``phi(q).phi(k)``
is not ``exp(q.k)``, so it is a different, blurrier attention, not an approximation that
becomes exact.
"""

from __future__ import annotations

import torch

from attnbook import _validate
from attnbook.flash import _check_qkv

__all__ = ["elu_feature_map", "linear_attention", "linear_attention_quadratic"]


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """``elu(x) + 1``: a positive feature map, so every similarity ``phi(q) . phi(k)`` is positive.

    Shape:
        x: (..., d) -> (..., d)
    """
    _validate.tensor(x, "x", floating=True)
    return torch.nn.functional.elu(x) + 1


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: object, eps: object) -> None:
    _check_qkv(q, k, v)
    if not isinstance(causal, bool):
        raise TypeError(f"expected causal to be a bool, got {type(causal).__name__}")
    if causal and q.shape[-2] != k.shape[-2]:
        raise ValueError(f"expected as many queries as keys for causal linear attention, got {q.shape[-2]} and "
                         f"{k.shape[-2]}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or eps < 0:
        raise ValueError(f"expected eps to be a non-negative number, got {eps!r}")


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False,
                     eps: float = 1e-6, chunk_size: int = 64) -> torch.Tensor:
    """Linear attention with the ``elu + 1`` feature map, in time and memory linear in the length.

    Non-causal: one ``(d_k, d_v)`` summary ``phi(K)^T V`` for all queries. Causal: the
    sequence is cut into chunks of ``chunk_size``; inside a chunk the (small) masked
    product is computed directly, and a running state carries the sums of all earlier
    chunks, so memory stays ``O(chunk_size^2 + d_k d_v)`` per batch and head.

    Shape:
        q: (..., L, d_k); k: (..., S, d_k); v: (..., S, d_v) -> output: (..., L, d_v)
        (causal: L = S)
    """
    _check(q, k, v, causal, eps)
    chunk_size = _validate.positive_int(chunk_size, "chunk_size")
    fq, fk = elu_feature_map(q), elu_feature_map(k)  # (..., L, d_k), (..., S, d_k)
    if not causal:
        kv = fk.transpose(-2, -1) @ v  # (..., d_k, d_v): sum_j phi(k_j) v_j^T
        z = fk.sum(dim=-2)  # (..., d_k): sum_j phi(k_j)
        return (fq @ kv) / ((fq * z[..., None, :]).sum(-1, keepdim=True) + eps)  # (..., L, d_v)
    L = q.shape[-2]
    state = torch.zeros(*q.shape[:-2], q.shape[-1], v.shape[-1], dtype=q.dtype, device=q.device)  # (..., d_k, d_v)
    z = torch.zeros(*q.shape[:-2], q.shape[-1], dtype=q.dtype, device=q.device)  # (..., d_k)
    outs = []
    for c0 in range(0, L, chunk_size):
        c1 = min(c0 + chunk_size, L)
        qc, kc, vc = fq[..., c0:c1, :], fk[..., c0:c1, :], v[..., c0:c1, :]
        a = (qc @ kc.transpose(-2, -1)).tril()  # (..., C, C): similarities within the chunk, j <= i
        num = a @ vc + qc @ state  # (..., C, d_v): this chunk + all earlier chunks
        den = a.sum(-1) + (qc * z[..., None, :]).sum(-1)  # (..., C)
        outs.append(num / (den[..., None] + eps))
        state = state + kc.transpose(-2, -1) @ vc  # add this chunk to the running sums
        z = z + kc.sum(dim=-2)
    return torch.cat(outs, dim=-2)  # (..., L, d_v)


def linear_attention_quadratic(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False,
                               eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """The same linear attention computed the quadratic way, with its ``L x S`` weights.

    ``A = phi(Q) phi(K)^T`` (lower triangle if ``causal``), weights ``A / rowsum(A)``,
    output ``weights V``. For reading and testing: it builds the full matrix.

    Shape:
        q: (..., L, d_k); k: (..., S, d_k); v: (..., S, d_v) -> output: (..., L, d_v); weights: (..., L, S)
    """
    _check(q, k, v, causal, eps)
    a = elu_feature_map(q) @ elu_feature_map(k).transpose(-2, -1)  # (..., L, S), all positive
    if causal:
        a = a.tril()
    weights = a / (a.sum(-1, keepdim=True) + eps)  # (..., L, S)
    return weights @ v, weights
