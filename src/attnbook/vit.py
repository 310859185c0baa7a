"""The Vision Transformer (Dosovitskiy et al., 2020); attention rollout (Abnar & Zuidema, 2020) re-exported.

An image is cut into square patches; each patch is flattened and mapped by one linear
layer to a token vector. A learned class token is put in front, learned position
embeddings are added, and the package's one pre-LN block (:class:`attnbook.layers.Block`,
chapter 6's encoder block) processes the sequence. The class token's final vector, after a
LayerNorm, is read out by a linear classifier.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from attnbook import _validate
from attnbook.attribution import attention_rollout  # re-exported: chapter 7 reads it from here
from attnbook.layers import Block, BlockConfig, LayerNorm

__all__ = ["patchify", "PatchEmbedding", "ViTConfig", "ViT", "attention_rollout"]


def _check_images(images: torch.Tensor, channels: int, patch_size: int) -> None:
    _validate.tensor(images, "images", ndim=4, floating=True)
    B, C, H, W = images.shape
    if C != channels:
        raise ValueError(f"expected images with {channels} channel(s), got {C} (shape {tuple(images.shape)})")
    if H % patch_size or W % patch_size:
        raise ValueError(f"expected a height and width divisible by the patch size {patch_size}, "
                         f"got {H}x{W}")


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut images into non-overlapping square patches, row by row, each flattened as (C, p, p).

    Shape:
        images: (B, C, H, W) with H and W divisible by ``patch_size``
        -> (B, (H / p) * (W / p), C * p * p)
    """
    _validate.positive_int(patch_size, "patch_size")
    _validate.tensor(images, "images", ndim=4, floating=True)
    _check_images(images, images.shape[1], patch_size)
    B, C, H, W = images.shape
    p = patch_size
    x = images.reshape(B, C, H // p, p, W // p, p)  # (B, C, rows, p, cols, p)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, rows, cols, C, p, p)
    return x.reshape(B, (H // p) * (W // p), C * p * p)


class PatchEmbedding(nn.Module):
    """Flatten each patch and map it linearly to a ``d_model`` vector.

    Equivalent to ``nn.Conv2d(C, d_model, kernel_size=p, stride=p)`` with the same weights
    (see :meth:`as_conv`).

    Shape:
        images: (B, C, H, W) -> (B, (H / p) * (W / p), d_model)
    """

    def __init__(self, patch_size: int, d_model: int, channels: int = 1):
        super().__init__()
        self.patch_size = _validate.positive_int(patch_size, "patch_size")
        self.channels = _validate.positive_int(channels, "channels")
        self.d_model = _validate.positive_int(d_model, "d_model")
        self.proj = nn.Linear(channels * patch_size * patch_size, d_model)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _check_images(images, self.channels, self.patch_size)
        return self.proj(patchify(images, self.patch_size))

    def as_conv(self) -> nn.Conv2d:
        """A strided convolution that computes the same embedding (a copy of the weights)."""
        p, C = self.patch_size, self.channels
        conv = nn.Conv2d(C, self.d_model, kernel_size=p, stride=p)
        with torch.no_grad():
            conv.weight.copy_(self.proj.weight.reshape(self.d_model, C, p, p))
            conv.bias.copy_(self.proj.bias)
        return conv.to(self.proj.weight.device)


@dataclass
class ViTConfig:
    """Sizes of a :class:`ViT`.

    Attributes:
        image_size: height and width of the (square) input images.
        patch_size: side of each square patch (must divide ``image_size``).
        channels: input channels (1 for grey-scale).
        num_classes: classes to predict.
        d_model, num_heads, num_layers, d_ff: the encoder's sizes (``d_ff=None``: ``4 * d_model``).
        dropout: dropout on the embedded tokens (0 turns it off).
        attention: ``"scratch"`` (the book's attention, default) or ``"fused"`` (PyTorch's
            kernel, for speed); asking for the weights always takes the scratch path.
    """

    image_size: int = 28
    patch_size: int = 7
    channels: int = 1
    num_classes: int = 10
    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 4
    d_ff: int | None = None
    dropout: float = 0.0
    attention: str = "scratch"

    def __post_init__(self) -> None:
        for name in ("image_size", "patch_size", "channels", "num_classes", "num_layers"):
            _validate.positive_int(getattr(self, name), name)
        if self.image_size % self.patch_size:
            raise ValueError(f"expected an image_size divisible by patch_size={self.patch_size}, "
                             f"got {self.image_size}")
        _validate.probability(self.dropout, "dropout")
        self.d_ff = self.block().d_ff

    def block(self) -> BlockConfig:
        return BlockConfig(self.d_model, self.num_heads, self.d_ff, norm_first=True, attention=self.attention)

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


class ViT(nn.Module):
    """A Vision Transformer classifier: patches -> tokens -> pre-LN encoder -> class token -> logits.

    Shape:
        images: (B, channels, image_size, image_size)
        -> logits (B, num_classes); with ``need_weights=True`` also a list of
        ``num_layers`` attention tensors, each (B, num_heads, 1 + N, 1 + N), token 0 the class token.
    """

    def __init__(self, config: ViTConfig):
        super().__init__()
        if not isinstance(config, ViTConfig):
            raise TypeError(f"expected a ViTConfig, got {type(config).__name__}")
        self.config = c = config
        self.patch_embed = PatchEmbedding(c.patch_size, c.d_model, c.channels)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.d_model))
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, 1 + c.num_patches, c.d_model))
        self.dropout = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c.block()) for _ in range(c.num_layers))
        self.norm = LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.num_classes)

    def forward(self, images: torch.Tensor, *, need_weights: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        c = self.config
        _check_images(images, c.channels, c.patch_size)
        if images.shape[-2:] != (c.image_size, c.image_size):
            raise ValueError(f"expected {c.image_size}x{c.image_size} images, got "
                             f"{images.shape[-2]}x{images.shape[-1]}")
        x = self.patch_embed(images)  # (B, N, d)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed  # (B, 1 + N, d)
        x = self.dropout(x)
        if not isinstance(need_weights, bool):
            raise TypeError(f"expected need_weights to be a bool, got {type(need_weights).__name__}")
        weights = []
        for block in self.blocks:
            if need_weights:
                x, w = block(x, need_weights=True)  # w: (B, heads, 1 + N, 1 + N)
                weights.append(w)
            else:
                x = block(x)  # (B, 1 + N, d)
        logits = self.head(self.norm(x[:, 0]))  # (B, num_classes)
        return (logits, weights) if need_weights else logits
