"""Multi-head attention, with grouped-query and multi-query attention as special cases.

``MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W_O`` with
``head_i = Attention(Q W_Q^i, K W_K^i, V W_V^i)`` (Vaswani et al., 2017): the model
width ``d_model`` is split into ``h`` heads of width ``d_model / h``, each head attends
on its own, and the heads' outputs are concatenated and projected back.

With ``num_kv_heads < num_heads`` several query heads share one key/value head:
grouped-query attention (GQA, Ainslie et al., 2023); ``num_kv_heads = 1`` is
multi-query attention (MQA, Shazeer, 2019). ``num_kv_heads = num_heads`` is ordinary
multi-head attention. Fewer key/value heads mean a smaller KV cache at generation time.

Masks follow :mod:`attnbook.masks`: a bool mask says where a query *may attend*
(``True`` = may attend); this is the opposite of ``torch.nn.MultiheadAttention``'s
``attn_mask``, where ``True`` means "masked out". ``is_causal`` is bottom-right aligned,
so queries after a KV cache see exactly what they would see without it.

``attention="scratch"`` (the default) runs the book's
:func:`~attnbook.attention.scaled_dot_product_attention`; ``attention="fused"`` runs
PyTorch's fused kernel (:func:`~attnbook.attention.fused_attention`), same outputs and
gradients, faster; ``need_weights=True`` always takes the scratch path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from attnbook import _validate
from attnbook.attention import ATTENTION_KINDS, attention_heads
from attnbook.masks import check_mask

__all__ = ["MultiHeadConfig", "MultiHeadAttention", "split_heads", "merge_heads", "kv_cache_bytes_per_token"]


@dataclass
class MultiHeadConfig:
    """Sizes of a :class:`MultiHeadAttention` layer.

    Attributes:
        d_model: width of the queries' input and of the output.
        num_heads: number of query heads; must divide ``d_model``.
        num_kv_heads: number of key/value heads (``None``: ``num_heads``, plain
            multi-head attention; ``1``: multi-query attention); must divide ``num_heads``.
        kv_dim: width of the key/value input (``None``: ``d_model``); differs from
            ``d_model`` in cross-attention between sequences of different widths.
        bias: whether the four projections have biases.
        attention: ``"scratch"`` (the book's function, default) or ``"fused"`` (PyTorch's kernel).
        qk_norm: RMS-normalise each head's queries and keys (learned scale) before the dot
            product (QK-norm; Dehghani et al., 2023).
        softcap: soft-cap the scores at this size, ``softcap * tanh(s / softcap)`` (Gemma 2;
            takes the scratch path); ``None``: no cap.
        gate: multiply each head's output, element by element, by ``sigmoid(x W_g + b_g)``
            before the output projection (gated attention; Qiu et al., 2025).
    """

    d_model: int
    num_heads: int
    num_kv_heads: int | None = None
    kv_dim: int | None = None
    bias: bool = True
    attention: str = "scratch"
    qk_norm: bool = False
    softcap: float | None = None
    gate: bool = False

    def __post_init__(self) -> None:
        _validate.positive_int(self.d_model, "d_model")
        _validate.positive_int(self.num_heads, "num_heads")
        if self.d_model % self.num_heads:
            raise ValueError(f"expected d_model divisible by num_heads, got d_model={self.d_model} and "
                             f"num_heads={self.num_heads}")
        if self.num_kv_heads is None:
            self.num_kv_heads = self.num_heads
        _validate.positive_int(self.num_kv_heads, "num_kv_heads")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"expected num_heads divisible by num_kv_heads (each key/value head serves a whole "
                             f"group of query heads), got num_heads={self.num_heads} and "
                             f"num_kv_heads={self.num_kv_heads}")
        if self.kv_dim is None:
            self.kv_dim = self.d_model
        _validate.positive_int(self.kv_dim, "kv_dim")
        if not isinstance(self.bias, bool):
            raise TypeError(f"expected bias to be a bool, got {type(self.bias).__name__}")
        _validate.choice(self.attention, "attention", ATTENTION_KINDS)
        for name in ("qk_norm", "gate"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"expected {name} to be a bool, got {type(getattr(self, name)).__name__}")
        if self.softcap is not None and (isinstance(self.softcap, bool) or not isinstance(self.softcap, (int, float))
                                         or not self.softcap > 0):
            raise ValueError(f"expected softcap to be a positive number or None, got {self.softcap!r}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Split the last dimension into heads and move the head axis before the sequence axis.

    Shape:
        x: (B, T, num_heads * hs) -> (B, num_heads, T, hs)
    """
    _validate.tensor(x, "x", ndim=3)
    _validate.positive_int(num_heads, "num_heads")
    B, T, C = x.shape
    if C % num_heads:
        raise ValueError(f"expected a last dimension divisible by num_heads={num_heads}, got {C}")
    return x.view(B, T, num_heads, C // num_heads).transpose(1, 2)  # (B, nh, T, hs)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """Undo :func:`split_heads`: concatenate the heads along the last dimension.

    Shape:
        x: (B, num_heads, T, hs) -> (B, T, num_heads * hs)
    """
    _validate.tensor(x, "x", ndim=4)
    B, nh, T, hs = x.shape
    return x.transpose(1, 2).contiguous().view(B, T, nh * hs)  # (B, T, nh * hs)


class MultiHeadAttention(nn.Module):
    """Multi-head attention (MHA), grouped-query (GQA) or multi-query (MQA) attention.

    Self-attention: ``layer(x)``. Cross-attention: ``layer(x, context)``, where the
    queries come from ``x`` and the keys and values from ``context`` (another sequence,
    of another length and, with ``kv_dim``, another width). Per-head weights are
    returned when asked (``need_weights=True``), never stored.

    Args:
        config: a :class:`MultiHeadConfig`, or its fields as keyword arguments.

    Shape:
        x: (B, L, d_model); context: (B, S, kv_dim) (default: x, so S = L);
        mask: bool (True = may attend) or float (added), broadcastable to (B, num_heads, L, S):
        (L, S), (B, L, S), (B, 1, L, S) or (B, num_heads, L, S); a 3-D mask is shared by all heads
        -> output: (B, L, d_model); weights (if need_weights): (B, num_heads, L, S)
    """

    def __init__(self, config: MultiHeadConfig | None = None, **kwargs: object):
        super().__init__()
        if config is None:
            config = MultiHeadConfig(**kwargs)  # type: ignore[arg-type]
        elif kwargs:
            raise TypeError(f"expected a config or keyword arguments, got both (config and {sorted(kwargs)})")
        if not isinstance(config, MultiHeadConfig):
            raise TypeError(f"expected a MultiHeadConfig, got {type(config).__name__}")
        self.config = config
        c = config
        self.num_heads, self.num_kv_heads, self.head_dim = c.num_heads, c.num_kv_heads, c.head_dim
        self.w_q = nn.Linear(c.d_model, c.d_model, bias=c.bias)
        self.w_k = nn.Linear(c.kv_dim, c.num_kv_heads * c.head_dim, bias=c.bias)
        self.w_v = nn.Linear(c.kv_dim, c.num_kv_heads * c.head_dim, bias=c.bias)
        self.w_o = nn.Linear(c.d_model, c.d_model, bias=c.bias)
        if c.qk_norm:  # one learned scale per head dimension, shared by the heads
            self.q_norm, self.k_norm = nn.Parameter(torch.ones(c.head_dim)), nn.Parameter(torch.ones(c.head_dim))
        if c.gate:  # starts near sigmoid(0) = 1/2 for every head and dimension
            self.w_g = nn.Linear(c.d_model, c.d_model, bias=True)

    def _norm(self, t: torch.Tensor, weight_name: str) -> torch.Tensor:
        """QK-norm: RMS-normalise over the head dimension, then scale (a no-op without ``qk_norm``)."""
        if not self.config.qk_norm:
            return t
        return nn.functional.rms_norm(t, (t.shape[-1],), getattr(self, weight_name), eps=1e-6)

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        """The queries of ``x``, QK-normed when configured: (B, L, d_model) -> (B, num_heads, L, head_dim)."""
        return self._norm(self._heads(self.w_q(x), self.num_heads), "q_norm")

    def _check_x(self, x: object) -> None:
        _validate.tensor(x, "x", ndim=3, floating=True)
        if x.shape[-1] != self.config.d_model:
            raise ValueError(f"expected x of width d_model={self.config.d_model}, got shape {tuple(x.shape)}")

    def _heads(self, t: torch.Tensor, heads: int) -> torch.Tensor:
        B, T, _ = t.shape
        return t.view(B, T, heads, self.head_dim).transpose(1, 2)  # (B, heads, T, hs)

    def _kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = self._norm(self._heads(self.w_k(context), self.num_kv_heads), "k_norm")
        return k, self._heads(self.w_v(context), self.num_kv_heads)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Self-attention's queries, keys and values; the fused path uses one matrix product for all three."""
        if self.config.attention == "scratch" or self.config.kv_dim != self.config.d_model:
            return self._query(x), *self._kv(x)
        # the three weights side by side, as torch.nn.MultiheadAttention's in_proj_weight (hooks on w_q/w_k/w_v
        # do not fire here)
        w = torch.cat([self.w_q.weight, self.w_k.weight, self.w_v.weight])
        b = None if self.w_q.bias is None else torch.cat([self.w_q.bias, self.w_k.bias, self.w_v.bias])
        kv_width = self.num_kv_heads * self.head_dim
        q, k, v = nn.functional.linear(x, w, b).split([self.config.d_model, kv_width, kv_width], dim=-1)
        q, k = self._norm(self._heads(q, self.num_heads), "q_norm"), self._norm(self._heads(k, self.num_kv_heads), "k_norm")
        return q, k, self._heads(v, self.num_kv_heads)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                is_causal: bool, need_weights: bool, x: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attention of queries (B, nh, L, hs) to keys/values (B, nkv, S, hs), then the output projection.

        ``x`` (B, L, d_model), the queries' input, drives the output gate (``gate=True`` only).
        """
        B, _, L, _ = q.shape
        if mask is not None:
            mask = check_mask(mask, (B, self.num_heads, L, k.shape[2]), heads=True)
        out, weights = attention_heads(q, k, v, mask, is_causal=is_causal, kind=self.config.attention,
                                       need_weights=need_weights, softcap=self.config.softcap)
        out = out.transpose(1, 2).reshape(B, L, -1)  # (B, L, nh * hs): heads side by side
        if self.config.gate:
            if x is None:
                raise ValueError("expected x (the queries' input) for the output gate, got None")
            out = out * torch.sigmoid(self.w_g(x))  # (B, L, d_model): each head's output, gated
        return self.w_o(out), weights  # (B, L, d_model), (B, nh, L, S) or None

    def project_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys and values of ``context``: what a KV cache stores for each token.

        Shape:
            context: (B, S, kv_dim) -> keys, values: (B, num_kv_heads, S, head_dim) each
        """
        _validate.tensor(context, "context", ndim=3, floating=True)
        if context.shape[-1] != self.config.kv_dim:
            raise ValueError(f"expected context of width kv_dim={self.config.kv_dim}, got shape "
                             f"{tuple(context.shape)}")
        return self._kv(context)  # (B, nkv, S, hs) each

    def check_kv(self, k: object, v: object, batch: int, name: str = "") -> None:
        """Check keys and values (e.g. a KV cache) of shape (batch, num_kv_heads, S, head_dim)."""
        for label, t in ((f"{name}keys", k), (f"{name}values", v)):
            _validate.tensor(t, label, floating=True)
            if t.dim() != 4 or t.shape[0] != batch or t.shape[1] != self.num_kv_heads or \
                    t.shape[3] != self.head_dim or t.shape[2] != k.shape[2]:
                S = k.shape[2] if k.dim() == 4 else "S"
                raise ValueError(f"expected {label} of shape (B, num_kv_heads, S, head_dim) = ({batch}, "
                                 f"{self.num_kv_heads}, {S}, {self.head_dim}), got {tuple(t.shape)}")

    def attend(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None, *,
               is_causal: bool = False, need_weights: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attention of the queries of ``x`` to given keys and values (e.g. from a cache).

        With ``is_causal`` and ``S > L`` (the new queries come after ``S - L`` cached
        tokens) query ``i`` may see keys ``0 .. S - L + i``: the triangle is aligned at
        the bottom right, so a cached query sees exactly what it would see uncached.
        The weights come back when ``need_weights`` (the scratch path), else ``None``.

        Shape:
            x: (B, L, d_model); k, v: (B, num_kv_heads, S, head_dim)
            -> output: (B, L, d_model); weights: (B, num_heads, L, S) or None
        """
        self._check_x(x)
        self.check_kv(k, v, x.shape[0])
        if not isinstance(is_causal, bool):
            raise TypeError(f"expected is_causal to be a bool, got {type(is_causal).__name__}")
        return self._attend(self._query(x), k, v, mask, is_causal, need_weights, x)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None, *,
                is_causal: bool = False, need_weights: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(is_causal, bool):
            raise TypeError(f"expected is_causal to be a bool, got {type(is_causal).__name__}")
        self._check_x(x)
        if context is None:
            q, k, v = self._qkv(x)
        else:
            _validate.tensor(context, "context", ndim=3, floating=True)
            if context.shape[0] != x.shape[0]:
                raise ValueError(f"expected x and context with the same batch size, got shapes {tuple(x.shape)} "
                                 f"and {tuple(context.shape)}")
            k, v = self.project_kv(context)  # (B, nkv, S, hs) each
            q = self._query(x)  # (B, nh, L, hs)
        out, weights = self._attend(q, k, v, mask, is_causal, need_weights, x)  # (B, L, d_model), (B, nh, L, S)
        return (out, weights) if need_weights else out

    @classmethod
    def from_torch(cls, reference: nn.MultiheadAttention) -> MultiHeadAttention:
        """A copy of a ``torch.nn.MultiheadAttention`` (``batch_first=True``) with the same weights."""
        if not isinstance(reference, nn.MultiheadAttention):
            raise TypeError(f"expected a torch.nn.MultiheadAttention, got {type(reference).__name__}")
        if not reference.batch_first:
            raise ValueError("expected a torch.nn.MultiheadAttention with batch_first=True, got batch_first=False")
        if reference.kdim != reference.embed_dim or reference.vdim != reference.embed_dim:
            raise ValueError(f"expected kdim = vdim = embed_dim, got kdim={reference.kdim}, vdim={reference.vdim}, "
                             f"embed_dim={reference.embed_dim}")
        D = reference.embed_dim
        bias = reference.in_proj_bias is not None
        layer = cls(MultiHeadConfig(D, reference.num_heads, bias=bias))
        with torch.no_grad():
            for i, lin in enumerate((layer.w_q, layer.w_k, layer.w_v)):
                lin.weight.copy_(reference.in_proj_weight[i * D:(i + 1) * D])  # rows of the stacked (3D, D) weight
                if bias:
                    lin.bias.copy_(reference.in_proj_bias[i * D:(i + 1) * D])
            layer.w_o.weight.copy_(reference.out_proj.weight)
            if bias:
                layer.w_o.bias.copy_(reference.out_proj.bias)
        return layer


def kv_cache_bytes_per_token(layer: MultiHeadAttention, *, num_layers: int = 1,
                             dtype: torch.dtype = torch.float16, tokens: int = 16) -> float:
    """Bytes of KV cache one token costs, measured on the tensors ``layer`` actually caches.

    Runs :meth:`MultiHeadAttention.project_kv` on ``tokens`` random tokens in ``dtype``
    and divides the keys' and values' ``nbytes`` by the number of tokens, times
    ``num_layers`` (every layer keeps its own cache).
    """
    if not isinstance(layer, MultiHeadAttention):
        raise TypeError(f"expected a MultiHeadAttention, got {type(layer).__name__}")
    _validate.positive_int(num_layers, "num_layers")
    _validate.positive_int(tokens, "tokens")
    p = next(layer.parameters())
    x = torch.randn(1, tokens, layer.config.kv_dim, device=p.device, dtype=p.dtype)
    with torch.no_grad():
        k, v = layer.project_kv(x)  # (1, nkv, tokens, hs) each
    k, v = k.to(dtype), v.to(dtype)
    return num_layers * (k.nbytes + v.nbytes) / tokens
