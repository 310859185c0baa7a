"""Pieces shared by the exercise trials that build a learner's module where it lives.

A trial (``block_trial`` in ch06, ``rotary_layer_trial`` in ch04, ``gqa_layer_trial`` in
ch05) runs in a graded submission's kernel and returns plain data; these helpers turn a
failure of the learner's module into a message instead of an exception, so the grader
can report it.
"""

from __future__ import annotations

import torch
from torch import nn


def module_output(module: nn.Module, x: torch.Tensor, what: str = "layer") -> torch.Tensor | str:
    """``module(x)`` detached, or a message when it raises (not a stub) or changes the shape."""
    try:
        y = module(x)
    except NotImplementedError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure of the learner's module is reported, not raised
        return f"calling the {what} on a tensor of shape {tuple(x.shape)} raised {type(err).__name__}: {err}"
    if not isinstance(y, torch.Tensor) or y.shape != x.shape:
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        return f"expected an output of shape {tuple(x.shape)}, got {got}"
    return y.detach()


def projection_weights(layer: nn.Module, names: tuple[str, ...] = ("w_q", "w_k", "w_v", "w_o")
                       ) -> list[torch.Tensor] | str:
    """Copies of the weights of the layer's bias-free ``nn.Linear`` projections, or a message."""
    weights = []
    for name in names:
        lin = getattr(layer, name, None)
        if not isinstance(lin, nn.Linear) or lin.bias is not None:
            return f"expected an attribute {name} that is a bias-free nn.Linear, got {type(lin).__name__}"
        weights.append(lin.weight.detach().clone())
    return weights
