"""attnbook.evaluation works for any model with the one greedy_decode(src, src_len, max_len, *, sos_id, eos_id)."""

import pytest
import torch

from attnbook.evaluation import attention_maps, exact_match_by_length, predict
from attnbook.transformer import EncoderDecoderTransformer, TransformerConfig


class Oracle(torch.nn.Module):
    """Answers every example right by looking it up: a model with the one greedy_decode and no parameters used."""

    def __init__(self, task, answers):
        super().__init__()
        self.task, self.answers, self.dummy = task, answers, torch.nn.Linear(1, 1)
        self.calls = []

    def greedy_decode(self, src, src_len, max_len, *, sos_id=1, eos_id=2):
        self.calls.append((tuple(src.shape), max_len, sos_id, eos_id))
        ids = torch.zeros(src.shape[0], max_len, dtype=torch.long)
        for i, row in enumerate(src.tolist()):
            answer = self.task.tgt_vocab.encode(self.answers[tuple(row[: int(src_len[i])])], sos=False, eos=True)
            ids[i, : len(answer)] = torch.tensor(answer)
        weights = torch.softmax(torch.randn(src.shape[0], 2, max_len, src.shape[1]), -1)  # (B, heads, T, S)
        return ids, weights


def _oracle(task):
    answers = {}
    for ex in task.test:
        src = task.encode([ex]).src[0].tolist()
        answers[tuple(src)] = list(ex.target)
    return Oracle(task, answers)


def test_any_model_with_the_one_greedy_decode_is_evaluated(small_task):
    oracle = _oracle(small_task)
    table = exact_match_by_length(oracle, small_task, "test")
    assert table.n.sum() == len(small_task.test) and (table.exact_match == 1.0).all()
    B, max_len, sos, eos = oracle.calls[0][0][0], *oracle.calls[0][1:]
    assert (max_len, sos, eos) == (small_task.max_digits + 1, 1, 2) and B == len(small_task.test)
    assert predict(oracle, small_task, small_task.test[:2], batch_size=1) == ["".join(e.target)
                                                                               for e in small_task.test[:2]]


def test_attention_maps_average_the_heads_of_a_transformer(small_task):
    torch.manual_seed(0)
    model = EncoderDecoderTransformer(TransformerConfig(len(small_task.src_vocab), len(small_task.tgt_vocab),
                                                        d_model=16, num_heads=2, num_encoder_layers=1,
                                                        num_decoder_layers=1, d_ff=32))
    examples = small_task.test[:3]
    maps = attention_maps(model, small_task, examples)
    batch = small_task.encode(examples)
    ids, weights = model.greedy_decode(batch.src, batch.src_len, small_task.max_digits + 1)
    for i, (m, ex) in enumerate(zip(maps, examples)):
        rows, cols = m["weights"].shape
        assert cols == len(ex.source) + 1 and rows == len(m["outputs"])
        torch.testing.assert_close(torch.from_numpy(m["weights"]), weights[i].mean(0)[:rows, :cols])


def test_bad_input_raises_clear_errors(small_task):
    oracle = _oracle(small_task)
    with pytest.raises(TypeError, match=r"greedy_decode\(src, src_len, max_len"):
        predict(torch.nn.Linear(2, 2), small_task, small_task.test)
    with pytest.raises(TypeError, match="expected a NumberTask, got str"):
        exact_match_by_length(oracle, "task")
    with pytest.raises(ValueError, match="expected batch_size to be positive, got 0"):
        predict(oracle, small_task, small_task.test, batch_size=0)
    with pytest.raises(ValueError, match="at least one example"):
        attention_maps(oracle, small_task, [])
