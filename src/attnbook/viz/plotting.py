"""Plots the chapters share: attention heatmaps, learning curves, accuracy by length."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

__all__ = ["attention_heatmap", "learning_curves", "accuracy_by_length"]


def attention_heatmap(weights: torch.Tensor | np.ndarray, queries: Sequence[str], keys: Sequence[str], *,
                      ax: plt.Axes | None = None, title: str | None = None, cmap: str = "viridis",
                      annotate: bool = False) -> plt.Axes:
    """Draw attention weights as a heatmap, one row per query token, one column per key.

    Shape:
        weights: (len(queries), len(keys)); each row usually sums to one
    """
    w = weights.detach().cpu().numpy() if isinstance(weights, torch.Tensor) else np.asarray(weights)
    if w.ndim != 2:
        raise ValueError(f"expected 2-D weights (queries, keys), got shape {w.shape}")
    if w.shape != (len(queries), len(keys)):
        raise ValueError(f"expected weights of shape ({len(queries)}, {len(keys)}) to match the labels, "
                         f"got {w.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(0.32 * len(keys) + 1.5, 0.32 * len(queries) + 1.2))
    ax.imshow(w, cmap=cmap, vmin=0.0, vmax=max(1e-9, float(w.max())), aspect="auto")
    ax.set_xticks(range(len(keys)), labels=list(keys), rotation=90)
    ax.set_yticks(range(len(queries)), labels=list(queries))
    ax.set_xlabel("keys (source)")
    ax.set_ylabel("queries (output)")
    if annotate:
        for i in range(w.shape[0]):
            for j in range(w.shape[1]):
                if w[i, j] >= 0.1:
                    ax.text(j, i, f"{w[i, j]:.1f}", ha="center", va="center", fontsize=6,
                            color="black" if w[i, j] > 0.5 * w.max() else "white")
    if title:
        ax.set_title(title)
    return ax


def learning_curves(histories: Mapping[str, object], *, ax: plt.Axes | None = None,
                    log: bool = True) -> plt.Axes:
    """Training loss against step, one line per named :class:`~attnbook.training.History`."""
    if not isinstance(histories, Mapping) or not histories:
        raise TypeError("expected a non-empty mapping of name -> History")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    for name, h in histories.items():
        if not hasattr(h, "step") or not hasattr(h, "loss"):
            raise TypeError(f"expected a History for {name!r}, got {type(h).__name__}")
        ax.plot(h.step, h.loss, label=name)
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss (nats per token)")
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def accuracy_by_length(tables: Mapping[str, pd.DataFrame], *, ax: plt.Axes | None = None,
                       threshold: float | None = 0.5) -> plt.Axes:
    """Exact match against number of digits, one line per named table.

    Each table has columns ``digits`` and ``exact_match``
    (see :func:`attnbook.evaluation.exact_match_by_length`).
    """
    if not isinstance(tables, Mapping) or not tables:
        raise TypeError("expected a non-empty mapping of name -> table")
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.4))
    for name, table in tables.items():
        if not {"digits", "exact_match"} <= set(getattr(table, "columns", [])):
            raise ValueError(f"expected a table with columns 'digits' and 'exact_match' for {name!r}")
        grouped = table.groupby("digits").exact_match.mean()
        ax.plot(grouped.index, 100 * grouped.values, marker="o", label=name)
    if threshold is not None:
        ax.axhline(100 * threshold, color="grey", ls=":", lw=1)
    ax.set_xlabel("digits in the number (input length grows with it)")
    ax.set_ylabel("exact match on held-out numbers (%)")
    ax.set_ylim(-3, 103)
    ax.grid(alpha=0.3)
    ax.legend()
    return ax
