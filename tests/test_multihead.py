import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from attnbook.multihead import (MultiHeadAttention, MultiHeadConfig, kv_cache_bytes_per_token, merge_heads,
                                split_heads)


def _torch_pair(D=16, H=4, bias=True, seed=0):
    torch.manual_seed(seed)
    ref = nn.MultiheadAttention(D, H, bias=bias, batch_first=True)
    if bias:  # PyTorch initialises the biases to zero; make them matter
        with torch.no_grad():
            ref.in_proj_bias.normal_()
            ref.out_proj.bias.normal_()
    return ref, MultiHeadAttention.from_torch(ref)


@pytest.mark.parametrize("bias", [True, False])
def test_equals_torch_multihead_attention_without_mask(bias):
    ref, ours = _torch_pair(bias=bias)
    x = torch.randn(3, 7, 16)
    out, w = ours(x, need_weights=True)
    ref_out, ref_w = ref(x, x, x, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, ref_w, atol=1e-6, rtol=1e-5)
    assert w.shape == (3, 4, 7, 7)


def test_equals_torch_with_causal_and_padding_masks():
    ref, ours = _torch_pair()
    x = torch.randn(2, 6, 16)
    lengths = torch.tensor([6, 4])
    keep = torch.arange(6)[None, :] < lengths[:, None]  # (B, S), True = real token
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    mask = causal[None] & keep[:, None, :]  # (B, L, S), True = may attend; no row is empty
    out, w = ours(x, mask=mask, need_weights=True)
    ref_out, ref_w = ref(x, x, x, attn_mask=~causal, key_padding_mask=~keep, need_weights=True,
                         average_attn_weights=False)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, ref_w, atol=1e-6, rtol=1e-5)
    out_causal = ours(x, is_causal=True)
    torch.testing.assert_close(out_causal, ref(x, x, x, attn_mask=~causal, need_weights=False)[0],
                               atol=1e-5, rtol=1e-5)


def test_cross_attention_with_different_lengths_and_widths():
    layer = MultiHeadAttention(d_model=16, num_heads=4, kv_dim=10)
    x, context = torch.randn(2, 5, 16), torch.randn(2, 9, 10)
    out, w = layer(x, context, need_weights=True)
    assert out.shape == (2, 5, 16) and w.shape == (2, 4, 5, 9)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 5))
    ref = nn.MultiheadAttention(16, 4, kdim=10, vdim=10, batch_first=True)
    with torch.no_grad():
        ref.q_proj_weight.copy_(layer.w_q.weight)
        ref.k_proj_weight.copy_(layer.w_k.weight)
        ref.v_proj_weight.copy_(layer.w_v.weight)
        ref.in_proj_bias.copy_(torch.cat([layer.w_q.bias, layer.w_k.bias, layer.w_v.bias]))
        ref.out_proj.weight.copy_(layer.w_o.weight)
        ref.out_proj.bias.copy_(layer.w_o.bias)
    torch.testing.assert_close(out, ref(x, context, context)[0], atol=1e-5, rtol=1e-5)


def test_gqa_equals_mha_when_groups_equal_heads():
    torch.manual_seed(0)
    mha = MultiHeadAttention(d_model=24, num_heads=6)
    gqa = MultiHeadAttention(d_model=24, num_heads=6, num_kv_heads=6)
    gqa.load_state_dict(mha.state_dict())
    x = torch.randn(2, 5, 24)
    torch.testing.assert_close(gqa(x, is_causal=True), mha(x, is_causal=True))


def test_gqa_shares_key_value_heads_within_a_group():
    torch.manual_seed(0)
    gqa = MultiHeadAttention(d_model=24, num_heads=6, num_kv_heads=2)
    mha = MultiHeadAttention(d_model=24, num_heads=6)
    with torch.no_grad():  # an MHA whose key/value heads repeat each GQA head 3 times
        for name in ("w_k", "w_v"):
            w = getattr(gqa, name).weight.view(2, 4, 24).repeat_interleave(3, 0).reshape(24, 24)
            b = getattr(gqa, name).bias.view(2, 4).repeat_interleave(3, 0).reshape(24)
            getattr(mha, name).weight.copy_(w)
            getattr(mha, name).bias.copy_(b)
        for name in ("w_q", "w_o"):
            getattr(mha, name).load_state_dict(getattr(gqa, name).state_dict())
    x = torch.randn(2, 5, 24)
    torch.testing.assert_close(gqa(x), mha(x), atol=1e-6, rtol=1e-5)
    assert sum(p.numel() for p in gqa.parameters()) < sum(p.numel() for p in mha.parameters())


@settings(max_examples=40, deadline=None)
@given(T=st.integers(2, 9), cut=st.integers(1, 8), kv=st.sampled_from([1, 2, 4]), seed=st.integers(0, 1000))
def test_causal_attention_does_not_leak_the_future(T, cut, kv, seed):
    cut = min(cut, T - 1)
    torch.manual_seed(seed)
    layer = MultiHeadAttention(d_model=16, num_heads=4, num_kv_heads=kv)
    x = torch.randn(2, T, 16)
    changed = x.clone()
    changed[:, cut:] = torch.randn(2, T - cut, 16) * 5
    with torch.no_grad():
        a, b = layer(x, is_causal=True), layer(changed, is_causal=True)
    torch.testing.assert_close(a[:, :cut], b[:, :cut], atol=1e-6, rtol=1e-5)
    assert not torch.allclose(a[:, cut:], b[:, cut:])


def test_attend_with_cached_keys_matches_full_causal_attention():
    torch.manual_seed(0)
    layer = MultiHeadAttention(d_model=16, num_heads=4, num_kv_heads=2)
    x = torch.randn(1, 6, 16)
    full = layer(x, is_causal=True)
    k, v = layer.project_kv(x)  # (1, 2, 6, 4)
    last, _ = layer.attend(x[:, -2:], k, v, is_causal=True)  # two new queries after four cached tokens
    torch.testing.assert_close(last, full[:, -2:], atol=1e-6, rtol=1e-5)


def test_split_and_merge_heads_are_inverse():
    x = torch.randn(2, 5, 12)
    h = split_heads(x, 3)
    assert h.shape == (2, 3, 5, 4)
    torch.testing.assert_close(h[:, 1], x[..., 4:8])
    torch.testing.assert_close(merge_heads(h), x)


def test_kv_cache_bytes_per_token():
    for kv, expected in [(8, 2 * 64 * 2), (2, 2 * 16 * 2), (1, 2 * 8 * 2)]:
        layer = MultiHeadAttention(d_model=64, num_heads=8, num_kv_heads=kv)
        assert kv_cache_bytes_per_token(layer, num_layers=1, dtype=torch.float16) == expected
    assert kv_cache_bytes_per_token(layer, num_layers=3, dtype=torch.float32) == 3 * 2 * 8 * 4


def test_kv_cache_bytes_per_token_on_the_meta_device_at_a_7b_size():
    # chapter 5 measures a Llama-2-7B-sized layer (d 4096, 32 heads of 128, 32 layers) built on "meta"
    for kv, kib in [(32, 512), (8, 128), (1, 16)]:
        with torch.device("meta"):
            layer = MultiHeadAttention(d_model=4096, num_heads=32, num_kv_heads=kv, bias=False)
        per_token = kv_cache_bytes_per_token(layer, num_layers=32, dtype=torch.float16)
        assert per_token == 2 * kv * 128 * 2 * 32 == kib * 1024


def test_bad_input_is_reported_clearly():
    with pytest.raises(ValueError, match="d_model divisible by num_heads"):
        MultiHeadConfig(d_model=10, num_heads=4)
    with pytest.raises(ValueError, match="num_heads divisible by num_kv_heads"):
        MultiHeadConfig(d_model=12, num_heads=6, num_kv_heads=4)
    with pytest.raises(TypeError, match="expected num_heads to be an int"):
        MultiHeadConfig(d_model=12, num_heads=2.0)
    layer = MultiHeadAttention(d_model=8, num_heads=2)
    with pytest.raises(ValueError, match="width d_model=8"):
        layer(torch.randn(1, 3, 6))
    with pytest.raises(ValueError, match="3 dimensions"):
        layer(torch.randn(3, 8))
    with pytest.raises(ValueError, match="The shape of the mask is"):
        layer(torch.randn(1, 3, 8), mask=torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="expected a mask of shape"):
        layer(torch.randn(1, 3, 8), mask=torch.ones(3, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool mask"):
        layer(torch.randn(1, 3, 8), mask=torch.ones(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="same batch size"):
        layer(torch.randn(1, 3, 8), torch.randn(2, 3, 8))
    with pytest.raises(ValueError, match="batch_first=True"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(8, 2))


def _pair(kv, seed=0, **kw):
    torch.manual_seed(seed)
    scratch = MultiHeadAttention(d_model=16, num_heads=4, num_kv_heads=kv, attention="scratch", **kw)
    fused = MultiHeadAttention(d_model=16, num_heads=4, num_kv_heads=kv, attention="fused", **kw)
    fused.load_state_dict(scratch.state_dict())
    return scratch, fused


@settings(max_examples=40, deadline=None)
@given(L=st.integers(1, 7), S=st.integers(1, 7), kv=st.sampled_from([1, 2, 4]),
       kind=st.sampled_from(["none", "bool", "float", "bool-per-head"]), causal=st.booleans(),
       seed=st.integers(0, 1000))
def test_scratch_and_fused_agree_in_outputs_and_gradients(L, S, kv, kind, causal, seed):
    scratch, fused = _pair(kv, seed)
    g = torch.Generator().manual_seed(seed)
    x, context = torch.randn(2, L, 16, generator=g), torch.randn(2, S, 16, generator=g)
    mask = {"none": None, "bool": torch.rand(2, L, S, generator=g) < 0.6,
            "float": torch.randn(L, S, generator=g), "bool-per-head": torch.rand(2, 4, L, S, generator=g) < 0.6}[kind]
    if mask is not None and mask.dtype == torch.bool:
        mask[..., -1] = True  # no query without keys (bottom-right causal keeps the last key too)
    results = []
    for layer in (scratch, fused):
        xx, cc = x.clone().requires_grad_(True), context.clone().requires_grad_(True)
        out = layer(xx, cc, mask, is_causal=causal)
        out.square().sum().backward()
        results.append([out.detach(), xx.grad, cc.grad] + [p.grad for p in layer.parameters()])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kv", [4, 2, 1])
def test_fused_attend_with_a_cache_matches_full_causal_attention(kv):
    scratch, fused = _pair(kv)
    x = torch.randn(2, 7, 16)
    for layer in (scratch, fused):
        full = layer(x, is_causal=True)
        k, v = layer.project_kv(x)
        for new in (1, 3):  # one new token, or three after four cached (L != S)
            out, w = layer.attend(x[:, -new:], k, v, is_causal=True, need_weights=False)
            assert w is None
            torch.testing.assert_close(out, full[:, -new:], atol=1e-5, rtol=1e-5)
    out_f, w_f = fused.attend(x[:, -3:], *fused.project_kv(x), is_causal=True)  # weights asked: scratch path
    out_s, w_s = scratch.attend(x[:, -3:], *scratch.project_kv(x), is_causal=True)
    torch.testing.assert_close(out_f, out_s)
    torch.testing.assert_close(w_f, w_s)


def test_attend_reports_bad_cached_keys():
    layer = MultiHeadAttention(d_model=8, num_heads=2, num_kv_heads=1)
    x = torch.randn(1, 3, 8)
    k, v = layer.project_kv(x)
    with pytest.raises(ValueError, match=r"keys of shape \(B, num_kv_heads, S, head_dim\) = \(1, 1, 3, 4\), "
                                         r"got \(1, 2, 3, 4\)"):
        layer.attend(x, k.expand(1, 2, 3, 4), v)
    with pytest.raises(ValueError, match=r"values of shape .* got \(1, 1, 2, 4\)"):
        layer.attend(x, k, v[:, :, :2])
    with pytest.raises(ValueError, match="attention to be one of"):
        MultiHeadConfig(d_model=8, num_heads=2, attention="sdpa")
