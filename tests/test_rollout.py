"""The one attention rollout (attnbook.attribution), also reached as attnbook.vit.attention_rollout."""

import pytest
import torch

from attnbook import attribution, vit
from attnbook.attribution import attention_rollout


def test_vit_name_is_the_same_function():
    assert vit.attention_rollout is attribution.attention_rollout


def test_identity_attention_gives_identity():
    w = torch.eye(4).expand(2, 3, 4, 4)  # (B, heads, T, T): every token reads only itself
    torch.testing.assert_close(attention_rollout([w, w, w]), torch.eye(4).expand(2, 4, 4))
    torch.testing.assert_close(attention_rollout(torch.eye(4).expand(3, 2, 4, 4)), torch.eye(4))


def test_residual_is_added_as_the_identity():
    # one layer where token 1 reads only token 0: with the residual it keeps half of itself
    w = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])  # (1, 1, 2, 2)
    torch.testing.assert_close(attention_rollout([w]), torch.tensor([[[1.0, 0.0], [0.5, 0.5]]]))


def test_known_two_layer_example():
    a1 = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # layer 1: both read token 0 -> [[1, 0], [.5, .5]]
    a2 = torch.tensor([[0.0, 1.0], [0.0, 1.0]])  # layer 2: both read token 1 -> [[.5, .5], [0, 1]]
    expected = torch.tensor([[0.75, 0.25], [0.5, 0.5]])  # layer 2's matrix times layer 1's
    torch.testing.assert_close(attention_rollout(torch.stack([a1, a2])[:, None]), expected)
    # the same with two heads whose average is a1 (then a2), as a batched list
    h1 = torch.stack([torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([[1.0, 0.0], [1.0, 0.0]])])
    h2 = torch.stack([torch.tensor([[0.0, 1.0], [0.0, 1.0]]), torch.tensor([[0.0, 1.0], [0.0, 1.0]])])
    torch.testing.assert_close(attention_rollout([h1[None], h2[None]]), expected[None])
    # order matters: layer 1 first
    assert not torch.allclose(attention_rollout(torch.stack([a2, a1])[:, None]), expected)


def test_rows_sum_to_one_and_list_equals_stacked():
    g = torch.Generator().manual_seed(0)
    weights = [torch.softmax(torch.randn(2, 3, 5, 5, generator=g), dim=-1) for _ in range(4)]
    r = attention_rollout(weights)
    assert r.shape == (2, 5, 5)
    torch.testing.assert_close(r.sum(-1), torch.ones(2, 5))
    torch.testing.assert_close(attention_rollout(torch.stack(weights)), r)
    torch.testing.assert_close(attention_rollout(torch.stack(weights)[:, 1]), r[1])


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="non-empty list"):
        attention_rollout([])
    with pytest.raises(TypeError, match="a list of attention tensors or one stacked tensor, got dict"):
        attention_rollout({})
    with pytest.raises(ValueError, match=r"expected square .* layer 0, got shape \(1, 2, 3, 4\)"):
        attention_rollout([torch.rand(1, 2, 3, 4)])
    with pytest.raises(ValueError, match="every layer's attention of shape"):
        attention_rollout([torch.rand(1, 2, 3, 3), torch.rand(1, 2, 4, 4)])
    with pytest.raises(ValueError, match="at least 4 dimensions"):
        attention_rollout(torch.rand(2, 3, 3))
    with pytest.raises(TypeError, match="floating-point"):
        attention_rollout([torch.ones(1, 1, 2, 2, dtype=torch.long)])
    with pytest.raises(TypeError, match="torch.Tensor"):
        attention_rollout([[[0.5]]])
