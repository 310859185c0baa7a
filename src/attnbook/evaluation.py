"""Evaluation: exact-match accuracy, overall and per input-length bucket, and attention maps.

Every function here works for any encoder-decoder with the package's one greedy decoder,
``greedy_decode(src, src_len, max_len, *, sos_id=1, eos_id=2) -> (ids, weights)``: the
RNNs of Part I (:class:`attnbook.rnn.Seq2Seq`), chapter 6's transformer, chapter 10's
cross-modal model.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from attnbook import _validate
from attnbook.tasks import Example, NumberTask

__all__ = ["predict", "exact_match_by_length", "attention_maps"]


def _check(model: object, task: object) -> None:
    if not isinstance(model, torch.nn.Module) or not callable(getattr(model, "greedy_decode", None)):
        raise TypeError(f"expected a Seq2Seq model or another module with greedy_decode(src, src_len, max_len, "
                        f"*, sos_id, eos_id) -> (ids, weights), got {type(model).__name__}")
    if not isinstance(task, NumberTask):
        raise TypeError(f"expected a NumberTask, got {type(task).__name__}")


def _decode(model: torch.nn.Module, task: NumberTask, examples: Sequence[Example], device: torch.device
            ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    batch = task.encode(list(examples)).to(device)
    ids, weights = model.greedy_decode(batch.src, batch.src_len, task.max_digits + 1,
                                       sos_id=task.tgt_vocab.sos_id, eos_id=task.tgt_vocab.eos_id)
    return ids, weights, batch.src_len


def _device(model: torch.nn.Module, device: torch.device | str | None) -> torch.device:
    return torch.device(device) if device is not None else next(model.parameters()).device


def predict(model: torch.nn.Module, task: NumberTask, examples: Sequence[Example], *, batch_size: int = 512,
            device: torch.device | str | None = None) -> list[str]:
    """The model's greedy answer (a digit string) for each example."""
    _check(model, task)
    _validate.positive_int(batch_size, "batch_size")
    device = _device(model, device)
    model.eval()
    answers: list[str] = []
    for start in range(0, len(examples), batch_size):
        ids, _, _ = _decode(model, task, examples[start : start + batch_size], device)
        answers += ["".join(task.tgt_vocab.decode(row.tolist())) for row in ids.cpu()]
    return answers


def exact_match_by_length(model: torch.nn.Module, task: NumberTask, split: str = "test", *,
                          by_language: bool = False, device: torch.device | str | None = None) -> pd.DataFrame:
    """Share of examples whose whole answer is right, per number of digits.

    Returns a table with one row per digit count (and language, if asked), with
    columns ``digits``, (``language``,) ``n`` and ``exact_match``.
    """
    _check(model, task)
    examples = task.split(split)
    answers = predict(model, task, examples, device=device)
    frame = pd.DataFrame({"digits": [e.digits for e in examples], "language": [e.language for e in examples],
                          "correct": [a == "".join(e.target) for a, e in zip(answers, examples)]})
    keys = ["digits", "language"] if by_language else ["digits"]
    table = frame.groupby(keys).correct.agg(n="size", exact_match="mean").reset_index()
    return table


def attention_maps(model: torch.nn.Module, task: NumberTask, examples: Sequence[Example], *,
                   device: torch.device | str | None = None) -> list[dict]:
    """Greedy answers with their attention weights, trimmed to each example's tokens.

    Weights with a head axis, (B, heads, T, S) as the transformer's, are averaged over
    the heads. Returns one dict per example with ``weights`` (a NumPy array, one row per
    output token including ``<eos>``, one column per source piece including ``<eos>``),
    ``outputs`` and ``sources`` (the row and column labels) and ``answer``.
    """
    _check(model, task)
    if not examples:
        raise ValueError("expected at least one example, got none")
    model.eval()
    ids, weights, src_len = _decode(model, task, examples, _device(model, device))
    if weights is None:
        raise TypeError(f"expected a model with attention, but {type(model).__name__}.greedy_decode returned no "
                        f"weights (a Seq2Seq with config.attention='none'?)")
    if weights.dim() == 4:
        weights = weights.mean(dim=1)  # (B, T, S): heads averaged
    maps = []
    for i, ex in enumerate(examples):
        digits = task.tgt_vocab.decode(ids[i].tolist())
        rows = len(digits) + 1  # the digits and <eos>
        cols = int(src_len[i])
        maps.append({"weights": weights[i, :rows, :cols].cpu().numpy(), "outputs": [*digits, "<eos>"],
                     "sources": [*ex.source, "<eos>"], "answer": "".join(digits)})
    return maps
