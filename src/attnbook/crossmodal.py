"""Cross-attention between modalities: a transformer that reads a sequence of vectors and writes tokens.

The encoder does not care what its input elements are: flattened image patches
(chapter 7's :func:`~attnbook.vit.patchify`), frames of an audio signal, or any other
sequence of feature vectors. :class:`FeatureEmbedding` maps each linearly to ``d_model``
and adds learned position embeddings; the rest is the package's one encoder-decoder,
:class:`~attnbook.transformer.EncoderDecoderTransformer` (chapter 6), with that source
embedding: encoder blocks over the inputs, then decoder blocks with causal
self-attention over the tokens written so far and **cross-attention** whose queries are
the tokens and whose keys and values are the encoder's output. The cross-attention
weights say which input elements (image regions, audio frames) each written token read.
:class:`CrossModalTranscriber` is that model configured by a :class:`CrossModalConfig`.

Also here: :func:`digit_strips`, which puts several handwritten digits side by side
(the input of an image-to-text task), and :func:`attention_by_region`, which sums
attention weights over groups of input elements.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from attnbook import _validate
from attnbook.attention import ATTENTION_KINDS
from attnbook.transformer import EncoderDecoderTransformer, TransformerConfig

__all__ = ["FeatureEmbedding", "CrossModalConfig", "CrossModalTranscriber", "digit_strips", "attention_by_region"]


class FeatureEmbedding(nn.Module):
    """A sequence of feature vectors to ``d_model`` tokens: one linear map, plus learned positions.

    The source embedding of :class:`CrossModalTranscriber` (pass it as ``source_embedding=``
    to :class:`~attnbook.transformer.EncoderDecoderTransformer` for any other model).

    Shape:
        features: (B, S, input_dim), 1 <= S <= max_inputs -> (B, S, d_model)
    """

    def __init__(self, input_dim: int, max_inputs: int, d_model: int):
        super().__init__()
        self.input_dim = _validate.positive_int(input_dim, "input_dim")
        self.max_inputs = _validate.positive_int(max_inputs, "max_inputs")
        self.proj = nn.Linear(input_dim, _validate.positive_int(d_model, "d_model"))
        self.pos = nn.Parameter(0.02 * torch.randn(max_inputs, d_model))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        _validate.tensor(features, "features", ndim=3, floating=True)
        S, F = features.shape[1:]
        if F != self.input_dim:
            raise ValueError(f"expected features of width input_dim={self.input_dim}, got shape "
                             f"{tuple(features.shape)}")
        if not 1 <= S <= self.max_inputs:
            raise ValueError(f"expected between 1 and max_inputs={self.max_inputs} input elements, got {S}")
        return self.proj(features) + self.pos[:S]  # (B, S, d_model)


@dataclass
class CrossModalConfig:
    """Sizes of a :class:`CrossModalTranscriber`.

    Attributes:
        input_dim: width of each input element (e.g. pixels per patch, samples per frame).
        max_inputs: the longest input sequence (size of the input position table).
        vocab_size: output tokens (id 0 is padding).
        max_len: the longest output sequence the decoder reads, ``<sos>`` included.
        d_model, num_heads, d_ff, attention: as in :class:`~attnbook.layers.BlockConfig`.
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
    attention: str = "scratch"

    def __post_init__(self) -> None:
        for name in ("input_dim", "max_inputs", "vocab_size", "max_len", "num_encoder_layers", "num_decoder_layers"):
            _validate.positive_int(getattr(self, name), name)
        _validate.choice(self.attention, "attention", ATTENTION_KINDS)
        self.d_ff = self.transformer().d_ff  # checks the other sizes

    def transformer(self) -> TransformerConfig:
        """The :class:`~attnbook.transformer.TransformerConfig` of the model (pre-LN, no source vocabulary)."""
        return TransformerConfig(None, self.vocab_size, self.d_model, self.num_heads, self.num_encoder_layers,
                                 self.num_decoder_layers, self.d_ff, norm_first=True, max_len=self.max_len,
                                 attention=self.attention)


class CrossModalTranscriber(EncoderDecoderTransformer):
    """Encoder over feature vectors, decoder over tokens, joined by cross-attention.

    The package's :class:`~attnbook.transformer.EncoderDecoderTransformer` with a
    :class:`FeatureEmbedding` as its source embedding; everything else (``encode``,
    ``decode``, ``forward``, the one ``greedy_decode``) is the transformer's.
    ``config`` is the transformer's config; ``modal_config`` the :class:`CrossModalConfig`.

    Shape:
        src: (B, S, input_dim) features; src_len: (B,) real inputs per sequence (None: all S);
        tgt_in: (B, T) token ids (``<sos>`` + target, 0-padded)
        -> logits: (B, T, vocab_size); weights (if need_weights): the last decoder block's
        cross-attention weights (B, num_heads, T, S), zero on padded inputs
    """

    def __init__(self, config: CrossModalConfig):
        if not isinstance(config, CrossModalConfig):
            raise TypeError(f"expected a CrossModalConfig, got {type(config).__name__}")
        source = FeatureEmbedding(config.input_dim, config.max_inputs, config.d_model)
        super().__init__(config.transformer(), source_embedding=source)
        self.modal_config = config


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
