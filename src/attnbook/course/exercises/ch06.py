"""Chapter 6 exercises: layer normalisation, a causal block that trains, one cached attention step, temperature."""

from __future__ import annotations

from collections.abc import Callable

import torch

from torch import nn

from attnbook.course import check
from attnbook.course.exercises._trial import module_output, result_tensor, run_trial, train_steps, trial_result
from attnbook.attention import scaled_dot_product_attention

__all__ = ["check_layer_norm", "check_block", "check_cached_step", "check_temperature"]


def check_layer_norm(layer_norm: Callable[..., torch.Tensor]) -> None:
    """``layer_norm(x, weight, bias)``: normalise over the last dimension (biased variance, eps=1e-5).

    Shapes: x (..., d), weight and bias (d,) -> (..., d).
    """
    cases = []
    for seed, shape in enumerate([(1, 2), (3, 5), (2, 4, 8)]):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(*shape, generator=g) * 3 + 1
        w, b = torch.randn(shape[-1], generator=g), torch.randn(shape[-1], generator=g)
        cases.append(((x, w, b), torch.nn.functional.layer_norm(x, (shape[-1],), w, b, eps=1e-5)))
    check.cases(layer_norm, cases, "Exercise 6.1 (layer normalisation)", atol=1e-4)


_BLOCK = "Exercise 6.2 (a causal pre-LN block that trains)"
COPY_LENGTH, COPY_VOCAB, COPY_THRESHOLD = 8, 10, 0.2


class _CopyModel(nn.Module):
    """Embedding + learned positions -> two of the learner's blocks -> LayerNorm -> read-out."""

    def __init__(self, make_block: Callable[[int, int], nn.Module], d_model: int = 32, num_heads: int = 4):
        super().__init__()
        self.embed = nn.Embedding(COPY_VOCAB, d_model)
        self.position = nn.Parameter(0.3 * torch.randn(2 * COPY_LENGTH, d_model))
        self.blocks = nn.ModuleList(make_block(d_model, num_heads) for _ in range(2))
        self.norm = nn.LayerNorm(d_model)
        self.read_out = nn.Linear(d_model, COPY_VOCAB)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(ids) + self.position[: ids.shape[1]]  # (B, T, d_model)
        for block in self.blocks:
            h = block(h)
        return self.read_out(self.norm(h))  # (B, T, vocab)


def _copy_batch(g: torch.Generator, batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Eight random digits, then the same eight again; the loss counts the second half."""
    first = torch.randint(0, COPY_VOCAB, (batch, COPY_LENGTH), generator=g)
    seq = torch.cat([first, first], 1)  # (B, 16)
    return seq[:, :-1], seq[:, 1:]  # inputs and next-token targets, (B, 15) each


def _copy_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model(x)[:, COPY_LENGTH - 1:]  # positions whose next digit was seen 8 steps earlier
    return nn.functional.cross_entropy(logits.flatten(0, 1), y[:, COPY_LENGTH - 1:].flatten())


def _block_probes() -> tuple[torch.Tensor, ...]:
    """A probe input, the same with positions 6-11 changed, held-out copy inputs and targets."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 12, 32, generator=g)
    changed = x.clone()
    changed[:, 6:] = torch.randn(2, 6, 32, generator=g)
    heldout_x, heldout_y = _copy_batch(torch.Generator().manual_seed(2), 256)
    return x, changed, heldout_x, heldout_y


def block_trial(make_block: Callable[[int, int], nn.Module], x: torch.Tensor, changed: torch.Tensor,
                heldout_x: torch.Tensor, steps: int) -> dict:
    """Run the learner's block where it lives (in a graded submission: its kernel); plain data back.

    Returns ``{"y", "y_changed", "zeroed", "heldout_logits", "train"}`` (tensors and a
    float), or ``{"problem": message}`` when the block cannot be built or called.
    Raises ``NotImplementedError`` when the block is still a stub. The verdict is
    :func:`check_block`'s, from this data.
    """
    with torch.random.fork_rng():  # the caller's random state is left as it was
        torch.manual_seed(0)
        block = make_block(32, 4)
        if not isinstance(block, nn.Module):
            return {"problem": f"expected make_block(32, 4) to return an nn.Module, got {type(block).__name__}"}
        block.eval()
        with torch.no_grad():
            y, y_changed = module_output(block, x, "block"), module_output(block, changed, "block")
            for p in block.parameters():
                p.zero_()
            zeroed = module_output(block, x, "block")
        for out in (y, y_changed, zeroed):
            if isinstance(out, str):
                return {"problem": out}
        torch.manual_seed(0)
        model = _CopyModel(make_block)
        g = torch.Generator().manual_seed(1)
        train = train_steps(model, lambda: _copy_batch(g), _copy_loss, steps)
        with torch.no_grad():
            logits = model(heldout_x)
        return {"y": y, "y_changed": y_changed, "zeroed": zeroed, "heldout_logits": logits.detach(),
                "train": train}


def check_block(make_block: Callable[[int, int], nn.Module], *, steps: int = 100) -> dict[str, float]:
    """``make_block(d_model, num_heads)`` -> a causal pre-LN block: ``x + Attn(LN(x))``, then ``x + FF(LN(x))``.

    Three checks, in this order: (1) **causal**: changing the tokens after position t
    leaves the outputs up to t unchanged; (2) **residual**: with every parameter set to
    zero, a pre-LN block returns its input (each sub-layer adds zero to the residual
    stream); (3) **it trains**: two such blocks (d_model 32, 4 heads) learn to repeat
    eight random digits within ``steps`` Adam steps (held-out loss on the repeated half
    at most ``COPY_THRESHOLD`` nats; chance is ln 10 = 2.3). Returns the losses.

    The block runs in :func:`block_trial`; when grading, that runs in the submission's
    kernel and only its outputs come back, so the verdict is computed here, from data.

    Shapes: the block maps (B, T, d_model) -> (B, T, d_model).
    """
    if not callable(make_block):
        raise TypeError(f"expected a class or function make_block(d_model, num_heads), got "
                        f"{type(make_block).__name__}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"expected steps to be a positive int, got {steps!r}")
    x, changed, heldout_x, heldout_y = _block_probes()
    result = run_trial(make_block, block_trial, _BLOCK, x, changed, heldout_x, steps)
    return _judge_block(result, x, heldout_x, heldout_y, steps)


def _judge_block(result: dict, x: torch.Tensor, heldout_x: torch.Tensor, heldout_y: torch.Tensor,
                 steps: int) -> dict[str, float]:
    result = trial_result(result, _BLOCK)
    y, y_changed, zeroed = (result_tensor(result, key, tuple(x.shape), _BLOCK) for key in ("y", "y_changed", "zeroed"))
    leak = (y[:, :6] - y_changed[:, :6]).abs().max().item()
    if not leak <= 1e-5:
        raise check.CheckFailed(f"{_BLOCK}: changing positions 6-11 changed the outputs at positions 0-5 (by up to "
                                f"{leak:.3g}): each position may only attend to itself and earlier ones; is the "
                                "causal mask missing?")
    gap = (zeroed - x).abs().max().item()
    if not gap <= 1e-5:
        raise check.CheckFailed(f"{_BLOCK}: with every weight at zero the block should return its input (x + 0 + 0, "
                                f"the residual path), but it differs by up to {gap:.3g}: is a residual connection "
                                "missing, or is a LayerNorm applied after the addition (post-LN)?")
    logits = result_tensor(result, "heldout_logits", (*heldout_x.shape, COPY_VOCAB), _BLOCK)
    heldout = nn.functional.cross_entropy(logits[:, COPY_LENGTH - 1:].flatten(0, 1),  # the repeated half
                                          heldout_y[:, COPY_LENGTH - 1:].flatten()).item()
    check.at_most(heldout, COPY_THRESHOLD, f"{_BLOCK}: held-out loss on the repeated digits after {steps} steps")
    train = result.get("train")
    return {"train": float(train) if isinstance(train, (int, float)) else float("nan"), "heldout": heldout}


def check_cached_step(step: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> None:
    """``step(q, k_new, v_new, k_cache, v_cache)`` -> ``(output, k_cache, v_cache)``.

    Append the new token's key and value to the cache, then let its query attend to
    the whole cache. Shapes: q, k_new, v_new (B, nh, 1, hs); caches (B, nh, T, hs)
    -> output (B, nh, 1, hs), caches (B, nh, T + 1, hs).
    """
    cases = []
    for seed, (B, nh, T, hs) in enumerate([(1, 1, 1, 2), (2, 2, 3, 4), (1, 4, 6, 8)]):
        g = torch.Generator().manual_seed(seed)
        q, k, v = (torch.randn(B, nh, 1, hs, generator=g) for _ in range(3))
        kc, vc = torch.randn(B, nh, T, hs, generator=g), torch.randn(B, nh, T, hs, generator=g)
        k_all, v_all = torch.cat([kc, k], 2), torch.cat([vc, v], 2)  # (B, nh, T + 1, hs)
        expected = scaled_dot_product_attention(q, k_all, v_all)[0]  # (B, nh, 1, hs)
        cases.append(((q, k, v, kc, vc), _pack((expected, k_all, v_all))))
    check.cases(lambda *args: _pack(step(*args)), cases, "Exercise 6.3 (one attention step with a KV cache)",
                atol=1e-5)


def _pack(result: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """The output and both caches, flattened into one tensor to compare (a wrong shape shows as a wrong length)."""
    if not isinstance(result, tuple) or len(result) != 3:
        raise TypeError(f"expected (output, k_cache, v_cache), got {type(result).__name__}")
    out, k, v = result
    return torch.cat([out.flatten(), k.flatten(), v.flatten()])


def check_temperature(probabilities: Callable[[torch.Tensor, float], torch.Tensor]) -> None:
    """``probabilities(logits, temperature)``: ``softmax(logits / temperature)`` over the last dimension.

    Shapes: logits (..., V) -> (..., V).
    """
    cases = []
    for seed, (shape, temperature) in enumerate([((4,), 1.0), ((2, 5), 0.5), ((3, 7), 2.0)]):
        logits = torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 2
        cases.append(((logits, temperature), torch.softmax(logits / temperature, dim=-1)))
    check.cases(probabilities, cases, "Exercise 6.4 (sampling temperature)", atol=1e-6)


# Plausible mistakes each check must reject: (what is wrong, function[, pattern the failure must match]).
WRONG_ANSWERS = {
    "check_layer_norm": [("unbiased variance", lambda x, w, b:
                          (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True) * w + b)],
    "check_cached_step": [("forgot to append the new key and value", lambda q, k, v, kc, vc:
                           (scaled_dot_product_attention(q, kc, vc)[0], kc, vc))],
    "check_temperature": [("multiplied instead of divided", lambda logits, t: torch.softmax(logits * t, dim=-1))],
    "check_block": [("no causal mask: each position sees the future", lambda d, h: _NoMask(d, h), "causal"),
                    ("no residual connections", lambda d, h: _NoResidual(d, h), "residual")],
}


class _NoMask(nn.Module):
    """A likely wrong block: the package's pre-LN block, run without the causal mask."""

    def __init__(self, d_model: int, num_heads: int):
        super().__init__()
        from attnbook.layers import Block, BlockConfig
        self.block = Block(BlockConfig(d_model, num_heads))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class _NoResidual(_NoMask):
    """A likely wrong block: attention and feed-forward stacked without adding the input back."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.block
        a = b.self_attention(b.norm1(x), is_causal=True)
        return b.feed_forward(b.norm2(a))
