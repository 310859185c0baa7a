"""GPT's position options (chapter 12): every scheme trains, caches and rejects bad settings."""

import pytest
import torch

from attnbook.gpt import GPT, POSITIONS, GPTConfig
from attnbook.positional import RopeScaling, alibi_bias


def small(position, **kw):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=11, block_size=24, d_model=16, num_heads=4, num_layers=2, position=position,
                         **kw)).eval()


def test_the_default_is_the_learned_model_of_chapter_6():
    torch.manual_seed(0)
    default = GPT(GPTConfig(vocab_size=11, block_size=24, d_model=16, num_heads=4, num_layers=2))
    assert default.config.position == "learned"
    assert sorted(default.state_dict()) == sorted(small("learned").state_dict())
    ids = torch.randint(0, 11, (2, 9))
    torch.testing.assert_close(default(ids), small("learned")(ids))
    for position in ("none", "rope", "alibi", "sinusoidal"):
        assert "position_embedding.weight" not in small(position).state_dict()


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("attention", ["scratch", "fused"])
def test_cache_equals_no_cache_and_paths_agree(position, attention):
    model = small(position, attention=attention)
    ids = torch.randint(0, 11, (2, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(ids)
        first, past = model(ids[:, :6], use_cache=True)
        rest, _ = model(ids[:, 6:], past=past, use_cache=True)
        logits, weights = model(ids, need_weights=True)
    torch.testing.assert_close(torch.cat([first, rest], 1), full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits, full, atol=1e-5, rtol=1e-5)
    assert len(weights) == 2 and weights[0].shape == (2, 4, 10, 10)
    torch.testing.assert_close(weights[1].sum(-1), torch.ones(2, 4, 10))
    assert float(weights[0].triu(1).abs().max()) == 0.0  # causal


def test_without_positions_one_layer_reads_the_past_as_a_set():
    # "none": only the causal mask tells order. With one layer, the last position attends over the set of
    # all tokens, so reordering the earlier ones leaves its prediction unchanged; learned positions do not
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=11, block_size=24, d_model=16, num_heads=4, num_layers=1, position="none")
    model = GPT(config).eval()
    learned = GPT(GPTConfig(vocab_size=11, block_size=24, d_model=16, num_heads=4, num_layers=1)).eval()
    a, b = torch.tensor([[1, 2, 3, 4, 5]]), torch.tensor([[3, 1, 4, 2, 5]])
    with torch.no_grad():
        torch.testing.assert_close(model(a)[:, -1], model(b)[:, -1], atol=1e-5, rtol=1e-5)
        assert (learned(a)[:, -1] - learned(b)[:, -1]).abs().max() > 1e-4


def test_a_rope_block_depends_on_offsets_only():
    from attnbook.layers import Block, BlockConfig
    from attnbook.positional import rotary_cos_sin
    torch.manual_seed(0)
    block = Block(BlockConfig(16, 4)).eval()
    x = torch.randn(2, 7, 16)
    with torch.no_grad():
        at_zero = block(x, is_causal=True, rotary=rotary_cos_sin(torch.arange(7), 4))
        at_forty = block(x, is_causal=True, rotary=rotary_cos_sin(torch.arange(40, 47), 4))
        unrotated = block(x, is_causal=True)
    torch.testing.assert_close(at_zero, at_forty, atol=1e-5, rtol=1e-5)
    assert (at_zero - unrotated).abs().max() > 1e-4


def test_rope_scaling_at_factor_one_changes_nothing_and_changes_the_model_above_one():
    base = small("rope")
    with torch.no_grad():  # sharper attention than at initialisation, so that positions matter
        for block in base.blocks:
            block.self_attention.w_q.weight.mul_(30)
            block.self_attention.w_k.weight.mul_(30)
    ids = torch.randint(0, 11, (2, 20), generator=torch.Generator().manual_seed(4))
    for kind in ("pi", "ntk", "yarn"):
        same = small("rope", rope_scaling=RopeScaling(kind, 1.0, original_length=8))
        same.load_state_dict(base.state_dict())
        stretched = small("rope", rope_scaling=RopeScaling(kind, 4.0, original_length=8))
        stretched.load_state_dict(base.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(same(ids), base(ids))
            assert (stretched(ids) - base(ids)).abs().max() > 1e-4


def test_bad_position_settings():
    with pytest.raises(ValueError, match="position to be one of"):
        GPTConfig(vocab_size=5, block_size=8, d_model=16, num_heads=4, position="relative")
    with pytest.raises(ValueError, match="rope_scaling only with position='rope'"):
        GPTConfig(vocab_size=5, block_size=8, d_model=16, num_heads=4, rope_scaling=RopeScaling("pi", 2.0))
    with pytest.raises(ValueError, match="even d for rotary"):
        GPTConfig(vocab_size=5, block_size=8, d_model=12, num_heads=4, position="rope")
    with pytest.raises(TypeError, match="RopeScaling or None"):
        GPTConfig(vocab_size=5, block_size=8, d_model=16, num_heads=4, position="rope", rope_scaling="pi")
    with pytest.raises(ValueError, match="use_cache or need_weights"):
        small("rope")(torch.zeros(1, 3, dtype=torch.long), use_cache=True, need_weights=True)
