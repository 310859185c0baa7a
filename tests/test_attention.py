import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from attnbook import masks
from attnbook.attention import (SelfAttention, causal_mask, compute_attention, fused_attention, key_padding_mask,
                                scaled_dot_product_attention)


@st.composite
def qkv_and_mask(draw):
    B, L, S = draw(st.integers(1, 3)), draw(st.integers(1, 7)), draw(st.integers(1, 7))
    dk, dv = draw(st.integers(1, 16)), draw(st.integers(1, 9))
    kind = draw(st.sampled_from(["none", "bool", "float", "causal", "bool-broadcast"]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 10_000)))
    q, k, v = torch.randn(B, L, dk, generator=g), torch.randn(B, S, dk, generator=g), torch.randn(B, S, dv, generator=g)
    if kind == "bool":
        mask = torch.rand(B, L, S, generator=g) < 0.7  # rows may be fully masked
    elif kind == "bool-broadcast":
        mask = torch.rand(L, S, generator=g) < 0.7
    elif kind == "float":
        mask = torch.randn(B, L, S, generator=g) * 2
    else:
        mask = None
    return q, k, v, mask, kind == "causal"


@settings(max_examples=80, deadline=None)
@given(qkv_and_mask())
def test_matches_pytorch_fused_attention(args):
    q, k, v, mask, is_causal = args
    out, w = scaled_dot_product_attention(q, k, v, mask, is_causal=is_causal)
    L, S = q.shape[-2], k.shape[-2]
    # causal is bottom-right aligned: PyTorch's own is_causal (top-left) only agrees when L == S
    ref_mask = causal_mask(L, S) if is_causal else mask
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=ref_mask)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    if is_causal and L == S:
        torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-5,
                                   rtol=1e-4)
    torch.testing.assert_close(fused_attention(q, k, v, mask, is_causal=is_causal), out, atol=1e-5, rtol=1e-4)
    assert not torch.isnan(w).any()
    sums = w.sum(-1)
    assert torch.all(torch.isclose(sums, torch.ones_like(sums), atol=1e-5) | (sums == 0))


def test_four_dimensional_heads_and_scale():
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 4)
    out, w = scaled_dot_product_attention(q, k, v, scale=0.3)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, scale=0.3), atol=1e-5, rtol=1e-4)
    assert w.shape == (2, 3, 5, 6)


def test_bool_mask_gives_exactly_zero_weight_and_float_mask_is_added():
    q, k, v = torch.randn(1, 2, 4), torch.randn(1, 3, 4), torch.randn(1, 3, 2)
    mask = torch.tensor([[True, False, True], [False, True, True]])
    _, w = scaled_dot_product_attention(q, k, v, mask)
    assert (w[0][~mask] == 0).all()
    bias = torch.tensor([[0.0, 1.0, -2.0], [0.5, 0.0, 0.0]])
    _, wb = scaled_dot_product_attention(q, k, v, bias)
    torch.testing.assert_close(wb, torch.softmax(q @ k.mT / 2 + bias, -1))
    _, wf = scaled_dot_product_attention(q, k, v, torch.zeros(2, 3).masked_fill(~mask, float("-inf")))
    torch.testing.assert_close(wf, w)


def test_fully_masked_row_is_zero_not_nan():
    q, k, v = torch.randn(1, 2, 4), torch.randn(1, 3, 4), torch.randn(1, 3, 2)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    out, w = scaled_dot_product_attention(q, k, v, mask)
    assert not torch.isnan(out).any() and not torch.isnan(w).any()
    assert (w[0, 1] == 0).all() and (out[0, 1] == 0).all()
    torch.testing.assert_close(w[0, 0].sum(), torch.tensor(1.0))


def test_causal_mask_and_is_causal_agree():
    q, k, v = torch.randn(2, 5, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 3)
    a, wa = scaled_dot_product_attention(q, k, v, is_causal=True)
    b, _ = scaled_dot_product_attention(q, k, v, causal_mask(5))
    torch.testing.assert_close(a, b)
    assert (wa.triu(1) == 0).all()
    assert causal_mask(2, 3).tolist() == [[True, True, False], [True, True, True]]  # bottom-right
    assert causal_mask is masks.causal_mask and key_padding_mask is masks.padding_mask  # one implementation


@settings(max_examples=30, deadline=None)
@given(lengths=st.lists(st.integers(1, 8), min_size=1, max_size=5), seed=st.integers(0, 10_000))
def test_padding_changes_nothing_for_the_real_tokens(lengths, seed):
    g = torch.Generator().manual_seed(seed)
    S = max(lengths) + 2
    q, k, v = torch.randn(len(lengths), 3, 4, generator=g), torch.randn(len(lengths), S, 4, generator=g), \
        torch.randn(len(lengths), S, 5, generator=g)
    mask = key_padding_mask(torch.tensor(lengths), S)
    assert mask.shape == (len(lengths), 1, S)
    out, w = scaled_dot_product_attention(q, k, v, mask)
    for b, n in enumerate(lengths):
        assert (w[b, :, n:] == 0).all()
        alone, _ = scaled_dot_product_attention(q[b], k[b, :n], v[b, :n])
        torch.testing.assert_close(out[b], alone, atol=1e-6, rtol=1e-5)


@settings(max_examples=25, deadline=None)
@given(T=st.integers(2, 9), seed=st.integers(0, 10_000))
def test_self_attention_is_permutation_equivariant(T, seed):
    torch.manual_seed(seed)
    layer = SelfAttention(8, 6)
    x = torch.randn(2, T, 8)
    perm = torch.randperm(T)
    with torch.no_grad():
        out, w = layer(x, need_weights=True)
        out_p, w_p = layer(x[:, perm], need_weights=True)
    torch.testing.assert_close(out_p, out[:, perm], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(w_p, w[:, perm][:, :, perm], atol=1e-6, rtol=1e-5)


def test_self_attention_returns_weights_without_storing_them():
    layer = SelfAttention(8)
    x = torch.randn(3, 4, 8)
    before = set(vars(layer))
    out, w = layer(x, need_weights=True)
    assert out.shape == (3, 4, 8) and w.shape == (3, 4, 4)
    assert set(vars(layer)) == before
    assert layer(x).shape == (3, 4, 8)
    q, k, v = layer.w_q(x), layer.w_k(x), layer.w_v(x)
    torch.testing.assert_close(out, layer.w_o(F.scaled_dot_product_attention(q, k, v)), atol=1e-5, rtol=1e-4)
    rope = SelfAttention(8, rotary=True)
    _, w_causal = rope(x, is_causal=True, need_weights=True)
    assert (w_causal.triu(1) == 0).all()


def test_bad_inputs():
    q, k, v = torch.randn(2, 5, 8), torch.randn(2, 7, 8), torch.randn(2, 7, 3)
    with pytest.raises(ValueError, match="query and key of the same width d_k, got 8 and 6"):
        scaled_dot_product_attention(q, torch.randn(2, 7, 6), v)
    with pytest.raises(ValueError, match="key and value of the same length.*got 7 and 4"):
        scaled_dot_product_attention(q, k, torch.randn(2, 4, 3))
    with pytest.raises(ValueError, match=r"The shape of the mask is \(5, 5\), but should be \(5, 7\)"):
        scaled_dot_product_attention(q, k, v, torch.ones(5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"The shape of the mask is \(3, 5, 7\), but should be \(2, 5, 7\)"):
        scaled_dot_product_attention(q, k, v, torch.ones(3, 5, 7, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool mask .* or a floating-point mask .*got dtype torch.int64"):
        scaled_dot_product_attention(q, k, v, torch.ones(5, 7, dtype=torch.long))
    with pytest.raises(TypeError, match="floating-point tensor, got dtype torch.int64"):
        scaled_dot_product_attention(q.long(), k, v)
    with pytest.raises(TypeError, match="torch.Tensor, got list"):
        scaled_dot_product_attention([[1.0]], k, v)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        scaled_dot_product_attention(torch.randn(8), k, v)
    with pytest.raises(ValueError, match="leading .* dimensions broadcast"):
        scaled_dot_product_attention(torch.randn(3, 5, 8), k, v)
    with pytest.raises(TypeError, match="is_causal to be a bool"):
        scaled_dot_product_attention(q, k, v, is_causal=1)
    with pytest.raises(ValueError, match=r"width d_model=8, got shape \(2, 5, 6\)"):
        SelfAttention(8)(torch.randn(2, 5, 6))
    with pytest.raises(ValueError, match="even d_head for rotary embeddings.*got 5"):
        SelfAttention(8, 5, rotary=True)
    with pytest.raises(ValueError, match=r"lengths in \[1, 3\], got values from 1 to 4"):
        key_padding_mask(torch.tensor([1, 4]), 3)
    with pytest.raises(ValueError, match="num_queries to be positive, got 0"):
        causal_mask(0)


@settings(max_examples=60, deadline=None)
@given(qkv_and_mask(), st.booleans())
def test_scratch_and_fused_give_the_same_outputs_and_gradients(args, add_causal):
    q, k, v, mask, is_causal = args
    is_causal = is_causal or add_causal
    if mask is not None and mask.dtype == torch.bool:
        mask = mask.clone()
        mask[..., -1] = True  # the last key is visible to every query (with causal too): no empty row
    grads = []
    for kind in ("scratch", "fused"):
        qq, kk, vv = (t.clone().requires_grad_(True) for t in (q, k, v))
        out, w = compute_attention(qq, kk, vv, mask, is_causal=is_causal, kind=kind)
        assert w is None
        out.square().sum().backward()
        grads.append((out.detach(), qq.grad, kk.grad, vv.grad))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_compute_attention_returns_weights_only_when_asked_and_checks_the_kind():
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 2)
    out, w = compute_attention(q, k, v, kind="fused", need_weights=True)  # weights force the scratch path
    ref, ref_w = scaled_dot_product_attention(q, k, v)
    assert torch.equal(out, ref) and torch.equal(w, ref_w)
    with pytest.raises(ValueError, match="attention to be one of 'scratch', 'fused', got 'flash'"):
        compute_attention(q, k, v, kind="flash")
    with pytest.raises(ValueError, match="attention to be one of"):
        SelfAttention(4, attention="fast")
    layer = SelfAttention(4, attention="fused")
    x = torch.randn(2, 5, 4)
    out, w = layer(x, is_causal=True, need_weights=True)
    torch.testing.assert_close(layer(x, is_causal=True), out, atol=1e-6, rtol=1e-5)
    assert w.shape == (2, 5, 5) and (w.triu(1) == 0).all()


def test_causal_with_more_queries_than_keys_hides_everything_from_the_first_queries():
    q, k, v = torch.randn(1, 4, 3), torch.randn(1, 2, 3), torch.randn(1, 2, 3)
    out, w = scaled_dot_product_attention(q, k, v, is_causal=True)
    assert (out[0, :2] == 0).all() and (w[0, :2] == 0).all()  # queries 0, 1 come before every key
    torch.testing.assert_close(w[0, 2:].sum(-1), torch.ones(2))
    torch.testing.assert_close(fused_attention(q, k, v, is_causal=True), out, atol=1e-6, rtol=1e-5)
