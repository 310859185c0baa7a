"""Muon: momentum orthogonalised by Newton-Schulz, for a network's hidden weight matrices.

Muon (Jordan et al., 2024; the optimizer of the modded-nanogpt speed runs) keeps a
momentum of the gradient of each 2-D weight matrix, like SGD with Nesterov momentum, but
before stepping it replaces the momentum ``G = U S V^T`` by its nearest semi-orthogonal
matrix ``U V^T``: every direction the gradient points in gets the same step size, so the
rare directions are not drowned out by the dominant ones. ``U V^T`` is approximated by
five iterations of a quintic Newton-Schulz polynomial (:func:`orthogonalize`), a few
matrix products and no SVD.

Muon is only for hidden matrices (attention projections, feed-forward layers): the
embeddings, the read-out, norms and biases go to AdamW (:func:`muon_param_groups` splits
a model's parameters that way; :class:`Muon` steps the matrices it is given).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["orthogonalize", "Muon", "muon_param_groups"]

_NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # Jordan et al.: fast growth of small singular values


def orthogonalize(g: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """An approximation of ``U V^T`` for ``g = U S V^T`` by ``steps`` Newton-Schulz iterations.

    The singular values of the result lie roughly in [0.7, 1.2] (not exactly 1: the
    polynomial trades accuracy for speed); the singular vectors are ``g``'s.

    Shape:
        g: (m, n) -> (m, n)
    """
    if not isinstance(g, torch.Tensor) or not g.is_floating_point() or g.dim() != 2:
        got = f"shape {tuple(g.shape)}, {g.dtype}" if isinstance(g, torch.Tensor) else type(g).__name__
        raise ValueError(f"expected a 2-D floating-point tensor, got {got}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"expected steps to be a positive int, got {steps!r}")
    a, b, c = _NS_COEFFICIENTS
    x = g.mT if g.shape[0] > g.shape[1] else g  # iterate on the wide side: X X^T is the small product
    x = x / (x.norm() + eps)  # spectral norm <= Frobenius norm <= 1
    for _ in range(steps):
        A = x @ x.mT
        x = a * x + (b * A + c * A @ A) @ x
    return x.mT if g.shape[0] > g.shape[1] else x


class Muon(torch.optim.Optimizer):
    """SGD with Nesterov momentum whose update is orthogonalised (:func:`orthogonalize`).

    Per matrix ``W`` of shape (m, n): ``M <- beta M + (1 - beta) G``, the update
    ``O = orthogonalize(G + beta (M - G))`` (Nesterov), scaled by ``sqrt(max(1, m / n))``,
    and ``W <- (1 - lr wd) W - lr O``. Every parameter must be 2-D.
    """

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, weight_decay: float = 0.0,
                 nesterov: bool = True, ns_steps: int = 5):
        for name, value, low, high in (("lr", lr, 0.0, math.inf), ("momentum", momentum, 0.0, 1.0),
                                       ("weight_decay", weight_decay, 0.0, math.inf)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"expected {name} to be a number, got {type(value).__name__}")
            if not (math.isfinite(value) and low <= value < high) or (name == "lr" and value == 0):
                opening = "(" if name == "lr" else "["
                raise ValueError(f"expected {name} in {opening}{low}, {high}), got {value!r}")
        if isinstance(ns_steps, bool) or not isinstance(ns_steps, int) or ns_steps < 1:
            raise ValueError(f"expected ns_steps to be a positive int, got {ns_steps!r}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      nesterov=bool(nesterov), ns_steps=ns_steps))
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2:
                    raise ValueError(f"expected only 2-D weight matrices for Muon, got a parameter of shape "
                                     f"{tuple(p.shape)} (give embeddings, norms and biases to AdamW)")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta = group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(g)
                buf = state["momentum_buffer"]
                buf.lerp_(g, 1 - beta)
                g = g.lerp(buf, beta) if group["nesterov"] else buf
                update = orthogonalize(g, group["ns_steps"])
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(update, alpha=-group["lr"] * max(1.0, p.shape[0] / p.shape[1]) ** 0.5)
        return loss


def muon_param_groups(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Split ``model``'s trainable parameters into (hidden matrices for Muon, the rest for AdamW).

    Muon gets the weight of every ``nn.Linear`` except the read-out (the last
    ``nn.Linear`` registered in the model, e.g. a GPT's ``head``) and except any weight
    shared with an ``nn.Embedding`` (a tied read-out); AdamW gets embeddings, the
    read-out, norms, biases and every other parameter.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(model).__name__}")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    embedded = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    hidden_ids = {id(m.weight) for m in linears[:-1]
                  if id(m.weight) not in embedded and m.weight.requires_grad}
    hidden, rest = [], []
    for p in model.parameters():  # each shared parameter once
        if p.requires_grad:
            (hidden if id(p) in hidden_ids else rest).append(p)
    if not hidden:
        raise ValueError("expected a model with at least two nn.Linear layers (hidden matrices for Muon "
                         "besides the read-out), got none")
    return hidden, rest
