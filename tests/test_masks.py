import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnbook.masks import causal_mask, check_mask, combine_masks, padding_mask


@settings(max_examples=40, deadline=None)
@given(L=st.integers(1, 9), S=st.integers(1, 9))
def test_causal_mask_is_bottom_right_aligned(L, S):
    m = causal_mask(L, S)
    assert m.shape == (L, S) and m.dtype == torch.bool
    for i in range(L):
        for j in range(S):
            assert bool(m[i, j]) == (j <= i + (S - L))  # query i sees keys 0 .. i + S - L
    if L <= S:  # the last L rows of the square mask: L new queries after S - L cached tokens
        assert torch.equal(m, causal_mask(S)[S - L:])


def test_square_causal_mask_is_the_lower_triangle_and_matches_pytorch_is_causal():
    assert torch.equal(causal_mask(4), torch.ones(4, 4, dtype=torch.bool).tril())
    assert causal_mask(2, 3).tolist() == [[True, True, False], [True, True, True]]
    assert causal_mask(3, 2).tolist() == [[False, False], [True, False], [True, True]]
    q, k, v = torch.randn(2, 5, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 3)
    F = torch.nn.functional
    torch.testing.assert_close(F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(5)),
                               F.scaled_dot_product_attention(q, k, v, is_causal=True))


def test_padding_mask():
    m = padding_mask(torch.tensor([3, 1]), 4)
    assert m.shape == (2, 1, 4)
    assert m[:, 0].tolist() == [[True, True, True, False], [True, False, False, False]]
    assert padding_mask(torch.tensor([2, 3])).shape == (2, 1, 3)  # num_keys defaults to the longest


def test_combine_masks():
    a = torch.tensor([[True, False], [True, True]])
    b = torch.tensor([[True, True], [False, True]])
    assert combine_masks(a, b).tolist() == [[True, False], [False, True]]
    assert combine_masks(None, a) is a and combine_masks(None) is None
    f = torch.tensor([[0.5, 1.0], [2.0, 3.0]])
    fb = combine_masks(f, a)
    assert fb.tolist() == [[0.5, float("-inf")], [2.0, 3.0]]
    assert combine_masks(a, f).tolist() == fb.tolist()
    assert combine_masks(f, f).tolist() == (2 * f).tolist()


def test_check_mask_shapes_and_errors():
    assert check_mask(torch.ones(3, 4, dtype=torch.bool), (2, 3, 4)).shape == (3, 4)
    assert check_mask(torch.ones(2, 3, 4, dtype=torch.bool), (2, 5, 3, 4), heads=True).shape == (2, 1, 3, 4)
    with pytest.raises(ValueError, match=r"The shape of the mask is \(3, 3\), but should be \(3, 4\)"):
        check_mask(torch.ones(3, 3, dtype=torch.bool), (2, 3, 4))
    with pytest.raises(ValueError, match=r"The shape of the mask is \(3, 3, 4\), but should be \(2, 3, 4\)"):
        check_mask(torch.ones(3, 3, 4, dtype=torch.bool), (2, 5, 3, 4), heads=True)
    with pytest.raises(ValueError, match=r"expected a mask of shape \(L, S\), \(B, L, S\) or \(B, heads, L, S\)"):
        check_mask(torch.ones(4, dtype=torch.bool), (2, 5, 3, 4), heads=True)
    with pytest.raises(TypeError, match="bool mask .* or a floating-point mask .*got dtype torch.int64"):
        check_mask(torch.ones(3, 4, dtype=torch.long), (3, 4))
    with pytest.raises(TypeError, match="torch.Tensor, got list"):
        check_mask([[True]], (1, 1))
    with pytest.raises(TypeError, match="bool mask"):
        combine_masks(torch.ones(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="num_keys to be positive, got 0"):
        causal_mask(3, 0)
    with pytest.raises(TypeError, match="num_queries to be an int"):
        causal_mask(2.0)
    with pytest.raises(ValueError, match=r"lengths in \[1, 3\], got values from 0 to 2"):
        padding_mask(torch.tensor([0, 2]), 3)
    with pytest.raises(TypeError, match="integer tensor"):
        padding_mask(torch.tensor([1.0, 2.0]), 3)
