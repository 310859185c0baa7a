"""Chapter 11 exercises: Attention in today's language models (placeholders written by ``new-chapter``: replace them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from attnbook.course import check

__all__ = ["check_scale", "check_row_sums", "check_largest"]



def check_scale(scale: Callable[..., Any]) -> None:
    """TODO: what ``scale(x, factor)`` must return, with shapes. A placeholder: replace it."""
    cases = [((torch.ones(2), 3.0), torch.full((2,), 3.0)), ((torch.arange(4.0), -1.0), -torch.arange(4.0))]
    check.cases(scale, cases, "Exercise 11.1 (scale)")


def check_row_sums(row_sums: Callable[..., Any]) -> None:
    """TODO: what ``row_sums(x)`` must return, with shapes. A placeholder: replace it."""
    cases = [((torch.eye(3),), torch.ones(3)), ((torch.arange(6.0).reshape(2, 3),), torch.tensor([3.0, 12.0]))]
    check.cases(row_sums, cases, "Exercise 11.2 (row sums)")


def check_largest(largest: Callable[..., Any]) -> None:
    """TODO: what ``largest(values)`` must return, with shapes. A placeholder: replace it."""
    cases = [(([1, 5, 2],), 5), (([-3, -1],), -1)]
    check.cases(largest, cases, "Exercise 11.3 (largest)")


# Plausible mistakes each check must reject: (what is wrong, function[, pattern the failure must match]).
WRONG_ANSWERS = {
    "check_scale": [("added instead of multiplied", lambda x, factor: x + factor)],
    "check_row_sums": [("column sums", lambda x: x.sum(dim=0))],
    "check_largest": [("the first number", lambda values: values[0])],
}
