"""A fused FlashAttention forward kernel in Triton (GPU; forward pass only).

The same online-softmax loop as :mod:`attnbook.flash`, but as one Triton program per
block of queries and per (batch, head): the tile of scores lives in registers and
on-chip memory, and only Q, K, V and the output ever touch the GPU's main memory.

Calling it needs ``triton`` (shipped with PyTorch's CUDA wheels, e.g. on Colab), imported
on the first call, so importing this module works everywhere. The kernel also runs on a
CPU under Triton's interpreter (``TRITON_INTERPRET=1``), slowly, which is how it is tested
without a GPU.
"""

from __future__ import annotations

import math

import torch

from attnbook import _validate

__all__ = ["triton_flash_attention"]

_KERNEL = None


def _build_kernel():
    """Import Triton and compile-wrap the kernel, once (``triton`` and ``tl`` become module globals)."""
    global triton, tl, _KERNEL
    if _KERNEL is not None:
        return _KERNEL
    try:
        import triton
        import triton.language as tl
    except ImportError as err:
        raise ImportError("expected the `triton` package for the fused GPU kernel (it ships with PyTorch's CUDA "
                          "wheels; or `pip install triton`), got none") from err

    @triton.jit
    def _flash_forward_kernel(Q, K, V, O, scale, L, S,
                              stride_qb, stride_qt, stride_kb, stride_kt, stride_vb, stride_vt, stride_ob, stride_ot,
                              HEAD_DIM: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr,
                              CAUSAL: tl.constexpr):
        block = tl.program_id(0)  # which block of queries
        bh = tl.program_id(1)  # which (batch, head) pair
        rows = block * BLOCK_Q + tl.arange(0, BLOCK_Q)  # (BLOCK_Q,) query positions
        dims = tl.arange(0, HEAD_DIM)
        q = tl.load(Q + bh * stride_qb + rows[:, None] * stride_qt + dims[None, :], mask=rows[:, None] < L,
                    other=0.0)
        m = tl.full((BLOCK_Q,), float("-inf"), tl.float32)  # running max
        l = tl.zeros((BLOCK_Q,), tl.float32)  # running sum
        acc = tl.zeros((BLOCK_Q, HEAD_DIM), tl.float32)  # running, unnormalised output
        offset = S - L  # causal, bottom-right: query i sees keys 0 .. i + S - L
        end = tl.minimum(S, tl.maximum((block + 1) * BLOCK_Q + offset, 0)) if CAUSAL else S  # skip tiles right of it
        for start in range(0, end, BLOCK_K):
            cols = start + tl.arange(0, BLOCK_K)  # (BLOCK_K,) key positions
            k = tl.load(K + bh * stride_kb + cols[:, None] * stride_kt + dims[None, :], mask=cols[:, None] < S,
                        other=0.0)
            s = tl.dot(q, tl.trans(k)).to(tl.float32) * scale  # (BLOCK_Q, BLOCK_K): one tile of scores
            allowed = cols[None, :] < S
            if CAUSAL:
                allowed = allowed & (cols[None, :] <= rows[:, None] + offset)
            s = tl.where(allowed, s, float("-inf"))
            m_new = tl.maximum(m, tl.max(s, 1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # a row with no key yet: no NaN
            p = tl.exp(s - m_safe[:, None])
            rescale = tl.exp(m - m_safe)
            l = l * rescale + tl.sum(p, 1)
            v = tl.load(V + bh * stride_vb + cols[:, None] * stride_vt + dims[None, :], mask=cols[:, None] < S,
                        other=0.0)
            acc = acc * rescale[:, None] + tl.dot(p.to(v.dtype), v).to(tl.float32)
            m = m_new
        out = acc / tl.where(l == 0.0, 1.0, l)[:, None]  # a query that sees no key gets zero output
        tl.store(O + bh * stride_ob + rows[:, None] * stride_ot + dims[None, :], out.to(O.dtype.element_ty),
                 mask=rows[:, None] < L)

    _KERNEL = _flash_forward_kernel
    return _KERNEL


def triton_flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, is_causal: bool = False,
                           block_q: int = 64, block_k: int = 64) -> torch.Tensor:
    """Exact attention by a fused Triton kernel: ``softmax(Q K^T / sqrt(d)) V``, forward only.

    Causal masks follow the book's one convention (:mod:`attnbook.masks`, bottom-right:
    query i of L sees keys ``0 .. i + S - L``; a query that sees none gets zero). The head width must be a power of
    two of at least 16 (Triton's matrix-multiply tiles), the block sizes powers of two
    of at least 16.

    Shape:
        q: (B, H, L, d); k, v: (B, H, S, d) -> output: (B, H, L, d)
    """
    for name, t in (("query", q), ("key", k), ("value", v)):
        _validate.tensor(t, name, ndim=4, floating=True)
    if k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"expected q: (B, H, L, d) and k, v: (B, H, S, d), got {tuple(q.shape)}, "
                         f"{tuple(k.shape)} and {tuple(v.shape)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"expected query, key and value of one dtype, got {q.dtype}, {k.dtype} and {v.dtype}")
    if not isinstance(is_causal, bool):
        raise TypeError(f"expected is_causal to be a bool, got {type(is_causal).__name__}")
    d = q.shape[-1]
    if d < 16 or d & (d - 1):
        raise ValueError(f"expected a head width that is a power of two >= 16, got {d}")
    for name, b in (("block_q", block_q), ("block_k", block_k)):
        _validate.positive_int(b, name)
        if b < 16 or b & (b - 1):
            raise ValueError(f"expected {name} to be a power of two >= 16, got {b}")
    kernel = _build_kernel()
    B, H, L, _ = q.shape
    S = k.shape[2]
    q3, k3, v3 = (t.reshape(B * H, t.shape[2], d).contiguous() for t in (q, k, v))  # (B*H, T, d)
    out = torch.empty_like(q3)
    grid = (triton.cdiv(L, block_q), B * H)
    kernel[grid](q3, k3, v3, out, 1.0 / math.sqrt(d), L, S,
                 q3.stride(0), q3.stride(1), k3.stride(0), k3.stride(1), v3.stride(0), v3.stride(1),
                 out.stride(0), out.stride(1), HEAD_DIM=d, BLOCK_Q=block_q, BLOCK_K=block_k, CAUSAL=is_causal)
    return out.view(B, H, L, d)
