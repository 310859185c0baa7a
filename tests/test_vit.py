"""Tests for attnbook.vit and the chapter 7 exercise checks (fast)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attnbook import check
from attnbook.exercises import ch07
from attnbook.vit import PatchEmbedding, ViT, ViTConfig, attention_rollout, patchify


def small_config(**kwargs) -> ViTConfig:
    base = dict(image_size=8, patch_size=4, channels=1, num_classes=3, d_model=16, num_heads=2, num_layers=2)
    base.update(kwargs)
    return ViTConfig(**base)


def test_patchify_shape_and_order() -> None:
    x = torch.arange(2 * 1 * 4 * 6, dtype=torch.float32).reshape(2, 1, 4, 6)
    p = patchify(x, 2)
    assert p.shape == (2, 6, 4)
    assert torch.equal(p[0, 0], torch.tensor([0.0, 1.0, 6.0, 7.0]))  # top-left patch
    assert torch.equal(p[0, 1], torch.tensor([2.0, 3.0, 8.0, 9.0]))  # the patch to its right


def test_patchify_matches_unfold() -> None:
    x = torch.randn(3, 3, 8, 12)
    expected = nn.functional.unfold(x, kernel_size=4, stride=4).transpose(1, 2)
    assert torch.equal(patchify(x, 4), expected)


@pytest.mark.parametrize("channels", [1, 3])
def test_patch_embedding_equals_strided_convolution(channels: int) -> None:
    torch.manual_seed(0)
    embed = PatchEmbedding(patch_size=4, d_model=8, channels=channels)
    x = torch.randn(2, channels, 12, 8)
    conv = embed.as_conv()
    with torch.no_grad():
        expected = conv(x).flatten(2).transpose(1, 2)
        got = embed(x)
    assert got.shape == (2, 6, 8)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_vit_shapes_and_weights() -> None:
    torch.manual_seed(0)
    model = ViT(small_config())
    x = torch.randn(5, 1, 8, 8)
    logits = model(x)
    assert logits.shape == (5, 3)
    logits2, weights = model(x, need_weights=True)
    torch.testing.assert_close(logits, logits2)
    assert len(weights) == 2 and all(w.shape == (5, 2, 5, 5) for w in weights)
    assert model.config.d_ff == 64
    logits.sum().backward()
    assert model.pos_embed.grad is not None and model.cls_token.grad is not None


def test_vit_uses_position() -> None:
    torch.manual_seed(0)
    model = ViT(small_config()).eval()
    x = torch.randn(1, 1, 8, 8)
    flipped = torch.cat([x[..., 4:], x[..., :4]], dim=-1)  # patches swapped left-right
    with torch.no_grad():
        assert not torch.allclose(model(x), model(flipped))


@pytest.mark.parametrize("shape", [(2, 1, 9, 8), (2, 1, 8, 6)])
def test_not_divisible_is_a_clear_error(shape) -> None:
    with pytest.raises(ValueError, match="expected .*divisible.*got"):
        PatchEmbedding(4, 8)(torch.randn(*shape))
    with pytest.raises(ValueError, match="expected .*divisible.*got"):
        patchify(torch.randn(*shape), 4)


def test_wrong_channels_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="expected images with 1 channel.*got 3"):
        ViT(small_config())(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match="expected images with 3 channel.*got 1"):
        PatchEmbedding(4, 8, channels=3)(torch.randn(2, 1, 8, 8))


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="expected an image_size divisible"):
        ViTConfig(image_size=10, patch_size=4)
    with pytest.raises(ValueError, match="expected"):
        ViTConfig(d_model=10, num_heads=4)
    with pytest.raises(ValueError, match="expected 8x8 images, got 12x12"):
        ViT(small_config())(torch.randn(1, 1, 12, 12))
    with pytest.raises(TypeError):
        ViT("not a config")


def test_rollout_on_model_rows_sum_to_one() -> None:
    torch.manual_seed(0)
    _, weights = ViT(small_config())(torch.randn(3, 1, 8, 8), need_weights=True)
    r = attention_rollout(weights)
    torch.testing.assert_close(r.sum(-1), torch.ones(3, 5), atol=1e-5, rtol=1e-5)


def test_exercise_checks_pass_reference_solutions(capsys) -> None:
    ch07.check_patchify(patchify)
    ch07.check_rollout(attention_rollout)
    ch07.check_similarity(lambda e: torch.nn.functional.cosine_similarity(e[:, None], e[None], dim=-1))
    assert capsys.readouterr().out.count("PASS") == 3


def test_exercise_checks_catch_mistakes() -> None:
    with pytest.raises(check.CheckFailed):
        ch07.check_patchify(lambda x, p: x.reshape(x.shape[0], -1, x.shape[1] * p * p))
    with pytest.raises(check.CheckFailed):
        ch07.check_rollout(lambda ws: ws[-1].mean(1))
    with pytest.raises(check.CheckFailed):
        ch07.check_similarity(lambda e: e @ e.T)


def test_exercise_not_done_is_reported() -> None:
    def todo(*args):
        raise NotImplementedError
    with pytest.raises(check.CheckFailed, match="(?i)not"):
        ch07.check_rollout(todo)


def test_vit_is_built_from_the_one_block_and_fused_attention_agrees() -> None:
    from attnbook.layers import Block

    torch.manual_seed(0)
    scratch = ViT(small_config())
    assert all(type(b) is Block for b in scratch.blocks)
    fused = ViT(ViTConfig(image_size=8, patch_size=4, d_model=16, num_heads=2, num_layers=2, num_classes=3,
                          attention="fused"))
    fused.load_state_dict(scratch.state_dict())
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(fused(x), scratch(x), atol=1e-5, rtol=1e-5)
    logits, weights = fused(x, need_weights=True)  # weights asked: the scratch path
    torch.testing.assert_close(logits, scratch(x), atol=1e-5, rtol=1e-5)
    assert len(weights) == 2 and weights[0].shape == (4, 2, 5, 5)
    with pytest.raises(TypeError, match="need_weights to be a bool"):
        scratch(x, need_weights=1)
    with pytest.raises(ValueError, match=r"expected dropout in \[0, 1\)"):
        ViTConfig(dropout=1.5)
    with pytest.raises(ValueError, match="attention to be one of"):
        ViTConfig(attention="flash")
