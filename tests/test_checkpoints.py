import pytest
import torch

from attnbook.checkpoints import load_seq2seq, save_seq2seq, shipped
from attnbook.evaluation import exact_match_by_length
from attnbook.rnn import Seq2Seq, Seq2SeqConfig
from attnbook.tasks import NumberTask
from attnbook.training import set_seed


@pytest.fixture(scope="module")
def part1_task():
    return NumberTask(max_digits=12, seed=0)


def test_save_and_load_round_trip(small_task, tmp_path):
    set_seed(0)
    model = Seq2Seq(Seq2SeqConfig(len(small_task.src_vocab), len(small_task.tgt_vocab), embed_dim=8, hidden_dim=8,
                                  attention_dim=8)).eval()
    path = tmp_path / "m.safetensors"
    save_seq2seq(model, path, small_task, note="test")
    loaded = load_seq2seq(path, small_task)
    assert loaded.config == model.config
    batch = small_task.encode(small_task.test[:4])
    torch.testing.assert_close(loaded(batch.src, batch.src_len, batch.tgt_in),
                               model(batch.src, batch.src_len, batch.tgt_in))
    assert path.read_bytes()[:8] != b"\x80\x04\x95"  # not a pickle


def test_shipped_bottleneck_is_chapter_1s_model(part1_task):
    model = load_seq2seq(shipped("ch01_bottleneck"), part1_task)
    assert model.config == Seq2SeqConfig(len(part1_task.src_vocab), len(part1_task.tgt_vocab), embed_dim=64,
                                         hidden_dim=64, attention="none")
    table = exact_match_by_length(model, part1_task, "test").set_index("digits").exact_match
    assert table.loc[1:4].mean() > 0.85  # a trained model: short numbers right
    assert table.loc[12] < 0.5  # and the bottleneck: long numbers wrong


def test_bad_checkpoints(small_task, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_seq2seq(tmp_path / "missing.safetensors", small_task)
    with pytest.raises(ValueError, match="expected one of the shipped checkpoints"):
        shipped("nope")
    de_task = NumberTask(languages="de", max_digits=3, train_per_length=10, eval_per_length=2)
    with pytest.raises(ValueError, match="another source vocabulary"):
        load_seq2seq(shipped("ch01_bottleneck"), de_task)
    with pytest.raises(TypeError, match="Seq2Seq model"):
        save_seq2seq(torch.nn.Linear(1, 1), tmp_path / "x.safetensors", small_task)
