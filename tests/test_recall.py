import pytest
import torch

from attnbook.layers import count_parameters
from attnbook.recall import RecallConfig, RecallLM, mqar_batch, recall_accuracy, state_bytes


def test_mqar_batches_ask_every_key_once_and_target_its_value():
    ids, targets = mqar_batch(5, 6, 40, generator=torch.Generator().manual_seed(0))
    assert ids.shape == targets.shape == (5, 24)
    for row, tgt in zip(ids, targets):
        keys, values = row[0:12:2], row[1:12:2]
        assert len(set(keys.tolist())) == 6 and int(keys.max()) < 20 and int(values.min()) >= 20
        pairs = dict(zip(keys.tolist(), values.tolist()))
        asked = row[12::2]
        assert sorted(asked.tolist()) == sorted(keys.tolist())
        assert tgt[12::2].tolist() == [pairs[k] for k in asked.tolist()]
        assert bool((tgt[:12] == -100).all()) and bool((tgt[13::2] == -100).all())
        assert row[13::2].tolist() == [pairs[k] for k in asked.tolist()]


def test_mqar_bad_inputs():
    with pytest.raises(ValueError, match="num_pairs <= vocab_size / 2 = 4"):
        mqar_batch(2, 5, 8)
    with pytest.raises(ValueError, match="batch"):
        mqar_batch(0, 2, 8)
    with pytest.raises(TypeError, match="torch.Generator"):
        mqar_batch(2, 2, 8, generator=3)


@pytest.mark.parametrize("layers", [("attention", "attention"), ("window", "window"), ("linear", "linear"),
                                    ("scan", "scan"), ("scan", "attention")])
def test_every_mixer_is_causal_and_runs(layers):
    torch.manual_seed(0)
    model = RecallLM(RecallConfig(16, 12, layers, d_model=16, num_heads=2, window=3, d_state=4)).eval()
    ids = torch.randint(0, 16, (2, 12))
    changed = ids.clone()
    changed[:, 7:] = (changed[:, 7:] + 1) % 16
    with torch.no_grad():
        a, b = model(ids), model(changed)
    assert a.shape == (2, 12, 16)
    torch.testing.assert_close(a[:, :7], b[:, :7])
    assert (a[:, 7:] - b[:, 7:]).abs().max() > 1e-5


def test_a_window_layer_cannot_see_past_its_window():
    torch.manual_seed(0)
    model = RecallLM(RecallConfig(16, 12, ("window",), d_model=16, num_heads=2, window=3)).eval()
    ids = torch.randint(0, 16, (1, 12))
    changed = ids.clone()
    changed[:, 0] = (changed[:, 0] + 1) % 16
    with torch.no_grad():
        a, b = model(ids), model(changed)
    # position 5 sees 2..5, each of which carries itself and the token before (the short convolution)
    torch.testing.assert_close(a[:, 5:], b[:, 5:])
    assert (a[:, :5] - b[:, :5]).abs().max() > 1e-5


def test_state_bytes_by_formula_and_parameters_roughly_matched():
    kw = dict(d_model=64, num_heads=4, window=8, d_state=16)
    conv = 2 * 64  # the short convolution keeps one earlier input, in fp16
    assert state_bytes(RecallConfig(128, 64, ("attention",) * 2, **kw), 64) == conv + 2 * 2 * 2 * 64 * 64
    assert state_bytes(RecallConfig(128, 64, ("window",) * 2, **kw), 64) == conv + 2 * 2 * 2 * 64 * 9
    assert state_bytes(RecallConfig(128, 64, ("linear",) * 2, **kw), 64) == conv + 2 * 2 * 4 * (16 * 16 + 16)
    assert state_bytes(RecallConfig(128, 64, ("scan",) * 2, **kw), 64) == conv + 2 * 2 * 64 * (16 + 3)
    counts = [count_parameters(RecallLM(RecallConfig(128, 64, (m, m), **kw)))
              for m in ("attention", "linear", "scan")]
    assert max(counts) / min(counts) < 1.1


def test_recall_accuracy_and_config_errors():
    class Oracle(torch.nn.Module):
        def forward(self, ids):
            return torch.nn.functional.one_hot(self.answer, 8).float()
    oracle = Oracle()
    ids = torch.zeros(1, 4, dtype=torch.long)
    targets = torch.tensor([[-100, 3, -100, 5]])
    oracle.answer = torch.tensor([[0, 3, 0, 1]])
    assert recall_accuracy(oracle, ids, targets) == 0.5
    with pytest.raises(ValueError, match="at least one target"):
        recall_accuracy(oracle, ids, torch.full((1, 4), -100))
    with pytest.raises(ValueError, match="a layer's mixer to be one of"):
        RecallConfig(8, 8, ("attention", "lstm"))
    with pytest.raises(TypeError, match="tuple of mixer names"):
        RecallConfig(8, 8, "attention")
    with pytest.raises(ValueError, match="window to be an int >= 0"):
        RecallConfig(8, 8, window=-1)
    with pytest.raises(ValueError, match="max_len=8"):
        RecallLM(RecallConfig(8, 8))(torch.zeros(1, 9, dtype=torch.long))
