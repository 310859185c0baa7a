"""Tests for attnbook.crossmodal and attnbook.alignment (fast)."""

import pytest
import torch

from attnbook.alignment import alignment_path, monotonic_share, tone_sequences
from attnbook.crossmodal import (CrossModalConfig, CrossModalTranscriber, FeatureEmbedding, attention_by_region,
                                 digit_strips)
from attnbook.transformer import EncoderDecoderTransformer, TransformerConfig


def _model(**kwargs):
    base = dict(input_dim=5, max_inputs=10, vocab_size=9, max_len=6, d_model=16, num_heads=2)
    base.update(kwargs)
    torch.manual_seed(0)
    return CrossModalTranscriber(CrossModalConfig(**base))


def test_shapes_and_cross_attention_weights():
    model = _model(num_decoder_layers=2)
    feats, tgt = torch.randn(3, 7, 5), torch.randint(0, 9, (3, 4))
    logits, weights = model(feats, None, tgt, need_weights=True)
    assert logits.shape == (3, 4, 9) and weights.shape == (3, 2, 4, 7)  # the last decoder block's
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 2, 4))
    torch.testing.assert_close(model(feats, None, tgt), logits)


def test_it_is_the_one_encoder_decoder_with_a_feature_embedding():
    from attnbook.layers import Block

    model = _model()
    assert isinstance(model, EncoderDecoderTransformer) and isinstance(model.src_embed, FeatureEmbedding)
    assert all(type(b) is Block for b in [*model.encoder, *model.decoder])
    assert model.config.tgt_vocab == 9 and model.modal_config.input_dim == 5
    # the same as building the transformer by hand with that source embedding
    torch.manual_seed(0)
    by_hand = EncoderDecoderTransformer(TransformerConfig(None, 9, 16, 2, 1, 1, norm_first=True, max_len=6),
                                        source_embedding=FeatureEmbedding(5, 10, 16))
    feats, tgt = torch.randn(2, 7, 5), torch.randint(0, 9, (2, 4))
    torch.testing.assert_close(by_hand(feats, None, tgt), model(feats, None, tgt))


def test_padded_inputs_get_no_attention_and_do_not_matter():
    model = _model()
    feats, tgt = torch.randn(2, 7, 5), torch.randint(0, 9, (2, 3))
    lengths = torch.tensor([7, 4])
    logits, weights = model(feats, lengths, tgt, need_weights=True)
    assert float(weights[1, :, :, 4:].detach().abs().max()) == 0.0
    changed = feats.clone()
    changed[1, 4:] = 100.0
    torch.testing.assert_close(model(changed, lengths, tgt)[1], logits[1], atol=1e-5, rtol=1e-5)


def test_decoder_is_causal():
    model = _model()
    feats, tgt = torch.randn(1, 6, 5), torch.randint(0, 9, (1, 5))
    changed = tgt.clone()
    changed[0, 3:] = (changed[0, 3:] + 1) % 9
    with torch.no_grad():
        a, b = model(feats, None, tgt), model(feats, None, changed)
    torch.testing.assert_close(a[:, :3], b[:, :3])


def test_greedy_decode_matches_teacher_forcing_on_its_own_output():
    model = _model()
    feats, lengths = torch.randn(4, 6, 5), torch.tensor([6, 3, 5, 6])
    tokens, weights = model.greedy_decode(feats, lengths, 5)
    assert tokens.shape == (4, 5) and weights.shape == (4, 2, 5, 6)
    tf_in = torch.cat([torch.ones(4, 1, dtype=torch.long), tokens[:, :-1]], 1)  # <sos> + its own output
    with torch.no_grad():
        logits, tf_weights = model(feats, lengths, tf_in, need_weights=True)
    is_eos = (tokens == 2).long()
    before_end = is_eos.cumsum(1) - is_eos == 0  # up to and including the first <eos>
    assert torch.equal(logits.argmax(-1)[before_end], tokens[before_end])
    torch.testing.assert_close(weights[:, :, :1], tf_weights[:, :, :1])
    assert float(weights[1, :, :, 3:].abs().max()) == 0.0  # padded inputs get no attention
    for row in tokens.tolist():  # nothing but padding after the first <eos>
        if 2 in row:
            assert all(t == 0 for t in row[row.index(2) + 1:])


def test_decode_takes_tgt_in_then_memory_like_the_transformer():
    model = _model()
    feats, tgt = torch.randn(2, 6, 5), torch.randint(0, 9, (2, 3))
    memory, mask = model.encode(feats)
    assert mask is None and memory.shape == (2, 6, 16)
    torch.testing.assert_close(model.decode(tgt, memory, mask), model(feats, None, tgt))


def test_digit_strips_and_regions():
    images = torch.arange(5, dtype=torch.float32)[:, None, None, None].expand(5, 1, 2, 3)
    labels = torch.arange(5)
    strips, strip_labels = digit_strips(images, labels, 4, 3, generator=torch.Generator().manual_seed(0))
    assert strips.shape == (4, 1, 2, 9) and strip_labels.shape == (4, 3)
    assert torch.equal(strips[:, 0, 0, ::3], strip_labels.float())  # each digit is where its label says
    w = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    torch.testing.assert_close(attention_by_region(w, torch.tensor([1, 0, 1, 2])), torch.tensor([[0.2, 0.4, 0.4]]))
    with pytest.raises(ValueError, match="expected one region index per input element"):
        attention_by_region(w, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="expected region indices below num_regions=2"):
        attention_by_region(w, torch.tensor([0, 1, 2, 0]), 2)


def test_tone_sequences_are_consistent():
    tb = tone_sequences(50, generator=torch.Generator().manual_seed(0))
    assert tb.frames.shape == (50, 42, 9) and tb.labels.shape == (50, 6) and tb.bounds.shape == (50, 6, 2)
    for i in range(50):
        k = int(tb.num_labels[i])
        assert 3 <= k <= 6 and bool((tb.labels[i, k:] == -1).all())
        assert int(tb.bounds[i, 0, 0]) == 0 and int(tb.bounds[i, k - 1, 1]) == int(tb.lengths[i])
        assert torch.equal(tb.bounds[i, 1:k, 0], tb.bounds[i, :k - 1, 1])  # segments follow each other
        assert bool((tb.labels[i, 1:k] != tb.labels[i, :k - 1]).all())  # neighbours differ
        assert float(tb.frames[i, int(tb.lengths[i]):].abs().sum()) == 0.0
    clean = tone_sequences(20, noise=0.0, generator=torch.Generator().manual_seed(1))
    for i in range(20):  # without noise, a segment's strongest frequency bin is its label + 1
        for j in range(int(clean.num_labels[i])):
            s, e = clean.bounds[i, j].tolist()
            assert int(clean.frames[i, s:e].sum(0).argmax()) == int(clean.labels[i, j]) + 1


def test_monotonic_share_and_path():
    assert monotonic_share(torch.tensor([[0, 1, 1, 3]])) == 1.0
    assert monotonic_share(torch.tensor([[2, 1, 0, 5]])) == pytest.approx(1 / 3)
    assert monotonic_share(torch.tensor([[0, 3, 1, 0], [0, 1, 2, 0]]), torch.tensor([2, 3])) == 1.0
    w = torch.zeros(1, 3, 4)
    w[0, 0, 2], w[0, 1, 0], w[0, 2, 3] = 1, 1, 1
    assert alignment_path(w).tolist() == [[2, 0, 3]]


def test_bad_inputs_raise_clear_errors():
    model = _model()
    with pytest.raises(ValueError, match="expected features of width input_dim=5"):
        model(torch.randn(1, 3, 4), None, torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="expected between 1 and max_inputs=10"):
        model(torch.randn(1, 11, 5), None, torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="expected sequences of at most max_len=6"):
        model(torch.randn(1, 3, 5), None, torch.zeros(1, 7, dtype=torch.long))
    with pytest.raises(ValueError, match=r"expected tgt_in in \[0, 9\)"):
        model(torch.randn(1, 3, 5), None, torch.tensor([[1, 9]]))
    with pytest.raises(TypeError, match="expected tgt_in to be an integer tensor"):
        model(torch.randn(1, 3, 5), None, torch.zeros(1, 2))
    with pytest.raises(ValueError, match="expected max_len <= the model's max_len=6"):
        model.greedy_decode(torch.randn(1, 3, 5), None, 7)
    with pytest.raises(ValueError, match=r"expected eos_id in \[0, 9\)"):
        model.greedy_decode(torch.randn(1, 3, 5), None, 4, eos_id=9)
    with pytest.raises(ValueError, match=r"src_len in \[1, 3\]"):
        model.greedy_decode(torch.randn(2, 3, 5), torch.tensor([3, 4]), 4)
    with pytest.raises(ValueError, match="expected vocab_size to be positive"):
        CrossModalConfig(input_dim=5, max_inputs=10, vocab_size=0, max_len=6)
    with pytest.raises(ValueError, match="attention to be one of"):
        CrossModalConfig(input_dim=5, max_inputs=10, vocab_size=9, max_len=6, attention="flash")
    with pytest.raises(TypeError, match="expected a CrossModalConfig"):
        CrossModalTranscriber(object())
    with pytest.raises(ValueError, match="expected one label per image"):
        digit_strips(torch.randn(3, 1, 2, 2), torch.arange(2), 1, 2)
    with pytest.raises(ValueError, match="expected num_classes"):
        tone_sequences(2, num_classes=8, frame_size=16)
    with pytest.raises(ValueError, match="expected min <= max"):
        tone_sequences(2, min_labels=5, max_labels=3)
    with pytest.raises(ValueError, match="expected at least 2 output steps"):
        monotonic_share(torch.tensor([[1]]))
