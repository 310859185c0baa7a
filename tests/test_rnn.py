import pytest
import torch

from attnbook.rnn import Seq2Seq, Seq2SeqConfig, count_parameters
from attnbook.training import seq2seq_loss, set_seed


def make(task, attention="additive", hidden=16):
    set_seed(0)
    return Seq2Seq(Seq2SeqConfig(len(task.src_vocab), len(task.tgt_vocab), embed_dim=8, hidden_dim=hidden,
                                 attention=attention, attention_dim=hidden))


@pytest.mark.parametrize("attention", ["none", "additive", "multiplicative", "dot"])
def test_shapes(small_task, attention):
    model = make(small_task, attention)
    batch = next(small_task.batches("train", 5))
    logits = model(batch.src, batch.src_len, batch.tgt_in)
    assert logits.shape == (*batch.tgt_in.shape, len(small_task.tgt_vocab))
    ids, weights = model.greedy_decode(batch.src, batch.src_len, max_len=7)
    assert ids.shape == (5, 7)
    if attention == "none":
        assert weights is None
    else:
        assert weights.shape == (5, 7, batch.src.shape[1])


@pytest.mark.parametrize("attention", ["additive", "multiplicative", "dot"])
def test_weights_sum_to_one_and_ignore_padding(small_task, attention):
    model = make(small_task, attention)
    batch = small_task.encode(small_task.test[:9])
    _, w = model(batch.src, batch.src_len, batch.tgt_in, need_weights=True)
    torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:2]))
    for row, n in zip(w, batch.src_len):
        assert (row[:, n:] == 0).all()


def test_padding_does_not_change_the_output(small_task):
    model = make(small_task).eval()
    ex = small_task.test[-1]
    alone = small_task.encode([ex])
    padded = small_task.encode([ex, max(small_task.test, key=lambda e: len(e.source))])
    assert padded.src.shape[1] > alone.src.shape[1] or len(ex.source) == padded.src.shape[1] - 1
    a = model(alone.src, alone.src_len, alone.tgt_in)
    b = model(padded.src[:1], padded.src_len[:1], padded.tgt_in[:1, : alone.tgt_in.shape[1]])
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_greedy_decode_matches_teacher_forcing_on_its_own_output(small_task):
    model = make(small_task).eval()
    batch = small_task.encode(small_task.test[:4])
    ids, w = model.greedy_decode(batch.src, batch.src_len, max_len=6)
    tgt_in = torch.cat([torch.ones(4, 1, dtype=torch.long), ids[:, :-1]], 1)
    logits, w2 = model(batch.src, batch.src_len, tgt_in, need_weights=True)
    # Up to the first <eos>, feeding the model its own choices reproduces them.
    first = ids[:, 0]
    assert torch.equal(logits[:, 0].argmax(-1), first)
    torch.testing.assert_close(w[:, 0], w2[:, 0])


def test_a_few_steps_lower_the_loss(small_task):
    model = make(small_task)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = next(small_task.batches("train", 32))
    first = seq2seq_loss(model, batch).item()
    for _ in range(30):
        loss = seq2seq_loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_attention_and_bottleneck_models_have_similar_sizes(small_task):
    kinds = ("none", "additive", "multiplicative", "dot")
    sizes = {a: count_parameters(make(small_task, a, hidden=64)) for a in kinds}
    assert sizes["none"] < sizes["additive"] < 1.3 * sizes["none"]
    assert sizes["none"] < sizes["multiplicative"] < 1.3 * sizes["none"]
    # "dot" lifts the query with the same H x 2H matrix the general score applies to the keys
    assert sizes["dot"] == sizes["multiplicative"]


def test_general_score_is_bilinear_in_decoder_state_and_encoder_state(small_task):
    """Chapter 2's second model: s^T W h, with W h computed once per source (no per-step key projection)."""
    torch.manual_seed(0)
    model = make(small_task, "multiplicative", hidden=8)
    states = torch.randn(2, 5, 16)
    s = torch.randn(2, 8)
    memory = {"states": states, "mask": torch.ones(2, 5, dtype=torch.bool),
              "keys": model.score.project_keys(states)}
    _, weights = model._attend(s, memory)
    W = model.score.w.weight  # (H, 2H)
    expected = torch.softmax(torch.einsum("bh,hk,bsk->bs", s, W, states), dim=-1)
    assert torch.allclose(weights, expected, atol=1e-6)
    assert torch.allclose(2 * model.score(s, states), model.score(2 * s, states), atol=1e-6)


def test_bad_inputs(small_task):
    model = make(small_task)
    batch = next(small_task.batches("train", 3))
    with pytest.raises(ValueError, match="expected attention in"):
        Seq2SeqConfig(10, 10, attention="luong")
    with pytest.raises(ValueError, match="expected hidden_dim to be positive"):
        Seq2SeqConfig(10, 10, hidden_dim=0)
    with pytest.raises(TypeError, match="Seq2SeqConfig"):
        Seq2Seq({"src_vocab": 10})
    with pytest.raises(ValueError, match="src to have 2 dimensions, got 1"):
        model(batch.src[0], batch.src_len[:1], batch.tgt_in[:1])
    with pytest.raises(TypeError, match="src to be an integer tensor"):
        model(batch.src.float(), batch.src_len, batch.tgt_in)
    with pytest.raises(ValueError, match=r"src_len of shape \(3,\), got \(2,\)"):
        model(batch.src, batch.src_len[:2], batch.tgt_in)
    too_long = batch.src_len.clone()
    too_long[0] = batch.src.shape[1] + 4
    with pytest.raises(ValueError, match=r"src_len in \[1, "):
        model(batch.src, too_long, batch.tgt_in)
    bad_ids = batch.src.clone()
    bad_ids[0, 0] = 10_000
    with pytest.raises(ValueError, match="source ids in"):
        model(bad_ids, batch.src_len, batch.tgt_in)
    with pytest.raises(ValueError, match="tgt_in with batch size 3, got 2"):
        model(batch.src, batch.src_len, batch.tgt_in[:2])
    with pytest.raises(ValueError, match=r"expected eos_id in \[0, "):
        model.greedy_decode(batch.src, batch.src_len, 3, eos_id=-1)
    with pytest.raises(ValueError, match="no attention"):
        make(small_task, "none")(batch.src, batch.src_len, batch.tgt_in, need_weights=True)
    with pytest.raises(TypeError, match="nn.Module"):
        count_parameters("model")
