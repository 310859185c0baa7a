"""Tests for attnbook.text_to_image: the patch-by-patch generator and its cross-attention (fast)."""

import pytest
import torch

from attnbook.text_to_image import PatchGenerator, PatchGeneratorConfig, unpatchify
from attnbook.vit import patchify


def _model(**kwargs):
    base = dict(patch_dim=6, num_patches=5, vocab_size=9, max_words=3, d_model=16, num_heads=2, num_layers=2)
    base.update(kwargs)
    torch.manual_seed(0)
    return PatchGenerator(PatchGeneratorConfig(**base)).eval()


def test_shapes_and_weights():
    model = _model()
    prompt, patches = torch.randint(0, 9, (4, 3)), torch.randn(4, 5, 6)
    out, w = model(prompt, patches, need_weights=True)
    assert out.shape == (4, 5, 6) and w.shape == (4, 2, 2, 5, 3)
    torch.testing.assert_close(w.sum(-1), torch.ones(4, 2, 2, 5))
    torch.testing.assert_close(model(prompt, patches), out)


def test_written_out_block_equals_the_decoder_block():
    model = _model(num_layers=1)
    prompt, patches = torch.randint(0, 9, (2, 3)), torch.randn(2, 5, 6)
    words = model.encode_prompt(prompt)
    x = torch.cat([model.start.expand(2, 1, -1), model.patch_in(patches[:, :4])], 1) + model.patch_pos
    y, w = model.blocks[0](x, words, need_weights=True)  # the package's DecoderBlock as it is
    out, weights = model(prompt, patches, need_weights=True)
    torch.testing.assert_close(out, model.out(model.norm(y)))
    torch.testing.assert_close(weights[:, 0], w)


def test_teacher_forcing_is_causal_over_patches():
    model = _model()
    prompt, patches = torch.randint(0, 9, (2, 3)), torch.randn(2, 5, 6)
    changed = patches.clone()
    changed[:, 2] += 3.0
    with torch.no_grad():
        a, b = model(prompt, patches), model(prompt, changed)
    torch.testing.assert_close(a[:, :3], b[:, :3])  # patch 2 is an input only from position 3 on
    assert not torch.allclose(a[:, 3:], b[:, 3:])


def test_generate_feeds_its_own_patches_back():
    model = _model()
    prompt = torch.randint(0, 9, (3, 3))
    drawn, w = model.generate(prompt)
    assert drawn.shape == (3, 5, 6) and w.shape == (3, 2, 2, 5, 3)
    with torch.no_grad():
        again, w2 = model(prompt, drawn, need_weights=True)
    torch.testing.assert_close(again, drawn)  # every patch is what the model predicts from those before it
    torch.testing.assert_close(w2, w)


def test_the_prompt_matters_and_edits_reach_the_image():
    model = _model()
    prompt = torch.tensor([[3, 4, 5]])
    drawn, _ = model.generate(prompt)
    other, _ = model.generate(torch.tensor([[3, 4, 6]]))
    assert not torch.allclose(drawn, other)
    same, _ = model.generate(prompt, edit=lambda w: w)
    torch.testing.assert_close(same, drawn)
    # sending all attention to word 3 is the same as a prompt in which every word's value is word 3's
    only_last = lambda w: torch.zeros_like(w).index_fill(-1, torch.tensor([2]), 1.0)  # noqa: E731
    edited, w = model.generate(prompt, edit=only_last)
    assert torch.equal(w[..., 2], torch.ones_like(w[..., 2]))
    assert not torch.allclose(edited, drawn)


def test_unpatchify_inverts_patchify():
    images = torch.randn(2, 3, 14, 21)
    patches = patchify(images, 7)
    torch.testing.assert_close(unpatchify(patches, 7, 14, 21, channels=3), images)


def test_bad_input():
    model = _model()
    with pytest.raises(ValueError, match="max_words=3"):
        model(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 5, 6))
    with pytest.raises(ValueError, match=r"word ids in \[0, 9\)"):
        model(torch.full((1, 3), 9), torch.zeros(1, 5, 6))
    with pytest.raises(ValueError, match=r"\(B, 5, 6\)"):
        model(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 4, 6))
    with pytest.raises(ValueError, match="as many prompts"):
        model(torch.zeros(2, 3, dtype=torch.long), torch.zeros(1, 5, 6))
    with pytest.raises(ValueError, match="edit to return"):
        model.generate(torch.zeros(1, 3, dtype=torch.long), edit=lambda w: w[..., :2])
    with pytest.raises(TypeError, match="PatchGeneratorConfig"):
        PatchGenerator({"patch_dim": 6})
    with pytest.raises(ValueError, match="divisible"):
        unpatchify(torch.zeros(1, 2, 49), 7, 14, 15)
    with pytest.raises(ValueError, match=r"\(B, 6, 49\)"):
        unpatchify(torch.zeros(1, 5, 49), 7, 14, 21)
