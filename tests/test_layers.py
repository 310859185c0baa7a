import pytest
import torch
from torch import nn

from attnbook.layers import Block, BlockConfig, FeedForward, LayerNorm, count_parameters
from attnbook.masks import causal_mask, padding_mask


def _copy_attention(ours, ref):
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.w_q.weight, ours.w_k.weight, ours.w_v.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.w_q.bias, ours.w_k.bias, ours.w_v.bias]))
        ref.out_proj.load_state_dict(ours.w_o.state_dict())


def to_torch(block: Block) -> nn.Module:
    """A torch.nn.TransformerEncoderLayer / DecoderLayer (GELU, no dropout) with ``block``'s weights."""
    c = block.config
    kind = nn.TransformerDecoderLayer if c.cross_attention else nn.TransformerEncoderLayer
    ref = kind(c.d_model, c.num_heads, dim_feedforward=c.d_ff, dropout=0.0, activation="gelu", batch_first=True,
               norm_first=c.norm_first)
    _copy_attention(block.self_attention, ref.self_attn)
    norms = [block.norm1, block.norm2]
    if c.cross_attention:
        _copy_attention(block.cross_attention, ref.multihead_attn)
        norms.append(block.norm3)
    ref.linear1.load_state_dict(block.feed_forward.up.state_dict())
    ref.linear2.load_state_dict(block.feed_forward.down.state_dict())
    for i, norm in enumerate(norms, 1):
        getattr(ref, f"norm{i}").load_state_dict(norm.state_dict())
    return ref.eval()


def _randomise(module):
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.3)


def test_layer_norm_is_the_formula():
    torch.manual_seed(0)
    ln = LayerNorm(12, eps=1e-3)
    _randomise(ln)
    x = (torch.randn(3, 5, 12) * 4 + 2).requires_grad_(True)
    mean, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True, unbiased=False)
    formula = (x - mean) / torch.sqrt(var + 1e-3) * ln.weight + ln.bias
    y = ln(x)
    torch.testing.assert_close(y, formula, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(y)
    torch.testing.assert_close(torch.autograd.grad(y, x, g)[0], torch.autograd.grad(formula, x, g)[0],
                               atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("attention", ["scratch", "fused"])
def test_encoder_block_equals_torch_encoder_layer(norm_first, attention):
    torch.manual_seed(0)
    block = Block(BlockConfig(16, 4, 32, norm_first=norm_first, attention=attention)).eval()
    _randomise(block)
    ref = to_torch(block)
    x = torch.randn(2, 6, 16)
    keep = padding_mask(torch.tensor([6, 4]), 6)  # (B, 1, S)
    with torch.no_grad():
        torch.testing.assert_close(block(x), ref(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(block(x, keep), ref(x, src_key_padding_mask=~keep[:, 0]), atol=1e-5, rtol=1e-5)
        causal = nn.Transformer.generate_square_subsequent_mask(6)
        torch.testing.assert_close(block(x, is_causal=True), ref(x, src_mask=causal), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("attention", ["scratch", "fused"])
def test_decoder_block_equals_torch_decoder_layer(norm_first, attention):
    torch.manual_seed(1)
    block = Block(BlockConfig(16, 4, 24, norm_first=norm_first, cross_attention=True, attention=attention)).eval()
    _randomise(block)
    ref = to_torch(block)
    y, memory = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    keep = padding_mask(torch.tensor([7, 3]), 7)  # (B, 1, S)
    causal = nn.Transformer.generate_square_subsequent_mask(5)
    with torch.no_grad():
        ours, w = block(y, memory=memory, memory_mask=keep, is_causal=True, need_weights=True)
        expected = ref(y, memory, tgt_mask=causal, memory_key_padding_mask=~keep[:, 0])
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    assert w.shape == (2, 4, 5, 7) and (w[1, :, :, 3:] == 0).all()  # cross-attention weights, zero on padding


def test_kv_cache_gives_what_the_full_sequence_gives():
    torch.manual_seed(0)
    for attention in ("scratch", "fused"):
        block = Block(BlockConfig(16, 4, num_kv_heads=2, attention=attention)).eval()
        x = torch.randn(2, 7, 16)
        with torch.no_grad():
            full, (k, v) = block(x, is_causal=True, use_cache=True)
            first, past = block(x[:, :4], is_causal=True, use_cache=True)
            rest, present, w = block(x[:, 4:], is_causal=True, past=past, use_cache=True, need_weights=True)
        assert k.shape == (2, 2, 7, 4) and present[0].shape == (2, 2, 7, 4)
        assert w.shape == (2, 4, 3, 7) and (w[:, :, 0, 5:] == 0).all()  # query 4 sees keys 0..4
        torch.testing.assert_close(torch.cat([first, rest], 1), full, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(present[0], k)


def test_need_weights_returns_self_attention_weights_without_cross_attention():
    torch.manual_seed(0)
    block = Block(BlockConfig(8, 2, attention="fused"))
    x = torch.randn(1, 4, 8)
    out, w = block(x, is_causal=True, need_weights=True)
    torch.testing.assert_close(out, block(x, is_causal=True), atol=1e-6, rtol=1e-5)
    assert w.shape == (1, 2, 4, 4) and (w.triu(1) == 0).all()


class _Doubler(nn.Module):
    def forward(self, h, *, extra=False):
        return (2 * h, h.sum()) if extra else 2 * h


def test_a_custom_mixer_replaces_self_attention():
    torch.manual_seed(0)
    block = Block(BlockConfig(8, 1, d_ff=0), mixer=_Doubler())
    assert block.self_attention is None and block.feed_forward is None
    assert count_parameters(block) == 16  # only norm1
    x = torch.randn(2, 3, 8)
    torch.testing.assert_close(block(x), x + 2 * block.norm1(x))
    out, aux = block(x, need_weights=True, mixer_options={"extra": True})
    torch.testing.assert_close(out, x + 2 * block.norm1(x))
    torch.testing.assert_close(aux, block.norm1(x).sum())
    with pytest.raises(ValueError, match="no KV cache"):
        block(x, use_cache=True)


def test_dropout_only_in_training():
    torch.manual_seed(0)
    block = Block(BlockConfig(8, 2, dropout=0.5))
    x = torch.randn(2, 3, 8)
    a, b = block(x), block(x)
    assert not torch.allclose(a, b)
    block.eval()
    torch.testing.assert_close(block(x), block(x))
    ff = FeedForward(8, 16, dropout=0.2).eval()
    torch.testing.assert_close(ff(x), ff.down(nn.functional.gelu(ff.up(x))))


def test_count_parameters_counts_trainable_ones():
    ff = FeedForward(4, 8)
    assert count_parameters(ff) == 4 * 8 + 8 + 8 * 4 + 4
    ff.up.weight.requires_grad_(False)
    assert count_parameters(ff) == 8 + 8 * 4 + 4
    from attnbook.rnn import count_parameters as reexported
    assert reexported is count_parameters


def test_bad_input_is_reported_clearly():
    with pytest.raises(ValueError, match="d_model divisible by num_heads"):
        BlockConfig(10, 4)
    with pytest.raises(TypeError, match="cross_attention to be a bool"):
        BlockConfig(8, 2, cross_attention=1)
    with pytest.raises(ValueError, match=r"dropout in \[0, 1\), got 1.5"):
        BlockConfig(8, 2, dropout=1.5)
    with pytest.raises(ValueError, match="attention to be one of 'scratch', 'fused', got 'flash'"):
        BlockConfig(8, 2, attention="flash")
    with pytest.raises(TypeError, match="expected a BlockConfig, got dict"):
        Block({"d_model": 8})
    with pytest.raises(TypeError, match="mixer to be an nn.Module"):
        Block(BlockConfig(8, 2), mixer=lambda h: h)
    with pytest.raises(ValueError, match="last dimension of 8"):
        LayerNorm(8)(torch.randn(2, 4))
    with pytest.raises(ValueError, match="positive eps"):
        LayerNorm(8, eps=0)
    block, decoder = Block(BlockConfig(8, 2)), Block(BlockConfig(8, 2, cross_attention=True))
    x = torch.randn(1, 3, 8)
    with pytest.raises(ValueError, match=r"x of width d_model=8, got shape \(1, 3, 6\)"):
        block(torch.randn(1, 3, 6))
    with pytest.raises(ValueError, match="memory exactly when the block has cross-attention"):
        block(x, memory=x)
    with pytest.raises(ValueError, match="memory exactly when the block has cross-attention"):
        decoder(x)
    with pytest.raises(ValueError, match=r"past keys of shape \(B, num_kv_heads, S, head_dim\) = \(1, 2, "
                                         r"5, 4\), got \(1, 2, 5, 3\)"):
        block(x, past=(torch.randn(1, 2, 5, 3), torch.randn(1, 2, 5, 3)), is_causal=True)
    with pytest.raises(TypeError, match="past to be a \\(keys, values\\) pair"):
        block(x, past=torch.randn(1, 2, 5, 4))
    with pytest.raises(ValueError, match="The shape of the mask is"):
        block(x, causal_mask(4))


def test_feed_forward_holds_two_thirds_of_a_block_at_width_4d():
    # chapter 6 prints this share; it is fixed by the shapes (8d^2 + 5d against 4d^2 + 4d), so it is tested here
    d = 512
    block = Block(BlockConfig(d_model=d, num_heads=8))
    ff, attn = count_parameters(block.feed_forward), count_parameters(block.self_attention)
    assert (ff, attn) == (8 * d * d + 5 * d, 4 * d * d + 4 * d)
    assert 0.66 < ff / (ff + attn) < 0.67
