"""What a language model keeps per token at generation time: the KV-cache variants, and their bytes.

Every cached token costs, in every layer, its keys and values. Today's models shrink
that cost in four ways, all options of :class:`~attnbook.gpt.GPTConfig`:

* **fewer key/value heads**: grouped-query (GQA, Ainslie et al., 2023) and multi-query
  (MQA, Shazeer, 2019) attention, ``num_kv_heads`` (:mod:`attnbook.multihead`);
* **a latent**: multi-head latent attention (MLA, DeepSeek-AI, 2024), ``kv_latent``:
  :class:`LatentAttention` below caches one small vector per token, ``c = x W_dkv``,
  from which every head's keys ``c W_uk`` and values ``c W_uv`` are recomputed; with
  :meth:`LatentAttention.absorb` the up-projections are folded into the query and output
  projections, so attention runs on the latent itself and nothing else is cached;
* **sliding windows** in some layers (Mistral, Gemma), ``windows``: such a layer only
  ever reads its last ``w`` keys, so it keeps only those (:func:`window_mask`);
* **cross-layer KV sharing** (Brandon et al., 2024), ``kv_share``: groups of consecutive
  layers use the keys and values of the group's first layer.

Simplified here against DeepSeek-V2's MLA: no compression of the queries, and no
decoupled RoPE key (the book's GPT has learned absolute positions, added to the input,
so no position enters attention and the absorption is exact without it).

:func:`cache_bytes_per_token` measures a cache's bytes on its tensors;
:func:`kv_bytes_formula` gives the same number from a config, e.g. at a 7B-class size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from attnbook import _validate
from attnbook.attention import attention_heads
from attnbook.masks import check_mask
from attnbook.multihead import MultiHeadAttention, MultiHeadConfig

__all__ = ["LatentAttention", "window_mask", "check_layer_options", "cache_bytes_per_token", "kv_bytes_formula"]


class LatentAttention(MultiHeadAttention):
    """Multi-head latent attention: keys and values come from one cached latent per token.

    ``c = x W_dkv`` (width ``latent``), ``k_h = c W_uk^h``, ``v_h = c W_uv^h`` for every
    head ``h``; queries and the output projection as in multi-head attention. After
    :meth:`absorb`, ``q_h . k_h = (W_uk^h^T q_h) . c`` and ``sum_j a_j v_hj = W_uv^h sum_j a_j c_j``:
    the queries are mapped into the latent space, attention runs on ``c`` (one shared
    "head", keys = values = ``c``), and ``W_uv^h`` is folded into ``W_o``. Same outputs, and
    the cache holds only ``c``: keys ``(B, 1, S, latent)``, values an empty ``(B, 1, S, 0)``.

    Args:
        config: a :class:`~attnbook.multihead.MultiHeadConfig` (no grouped heads, no ``kv_dim``).
        latent: the latent's width.

    Shape:
        as :class:`~attnbook.multihead.MultiHeadAttention`; the cache (``project_kv``):
        keys, values (B, num_heads, S, head_dim), or after ``absorb()`` (B, 1, S, latent), (B, 1, S, 0)
    """

    def __init__(self, config: MultiHeadConfig, latent: int):
        if not isinstance(config, MultiHeadConfig):
            raise TypeError(f"expected a MultiHeadConfig, got {type(config).__name__}")
        if config.num_kv_heads != config.num_heads or config.kv_dim != config.d_model:
            raise ValueError(f"expected num_kv_heads = num_heads and kv_dim = d_model for latent attention (the "
                             f"latent replaces both), got num_kv_heads={config.num_kv_heads}, "
                             f"kv_dim={config.kv_dim}")
        super().__init__(config)
        self.latent = _validate.positive_int(latent, "latent")
        del self.w_k, self.w_v  # replaced by the down- and up-projections
        d = config.d_model
        self.w_dkv = nn.Linear(d, latent, bias=False)  # x -> c, the cached latent
        self.w_uk = nn.Linear(latent, d, bias=False)  # c -> every head's keys
        self.w_uv = nn.Linear(latent, d, bias=False)  # c -> every head's values
        self.absorbed = False

    @torch.no_grad()
    def absorb(self, absorbed: bool = True) -> LatentAttention:
        """Fold ``W_uk`` into the query projection and ``W_uv`` into the output projection (inference).

        ``absorb(False)`` returns to the plain path. The folded weights are computed from the
        current weights (call it after training); they are buffers, not parameters.
        """
        if not isinstance(absorbed, bool):
            raise TypeError(f"expected absorbed to be a bool, got {type(absorbed).__name__}")
        if absorbed and (self.config.qk_norm or self.config.gate):
            raise ValueError("expected no qk_norm and no gate for weight absorption (both act on the per-head keys "
                             f"or outputs, which the absorbed path never forms), got qk_norm={self.config.qk_norm}, "
                             f"gate={self.config.gate}")
        self.absorbed = absorbed
        if not absorbed:
            return self
        nh, hs, r, d = self.num_heads, self.head_dim, self.latent, self.config.d_model
        uk = self.w_uk.weight.view(nh, hs, r)  # W_uk^h: (hs, latent) per head
        uv = self.w_uv.weight.view(nh, hs, r)
        stretch = math.sqrt(r / hs)  # attention divides by sqrt(latent); the model was trained with sqrt(hs)
        q_w = torch.einsum("hsr,hsd->hrd", uk, self.w_q.weight.view(nh, hs, d)).reshape(nh * r, d) * stretch
        q_b = None if self.w_q.bias is None else torch.einsum("hsr,hs->hr", uk, self.w_q.bias.view(nh, hs))
        o_w = torch.einsum("dhs,hsr->dhr", self.w_o.weight.view(d, nh, hs), uv).reshape(d, nh * r)
        self.register_buffer("q_absorbed", q_w, persistent=False)  # (nh * latent, d_model)
        self.register_buffer("q_absorbed_bias", None if q_b is None else q_b.reshape(nh * r) * stretch,
                             persistent=False)
        self.register_buffer("o_absorbed", o_w, persistent=False)  # (d_model, nh * latent)
        return self

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        if not self.absorbed:
            return super()._query(x)
        q = nn.functional.linear(x, self.q_absorbed, self.q_absorbed_bias)  # (B, L, nh * latent)
        B, L, _ = q.shape
        return q.view(B, L, self.num_heads, self.latent).transpose(1, 2)  # (B, nh, L, latent)

    def _kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.w_dkv(context)  # (B, S, latent)
        if self.absorbed:
            c = c.unsqueeze(1)  # (B, 1, S, latent): keys and values at once
            return c, c[..., :0]  # the values slot stays empty: the keys are the values
        k = self._norm(self._heads(self.w_uk(c), self.num_heads), "k_norm")
        return k, self._heads(self.w_uv(c), self.num_heads)  # (B, nh, S, hs) each

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self._query(x), *self._kv(x)

    def check_kv(self, k: object, v: object, batch: int, name: str = "") -> None:
        if not self.absorbed:
            return super().check_kv(k, v, batch, name)
        for label, t, width in ((f"{name}keys", k, self.latent), (f"{name}values", v, 0)):
            _validate.tensor(t, label, floating=True)
            if t.dim() != 4 or t.shape[0] != batch or t.shape[1] != 1 or t.shape[3] != width or \
                    t.shape[2] != k.shape[2]:
                raise ValueError(f"expected absorbed latent {label} of shape (B, 1, S, {width}) with B={batch}, got "
                                 f"{tuple(t.shape)}")

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                is_causal: bool, need_weights: bool, x: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not self.absorbed:
            return super()._attend(q, k, v, mask, is_causal, need_weights, x)
        B, _, L, _ = q.shape
        if mask is not None:
            mask = check_mask(mask, (B, self.num_heads, L, k.shape[2]), heads=True)
        out, weights = attention_heads(q, k, k, mask, is_causal=is_causal, kind=self.config.attention,
                                       need_weights=need_weights, softcap=self.config.softcap)  # (B, nh, L, latent)
        out = out.transpose(1, 2).reshape(B, L, self.num_heads * self.latent)
        return nn.functional.linear(out, self.o_absorbed, self.w_o.bias), weights  # (B, L, d_model)


def window_mask(num_queries: int, num_keys: int, window: int, *,
                device: torch.device | str | None = None) -> torch.Tensor:
    """Causal sliding-window mask, bottom-right aligned: each query sees its last ``window`` keys.

    Query ``i`` (the last ``num_queries`` of ``num_keys`` positions) may attend to key ``j``
    when ``0 <= i + (S - L) - j < window``, itself included; for ``L = S`` this is
    :func:`attnbook.sparse.sliding_window_mask` with ``causal=True`` and ``window - 1``.

    Shape:
        -> mask: (num_queries, num_keys), True = may attend
    """
    L, S = _validate.positive_int(num_queries, "num_queries"), _validate.positive_int(num_keys, "num_keys")
    _validate.positive_int(window, "window")
    if L > S:
        raise ValueError(f"expected num_queries <= num_keys (the queries are the last keys), got {L} > {S}")
    offset = torch.arange(L, device=device)[:, None] + (S - L) - torch.arange(S, device=device)[None, :]
    return (offset >= 0) & (offset < window)  # (L, S)


def check_layer_options(windows: object, kv_share: object, num_layers: int) -> tuple[int | None, ...] | None:
    """Check ``GPTConfig.windows`` (one window or ``None`` per layer) and ``kv_share``; windows as a tuple."""
    _validate.positive_int(kv_share, "kv_share")
    if num_layers % kv_share:
        raise ValueError(f"expected kv_share to divide num_layers={num_layers} (whole groups of layers share one "
                         f"cache), got kv_share={kv_share}")
    if windows is None:
        return None
    if isinstance(windows, (str, bytes)) or not isinstance(windows, Sequence) or len(windows) != num_layers:
        raise ValueError(f"expected windows to be a sequence of {num_layers} entries (an int window or None per "
                         f"layer), got {windows!r}")
    for w in windows:
        if w is not None:
            _validate.positive_int(w, "each window")
    if kv_share > 1 and any(windows[i] != windows[i - i % kv_share] for i in range(num_layers)):
        raise ValueError(f"expected the layers that share a cache to share a window, got windows={windows} "
                         f"and kv_share={kv_share}")
    return tuple(windows)


def cache_bytes_per_token(cache: Sequence[tuple[torch.Tensor, torch.Tensor]], *,
                          windows: Sequence[int | None] | None = None, dtype: torch.dtype | None = None) -> float:
    """Bytes a KV cache holds per token, measured on its tensors (each stored tensor counted once).

    ``cache``: one (keys, values) pair per layer, sequence axis 2, as :class:`~attnbook.gpt.GPT`
    returns with ``use_cache=True``; layers that share tensors (``kv_share``) count once.
    ``windows``: a layer with window ``w`` keeps only its last ``w`` entries (what a rolling
    cache for it holds), so only those count. ``dtype``: count as if stored in it (e.g.
    ``torch.float16``); default: as stored. Divides by the number of tokens seen.

    Shape:
        cache: [(keys, values)] with keys (B, heads, T, width) -> bytes per token and sequence
    """
    if isinstance(cache, (str, bytes)) or not isinstance(cache, Sequence) or not cache:
        raise TypeError(f"expected a non-empty list of (keys, values) pairs, got {type(cache).__name__}")
    if windows is not None and len(windows) != len(cache):
        raise ValueError(f"expected one window per layer ({len(cache)}), got {len(windows)}")
    seen, total, tokens = set(), 0, None
    for i, pair in enumerate(cache):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise TypeError(f"expected layer {i}'s cache to be a (keys, values) pair, got {type(pair).__name__}")
        for t in pair:
            _validate.tensor(t, f"layer {i}'s cache", ndim=4)
            tokens = t.shape[2] if tokens is None else tokens
            if id(t) in seen:
                continue
            seen.add(id(t))
            w = None if windows is None else windows[i]
            kept = t if w is None else t[:, :, -w:]  # the last w entries
            size = kept.element_size() if dtype is None else torch.empty((), dtype=dtype).element_size()
            total += kept.numel() * size
    return total / (tokens * cache[0][0].shape[0])


def kv_bytes_formula(config, *, context: int, dtype_bytes: int = 2) -> float:
    """Cache bytes per token of a :class:`~attnbook.gpt.GPTConfig` at ``context`` tokens, from its sizes.

    Per caching layer: ``2 * num_kv_heads * head_dim`` numbers (keys and values), or
    ``kv_latent`` with MLA (absorbed); a layer with window ``w`` holds ``min(w, context)``
    tokens' worth, so it costs ``min(w, context) / context`` of that per token; with
    ``kv_share = s`` only every ``s``-th layer caches. Times ``dtype_bytes``.
    """
    from attnbook.gpt import GPTConfig

    if not isinstance(config, GPTConfig):
        raise TypeError(f"expected a GPTConfig, got {type(config).__name__}")
    _validate.positive_int(context, "context")
    _validate.positive_int(dtype_bytes, "dtype_bytes")
    head_dim = config.d_model // config.num_heads
    kv_heads = config.num_kv_heads or config.num_heads
    per_layer = config.kv_latent if config.kv_latent is not None else 2 * kv_heads * head_dim
    total = 0.0
    for i in range(0, config.num_layers, config.kv_share):
        w = None if config.windows is None else config.windows[i]
        total += per_layer * (1.0 if w is None else min(w, context) / context)
    return total * dtype_bytes
