import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnbook.scoring import AdditiveScore, MultiplicativeScore, attend, masked_softmax, padding_mask


def test_additive_score_matches_a_hand_computation():
    score = AdditiveScore(query_dim=1, key_dim=1, hidden_dim=2)
    with torch.no_grad():
        score.w_q.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        score.w_k.weight.copy_(torch.tensor([[2.0], [0.5]]))
        score.w_k.bias.copy_(torch.tensor([0.0, 1.0]))
        score.v.weight.copy_(torch.tensor([[1.0, 2.0]]))
    q = torch.tensor([[0.5]])
    k = torch.tensor([[[1.0], [-2.0]]])
    # v^T tanh(W_q q + W_k k + b): by hand for each key
    expected = [math.tanh(0.5 + 2.0) + 2 * math.tanh(-0.5 + 0.5 + 1.0),
                math.tanh(0.5 - 4.0) + 2 * math.tanh(-0.5 - 1.0 + 1.0)]
    torch.testing.assert_close(score(q, k), torch.tensor([expected]))


def test_multiplicative_scores():
    q, k = torch.randn(3, 4), torch.randn(3, 5, 4)
    dot = MultiplicativeScore(4, 4, learned=False)
    torch.testing.assert_close(dot(q, k), torch.einsum("bd,bsd->bs", q, k))
    general = MultiplicativeScore(4, 6)
    k6 = torch.randn(3, 5, 6)
    torch.testing.assert_close(general(q, k6), torch.einsum("bd,de,bse->bs", q, general.w.weight, k6))
    scaled = MultiplicativeScore(4, 4, learned=False, scaled=True)
    torch.testing.assert_close(scaled(q, k), dot(q, k) / 2)


@settings(max_examples=50, deadline=None)
@given(lengths=st.lists(st.integers(1, 9), min_size=1, max_size=6), seed=st.integers(0, 10_000))
def test_padded_keys_get_exactly_zero_weight_and_rows_sum_to_one(lengths, seed):
    g = torch.Generator().manual_seed(seed)
    lens = torch.tensor(lengths)
    S = max(lengths) + 2
    scores = torch.randn(len(lengths), S, generator=g) * 10
    w = masked_softmax(scores, padding_mask(lens, S))
    for row, n in zip(w, lengths):
        assert (row[n:] == 0).all()
        assert (row[:n] > 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(len(lengths)))


def test_fully_masked_row_gives_zeros_not_nan():
    w = masked_softmax(torch.randn(2, 3), torch.tensor([[True, False, True], [False, False, False]]))
    assert not torch.isnan(w).any()
    assert (w[1] == 0).all() and torch.isclose(w[0].sum(), torch.tensor(1.0))


def test_attend_is_the_weighted_average():
    values = torch.arange(12.0).reshape(1, 4, 3)
    w = torch.tensor([[0.0, 0.5, 0.5, 0.0]])
    torch.testing.assert_close(attend(w, values), torch.tensor([[4.5, 5.5, 6.5]]))


def test_bad_inputs():
    score = AdditiveScore(4, 6, 8)
    with pytest.raises(ValueError, match=r"query of width 4, got shape \(2, 5\)"):
        score(torch.randn(2, 5), torch.randn(2, 3, 6))
    with pytest.raises(ValueError, match="keys of width 6"):
        score(torch.randn(2, 4), torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match="same batch size, got 2 and 3"):
        score(torch.randn(2, 4), torch.randn(3, 3, 6))
    with pytest.raises(ValueError, match="3 dimensions, got 2"):
        score(torch.randn(2, 4), torch.randn(2, 6))
    with pytest.raises(ValueError, match="query_dim == key_dim"):
        MultiplicativeScore(4, 6, learned=False)
    with pytest.raises(TypeError, match="bool mask"):
        masked_softmax(torch.randn(2, 3), torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"mask's shape \(2, 4\) does not broadcast"):
        masked_softmax(torch.randn(2, 3), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"lengths in \[1, 3\], got values from 1 to 5"):
        padding_mask(torch.tensor([1, 5]), 3)
    with pytest.raises(TypeError, match="integer tensor"):
        padding_mask(torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"weights of shape \(1, 4\)"):
        attend(torch.ones(1, 3), torch.ones(1, 4, 2))
    with pytest.raises(TypeError, match="torch.Tensor"):
        attend([[1.0]], torch.ones(1, 1, 2))


def test_padding_mask_is_the_key_padding_mask_without_its_query_axis():
    from attnbook.attention import key_padding_mask

    lens = torch.tensor([3, 1, 5])
    expected = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0]], dtype=torch.bool)
    assert torch.equal(padding_mask(lens, 6), expected)
    assert torch.equal(padding_mask(lens, 6), key_padding_mask(lens, 6)[:, 0])
    assert padding_mask(lens).shape == (3, 5)
    with pytest.raises(ValueError, match="expected max_len to be positive, got 0"):
        padding_mask(lens, 0)


def test_masked_softmax_equals_the_weights_of_scaled_dot_product_attention():
    from attnbook.attention import scaled_dot_product_attention

    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 1, 4, generator=g), torch.randn(2, 5, 4, generator=g)
    mask = padding_mask(torch.tensor([2, 5]), 5)  # (B, S)
    _, w = scaled_dot_product_attention(q, k, k, mask[:, None, :], scale=1.0)  # (B, 1, S)
    torch.testing.assert_close(masked_softmax((q @ k.transpose(1, 2))[:, 0], mask), w[:, 0])
