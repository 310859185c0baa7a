import pytest
import torch

from attnbook.evaluation import attention_maps, exact_match_by_length, predict
from attnbook.rnn import Seq2Seq, Seq2SeqConfig
from attnbook.training import History, cycle, seq2seq_loss, set_seed, train


def run(task, seed, steps=60):
    set_seed(seed)
    model = Seq2Seq(Seq2SeqConfig(len(task.src_vocab), len(task.tgt_vocab), embed_dim=8, hidden_dim=16,
                                  attention_dim=16))
    hist = train(model, cycle(lambda e: task.batches("train", 32, seed=e)), steps=steps, loss_fn=seq2seq_loss,
                 lr=1e-2, seed=seed, log_every=5, progress=False)
    return model, hist


def test_training_lowers_the_loss(small_task):
    _, hist = run(small_task, 0)
    assert isinstance(hist, History) and hist.steps_done == 60
    assert hist.step[-1] == 60 and len(hist.loss) == 12
    assert hist.loss[-1] < 0.8 * hist.loss[0]
    assert hist.seconds > 0 and hist.steps_per_second > 0


def test_training_is_deterministic_from_the_seed(small_task):
    _, a = run(small_task, 1, steps=10)
    _, b = run(small_task, 1, steps=10)
    _, c = run(small_task, 2, steps=10)
    assert a.loss == b.loss
    assert a.loss != c.loss


def test_eval_hook_and_progress_bar(small_task, capsys):
    set_seed(0)
    model = Seq2Seq(Seq2SeqConfig(len(small_task.src_vocab), len(small_task.tgt_vocab), embed_dim=8,
                                  hidden_dim=8, attention_dim=8))
    calls = []
    hist = train(model, cycle(lambda e: small_task.batches("train", 16, seed=e)), steps=6,
                 loss_fn=seq2seq_loss, eval_every=3, eval_fn=lambda m: calls.append(m.training) or 0.5)
    assert hist.eval_step == [3, 6] and hist.eval_metric == [0.5, 0.5]
    assert calls == [False, False] and not model.training


def test_exact_match_table(small_task):
    model, _ = run(small_task, 0, steps=5)
    table = exact_match_by_length(model, small_task, "valid")
    assert list(table.columns) == ["digits", "n", "exact_match"]
    assert table.digits.tolist() == list(range(1, 7))
    assert table.n.sum() == len(small_task.valid)
    assert ((table.exact_match >= 0) & (table.exact_match <= 1)).all()
    answers = predict(model, small_task, small_task.valid[:10])
    assert len(answers) == 10 and all(a == "" or a.isdigit() for a in answers)
    by_lang = exact_match_by_length(model, small_task, "valid", by_language=True)
    assert set(by_lang.language) == {"en", "de", "fr"}


def test_bad_arguments(small_task):
    model, _ = run(small_task, 0, steps=1)
    batches = cycle(lambda e: small_task.batches("train", 8, seed=e))
    with pytest.raises(ValueError, match="steps to be positive"):
        train(model, batches, steps=0, loss_fn=seq2seq_loss)
    with pytest.raises(ValueError, match="positive learning rate"):
        train(model, batches, steps=1, loss_fn=seq2seq_loss, lr=-1)
    with pytest.raises(ValueError, match="no eval_fn"):
        train(model, batches, steps=1, loss_fn=seq2seq_loss, eval_every=1)
    with pytest.raises(ValueError, match="ran out after 1 of 3"):
        train(model, list(small_task.batches("train", 8))[:1], steps=3, loss_fn=seq2seq_loss, progress=False)
    with pytest.raises(TypeError, match="nn.Module"):
        train("model", batches, steps=1, loss_fn=seq2seq_loss)
    with pytest.raises(TypeError, match="int seed"):
        set_seed("0")
    with pytest.raises(TypeError, match="Seq2Seq model"):
        predict(torch.nn.Linear(2, 2), small_task, small_task.valid)


def test_attention_maps_are_trimmed_and_labelled(small_task):
    model, _ = run(small_task, 0, steps=5)
    examples = small_task.test[:3]
    maps = attention_maps(model, small_task, examples)
    assert len(maps) == 3
    for m, ex in zip(maps, examples):
        assert m["weights"].shape == (len(m["outputs"]), len(ex.source) + 1)
        assert m["sources"][:-1] == list(ex.source) and m["outputs"][-1] == "<eos>"
        assert abs(m["weights"].sum(-1) - 1).max() < 1e-5
    bottleneck = Seq2Seq(Seq2SeqConfig(len(small_task.src_vocab), len(small_task.tgt_vocab), attention="none"))
    with pytest.raises(TypeError, match="with attention"):
        attention_maps(bottleneck, small_task, examples)


def test_evaluation_works_for_any_model_with_greedy_decode(small_task):
    from attnbook.transformer import EncoderDecoderTransformer, TransformerConfig

    set_seed(0)
    model = EncoderDecoderTransformer(TransformerConfig(len(small_task.src_vocab), len(small_task.tgt_vocab),
                                                        d_model=16, num_heads=2, num_encoder_layers=1,
                                                        num_decoder_layers=1, d_ff=32))
    table = exact_match_by_length(model, small_task, "valid")
    assert table.n.sum() == len(small_task.valid)
    assert len(predict(model, small_task, small_task.valid[:3])) == 3
