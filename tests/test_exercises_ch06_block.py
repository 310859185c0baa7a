"""Exercise 6.2 (assemble a causal pre-LN block and train it): beyond the one exercise suite,
the check fails on each way a learner breaks the block, and leaves the random state alone."""

import math

import pytest
import torch
from torch import nn

from attnbook import check
from attnbook.exercises import ch06


def _stub(*args):
    raise NotImplementedError


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


class _OverTheWire:
    """Stands in for the grader's proxy of a submission's class: the trial's data crosses the wire codec."""

    def __init__(self, make_block):
        self.make_block, self.calls = make_block, []

    def __call__(self, *args):
        raise AssertionError("the check must not build the submission's block in the grader")

    def in_kernel(self, function):
        import importlib

        from attnbook.course import wire

        module, name = function.split(":")
        trial = getattr(importlib.import_module(module), name)
        self.calls.append(function)

        def run(*args):
            reply = wire.loads(wire.dumps({"ok": trial(self.make_block, *wire.loads(wire.dumps(list(args))))}))
            return reply["ok"]

        return run


def test_ch06_block_check_judges_a_graded_submission_from_data_only():
    proxy = _OverTheWire(CausalBlock)
    result = ch06.check_block(proxy)
    assert proxy.calls == ["attnbook.course.exercises.ch06:block_trial"]
    assert result["heldout"] <= ch06.COPY_THRESHOLD
    with pytest.raises(check.CheckFailed, match="causal mask"):
        ch06.check_block(_OverTheWire(NoMask))
    with pytest.raises(check.CheckFailed, match="residual"):
        ch06.check_block(_OverTheWire(NoResidual))


def test_ch06_block_check_rejects_a_faked_trial():
    class Faked(_OverTheWire):
        def in_kernel(self, function):
            return lambda *args: {"y": "PASS"}

    with pytest.raises(check.CheckFailed, match="no y of shape"):
        ch06.check_block(Faked(CausalBlock))
