"""Multi-query associative recall (MQAR; Arora et al., 2023) and the models of chapter 12's arena.

A sequence lists ``num_pairs`` key-value pairs, then asks for every key again, in a
shuffled order: ``k1 v1 k2 v2 ... kN vN | k3 v3 k1 v1 ...``. After each queried key the
model must predict its value; only those positions count. Solving it means holding
every pair seen so far: full attention keeps every token (a state that grows with the
length), a sliding window keeps the last ``w``, linear attention and a selective scan
keep a fixed-size state. :func:`state_bytes` counts what each model keeps.

:class:`RecallLM` stacks the package's one :class:`~attnbook.layers.Block` with a
per-layer mixer: ``"attention"`` (causal softmax), ``"window"`` (causal sliding window),
``"linear"`` (causal linear attention, :mod:`attnbook.linear_attention`) or ``"scan"``
(chapter 10's Mamba layer, :mod:`attnbook.ssm`); a hybrid mixes them, e.g.
``("scan", "attention")``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from attnbook import _validate
from attnbook.layers import Block, BlockConfig, LayerNorm
from attnbook.linear_attention import linear_attention
from attnbook.multihead import merge_heads, split_heads
from attnbook.sparse import sliding_window_mask
from attnbook.ssm import MambaBlock, MambaConfig

__all__ = ["mqar_batch", "LinearAttentionMixer", "RecallConfig", "RecallLM", "MIXERS", "state_bytes",
           "recall_accuracy"]

MIXERS = ("attention", "window", "linear", "scan")


def mqar_batch(batch: int, num_pairs: int, vocab_size: int, *, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of MQAR sequences: the pairs, then every pair again in a shuffled order.

    Keys come from ``[0, vocab_size / 2)``, values from ``[vocab_size / 2, vocab_size)``;
    the keys of one sequence are distinct. ``targets`` is ``-100`` (ignored) everywhere but
    at the queried keys of the second half, where it is the key's value.

    Shape:
        -> ids, targets: (batch, 4 * num_pairs)
    """
    for name, value in (("batch", batch), ("num_pairs", num_pairs), ("vocab_size", vocab_size)):
        _validate.positive_int(value, name)
    half = vocab_size // 2
    if num_pairs > half:
        raise ValueError(f"expected num_pairs <= vocab_size / 2 = {half} (distinct keys), got {num_pairs}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"expected generator to be a torch.Generator, got {type(generator).__name__}")
    keys = torch.rand(batch, half, generator=generator).argsort(dim=1)[:, :num_pairs]  # (B, N), distinct
    values = half + torch.randint(0, vocab_size - half, (batch, num_pairs), generator=generator)  # (B, N)
    order = torch.rand(batch, num_pairs, generator=generator).argsort(dim=1)  # (B, N): query order
    qk, qv = keys.gather(1, order), values.gather(1, order)
    ids = torch.stack([torch.cat([keys, qk], 1), torch.cat([values, qv], 1)], dim=2).flatten(1)  # (B, 4N)
    targets = torch.full_like(ids, -100)
    targets[:, 2 * num_pairs::2] = qv  # after a queried key: its value
    return ids, targets


class LinearAttentionMixer(nn.Module):
    """Causal multi-head linear attention (``elu + 1`` features) as a block's mixer.

    Shape:
        h: (B, T, d_model) -> (B, T, d_model)
    """

    def __init__(self, d_model: int, num_heads: int):
        super().__init__()
        _validate.positive_int(d_model, "d_model")
        self.num_heads = _validate.positive_int(num_heads, "num_heads")
        if d_model % num_heads:
            raise ValueError(f"expected d_model divisible by num_heads, got {d_model} and {num_heads}")
        self.w_q, self.w_k, self.w_v, self.w_o = (nn.Linear(d_model, d_model) for _ in range(4))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        _validate.tensor(h, "h", ndim=3, floating=True)
        q, k, v = (split_heads(w(h), self.num_heads) for w in (self.w_q, self.w_k, self.w_v))  # (B, nh, T, hs)
        return self.w_o(merge_heads(linear_attention(q, k, v, causal=True)))  # (B, T, d_model)


@dataclass
class RecallConfig:
    """Sizes of a :class:`RecallLM`.

    Attributes:
        vocab_size, max_len: tokens and the longest sequence (learned positions).
        layers: one mixer name of :data:`MIXERS` per layer.
        d_model, num_heads: width and heads of the attention-like layers.
        window: how many earlier tokens a ``"window"`` layer sees (besides itself).
        d_state, expand: a ``"scan"`` layer's state size per channel (Mamba's ``N``) and inner
            width factor (default 1, so that a scan block has about the parameters of an
            attention block: both keep the feed-forward sub-layer).
        conv: the width of the short causal convolution after the embeddings (every model has it).
    """

    vocab_size: int
    max_len: int
    layers: tuple[str, ...] = ("attention", "attention")
    d_model: int = 64
    num_heads: int = 4
    window: int = 8
    d_state: int = 16
    expand: int = 1
    conv: int = 2

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_len", "d_model", "num_heads", "d_state", "expand", "conv"):
            _validate.positive_int(getattr(self, name), name)
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 0:
            raise ValueError(f"expected window to be an int >= 0, got {self.window!r}")
        if isinstance(self.layers, str) or not isinstance(self.layers, (tuple, list)) or not self.layers:
            raise TypeError(f"expected layers to be a non-empty tuple of mixer names, got {self.layers!r}")
        self.layers = tuple(_validate.choice(m, "a layer's mixer", MIXERS) for m in self.layers)
        BlockConfig(self.d_model, self.num_heads)  # checks that the heads divide the width

    def scan_config(self) -> MambaConfig:
        return MambaConfig(self.d_model, d_state=self.d_state, expand=self.expand)


class RecallLM(nn.Module):
    """Embeddings, a short convolution, one pre-LN block per layer (its mixer by name), a read-out.

    Token and learned position embeddings are followed by a causal depthwise
    convolution over the last ``conv`` tokens, added to the residual stream (as Zoology
    gives every model a short convolution): each position then also carries the tokens
    just before it, so that a value can be found by its key with one lookup, for every
    mixer alike.

    Shape:
        ids: (B, T), T <= max_len -> logits: (B, T, vocab_size)
    """

    def __init__(self, config: RecallConfig):
        super().__init__()
        if not isinstance(config, RecallConfig):
            raise TypeError(f"expected a RecallConfig, got {type(config).__name__}")
        self.config = c = config
        self.token_embedding = nn.Embedding(c.vocab_size, c.d_model)
        self.position_embedding = nn.Embedding(c.max_len, c.d_model)
        self.short_conv = nn.Conv1d(c.d_model, c.d_model, kernel_size=c.conv, groups=c.d_model,
                                    padding=c.conv - 1)
        attention = BlockConfig(c.d_model, c.num_heads, attention="fused")
        residual = BlockConfig(c.d_model, num_heads=1)  # a mixer replaces self-attention
        blocks = []
        for kind in c.layers:
            if kind in ("attention", "window"):
                blocks.append(Block(attention))
            elif kind == "linear":
                blocks.append(Block(residual, mixer=LinearAttentionMixer(c.d_model, c.num_heads)))
            else:
                blocks.append(Block(residual, mixer=MambaBlock(c.scan_config())))
        self.blocks = nn.ModuleList(blocks)
        self.final_norm = LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.vocab_size, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        c = self.config
        _validate.tensor(ids, "ids", ndim=2, integer=True)
        T = ids.shape[1]
        if not 1 <= T <= c.max_len:
            raise ValueError(f"expected between 1 and max_len={c.max_len} tokens, got {T}")
        _validate.token_ids(ids, c.vocab_size, "token ids")
        x = self.token_embedding(ids) + self.position_embedding(torch.arange(T, device=ids.device))
        x = x + self.short_conv(x.transpose(1, 2))[..., :T].transpose(1, 2)  # (B, T, d): causal, last `conv`
        window = sliding_window_mask(T, c.window, causal=True, device=ids.device) if "window" in c.layers else None
        for kind, block in zip(c.layers, self.blocks):
            if kind == "attention":
                x = block(x, is_causal=True)
            elif kind == "window":
                x = block(x, window)  # (T, T) bool band: the last `window` tokens and itself
            else:
                x = block(x)
        return self.head(self.final_norm(x))  # (B, T, vocab_size)


def state_bytes(config: RecallConfig, length: int, *, bytes_per_number: int = 2) -> int:
    """The numbers a model keeps to produce the next token after ``length`` tokens, in bytes (default fp16).

    Per layer: ``"attention"`` keeps every key and value, ``2 d_model length``;
    ``"window"`` the last ``window + 1``, ``2 d_model min(window + 1, length)``;
    ``"linear"`` one ``hs x hs`` matrix and an ``hs`` normaliser per head; ``"scan"`` the SSM
    state ``d_inner x d_state`` and the convolution's last ``d_conv - 1`` inputs; and, once,
    the short convolution's last ``conv - 1`` inputs.
    """
    if not isinstance(config, RecallConfig):
        raise TypeError(f"expected a RecallConfig, got {type(config).__name__}")
    _validate.positive_int(length, "length")
    _validate.positive_int(bytes_per_number, "bytes_per_number")
    d, hs = config.d_model, config.d_model // config.num_heads
    mamba = config.scan_config()
    per_layer = {"attention": 2 * d * length, "window": 2 * d * min(config.window + 1, length),
                 "linear": config.num_heads * (hs * hs + hs),
                 "scan": mamba.d_inner * (mamba.d_state + mamba.d_conv - 1)}
    conv = (config.conv - 1) * d  # the short convolution's last inputs, once per model
    return bytes_per_number * (conv + sum(per_layer[kind] for kind in config.layers))


@torch.no_grad()
def recall_accuracy(model: nn.Module, ids: torch.Tensor, targets: torch.Tensor) -> float:
    """Share of queried values (targets other than ``-100``) that the model's argmax gets right.

    Shape:
        ids, targets: (B, T) -> a float in [0, 1]
    """
    _validate.tensor(ids, "ids", ndim=2, integer=True)
    _validate.tensor(targets, "targets", ndim=2, integer=True)
    if targets.shape != ids.shape:
        raise ValueError(f"expected targets of the shape of ids {tuple(ids.shape)}, got {tuple(targets.shape)}")
    asked = targets != -100
    if not bool(asked.any()):
        raise ValueError("expected at least one target other than -100, got none")
    right = (model(ids).argmax(-1) == targets) & asked
    return float(right.sum() / asked.sum())
