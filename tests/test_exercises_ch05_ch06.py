import math

import pytest
import torch

from torch import nn

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


class CausalBlock(nn.Module):
    """A correct causal pre-LN block, with switches to break it the two ways learners do."""

    residual, causal = True, True

    def __init__(self, d_model, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv, self.out = nn.Linear(d_model, 3 * d_model), nn.Linear(d_model, d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def attend(self, x):
        q, k, v = (t.unflatten(-1, (self.num_heads, -1)).transpose(1, 2) for t in self.qkv(x).chunk(3, -1))
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.out(out.transpose(1, 2).flatten(2))

    def forward(self, x):
        a = self.attend(self.norm1(x))
        x = x + a if self.residual else a
        f = self.ff(self.norm2(x))
        return x + f if self.residual else f


class NoResidual(CausalBlock):
    residual = False


class NoMask(CausalBlock):
    causal = False


class PostLN(CausalBlock):
    def forward(self, x):
        x = self.norm1(x + self.attend(x))
        return self.norm2(x + self.ff(x))


class NoAttention(CausalBlock):
    """Residual and causal, but it never looks at other positions: it cannot learn to copy."""

    def forward(self, x):
        return x + self.ff(self.norm2(x))


class StubBlock(nn.Module):
    def __init__(self, d_model, num_heads):
        super().__init__()

    def forward(self, x):
        raise NotImplementedError


def test_ch06_block_stub_is_reported_as_not_done():
    with pytest.raises(check.CheckFailed, match="not implemented yet"):
        ch06.check_block(StubBlock)
    with pytest.raises(check.CheckFailed, match="not implemented yet"):
        ch06.check_block(_stub)


def test_ch06_block_solution_trains_below_the_threshold():
    result = ch06.check_block(CausalBlock)
    assert result["heldout"] <= ch06.COPY_THRESHOLD


@pytest.mark.parametrize("wrong, message", [(NoResidual, "residual"), (NoMask, "causal mask"),
                                            (PostLN, "residual"), (NoAttention, "at most")])
def test_ch06_block_check_fails_on_broken_blocks(wrong, message):
    with pytest.raises(check.CheckFailed, match=message):
        ch06.check_block(wrong)


def test_ch06_block_check_rejects_non_modules():
    with pytest.raises(TypeError, match="make_block"):
        ch06.check_block(42)
    with pytest.raises(check.CheckFailed, match="nn.Module"):
        ch06.check_block(lambda d, h: (lambda x: x))


def test_ch06_block_check_leaves_the_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    ch06.check_block(CausalBlock)
    assert torch.equal(torch.rand(3), expected)


def test_ch06_wrong_solutions_fail():
    with pytest.raises(check.CheckFailed, match="Exercise 6.1"):  # unbiased variance
        ch06.check_layer_norm(lambda x, w, b: (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True) * w + b)
    with pytest.raises(check.CheckFailed, match="Exercise 6.3"):  # forgot to append the new key/value
        ch06.check_cached_step(lambda q, k, v, kc, vc: (attention(q, kc, vc), kc, vc))
    with pytest.raises(check.CheckFailed, match="Exercise 6.4"):  # multiplied instead of divided
        ch06.check_temperature(lambda logits, t: torch.softmax(logits * t, dim=-1))
