"""The encoder-decoder transformer (Vaswani et al., 2017), for every seq2seq model of the book.

The building blocks (:class:`~attnbook.layers.LayerNorm`, :class:`~attnbook.layers.FeedForward`,
:class:`~attnbook.layers.Block`) live in :mod:`attnbook.layers`; this module re-exports
them and adds the encoder-decoder. ``EncoderBlock`` is :class:`~attnbook.layers.Block`
itself; ``DecoderBlock`` is a Block with cross-attention whose ``forward`` takes
``(x, memory, memory_mask)`` and always runs causal self-attention.

**Sources of any kind.** The encoder reads ``source_embedding(src)``: by default token
ids plus sinusoidal positions (:class:`TokenEmbedding`); pass any module mapping the
raw source (image patches, audio frames, feature vectors) to (B, S, d_model), or to a
pair ``(embedded, key_padding_mask)`` with the mask (B, 1, S), True on real inputs
(or ``None``).

**One greedy decoder signature** for every seq2seq model in the book (this one,
:class:`attnbook.rnn.Seq2Seq`, and models built on this class)::

    ids, weights = model.greedy_decode(src, src_len, max_len, *, sos_id=1, eos_id=2)

``src``: the source as the model's ``forward`` takes it; ``src_len``: (B,) real
lengths, or ``None`` for sources without padding; ``max_len``: tokens to generate.
Returns ``ids`` (B, max_len) without ``<sos>``, 0 (padding) after each ``<eos>``, and
``weights``: the last decoder block's cross-attention (B, heads, max_len, S), zero on
padded source positions (and on the rows padded after every sequence finished).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from attnbook import _validate
from attnbook.layers import Block, BlockConfig, FeedForward, LayerNorm
from attnbook.masks import combine_masks, padding_mask
from attnbook.positional import sinusoidal_encoding

__all__ = ["LayerNorm", "FeedForward", "BlockConfig", "Block", "EncoderBlock", "DecoderBlock",
           "TokenEmbedding", "TransformerConfig", "EncoderDecoderTransformer"]

EncoderBlock = Block
"""Self-attention + feed-forward: the block without cross-attention, ``block(x, mask)``."""


class DecoderBlock(Block):
    """Causal self-attention, cross-attention to the encoder's output, feed-forward.

    A :class:`~attnbook.layers.Block` with ``cross_attention=True``; only the call differs.

    Shape:
        x: (B, T, d_model); memory: (B, S, d_model); memory_mask: bool, broadcastable to (B, heads, T, S)
        -> (B, T, d_model); cross-attention weights (if need_weights): (B, heads, T, S)
    """

    def __init__(self, config: BlockConfig):
        if not isinstance(config, BlockConfig):
            raise TypeError(f"expected a BlockConfig, got {type(config).__name__}")
        super().__init__(replace(config, cross_attention=True))

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor | None = None, *,
                need_weights: bool = False, **options: object):
        return super().forward(x, memory=memory, memory_mask=memory_mask, is_causal=True,
                               need_weights=need_weights, **options)


class TokenEmbedding(nn.Embedding):
    """Token ids to vectors plus sinusoidal positions; an ``nn.Embedding`` (initialised N(0, 1)).

    Shape:
        ids: (B, T) integers in [0, num_embeddings), T <= max_len -> (B, T, d_model)
    """

    def __init__(self, vocab_size: int, d_model: int, max_len: int, padding_idx: int | None = 0):
        super().__init__(_validate.positive_int(vocab_size, "vocab_size"), _validate.positive_int(d_model, "d_model"),
                         padding_idx=padding_idx)
        self.max_len = _validate.positive_int(max_len, "max_len")
        self.register_buffer("positions", sinusoidal_encoding(max_len, d_model), persistent=False)

    def forward(self, ids: torch.Tensor, name: str = "ids") -> torch.Tensor:
        _validate.tensor(ids, name, ndim=2, integer=True)
        T = ids.shape[1]
        if T > self.max_len:
            raise ValueError(f"expected sequences of at most max_len={self.max_len} tokens, got {T}")
        _validate.token_ids(ids, self.num_embeddings, name)
        return super().forward(ids) + self.positions[:T]  # (B, T, d_model); both of order 1 per coordinate


@dataclass
class TransformerConfig:
    """Sizes of an :class:`EncoderDecoderTransformer`.

    Attributes:
        src_vocab, tgt_vocab: vocabulary sizes (id 0 is padding); ``src_vocab`` may be
            ``None`` when the model gets its own ``source_embedding``.
        d_model, num_heads, d_ff, num_kv_heads, norm_first, dropout, attention: as in
            :class:`~attnbook.layers.BlockConfig`.
        num_encoder_layers, num_decoder_layers: blocks in each stack.
        max_len: the longest source or target sequence (for the position table).
    """

    src_vocab: int | None
    tgt_vocab: int
    d_model: int = 64
    num_heads: int = 4
    num_encoder_layers: int = 2
    num_decoder_layers: int = 2
    d_ff: int | None = None
    num_kv_heads: int | None = None
    norm_first: bool = True
    max_len: int = 128
    dropout: float = 0.0
    attention: str = "scratch"

    def __post_init__(self) -> None:
        for name in ("tgt_vocab", "num_encoder_layers", "num_decoder_layers", "max_len"):
            _validate.positive_int(getattr(self, name), name)
        if self.src_vocab is not None:
            _validate.positive_int(self.src_vocab, "src_vocab")
        self.d_ff = self.block().d_ff

    def block(self, cross_attention: bool = False) -> BlockConfig:
        return BlockConfig(self.d_model, self.num_heads, self.d_ff, self.num_kv_heads, self.norm_first,
                           cross_attention=cross_attention, dropout=self.dropout, attention=self.attention)


class EncoderDecoderTransformer(nn.Module):
    """The encoder-decoder transformer, with the same interface as :class:`attnbook.rnn.Seq2Seq`.

    A source embedding (token ids plus sinusoidal positions by default, or the caller's
    ``source_embedding``), an encoder stack over it (padding masked), a decoder stack
    (causal self-attention and cross-attention to the encoder's output) over target
    tokens plus sinusoidal positions, and a linear read-out. ``forward`` trains with
    teacher forcing on all target positions at once; :meth:`greedy_decode` generates.

    Args:
        config: a :class:`TransformerConfig`.
        source_embedding: module mapping ``src`` to (B, S, d_model) or to
            ``(embedded, mask)`` with a (B, 1, S) key-padding mask or ``None``
            (default: :class:`TokenEmbedding` of ``src_vocab`` ids).

    Shape:
        src: (B, S) ids, 0-padded (or what ``source_embedding`` takes); src_len: (B,) or None;
        tgt_in: (B, T) (``<sos>`` + target)
        -> logits: (B, T, tgt_vocab); weights (if need_weights): the last decoder block's
        cross-attention, (B, heads, T, S), zero on padding
    """

    def __init__(self, config: TransformerConfig, *, source_embedding: nn.Module | None = None):
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"expected a TransformerConfig, got {type(config).__name__}")
        if source_embedding is None and config.src_vocab is None:
            raise ValueError("expected a source_embedding module when src_vocab is None, got neither")
        if source_embedding is not None and not isinstance(source_embedding, nn.Module):
            raise TypeError(f"expected source_embedding to be an nn.Module, got {type(source_embedding).__name__}")
        self.config = c = config
        self.src_embed = TokenEmbedding(c.src_vocab, c.d_model, c.max_len) if source_embedding is None \
            else source_embedding
        self.tgt_embed = TokenEmbedding(c.tgt_vocab, c.d_model, c.max_len)
        self.encoder = nn.ModuleList(Block(c.block()) for _ in range(c.num_encoder_layers))
        self.decoder = nn.ModuleList(Block(c.block(cross_attention=True)) for _ in range(c.num_decoder_layers))
        self.encoder_norm = LayerNorm(c.d_model) if c.norm_first else nn.Identity()
        self.decoder_norm = LayerNorm(c.d_model) if c.norm_first else nn.Identity()
        self.out = nn.Linear(c.d_model, c.tgt_vocab)

    def encode(self, src: torch.Tensor, src_len: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The encoder's output and the source padding mask.

        Shape:
            src: (B, S) (or the source embedding's input), src_len: (B,) or None
            -> memory: (B, S, d_model), mask: (B, 1, S) (True = real token) or None
        """
        h = self.src_embed(src, "src") if isinstance(self.src_embed, TokenEmbedding) else self.src_embed(src)
        mask = None
        if isinstance(h, tuple):
            h, mask = h
        _validate.tensor(h, "the embedded source", ndim=3, floating=True)
        if h.shape[-1] != self.config.d_model:
            raise ValueError(f"expected the source embedding to give width d_model={self.config.d_model}, "
                             f"got shape {tuple(h.shape)}")
        if src_len is not None:
            _validate.lengths(src_len, h.shape[0], h.shape[1], "src_len")
            mask = combine_masks(mask, padding_mask(src_len, h.shape[1]))  # (B, 1, S)
        for block in self.encoder:
            h = block(h, mask)  # (B, S, d_model)
        return self.encoder_norm(h), mask

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor | None = None, *,
               need_weights: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits for every target position, given the encoder's output.

        Shape:
            tgt_in: (B, T); memory: (B, S, d_model); mask: (B, 1, S) or None -> logits: (B, T, tgt_vocab)
        """
        _validate.tensor(tgt_in, "tgt_in", ndim=2, integer=True)
        _validate.tensor(memory, "memory", ndim=3, floating=True)
        if tgt_in.shape[0] != memory.shape[0]:
            raise ValueError(f"expected tgt_in with batch size {memory.shape[0]}, got {tgt_in.shape[0]}")
        h = self.tgt_embed(tgt_in, "tgt_in")  # (B, T, d_model)
        w = None
        last = len(self.decoder) - 1
        for i, block in enumerate(self.decoder):
            wants = need_weights and i == last
            h = block(h, memory=memory, memory_mask=mask, is_causal=True, need_weights=wants)
            if wants:
                h, w = h  # w: (B, heads, T, S)
        logits = self.out(self.decoder_norm(h))  # (B, T, tgt_vocab)
        return (logits, w) if need_weights else logits

    def forward(self, src: torch.Tensor, src_len: torch.Tensor | None, tgt_in: torch.Tensor, *,
                need_weights: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        memory, mask = self.encode(src, src_len)
        return self.decode(tgt_in, memory, mask, need_weights=need_weights)

    @torch.no_grad()
    def greedy_decode(self, src: torch.Tensor, src_len: torch.Tensor | None, max_len: int, *,
                      sos_id: int = 1, eos_id: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
        """Generate up to ``max_len`` tokens, each the most likely given the ones before.

        The book's one greedy-decoding signature (see the module docstring). The encoder
        runs once; the decoder reruns on the growing prefix (short outputs here; see
        :mod:`attnbook.gpt` for a KV cache).

        Shape:
            -> ids: (B, max_len) (after ``<eos>`` the rest is padding 0);
               weights: the last decoder block's cross-attention, (B, heads, max_len, S)
        """
        _validate.positive_int(max_len, "max_len")
        for name, value in (("sos_id", sos_id), ("eos_id", eos_id)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < self.config.tgt_vocab:
                raise ValueError(f"expected {name} in [0, {self.config.tgt_vocab}), got {value!r}")
        if max_len > self.config.max_len:
            raise ValueError(f"expected max_len <= the model's max_len={self.config.max_len}, got {max_len}")
        memory, mask = self.encode(src, src_len)
        B = memory.shape[0]
        seq = torch.full((B, 1), sos_id, dtype=torch.long, device=memory.device)
        done = torch.zeros(B, dtype=torch.bool, device=memory.device)
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
