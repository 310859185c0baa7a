import numpy as np
import pytest
import torch

from attnbook import check
from attnbook.exercises import ch10


def _stub(*args):
    raise NotImplementedError


@pytest.mark.parametrize("checker", [ch10.check_region_attention, ch10.check_monotonic_share,
                                     ch10.check_selective_scan, ch10.check_power_law, ch10.check_apc,
                                     ch10.check_image_to_word_attention])
def test_stubs_are_reported_as_not_done(checker):
    with pytest.raises(check.CheckFailed, match="not implemented yet"):
        checker(_stub)


def region_attention(weights, regions, num_regions):
    return torch.stack([weights[..., regions == r].sum(-1) for r in range(num_regions)], dim=-1)


def share(path):
    return (path[:, 1:] >= path[:, :-1]).float().mean().item()


def scan(x, delta, A, B, C):
    h = torch.zeros(x.shape[0], x.shape[2], A.shape[1])
    ys = []
    for t in range(x.shape[1]):
        h = torch.exp(delta[:, t, :, None] * A) * h + delta[:, t, :, None] * B[:, t, None, :] * x[:, t, :, None]
        ys.append((h * C[:, t, None, :]).sum(-1))
    return torch.stack(ys, dim=1)


def power_law(lengths, seconds):
    return float(np.polyfit(np.log(lengths), np.log(seconds), 1)[0])


def apc(F):
    L = F.shape[0]
    off = 1 - torch.eye(L)
    row = (F * off).sum(1) / (L - 1)
    return (F - torch.outer(row, row) / row.mean()) * off  # the mean of the row means is F..


def attend(patches, words, w_q, w_k, w_v):
    q, k, v = patches @ w_q, words @ w_k, words @ w_v
    weights = torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-1)
    return weights @ v, weights


def test_correct_solutions_pass():
    ch10.check_region_attention(region_attention)
    ch10.check_monotonic_share(share)
    ch10.check_selective_scan(scan)
    ch10.check_power_law(power_law)
    ch10.check_apc(apc)
    ch10.check_image_to_word_attention(attend)


def test_wrong_solutions_fail():
    with pytest.raises(check.CheckFailed, match="Exercise 10.1"):  # assumed contiguous, equal-sized regions
        ch10.check_region_attention(lambda w, r, R: w.reshape(*w.shape[:-1], R, -1).sum(-1))
    with pytest.raises(check.CheckFailed, match="Exercise 10.2"):  # standing still counted as a step back
        ch10.check_monotonic_share(lambda p: (p[:, 1:] > p[:, :-1]).float().mean().item())
    with pytest.raises(check.CheckFailed, match="Exercise 10.3"):  # forgot to discretise B with delta
        ch10.check_selective_scan(lambda x, d, A, B, C: scan(x, d, A, B / d.mean(), C))
    with pytest.raises(check.CheckFailed, match="Exercise 10.3"):  # the state forgets with exp(A), not exp(delta A)
        ch10.check_selective_scan(lambda x, d, A, B, C: scan(x, torch.ones_like(d), A, B * d[..., :1], C))
    with pytest.raises(check.CheckFailed, match="Exercise 10.4"):  # the ratio of the last two points, not a fit
        ch10.check_power_law(lambda n, s: float(np.log(s[-1] / s[-2]) / np.log(n[-1] / n[-2])))
    with pytest.raises(check.CheckFailed, match="Exercise 10.5"):  # means taken over the diagonal too
        ch10.check_apc(lambda F: (F - torch.outer(F.mean(1), F.mean(0)) / F.mean()) * (1 - torch.eye(F.shape[0])))
    with pytest.raises(check.CheckFailed, match="Exercise 10.5"):  # the diagonal left in place
        ch10.check_apc(lambda F: apc(F) + torch.diag(F.diagonal()))
    with pytest.raises(check.CheckFailed, match="Exercise 10.6"):  # the roles swapped: words ask, patches answer
        ch10.check_image_to_word_attention(lambda p, w, q, k, v: attend(w, p, q, k, v))
    with pytest.raises(check.CheckFailed, match="Exercise 10.6"):  # no 1 / sqrt(d_h)
        ch10.check_image_to_word_attention(
            lambda p, w, q, k, v: attend(p, w, q * q.shape[-1] ** 0.5, k, v))
    with pytest.raises(check.CheckFailed, match="Exercise 10.6"):  # softmax over the patches, not the words
        ch10.check_image_to_word_attention(
            lambda p, w, q, k, v: (lambda a: (a @ (w @ v), a))(
                torch.softmax((p @ q) @ (w @ k).transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-2)))
