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


class _Frames(nn.Module):
    """A caller's source embedding: feature frames (B, S, 5) -> (B, S, d_model), frames of zeros are padding."""

    def __init__(self, d_model):
        super().__init__()
        self.proj = nn.Linear(5, d_model)

    def forward(self, frames):
        return self.proj(frames), (frames.abs().sum(-1) > 0)[:, None, :]  # (B, S, d), (B, 1, S)


def test_a_pluggable_source_embedding_and_sources_without_lengths():
    torch.manual_seed(0)
    config = TransformerConfig(None, 9, d_model=16, num_heads=2, num_encoder_layers=1, num_decoder_layers=1,
                               attention="fused")
    model = EncoderDecoderTransformer(config, source_embedding=_Frames(16)).eval()
    frames = torch.randn(2, 6, 5)
    frames[1, 4:] = 0  # the second source has 4 real frames
    tgt = torch.tensor([[1, 3, 4], [1, 5, 6]])
    with torch.no_grad():
        logits, w = model(frames, None, tgt, need_weights=True)
        alone = model(frames[1:, :4], None, tgt[1:])
    assert logits.shape == (2, 3, 9) and w.shape == (2, 2, 3, 6)
    assert (w[1, :, :, 4:] == 0).all()  # the embedding's own mask hides the padded frames
    torch.testing.assert_close(logits[1:], alone, atol=1e-5, rtol=1e-5)
    ids, weights = model.greedy_decode(frames, None, 4, sos_id=1, eos_id=2)
    assert ids.shape == (2, 4) and weights.shape == (2, 2, 4, 6)
    with pytest.raises(ValueError, match="source_embedding module when src_vocab is None"):
        EncoderDecoderTransformer(config)


@pytest.mark.parametrize("norm_first", [True, False])
def test_scratch_and_fused_encoder_decoders_agree(tiny_task, norm_first):
    batch = tiny_task.encode(tiny_task.split("train")[:6])
    outs = []
    for attention in ("scratch", "fused"):
        torch.manual_seed(0)
        config = TransformerConfig(len(tiny_task.src_vocab), len(tiny_task.tgt_vocab), d_model=16, num_heads=2,
                                   norm_first=norm_first, attention=attention)
        model = EncoderDecoderTransformer(config).eval()
        with torch.no_grad():
            outs.append((model(batch.src, batch.src_len, batch.tgt_in),
                         model.greedy_decode(batch.src, batch.src_len, 5)[0]))
    torch.testing.assert_close(outs[0][0], outs[1][0], atol=1e-5, rtol=1e-5)
    assert torch.equal(outs[0][1], outs[1][1])


def test_decoder_block_is_a_block_and_greedy_decode_checks_its_ids(tiny_task):
    from attnbook.layers import Block

    block = DecoderBlock(BlockConfig(d_model=8, num_heads=2))
    assert isinstance(block, Block) and block.config.cross_attention and EncoderBlock is Block
    model = EncoderDecoderTransformer(TransformerConfig(len(tiny_task.src_vocab), len(tiny_task.tgt_vocab),
                                                        d_model=16, num_heads=2, max_len=8))
    batch = tiny_task.encode(tiny_task.split("train")[:2])
    with pytest.raises(ValueError, match=r"expected eos_id in \[0, "):
        model.greedy_decode(batch.src, batch.src_len, 3, eos_id=-1)
    with pytest.raises(ValueError, match="max_len <= the model's max_len=8, got 9"):
        model.greedy_decode(batch.src, batch.src_len, 9)
    with pytest.raises(ValueError, match=r"expected src in \[0, "):
        model(batch.src + 1000, batch.src_len, batch.tgt_in)
    with pytest.raises(ValueError, match="expected tgt_in with batch size 2, got 1"):
        model(batch.src, batch.src_len, batch.tgt_in[:1])
