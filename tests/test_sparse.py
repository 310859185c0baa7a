import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnbook.attention import scaled_dot_product_attention
from attnbook.sparse import sliding_window_attention, sliding_window_mask


def test_mask_is_a_band_with_global_rows_and_columns():
    m = sliding_window_mask(6, 1, num_global=1)
    expected = torch.tensor([[1, 1, 1, 1, 1, 1],
                             [1, 1, 1, 0, 0, 0],
                             [1, 1, 1, 1, 0, 0],
                             [1, 0, 1, 1, 1, 0],
                             [1, 0, 0, 1, 1, 1],
                             [1, 0, 0, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(m, expected)
    c = sliding_window_mask(5, 2, causal=True, num_global=1)
    assert torch.equal(c, torch.tensor([[1, 0, 0, 0, 0],
                                        [1, 1, 0, 0, 0],
                                        [1, 1, 1, 0, 0],
                                        [1, 1, 1, 1, 0],
                                        [1, 0, 1, 1, 1]], dtype=torch.bool))
    assert torch.equal(sliding_window_mask(7, 10), torch.ones(7, 7, dtype=torch.bool))  # window >= length: full


@settings(max_examples=40, deadline=None)
@given(L=st.integers(1, 30), window=st.integers(0, 12), causal=st.booleans(), data=st.data(),
       seed=st.integers(0, 2**16))
def test_banded_computation_equals_masked_attention(L, window, causal, data, seed):
    G = data.draw(st.integers(0, min(L, 4)))
    g = torch.Generator().manual_seed(seed)
    q, k, v = torch.randn(2, 2, L, 5, generator=g), torch.randn(2, 2, L, 5, generator=g), torch.randn(2, 2, L, 3,
                                                                                                      generator=g)
    out = sliding_window_attention(q, k, v, window, causal=causal, num_global=G)
    expected, _ = scaled_dot_product_attention(q, k, v, sliding_window_mask(L, window, causal=causal, num_global=G))
    torch.testing.assert_close(out, expected, atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("causal,G", [(False, 0), (True, 0), (False, 2), (True, 3)])
def test_gradients_match_the_masked_reference(causal, G):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 23, 4, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = sliding_window_mask(23, 3, causal=causal, num_global=G)
    ours = torch.autograd.grad(sliding_window_attention(q, k, v, 3, causal=causal, num_global=G).sum(), (q, k, v))
    ref = torch.autograd.grad(scaled_dot_product_attention(q, k, v, mask)[0].sum(), (q, k, v))
    for a, b in zip(ours, ref):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b)


def test_tokens_outside_the_window_do_not_change_the_output():
    g = torch.Generator().manual_seed(1)
    q, k, v = torch.randn(1, 40, 8, generator=g), torch.randn(1, 40, 8, generator=g), torch.randn(1, 40, 8, generator=g)
    out = sliding_window_attention(q, k, v, 4)
    k2, v2 = k.clone(), v.clone()
    k2[:, 30:], v2[:, 30:] = 10.0, 10.0  # change keys/values far from query 10
    out2 = sliding_window_attention(q, k2, v2, 4)
    torch.testing.assert_close(out[:, :26], out2[:, :26])  # queries 0..25 see nothing at 30+
    assert (out[:, 26:] - out2[:, 26:]).abs().max() > 1e-3
    out_g = sliding_window_attention(q, k2, v2, 4, num_global=1)  # the global token 0 reads everything
    assert (out_g[:, 0] - sliding_window_attention(q, k, v, 4, num_global=1)[:, 0]).abs().max() > 1e-3


def test_bad_arguments_raise_clear_errors():
    q = torch.randn(1, 6, 4)
    with pytest.raises(ValueError, match="expected window >= 0"):
        sliding_window_mask(6, -1)
    with pytest.raises(TypeError, match="window to be an int"):
        sliding_window_attention(q, q, q, 2.0)
    with pytest.raises(ValueError, match="num_global between 0 and the length 6"):
        sliding_window_attention(q, q, q, 2, num_global=7)
    with pytest.raises(ValueError, match="self-attention shapes"):
        sliding_window_attention(q, torch.randn(1, 5, 4), torch.randn(1, 5, 4), 2)
    with pytest.raises(ValueError, match="expected length to be positive"):
        sliding_window_mask(0, 1)
    with pytest.raises(TypeError, match="causal to be a bool"):
        sliding_window_mask(4, 1, causal="yes")
    with pytest.raises(TypeError, match="floating-point"):
        sliding_window_attention(q.long(), q, q, 1)
