import pytest
import torch

from attnbook import check
from attnbook.exercises import ch08


def _stub(*args):
    raise NotImplementedError


@pytest.mark.parametrize("checker", [ch08.check_previous_token_weight, ch08.check_mean_pool, ch08.check_prune_mask])
def test_stubs_are_reported_as_not_done(checker):
    with pytest.raises(check.CheckFailed, match="not implemented yet"):
        checker(_stub)


def previous_token_weight(att):
    i = torch.arange(1, att.shape[-1])
    return att[:, i, i - 1].mean(-1)


def pool(hidden, mask):
    m = mask.to(hidden.dtype).unsqueeze(-1)
    mean = (hidden * m).sum(1) / m.sum(1)
    return mean / mean.norm(dim=-1, keepdim=True)


def prune_mask(importance, n):
    gates = torch.ones(importance.shape)
    gates.view(-1)[importance.flatten().argsort()[:n]] = 0.0
    return gates


def test_correct_solutions_pass():
    ch08.check_previous_token_weight(previous_token_weight)
    ch08.check_mean_pool(pool)
    ch08.check_prune_mask(prune_mask)


def test_wrong_solutions_fail():
    with pytest.raises(check.CheckFailed, match="Exercise 8.1"):  # next token instead of previous
        ch08.check_previous_token_weight(lambda att: att[:, torch.arange(att.shape[-1] - 1),
                                                         torch.arange(1, att.shape[-1])].mean(-1))
    with pytest.raises(check.CheckFailed, match="Exercise 8.2"):  # padding included in the mean
        ch08.check_mean_pool(lambda h, m: torch.nn.functional.normalize(h.mean(1), dim=-1))
    with pytest.raises(check.CheckFailed, match="Exercise 8.2"):  # forgot to normalise
        ch08.check_mean_pool(lambda h, m: (h * m[..., None]).sum(1) / m.sum(1, keepdim=True))
    with pytest.raises(check.CheckFailed, match="Exercise 8.3"):  # removed the most important heads
        ch08.check_prune_mask(lambda imp, n: prune_mask(-imp, n))
