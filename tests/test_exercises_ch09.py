import pytest
import torch
import torch.nn.functional as F

from attnbook import check
from attnbook.exercises import ch09


def _stub(*args):
    raise NotImplementedError


@pytest.mark.parametrize("checker", [ch09.check_online_softmax, ch09.check_flash_step, ch09.check_local_mask,
                                     ch09.check_linear_attention])
def test_stubs_are_reported_as_not_done(checker):
    with pytest.raises(check.CheckFailed, match="not implemented yet"):
        checker(_stub)


def online(x, block_size):
    m, l = torch.tensor(float("-inf"), dtype=x.dtype), torch.tensor(0.0, dtype=x.dtype)
    for i in range(0, len(x), block_size):
        block = x[i:i + block_size]
        m_new = torch.maximum(m, block.max())
        l = l * torch.exp(m - m_new) + torch.exp(block - m_new).sum()
        m = m_new
    return torch.exp(x - m) / l


def step(acc, m, l, s, v):
    m_new = torch.maximum(m, s.amax(-1))
    p = torch.exp(s - m_new[:, None])
    c = torch.exp(m - m_new)
    return acc * c[:, None] + p @ v, m_new, l * c + p.sum(-1)


def local_mask(length, window, num_global):
    i, j = torch.arange(length)[:, None], torch.arange(length)[None, :]
    return ((i - j).abs() <= window) | (i < num_global) | (j < num_global)


def linear(q, k, v):
    fq, fk = F.elu(q) + 1, F.elu(k) + 1
    return (fq @ (fk.transpose(-2, -1) @ v)) / (fq @ fk.sum(-2)[..., None])


def test_correct_solutions_pass():
    ch09.check_online_softmax(online)
    ch09.check_flash_step(step)
    ch09.check_local_mask(local_mask)
    ch09.check_linear_attention(linear)


def test_wrong_solutions_fail():
    with pytest.raises(check.CheckFailed, match="Exercise 9.1"):  # no running max: exp overflows
        ch09.check_online_softmax(lambda x, b: torch.exp(x) / torch.exp(x).sum())
    with pytest.raises(check.CheckFailed, match="Exercise 9.1"):  # max of the first block only
        ch09.check_online_softmax(lambda x, b: torch.exp(x - x[:b].max()) / torch.exp(x - x[:b].max()).sum())
    with pytest.raises(check.CheckFailed, match="Exercise 9.2"):  # forgot to rescale the accumulator
        ch09.check_flash_step(lambda acc, m, l, s, v: (acc + torch.exp(s - torch.maximum(m, s.amax(-1))[:, None]) @ v,
                                                       torch.maximum(m, s.amax(-1)),
                                                       l * torch.exp(m - torch.maximum(m, s.amax(-1)))
                                                       + torch.exp(s - torch.maximum(m, s.amax(-1))[:, None]).sum(-1)))
    with pytest.raises(check.CheckFailed, match="Exercise 9.3"):  # global rows forgotten
        ch09.check_local_mask(lambda n, w, g: local_mask(n, w, 0) | (torch.arange(n)[None, :] < g))
    with pytest.raises(check.CheckFailed, match="Exercise 9.3"):  # window one too narrow
        ch09.check_local_mask(lambda n, w, g: local_mask(n, w - 1, g))
    with pytest.raises(check.CheckFailed, match="Exercise 9.4"):  # no normalisation
        ch09.check_linear_attention(lambda q, k, v: (F.elu(q) + 1) @ ((F.elu(k) + 1).transpose(-2, -1) @ v))
    with pytest.raises(check.CheckFailed, match="Exercise 9.4"):  # softmax attention instead
        ch09.check_linear_attention(lambda q, k, v: F.scaled_dot_product_attention(q, k, v))
