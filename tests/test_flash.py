import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from attnbook.attention import scaled_dot_product_attention
from attnbook.flash import flash_attention, flash_attention_backward, flash_attention_forward, online_softmax


def _causal(L, S):
    """The package's causal convention, written out: query i sees keys 0 .. i + (S - L) (bottom right)."""
    return torch.ones(L, S, dtype=torch.bool).tril(S - L)


def _torch(q, k, v, causal, **kwargs):
    """PyTorch's fused attention with the bottom-right causal mask (its own is_causal is top-left)."""
    mask = _causal(q.shape[-2], k.shape[-2]) if causal else None
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, **kwargs)


def _qkv(B, H, L, S, d, dv, seed=0, dtype=torch.float32, grad=False):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, L, d, generator=g, dtype=dtype)
    k = torch.randn(B, H, S, d, generator=g, dtype=dtype)
    v = torch.randn(B, H, S, dv, generator=g, dtype=dtype)
    return tuple(t.requires_grad_(grad) for t in (q, k, v))


@settings(max_examples=40, deadline=None)
@given(B=st.integers(1, 2), H=st.integers(1, 3), L=st.integers(1, 40), S=st.integers(1, 40), d=st.integers(1, 9),
       dv=st.integers(1, 6), block_q=st.integers(1, 17), block_k=st.integers(1, 17), causal=st.booleans(),
       seed=st.integers(0, 2**16))
def test_equals_pytorch_fused_attention_on_random_shapes(B, H, L, S, d, dv, block_q, block_k, causal, seed):
    q, k, v = _qkv(B, H, L, S, d, dv, seed)
    out = flash_attention(q, k, v, is_causal=causal, block_q=block_q, block_k=block_k)
    expected = _torch(q, k, v, causal)
    torch.testing.assert_close(out, expected, atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("L,S,block_q,block_k", [(100, 100, 32, 32), (97, 97, 16, 24), (33, 70, 8, 16),
                                                 (70, 33, 16, 8), (1, 1, 4, 4), (50, 50, 64, 64)])
def test_causal_and_lengths_not_divisible_by_the_blocks(causal, L, S, block_q, block_k):
    q, k, v = _qkv(2, 3, L, S, 16, 8, seed=L + S)
    out = flash_attention(q, k, v, is_causal=causal, block_q=block_q, block_k=block_k)
    torch.testing.assert_close(out, _torch(q, k, v, causal), atol=2e-6, rtol=1e-5)
    ref, _ = scaled_dot_product_attention(q, k, v, _causal(L, S) if causal else None)  # the book's own reference
    torch.testing.assert_close(out, ref, atol=2e-6, rtol=1e-5)


def test_logsumexp_and_custom_scale():
    q, k, v = _qkv(1, 2, 19, 23, 8, 4, seed=3)
    out, lse = flash_attention_forward(q, k, v, scale=0.3, block_q=5, block_k=7)
    scores = q @ k.transpose(-2, -1) * 0.3
    torch.testing.assert_close(lse, torch.logsumexp(scores, dim=-1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, scale=0.3), atol=2e-6, rtol=1e-5)


def test_large_scores_do_not_overflow():
    q, k, v = _qkv(1, 1, 20, 20, 4, 4, seed=1)
    out = flash_attention(q * 300, k * 300, v, block_q=6, block_k=6)  # scores in the tens of thousands
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q * 300, k * 300, v), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("L,S", [(37, 37), (20, 45), (45, 20)])
def test_gradients_match_autograd_through_plain_attention(causal, L, S):
    q, k, v = _qkv(2, 2, L, S, 8, 5, seed=7, dtype=torch.float64, grad=True)
    grad_out = torch.randn(2, 2, L, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    ours = torch.autograd.grad(flash_attention(q, k, v, is_causal=causal, block_q=8, block_k=16), (q, k, v), grad_out)
    ref = torch.autograd.grad(_torch(q, k, v, causal), (q, k, v), grad_out)
    for name, a, b in zip("qkv", ours, ref):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8, msg=lambda m: f"d{name}: {m}")


def test_causal_is_bottom_right_and_queries_without_keys_get_zero():
    q, k, v = _qkv(1, 2, 7, 4, 3, 2, seed=5, dtype=torch.float64, grad=True)
    out, lse = flash_attention_forward(q, k, v, is_causal=True, block_q=2, block_k=3)
    assert float(out[..., :3, :].detach().abs().max()) == 0.0 and torch.isinf(lse[..., :3]).all()  # 7 - 4 = 3 see nothing
    torch.testing.assert_close(out[..., 3:, :], F.scaled_dot_product_attention(q[..., 3:, :], k, v, is_causal=True))
    grads = torch.autograd.grad(flash_attention(q, k, v, is_causal=True, block_q=2, block_k=3).sum(), (q, k, v))
    assert all(torch.isfinite(g).all() for g in grads) and float(grads[0][..., :3, :].abs().max()) == 0.0
    # a KV cache: 1 new query after 5 cached keys sees all 6, as the last row of the full causal attention
    q, k, v = _qkv(1, 1, 6, 6, 4, 3, seed=6)
    full = flash_attention(q, k, v, is_causal=True, block_q=4, block_k=4)
    torch.testing.assert_close(flash_attention(q[..., 5:, :], k, v, is_causal=True), full[..., 5:, :])


def test_gradcheck():
    q, k, v = _qkv(1, 1, 6, 7, 3, 2, seed=2, dtype=torch.float64, grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: flash_attention(a, b, c, is_causal=True, block_q=4, block_k=3),
                                    (q, k, v))


def test_backward_does_not_form_the_score_matrix():
    # Every intermediate of the backward pass is at most one tile (block_q x block_k) wide in the key axis.
    q, k, v = _qkv(1, 1, 64, 64, 4, 4, seed=0)
    out, lse = flash_attention_forward(q, k, v, block_q=8, block_k=8)
    seen = []

    class Spy(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            result = func(*args, **(kwargs or {}))
            if isinstance(result, torch.Tensor):
                seen.append(result.numel())
            return result

    with Spy():
        flash_attention_backward(torch.ones_like(out), q, k, v, out, lse, block_q=8, block_k=8)
    assert max(seen) == 64 * 4  # the gradients themselves (L x d); no (64 x 64) score matrix
    assert 64 * 64 not in seen


def test_online_softmax_matches_softmax_and_tracks_the_running_max():
    x = torch.tensor([1.0, 3.0, 2.0, 8.0, 0.5, 9.0, -4.0])
    s, states = online_softmax(x, block_size=2)
    torch.testing.assert_close(s, torch.softmax(x, 0))
    assert [m for m, _ in states] == [3.0, 8.0, 9.0, 9.0]
    final_m, final_l = states[-1]
    assert math.isclose(final_l, torch.exp(x - final_m).sum().item(), rel_tol=1e-6)
    big, _ = online_softmax(x + 1000, block_size=3)
    torch.testing.assert_close(big, torch.softmax(x, 0))


@pytest.mark.parametrize("bad", [0, -3])
def test_bad_block_sizes_raise_value_error(bad):
    q, k, v = _qkv(1, 1, 4, 4, 2, 2)
    with pytest.raises(ValueError, match="expected block_q to be positive"):
        flash_attention(q, k, v, block_q=bad)
    with pytest.raises(ValueError, match="expected block_k to be positive"):
        flash_attention(q, k, v, block_k=bad)
    with pytest.raises(ValueError, match="expected block_size to be positive"):
        online_softmax(torch.randn(4), bad)


@pytest.mark.parametrize("bad", [2.0, True, "8", None])
def test_block_sizes_of_the_wrong_type_raise_type_error(bad):
    q, k, v = _qkv(1, 1, 4, 4, 2, 2)
    with pytest.raises(TypeError, match="expected block_k to be an int"):
        flash_attention(q, k, v, block_k=bad)


def test_bad_shapes_and_types_raise_clear_errors():
    q, k, v = _qkv(2, 1, 5, 6, 4, 3)
    with pytest.raises(ValueError, match="same width d_k"):
        flash_attention(q, k[..., :3], v)
    with pytest.raises(ValueError, match="key and value of the same length"):
        flash_attention(q, k, v[..., :5, :])
    with pytest.raises(ValueError, match="same leading"):
        flash_attention(q, k[:1], v[:1])
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        flash_attention(q[0, 0, 0], k, v)
    with pytest.raises(TypeError, match="floating-point"):
        flash_attention(q.long(), k, v)
    with pytest.raises(TypeError, match="one dtype"):
        flash_attention(q.double(), k, v)
    with pytest.raises(TypeError, match="torch.Tensor"):
        flash_attention(q.numpy(), k, v)
    with pytest.raises(TypeError, match="is_causal to be a bool"):
        flash_attention(q, k, v, is_causal=1)
    with pytest.raises(ValueError, match="non-empty"):
        online_softmax(torch.zeros(0))
    with pytest.raises(ValueError, match="at least one query and one key"):
        flash_attention(q[..., :0, :], k, v)
