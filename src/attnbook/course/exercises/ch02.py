"""Chapter 2 exercises: additive scores, a masked softmax, and reading off an alignment."""

from __future__ import annotations

from collections.abc import Callable

import torch

from attnbook.course import check
from attnbook.rnn import Seq2Seq, Seq2SeqConfig
from attnbook.scoring import AdditiveScore, masked_softmax, padding_mask

__all__ = ["check_additive_scores", "check_masked_softmax", "check_hard_alignment", "check_decoder_step"]


def check_additive_scores(additive_scores: Callable[..., torch.Tensor]) -> None:
    """``additive_scores(query, keys, W_q, W_k, b_k, v)`` = ``v^T tanh(W_q q + W_k k + b_k)``.

    Shapes: query (B, Dq), keys (B, S, Dk), W_q (A, Dq), W_k (A, Dk), b_k (A,), v (A,) -> (B, S).
    """
    cases = []
    for seed, (B, S, dq, dk, a) in enumerate([(1, 3, 2, 2, 4), (3, 5, 4, 6, 8)]):
        torch.manual_seed(seed)
        score = AdditiveScore(dq, dk, a)
        q, k = torch.randn(B, dq), torch.randn(B, S, dk)
        with torch.no_grad():
            want = score(q, k)
        args = (q, k, score.w_q.weight.detach(), score.w_k.weight.detach(), score.w_k.bias.detach(),
                score.v.weight.detach()[0])
        cases.append((args, want))
    check.cases(additive_scores, cases, "Exercise 2.1 (additive scores)", atol=1e-5)


def check_masked_softmax(softmax_with_lengths: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """``softmax_with_lengths(scores, lengths)``: softmax over the first ``lengths[b]`` keys, 0 after.

    Shapes: scores (B, S), lengths (B,) -> weights (B, S).
    """
    cases = []
    for seed, lengths in enumerate([[3], [1, 4, 2], [5, 5]]):
        torch.manual_seed(seed)
        lens = torch.tensor(lengths)
        scores = torch.randn(len(lengths), 5) * 3
        cases.append(((scores, lens), masked_softmax(scores, padding_mask(lens, 5))))
    check.cases(softmax_with_lengths, cases, "Exercise 2.2 (masked softmax)", atol=1e-6)


def check_hard_alignment(hard_alignment: Callable[[torch.Tensor, list[str]], list[str]]) -> None:
    """``hard_alignment(weights, source)``: for each output row, the source token it weighs most.

    Shapes: weights (T, S) -> a list of T tokens from ``source`` (length S).
    """
    w = torch.tensor([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1], [0.0, 0.1, 0.9]])
    src = ["sieben", "und", "achtzig"]
    cases = [((w, src), ["und", "sieben", "achtzig"]),
             ((w[[2, 0]], src), ["achtzig", "und"]),
             ((torch.eye(2), ["a", "b"]), ["a", "b"])]
    check.cases(hard_alignment, cases, "Exercise 2.3 (hard alignment)")


_STEP = "Exercise 2.4 (one step of the attention decoder)"


def _step_cases() -> list[tuple[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]:
    """((y_prev, s_prev, states, lengths, params), (logits, s_new, weights)) from the package's Seq2Seq."""
    out = []
    for seed, (lengths, H, A, E, V) in enumerate([([3], 4, 5, 3, 6), ([5, 2, 4], 6, 4, 5, 7), ([1, 6], 8, 8, 4, 5)]):
        torch.manual_seed(seed)
        model = Seq2Seq(Seq2SeqConfig(src_vocab=5, tgt_vocab=V, embed_dim=E, hidden_dim=H,
                                      attention="additive", attention_dim=A))
        lens = torch.tensor(lengths)
        B, S = len(lengths), max(lengths)
        states, s_prev = torch.randn(B, S, 2 * H), torch.randn(B, H)
        y_prev = torch.randint(0, V, (B,))
        with torch.no_grad():  # the decoder step of Seq2Seq.greedy_decode
            memory = {"states": states, "mask": padding_mask(lens, S), "keys": model.score.project_keys(states)}
            context, weights = model._attend(s_prev, memory)
            s_new = model.cell(torch.cat([model.embed(y_prev), context], -1), s_prev)
            logits = model.out(torch.cat([s_new, context], -1))
        score, cell = model.score, model.cell
        params = {"embed": model.embed.weight, "W_s": score.w_q.weight, "W_h": score.w_k.weight,
                  "b": score.w_k.bias, "v": score.v.weight[0], "W_ih": cell.weight_ih, "W_hh": cell.weight_hh,
                  "b_ih": cell.bias_ih, "b_hh": cell.bias_hh, "W_o": model.out.weight, "b_o": model.out.bias}
        params = {name: w.detach().clone() for name, w in params.items()}
        out.append(((y_prev, s_prev, states, lens, params), (logits, s_new, weights)))
    return out


_STEP_PARTS = [("weights", "the attention weights: v^T tanh(W_s s_prev + W_h h_j + b), a softmax over the "
                "real positions only (padding gets exactly 0)"),
               ("s_new", "the new state: one GRU step from s_prev on [embed[y_prev]; context]"),
               ("logits", "the logits: W_o [s_new; context] + b_o")]


def check_decoder_step(decoder_step: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> None:
    """``decoder_step(y_prev, s_prev, states, lengths, params)`` -> ``(logits, s_new, weights)``.

    One step of chapter 2's decoder: score every encoder state against ``s_prev`` with the
    additive score, mask the padding, softmax, read the context vector, update the state
    with a GRU step on ``[embed[y_prev]; context]``, and read out ``W_o [s_new; context] + b_o``.
    ``params`` holds ``embed`` (V, E), ``W_s`` (A, H), ``W_h`` (A, 2H), ``b`` and ``v`` (A,),
    ``W_ih`` (3H, E + 2H), ``W_hh`` (3H, H), ``b_ih`` and ``b_hh`` (3H,), ``W_o`` (V, 3H), ``b_o`` (V,).
    Shapes: y_prev (B,) ids, s_prev (B, H), states (B, S, 2H), lengths (B,)
    -> logits (B, V), s_new (B, H), weights (B, S).
    """
    if not callable(decoder_step):
        raise TypeError(f"{_STEP}: expected a function, got {type(decoder_step).__name__}")
    for i, (args, want) in enumerate(_step_cases(), start=1):
        got = check.call(decoder_step, args, _STEP, i)
        if not isinstance(got, (tuple, list)) or len(got) != 3:
            raise check.CheckFailed(f"{_STEP}, case {i}: expected (logits, s_new, weights), got "
                                    f"{type(got).__name__}")
        named = dict(zip(("logits", "s_new", "weights"), got))
        for (part, what), expected in zip(_STEP_PARTS, (want[2], want[1], want[0])):
            error = check._close_error(named[part], expected, 1e-5, 1e-5)
            if error:
                raise check.CheckFailed(f"{_STEP}, case {i}: {what}; {part} is wrong: {error}")
    print(f"PASS  {_STEP}: all 3 cases")


def _step(y_prev, s_prev, states, lengths, p, *, masked=True, read_out_from_old=False):
    hidden = torch.tanh((s_prev @ p["W_s"].T)[:, None] + states @ p["W_h"].T + p["b"])  # (B, S, A)
    scores = hidden @ p["v"]
    if masked:
        real = torch.arange(states.shape[1])[None, :] < lengths[:, None]
        scores = scores.masked_fill(~real, float("-inf"))
    weights = torch.softmax(scores, -1)
    context = (weights[:, :, None] * states).sum(1)
    x = torch.cat([p["embed"][y_prev], context], -1)
    i_r, i_z, i_n = (x @ p["W_ih"].T + p["b_ih"]).chunk(3, -1)
    h_r, h_z, h_n = (s_prev @ p["W_hh"].T + p["b_hh"]).chunk(3, -1)
    r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
    s_new = (1 - z) * torch.tanh(i_n + r * h_n) + z * s_prev
    read = s_prev if read_out_from_old else s_new
    return torch.cat([read, context], -1) @ p["W_o"].T + p["b_o"], s_new, weights


# Plausible mistakes each check must reject: (what is wrong, function[, pattern the failure must match]).
WRONG_ANSWERS = {
    "check_additive_scores": [("forgot the bias", lambda q, k, W_q, W_k, b_k, v:
                               torch.tanh((q @ W_q.T)[:, None, :] + k @ W_k.T) @ v)],
    "check_masked_softmax": [("ignores the lengths", lambda scores, lengths: torch.softmax(scores, dim=-1))],
    "check_decoder_step": [("no padding mask", lambda *a: _step(*a, masked=False), r"padding gets exactly 0"),
                           ("read-out from the old state s_prev", lambda *a: _step(*a, read_out_from_old=True),
                            r"logits is wrong")],
    "check_hard_alignment": [("the least weighted token",
                              lambda w, src: [src[int(j)] for j in torch.as_tensor(w).argmin(dim=-1)])],
}
