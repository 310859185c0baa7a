"""Chapter 9 exercises: the online softmax, one FlashAttention tile, a tiled attention kernel with linear memory,
a sliding-window mask, linear attention.

Where an exercise forbids something (a maximum over the whole input, an ``(L, S)`` matrix,
PyTorch's fused attention), the check runs the learner's function under an operation log
and :class:`attnbook.cost.TensorMemoryTracker` in a *trial* (:func:`op_trial`). When
grading, the trial runs in the submission's kernel (``in_kernel``, as
:func:`attnbook.course.exercises.ch06.check_block` does) and only its plain-data report
comes back; the verdict is judged here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from attnbook.cost import TensorMemoryTracker
from attnbook.course import check
from attnbook.course.exercises._trial import run_trial, trial_result
from attnbook.linear_attention import linear_attention, linear_attention_quadratic
from attnbook.sparse import sliding_window_mask

__all__ = ["check_online_softmax", "check_flash_step", "check_local_mask", "check_linear_attention",
           "check_tiled_attention"]

_REDUCTIONS = ("max", "amax", "aminmax", "sum", "logsumexp", "_softmax", "softmax", "sort", "topk", "cumsum")


class _OpLog(TorchDispatchMode):
    """Records every operation's name and the largest input it read (in elements)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[str, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        sizes = [t.numel() for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        self.ops.append((func.__name__.split(".")[0], max(sizes, default=0)))
        return func(*args, **kwargs)


def op_trial(fn: Callable[..., Any], calls: list[list[torch.Tensor | int]]) -> dict[str, Any]:
    """Run ``fn(*args)`` for each argument list under an op log and a memory tracker.

    Returns plain data for the check to judge: per call, the peak bytes of tensor
    memory ``fn`` held, the largest tensor it created (elements), the reductions it ran
    with the size of what they reduced, and whether it called PyTorch's fused attention.
    ``fn`` is the learner's function (in a graded submission, this runs in its kernel).
    """
    report = []
    for args in calls:
        log, tracker = _OpLog(), TensorMemoryTracker()
        largest = []

        class _Largest(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, a=(), k=None):
                out = func(*a, **(k or {}))
                largest.extend(t.numel() for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor))
                return out

        fused: list[str] = []
        try:
            with _spying(fused), tracker, log, _Largest():
                fn(*args)
        except NotImplementedError:
            return {"problem": "not implemented yet (replace the `raise NotImplementedError`)"}
        except Exception as err:  # noqa: BLE001 - reported to the learner
            return {"problem": f"calling it raised {type(err).__name__}: {err}"}
        fused += [name for name, _ in log.ops if "scaled_dot_product" in name or "flash_attention" in name]
        report.append({"peak": int(tracker.peak), "largest": max(largest, default=0),
                       "reductions": [[name, size] for name, size in log.ops if name in _REDUCTIONS],
                       "fused": sorted(set(fused))})
    return {"calls": report}


@contextlib.contextmanager
def _spying(calls: list[str]):
    """Replace PyTorch's fused attention and the package's tiled one by spies that note each call."""
    import attnbook.flash as flash

    targets = [(torch.nn.functional, "scaled_dot_product_attention"), (flash, "flash_attention_forward")]
    originals = [getattr(module, name) for module, name in targets]

    def spy(name, original):
        def call(*args, **kwargs):
            calls.append(name)
            return original(*args, **kwargs)
        return call

    for (module, name), original in zip(targets, originals):
        setattr(module, name, spy(name, original))
    try:
        yield
    finally:
        for (module, name), original in zip(targets, originals):
            setattr(module, name, original)


def _trial(fn: Callable[..., Any], name: str, calls: list[list[Any]]) -> list[dict[str, Any]]:
    result = trial_result(run_trial(fn, op_trial, name, calls), name)
    report = result.get("calls")
    if not isinstance(report, list) or len(report) != len(calls):
        raise check.CheckFailed(f"{name}: the trial returned no report for each call")
    return report


def check_online_softmax(online: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """``online(x, block_size)``: the softmax of a 1-D ``x``, read block by block with a running max and sum.

    Some cases have scores around 1000, where ``exp`` without subtracting the maximum
    overflows, and one has its maximum far above the first block's. Shapes: x (N,) -> (N,).
    Then the rule: no reduction (max, sum, softmax, ...) may read more than one block at
    a time, checked by logging the operations ``online`` runs on 40 scores in blocks of 8.
    """
    name = "Exercise 9.1 (online softmax)"
    cases = []
    for seed, (n, block, shift) in enumerate([(5, 2, 0.0), (7, 3, 0.0), (12, 5, 1000.0), (9, 9, -1000.0),
                                              (10, 1, 500.0)]):
        x = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3 + shift
        x[seed % n] += 5.0  # a clear maximum, somewhere other than the first block in most cases
        cases.append(((x, block), torch.softmax(x, dim=0)))
    late = torch.cat([torch.full((4,), -800.0), torch.linspace(0.0, 900.0, 6)]).double()  # the max comes late
    cases.append(((late, 3), torch.softmax(late, dim=0)))
    check.cases(online, cases, name, atol=1e-10)
    x = torch.randn(40, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    (call,) = _trial(online, name, [[x, 8]])
    wide = [(op, size) for op, size in call["reductions"] if size > 8]
    if wide:
        op, size = wide[0]
        raise check.CheckFailed(f"{name}: `{op}` read {size} scores at once, with blocks of 8: the maximum "
                                "and the sum must be kept as running values, block by block (no x.max() or "
                                "softmax over the whole tensor)")
    print(f"PASS  {name}: no reduction reads more than one block")


def check_flash_step(step: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> None:
    """``step(acc, m, l, s, v)``: fold one block of scores and values into the running state.

    ``acc`` (L, d_v) is the unnormalised output so far, ``m`` (L,) the running maximum
    of the scores, ``l`` (L,) the running sum of ``exp(score - m)``; ``s`` (L, B) is
    the new block of scores and ``v`` (B, d_v) its values. Returns the new
    ``(acc, m, l)``. The check starts from ``acc = 0``, ``m = -inf``, ``l = 0``, feeds
    the blocks one after another and compares ``acc / l`` with ``softmax(S) V``.
    """
    def run(scores: torch.Tensor, values: torch.Tensor, block: int) -> torch.Tensor:
        L, S = scores.shape
        acc = torch.zeros(L, values.shape[-1], dtype=scores.dtype)
        m = torch.full((L,), float("-inf"), dtype=scores.dtype)
        l = torch.zeros(L, dtype=scores.dtype)
        for j in range(0, S, block):
            acc, m, l = step(acc, m, l, scores[:, j:j + block], values[j:j + block])
        return acc / l[:, None]

    cases = []
    for seed, (L, S, dv, block, spread) in enumerate([(2, 4, 3, 2, 1.0), (3, 7, 2, 3, 4.0), (4, 10, 5, 4, 30.0)]):
        g = torch.Generator().manual_seed(seed)
        scores = torch.randn(L, S, generator=g, dtype=torch.float64) * spread
        scores[:, -1] += 2 * spread  # the maximum comes late, so the old blocks must be rescaled
        values = torch.randn(S, dv, generator=g, dtype=torch.float64)
        cases.append(((scores, values, block), torch.softmax(scores, dim=-1) @ values))
    check.cases(lambda s, v, b: run(s, v, b), cases, "Exercise 9.2 (one FlashAttention step)", atol=1e-9)


TILED_LENGTH, TILED_BLOCK = 2048, 128  # the memory trial of exercise 9.5


def check_tiled_attention(tiled: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]) -> None:
    """``tiled(q, k, v, block)``: exact softmax attention of one head, computed tile by tile.

    q (L, d), k (S, d), v (S, d_v) -> (L, d_v), equal to ``softmax(q k^T / sqrt(d)) v``
    for lengths that are not multiples of ``block`` and for L != S. Then two rules,
    measured: its peak tensor memory at L = S = 2,048 with blocks of 128 is at most a
    sixteenth of one (L, S) float32 matrix (1 MiB) and grows at most linearly (4x the length, at
    most 6x the memory: quadratic would be 16x); and it never calls PyTorch's fused
    attention (``scaled_dot_product_attention``) or the package's ``flash_attention``.
    """
    name = "Exercise 9.5 (tiled attention, linear memory)"
    cases = []
    for seed, (L, S, d, dv, block) in enumerate([(5, 5, 4, 3, 2), (37, 53, 8, 5, 16), (100, 64, 16, 16, 32)]):
        g = torch.Generator().manual_seed(seed)
        q, k = torch.randn(L, d, generator=g) * 2, torch.randn(S, d, generator=g) * 2
        v = torch.randn(S, dv, generator=g)
        expected = torch.softmax(q @ k.T / d ** 0.5, dim=-1) @ v
        cases.append(((q, k, v, block), expected))
    check.cases(tiled, cases, name, atol=1e-5)
    g = torch.Generator().manual_seed(3)
    calls = [[*(torch.randn(n, 32, generator=g) for _ in range(3)), TILED_BLOCK]
             for n in (TILED_LENGTH // 4, TILED_LENGTH)]
    short, long = _trial(tiled, name, calls)
    if short["fused"] or long["fused"]:
        called = ", ".join(sorted(set(short["fused"] + long["fused"])))
        raise check.CheckFailed(f"{name}: it called a fused attention ({called}): write the tiles yourself, "
                                "with your step")
    matrix = TILED_LENGTH * TILED_LENGTH * 4  # one (L, S) float32 matrix, bytes
    check.at_most(long["peak"] / matrix, 1 / 16, f"{name}: peak memory at {TILED_LENGTH:,} tokens, in (L, S) "
                  "float32 matrices (a whole score matrix is 1)")
    check.at_most(long["peak"] / max(short["peak"], 1), 6.0,
                  f"{name}: peak memory at {TILED_LENGTH:,} / at {TILED_LENGTH // 4:,} tokens (linear: 4, "
                  "quadratic: 16)")


def check_local_mask(local_mask: Callable[[int, int, int], torch.Tensor]) -> None:
    """``local_mask(length, window, num_global)``: bool (length, length), True = may attend.

    Query ``i`` may read key ``j`` when ``|i - j| <= window``, or when ``i`` or ``j`` is
    one of the first ``num_global`` positions (not causal).
    """
    cases = [((length, window, g), sliding_window_mask(length, window, num_global=g))
             for length, window, g in [(5, 1, 0), (8, 2, 1), (10, 0, 2), (12, 3, 3)]]
    check.cases(local_mask, cases, "Exercise 9.3 (sliding-window mask with global tokens)", atol=0.0, rtol=0.0)


LINEAR_LENGTH = 2048  # the memory trial of exercise 9.4


def check_linear_attention(linear: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """``linear(q, k, v)``: non-causal linear attention with the feature map ``elu(x) + 1``.

    ``phi(Q) (phi(K)^T V)`` divided row by row by ``phi(Q) sum_j phi(k_j)``.
    Shapes: q (B, L, d), k (B, S, d), v (B, S, d_v) -> (B, L, d_v). Then the rule, measured:
    no (L, S) matrix: at L = S = 2,048 (d = 16) the largest tensor it creates holds fewer
    than L S / 8 numbers, and 4x the length costs at most 6x the peak memory.
    """
    name = "Exercise 9.4 (linear attention)"
    cases = []
    for seed, (B, L, S, d, dv) in enumerate([(1, 3, 3, 2, 2), (2, 5, 7, 4, 3), (2, 8, 6, 8, 5)]):
        g = torch.Generator().manual_seed(seed)
        q, k = torch.randn(B, L, d, generator=g), torch.randn(B, S, d, generator=g)
        v = torch.randn(B, S, dv, generator=g)
        cases.append(((q, k, v), linear_attention(q, k, v)))
    check.cases(linear, cases, name, atol=1e-5)
    g = torch.Generator().manual_seed(4)
    calls = [[torch.randn(1, n, 16, generator=g) for _ in range(3)] for n in (LINEAR_LENGTH // 4, LINEAR_LENGTH)]
    short, long = _trial(linear, name, calls)
    if long["largest"] >= LINEAR_LENGTH ** 2 // 8:
        raise check.CheckFailed(f"{name}: it created a tensor of {long['largest']:,} numbers at L = S = "
                                f"{LINEAR_LENGTH:,}: that is an (L, S) matrix; compute phi(K)^T V first")
    check.at_most(long["peak"] / max(short["peak"], 1), 6.0,
                  f"{name}: peak memory at {LINEAR_LENGTH:,} / at {LINEAR_LENGTH // 4:,} tokens (linear: 4, "
                  "quadratic: 16)")


def _step_without_rescaling(acc, m, l, s, v):
    m_new = torch.maximum(m, s.amax(-1))
    p = torch.exp(s - m_new[:, None])
    return acc + p @ v, m_new, l * torch.exp(m - m_new) + p.sum(-1)  # forgot to rescale acc


def _step_normalised_each_block(acc, m, l, s, v):
    m_new = torch.maximum(m, s.amax(-1))
    p = torch.exp(s - m_new[:, None])
    rescale = torch.exp(m - m_new)
    l_new = l * rescale + p.sum(-1)
    return (acc * rescale[:, None] + p @ v) / l_new[:, None], m_new, l_new  # divided too early


def _no_global_rows(n, w, g):
    return sliding_window_mask(n, w) | (torch.arange(n)[None, :] < g)


def _max_first(x, block):  # right values, but the maximum of the whole tensor is taken before the loop
    m = x.max()
    total = sum(torch.exp(x[i:i + block] - m).sum() for i in range(0, len(x), block))
    return torch.exp(x - m) / total


def _tiles_with_sdpa(q, k, v, block):  # right values, no score matrix held: but PyTorch's fused kernel
    out = [torch.nn.functional.scaled_dot_product_attention(q[i:i + block], k, v) for i in range(0, len(q), block)]
    return torch.cat(out)


def _whole_matrix(q, k, v, block):  # right values, but the whole (L, S) matrix at once
    return torch.softmax(q @ k.T / q.shape[-1] ** 0.5, dim=-1) @ v


def _query_tiles_only(q, k, v, block):  # tiles the queries, but each holds a (block, S) strip: memory ~ L
    out = [torch.softmax(q[i:i + block] @ k.T / q.shape[-1] ** 0.5, dim=-1) @ v for i in range(0, len(q), block)]
    return torch.cat(out)


# Plausible mistakes each check must reject: (what is wrong, function[, pattern the failure must match]).
WRONG_ANSWERS = {
    "check_online_softmax": [("no running max: exp overflows", lambda x, b: torch.exp(x) / torch.exp(x).sum()),
                             ("the max of the first block only", lambda x, b:
                              torch.exp(x - x[:b].max()) / torch.exp(x - x[:b].max()).sum()),
                             ("the maximum of the whole tensor first (forbidden)", _max_first, "read 40 scores"),
                             ("torch.softmax (forbidden)", lambda x, b: torch.softmax(x, 0), "read 40 scores")],
    "check_flash_step": [("forgot to rescale the accumulator", _step_without_rescaling),
                         ("divided by the sum in every block", _step_normalised_each_block)],
    "check_tiled_attention": [("PyTorch's fused attention, per block of queries", _tiles_with_sdpa,
                               "fused attention"),
                              ("the package's flash_attention", lambda q, k, v, b: __import__(
                                  "attnbook.flash").flash.flash_attention(q, k, v, block_q=b, block_k=b),
                               "fused attention"),
                              ("the whole score matrix at once", _whole_matrix, "peak memory at 2,048 tokens, in"),
                              ("query blocks against all keys: a (block, S) strip, quadratic in total",
                               _query_tiles_only, "peak memory at 2,048 tokens, in")],
    "check_local_mask": [("global rows forgotten", _no_global_rows),
                         ("window one too narrow", lambda n, w, g:
                          sliding_window_mask(n, max(w - 1, 0), num_global=g)),
                         ("one-sided (causal) window", lambda n, w, g: sliding_window_mask(n, w, causal=True,
                                                                                            num_global=g))],
    "check_linear_attention": [("no normalisation", lambda q, k, v:
                                (torch.nn.functional.elu(q) + 1) @ ((torch.nn.functional.elu(k) + 1).mT @ v)),
                               ("softmax attention instead", torch.nn.functional.scaled_dot_product_attention),
                               ("the quadratic form: an (L, S) matrix of weights",
                                lambda q, k, v: linear_attention_quadratic(q, k, v)[0], "an \\(L, S\\) matrix")],
}
