import random

import pytest
import torch

from attnbook.tasks import LANGUAGES, NumberTask, spell, split_pieces
from attnbook.vocab import Vocab


@pytest.mark.parametrize("lang", LANGUAGES)
def test_pieces_spell_every_number_back(lang):
    rng = random.Random(0)
    for _ in range(300):
        n = rng.randrange(0, 10 ** rng.randint(1, 12))
        text = spell(n, lang)
        pieces = split_pieces(text, lang)
        assert "".join(pieces) == "".join(ch for ch in text if ch not in " -,")


def test_german_compounds_are_cut_into_pieces():
    assert split_pieces("siebenundachtzig", "de") == ["sieben", "und", "achtzig"]
    assert split_pieces("einhunderteins", "de") == ["ein", "hundert", "eins"]
    assert split_pieces(spell(97, "fr"), "fr") == ["quatre", "vingt", "dix", "sept"]


def test_german_vocabulary_stays_small_on_long_numbers():
    task = NumberTask(languages="de", max_digits=12, train_per_length=50, eval_per_length=5)
    assert len(task.src_vocab) < 45  # pieces, not whole compound words
    assert all(p in task.src_vocab for e in task.test for p in e.source)


def test_splits_do_not_overlap_and_are_deterministic(small_task):
    train = {e.number for e in small_task.train}
    valid = {e.number for e in small_task.valid}
    test = {e.number for e in small_task.test}
    assert not train & test and not train & valid and not valid & test
    again = NumberTask(max_digits=6, train_per_length=200, eval_per_length=20, seed=3)
    assert [e.text for e in again.train] == [e.text for e in small_task.train]
    other = NumberTask(max_digits=6, train_per_length=200, eval_per_length=20, seed=4)
    assert [e.number for e in other.test] != [e.number for e in small_task.test]


def test_every_length_and_language_is_covered(small_task):
    assert {e.digits for e in small_task.train} == set(range(1, 7))
    assert {e.digits for e in small_task.test} == set(range(1, 7))
    for lang in LANGUAGES:
        assert sum(e.language == lang for e in small_task.test) == len(small_task.test) // 3


def test_batches_are_padded_with_lengths(small_task):
    batch = next(small_task.batches("train", 16, seed=1))
    assert batch.src.shape[0] == 16 and batch.tgt_in.shape == batch.tgt_out.shape
    assert int(batch.src_len.max()) == batch.src.shape[1]
    for row, n in zip(batch.src, batch.src_len):
        assert (row[:n] != 0).all() and (row[n:] == 0).all()
        assert row[n - 1] == Vocab.eos_id
    assert (batch.tgt_in[:, 0] == Vocab.sos_id).all()
    for row, d in zip(batch.tgt_out, batch.digits):
        assert row[d] == Vocab.eos_id and (row[d + 1:] == 0).all()
    total = sum(len(b) for b in small_task.batches("valid", 7, shuffle=False))
    assert total == len(small_task.valid)


def test_batches_decode_back_to_the_examples(small_task):
    batch = small_task.encode(small_task.test[:5])
    for row, ex in zip(batch.tgt_out, small_task.test[:5]):
        assert "".join(small_task.tgt_vocab.decode(row.tolist())) == str(ex.number)
    for row, ex in zip(batch.src, small_task.test[:5]):
        assert tuple(small_task.src_vocab.decode(row.tolist())) == ex.source


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"languages": ("en", "xx")}, ValueError, "expected a language in"),
        ({"languages": ()}, ValueError, "at least one language"),
        ({"max_digits": 0}, ValueError, r"max_digits in \[1, 15\], got 0"),
        ({"max_digits": 16}, ValueError, "got 16"),
        ({"max_digits": 3.5}, TypeError, "max_digits to be an int"),
        ({"train_per_length": 0}, ValueError, "train_per_length"),
    ],
)
def test_bad_task_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        NumberTask(**kwargs)


def test_bad_inputs_to_helpers(small_task):
    with pytest.raises(ValueError, match="expected a language"):
        spell(5, "klingon")
    with pytest.raises(ValueError, match="non-negative"):
        spell(-1)
    with pytest.raises(TypeError, match="expected an int"):
        spell(2.5)
    with pytest.raises(ValueError, match="cannot cut 'banana'"):
        split_pieces("banana", "en")
    with pytest.raises(ValueError, match="split 'train', 'valid' or 'test'"):
        small_task.split("dev")
    with pytest.raises(ValueError, match="positive int batch_size"):
        next(small_task.batches("train", 0))
    with pytest.raises(ValueError, match="at least one example"):
        small_task.encode([])


def test_vocab_round_trip_and_errors():
    v = Vocab(["a", "b", "a"])
    assert len(v) == 6 and v.encode(["a", "zz"], sos=True) == [1, 4, 3, 2]
    assert v.decode([1, 4, 5, 2, 4]) == ["a", "b"]
    with pytest.raises(TypeError, match="single string"):
        v.encode("ab")
    with pytest.raises(ValueError, match=r"ids in \[0, 6\), got 9"):
        v.decode([9])
    with pytest.raises(TypeError, match="non-empty string"):
        Vocab(["a", ""])
    assert torch.tensor(v.encode(["b"])).tolist() == [5, 2]
