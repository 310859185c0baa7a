"""The transformer's building blocks: LayerNorm, the feed-forward layer and one residual block.

A block is a token mixer (self-attention) followed by a position-wise feed-forward
layer, each wrapped in a residual connection and a layer normalisation, optionally with
cross-attention to a ``memory`` in between. Where the normalisation sits is the
difference between the two variants:

* **post-LN** (the original; Vaswani et al., 2017): ``x = LN(x + Attn(x))``, then
  ``x = LN(x + FF(x))``;
* **pre-LN** (GPT-2 and most models since; Xiong et al., 2020):
  ``x = x + Attn(LN(x))``, then ``x = x + FF(LN(x))``, and one final LN after the stack.

Pre-LN keeps an untouched residual path from the input to the output, which is why it
trains stably without a learning-rate warm-up.

One class, :class:`Block`, serves every model of the book: the encoder block
(``Block(BlockConfig(d, h))``), the decoder block (``cross_attention=True``, called with
``memory=`` and ``is_causal=True``), the GPT block (with a KV cache: ``past=``,
``use_cache=True``), the ViT encoder, and, with ``mixer=`` replacing self-attention
and ``d_ff=0`` dropping the feed-forward layer, a Mamba language model's residual loop.

Norms are numbered in the order their sub-layers run: ``norm1`` before self-attention,
then ``norm2`` before cross-attention (if any), then the feed-forward layer's norm
(``norm2`` without cross-attention, ``norm3`` with it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from attnbook import _validate
from attnbook.attention import ATTENTION_KINDS
from attnbook.multihead import MultiHeadAttention, MultiHeadConfig
from attnbook.positional import rotate_pairs

__all__ = ["LayerNorm", "FeedForward", "count_parameters", "BlockConfig", "Block"]


class LayerNorm(nn.Module):
    """Normalise each vector to mean 0 and variance 1, then scale and shift (Ba et al., 2016).

    ``y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias``, statistics over the last
    dimension, the biased variance (as ``torch.nn.LayerNorm``). The forward pass calls
    :func:`torch.nn.functional.layer_norm`, which computes exactly this formula in one
    kernel (the tests check it against the formula written out).

    Shape:
        x: (..., d) -> (..., d)
    """

    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.d = _validate.positive_int(d, "d")
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or eps <= 0:
            raise ValueError(f"expected a positive eps, got {eps!r}")
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 1 or x.shape[-1] != self.d:
            _validate.tensor(x, "x", floating=True)
            raise ValueError(f"expected a last dimension of {self.d}, got shape {tuple(x.shape)}")
        return nn.functional.layer_norm(x, (self.d,), self.weight, self.bias, self.eps)


class FeedForward(nn.Module):
    """The position-wise feed-forward layer: ``Linear(d, d_ff) -> GELU -> [Dropout] -> Linear(d_ff, d)``.

    Applied to every token on its own: no information moves between positions here.

    Shape:
        x: (..., d_model) -> (..., d_model)
    """

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0):
        super().__init__()
        self.up = nn.Linear(_validate.positive_int(d_model, "d_model"), _validate.positive_int(d_ff, "d_ff"))
        self.down = nn.Linear(d_ff, d_model)
        self.dropout = _validate.probability(dropout, "dropout")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.gelu(self.up(x))  # (..., d_ff)
        if self.dropout and self.training:
            h = nn.functional.dropout(h, self.dropout)
        return self.down(h)  # (..., d_model)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (a tied weight counts once)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass
class BlockConfig:
    """Sizes and options of a :class:`Block`.

    Attributes:
        d_model: the width of every token vector.
        num_heads: attention heads (must divide ``d_model``).
        d_ff: the feed-forward layer's inner width (``None``: ``4 * d_model``; ``0``: no
            feed-forward sub-layer, e.g. for a Mamba mixer).
        num_kv_heads: key/value heads for grouped-query attention (``None``: ``num_heads``).
        norm_first: ``True`` for pre-LN, ``False`` for post-LN.
        cross_attention: add cross-attention to a ``memory`` after self-attention (a decoder block).
        dropout: dropout on each sub-layer's output and inside the feed-forward layer
            (none on the attention weights), in training mode only.
        attention: ``"scratch"`` (the book's function, default) or ``"fused"`` (PyTorch's kernel).
        qk_norm, softcap, gate: self-attention options (see :class:`~attnbook.multihead.MultiHeadConfig`).
        kv_latent: multi-head latent attention with a cached latent of this width
            (:class:`~attnbook.kv_variants.LatentAttention`); ``None``: keys and values as usual.
    """

    d_model: int
    num_heads: int
    d_ff: int | None = None
    num_kv_heads: int | None = None
    norm_first: bool = True
    cross_attention: bool = False
    dropout: float = 0.0
    attention: str = "scratch"
    qk_norm: bool = False
    softcap: float | None = None
    gate: bool = False
    kv_latent: int | None = None

    def __post_init__(self) -> None:
        if self.kv_latent is not None:
            _validate.positive_int(self.kv_latent, "kv_latent")
        self.attention_config()  # checks the sizes and the attention kind
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        elif self.d_ff != 0:
            _validate.positive_int(self.d_ff, "d_ff")
        for name in ("norm_first", "cross_attention"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"expected {name} to be a bool, got {type(getattr(self, name)).__name__}")
        _validate.probability(self.dropout, "dropout")

    def attention_config(self) -> MultiHeadConfig:
        return MultiHeadConfig(self.d_model, self.num_heads, self.num_kv_heads, attention=self.attention,
                               qk_norm=self.qk_norm, softcap=self.softcap, gate=self.gate)


KV = tuple[torch.Tensor, torch.Tensor]


class Block(nn.Module):
    """The residual block: self-attention (or ``mixer``), optional cross-attention, feed-forward.

    Args:
        config: a :class:`BlockConfig`.
        mixer: a module replacing self-attention (e.g. a Mamba layer); it is called as
            ``mixer(h, **mixer_options)`` and returns (B, T, d_model), or a tuple whose
            first item is that and whose second is returned where attention weights would be.

    ``forward`` returns ``x``, followed by ``present`` if ``use_cache`` and by the
    weights if ``need_weights`` (cross-attention's when the block has it, else
    self-attention's (or the mixer's second output)), as a tuple when anything follows.
    ``shared_kv``: keys and values computed by another block (cross-layer KV sharing):
    this block then computes only queries, ignores ``past`` and returns them as ``present``.
    ``rotary=(cos, sin)`` rotates the new queries and keys (RoPE, :func:`~attnbook.positional.rotate_pairs`).

    Shape:
        x: (B, T, d_model); mask: self-attention mask, bool or float, broadcastable to
        (B, heads, T, T_past + T); memory: (B, S, d_model); memory_mask: broadcastable to
        (B, heads, T, S), e.g. (B, 1, S); past: keys, values (B, num_kv_heads, T_past, head_dim);
        rotary: cos, sin (T, head_dim / 2) each
        -> x: (B, T, d_model); present: keys, values (B, num_kv_heads, T_past + T, head_dim);
        weights: (B, heads, T, S) or (B, heads, T, T_past + T)
    """

    def __init__(self, config: BlockConfig, *, mixer: nn.Module | None = None):
        super().__init__()
        if not isinstance(config, BlockConfig):
            raise TypeError(f"expected a BlockConfig, got {type(config).__name__}")
        if mixer is not None and not isinstance(mixer, nn.Module):
            raise TypeError(f"expected mixer to be an nn.Module, got {type(mixer).__name__}")
        self.config = c = config
        self.norm1 = LayerNorm(c.d_model)
        if mixer is None and c.kv_latent is not None:
            from attnbook.kv_variants import LatentAttention  # it builds on multihead, as this module does
            self.self_attention = LatentAttention(c.attention_config(), c.kv_latent)
        elif mixer is None:
            self.self_attention = MultiHeadAttention(c.attention_config())
        else:
            self.self_attention = None
            self.mixer = mixer
        if c.cross_attention:
            self.norm2 = LayerNorm(c.d_model)
            self.cross_attention = MultiHeadAttention(c.attention_config())
        else:
            self.cross_attention = None
        if c.d_ff:
            setattr(self, "norm3" if c.cross_attention else "norm2", LayerNorm(c.d_model))
            self.feed_forward = FeedForward(c.d_model, c.d_ff, c.dropout)
        else:
            self.feed_forward = None

    @property
    def attention(self) -> MultiHeadAttention | None:
        """The self-attention layer (another name for ``self_attention``)."""
        return self.self_attention

    def _self_attend(self, h: torch.Tensor, mask: torch.Tensor | None, is_causal: bool, past: KV | None,
                     need: bool, shared_kv: KV | None = None,
                     rotary: KV | None = None) -> tuple[torch.Tensor, KV, torch.Tensor | None]:
        attn = self.self_attention
        if shared_kv is not None:  # cross-layer KV sharing: another layer's keys and values, past included
            if not (isinstance(shared_kv, (tuple, list)) and len(shared_kv) == 2):
                raise TypeError(f"expected shared_kv to be a (keys, values) pair, got {type(shared_kv).__name__}")
            attn.check_kv(shared_kv[0], shared_kv[1], h.shape[0], "shared ")
            q = attn._query(h)
            if rotary is not None:  # the shared keys were rotated by the layer that made them
                q = rotate_pairs(q, *rotary)
            a, w = attn._attend(q, shared_kv[0], shared_kv[1], mask, is_causal, need, h)
            return a, tuple(shared_kv), w
        q, k, v = attn._qkv(h)  # (B, nh, T, hs), (B, nkv, T, hs) x 2
        if rotary is not None:  # RoPE on the new queries and keys (the cache holds rotated keys)
            q, k = rotate_pairs(q, *rotary), rotate_pairs(k, *rotary)
        if past is not None:
            if not (isinstance(past, (tuple, list)) and len(past) == 2):
                raise TypeError(f"expected past to be a (keys, values) pair, got {type(past).__name__}")
            attn.check_kv(past[0], past[1], h.shape[0], "past ")
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)  # (B, nkv, T_past + T, hs)
        a, w = attn._attend(q, k, v, mask, is_causal, need, h)
        return a, (k, v), w

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, *, memory: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None, is_causal: bool = False, past: KV | None = None,
                use_cache: bool = False, need_weights: bool = False, mixer_options: dict | None = None,
                shared_kv: KV | None = None, rotary: KV | None = None):
        c = self.config
        _validate.tensor(x, "x", ndim=3, floating=True)
        if x.shape[-1] != c.d_model:
            raise ValueError(f"expected x of width d_model={c.d_model}, got shape {tuple(x.shape)}")
        if not isinstance(is_causal, bool):
            raise TypeError(f"expected is_causal to be a bool, got {type(is_causal).__name__}")
        if (memory is None) != (self.cross_attention is None):
            raise ValueError("expected memory exactly when the block has cross-attention "
                             f"(cross_attention={c.cross_attention}), got memory="
                             f"{'None' if memory is None else 'a tensor'}")
        if self.self_attention is None and (past is not None or use_cache or shared_kv is not None):
            raise ValueError("expected no KV cache (past, use_cache) in a block with a custom mixer")
        want_self = need_weights and self.cross_attention is None
        present = w = None
        pre, p = c.norm_first, c.dropout if self.training else 0.0
        # 1. token mixing: self-attention (with the cache) or the mixer
        h = self.norm1(x) if pre else x
        if self.self_attention is not None:
            a, present, w = self._self_attend(h, mask, is_causal, past, want_self, shared_kv, rotary)
        else:
            a = self.mixer(h, **(mixer_options or {}))
            if isinstance(a, tuple):
                a, w = a[0], a[1]
        a = nn.functional.dropout(a, p) if p else a
        x = x + a if pre else self.norm1(x + a)  # (B, T, d_model)
        # 2. cross-attention to the memory
        if self.cross_attention is not None:
            h = self.norm2(x) if pre else x
            a = self.cross_attention(h, memory, memory_mask, need_weights=need_weights)
            if need_weights:
                a, w = a
            a = nn.functional.dropout(a, p) if p else a
            x = x + a if pre else self.norm2(x + a)
        # 3. feed-forward
        if self.feed_forward is not None:
            norm = self.norm3 if self.cross_attention is not None else self.norm2
            a = self.feed_forward(norm(x) if pre else x)
            a = nn.functional.dropout(a, p) if p else a
            x = x + a if pre else norm(x + a)
        out = (x,) + ((present,) if use_cache else ()) + ((w,) if need_weights else ())
        return out if len(out) > 1 else x
