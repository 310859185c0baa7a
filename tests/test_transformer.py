import pytest
import torch
from torch import nn

from attnbook.tasks import NumberTask
from attnbook.training import cycle, seq2seq_loss, set_seed, train
from attnbook.transformer import (BlockConfig, DecoderBlock, EncoderBlock, EncoderDecoderTransformer, LayerNorm,
                                  TransformerConfig)


def test_layer_norm_matches_pytorch():
    torch.manual_seed(0)
    ours, ref = LayerNorm(12), nn.LayerNorm(12)
    with torch.no_grad():
        for p in (ours.weight, ours.bias):
            p.normal_()
        ref.weight.copy_(ours.weight)
        ref.bias.copy_(ours.bias)
    x = torch.randn(3, 5, 12) * 4 + 2
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)
    x.requires_grad_(True)
    g_ours = torch.autograd.grad(ours(x).square().sum(), x)[0]
    g_ref = torch.autograd.grad(ref(x).square().sum(), x)[0]
    torch.testing.assert_close(g_ours, g_ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("norm_first", [True, False])
def test_blocks_keep_shapes_and_post_ln_normalises(norm_first):
    torch.manual_seed(0)
    config = BlockConfig(d_model=16, num_heads=4, norm_first=norm_first)
    enc, dec = EncoderBlock(config), DecoderBlock(config)
    x, memory = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    y, w = enc(x, need_weights=True)
    z, cw = dec(x, memory, need_weights=True)
    assert y.shape == z.shape == (2, 5, 16)
    assert w.shape == (2, 4, 5, 5) and cw.shape == (2, 4, 5, 7)
    if not norm_first:  # post-LN: every output vector is normalised
        torch.testing.assert_close(y.mean(-1), torch.zeros(2, 5), atol=1e-5, rtol=0)


def test_post_ln_block_matches_torch_encoder_layer():
    """Our post-LN encoder block equals torch.nn.TransformerEncoderLayer (GELU, no dropout)."""
    torch.manual_seed(0)
    ours = EncoderBlock(BlockConfig(d_model=16, num_heads=4, d_ff=32, norm_first=False))
    ref = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, dropout=0.0, activation="gelu", batch_first=True)
    a = ours.attention
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(torch.cat([a.w_q.weight, a.w_k.weight, a.w_v.weight]))
        ref.self_attn.in_proj_bias.copy_(torch.cat([a.w_q.bias, a.w_k.bias, a.w_v.bias]))
        ref.self_attn.out_proj.load_state_dict(a.w_o.state_dict())
        ref.linear1.load_state_dict(ours.feed_forward.up.state_dict())
        ref.linear2.load_state_dict(ours.feed_forward.down.state_dict())
        ref.norm1.load_state_dict(ours.norm1.state_dict())
        ref.norm2.load_state_dict(ours.norm2.state_dict())
    ref.eval()
    x = torch.randn(2, 6, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def tiny_task():
    return NumberTask(languages=("en",), max_digits=4, train_per_length=100, eval_per_length=10, seed=1)


def test_padding_does_not_change_the_encoder_output(tiny_task):
    torch.manual_seed(0)
    config = TransformerConfig(len(tiny_task.src_vocab), len(tiny_task.tgt_vocab), d_model=16, num_heads=2)
    model = EncoderDecoderTransformer(config).eval()
    batch = tiny_task.encode(tiny_task.split("train")[:8])
    padded = torch.cat([batch.src, torch.zeros(8, 3, dtype=torch.long)], 1)
    with torch.no_grad():
        a = model(batch.src, batch.src_len, batch.tgt_in)
        b = model(padded, batch.src_len, batch.tgt_in)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_target_positions_are_causal(tiny_task):
    torch.manual_seed(0)
    config = TransformerConfig(len(tiny_task.src_vocab), len(tiny_task.tgt_vocab), d_model=16, num_heads=2)
    model = EncoderDecoderTransformer(config).eval()
    batch = tiny_task.encode(tiny_task.split("train")[:4])
    changed = batch.tgt_in.clone()
    changed[:, 2:] = 5
    with torch.no_grad():
        a = model(batch.src, batch.src_len, batch.tgt_in)
        b = model(batch.src, batch.src_len, changed)
    torch.testing.assert_close(a[:, :2], b[:, :2], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm_first", [True, False])
def test_a_few_training_steps_lower_the_loss(tiny_task, norm_first):
    set_seed(0)
    config = TransformerConfig(len(tiny_task.src_vocab), len(tiny_task.tgt_vocab), d_model=32, num_heads=4,
                               num_encoder_layers=1, num_decoder_layers=1, norm_first=norm_first)
    model = EncoderDecoderTransformer(config)
    history = train(model, cycle(lambda e: tiny_task.batches("train", 32, seed=e)), steps=30,
                    loss_fn=seq2seq_loss, lr=3e-3, log_every=5, progress=False)
    assert history.loss[-1] < 0.85 * history.loss[0]
    test = tiny_task.encode(tiny_task.split("test")[:5])
    ids, weights = model.greedy_decode(test.src, test.src_len, max_len=5)
    assert ids.shape == (5, 5) and weights.shape[:3] == (5, 4, 5)


def test_bad_input_is_reported_clearly(tiny_task):
    with pytest.raises(ValueError, match="d_model divisible by num_heads"):
        BlockConfig(d_model=10, num_heads=4)
    with pytest.raises(ValueError, match="num_heads divisible by num_kv_heads"):
        TransformerConfig(10, 10, d_model=16, num_heads=4, num_kv_heads=3)
    with pytest.raises(ValueError, match="last dimension of 8"):
        LayerNorm(8)(torch.randn(2, 4))
    with pytest.raises(TypeError, match="norm_first to be a bool"):
        BlockConfig(d_model=8, num_heads=2, norm_first="pre")
    model = EncoderDecoderTransformer(TransformerConfig(len(tiny_task.src_vocab), len(tiny_task.tgt_vocab),
                                                        d_model=16, num_heads=2, max_len=4))
    batch = tiny_task.encode(tiny_task.split("train")[:2])
    with pytest.raises(ValueError, match="max_len=4"):
        model(torch.ones(2, 6, dtype=torch.long), torch.tensor([6, 6]), batch.tgt_in[:, :2])
    with pytest.raises(ValueError, match="src_len"):
        model(batch.src, torch.tensor([1]), batch.tgt_in)
