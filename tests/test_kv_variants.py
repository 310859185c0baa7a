import copy

import pytest
import torch

from attnbook.attention import scaled_dot_product_attention
from attnbook.gpt import GPT, GPTConfig
from attnbook.kv_variants import (LatentAttention, cache_bytes_per_token, check_layer_options, kv_bytes_formula,
                                  window_mask)
from attnbook.multihead import MultiHeadAttention, MultiHeadConfig
from attnbook.sparse import sliding_window_mask

VARIANTS = [{}, {"num_kv_heads": 2}, {"num_kv_heads": 1}, {"kv_latent": 8}, {"windows": (5, None)},
            {"kv_share": 2}, {"gate": True}, {"qk_norm": True}, {"softcap": 3.0}]


def _gpt(attention="scratch", **options):
    torch.manual_seed(0)
    return GPT(GPTConfig(30, 24, d_model=32, num_heads=4, num_layers=2, attention=attention, **options)).eval()


@pytest.mark.parametrize("options", VARIANTS)
@pytest.mark.parametrize("attention", ["scratch", "fused"])
def test_cache_equals_no_cache_for_every_variant(options, attention):
    model = _gpt(attention, **options)
    ids = torch.randint(0, 30, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(ids)
        first, cache = model(ids[:, :13], use_cache=True)
        rest, cache = model(ids[:, 13:], past=cache, use_cache=True)
    torch.testing.assert_close(torch.cat([first, rest], 1), full, atol=1e-5, rtol=1e-5)
    assert cache[0][0].shape[2] == 20


@pytest.mark.parametrize("options", VARIANTS)
def test_measured_cache_bytes_equal_the_formula(options):
    model = _gpt(**options)
    if options.get("kv_latent"):
        for block in model.blocks:
            block.self_attention.absorb()
    with torch.no_grad():
        _, cache = model(torch.zeros(3, 16, dtype=torch.long), use_cache=True)
    measured = cache_bytes_per_token(cache, windows=model.config.windows)
    assert measured == pytest.approx(kv_bytes_formula(model.config, context=16, dtype_bytes=4))
    assert cache_bytes_per_token(cache, windows=model.config.windows, dtype=torch.float16) == pytest.approx(
        measured / 2)


def test_latent_attention_absorbed_equals_unabsorbed():
    torch.manual_seed(0)
    layer = LatentAttention(MultiHeadConfig(32, 4), 12)  # with biases on w_q and w_o
    x, mask = torch.randn(2, 9, 32), torch.rand(2, 1, 9, 9) > 0.3
    with torch.no_grad():
        plain = layer(x, is_causal=True)
        plain_masked = layer(x, mask=mask)
        k, v = layer.project_kv(x)
        layer.absorb()
        absorbed = layer(x, is_causal=True)
        absorbed_masked = layer(x, mask=mask)
        latent, empty = layer.project_kv(x)
    torch.testing.assert_close(absorbed, plain, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(absorbed_masked, plain_masked, atol=1e-5, rtol=1e-5)
    assert k.shape == v.shape == (2, 4, 9, 8) and latent.shape == (2, 1, 9, 12) and empty.shape == (2, 1, 9, 0)
    layer.absorb(False)
    with torch.no_grad():
        torch.testing.assert_close(layer(x, is_causal=True), plain)


def test_absorbed_gpt_gives_the_same_logits_and_text():
    model = _gpt(kv_latent=8)
    twin = copy.deepcopy(model)
    for block in twin.blocks:
        block.self_attention.absorb()
    ids = torch.randint(0, 30, (2, 6))
    with torch.no_grad():
        torch.testing.assert_close(twin(ids), model(ids), atol=1e-5, rtol=1e-5)
    assert torch.equal(twin.generate(ids, 10, temperature=0), model.generate(ids, 10, temperature=0))


def test_latent_attention_rejects_bad_configs():
    with pytest.raises(ValueError, match="num_kv_heads = num_heads"):
        LatentAttention(MultiHeadConfig(16, 4, 2), 4)
    with pytest.raises(TypeError, match="MultiHeadConfig"):
        LatentAttention({"d_model": 16}, 4)
    with pytest.raises(ValueError, match="positive"):
        LatentAttention(MultiHeadConfig(16, 4), 0)
    with pytest.raises(ValueError, match="qk_norm"):
        LatentAttention(MultiHeadConfig(16, 4, qk_norm=True), 4).absorb()
    layer = LatentAttention(MultiHeadConfig(16, 4), 4).absorb()
    with pytest.raises(ValueError, match=r"\(B, 1, S, 4\)"):
        layer.check_kv(torch.zeros(1, 4, 3, 4), torch.zeros(1, 1, 3, 0), 1)


def test_window_mask_matches_sparse_and_is_bottom_right():
    for n in (1, 4, 9):
        for w in (1, 2, 5, 20):
            assert torch.equal(window_mask(n, n, w), sliding_window_mask(n, w - 1, causal=True))
    assert torch.equal(window_mask(2, 7, 3), window_mask(7, 7, 3)[-2:])
    assert window_mask(1, 10, 4).sum() == 4
    with pytest.raises(ValueError, match="num_queries <= num_keys"):
        window_mask(5, 3, 2)
    with pytest.raises(TypeError, match="window"):
        window_mask(3, 3, 1.5)


def test_windowed_gpt_ignores_tokens_beyond_the_window_in_a_windowed_only_model():
    model = _gpt(windows=(3, 3))  # two layers of window 3: the receptive field is 5 tokens
    a = torch.randint(0, 30, (1, 12), generator=torch.Generator().manual_seed(0))
    b = a.clone()
    b[0, :4] = (b[0, :4] + 1) % 30
    with torch.no_grad():
        torch.testing.assert_close(model(a)[0, 9:], model(b)[0, 9:])
        assert not torch.allclose(model(a)[0, 4:6], model(b)[0, 4:6])


def test_shared_layers_have_no_key_value_projections_and_share_tensors():
    model = _gpt(kv_share=2)
    assert not hasattr(model.blocks[1].self_attention, "w_k") and hasattr(model.blocks[0].self_attention, "w_k")
    with torch.no_grad():
        _, cache = model(torch.zeros(1, 5, dtype=torch.long), use_cache=True)
    assert cache[1][0] is cache[0][0]


def test_layer_options_reject_bad_values():
    with pytest.raises(ValueError, match="divide num_layers"):
        check_layer_options(None, 3, 4)
    with pytest.raises(ValueError, match="sequence of 2"):
        check_layer_options((4,), 1, 2)
    with pytest.raises(ValueError, match="share a window"):
        check_layer_options((4, None), 2, 2)
    with pytest.raises(TypeError, match="each window"):
        GPTConfig(10, 8, d_model=16, num_heads=2, num_layers=2, windows=(2.0, None))
    with pytest.raises(TypeError, match="list of"):
        cache_bytes_per_token("cache")
    with pytest.raises(TypeError, match="GPTConfig"):
        kv_bytes_formula({}, context=4)


def test_gate_at_one_is_plain_attention():
    torch.manual_seed(0)
    plain = MultiHeadAttention(MultiHeadConfig(16, 4))
    gated = MultiHeadAttention(MultiHeadConfig(16, 4, gate=True))
    gated.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        gated.w_g.weight.zero_()
        gated.w_g.bias.fill_(40.0)  # sigmoid(40) = 1 in float32
    x = torch.randn(2, 7, 16)
    with torch.no_grad():
        torch.testing.assert_close(gated(x, is_causal=True), plain(x, is_causal=True))
        gated.w_g.bias.fill_(-40.0)  # a closed gate: only the output bias is left
        torch.testing.assert_close(gated(x), plain.w_o.bias.expand(2, 7, 16))


def test_qk_norm_bounds_the_scores_and_softcap_caps_them():
    torch.manual_seed(0)
    layer = MultiHeadAttention(MultiHeadConfig(16, 2, qk_norm=True))
    with torch.no_grad():
        layer.w_q.weight.mul_(1000)
        layer.w_k.weight.mul_(1000)
    q, k, _ = layer._qkv(torch.randn(1, 5, 16))
    scores = q @ k.transpose(-2, -1) / 8 ** 0.5
    assert scores.abs().max() <= 8 ** 0.5 + 1e-4  # unit RMS vectors of width 8: |q.k| <= 8
    q, k, v = torch.randn(3, 4, 8) * 20, torch.randn(3, 6, 8) * 20, torch.randn(3, 6, 8)
    _, w = scaled_dot_product_attention(q, k, v, softcap=2.0)
    logits = w.log() - w.log().amax(-1, keepdim=True)
    assert logits.min() >= -4.0 - 1e-4  # scores in (-2, 2): no two differ by more than 4
    s = (q @ k.transpose(-2, -1)) / 8 ** 0.5
    torch.testing.assert_close(w, torch.softmax(2.0 * torch.tanh(s / 2.0), -1))
    with pytest.raises(ValueError, match="softcap"):
        MultiHeadConfig(16, 2, softcap=-1.0)
    with pytest.raises(ValueError, match="softcap"):
        scaled_dot_product_attention(q, k, v, softcap=0)
    with pytest.raises(TypeError, match="qk_norm"):
        MultiHeadConfig(16, 2, qk_norm=1)
