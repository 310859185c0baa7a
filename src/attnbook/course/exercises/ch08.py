"""Chapter 8 exercises: a positional head score, mean pooling, a head-pruning mask, a context probe."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from attnbook.course import check
from attnbook.heads import gates_without, prune_order
from attnbook.sentence_embeddings import last_segment_mask, mean_pool

__all__ = ["check_previous_token_weight", "check_mean_pool", "check_prune_mask", "check_question_mask"]


def _attention(g: torch.Generator, heads: int, T: int) -> torch.Tensor:
    return torch.softmax(3 * torch.randn(heads, T, T, generator=g), dim=-1)  # (heads, T, T), rows sum to 1


def check_previous_token_weight(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """``fn(att)``: each head's mean weight from token ``i`` to token ``i - 1``, over ``i = 1 .. T-1``.

    Shapes: att (heads, T, T) -> (heads,).
    """
    cases = []
    for seed, (heads, T) in enumerate([(1, 2), (3, 5), (12, 9)]):
        att = _attention(torch.Generator().manual_seed(seed), heads, T)
        i = torch.arange(1, T)
        cases.append(((att,), att[:, i, i - 1].mean(dim=-1)))
    check.cases(fn, cases, "Exercise 8.1 (weight on the previous token)", atol=1e-6)


def check_mean_pool(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """``fn(hidden, mask)``: the mean of the real tokens' vectors (mask 1), scaled to length one.

    Shapes: hidden (B, T, d), mask (B, T) of 0/1 -> (B, d).
    """
    cases = []
    for seed, (lengths, d) in enumerate([([3], 4), ([5, 2], 6), ([4, 4, 1], 8)]):
        g = torch.Generator().manual_seed(seed)
        T = max(lengths)
        hidden = torch.randn(len(lengths), T, d, generator=g) + 1.0
        mask = (torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]).long()  # (B, T)
        hidden = hidden + 50.0 * (1 - mask)[..., None]  # padding rows are far away: including them is visible
        cases.append(((hidden, mask), mean_pool(hidden, mask)))
    check.cases(fn, cases, "Exercise 8.2 (mean pooling)", atol=1e-5)


def check_prune_mask(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """``fn(importance, n)``: gates of ones with zeros at the ``n`` least important heads.

    Shapes: importance (layers, heads), distinct values -> (layers, heads) float of 0/1.
    """
    cases = []
    for seed, (layers, heads, n) in enumerate([(1, 4, 1), (2, 3, 0), (6, 12, 30), (3, 4, 12)]):
        importance = torch.rand(layers, heads, generator=torch.Generator().manual_seed(seed))
        cases.append(((importance, n), gates_without(layers, heads, prune_order(importance)[:n])))
    check.cases(fn, cases, "Exercise 8.3 (head-pruning mask)", atol=0.0, rtol=0.0)


_PROBE = "Exercise 8.4 (a question's own tokens: does the context reach them?)"
PROBE_THRESHOLD = 0.9
_NAMES = "Mara Tobin Elsa Karim Nadia Oskar".split()
_COLOURS = "green red blue yellow black white".split()


@functools.lru_cache(maxsize=1)
def _probe_data():
    """MiniLM's last layer on the 36 (fact, question) pairs, the colour words' embeddings, the answers."""
    from attnbook.pretrained import load_minilm
    from attnbook.sentence_embeddings import encode

    minilm = load_minilm()
    facts, questions, answers = [], [], []
    for i, name in enumerate(_NAMES):
        for j in range(len(_COLOURS)):
            colour = _COLOURS[(i + j) % len(_COLOURS)]
            facts.append(f"{name}'s bicycle is {colour}.")
            questions.append(f"What colour is {name}'s bicycle?")
            answers.append(_COLOURS.index(colour))
    enc = minilm.tokenizer(facts, questions, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = minilm.model(**enc, output_attentions=False).last_hidden_state  # (36, T, 384)
        colours = encode(minilm, _COLOURS)  # (6, 384)
    special = [minilm.tokenizer.cls_token_id, minilm.tokenizer.sep_token_id]
    return enc["input_ids"], enc["token_type_ids"], enc["attention_mask"], special, hidden, colours, \
        torch.tensor(answers)


def check_question_mask(fn: Callable[..., torch.Tensor]) -> float:
    """``fn(input_ids, token_type_ids, attention_mask, special_ids)``: 1 on the last segment's words.

    For ``[CLS] fact [SEP] question [SEP]`` rows: 1 on the question's tokens, 0 on the
    fact, on ``[CLS]``/``[SEP]`` (``special_ids``) and on padding; for a single sentence,
    1 on its words. Then the measurement: MiniLM's last-layer vectors of the 36
    "Mara's bicycle is green." / "What colour is Mara's bicycle?" pairs, averaged over
    your mask, must name the right colour (nearest of six) in at least
    ``PROBE_THRESHOLD`` of the pairs. Returns that accuracy.

    Shapes: four (B, T) tensors (special_ids a list of ints) -> (B, T) of 0/1.
    """
    ids, types, mask, special, hidden, colours, answers = _probe_data()
    got = check.call(fn, (ids, types, mask, special), _PROBE)
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(ids.shape):
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        raise check.CheckFailed(f"{_PROBE}: expected a mask of shape {tuple(ids.shape)}, got {shape}")
    on = got.detach().float() > 0.5
    is_special = torch.isin(ids, torch.tensor(special))
    if (on & (types == 0) & ~is_special & (mask == 1)).any():
        raise check.CheckFailed(f"{_PROBE}: your mask covers words of the fact (the first segment): the "
                                "colour word is then in the average itself, and the probe no longer shows that "
                                "attention carried it to the question")
    if (on & is_special).any():
        raise check.CheckFailed(f"{_PROBE}: your mask covers [CLS] or [SEP]; keep only the question's words")
    if (on & (mask == 0)).any():
        raise check.CheckFailed(f"{_PROBE}: your mask covers padding (attention_mask 0)")
    g = torch.Generator().manual_seed(0)
    cases = []
    for B, T in ((1, 5), (3, 7)):
        i = torch.randint(1000, 2000, (B, T), generator=g)
        i[:, 0], i[:, -1], i[:, T // 2] = 101, 102, 102
        t = (torch.arange(T) > T // 2).long().expand(B, T).clone()
        t[0] = 0  # a single sentence in the first row
        m = torch.ones(B, T, dtype=torch.long)
        cases.append(((i, t, m, [101, 102]), last_segment_mask(i, t, m, [101, 102])))
    check.cases(lambda *a: fn(*a).long(), cases, f"{_PROBE}: small cases", atol=0.0, rtol=0.0)
    vectors = mean_pool(hidden, on.long())  # (36, 384)
    accuracy = float((vectors @ colours.T).argmax(-1).eq(answers).float().mean())
    check.at_least(accuracy, PROBE_THRESHOLD,
                   f"{_PROBE}: right colour from the question's tokens (chance 1/6)")
    return accuracy


# Plausible mistakes each check must reject: (what is wrong, function[, pattern the failure must match]).
WRONG_ANSWERS = {
    "check_previous_token_weight": [("the next token instead of the previous", lambda att:
                                     att[:, torch.arange(att.shape[-1] - 1), torch.arange(1, att.shape[-1])].mean(-1))],
    "check_mean_pool": [("padding included in the mean", lambda h, m: torch.nn.functional.normalize(h.mean(1), dim=-1)),
                        ("forgot to normalise", lambda h, m: (h * m[..., None]).sum(1) / m.sum(1, keepdim=True))],
    "check_prune_mask": [("removed the most important heads", lambda imp, n:
                          gates_without(imp.shape[0], imp.shape[1], prune_order(-imp)[:n]))],
    "check_question_mask": [("every real token, the fact included", lambda ids, types, mask, special:
                             mask * ~torch.isin(ids, torch.tensor(special)), "covers words of the fact"),
                            ("[SEP] kept", lambda ids, types, mask, special:
                             mask * (types == types.amax(1, keepdim=True)) * (ids != special[0]), "SEP")],
}
