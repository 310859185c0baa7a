import math

import pytest
import torch

from attnbook import check
from attnbook.exercises import ch03, ch04


def _stub(*args):
    raise NotImplementedError


@pytest.mark.parametrize("checker", [ch03.check_attention, ch03.check_kernel_regression, ch03.check_entropy,
                                     ch04.check_self_attention, ch04.check_sinusoidal, ch04.check_rotary])
def test_stubs_are_reported_as_not_done(checker):
    with pytest.raises(check.CheckFailed, match="not implemented yet"):
        checker(_stub)


def attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def kernel_regression(x_query, x_train, y_train, bandwidth):
    w = torch.softmax(-((x_query[:, None] - x_train[None, :]) ** 2) / (2 * bandwidth**2), dim=-1)
    return w @ y_train


def entropy(weights):
    return -torch.xlogy(weights, weights).sum(-1)


def self_attention(x, W_q, W_k, W_v):
    return attention(x @ W_q, x @ W_k, x @ W_v)


def sinusoidal(num_positions, d_model):
    pos = torch.arange(num_positions, dtype=torch.float32)[:, None]
    angles = pos / 10000 ** (torch.arange(0, d_model, 2) / d_model)
    return torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).flatten(-2)


def rotary(x):
    T, d = x.shape
    angles = torch.arange(T, dtype=torch.float32)[:, None] / 10000 ** (torch.arange(0, d, 2) / d)
    x1, x2 = x[:, 0::2], x[:, 1::2]
    return torch.stack([x1 * torch.cos(angles) - x2 * torch.sin(angles),
                        x1 * torch.sin(angles) + x2 * torch.cos(angles)], dim=-1).flatten(-2)


def test_correct_solutions_pass(capsys):
    ch03.check_attention(attention)
    ch03.check_kernel_regression(kernel_regression)
    ch03.check_entropy(entropy)
    ch04.check_self_attention(self_attention)
    ch04.check_sinusoidal(sinusoidal)
    ch04.check_rotary(rotary)
    assert capsys.readouterr().out.count("PASS") == 6


def test_wrong_solutions_say_which_case_and_what():
    with pytest.raises(check.CheckFailed, match=r"(?s)Exercise 3.1 .*case 1.*largest difference"):
        ch03.check_attention(lambda q, k, v, mask=None: torch.softmax(q @ k.mT, -1) @ v)  # no scaling
    with pytest.raises(check.CheckFailed, match=r"(?s)Exercise 3.1 .*case 3"):
        ch03.check_attention(lambda q, k, v, mask=None: attention(q, k, v))  # ignores the mask
    with pytest.raises(check.CheckFailed, match=r"(?s)Exercise 4.3 .*case 2"):
        ch04.check_rotary(lambda x: x)  # no rotation: only position 0 (case 1) is right
    with pytest.raises(check.CheckFailed, match=r"(?s)Exercise 3.3 .*case 2.*got nan"):
        ch03.check_entropy(lambda w: -(w * torch.log(w)).sum(-1))  # 0 log 0 gives NaN
