"""A minimal selective state-space layer in the style of Mamba (Gu & Dao, 2023).

A state-space model (SSM) reads a sequence one step at a time and keeps a fixed-size
state ``h``. For every channel ``d`` and state index ``n``, continuous time says
``h'(t) = A h(t) + B x(t)``, ``y(t) = C h(t)``. Discretised with a step ``Delta``
(zero-order hold for ``A``, the simpler Euler rule for ``B``, as Mamba does):

    A_bar_t = exp(Delta_t * A)          B_bar_t = Delta_t * B_t
    h_t     = A_bar_t * h_{t-1} + B_bar_t * x_t
    y_t     = sum_n C_t[n] * h_t[n]  +  D * x_t

``A`` is diagonal (one negative number per channel and state index), so the update is
element-wise. What makes the model **selective** is that ``Delta_t``, ``B_t`` and ``C_t``
are computed from the input ``x_t``: a large ``Delta`` writes the current token into the
state (and forgets the old one), a small ``Delta`` lets it pass and keeps the state.

Three ways to compute the same recurrence are given (the first two live in
:mod:`attnbook.ssm_scan` and are re-exported here):

* :func:`selective_scan_reference`: the loop above, one step at a time (the definition);
* :func:`selective_scan`: chunked and vectorised. The sequence is walked in chunks of
  ``chunk_size`` steps; inside each, a parallel prefix scan (``log2(chunk_size)`` doubling
  steps) composes the updates ``h -> a h + b``, and the state is carried from chunk to
  chunk. The work is linear in the length, and the Python loop runs ``L / chunk_size``
  times instead of ``L``.
* :meth:`MambaBlock.step`: one step with an explicit state, as used when generating.

:class:`MambaBlock` wraps the scan as Mamba's mixer (input projection with a gate, a
short causal depthwise convolution, the selective SSM, output projection), and
:class:`MambaLM` stacks such blocks into a small language model with the same interface
as :class:`attnbook.gpt.GPT`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from attnbook import _validate
from attnbook.ssm_scan import discretize, selective_scan, selective_scan_reference
from attnbook.layers import Block, BlockConfig, LayerNorm

__all__ = ["discretize", "selective_scan_reference", "selective_scan", "MambaConfig", "MambaBlock",
           "MambaLMConfig", "MambaLM"]


@dataclass
class MambaConfig:
    """Sizes of a :class:`MambaBlock`.

    Attributes:
        d_model: width of the input and output tokens.
        d_state: ``N``, the state size per channel.
        expand: the inner width is ``expand * d_model`` channels.
        d_conv: kernel size of the causal depthwise convolution.
        dt_rank: rank of the projection that computes ``Delta`` (``None``: ``ceil(d_model / 16)``).
        dt_min, dt_max: range of the initial ``Delta`` (log-uniform), as in Mamba.
        chunk_size: chunk length of :func:`selective_scan`.
    """

    d_model: int
    d_state: int = 8
    expand: int = 2
    d_conv: int = 4
    dt_rank: int | None = None
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    chunk_size: int = 64

    def __post_init__(self) -> None:
        for name in ("d_model", "d_state", "expand", "d_conv", "chunk_size"):
            _validate.positive_int(getattr(self, name), name)
        if self.dt_rank is None:
            self.dt_rank = math.ceil(self.d_model / 16)
        _validate.positive_int(self.dt_rank, "dt_rank")
        for name in ("dt_min", "dt_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"expected a positive {name}, got {value!r}")
        if self.dt_min > self.dt_max:
            raise ValueError(f"expected dt_min <= dt_max, got {self.dt_min} and {self.dt_max}")

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model


class MambaBlock(nn.Module):
    """Mamba's mixer: gate and input projection, causal convolution, selective SSM, output projection.

    ``u -> (x, z) = in_proj(u)``; ``x = SiLU(causal_conv(x))``; ``Delta, B, C`` from ``x``;
    ``y = selective_scan(x, Delta, A, B, C, D)``; ``out = out_proj(y * SiLU(z))``.
    Like attention, it mixes information along the sequence, causally; unlike attention,
    it carries a state of fixed size ``(d_inner, d_state)`` instead of every past token.

    Args:
        config: a :class:`MambaConfig`, or its fields as keyword arguments.

    Shape:
        u: (B, L, d_model) -> (B, L, d_model); with ``need_delta=True`` also Delta: (B, L, d_inner)
    """

    def __init__(self, config: MambaConfig | None = None, **kwargs: object):
        super().__init__()
        if config is None:
            config = MambaConfig(**kwargs)  # type: ignore[arg-type]
        elif kwargs:
            raise TypeError(f"expected a config or keyword arguments, got both (config and {sorted(kwargs)})")
        if not isinstance(config, MambaConfig):
            raise TypeError(f"expected a MambaConfig, got {type(config).__name__}")
        self.config = c = config
        Di, N = c.d_inner, c.d_state
        self.in_proj = nn.Linear(c.d_model, 2 * Di)
        self.conv = nn.Conv1d(Di, Di, kernel_size=c.d_conv, groups=Di, padding=c.d_conv - 1)
        self.x_proj = nn.Linear(Di, c.dt_rank + 2 * N, bias=False)
        self.dt_proj = nn.Linear(c.dt_rank, Di)
        dt = torch.exp(torch.rand(Di) * (math.log(c.dt_max) - math.log(c.dt_min)) + math.log(c.dt_min))
        with torch.no_grad():  # softplus(bias) = dt at the start: the inverse of softplus
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(Di, 1))  # (Di, N)
        self.D = nn.Parameter(torch.ones(Di))
        self.out_proj = nn.Linear(Di, c.d_model)

    def _check(self, u: torch.Tensor) -> None:
        _validate.tensor(u, "u", ndim=3, floating=True)
        if u.shape[-1] != self.config.d_model:
            raise ValueError(f"expected u of width d_model={self.config.d_model}, got shape {tuple(u.shape)}")

    def _ssm_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c = self.config
        dt_low, B, C = self.x_proj(x).split([c.dt_rank, c.d_state, c.d_state], dim=-1)  # (..., R), (..., N) x 2
        delta = nn.functional.softplus(self.dt_proj(dt_low))  # (..., Di), positive
        return delta, B, C

    def forward(self, u: torch.Tensor, *, need_delta: bool = False, scan: str = "chunked"
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        self._check(u)
        if scan not in ("chunked", "reference"):
            raise ValueError(f"expected scan 'chunked' or 'reference', got {scan!r}")
        L = u.shape[1]
        x, z = self.in_proj(u).chunk(2, dim=-1)  # (B, L, Di) each
        x = self.conv(x.transpose(1, 2))[..., :L].transpose(1, 2)  # (B, L, Di): causal, only the past and now
        x = nn.functional.silu(x)
        delta, B, C = self._ssm_inputs(x)  # (B, L, Di), (B, L, N), (B, L, N)
        A = -torch.exp(self.A_log)  # (Di, N), negative: the state decays
        if scan == "chunked":
            y = selective_scan(x, delta, A, B, C, self.D, chunk_size=self.config.chunk_size)  # (B, L, Di)
        else:
            y = selective_scan_reference(x, delta, A, B, C, self.D)
        out = self.out_proj(y * nn.functional.silu(z))  # (B, L, d_model)
        return (out, delta) if need_delta else out

    def step(self, u_t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One token at a time, with an explicit state: what generation uses (no cache of the past).

        The state is the last ``d_conv - 1`` convolution inputs and the SSM state ``h``;
        its size does not grow with the number of tokens seen.

        Shape:
            u_t: (B, d_model); state: conv (B, d_inner, d_conv - 1), h (B, d_inner, d_state)
            -> out: (B, d_model); the new state
        """
        _validate.tensor(u_t, "u_t", ndim=2, floating=True)
        c = self.config
        if u_t.shape[-1] != c.d_model:
            raise ValueError(f"expected u_t of width d_model={c.d_model}, got shape {tuple(u_t.shape)}")
        Bt = u_t.shape[0]
        if state is None:
            state = (u_t.new_zeros(Bt, c.d_inner, c.d_conv - 1), u_t.new_zeros(Bt, c.d_inner, c.d_state))
        conv_buf, h = state
        x, z = self.in_proj(u_t).chunk(2, dim=-1)  # (B, Di) each
        window = torch.cat([conv_buf, x[..., None]], dim=-1)  # (B, Di, d_conv): the last d_conv inputs
        x = nn.functional.silu((window * self.conv.weight[:, 0]).sum(-1) + self.conv.bias)  # (B, Di)
        delta, B, C = self._ssm_inputs(x)  # (B, Di), (B, N), (B, N)
        A = -torch.exp(self.A_log)  # (Di, N)
        h = torch.exp(delta[..., None] * A) * h + delta[..., None] * B[:, None, :] * x[..., None]  # (B, Di, N)
        y = (h * C[:, None, :]).sum(-1) + self.D * x  # (B, Di)
        out = self.out_proj(y * nn.functional.silu(z))  # (B, d_model)
        return out, (window[..., 1:], h)


@dataclass
class MambaLMConfig:
    """Sizes of a :class:`MambaLM`.

    Attributes:
        vocab_size: number of tokens.
        d_model, num_layers: width and number of blocks.
        d_state, expand, d_conv, dt_min, dt_max, chunk_size: as in :class:`MambaConfig`.
    """

    vocab_size: int
    d_model: int = 64
    num_layers: int = 2
    d_state: int = 8
    expand: int = 2
    d_conv: int = 4
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    chunk_size: int = 64

    def __post_init__(self) -> None:
        for name in ("vocab_size", "num_layers"):
            _validate.positive_int(getattr(self, name), name)
        self.block()  # checks the block's sizes

    def block(self) -> MambaConfig:
        return MambaConfig(self.d_model, self.d_state, self.expand, self.d_conv, dt_min=self.dt_min, dt_max=self.dt_max,
                           chunk_size=self.chunk_size)


class MambaLM(nn.Module):
    """A stack of pre-LN Mamba blocks with token embeddings and a read-out, like :class:`attnbook.gpt.GPT`.

    Each layer is the package's one residual block (:class:`attnbook.layers.Block`) with a
    :class:`MambaBlock` as its mixer in place of self-attention and no feed-forward
    sub-layer: ``x = x + Mamba(LN(x))``. No position embeddings: the recurrence itself
    knows the order. Any length works.

    Shape:
        ids: (B, T) token ids -> logits: (B, T, vocab_size); with ``need_delta=True`` also a
        list of ``num_layers`` Delta tensors, each (B, T, d_inner)
    """

    def __init__(self, config: MambaLMConfig):
        super().__init__()
        if not isinstance(config, MambaLMConfig):
            raise TypeError(f"expected a MambaLMConfig, got {type(config).__name__}")
        self.config = c = config
        self.token_embedding = nn.Embedding(c.vocab_size, c.d_model)
        residual = BlockConfig(c.d_model, num_heads=1, d_ff=0, norm_first=True)  # the mixer replaces attention
        self.blocks = nn.ModuleList(Block(residual, mixer=MambaBlock(c.block())) for _ in range(c.num_layers))
        self.final_norm = LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.vocab_size, bias=False)

    def forward(self, ids: torch.Tensor, *, need_delta: bool = False, scan: str = "chunked"
                ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        _validate.tensor(ids, "ids", ndim=2, integer=True)
        if ids.shape[1] < 1:
            raise ValueError(f"expected at least one token, got shape {tuple(ids.shape)}")
        _validate.token_ids(ids, self.config.vocab_size, "token ids")
        if not isinstance(need_delta, bool):
            raise TypeError(f"expected need_delta to be a bool, got {type(need_delta).__name__}")
        x = self.token_embedding(ids)  # (B, T, d_model)
        deltas = []
        for block in self.blocks:  # x = x + Mamba(LN(x))
            if need_delta:
                x, delta = block(x, need_weights=True, mixer_options={"need_delta": True, "scan": scan})
                deltas.append(delta)  # (B, T, d_inner)
            else:
                x = block(x, mixer_options={"scan": scan})  # (B, T, d_model)
        logits = self.head(self.final_norm(x))  # (B, T, vocab_size)
        return (logits, deltas) if need_delta else logits
