"""Chapter 1 exercises: a GRU step by hand, exact match, and where accuracy falls."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import torch

from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from attnbook.course import check
from attnbook.course.exercises._guard import guarded

__all__ = ["check_gru_step", "check_exact_match", "check_drop_point", "check_gru_layer"]


def _gru_cases() -> list[tuple[tuple, torch.Tensor]]:
    out = []
    for seed, (batch, n_in, n_h) in enumerate([(1, 2, 3), (4, 5, 3), (2, 8, 16)]):
        torch.manual_seed(seed)
        cell = torch.nn.GRUCell(n_in, n_h)
        x, h = torch.randn(batch, n_in), torch.randn(batch, n_h)
        with torch.no_grad():
            want = cell(x, h)
        weights = (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
        out.append(((x, h, *(w.detach() for w in weights)), want))
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


_LAYER = "Exercise 1.4 (a GRU layer by hand, with padding)"
GRU_FORBIDDEN = ["torch.nn:GRU.forward", "torch.nn:GRUCell.forward", "torch.nn:RNNBase.forward",
                 "torch:gru", "torch:gru_cell"]


def _layer_cases() -> list[tuple[tuple, tuple[torch.Tensor, ...]]]:
    """((x, lengths, W_ih, W_hh, b_ih, b_hh), (states, final, final read past the padding)), from nn.GRU."""
    out = []
    for seed, (lengths, n_in, n_h) in enumerate([([3], 2, 3), ([5, 2, 4], 4, 6), ([1, 6], 3, 5)]):
        torch.manual_seed(seed)
        gru = torch.nn.GRU(n_in, n_h, batch_first=True)
        lens = torch.tensor(lengths)
        x = torch.randn(len(lengths), max(lengths), n_in)
        with torch.no_grad():
            packed, h_n = gru(pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False))
            states, _ = pad_packed_sequence(packed, batch_first=True, total_length=x.shape[1])
            _, through_padding = gru(x)  # the pitfall: the padded batch's last position
        weights = tuple(getattr(gru, f"{n}_l0").detach() for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
        out.append(((x, lens, *weights), (states, h_n[0], through_padding[0])))
    return out


def check_gru_layer(gru_layer: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> None:
    """``gru_layer(x, lengths, W_ih, W_hh, b_ih, b_hh)`` -> ``(states, final)``, a GRU run by hand.

    From a zero state, one step at a time; sequence b stops after ``lengths[b]`` steps:
    its states after that are zero (as ``pad_packed_sequence`` gives) and ``final[b]`` is
    its state at its true end. Calling ``nn.GRU``, ``nn.GRUCell`` or ``torch.gru``
    fails the check. Shapes: x (B, S, I), lengths (B,), W_ih (3H, I), W_hh (3H, H),
    b_ih and b_hh (3H,) -> states (B, S, H), final (B, H).
    """
    run = guarded(gru_layer, GRU_FORBIDDEN)
    for i, (args, (states, final, through_padding)) in enumerate(_layer_cases(), start=1):
        got = check.call(run, args, _LAYER, i)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise check.CheckFailed(f"{_LAYER}, case {i}: expected a pair (states, final), got {type(got).__name__}")
        got_states, got_final = (torch.as_tensor(t).float() for t in got)
        lengths = args[1]
        real = torch.arange(states.shape[1])[None, :] < lengths[:, None]  # (B, S)
        if got_states.shape == states.shape:
            error = check._close_error(got_states[real], states[real], 1e-5, 1e-5)
            if error:
                raise check.CheckFailed(f"{_LAYER}, case {i}: the states at real positions are wrong ({error}): "
                                        "is each step h' = (1 - z) * n + z * h, started from zeros?")
            if (~real).any() and got_states[~real].abs().max().item() > 0:
                raise check.CheckFailed(f"{_LAYER}, case {i}: states after a sequence's end must be zero "
                                        "(it has stopped), as pad_packed_sequence gives")
        error = check._close_error(got_states, states, 1e-5, 1e-5)
        if error:
            raise check.CheckFailed(f"{_LAYER}, case {i}: states: {error}")
        error = check._close_error(got_final, final, 1e-5, 1e-5)
        if error:
            padded = not check._close_error(got_final, through_padding, 1e-5, 1e-5)
            hint = ("; it is the state after running on through the padding: take each sequence's state "
                    "at its own length (the padding pitfall)") if padded else ""
            raise check.CheckFailed(f"{_LAYER}, case {i}: the final state is wrong ({error}){hint}")
    print(f"PASS  {_LAYER}: all 3 cases, with no library GRU called")


def _layer_by_hand(x, lengths, W_ih, W_hh, b_ih, b_hh, *, stop=True):
    h, states = x.new_zeros(x.shape[0], W_hh.shape[1]), []
    for t in range(x.shape[1]):
        real = (t < lengths)[:, None] if stop else torch.ones(x.shape[0], 1, dtype=torch.bool)
        h = torch.where(real, _gru_step(x[:, t], h, W_ih, W_hh, b_ih, b_hh), h)
        states.append(torch.where(real, h, torch.zeros_like(h)))
    return torch.stack(states, 1), h


def _gru_step(x, h, W_ih, W_hh, b_ih, b_hh):
    i_r, i_z, i_n = (x @ W_ih.T + b_ih).chunk(3, dim=-1)
    h_r, h_z, h_n = (h @ W_hh.T + b_hh).chunk(3, dim=-1)
    r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
    return (1 - z) * torch.tanh(i_n + r * h_n) + z * h


def _layer_reads_padding(x, lengths, *weights):
    """Runs over the padding too and returns the state at the last position of the batch."""
    states, h = _layer_by_hand(x, lengths, *weights, stop=False)
    real = torch.arange(x.shape[1])[None, :, None] < lengths[:, None, None]
    return states * real, h


def _layer_by_library(x, lengths, W_ih, W_hh, b_ih, b_hh):
    """Right answers, from the nn.GRU the exercise forbids."""
    gru = torch.nn.GRU(x.shape[2], W_hh.shape[1], batch_first=True)
    with torch.no_grad():
        for name, w in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), (W_ih, W_hh, b_ih, b_hh)):
            getattr(gru, f"{name}_l0").copy_(w)
        packed, h_n = gru(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    return pad_packed_sequence(packed, batch_first=True, total_length=x.shape[1])[0], h_n[0]


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
    "check_gru_layer": [("final state read at the last, padded position", _layer_reads_padding, r"padding pitfall"),
                        ("padding not zeroed", lambda *a: (_layer_by_hand(*a, stop=False)[0], _layer_by_hand(*a)[1]),
                         r"must be zero"),
                        ("calls nn.GRU", _layer_by_library, r"asks you not to use")],
    "check_drop_point": [("the first row in table order, not the fewest digits",
                          lambda table, th: next((int(d) for d, a in zip(table.digits, table.exact_match) if a < th),
                                                 None), r"case 3")],
}
