"""Text to image through cross-attention: a model that draws an image patch by patch from a prompt.

The image is a sequence of patches (chapter 7's :func:`~attnbook.vit.patchify`), written
in raster order like the words of a sentence. Each patch position is a **query**: chapter
6's decoder block first lets it read the patches drawn so far (causal self-attention),
then read the prompt through **cross-attention**, whose keys and values are the prompt's
word embeddings (with their positions), then a feed-forward layer; a linear read-out
predicts the next patch's pixels. This is the direction text-to-image models use
(Rombach et al., 2022): image features ask, words answer. The weights of that
cross-attention say which word each image region reads, and editing them edits the
image (Prompt-to-Prompt, Hertz et al., 2022): :class:`PatchGenerator` accepts an
``edit`` function that may rewrite the cross-attention weights before they mix the values.

Also here: :func:`unpatchify`, the inverse of :func:`~attnbook.vit.patchify`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from attnbook import _validate
from attnbook.multihead import merge_heads, split_heads
from attnbook.transformer import BlockConfig, DecoderBlock, LayerNorm

__all__ = ["PatchGeneratorConfig", "PatchGenerator", "unpatchify"]

Edit = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class PatchGeneratorConfig:
    """Sizes of a :class:`PatchGenerator`.

    Attributes:
        patch_dim: numbers per patch (channels x pixels).
        num_patches: patches per image, in raster order.
        vocab_size: prompt tokens (id 0 is padding).
        max_words: the longest prompt.
        d_model, num_heads, d_ff: as in :class:`~attnbook.transformer.BlockConfig`.
        num_layers: decoder blocks.
    """

    patch_dim: int
    num_patches: int
    vocab_size: int
    max_words: int
    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 2
    d_ff: int | None = None

    def __post_init__(self) -> None:
        for name in ("patch_dim", "num_patches", "vocab_size", "max_words", "num_layers"):
            _validate.positive_int(getattr(self, name), name)
        self.d_ff = self.block().d_ff

    def block(self) -> BlockConfig:
        return BlockConfig(self.d_model, self.num_heads, self.d_ff, norm_first=True)


class PatchGenerator(nn.Module):
    """Draws images patch by patch; every patch's query reads the prompt through cross-attention.

    ``forward`` is teacher-forced: the input at patch ``t`` is the true patch ``t - 1``
    (a learned start vector for ``t = 0``) and the output predicts patch ``t``.
    :meth:`generate` feeds its own predictions back instead.

    Shape:
        prompt: (B, W) token ids; patches: (B, S, patch_dim)
        -> predicted patches (B, S, patch_dim); cross-attention weights (if need_weights):
        (B, layers, heads, S, W)
    """

    def __init__(self, config: PatchGeneratorConfig):
        super().__init__()
        if not isinstance(config, PatchGeneratorConfig):
            raise TypeError(f"expected a PatchGeneratorConfig, got {type(config).__name__}")
        self.config = c = config
        self.word_embedding = nn.Embedding(c.vocab_size, c.d_model)
        # positions as large as the words: a patch finds its word by where it stands in the prompt
        self.word_pos = nn.Parameter(torch.randn(c.max_words, c.d_model))
        self.patch_in = nn.Linear(c.patch_dim, c.d_model)
        self.patch_pos = nn.Parameter(torch.randn(c.num_patches, c.d_model))
        self.start = nn.Parameter(torch.zeros(c.d_model))
        self.blocks = nn.ModuleList(DecoderBlock(c.block()) for _ in range(c.num_layers))
        self.norm = LayerNorm(c.d_model)
        self.out = nn.Linear(c.d_model, c.patch_dim)

    def encode_prompt(self, prompt: torch.Tensor) -> torch.Tensor:
        """The keys' and values' source: word embeddings plus word positions, (B, W, d_model)."""
        c = self.config
        _validate.tensor(prompt, "prompt", ndim=2, integer=True)
        if not 1 <= prompt.shape[1] <= c.max_words:
            raise ValueError(f"expected prompts of 1 to max_words={c.max_words} words, got shape "
                             f"{tuple(prompt.shape)}")
        if int(prompt.min()) < 0 or int(prompt.max()) >= c.vocab_size:
            raise ValueError(f"expected word ids in [0, {c.vocab_size}), got values from {int(prompt.min())} "
                             f"to {int(prompt.max())}")
        return self.word_embedding(prompt) + self.word_pos[:prompt.shape[1]]

    @staticmethod
    def cross_attention(block: DecoderBlock, x: torch.Tensor, words: torch.Tensor, edit: Edit | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """A decoder block's cross-attention written out, with an optional edit of its weights.

        ``softmax(Q K^T / sqrt(d_h))`` with queries from the patches ``x`` (normalised as in
        the block) and keys from the words; ``edit`` may replace the weights (B, heads, S, W)
        before they average the values. Without ``edit`` it equals the block's own layer.

        Shape:
            x: (B, S, d_model); words: (B, W, d_model) -> (B, S, d_model), weights (B, heads, S, W)
        """
        attn = block.cross_attention
        q = split_heads(attn.w_q(block.norm2(x)), attn.num_heads)  # (B, nh, S, hs)
        k, v = attn.project_kv(words)  # (B, nh, W, hs) each
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)  # (B, nh, S, W)
        if edit is not None:
            edited = edit(weights)
            if not isinstance(edited, torch.Tensor) or edited.shape != weights.shape:
                raise ValueError(f"expected edit to return weights of shape {tuple(weights.shape)}, got "
                                 f"{getattr(edited, 'shape', type(edited).__name__)}")
            weights = edited
        return attn.w_o(merge_heads(weights @ v)), weights

    def _run(self, words: torch.Tensor, inputs: torch.Tensor, edit: Edit | None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        # words: (B, W, d_model) from encode_prompt; inputs: (B, T, patch_dim), patch t - 1 at position t
        if inputs.shape[0] != words.shape[0]:
            raise ValueError(f"expected as many prompts as images, got {words.shape[0]} and "
                             f"{inputs.shape[0]}")
        T = inputs.shape[1]
        start = self.start.expand(inputs.shape[0], 1, -1)  # (B, 1, d_model)
        x = torch.cat([start, self.patch_in(inputs[:, :T - 1])], 1) + self.patch_pos[:T]  # (B, T, d_model)
        weights = []
        for block in self.blocks:  # the pre-LN decoder block, cross-attention spelled out
            x = x + block.self_attention(block.norm1(x), is_causal=True)
            a, w = self.cross_attention(block, x, words, edit)
            x = x + a
            x = x + block.feed_forward(block.norm3(x))
            weights.append(w)
        return self.out(self.norm(x)), torch.stack(weights, 1)  # (B, T, patch_dim), (B, layers, nh, T, W)

    def forward(self, prompt: torch.Tensor, patches: torch.Tensor, *, need_weights: bool = False,
                edit: Edit | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        _validate.tensor(patches, "patches", ndim=3, floating=True)
        if patches.shape[1:] != (c.num_patches, c.patch_dim):
            raise ValueError(f"expected patches of shape (B, {c.num_patches}, {c.patch_dim}), got "
                             f"{tuple(patches.shape)}")
        out, weights = self._run(self.encode_prompt(prompt), patches, edit)
        return (out, weights) if need_weights else out

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, *, edit: Edit | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw the patches one at a time, each predicted from the prompt and the patches before it.

        Shape:
            prompt: (B, W) -> patches (B, S, patch_dim); cross-attention weights of the last pass
            (B, layers, heads, S, W)
        """
        c = self.config
        words = self.encode_prompt(prompt)  # checked and embedded once: no host-device sync in the loop
        drawn = torch.zeros(prompt.shape[0], c.num_patches, c.patch_dim, device=prompt.device)
        for t in range(c.num_patches):
            out, weights = self._run(words, drawn[:, :t + 1], edit)  # inputs: patches 0..t-1 (and a dummy)
            drawn[:, t] = out[:, t]
        return drawn, weights


def unpatchify(patches: torch.Tensor, patch_size: int, height: int, width: int,
               channels: int = 1) -> torch.Tensor:
    """Put patches back into images: the inverse of :func:`~attnbook.vit.patchify`.

    Shape:
        patches: (B, (H / p) * (W / p), C * p * p) -> (B, C, H, W)
    """
    p = _validate.positive_int(patch_size, "patch_size")
    H, W, C = (_validate.positive_int(v, n) for v, n in ((height, "height"), (width, "width"),
                                                          (channels, "channels")))
    _validate.tensor(patches, "patches", ndim=3)
    if H % p or W % p:
        raise ValueError(f"expected height and width divisible by patch_size={p}, got {H} x {W}")
    rows, cols = H // p, W // p
    if patches.shape[1:] != (rows * cols, C * p * p):
        raise ValueError(f"expected patches of shape (B, {rows * cols}, {C * p * p}) for {C} x {H} x {W} "
                         f"images, "
                         f"got {tuple(patches.shape)}")
    x = patches.reshape(-1, rows, cols, C, p, p).permute(0, 3, 1, 4, 2, 5)  # (B, C, rows, p, cols, p)
    return x.reshape(-1, C, H, W)
