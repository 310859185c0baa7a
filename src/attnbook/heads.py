"""Switching attention heads off: head gates, importance scores and pruning orders.

Each head's output is multiplied by a gate before the heads are merged by the output
projection $W_O$: gate 1 keeps the head, 0 removes it (the same as Hugging Face's
former ``head_mask``, and as pruning the head's rows of $W_Q, W_K, W_V$ and columns of
$W_O$). Gates are attached with forward pre-hooks on the output projections of a
BERT-style Hugging Face model (``model.encoder.layer[i].attention.output.dense``), so
the model's code and weights are untouched and removing the hooks restores it exactly.

Importance follows Michel et al. (2019): the size of the gradient of a loss with
respect to each gate, $I_h = |\\partial L / \\partial g_h|$, summed over batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from attnbook import _validate

__all__ = ["output_projections", "head_shape", "gates_without", "HeadGates", "head_importance", "prune_order"]


def output_projections(model: nn.Module) -> list[nn.Linear]:
    """The per-layer output projections $W_O$ of a BERT-style Hugging Face model, first layer first."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module (a BERT-style model), got {type(model).__name__}")
    try:
        layers = model.encoder.layer
        projections = [layer.attention.output.dense for layer in layers]
    except AttributeError:
        raise TypeError(f"expected a BERT-style model with encoder.layer[i].attention.output.dense, "
                        f"got {type(model).__name__}") from None
    if not all(isinstance(p, nn.Linear) for p in projections):
        raise TypeError("expected every attention.output.dense to be a torch.nn.Linear")
    return projections


def head_shape(model: nn.Module) -> tuple[int, int]:
    """``(layers, heads)`` of a BERT-style model."""
    layers = len(output_projections(model))
    heads = getattr(getattr(model, "config", None), "num_attention_heads", None)
    if not isinstance(heads, int):
        raise TypeError("expected model.config.num_attention_heads to be an int")
    return layers, heads


def gates_without(num_layers: int, num_heads: int, removed: Iterable[tuple[int, int]] = ()) -> torch.Tensor:
    """A gate tensor of ones with a zero at every ``(layer, head)`` in ``removed``.

    Shape:
        -> (num_layers, num_heads)
    """
    _validate.positive_int(num_layers, "num_layers")
    _validate.positive_int(num_heads, "num_heads")
    gates = torch.ones(num_layers, num_heads)
    for item in removed:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise TypeError(f"expected (layer, head) pairs in removed, got {item!r}")
        layer, head = item
        if not (0 <= layer < num_layers and 0 <= head < num_heads):
            raise ValueError(f"expected (layer, head) within ({num_layers}, {num_heads}), got {item!r}")
        gates[layer, head] = 0.0
    return gates


class HeadGates:
    """Context manager: multiply every head's output by ``gates[layer, head]`` while active.

    ``with HeadGates(model, gates): model(...)``. With ``gates`` of ones the output is
    bit-for-bit the model's own (multiplying by 1.0 is exact). ``gates`` may require
    gradients, to measure head importance.

    Shape:
        gates (layers, heads)
    """

    def __init__(self, model: nn.Module, gates: torch.Tensor) -> None:
        self.projections = output_projections(model)
        layers, heads = head_shape(model)
        _validate.tensor(gates, "gates", ndim=2, floating=True)
        if tuple(gates.shape) != (layers, heads):
            raise ValueError(f"expected gates of shape ({layers}, {heads}), got {tuple(gates.shape)}")
        self.gates = gates
        self.num_heads = heads
        self._handles: list = []

    def _hook(self, layer: int):
        def pre_hook(module: nn.Linear, args: tuple) -> tuple:
            (context, *rest) = args  # (B, T, nh * hs): the heads side by side, before W_O
            B, T, width = context.shape
            heads = context.view(B, T, self.num_heads, width // self.num_heads)  # (B, T, nh, hs)
            gate = self.gates[layer].to(device=context.device, dtype=context.dtype)  # (nh,)
            return ((heads * gate[:, None]).reshape(B, T, width), *rest)  # (B, T, nh * hs)
        return pre_hook

    def __enter__(self) -> HeadGates:
        if self._handles:
            raise RuntimeError("expected HeadGates to be entered once at a time, but it is already active")
        self._handles = [p.register_forward_pre_hook(self._hook(i)) for i, p in enumerate(self.projections)]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def head_importance(model: nn.Module, loss_fn: Callable[[], torch.Tensor], *, batches: int = 1) -> torch.Tensor:
    """Michel et al.'s importance: ``|d loss / d gate|`` of every head, summed over ``batches`` calls.

    ``loss_fn()`` runs ``model`` (under the gates that this function attaches) and
    returns a scalar loss; call it on different data each time if ``batches > 1``.

    Shape:
        -> (layers, heads), non-negative
    """
    if not callable(loss_fn):
        raise TypeError(f"expected loss_fn to be callable, got {type(loss_fn).__name__}")
    _validate.positive_int(batches, "batches")
    layers, heads = head_shape(model)
    device = next(model.parameters()).device
    gates = torch.ones(layers, heads, device=device, requires_grad=True)
    importance = torch.zeros(layers, heads, device=device)
    with HeadGates(model, gates):
        for _ in range(batches):
            loss = loss_fn()
            if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
                raise ValueError(f"expected loss_fn to return a scalar tensor, got {loss!r:.60}")
            (grad,) = torch.autograd.grad(loss, gates)
            importance += grad.abs()
    return importance.detach().cpu()


def prune_order(importance: torch.Tensor) -> list[tuple[int, int]]:
    """Every ``(layer, head)``, least important first (ties broken by position).

    Shape:
        importance (layers, heads) -> list of layers * heads pairs
    """
    _validate.tensor(importance, "importance", ndim=2, floating=True)
    heads = importance.shape[1]
    flat = importance.detach().cpu().flatten()
    order = sorted(range(flat.numel()), key=lambda i: (float(flat[i]), i))
    return [(i // heads, i % heads) for i in order]
