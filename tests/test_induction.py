import pytest
import torch
from torch import nn

from attnbook.gpt import GPT, GPTConfig
from attnbook.induction import ablate_heads, loss_by_position, prefix_matching_scores, repeated_tokens


def test_repeated_tokens_repeat():
    ids = repeated_tokens(3, 5, 7, generator=torch.Generator().manual_seed(0))
    assert ids.shape == (3, 10) and ids.dtype == torch.long
    assert bool((ids[:, 5:] == ids[:, :5]).all()) and int(ids.max()) < 7
    with pytest.raises(ValueError, match="length"):
        repeated_tokens(3, 0, 7)
    with pytest.raises(TypeError, match="torch.Generator"):
        repeated_tokens(3, 2, 7, generator=1)


def test_prefix_matching_scores_a_perfect_and_a_uniform_head():
    L = 4
    T = 2 * L
    perfect = torch.zeros(T, T)
    for t in range(T):
        perfect[t, t - L + 1 if t >= L else 0] = 1.0
    uniform = torch.tril(torch.ones(T, T))
    uniform = uniform / uniform.sum(-1, keepdim=True)
    weights = torch.stack([perfect, uniform])[None]  # (1, 2, T, T)
    scores = prefix_matching_scores(weights, L)
    assert float(scores[0]) == pytest.approx(1.0)
    assert float(scores[1]) == pytest.approx(sum(1 / (t + 1) for t in range(L, T)) / L)
    with pytest.raises(ValueError, match="two copies of length 3"):
        prefix_matching_scores(weights, 3)


class _Constant(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, ids):
        return self.logits.expand(ids.shape[0], -1, -1)


def test_loss_by_position_is_the_per_position_cross_entropy_and_skips_ignored_targets():
    logits = torch.randn(1, 3, 5)
    ids = torch.zeros(4, 3, dtype=torch.long)
    targets = torch.tensor([[1, 2, -100]] * 4)
    loss = loss_by_position(_Constant(logits), ids, targets, batch_size=3)
    expected = -torch.log_softmax(logits[0], -1)[[0, 1], [1, 2]]
    torch.testing.assert_close(loss[:2], expected)
    assert torch.isnan(loss[2])
    with pytest.raises(ValueError, match="targets of the shape of ids"):
        loss_by_position(_Constant(logits), ids, targets[:, :2])
    with pytest.raises(TypeError, match="nn.Module"):
        loss_by_position(lambda x: x, ids, targets)


def test_ablating_a_head_removes_exactly_its_contribution_and_the_hooks_go_away():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=9, block_size=16, d_model=16, num_heads=4, num_layers=2)).eval()
    ids = torch.randint(0, 9, (2, 8))
    with torch.no_grad():
        before = model(ids)
        with ablate_heads(model, [(1, 2)]):
            ablated = model(ids)
        # by hand: zero head 2's rows of layer 1's output projection
        w = model.blocks[1].self_attention.w_o.weight
        saved = w[:, 8:12].clone()
        w[:, 8:12] = 0
        by_hand = model(ids)
        w[:, 8:12] = saved
        after = model(ids)
    torch.testing.assert_close(ablated, by_hand)
    assert (ablated - before).abs().max() > 1e-4
    torch.testing.assert_close(after, before)
    assert not model.blocks[1].self_attention.w_o._forward_pre_hooks
    with pytest.raises(ValueError, match=r"head in \[0, 4\)"):
        with ablate_heads(model, [(0, 4)]):
            pass
    with pytest.raises(ValueError, match=r"layer in \[0, 2\)"):
        with ablate_heads(model, [(5, 0)]):
            pass
    with pytest.raises(TypeError, match="pairs of ints"):
        with ablate_heads(model, [0]):
            pass
    with pytest.raises(TypeError, match="ModuleList `blocks`"):
        with ablate_heads(nn.Linear(2, 2), [(0, 0)]):
            pass
