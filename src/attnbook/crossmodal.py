"""Cross-attention between modalities: a transformer that reads a sequence of vectors and writes tokens.

The encoder does not care what its input elements are: flattened image patches
(chapter 7's :func:`~attnbook.vit.patchify`), frames of an audio signal, or any other
sequence of feature vectors. Each is mapped linearly to ``d_model``, learned position
embeddings are added, and chapter 6's encoder blocks process them. The decoder is
chapter 6's: causal self-attention over the tokens written so far, then
**cross-attention** whose queries are the tokens and whose keys and values are the
encoder's output, then a feed-forward layer. The cross-attention weights say which
input elements (image regions, audio frames) each written token read.

Also here: :func:`digit_strips`, which puts several handwritten digits side by side
(the input of an image-to-text task), and :func:`attention_by_region`, which sums
attention weights over groups of input elements.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from attnbook import _validate
from attnbook.masks import padding_mask as key_padding_mask
from attnbook.transformer import BlockConfig, DecoderBlock, EncoderBlock, LayerNorm

__all__ = ["CrossModalConfig", "CrossModalTranscriber", "digit_strips", "attention_by_region"]


@dataclass
class CrossModalConfig:
    """Sizes of a :class:`CrossModalTranscriber`.

    Attributes:
        input_dim: width of each input element (e.g. pixels per patch, samples per frame).
        max_inputs: the longest input sequence (size of the input position table).
        vocab_size: output tokens (id 0 is padding).
        max_len: the longest output sequence the decoder reads, ``<sos>`` included.
        d_model, num_heads, d_ff: as in :class:`~attnbook.transformer.BlockConfig`.
        num_encoder_layers, num_decoder_layers: blocks in each stack.
    """

    input_dim: int
    max_inputs: int
    vocab_size: int
    max_len: int
    d_model: int = 64
    num_heads: int = 4
    num_encoder_layers: int = 1
    num_decoder_layers: int = 1
    d_ff: int | None = None

    def __post_init__(self) -> None:
        for name in ("input_dim", "max_inputs", "vocab_size", "max_len", "num_encoder_layers", "num_decoder_layers"):
            _validate.positive_int(getattr(self, name), name)
        self.d_ff = self.block().d_ff

    def block(self) -> BlockConfig:
        return BlockConfig(self.d_model, self.num_heads, self.d_ff, norm_first=True)


class CrossModalTranscriber(nn.Module):
    """Encoder over feature vectors, decoder over tokens, joined by cross-attention.

    Shape:
        features: (B, S, input_dim); lengths: (B,) real inputs per sequence (None: all S);
        tgt_in: (B, T) token ids (``<sos>`` + target, 0-padded)
        -> logits: (B, T, vocab_size); weights (if need_weights): a list, one per decoder
        block, of cross-attention weights (B, num_heads, T, S), zero on padded inputs
    """

    def __init__(self, config: CrossModalConfig):
        super().__init__()
        if not isinstance(config, CrossModalConfig):
            raise TypeError(f"expected a CrossModalConfig, got {type(config).__name__}")
        self.config = c = config
        self.input_proj = nn.Linear(c.input_dim, c.d_model)
        self.input_pos = nn.Parameter(0.02 * torch.randn(c.max_inputs, c.d_model))
        self.token_embedding = nn.Embedding(c.vocab_size, c.d_model)
        self.token_pos = nn.Parameter(0.02 * torch.randn(c.max_len, c.d_model))
        self.encoder = nn.ModuleList(EncoderBlock(c.block()) for _ in range(c.num_encoder_layers))
        self.decoder = nn.ModuleList(DecoderBlock(c.block()) for _ in range(c.num_decoder_layers))
        self.encoder_norm, self.decoder_norm = LayerNorm(c.d_model), LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.vocab_size)

    def encode(self, features: torch.Tensor, lengths: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The encoder's output (the keys and values of cross-attention) and its padding mask.

        Shape:
            features: (B, S, input_dim); lengths: (B,) or None
            -> memory: (B, S, d_model); mask: (B, 1, S) bool, True on real inputs (None without lengths)
        """
        c = self.config
        _validate.tensor(features, "features", ndim=3, floating=True)
        B, S, F = features.shape
        if F != c.input_dim:
            raise ValueError(f"expected features of width input_dim={c.input_dim}, got shape {tuple(features.shape)}")
        if not 1 <= S <= c.max_inputs:
            raise ValueError(f"expected between 1 and max_inputs={c.max_inputs} input elements, got {S}")
        mask = None
        if lengths is not None:
            _validate.lengths(lengths, B, S)
            mask = key_padding_mask(lengths, S)  # (B, 1, S)
        x = self.input_proj(features) + self.input_pos[:S]  # (B, S, d_model)
        for block in self.encoder:
            x = block(x, mask)  # (B, S, d_model)
        return self.encoder_norm(x), mask

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor | None = None, *,
               need_weights: bool = False) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits for every target position, given the encoder's output (the argument order of
        :meth:`attnbook.transformer.EncoderDecoderTransformer.decode`).

        Shape:
            tgt_in: (B, T); memory: (B, S, d_model); mask: (B, 1, S) or None
            -> logits (B, T, vocab_size) (and the cross-attention weights, (B, heads, T, S) per block)
        """
        c = self.config
        if isinstance(tgt_in, torch.Tensor) and tgt_in.is_floating_point() and isinstance(memory, torch.Tensor) \
                and not memory.is_floating_point():
            raise TypeError("expected decode(tgt_in, memory, mask): token ids first, then the encoder's output "
                            f"(got a float tensor {tuple(tgt_in.shape)} first, an integer one {tuple(memory.shape)} "
                            "second; the order was changed to match EncoderDecoderTransformer.decode)")
        _validate.tensor(tgt_in, "tgt_in", ndim=2, integer=True)
        _validate.tensor(memory, "memory", ndim=3, floating=True)
        T = tgt_in.shape[1]
        if not 1 <= T <= c.max_len:
            raise ValueError(f"expected between 1 and max_len={c.max_len} target tokens, got {T}")
        if int(tgt_in.min()) < 0 or int(tgt_in.max()) >= c.vocab_size:
            raise ValueError(f"expected token ids in [0, {c.vocab_size}), got values from {int(tgt_in.min())} "
                             f"to {int(tgt_in.max())}")
        if tgt_in.shape[0] != memory.shape[0] or memory.shape[-1] != c.d_model:
            raise ValueError(f"expected memory of shape ({tgt_in.shape[0]}, S, {c.d_model}) for tgt_in of shape "
                             f"{tuple(tgt_in.shape)}, got {tuple(memory.shape)}")
        y = self.token_embedding(tgt_in) + self.token_pos[:T]  # (B, T, d_model)
        weights = []
        for block in self.decoder:
            y, w = block(y, memory, mask, need_weights=True)  # (B, T, d_model), (B, heads, T, S)
            weights.append(w)
        logits = self.head(self.decoder_norm(y))  # (B, T, vocab_size)
        return (logits, weights) if need_weights else logits

    def forward(self, features: torch.Tensor, tgt_in: torch.Tensor, lengths: torch.Tensor | None = None, *,
                need_weights: bool = False) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        memory, mask = self.encode(features, lengths)
        return self.decode(tgt_in, memory, mask, need_weights=need_weights)

    @torch.no_grad()
    def greedy_decode(self, src: torch.Tensor, src_len: torch.Tensor | None = None, max_len: int | None = None, *,
                      sos_id: int = 1, eos_id: int = 2, max_new_tokens: int | None = None,
                      lengths: torch.Tensor | None = None, need_weights: bool | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor] | torch.Tensor:
        """Write up to ``max_len`` tokens, each the most likely next one: the package's one greedy decoder
        signature, ``greedy_decode(src, src_len, max_len, *, sos_id=1, eos_id=2) -> (ids, weights)``.

        ``src`` are the input feature vectors and ``src_len`` how many are real (``None``: all).
        Tokens after a sequence's ``<eos>`` are 0 (padding). The weights are the last decoder
        block's cross-attention. No host-device synchronisation inside the loop.

        The spelling of chapter 10's first edition still works: ``max_new_tokens=`` for
        ``max_len``, ``lengths=`` for ``src_len``, and ``need_weights=False`` to get the ids alone.

        Shape:
            src: (B, S, input_dim); src_len: (B,) or None
            -> ids (B, max_len) (without ``<sos>``); weights (B, heads, max_len, S)
        """
        c = self.config
        if max_new_tokens is not None:
            if max_len is not None:
                raise TypeError("expected max_len or its old name max_new_tokens, got both")
            max_len = max_new_tokens
        if lengths is not None:
            if src_len is not None:
                raise TypeError("expected src_len or its old name lengths, got both")
            src_len = lengths
        if max_len is None:
            raise TypeError("expected max_len, the number of tokens to write, got none")
        _validate.positive_int(max_len, "max_len")
        if max_len > c.max_len:
            raise ValueError(f"expected max_len <= config.max_len={c.max_len} (the decoder reads <sos> and "
                             f"max_len - 1 tokens), got {max_len}")
        for name, value in (("sos_id", sos_id), ("eos_id", eos_id)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < c.vocab_size:
                raise ValueError(f"expected {name} in [0, {c.vocab_size}), got {value!r}")
        if need_weights is not None and not isinstance(need_weights, bool):
            raise TypeError(f"expected need_weights to be a bool, got {type(need_weights).__name__}")
        memory, mask = self.encode(src, src_len)
        out = torch.full((src.shape[0], 1), sos_id, dtype=torch.long, device=src.device)  # (B, 1)
        for _ in range(max_len):
            logits = self.decode(out, memory, mask)  # (B, t, V)
            out = torch.cat([out, logits[:, -1].argmax(-1, keepdim=True)], dim=1)  # (B, t + 1)
        ids = out[:, 1:]  # (B, max_len)
        is_eos = (ids == eos_id).long()
        ids = ids.masked_fill(is_eos.cumsum(1) - is_eos > 0, 0)  # padding after the first <eos>
        if need_weights is False:
            return ids
        _, weights = self.decode(out[:, :-1], memory, mask, need_weights=True)
        return ids, weights[-1]


def digit_strips(images: torch.Tensor, labels: torch.Tensor, count: int, digits: int, *,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random strips of ``digits`` handwritten digits side by side, and their labels left to right.

    Shape:
        images: (N, 1, H, W); labels: (N,) -> strips (count, 1, H, digits * W); strip labels (count, digits)
    """
    _validate.tensor(images, "images", ndim=4, floating=True)
    _validate.tensor(labels, "labels", ndim=1, integer=True)
    _validate.positive_int(count, "count")
    _validate.positive_int(digits, "digits")
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"expected one label per image, got {labels.shape[0]} labels for {images.shape[0]} images")
    pick = torch.randint(0, images.shape[0], (count, digits), generator=generator).to(images.device)  # (count, k)
    chosen = images[pick]  # (count, k, 1, H, W)
    strips = torch.cat(chosen.unbind(1), dim=-1)  # (count, 1, H, k * W)
    return strips, labels[pick]


def attention_by_region(weights: torch.Tensor, regions: torch.Tensor, num_regions: int | None = None) -> torch.Tensor:
    """Sum attention weights over groups of input elements (e.g. the patches of one digit).

    Shape:
        weights: (..., S); regions: (S,) region index of every input element, in [0, R)
        -> (..., R)
    """
    _validate.tensor(weights, "weights", floating=True)
    _validate.tensor(regions, "regions", ndim=1, integer=True)
    if weights.dim() < 1 or weights.shape[-1] != regions.shape[0]:
        raise ValueError(f"expected one region index per input element ({weights.shape[-1] if weights.dim() else 0}), "
                         f"got {regions.shape[0]}")
    if regions.numel() and int(regions.min()) < 0:
        raise ValueError(f"expected region indices >= 0, got {int(regions.min())}")
    R = int(regions.max()) + 1 if num_regions is None else _validate.positive_int(num_regions, "num_regions")
    if regions.numel() and int(regions.max()) >= R:
        raise ValueError(f"expected region indices below num_regions={R}, got {int(regions.max())}")
    one_hot = nn.functional.one_hot(regions.to(weights.device), R).to(weights.dtype)  # (S, R)
    return weights @ one_hot  # (..., R)
