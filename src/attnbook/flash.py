"""FlashAttention from scratch: the online softmax and tiled, exact attention.

Plain attention builds the whole ``L x S`` score matrix, so its memory grows with the
square of the length. FlashAttention (Dao et al., 2022) never builds it: it walks over
blocks of keys and values and keeps, for every query, a *running* maximum ``m``, a
running softmax denominator ``l`` and a running (unnormalised) output. When a new block
raises the maximum, what was accumulated so far is rescaled by ``exp(m_old - m_new)``;
at the end the output is divided by ``l``. The result is exact (not an approximation):
the same numbers as ``softmax(Q K^T / sqrt(d)) V`` up to float rounding, in memory that
grows linearly with the length.

The backward pass does not store the probabilities either: it keeps only the output
and one number per query, the log-sum-exp ``m + log l``, and *recomputes* each block of
probabilities from Q and K when the gradients need it (:class:`FlashAttentionFunction`).

Everything here is written with PyTorch tensor operations in Python loops, for reading,
not speed: a real kernel runs the same loops inside one GPU program, with the tiles in
on-chip memory.
"""

from __future__ import annotations

import math

import torch

from attnbook import _validate

__all__ = ["online_softmax", "flash_attention", "flash_attention_forward", "flash_attention_backward",
           "FlashAttentionFunction"]


def online_softmax(x: torch.Tensor, block_size: int = 4) -> tuple[torch.Tensor, list[tuple[float, float]]]:
    """Softmax of a 1-D tensor computed in one streaming pass over blocks, then one scaling.

    Reads ``x`` block by block, keeping only a running maximum ``m`` and a running sum
    ``l = sum exp(x_i - m)``; when a block brings a larger maximum, the old sum is
    rescaled by ``exp(m_old - m_new)``. Returns the softmax and the ``(m, l)`` state
    after each block, so the bookkeeping can be inspected.

    Shape:
        x: (N,) -> softmax: (N,); states: one (m, l) pair per block
    """
    _validate.tensor(x, "x", ndim=1, floating=True)
    block_size = _validate.positive_int(block_size, "block_size")
    if x.numel() == 0:
        raise ValueError("expected a non-empty x, got 0 elements")
    m = torch.tensor(float("-inf"), dtype=x.dtype, device=x.device)
    l = torch.zeros((), dtype=x.dtype, device=x.device)
    states = []
    for start in range(0, x.numel(), block_size):
        block = x[start:start + block_size]
        m_new = torch.maximum(m, block.max())
        l = l * torch.exp(m - m_new) + torch.exp(block - m_new).sum()  # rescale the old sum, add the new
        m = m_new
        states.append((float(m), float(l)))
    return torch.exp(x - m) / l, states


def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """The package's q/k/v check, then what tiled kernels add: one dtype, equal (not broadcast) leading dims."""
    _validate.attention_inputs(q, k, v)
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"expected query, key and value of one dtype, got {q.dtype}, {k.dtype} and {v.dtype}")
    if not (q.shape[:-2] == k.shape[:-2] == v.shape[:-2]):
        raise ValueError(f"expected query, key and value with the same leading (batch, head) dimensions (no "
                         f"broadcasting), got shapes {tuple(q.shape)}, {tuple(k.shape)} and {tuple(v.shape)}")
    if q.shape[-2] == 0 or k.shape[-2] == 0:
        raise ValueError(f"expected at least one query and one key, got shapes {tuple(q.shape)} and "
                         f"{tuple(k.shape)}")


def _above_diagonal(i0: int, i1: int, j0: int, j1: int, shift: int, device: torch.device) -> torch.Tensor:
    """True where key ``j`` comes after what query ``i`` may see (``j > i + shift``), for one tile."""
    rows = torch.arange(i0, i1, device=device)[:, None]
    cols = torch.arange(j0, j1, device=device)[None, :]
    return cols > rows + shift  # (bq, bk)


def _scale(scale: float | None, d: int) -> float:
    if scale is None:
        return 1.0 / math.sqrt(d)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"expected scale to be a number, got {type(scale).__name__}")
    return float(scale)


def flash_attention_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, is_causal: bool = False,
                            scale: float | None = None, block_q: int = 64, block_k: int = 64
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Tiled exact attention: the output and each query's log-sum-exp, without the score matrix.

    The queries are cut into blocks of ``block_q`` rows and the keys/values into blocks
    of ``block_k``; lengths need not be multiples of the block sizes. With
    ``is_causal`` query ``i`` of ``L`` sees keys ``0 .. i + (S - L)`` (bottom-right
    aligned, the package's one causal convention, :mod:`attnbook.masks`) and key blocks
    wholly above that diagonal are skipped; a query that sees no key (``L > S``) gets a
    zero output and a log-sum-exp of ``-inf``. The largest temporary is one
    ``block_q x block_k`` tile per batch and head.

    Shape:
        q: (..., L, d_k); k: (..., S, d_k); v: (..., S, d_v), same leading dimensions
        -> output: (..., L, d_v); logsumexp: (..., L)
    """
    _check_qkv(q, k, v)
    if not isinstance(is_causal, bool):
        raise TypeError(f"expected is_causal to be a bool, got {type(is_causal).__name__}")
    block_q, block_k = _validate.positive_int(block_q, "block_q"), _validate.positive_int(block_k, "block_k")
    scale = _scale(scale, q.shape[-1])
    L, S = q.shape[-2], k.shape[-2]
    out = torch.empty(*q.shape[:-1], v.shape[-1], dtype=q.dtype, device=q.device)  # (..., L, d_v)
    lse = torch.empty(q.shape[:-1], dtype=q.dtype, device=q.device)  # (..., L)
    shift = S - L  # causal: query i sees keys 0 .. i + shift
    for i0 in range(0, L, block_q):
        i1 = min(i0 + block_q, L)
        qi = q[..., i0:i1, :] * scale  # (..., bq, d_k)
        m = torch.full(qi.shape[:-1], float("-inf"), dtype=q.dtype, device=q.device)  # (..., bq) running max
        l = torch.zeros_like(m)  # (..., bq) running sum of exp(score - m)
        acc = torch.zeros(*qi.shape[:-1], v.shape[-1], dtype=q.dtype, device=q.device)  # (..., bq, d_v)
        last_key = min(S, i1 + shift) if is_causal else S  # causal: keys after the block's last query's are unseen
        for j0 in range(0, last_key, block_k):
            j1 = min(j0 + block_k, last_key)
            s = qi @ k[..., j0:j1, :].transpose(-2, -1)  # (..., bq, bk): one tile of scores
            if is_causal and j1 - 1 > i0 + shift:  # the tile crosses the diagonal
                s = s.masked_fill(_above_diagonal(i0, i1, j0, j1, shift, q.device), float("-inf"))  # (..., bq, bk)
            m_new = torch.maximum(m, s.amax(dim=-1))  # (..., bq)
            m_safe = m_new.masked_fill(m_new == float("-inf"), 0.0)  # a row with no key yet: avoid -inf - -inf
            p = torch.exp(s - m_safe[..., None])  # (..., bq, bk), masked entries -> 0
            correction = torch.exp(m - m_safe)  # (..., bq): rescales what was accumulated so far
            l = l * correction + p.sum(dim=-1)
            acc = acc * correction[..., None] + p @ v[..., j0:j1, :]  # (..., bq, d_v)
            m = m_new
        out[..., i0:i1, :] = acc / l.masked_fill(l == 0, 1.0)[..., None]  # a query with no key: zero output
        lse[..., i0:i1] = m + torch.log(l)  # -inf for a query with no key
    return out, lse


def flash_attention_backward(grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                             out: torch.Tensor, lse: torch.Tensor, *, is_causal: bool = False,
                             scale: float | None = None, block_q: int = 64, block_k: int = 64
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of tiled attention by recomputation: the probabilities are rebuilt tile by tile.

    From the saved output and log-sum-exp, each tile's probabilities are
    ``P = exp(Q K^T * scale - lse)``; with ``D = rowsum(dO * O)`` the gradients are
    ``dV = P^T dO``, ``dS = P * (dO V^T - D)``, ``dQ = dS K * scale``, ``dK = dS^T Q * scale``,
    summed over tiles. Nothing of size ``L x S`` is stored.

    Shape:
        grad_out, out: (..., L, d_v); q: (..., L, d_k); k: (..., S, d_k); v: (..., S, d_v); lse: (..., L)
        -> dq: (..., L, d_k); dk: (..., S, d_k); dv: (..., S, d_v)
    """
    _check_qkv(q, k, v)
    block_q, block_k = _validate.positive_int(block_q, "block_q"), _validate.positive_int(block_k, "block_k")
    scale = _scale(scale, q.shape[-1])
    L, S = q.shape[-2], k.shape[-2]
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    D = (grad_out * out).sum(dim=-1)  # (..., L)
    shift = S - L  # causal: query i sees keys 0 .. i + shift
    safe_lse = lse.masked_fill(lse == float("-inf"), float("inf"))  # a query with no key: p = exp(-inf) = 0
    for j0 in range(0, S, block_k):
        j1 = min(j0 + block_k, S)
        kj, vj = k[..., j0:j1, :], v[..., j0:j1, :]  # (..., bk, d_k), (..., bk, d_v)
        first_query = max(0, j0 - shift) if is_causal else 0  # causal: queries before it never see this block
        for i0 in range(first_query - first_query % block_q, L, block_q):
            i1 = min(i0 + block_q, L)
            s = (q[..., i0:i1, :] @ kj.transpose(-2, -1)) * scale  # (..., bq, bk), recomputed
            if is_causal and j1 - 1 > i0 + shift:
                s = s.masked_fill(_above_diagonal(i0, i1, j0, j1, shift, q.device), float("-inf"))
            p = torch.exp(s - safe_lse[..., i0:i1, None])  # (..., bq, bk): the softmax, rebuilt
            do = grad_out[..., i0:i1, :]  # (..., bq, d_v)
            dv[..., j0:j1, :] += p.transpose(-2, -1) @ do  # (..., bk, d_v)
            ds = p * (do @ vj.transpose(-2, -1) - D[..., i0:i1, None])  # (..., bq, bk)
            dq[..., i0:i1, :] += (ds @ kj) * scale  # (..., bq, d_k)
            dk[..., j0:j1, :] += (ds.transpose(-2, -1) @ q[..., i0:i1, :]) * scale  # (..., bk, d_k)
    return dq, dk, dv


class FlashAttentionFunction(torch.autograd.Function):
    """Autograd for tiled attention: saves Q, K, V, the output and the log-sum-exp, not the weights."""

    @staticmethod
    def forward(ctx, q, k, v, is_causal, scale, block_q, block_k):  # type: ignore[override]
        out, lse = flash_attention_forward(q, k, v, is_causal=is_causal, scale=scale, block_q=block_q,
                                           block_k=block_k)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.options = dict(is_causal=is_causal, scale=scale, block_q=block_q, block_k=block_k)
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = flash_attention_backward(grad_out, q, k, v, out, lse, **ctx.options)
        return dq, dk, dv, None, None, None, None


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, is_causal: bool = False,
                    scale: float | None = None, block_q: int = 64, block_k: int = 64) -> torch.Tensor:
    """Exact attention ``softmax(Q K^T * scale) V`` computed tile by tile, differentiable.

    Equal to :func:`attnbook.attention.scaled_dot_product_attention` (and to PyTorch's
    ``scaled_dot_product_attention`` with the same causal mask) up to float rounding, for
    any lengths (not only multiples of the blocks). The backward pass recomputes the
    probabilities (:func:`flash_attention_backward`).
    Attention weights are never formed, so there are none to return.

    Args:
        q, k, v: queries, keys and values with the same leading (batch, head) dimensions.
        is_causal: query ``i`` of ``L`` sees keys ``0 .. i + (S - L)`` only: bottom-right aligned, as
            everywhere in the package (:mod:`attnbook.masks`); PyTorch's ``is_causal`` is aligned at
            the top left instead, which differs when ``L != S``.
        scale: the factor on the scores; default ``1 / sqrt(d_k)``.
        block_q, block_k: rows of queries and of keys/values per tile.

    Shape:
        q: (..., L, d_k); k: (..., S, d_k); v: (..., S, d_v) -> output: (..., L, d_v)
    """
    _check_qkv(q, k, v)
    if not isinstance(is_causal, bool):
        raise TypeError(f"expected is_causal to be a bool, got {type(is_causal).__name__}")
    _validate.positive_int(block_q, "block_q")
    _validate.positive_int(block_k, "block_k")
    scale = _scale(scale, q.shape[-1])
    return FlashAttentionFunction.apply(q, k, v, is_causal, scale, block_q, block_k)
