import math

import pytest
import torch

from attnbook import check
from attnbook.exercises import ch05, ch06


def _stub(*args):
    raise NotImplementedError


@pytest.mark.parametrize("checker", [ch05.check_split_heads, ch05.check_multi_head, ch05.check_grouped_query])
def test_stubs_are_reported_as_not_done(checker):
    with pytest.raises(check.CheckFailed, match="not implemented yet"):
        checker(_stub)


def split(x, num_heads):
    B, T, C = x.shape
    return x.view(B, T, num_heads, C // num_heads).transpose(1, 2)


def attention(q, k, v, causal=False):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        T = q.shape[-2]
        scores = scores.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def multi_head(x, W_q, W_k, W_v, W_o, num_heads):
    B, T, C = x.shape
    q, k, v = (split(x @ W, num_heads) for W in (W_q, W_k, W_v))
    return attention(q, k, v).transpose(1, 2).reshape(B, T, C) @ W_o


def grouped(q, k, v):
    group = q.shape[1] // k.shape[1]
    return attention(q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1), causal=True)


def test_correct_solutions_pass():
    ch05.check_split_heads(split)
    ch05.check_multi_head(multi_head)
    ch05.check_grouped_query(grouped)


def test_wrong_solutions_fail():
    with pytest.raises(check.CheckFailed, match="Exercise 5.1"):
        ch05.check_split_heads(lambda x, nh: x.view(x.shape[0], nh, x.shape[1], -1))  # wrong order of axes
    with pytest.raises(check.CheckFailed, match="Exercise 5.2"):  # forgot the output projection
        ch05.check_multi_head(lambda x, Wq, Wk, Wv, Wo, nh: multi_head(x, Wq, Wk, Wv, torch.eye(x.shape[-1]), nh))
    with pytest.raises(check.CheckFailed, match="Exercise 5.3"):  # groups repeated in the wrong order
        ch05.check_grouped_query(lambda q, k, v: attention(q, k.repeat(1, q.shape[1] // k.shape[1], 1, 1),
                                                           v.repeat(1, q.shape[1] // k.shape[1], 1, 1), causal=True))


@pytest.mark.parametrize("checker", [ch06.check_layer_norm, ch06.check_cached_step, ch06.check_temperature])
def test_ch06_stubs_are_reported_as_not_done(checker):
    with pytest.raises(check.CheckFailed, match="not implemented yet"):
        checker(_stub)


def layer_norm(x, weight, bias):
    mean, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True, unbiased=False)
    return (x - mean) / torch.sqrt(var + 1e-5) * weight + bias


def cached_step(q, k_new, v_new, k_cache, v_cache):
    k, v = torch.cat([k_cache, k_new], 2), torch.cat([v_cache, v_new], 2)
    return attention(q, k, v), k, v


def test_ch06_correct_solutions_pass():
    ch06.check_layer_norm(layer_norm)
    ch06.check_cached_step(cached_step)
    ch06.check_temperature(lambda logits, t: torch.softmax(logits / t, dim=-1))


def test_ch06_wrong_solutions_fail():
    with pytest.raises(check.CheckFailed, match="Exercise 6.1"):  # unbiased variance
        ch06.check_layer_norm(lambda x, w, b: (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True) * w + b)
    with pytest.raises(check.CheckFailed, match="Exercise 6.2"):  # forgot to append the new key/value
        ch06.check_cached_step(lambda q, k, v, kc, vc: (attention(q, kc, vc), kc, vc))
    with pytest.raises(check.CheckFailed, match="Exercise 6.3"):  # multiplied instead of divided
        ch06.check_temperature(lambda logits, t: torch.softmax(logits * t, dim=-1))
