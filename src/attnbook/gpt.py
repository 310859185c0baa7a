"""A decoder-only, GPT-style language model with KV-cache generation (Radford et al., 2019).

Token and (by default learned) position embeddings, a stack of pre-LN blocks with causal
multi-head (or grouped-query) self-attention, a final LayerNorm and a read-out to the
vocabulary. Each position predicts the next token.

Generation appends one token at a time. Without a cache, every step reruns the model
on the whole prefix; with a **KV cache**, every block keeps the keys and values of the
tokens seen so far, so a step only computes the new token's query, key and value and
attends to the cache. Both give the same logits (up to float rounding) and so the same
tokens.

``GPTConfig.position`` chooses how the model knows where a token is (chapter 12):
``"learned"`` (default: one trained vector per position, GPT-2), ``"sinusoidal"`` (fixed
vectors added at the input), ``"rope"`` (rotated queries and keys, with an optional
:class:`~attnbook.positional.RopeScaling`), ``"alibi"`` (a fixed distance penalty on the
scores) or ``"none"`` (only the causal mask tells order).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from attnbook import _validate
from attnbook.attention import ATTENTION_KINDS
from attnbook.kv_variants import check_layer_options, window_mask
from attnbook.layers import Block, BlockConfig, LayerNorm
from attnbook.masks import combine_masks
from attnbook.multihead import MultiHeadConfig
from attnbook.positional import RopeScaling, alibi_bias, rotary_cos_sin, sinusoidal_encoding

__all__ = ["GPTConfig", "GPTBlock", "GPT", "KVCache", "POSITIONS"]

POSITIONS = ("learned", "none", "sinusoidal", "rope", "alibi")
"""The names ``GPTConfig.position`` accepts."""

KVCache = list[tuple[torch.Tensor, torch.Tensor]]
"""One ``(keys, values)`` pair per block, each of shape (B, num_kv_heads, T_past, head_dim)."""


@dataclass
class GPTConfig:
    """Sizes and options of a :class:`GPT`.

    Attributes:
        vocab_size: number of tokens.
        block_size: the context: the most tokens the model can see.
        d_model, num_heads, num_layers: width, heads per block and blocks.
        num_kv_heads: key/value heads (``None``: ``num_heads``; fewer: grouped-query).
        d_ff: the feed-forward inner width (``None``: ``4 * d_model``).
        attention: ``"scratch"`` (the book's function, default) or ``"fused"``
            (PyTorch's kernel: same numbers, faster training).
        dropout: dropout on the embeddings and on each sub-layer's output (training only).
        tie_weights: the read-out shares the token embedding's matrix (Press & Wolf, 2017).
        qk_norm, softcap, gate, kv_latent: attention options of every block (see
            :class:`~attnbook.layers.BlockConfig`); windows: a sliding window (or ``None``:
            global) per layer; kv_share: layers per shared KV cache (see :mod:`attnbook.kv_variants`).
        position: one of :data:`POSITIONS` (default ``"learned"``).
        rope_base, rope_scaling: RoPE's base and its :class:`~attnbook.positional.RopeScaling`
            (``position="rope"`` only).
    """

    vocab_size: int
    block_size: int
    d_model: int = 128
    num_heads: int = 4
    num_layers: int = 4
    num_kv_heads: int | None = None
    d_ff: int | None = None
    attention: str = "scratch"
    dropout: float = 0.0
    tie_weights: bool = False
    qk_norm: bool = False
    softcap: float | None = None
    gate: bool = False
    kv_latent: int | None = None
    windows: tuple[int | None, ...] | None = None
    kv_share: int = 1
    position: str = "learned"
    rope_base: float = 10000.0
    rope_scaling: RopeScaling | None = None

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "num_layers"):
            _validate.positive_int(getattr(self, name), name)
        MultiHeadConfig(self.d_model, self.num_heads, self.num_kv_heads)  # checks the sizes
        self.d_ff = 4 * self.d_model if self.d_ff is None else _validate.positive_int(self.d_ff, "d_ff")
        _validate.choice(self.attention, "attention", ATTENTION_KINDS)
        _validate.probability(self.dropout, "dropout")
        if not isinstance(self.tie_weights, bool):
            raise TypeError(f"expected tie_weights to be a bool, got {type(self.tie_weights).__name__}")
        self.windows = check_layer_options(self.windows, self.kv_share, self.num_layers)
        self.block()  # checks the attention options
        _validate.choice(self.position, "position", POSITIONS)
        if self.position == "rope":
            rotary_cos_sin(torch.zeros(1), self.d_model // self.num_heads, base=self.rope_base,
                           scaling=self.rope_scaling)  # checks an even head width, the base and the scaling
        elif self.rope_scaling is not None:
            raise ValueError(f"expected rope_scaling only with position='rope', got position={self.position!r}")
        if self.position == "sinusoidal" and self.d_model % 2:
            raise ValueError(f"expected an even d_model for sinusoidal positions, got {self.d_model}")

    def block(self) -> BlockConfig:
        return BlockConfig(self.d_model, self.num_heads, self.d_ff, self.num_kv_heads, norm_first=True,
                           dropout=self.dropout, attention=self.attention, qk_norm=self.qk_norm,
                           softcap=self.softcap, gate=self.gate, kv_latent=self.kv_latent)


def GPTBlock(config: GPTConfig) -> Block:
    """The GPT block: a pre-LN :class:`~attnbook.layers.Block` (``x + CausalAttn(LN(x))``, ``x + FF(LN(x))``).

    Call it with ``is_causal=True`` and, for a KV cache, ``past=`` and ``use_cache=True``.
    """
    if not isinstance(config, GPTConfig):
        raise TypeError(f"expected a GPTConfig, got {type(config).__name__}")
    return Block(config.block())


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
        if c.position == "learned":
            self.position_embedding = nn.Embedding(c.block_size, c.d_model)
        elif c.position == "sinusoidal":
            self.register_buffer("sinusoidal", sinusoidal_encoding(c.block_size, c.d_model), persistent=False)
        self.blocks = nn.ModuleList(Block(c.block()) for _ in range(c.num_layers))
        for i in range(c.num_layers):  # kv_share: a group's later layers use its first layer's keys and values
            if i % c.kv_share:
                attn = self.blocks[i].self_attention
                for name in ("w_k", "w_v", "w_dkv", "w_uk", "w_uv", "k_norm"):
                    if hasattr(attn, name):
                        delattr(attn, name)
        self.final_norm = LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.apply(self._init)
        if c.tie_weights:
            self.head.weight = self.token_embedding.weight  # one (vocab_size, d_model) matrix, used twice

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def _positions(self, T_past: int, T: int, device: torch.device) -> dict:
        """What the blocks get for the positions T_past .. T_past + T - 1: a RoPE rotation or an ALiBi bias."""
        c = self.config
        if c.position == "rope":
            positions = torch.arange(T_past, T_past + T, device=device)
            return {"rotary": rotary_cos_sin(positions, c.d_model // c.num_heads, base=c.rope_base,
                                             scaling=c.rope_scaling)}  # (T, hs/2) each
        if c.position == "alibi":
            return {"mask": alibi_bias(c.num_heads, T, T_past + T, device=device)[None]}  # (1, nh, T, S)
        return {}

    def forward(self, ids: torch.Tensor, *, past: KVCache | None = None, use_cache: bool = False,
                need_weights: bool = False) -> torch.Tensor | tuple:
        """Next-token logits; with ``use_cache`` also the cache, with ``need_weights`` (scratch path) the
        attention weights of every block, a list of (B, num_heads, T, T_past + T)."""
        c = self.config
        if use_cache and need_weights:
            raise ValueError("expected use_cache or need_weights, got both")
        _validate.tensor(ids, "ids", ndim=2, integer=True)
        B, T = ids.shape
        if T < 1:
            raise ValueError(f"expected at least one token, got shape {tuple(ids.shape)}")
        T_past = 0
        if past is not None:
            if not isinstance(past, (list, tuple)) or len(past) != len(self.blocks):
                raise ValueError(f"expected a cache with one (keys, values) entry per block ({len(self.blocks)}), "
                                 f"got {len(past) if isinstance(past, (list, tuple)) else type(past).__name__}")
            first = past[0][0] if isinstance(past[0], (list, tuple)) and len(past[0]) == 2 else None
            if not isinstance(first, torch.Tensor) or first.dim() != 4:
                raise ValueError("expected each cache entry to be a (keys, values) pair of shape "
                                 "(B, num_kv_heads, T_past, head_dim)")
            T_past = first.shape[2]
        if T_past + T > c.block_size:
            raise ValueError(f"expected at most block_size={c.block_size} tokens in the context, got "
                             f"{T_past + T} ({T_past} cached + {T} new)")
        _validate.token_ids(ids, c.vocab_size, "token ids")
        positions = torch.arange(T_past, T_past + T, device=ids.device)  # (T,)
        x = self.token_embedding(ids)  # (B, T, d_model)
        if c.position == "learned":
            x = x + self.position_embedding(positions)
        elif c.position == "sinusoidal":
            x = x + self.sinusoidal[positions]
        extra = self._positions(T_past, T, ids.device)
        if c.dropout and self.training:
            x = nn.functional.dropout(x, c.dropout)
        present: KVCache = []
        keep = use_cache or c.kv_share > 1  # the shared keys and values pass from layer to layer
        weights = []
        for i, block in enumerate(self.blocks):
            w = None if c.windows is None else c.windows[i]
            window = None if w is None else window_mask(T, T_past + T, w, device=ids.device)  # (T, T_past + T)
            mask = combine_masks(extra.get("mask"), window)
            shared = present[i - i % c.kv_share] if i % c.kv_share else None
            out = block(x, mask, is_causal=True, past=None if past is None else past[i], use_cache=keep,
                        need_weights=need_weights, shared_kv=shared, rotary=extra.get("rotary"))
            out = out if isinstance(out, tuple) else (out,)
            x = out[0]
            present.append(out[1] if keep else None)
            if need_weights:
                weights.append(out[-1])  # (B, nh, T, T_past + T)
        logits = self.head(self.final_norm(x))  # (B, T, vocab_size)
        return (logits, present) if use_cache else (logits, weights) if need_weights else logits

    def loss(self, ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy (nats per token) of predicting ``targets`` from ``ids``.

        Shape:
            ids, targets: (B, T), targets integers in [0, vocab_size) -> scalar
        """
        _validate.tensor(targets, "targets", integer=True)
        if isinstance(ids, torch.Tensor) and targets.shape != ids.shape:
            raise ValueError(f"expected targets of the same shape as ids {tuple(ids.shape)} (one next token "
                             f"per position), got {tuple(targets.shape)}")
        _validate.token_ids(targets, self.config.vocab_size, "targets")
        logits = self(ids)  # (B, T, V)
        return nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten().long())

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
