"""Head gates and pruning, head-pattern scores, attribution and sentence embeddings on the real MiniLM."""

import pytest
import torch

from attnbook import attribution, head_patterns, heads, pretrained, sentence_embeddings as se

TEXTS = ["The cat sat on the mat.", "A dog barked at the postman this morning.", "Rain again."]


@pytest.fixture(scope="module")
def minilm():
    return pretrained.load_minilm()


def test_all_heads_kept_equals_the_original_exactly(minilm):
    enc = minilm.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        plain = minilm.model(**enc)
        with heads.HeadGates(minilm.model, torch.ones(6, 12)):
            gated = minilm.model(**enc)
    assert torch.equal(plain.last_hidden_state, gated.last_hidden_state)
    assert all(torch.equal(a, b) for a, b in zip(plain.attentions, gated.attentions))


def test_removing_a_head_equals_zeroing_its_slice_of_the_output_projection(minilm):
    enc = minilm.tokenizer(TEXTS, padding=True, return_tensors="pt")
    dense = minilm.model.encoder.layer[3].attention.output.dense
    with torch.no_grad():
        with heads.HeadGates(minilm.model, heads.gates_without(6, 12, [(3, 5)])):
            gated = minilm.model(**enc).last_hidden_state
        saved = dense.weight.clone()
        dense.weight[:, 5 * 32:6 * 32] = 0  # head 5's columns of W_O
        try:
            zeroed = minilm.model(**enc).last_hidden_state
        finally:
            dense.weight.copy_(saved)
        restored = minilm.model(**enc).last_hidden_state
        plain_again = minilm.model(**enc).last_hidden_state
    torch.testing.assert_close(gated, zeroed, atol=1e-5, rtol=1e-5)
    assert (gated - restored).abs().max() > 1e-3  # the head mattered, and the hooks are gone afterwards
    assert torch.equal(restored, plain_again)


def test_importance_and_prune_order(minilm):
    a, b = ["The train was late.", "She plants tomatoes."], ["The train arrived late.", "She grows tomatoes."]
    imp = heads.head_importance(minilm.model, lambda: se.paraphrase_loss(se.encode(minilm, a, grad=True),
                                                                         se.encode(minilm, b, grad=True)))
    assert imp.shape == (6, 12) and (imp >= 0).all() and imp.sum() > 0
    assert not minilm.model.encoder.layer[0].attention.output.dense._forward_pre_hooks  # hooks removed
    order = heads.prune_order(torch.tensor([[0.3, 0.1], [0.2, 0.1]]))
    assert order == [(0, 1), (1, 1), (1, 0), (0, 0)]


def test_gate_errors(minilm):
    with pytest.raises(ValueError, match=r"expected gates of shape \(6, 12\)"):
        heads.HeadGates(minilm.model, torch.ones(6, 11))
    with pytest.raises(TypeError, match="BERT-style"):
        heads.output_projections(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="within"):
        heads.gates_without(2, 2, [(2, 0)])
    with pytest.raises(TypeError, match="pairs"):
        heads.gates_without(2, 2, [3])


def test_mean_pool_ignores_padding_and_encode_matches(minilm):
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]]])
    torch.testing.assert_close(se.mean_pool(hidden, torch.tensor([[1, 1, 0]]), normalize=False), torch.tensor([[2.0, 0.0]]))
    batch = se.encode(minilm, TEXTS)
    alone = torch.cat([se.encode(minilm, [t]) for t in TEXTS])
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(batch.norm(dim=-1), torch.ones(3))
    with pytest.raises(ValueError, match="attention_mask of shape"):
        se.mean_pool(hidden, torch.ones(1, 2))
    with pytest.raises(TypeError, match="sequence of strings"):
        se.encode(minilm, "one string")
    with pytest.raises(ValueError, match="same shape"):
        se.paraphrase_loss(torch.randn(2, 4), torch.randn(3, 4))


def test_ablation_matches_removing_the_token_one_at_a_time(minilm):
    target = se.encode(minilm, ["A cat is lying on a rug."])[0]
    tokens, effects = attribution.ablation_effects(minilm, TEXTS[0], target)
    enc = minilm.tokenizer(TEXTS[0], return_tensors="pt")
    i = tokens.index("mat")
    mask = enc["attention_mask"].clone()
    mask[0, i] = 0
    with torch.no_grad():
        full = se.mean_pool(minilm.model(**enc).last_hidden_state, enc["attention_mask"])[0] @ target
        without = se.mean_pool(minilm.model(input_ids=enc["input_ids"], attention_mask=mask).last_hidden_state, mask)[0] @ target
    torch.testing.assert_close(effects[i], (full - without).cpu(), atol=1e-5, rtol=1e-4)
    assert effects[0] == 0 and effects[-1] == 0


def test_gradient_x_input_matches_a_finite_difference(minilm):
    target = se.encode(minilm, ["A cat is lying on a rug."])[0]
    tokens, scores = attribution.gradient_x_input(minilm, TEXTS[0], target)
    assert scores.shape == (len(tokens),)
    # scaling the whole input by (1 + eps) changes s by about eps * sum(gradient x input)
    enc = minilm.tokenizer(TEXTS[0], return_tensors="pt")
    emb = minilm.model.get_input_embeddings()(enc["input_ids"]).detach()
    eps = 1e-3
    with torch.no_grad():
        s = [se.mean_pool(minilm.model(inputs_embeds=emb * (1 + e), attention_mask=enc["attention_mask"]).last_hidden_state,
                          enc["attention_mask"])[0] @ torch.nn.functional.normalize(target, dim=0) for e in (-eps, eps)]
    torch.testing.assert_close((s[1] - s[0]) / (2 * eps), scores.sum(), atol=2e-3, rtol=2e-2)


def test_attention_scores_and_rollout():
    att = torch.softmax(torch.randn(3, 2, 5, 5, generator=torch.Generator().manual_seed(0)), -1)
    torch.testing.assert_close(attribution.attention_received(att).sum(), torch.tensor(1.0))
    roll = attribution.attention_rollout(att)
    torch.testing.assert_close(roll.sum(-1), torch.ones(5))
    one = torch.eye(4).expand(1, 2, 4, 4)  # every token attends to itself: rollout is the identity
    torch.testing.assert_close(attribution.attention_rollout(one), torch.eye(4))
    with pytest.raises(ValueError, match="layer index"):
        attribution.attention_received(att, 3)


def test_spearman():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert attribution.spearman(a, a * 10 + 1) == pytest.approx(1.0)
    assert attribution.spearman(a, -a) == pytest.approx(-1.0)
    assert attribution.spearman(torch.tensor([1.0, 2.0, 2.0, 3.0]), a) == pytest.approx(0.9486833)  # ties averaged
    with pytest.raises(ValueError, match="not constant"):
        attribution.spearman(torch.ones(3), torch.arange(3.0))
    with pytest.raises(ValueError, match="same length"):
        attribution.spearman(a, a[:3])


def test_head_patterns():
    tokens = ["[CLS]", "the", "cat", "saw", "the", "dog", "[SEP]"]
    rel = head_patterns.standard_relations(tokens)
    assert rel["previous token"][0] == (2, 1) and (1, 0) in rel["[CLS]"] and (1, 6) in rel["[SEP]"]
    assert sorted(rel["same word elsewhere"]) == [(1, 4), (4, 1)]
    T = len(tokens)
    prev = torch.zeros(T, T)
    prev[0, 0] = 1
    prev[torch.arange(1, T), torch.arange(T - 1)] = 1  # a perfect previous-token head
    att = torch.stack([prev, torch.full((T, T), 1 / T)])[None]  # (1 layer, 2 heads, T, T)
    maps = head_patterns.pattern_maps([(att, rel)])
    torch.testing.assert_close(maps["previous token"], torch.tensor([[1.0, 1 / T]]))
    torch.testing.assert_close(maps["next token"], torch.tensor([[0.0, 1 / T]]))
    with pytest.raises(ValueError, match="between \\[CLS\\] and \\[SEP\\]"):
        head_patterns.standard_relations(["the", "cat"])
    with pytest.raises(ValueError, match="token indices"):
        head_patterns.relation_weight(att, [(0, 9)])


def test_last_segment_mask_keeps_the_last_segments_words():
    ids = torch.tensor([[101, 7, 8, 102, 9, 10, 102], [101, 5, 6, 102, 0, 0, 0]])
    types = torch.tensor([[0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0]])
    got = se.last_segment_mask(ids, types, mask, [101, 102])
    assert got.tolist() == [[0, 0, 0, 0, 1, 1, 0], [0, 1, 1, 0, 0, 0, 0]]
    with pytest.raises(ValueError, match="shape"):
        se.last_segment_mask(ids, types[:, :3], mask, [101, 102])
    with pytest.raises(TypeError, match="special"):
        se.last_segment_mask(ids, types, mask, 101)
