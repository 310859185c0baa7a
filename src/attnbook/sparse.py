"""Sparse attention: a sliding window (local attention), with optional global tokens.

Each query reads only the keys within ``window`` positions of itself, as in the
Longformer (Beltagy et al., 2020); a few *global* tokens (here: the first
``num_global`` positions) read every key and are read by every query, so information
can still cross the whole sequence in two steps. As a mask this is a band around the
diagonal plus full rows and columns for the global tokens; computed block by block along
the band it costs about ``3 L window`` scores (for windows of 16 or more) instead of ``L x L``.

Masks follow :mod:`attnbook.attention`: ``True`` = may attend.
"""

from __future__ import annotations

import math

import torch

from attnbook import _validate
from attnbook.masks import causal_mask

__all__ = ["sliding_window_mask", "sliding_window_attention"]


def _window(window: object) -> int:
    if isinstance(window, bool) or not isinstance(window, int):
        raise TypeError(f"expected window to be an int, got {type(window).__name__}")
    if window < 0:
        raise ValueError(f"expected window >= 0 (keys on each side of the query), got {window}")
    return window


def _num_global(num_global: object, length: int) -> int:
    if isinstance(num_global, bool) or not isinstance(num_global, int):
        raise TypeError(f"expected num_global to be an int, got {type(num_global).__name__}")
    if not 0 <= num_global <= length:
        raise ValueError(f"expected num_global between 0 and the length {length}, got {num_global}")
    return num_global


def sliding_window_mask(length: int, window: int, *, causal: bool = False, num_global: int = 0,
                        device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean mask of sliding-window attention (True = may attend), with optional global tokens.

    Query ``i`` may attend to key ``j`` when ``|i - j| <= window`` (with ``causal``:
    ``0 <= i - j <= window``), or when ``i`` or ``j`` is one of the first
    ``num_global`` positions (still respecting ``causal``).

    Shape:
        -> mask: (length, length)
    """
    _validate.positive_int(length, "length")
    window = _window(window)
    num_global = _num_global(num_global, length)
    if not isinstance(causal, bool):
        raise TypeError(f"expected causal to be a bool, got {type(causal).__name__}")
    i = torch.arange(length, device=device)[:, None]  # (L, 1) queries
    j = torch.arange(length, device=device)[None, :]  # (1, L) keys
    offset = i - j
    allowed = (offset.abs() <= window) if not causal else (offset >= 0) & (offset <= window)
    is_global = (i < num_global) | (j < num_global)  # (L, L)
    allowed = allowed | (is_global & (offset >= 0) if causal else is_global)
    return allowed


def sliding_window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int, *,
                             causal: bool = False, num_global: int = 0, scale: float | None = None
                             ) -> torch.Tensor:
    """Sliding-window self-attention computed in blocks along the band: ``3 L max(window, 16)`` scores, not ``L^2``.

    Equal to masked attention with :func:`sliding_window_mask` (up to float rounding).
    The queries are cut into blocks of ``b = max(window, 16)`` rows; every key a query of
    block ``n`` may see lies in key blocks ``n - 1``, ``n`` or ``n + 1`` (as ``window <= b``),
    so each query block is scored against those ``3 b`` keys only (one dense matrix product per block, all
    blocks at once), and a mask keeps the exact band. The ``num_global`` global keys
    are scored by every query; the global queries (the first ``num_global`` rows) attend
    to every key, which costs ``num_global x L`` more scores.

    Shape:
        q, k: (..., L, d_k); v: (..., L, d_v), same leading dimensions -> output: (..., L, d_v)
    """
    for name, t in (("query", q), ("key", k), ("value", v)):
        _validate.tensor(t, name, floating=True)
        if t.dim() < 2:
            raise ValueError(f"expected {name} with at least 2 dimensions (..., length, features), got shape "
                             f"{tuple(t.shape)}")
    if q.shape[:-1] != k.shape[:-1] or k.shape[:-1] != v.shape[:-1] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"expected self-attention shapes q, k: (..., L, d_k) and v: (..., L, d_v), got "
                         f"{tuple(q.shape)}, {tuple(k.shape)} and {tuple(v.shape)}")
    if not isinstance(causal, bool):
        raise TypeError(f"expected causal to be a bool, got {type(causal).__name__}")
    window = _window(window)
    L = q.shape[-2]
    _validate.positive_int(L, "the sequence length")
    G = _num_global(num_global, L)
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    elif isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"expected scale to be a number, got {type(scale).__name__}")
    b = max(window, 16)  # queries per block (at least 16: tiny matrix products are slow)
    nb = -(-L // b)  # number of blocks
    Lp = nb * b  # length padded to whole blocks
    lead = q.shape[:-2]
    qb = torch.nn.functional.pad(q, [0, 0, 0, Lp - L]).reshape(*lead, nb, b, q.shape[-1])  # (..., nb, b, d_k)

    def three_blocks(x: torch.Tensor) -> torch.Tensor:  # keys of blocks n-1, n, n+1 for every block n
        xp = torch.nn.functional.pad(x, [0, 0, b, Lp - L + b])  # (..., Lp + 2b, d): one block of padding each side
        return xp.unfold(-2, 3 * b, b).transpose(-2, -1)  # (..., nb, 3b, d): overlapping windows, a view

    kw, vw = three_blocks(k), three_blocks(v)  # (..., nb, 3b, d_k), (..., nb, 3b, d_v)
    scores = (qb @ kw.transpose(-2, -1)) * scale  # (..., nb, b, 3b)
    i = torch.arange(Lp, device=q.device).view(nb, b, 1)  # query positions
    j = (torch.arange(nb, device=q.device) * b - b).view(nb, 1, 1) + torch.arange(3 * b, device=q.device)  # keys
    offset = i - j  # (nb, b, 3b)
    band = (offset.abs() <= window) if not causal else (offset >= 0) & (offset <= window)
    allowed = band & (j >= G) & (j < L)  # global keys are scored separately below
    allowed = allowed | ((i >= L) & (offset == 0))  # padded queries read themselves (discarded; avoids NaN)
    scores = scores.masked_fill(~allowed, float("-inf"))  # (..., nb, b, 3b)
    if G:
        g_scores = (q @ k[..., :G, :].transpose(-2, -1)) * scale  # (..., L, G): every query reads the globals
        if causal:
            g_allowed = causal_mask(L, device=q.device)[:, :G]  # (L, G): global key j seen by queries i >= j
            g_scores = g_scores.masked_fill(~g_allowed, float("-inf"))  # (..., L, G)
        g_scores = torch.nn.functional.pad(g_scores, [0, 0, 0, Lp - L]).reshape(*lead, nb, b, G)
        scores = torch.cat([scores, g_scores], dim=-1)  # (..., nb, b, 3b + G)
    weights = torch.softmax(scores, dim=-1)  # every row has at least its own key: no NaN
    out = weights[..., :3 * b] @ vw  # (..., nb, b, d_v)
    if G:
        out = out + weights[..., 3 * b:] @ v[..., None, :G, :]  # (..., nb, b, d_v)
    out = out.reshape(*lead, Lp, v.shape[-1])[..., :L, :]  # (..., L, d_v)
    if G:  # the global queries read the whole sequence (causal: keys 0..i)
        s_global = (q[..., :G, :] @ k.transpose(-2, -1)) * scale  # (..., G, L)
        if causal:
            s_global = s_global.masked_fill(~causal_mask(L, device=q.device)[:G], float("-inf"))  # rows 0..G-1
        out_global = torch.softmax(s_global, dim=-1) @ v  # (..., G, d_v)
        out = torch.cat([out_global, out[..., G:, :]], dim=-2)  # (..., L, d_v)
    return out
