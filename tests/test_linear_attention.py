import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from attnbook.linear_attention import elu_feature_map, linear_attention, linear_attention_quadratic


def _formula(q, k, v, causal):
    # the definition, written out token by token: out_i = sum_j phi(q_i).phi(k_j) v_j / sum_j phi(q_i).phi(k_j)
    fq, fk = F.elu(q) + 1, F.elu(k) + 1
    out = torch.empty(*q.shape[:-1], v.shape[-1], dtype=q.dtype)
    for i in range(q.shape[-2]):
        keys = range(i + 1) if causal else range(k.shape[-2])
        sims = torch.stack([(fq[..., i, :] * fk[..., j, :]).sum(-1) for j in keys], dim=-1)  # (..., n)
        vals = torch.stack([v[..., j, :] for j in keys], dim=-2)  # (..., n, d_v)
        out[..., i, :] = (sims[..., None] * vals).sum(-2) / sims.sum(-1, keepdim=True)
    return out


@settings(max_examples=30, deadline=None)
@given(L=st.integers(1, 20), d=st.integers(1, 6), dv=st.integers(1, 5), chunk=st.integers(1, 9),
       causal=st.booleans(), seed=st.integers(0, 2**16))
def test_equals_the_reference_formula(L, d, dv, chunk, causal, seed):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, L, n, generator=g, dtype=torch.float64) for n in (d, d, dv))
    out = linear_attention(q, k, v, causal=causal, chunk_size=chunk, eps=0.0)
    torch.testing.assert_close(out, _formula(q, k, v, causal))
    quad, weights = linear_attention_quadratic(q, k, v, causal=causal, eps=0.0)
    torch.testing.assert_close(quad, out)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, L, dtype=torch.float64))


def test_cross_lengths_non_causal():
    q, k, v = torch.randn(3, 2, 5, 4), torch.randn(3, 2, 9, 4), torch.randn(3, 2, 9, 6)
    torch.testing.assert_close(linear_attention(q, k, v), _formula(q, k, v, False), atol=1e-6, rtol=1e-5)


def test_causal_outputs_ignore_the_future():
    q, k, v = torch.randn(1, 30, 8), torch.randn(1, 30, 8), torch.randn(1, 30, 8)
    out = linear_attention(q, k, v, causal=True, chunk_size=7)
    k2, v2 = k.clone(), v.clone()
    k2[:, 20:] += 3.0
    v2[:, 20:] -= 5.0
    out2 = linear_attention(q, k2, v2, causal=True, chunk_size=7)
    torch.testing.assert_close(out[:, :20], out2[:, :20])
    assert (out[:, 20:] - out2[:, 20:]).abs().max() > 1e-3


def test_feature_map_is_positive():
    assert (elu_feature_map(torch.linspace(-12, 30, 101)) > 0).all()
    assert (elu_feature_map(torch.linspace(-200, 0, 101)) >= 0).all()  # exp(-200) rounds to 0 in float32
    torch.testing.assert_close(elu_feature_map(torch.tensor([0.0, 2.0])), torch.tensor([1.0, 3.0]))


def test_differs_from_softmax_attention():
    # it is another attention, not softmax in disguise
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(1, 50, 16, generator=g), torch.randn(1, 50, 16, generator=g), torch.randn(1, 50, 16,
                                                                                                   generator=g)
    assert (linear_attention(q, k, v) - F.scaled_dot_product_attention(q, k, v)).abs().max() > 0.05


def test_bad_arguments_raise_clear_errors():
    q = torch.randn(1, 6, 4)
    with pytest.raises(ValueError, match="as many queries as keys"):
        linear_attention(q, torch.randn(1, 5, 4), torch.randn(1, 5, 4), causal=True)
    with pytest.raises(ValueError, match="same width d_k"):
        linear_attention(q, torch.randn(1, 6, 3), q)
    with pytest.raises(ValueError, match="eps to be a non-negative"):
        linear_attention(q, q, q, eps=-1.0)
    with pytest.raises(ValueError, match="chunk_size to be positive"):
        linear_attention(q, q, q, causal=True, chunk_size=0)
    with pytest.raises(TypeError, match="causal to be a bool"):
        linear_attention(q, q, q, causal=None)
    with pytest.raises(TypeError, match="floating-point"):
        elu_feature_map(torch.arange(3))
