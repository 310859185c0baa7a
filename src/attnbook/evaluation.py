"""Evaluation: exact-match accuracy, overall and per input-length bucket."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from attnbook.rnn import Seq2Seq
from attnbook.tasks import Example, NumberTask

__all__ = ["predict", "exact_match_by_length", "attention_maps"]


def predict(model: torch.nn.Module, task: NumberTask, examples: Sequence[Example], *, batch_size: int = 512,
            device: torch.device | str | None = None) -> list[str]:
    """The model's greedy answer (a digit string) for each example.

    Works for any encoder-decoder with ``greedy_decode(src, src_len, max_len)``
    returning ``(ids, weights)``: the RNNs of Part I and chapter 6's transformer.
    """
    if not isinstance(model, torch.nn.Module) or not callable(getattr(model, "greedy_decode", None)):
        raise TypeError(f"expected a Seq2Seq model or another module with greedy_decode(src, src_len, max_len), "
                        f"got {type(model).__name__}")
    if not isinstance(task, NumberTask):
        raise TypeError(f"expected a NumberTask, got {type(task).__name__}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    answers: list[str] = []
    for start in range(0, len(examples), batch_size):
        batch = task.encode(examples[start : start + batch_size]).to(device)
        ids, _ = model.greedy_decode(batch.src, batch.src_len, max_len=task.max_digits + 1)
        answers += ["".join(task.tgt_vocab.decode(row.tolist())) for row in ids.cpu()]
    return answers


def exact_match_by_length(model: torch.nn.Module, task: NumberTask, split: str = "test", *,
                          by_language: bool = False, device: torch.device | str | None = None) -> pd.DataFrame:
    """Share of examples whose whole answer is right, per number of digits.

    Returns a table with one row per digit count (and language, if asked), with
    columns ``digits``, (``language``,) ``n`` and ``exact_match``.
    """
    examples = task.split(split)
    answers = predict(model, task, examples, device=device)
    frame = pd.DataFrame({"digits": [e.digits for e in examples], "language": [e.language for e in examples],
                          "correct": [a == "".join(e.target) for a, e in zip(answers, examples)]})
    keys = ["digits", "language"] if by_language else ["digits"]
    table = frame.groupby(keys).correct.agg(n="size", exact_match="mean").reset_index()
    return table


def attention_maps(model: Seq2Seq, task: NumberTask, examples: Sequence[Example], *,
                   device: torch.device | str | None = None) -> list[dict]:
    """Greedy answers with their attention weights, trimmed to each example's tokens.

    Returns one dict per example with ``weights`` (a NumPy array, one row per output
    token including ``<eos>``, one column per source piece including ``<eos>``),
    ``outputs`` and ``sources`` (the row and column labels) and ``answer``.
    """
    if not isinstance(model, Seq2Seq) or model.score is None:
        raise TypeError("expected a Seq2Seq model with attention (config.attention other than 'none')")
    if not examples:
        raise ValueError("expected at least one example, got none")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    batch = task.encode(list(examples)).to(device)
    ids, weights = model.greedy_decode(batch.src, batch.src_len, max_len=task.max_digits + 1)
    maps = []
    for i, ex in enumerate(examples):
        digits = task.tgt_vocab.decode(ids[i].tolist())
        rows = len(digits) + 1  # the digits and <eos>
        cols = int(batch.src_len[i])
        maps.append({"weights": weights[i, :rows, :cols].cpu().numpy(), "outputs": [*digits, "<eos>"],
                     "sources": [*ex.source, "<eos>"], "answer": "".join(digits)})
    return maps
