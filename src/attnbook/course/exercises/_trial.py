"""Pieces shared by the exercise trials that build a learner's module where it lives.

A trial (``rotary_layer_trial`` in ch04, ``gqa_layer_trial`` in ch05, ``block_trial`` in
ch06, ``vit_trial`` in ch07) runs in a graded submission's kernel and returns plain data;
the check judges that data in the grader. These helpers run a trial (:func:`run_trial`),
probe and train the learner's layer inside it (:func:`probe_layer`, :func:`train_steps`), turn a failure of the
learner's module into a message instead of an exception (:func:`module_output`), and
read the data back (:func:`trial_result`, :func:`result_tensor`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from attnbook.course import check


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


def probe_layer(build: Callable[[], Any], what: str, inputs: list[torch.Tensor]
                ) -> tuple[list[torch.Tensor], list[torch.Tensor]] | str:
    """Build the learner's attention layer; its projection weights and, in eval mode without
    gradients, its outputs on ``inputs``. A message instead when a step fails."""
    layer = build()
    if not isinstance(layer, nn.Module):
        return f"expected {what} to be an nn.Module, got {type(layer).__name__}"
    weights = projection_weights(layer)
    if isinstance(weights, str):
        return weights
    layer.eval()
    with torch.no_grad():
        outputs = [module_output(layer, x) for x in inputs]
    for out in outputs:
        if isinstance(out, str):
            return f"{what}: {out}"
    return weights, outputs


def run_trial(answer: Callable[..., Any], trial: Callable[..., dict], label: str, *args: Any) -> Any:
    """``trial(answer, *args)``, run where the learner's answer lives; a stub becomes ``CheckFailed``.

    In a graded submission the answer (a class or function of the submission's kernel)
    carries ``in_kernel`` (:mod:`attnbook.course.worker`): the trial, named by its module
    and function, then runs in that kernel and only plain data comes back, which the
    caller judges with :func:`trial_result` and its own checks.
    """
    in_kernel = getattr(answer, "in_kernel", None)
    run = in_kernel(f"{trial.__module__}:{trial.__name__}") if in_kernel is not None else (
        lambda *a: trial(answer, *a))
    try:
        return run(*args)
    except NotImplementedError:
        raise check.CheckFailed(f"{label}: not implemented yet (replace the `raise NotImplementedError`)") from None


def trial_result(result: Any, label: str) -> dict:
    """The trial's dict, or ``CheckFailed`` with the trial's message (or saying what came back)."""
    if not isinstance(result, dict):
        raise check.CheckFailed(f"{label}: the trial returned {type(result).__name__}, expected a dict")
    if "problem" in result:
        raise check.CheckFailed(f"{label}: {result['problem']}")
    return result


def result_tensor(result: dict, key: str, shape: tuple[int, ...], label: str) -> torch.Tensor:
    """``result[key]`` as float32, or ``CheckFailed`` when it is missing or not of ``shape``."""
    value = result.get(key)
    if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise check.CheckFailed(f"{label}: the trial returned no {key} of shape {shape} (got {got})")
    return value.float()


def train_steps(model: nn.Module, batch: Callable[[], tuple[torch.Tensor, ...]],
                loss: Callable[..., torch.Tensor], steps: int, lr: float = 3e-3) -> float:
    """``steps`` Adam steps of ``loss(model, *batch())``; the last loss. The model is left in eval mode."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    last = torch.zeros(())
    for _ in range(steps):
        last = loss(model, *batch())
        opt.zero_grad(set_to_none=True)
        last.backward()
        opt.step()
    model.eval()
    return float(last.detach())


class OneLayerModel(nn.Module):
    """Embedding (+ learned positions, optional) -> pre-LN residual step with the learner's layer
    -> pre-LN feed-forward -> read-out: the smallest model in which a learner's attention layer
    must learn a task. ``make_layer()`` builds the learner's module, (B, T, d) -> (B, T, d)."""

    def __init__(self, make_layer: Callable[[], nn.Module], vocab: int, d_model: int, positions: int | None = None):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.position = None if positions is None else nn.Parameter(0.3 * torch.randn(positions, d_model))
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attention = make_layer()
        self.feed_forward = nn.Sequential(nn.Linear(d_model, 2 * d_model), nn.ReLU(), nn.Linear(2 * d_model, d_model))
        self.read_out = nn.Linear(d_model, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(ids)  # (B, T, d)
        if self.position is not None:
            h = h + self.position[: ids.shape[1]]
        h = h + self.attention(self.norm1(h))
        h = h + self.feed_forward(self.norm2(h))
        return self.read_out(h)  # (B, T, vocab)


def lag_batch(g: torch.Generator, vocab: int, length: int, lag: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random tokens ``(batch, length)`` and the lag task's targets: at position t >= lag, the token at t - lag."""
    x = torch.randint(0, vocab, (batch, length), generator=g)
    return x, x[:, :-lag]  # targets for positions lag..length-1, (batch, length - lag)


def lag_loss(logits: torch.Tensor, targets: torch.Tensor, lag: int) -> torch.Tensor:
    """Cross-entropy of the lag task: ``logits[:, lag:]`` against ``targets``."""
    return nn.functional.cross_entropy(logits[:, lag:].flatten(0, 1), targets.flatten())
