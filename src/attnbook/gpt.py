"""A decoder-only, GPT-style language model with KV-cache generation (Radford et al., 2019).

Token and learned position embeddings, a stack of pre-LN blocks with causal
multi-head (or grouped-query) self-attention, a final LayerNorm and a read-out to the
vocabulary. Each position predicts the next token.

Generation appends one token at a time. Without a cache, every step reruns the model
on the whole prefix; with a **KV cache**, every block keeps the keys and values of the
tokens seen so far, so a step only computes the new token's query, key and value and
attends to the cache. Both give the same logits (up to float rounding) and so the same
tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from attnbook import _validate
from attnbook.multihead import MultiHeadAttention, MultiHeadConfig
from attnbook.transformer import FeedForward, LayerNorm

__all__ = ["GPTConfig", "GPTBlock", "GPT", "KVCache"]

KVCache = list[tuple[torch.Tensor, torch.Tensor]]
"""One ``(keys, values)`` pair per block, each of shape (B, num_kv_heads, T_past, head_dim)."""


@dataclass
class GPTConfig:
    """Sizes of a :class:`GPT`.

    Attributes:
        vocab_size: number of tokens.
        block_size: the context: the most tokens the model can see.
        d_model, num_heads, num_layers: width, heads per block and blocks.
        num_kv_heads: key/value heads (``None``: ``num_heads``; fewer: grouped-query).
        d_ff: the feed-forward inner width (``None``: ``4 * d_model``).
    """

    vocab_size: int
    block_size: int
    d_model: int = 128
    num_heads: int = 4
    num_layers: int = 4
    num_kv_heads: int | None = None
    d_ff: int | None = None

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "num_layers"):
            _validate.positive_int(getattr(self, name), name)
        MultiHeadConfig(self.d_model, self.num_heads, self.num_kv_heads)  # checks the sizes
        self.d_ff = 4 * self.d_model if self.d_ff is None else _validate.positive_int(self.d_ff, "d_ff")


class GPTBlock(nn.Module):
    """Pre-LN block: ``x + CausalAttn(LN(x))``, then ``x + FF(LN(x))``, with an optional KV cache.

    Shape:
        x: (B, T, d_model); past: keys, values (B, num_kv_heads, T_past, head_dim) or None
        -> x: (B, T, d_model); present: keys, values (B, num_kv_heads, T_past + T, head_dim)
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        c = config
        self.norm1, self.norm2 = LayerNorm(c.d_model), LayerNorm(c.d_model)
        self.attention = MultiHeadAttention(d_model=c.d_model, num_heads=c.num_heads, num_kv_heads=c.num_kv_heads)
        self.feed_forward = FeedForward(c.d_model, c.d_ff)

    def forward(self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        h = self.norm1(x)
        k, v = self.attention.project_kv(h)  # (B, nkv, T, hs) each
        if past is not None:
            k = torch.cat([past[0], k], dim=2)  # (B, nkv, T_past + T, hs)
            v = torch.cat([past[1], v], dim=2)
        a, _ = self.attention.attend(h, k, v, is_causal=True)  # new queries see the past and themselves
        x = x + a  # (B, T, d_model)
        x = x + self.feed_forward(self.norm2(x))
        return x, (k, v)


class GPT(nn.Module):
    """Decoder-only transformer language model.

    Shape:
        ids: (B, T) token ids, T_past + T <= block_size -> logits: (B, T, vocab_size)
        (and, with ``use_cache=True``, the updated :data:`KVCache`)
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"expected a GPTConfig, got {type(config).__name__}")
        self.config = c = config
        self.token_embedding = nn.Embedding(c.vocab_size, c.d_model)
        self.position_embedding = nn.Embedding(c.block_size, c.d_model)
        self.blocks = nn.ModuleList(GPTBlock(c) for _ in range(c.num_layers))
        self.final_norm = LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, ids: torch.Tensor, *, past: KVCache | None = None, use_cache: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, KVCache]:
        _validate.tensor(ids, "ids", ndim=2, integer=True)
        B, T = ids.shape
        if T < 1:
            raise ValueError(f"expected at least one token, got shape {tuple(ids.shape)}")
        T_past = 0 if past is None else past[0][0].shape[2]
        if past is not None and len(past) != len(self.blocks):
            raise ValueError(f"expected a cache with one entry per block ({len(self.blocks)}), got {len(past)}")
        if T_past + T > self.config.block_size:
            raise ValueError(f"expected at most block_size={self.config.block_size} tokens in the context, got "
                             f"{T_past + T} ({T_past} cached + {T} new)")
        if int(ids.min()) < 0 or int(ids.max()) >= self.config.vocab_size:
            raise ValueError(f"expected token ids in [0, {self.config.vocab_size}), got values from "
                             f"{int(ids.min())} to {int(ids.max())}")
        positions = torch.arange(T_past, T_past + T, device=ids.device)  # (T,)
        x = self.token_embedding(ids) + self.position_embedding(positions)  # (B, T, d_model)
        present: KVCache = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, None if past is None else past[i])
            present.append(kv)
        logits = self.head(self.final_norm(x))  # (B, T, vocab_size)
        return (logits, present) if use_cache else logits

    def loss(self, ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy (nats per token) of predicting ``targets`` from ``ids``.

        Shape:
            ids, targets: (B, T) -> scalar
        """
        logits = self(ids)  # (B, T, V)
        return nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())

    @torch.no_grad()
    def generate(self, ids: torch.Tensor, max_new_tokens: int, *, temperature: float = 1.0,
                 use_cache: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
        """Append ``max_new_tokens`` tokens, each sampled from ``softmax(logits / temperature)``.

        ``temperature=0`` picks the most likely token (greedy). With ``use_cache`` the
        keys and values of the prefix are kept and only the new token is run.

        Shape:
            ids: (B, T) -> (B, T + max_new_tokens); T + max_new_tokens <= block_size
        """
        _validate.tensor(ids, "ids", ndim=2, integer=True)
        _validate.positive_int(max_new_tokens, "max_new_tokens")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature < 0:
            raise ValueError(f"expected a temperature >= 0, got {temperature!r}")
        if ids.shape[1] + max_new_tokens > self.config.block_size:
            raise ValueError(f"expected prompt + new tokens <= block_size={self.config.block_size}, got "
                             f"{ids.shape[1]} + {max_new_tokens}")
        past: KVCache | None = None
        step_input = ids
        for _ in range(max_new_tokens):
            if use_cache:
                logits, past = self(step_input, past=past, use_cache=True)
            else:
                logits = self(ids)
            last = logits[:, -1]  # (B, V)
            if temperature == 0:
                nxt = last.argmax(-1, keepdim=True)  # (B, 1)
            else:
                probs = torch.softmax(last / temperature, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
            ids = torch.cat([ids, nxt], dim=1)
            step_input = nxt
        return ids
