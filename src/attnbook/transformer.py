"""The transformer block and the encoder-decoder transformer (Vaswani et al., 2017).

A block is attention followed by a position-wise feed-forward layer, each wrapped in
a residual connection and a layer normalisation. Where the normalisation sits is the
difference between the two variants:

* **post-LN** (the original): ``x = LN(x + Attn(x))``, then ``x = LN(x + FF(x))``;
* **pre-LN** (GPT-2 and most models since; Xiong et al., 2020):
  ``x = x + Attn(LN(x))``, then ``x = x + FF(LN(x))``, and one final LN at the end.

Pre-LN keeps an untouched residual path from the input to the output, which is why it
trains stably without a learning-rate warm-up.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from attnbook import _validate
from attnbook.attention import key_padding_mask
from attnbook.multihead import MultiHeadAttention, MultiHeadConfig
from attnbook.positional import sinusoidal_encoding

__all__ = ["LayerNorm", "FeedForward", "BlockConfig", "EncoderBlock", "DecoderBlock",
           "TransformerConfig", "EncoderDecoderTransformer"]


class LayerNorm(nn.Module):
    """Normalise each vector to mean 0 and variance 1, then scale and shift (Ba et al., 2016).

    ``y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias``, statistics over the last
    dimension, the biased variance (as ``torch.nn.LayerNorm``).

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
        _validate.tensor(x, "x", floating=True)
        if x.dim() < 1 or x.shape[-1] != self.d:
            raise ValueError(f"expected a last dimension of {self.d}, got shape {tuple(x.shape)}")
        mean = x.mean(dim=-1, keepdim=True)  # (..., 1)
        var = x.var(dim=-1, keepdim=True, unbiased=False)  # (..., 1)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class FeedForward(nn.Module):
    """The position-wise feed-forward layer: ``Linear(d, d_ff) -> GELU -> Linear(d_ff, d)``.

    Applied to every token on its own: no information moves between positions here.

    Shape:
        x: (..., d_model) -> (..., d_model)
    """

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.up = nn.Linear(_validate.positive_int(d_model, "d_model"), _validate.positive_int(d_ff, "d_ff"))
        self.down = nn.Linear(d_ff, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(nn.functional.gelu(self.up(x)))  # (..., d_ff) inside


@dataclass
class BlockConfig:
    """Sizes of a transformer block.

    Attributes:
        d_model: the width of every token vector.
        num_heads: attention heads (must divide ``d_model``).
        d_ff: the feed-forward layer's inner width (``None``: ``4 * d_model``).
        num_kv_heads: key/value heads for grouped-query attention (``None``: ``num_heads``).
        norm_first: ``True`` for pre-LN, ``False`` for post-LN.
    """

    d_model: int
    num_heads: int
    d_ff: int | None = None
    num_kv_heads: int | None = None
    norm_first: bool = True

    def __post_init__(self) -> None:
        MultiHeadConfig(self.d_model, self.num_heads, self.num_kv_heads)  # checks the sizes
        self.d_ff = 4 * self.d_model if self.d_ff is None else _validate.positive_int(self.d_ff, "d_ff")
        if not isinstance(self.norm_first, bool):
            raise TypeError(f"expected norm_first to be a bool, got {type(self.norm_first).__name__}")


class EncoderBlock(nn.Module):
    """Self-attention + feed-forward, with residuals and LayerNorm (pre-LN or post-LN).

    Shape:
        x: (B, T, d_model); mask: bool (True = may attend), broadcastable to (B, heads, T, T)
        -> (B, T, d_model); weights (if need_weights): (B, heads, T, T)
    """

    def __init__(self, config: BlockConfig):
        super().__init__()
        if not isinstance(config, BlockConfig):
            raise TypeError(f"expected a BlockConfig, got {type(config).__name__}")
        self.config = c = config
        self.attention = MultiHeadAttention(d_model=c.d_model, num_heads=c.num_heads, num_kv_heads=c.num_kv_heads)
        self.feed_forward = FeedForward(c.d_model, c.d_ff)
        self.norm1, self.norm2 = LayerNorm(c.d_model), LayerNorm(c.d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, *, is_causal: bool = False,
                need_weights: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.config.norm_first:
            a, w = self.attention(self.norm1(x), mask=mask, is_causal=is_causal, need_weights=True)
            x = x + a  # (B, T, d_model)
            x = x + self.feed_forward(self.norm2(x))
        else:
            a, w = self.attention(x, mask=mask, is_causal=is_causal, need_weights=True)
            x = self.norm1(x + a)  # (B, T, d_model)
            x = self.norm2(x + self.feed_forward(x))
        return (x, w) if need_weights else x


class DecoderBlock(nn.Module):
    """Causal self-attention, cross-attention to the encoder's output, feed-forward.

    Shape:
        x: (B, T, d_model); memory: (B, S, d_model); memory_mask: bool, broadcastable to (B, heads, T, S)
        -> (B, T, d_model); cross-attention weights (if need_weights): (B, heads, T, S)
    """

    def __init__(self, config: BlockConfig):
        super().__init__()
        if not isinstance(config, BlockConfig):
            raise TypeError(f"expected a BlockConfig, got {type(config).__name__}")
        self.config = c = config
        self.self_attention = MultiHeadAttention(d_model=c.d_model, num_heads=c.num_heads,
                                                 num_kv_heads=c.num_kv_heads)
        self.cross_attention = MultiHeadAttention(d_model=c.d_model, num_heads=c.num_heads,
                                                  num_kv_heads=c.num_kv_heads)
        self.feed_forward = FeedForward(c.d_model, c.d_ff)
        self.norm1, self.norm2, self.norm3 = LayerNorm(c.d_model), LayerNorm(c.d_model), LayerNorm(c.d_model)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor | None = None, *,
                need_weights: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.config.norm_first:
            x = x + self.self_attention(self.norm1(x), is_causal=True)  # (B, T, d_model)
            a, w = self.cross_attention(self.norm2(x), memory, memory_mask, need_weights=True)
            x = x + a
            x = x + self.feed_forward(self.norm3(x))
        else:
            x = self.norm1(x + self.self_attention(x, is_causal=True))  # (B, T, d_model)
            a, w = self.cross_attention(x, memory, memory_mask, need_weights=True)
            x = self.norm2(x + a)
            x = self.norm3(x + self.feed_forward(x))
        return (x, w) if need_weights else x


@dataclass
class TransformerConfig:
    """Sizes of an :class:`EncoderDecoderTransformer`.

    Attributes:
        src_vocab, tgt_vocab: vocabulary sizes (id 0 is padding).
        d_model, num_heads, d_ff, num_kv_heads, norm_first: as in :class:`BlockConfig`.
        num_encoder_layers, num_decoder_layers: blocks in each stack.
        max_len: the longest source or target sequence (for the position table).
    """

    src_vocab: int
    tgt_vocab: int
    d_model: int = 64
    num_heads: int = 4
    num_encoder_layers: int = 2
    num_decoder_layers: int = 2
    d_ff: int | None = None
    num_kv_heads: int | None = None
    norm_first: bool = True
    max_len: int = 128

    def __post_init__(self) -> None:
        for name in ("src_vocab", "tgt_vocab", "num_encoder_layers", "num_decoder_layers", "max_len"):
            _validate.positive_int(getattr(self, name), name)
        block = self.block()
        self.d_ff = block.d_ff

    def block(self) -> BlockConfig:
        return BlockConfig(self.d_model, self.num_heads, self.d_ff, self.num_kv_heads, self.norm_first)


class EncoderDecoderTransformer(nn.Module):
    """The encoder-decoder transformer, with the same interface as :class:`attnbook.rnn.Seq2Seq`.

    Token embeddings (initialised N(0, 1), like the positions' scale) plus sinusoidal positions; an encoder
    stack over the source (padding masked), a decoder stack (causal self-attention and
    cross-attention to the encoder's output), and a linear read-out. ``forward`` trains
    with teacher forcing on all target positions at once; :meth:`greedy_decode` generates.

    Shape:
        src: (B, S) ids, 0-padded; src_len: (B,); tgt_in: (B, T) (``<sos>`` + target)
        -> logits: (B, T, tgt_vocab); weights (if need_weights): the last decoder block's
        cross-attention, (B, heads, T, S), zero on padding
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"expected a TransformerConfig, got {type(config).__name__}")
        self.config = c = config
        self.src_embed = nn.Embedding(c.src_vocab, c.d_model, padding_idx=0)
        self.tgt_embed = nn.Embedding(c.tgt_vocab, c.d_model, padding_idx=0)
        self.register_buffer("positions", sinusoidal_encoding(c.max_len, c.d_model), persistent=False)
        self.encoder = nn.ModuleList(EncoderBlock(c.block()) for _ in range(c.num_encoder_layers))
        self.decoder = nn.ModuleList(DecoderBlock(c.block()) for _ in range(c.num_decoder_layers))
        self.encoder_norm = LayerNorm(c.d_model) if c.norm_first else nn.Identity()
        self.decoder_norm = LayerNorm(c.d_model) if c.norm_first else nn.Identity()
        self.out = nn.Linear(c.d_model, c.tgt_vocab)

    def _embed(self, embedding: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
        T = ids.shape[1]
        if T > self.config.max_len:
            raise ValueError(f"expected sequences of at most max_len={self.config.max_len} tokens, got {T}")
        return embedding(ids) + self.positions[:T]  # (B, T, d_model); both of order 1 per coordinate

    def encode(self, src: torch.Tensor, src_len: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's output and the source padding mask.

        Shape:
            src: (B, S), src_len: (B,) -> memory: (B, S, d_model), mask: (B, 1, S) (True = real token)
        """
        _validate.tensor(src, "src", ndim=2, integer=True)
        _validate.lengths(src_len, src.shape[0], src.shape[1], "src_len")
        if src.numel() and (int(src.min()) < 0 or int(src.max()) >= self.config.src_vocab):
            raise ValueError(f"expected source ids in [0, {self.config.src_vocab}), got values from "
                             f"{int(src.min())} to {int(src.max())}")
        mask = key_padding_mask(src_len, src.shape[1])  # (B, 1, S)
        h = self._embed(self.src_embed, src)  # (B, S, d_model)
        for block in self.encoder:
            h = block(h, mask)
        return self.encoder_norm(h), mask

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor, *,
               need_weights: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits for every target position, given the encoder's output.

        Shape:
            tgt_in: (B, T); memory: (B, S, d_model); mask: (B, 1, S) -> logits: (B, T, tgt_vocab)
        """
        _validate.tensor(tgt_in, "tgt_in", ndim=2, integer=True)
        if tgt_in.shape[0] != memory.shape[0]:
            raise ValueError(f"expected tgt_in with batch size {memory.shape[0]}, got {tgt_in.shape[0]}")
        h = self._embed(self.tgt_embed, tgt_in)  # (B, T, d_model)
        w = None
        for block in self.decoder:
            h, w = block(h, memory, mask, need_weights=True)  # w: (B, heads, T, S)
        logits = self.out(self.decoder_norm(h))  # (B, T, tgt_vocab)
        return (logits, w) if need_weights else logits

    def forward(self, src: torch.Tensor, src_len: torch.Tensor, tgt_in: torch.Tensor, *,
                need_weights: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        memory, mask = self.encode(src, src_len)
        return self.decode(tgt_in, memory, mask, need_weights=need_weights)

    @torch.no_grad()
    def greedy_decode(self, src: torch.Tensor, src_len: torch.Tensor, max_len: int, *,
                      sos_id: int = 1, eos_id: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
        """Generate up to ``max_len`` tokens, each the most likely given the ones before.

        The encoder runs once; the decoder reruns on the growing prefix (short outputs
        here; see :mod:`attnbook.gpt` for a KV cache).

        Shape:
            -> ids: (B, max_len) (after ``<eos>`` the rest is padding 0);
               weights: the last decoder block's cross-attention, (B, heads, max_len, S)
        """
        _validate.positive_int(max_len, "max_len")
        memory, mask = self.encode(src, src_len)
        B = src.shape[0]
        seq = torch.full((B, 1), sos_id, dtype=torch.long, device=src.device)
        done = torch.zeros(B, dtype=torch.bool, device=src.device)
        for _ in range(max_len):
            logits = self.decode(seq, memory, mask)  # (B, t, V)
            y = logits[:, -1].argmax(-1).masked_fill(done, 0)  # (B,)
            seq = torch.cat([seq, y[:, None]], 1)
            done |= y == eos_id
            if bool(done.all()):
                break
        _, weights = self.decode(seq[:, :-1], memory, mask, need_weights=True)  # (B, heads, t, S)
        ids = seq[:, 1:]
        pad = max_len - ids.shape[1]
        if pad:
            ids = torch.cat([ids, ids.new_zeros(B, pad)], 1)
            weights = torch.cat([weights, weights.new_zeros(B, weights.shape[1], pad, weights.shape[3])], 2)
        return ids, weights
