"""Chapter 1 exercises: a GRU step by hand, exact match, and where accuracy falls."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import torch

from attnbook.course import check

__all__ = ["check_gru_step", "check_exact_match", "check_drop_point"]


def _gru_cases() -> list[tuple[tuple, torch.Tensor]]:
    out = []
    for seed, (batch, n_in, n_h) in enumerate([(1, 2, 3), (4, 5, 3), (2, 8, 16)]):
        torch.manual_seed(seed)
        cell = torch.nn.GRUCell(n_in, n_h)
        x, h = torch.randn(batch, n_in), torch.randn(batch, n_h)
        with torch.no_grad():
            want = cell(x, h)
        args = (x, h, cell.weight_ih.detach(), cell.weight_hh.detach(), cell.bias_ih.detach(), cell.bias_hh.detach())
        out.append((args, want))
    return out


def check_gru_step(gru_step: Callable[..., torch.Tensor]) -> None:
    """``gru_step(x, h, W_ih, W_hh, b_ih, b_hh)`` must equal ``torch.nn.GRUCell``.

    Shapes: x (B, I), h (B, H), W_ih (3H, I), W_hh (3H, H), b_ih and b_hh (3H,);
    the gates are stacked in PyTorch's order: reset, update, new.
    """
    check.cases(gru_step, _gru_cases(), "Exercise 1.1 (GRU step)", atol=1e-5)


def check_exact_match(exact_match: Callable[[list[str], list[str]], float]) -> None:
    """``exact_match(predictions, targets)``: the share of predictions equal to their target."""
    cases = [
        ((["12", "7"], ["12", "7"]), 1.0),
        ((["12", "7"], ["12", "8"]), 0.5),
        ((["120", "7", "5", "99"], ["12", "7", "6", "99"]), 0.5),  # "120" is not "12": whole answers only
        ((["", "3"], ["3", "3"]), 0.5),
    ]
    check.cases(exact_match, cases, "Exercise 1.2 (exact match)")


def check_drop_point(drop_point: Callable[[pd.DataFrame, float], int | None]) -> None:
    """``drop_point(table, threshold)``: the fewest digits whose accuracy is below ``threshold``.

    ``table`` has columns ``digits`` and ``exact_match`` (rows in any order);
    return ``None`` if no row is below the threshold.
    """
    t1 = pd.DataFrame({"digits": [1, 2, 3, 4, 5], "exact_match": [1.0, 0.9, 0.6, 0.4, 0.1]})
    t2 = pd.DataFrame({"digits": [3, 1, 2], "exact_match": [0.2, 0.99, 0.3]})
    t3 = pd.DataFrame({"digits": [1, 2], "exact_match": [1.0, 0.97]})
    cases = [((t1, 0.5), 4), ((t1, 0.95), 2), ((t2, 0.5), 2), ((t3, 0.5), None)]
    check.cases(drop_point, cases, "Exercise 1.3 (where accuracy drops)")


def _gru_swapped_update(x, h, W_ih, W_hh, b_ih, b_hh):
    """The update gate the wrong way round: z weights the new candidate, 1 - z the old state."""
    i_r, i_z, i_n = (x @ W_ih.T + b_ih).chunk(3, dim=-1)
    h_r, h_z, h_n = (h @ W_hh.T + b_hh).chunk(3, dim=-1)
    r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
    return z * torch.tanh(i_n + r * h_n) + (1 - z) * h


# Plausible mistakes each check must reject: (what is wrong, function[, pattern the failure must match]).
WRONG_ANSWERS = {
    "check_gru_step": [("returns the old state", lambda x, h, *weights: h),
                       ("update gate the wrong way round", _gru_swapped_update)],
    "check_exact_match": [("prefix matches count", lambda p, t: sum(a.startswith(b) for a, b in zip(p, t)) / len(t),
                           r"case 3"),
                          ("a count, not a share", lambda p, t: sum(a == b for a, b in zip(p, t)))],
    "check_drop_point": [("the first row in table order, not the fewest digits",
                          lambda table, th: next((int(d) for d, a in zip(table.digits, table.exact_match) if a < th),
                                                 None), r"case 3")],
}
