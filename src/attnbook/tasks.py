"""The book's translation-like task: reading spelled-out numbers.

``"siebenundachtzigtausend..."`` -> ``"87..."``. The source side is the number
written out in words by ``num2words`` (English, German or French), the target is
its digits. The input length is a dial: numbers of up to ``max_digits`` digits.
German and French reorder parts of a number (German says "seven-and-eighty",
French "four-twenty-ten-seven" for 97), so the alignment between words and
digits is not always diagonal: exactly what attention heatmaps make visible.

Words are cut into *number pieces* (``sieben|und|achtzig``) by a greedy
longest-match over a small inventory of number words, so German compounds do
not explode the vocabulary and a number never seen in training is still made of
known pieces.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from attnbook.vocab import Vocab

__all__ = ["LANGUAGES", "spell", "split_pieces", "Example", "Batch", "NumberTask"]

LANGUAGES: tuple[str, ...] = ("en", "de", "fr")

# Numbers whose spelled-out words give every piece a language needs.
_SEED_NUMBERS = (*range(0, 21), 21, 71, 81, 91, *range(30, 100, 10), 100, 101, 200, 1000, 2000,
                 10**6, 2 * 10**6, 10**9, 2 * 10**9, 10**12, 2 * 10**12)
# Pieces that only ever occur inside compounds (German "ein|und|zwanzig").
_EXTRA_PIECES = {"de": ("ein", "und", "hundert", "tausend")}
_SEPARATORS = re.compile(r"[\s,\-]+")


def _check_language(language: str) -> str:
    if language not in LANGUAGES:
        raise ValueError(f"expected a language in {LANGUAGES}, got {language!r}")
    return language


def spell(number: int, language: str = "en") -> str:
    """Write ``number`` (a non-negative int) out in words, lower case."""
    from num2words import num2words

    _check_language(language)
    if isinstance(number, bool) or not isinstance(number, (int, np.integer)):
        raise TypeError(f"expected an int, got {type(number).__name__}")
    if number < 0:
        raise ValueError(f"expected a non-negative number, got {number}")
    return num2words(int(number), lang=language).lower()


@lru_cache(maxsize=None)
def _inventory(language: str) -> tuple[str, ...]:
    words = {w for n in _SEED_NUMBERS for w in _SEPARATORS.split(spell(n, language)) if w}
    words |= set(_EXTRA_PIECES.get(language, ()))
    # Drop compounds that smaller pieces already spell ("einundzwanzig" = ein|und|zwanzig).
    atoms = {w for w in words if _segment(w, tuple(sorted(words - {w}, key=len, reverse=True))) is None}
    return tuple(sorted(atoms, key=lambda w: (-len(w), w)))


def _segment(word: str, inventory: tuple[str, ...]) -> list[str] | None:
    """Greedy longest-match segmentation; ``None`` if some part is not covered."""
    out, i = [], 0
    while i < len(word):
        for piece in inventory:
            if word.startswith(piece, i):
                out.append(piece)
                i += len(piece)
                break
        else:
            return None
    return out


@lru_cache(maxsize=None)
def _piece_pattern(language: str) -> re.Pattern[str]:
    # Alternatives longest first: the regex engine then does the greedy longest match.
    return re.compile("|".join(map(re.escape, _inventory(language))))


def split_pieces(text: str, language: str) -> list[str]:
    """Cut a spelled-out number into number pieces.

    >>> split_pieces("siebenundachtzig", "de")
    ['sieben', 'und', 'achtzig']
    """
    if not isinstance(text, str):
        raise TypeError(f"expected text as a str, got {type(text).__name__}")
    pattern = _piece_pattern(_check_language(language))
    pieces: list[str] = []
    for word in _SEPARATORS.split(text.lower()):
        if not word:
            continue
        found = pattern.findall(word)
        if sum(map(len, found)) != len(word):
            raise ValueError(f"cannot cut {word!r} into {language} number pieces")
        pieces.extend(found)
    return pieces


@dataclass(frozen=True)
class Example:
    """One example: ``number`` in ``language``, its words, pieces and digits."""

    number: int
    language: str
    text: str
    source: tuple[str, ...]
    target: tuple[str, ...]

    @property
    def digits(self) -> int:
        return len(self.target)


@dataclass
class Batch:
    """A padded batch.

    Shape:
        src: (B, S) source ids, right-padded with 0 (``<pad>``)
        src_len: (B,) true source lengths (``<eos>`` included)
        tgt_in: (B, T) decoder inputs, ``<sos>`` then the digits
        tgt_out: (B, T) decoder targets, the digits then ``<eos>``; padding is 0
        digits: (B,) number of digits of each example
    """

    src: torch.Tensor
    src_len: torch.Tensor
    tgt_in: torch.Tensor
    tgt_out: torch.Tensor
    digits: torch.Tensor

    def to(self, device: torch.device | str) -> Batch:
        return Batch(*(t.to(device) for t in (self.src, self.src_len, self.tgt_in, self.tgt_out, self.digits)))

    def __len__(self) -> int:
        return int(self.src.shape[0])


class NumberTask:
    """Spelled-out numbers to digits, with fixed train, validation and test splits.

    Numbers are drawn with a uniformly random digit count from 1 to ``max_digits``
    and then uniformly among numbers of that many digits. The validation and test
    numbers are drawn first and never occur in training (in any language); each
    test number is asked in every language, so accuracy per language is fair.

    Args:
        languages: subset of ``("en", "de", "fr")``.
        max_digits: longest numbers, 1 to 15.
        train_per_length: training examples per digit count (language at random).
        eval_per_length: distinct validation and test numbers per digit count
            (fewer for 1- and 2-digit numbers, which are few).
        seed: everything is determined by it.
    """

    def __init__(self, languages: Sequence[str] = LANGUAGES, max_digits: int = 12, *,
                 train_per_length: int = 2000, eval_per_length: int = 50, seed: int = 0):
        if isinstance(languages, str):
            languages = (languages,)
        self.languages = tuple(_check_language(lang) for lang in languages)
        if not self.languages:
            raise ValueError("expected at least one language, got none")
        for name, value, lo, hi in (("max_digits", max_digits, 1, 15),
                                    ("train_per_length", train_per_length, 1, 10**6),
                                    ("eval_per_length", eval_per_length, 1, 10**5)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"expected {name} to be an int, got {type(value).__name__}")
            if not lo <= value <= hi:
                raise ValueError(f"expected {name} in [{lo}, {hi}], got {value}")
        self.max_digits, self.seed = max_digits, seed
        rng = np.random.default_rng(seed)
        valid_nums, test_nums, train_nums = [], [], []
        for d in range(1, max_digits + 1):
            lo, hi = (0 if d == 1 else 10 ** (d - 1)), 10**d
            size = hi - lo
            k = min(eval_per_length, size // 5)  # keep most small numbers for training
            held = _distinct(rng, lo, hi, 2 * k)
            valid_nums += held[:k]
            test_nums += held[k:]
            held_set = set(held)
            if size <= 10**6:
                pool = np.array([n for n in range(lo, hi) if n not in held_set], dtype=np.int64)
                train_nums += [int(n) for n in rng.choice(pool, size=train_per_length, replace=True)]
            else:
                draws = []
                while len(draws) < train_per_length:
                    n = int(rng.integers(lo, hi))
                    if n not in held_set:
                        draws.append(n)
                train_nums += draws
        langs = rng.choice(len(self.languages), size=len(train_nums))
        self.train = [self._example(n, self.languages[i]) for n, i in zip(train_nums, langs)]
        self.valid = [self._example(n, lang) for n in valid_nums for lang in self.languages]
        self.test = [self._example(n, lang) for n in test_nums for lang in self.languages]
        pieces = sorted({p for lang in self.languages for p in _inventory(lang)})
        self.src_vocab = Vocab(pieces)
        self.tgt_vocab = Vocab(list("0123456789"))
        self._tensors: dict[str, tuple[torch.Tensor, ...]] = {}

    @staticmethod
    def _example(number: int, language: str) -> Example:
        text = spell(number, language)
        return Example(number, language, text, tuple(split_pieces(text, language)), tuple(str(number)))

    def __repr__(self) -> str:
        return (f"NumberTask(languages={self.languages}, max_digits={self.max_digits}, train={len(self.train)}, "
                f"valid={len(self.valid)}, test={len(self.test)}, source vocab={len(self.src_vocab)})")

    def split(self, name: str) -> list[Example]:
        """The examples of split ``name`` (``"train"``, ``"valid"`` or ``"test"``)."""
        if name not in ("train", "valid", "test"):
            raise ValueError(f"expected split 'train', 'valid' or 'test', got {name!r}")
        return getattr(self, name)

    def encode(self, examples: Sequence[Example]) -> Batch:
        """Pad a list of examples into one :class:`Batch` (on the CPU)."""
        if not examples:
            raise ValueError("expected at least one example, got an empty list")
        src = [self.src_vocab.encode(e.source) for e in examples]
        tgt = [self.tgt_vocab.encode(e.target, sos=True) for e in examples]
        S, T = max(map(len, src)), max(map(len, tgt)) - 1
        src_t = torch.zeros(len(examples), S, dtype=torch.long)
        tgt_in = torch.zeros(len(examples), T, dtype=torch.long)
        tgt_out = torch.zeros(len(examples), T, dtype=torch.long)
        for i, (s, t) in enumerate(zip(src, tgt)):
            src_t[i, : len(s)] = torch.tensor(s)
            tgt_in[i, : len(t) - 1] = torch.tensor(t[:-1])
            tgt_out[i, : len(t) - 1] = torch.tensor(t[1:])
        return Batch(src_t, torch.tensor([len(s) for s in src]), tgt_in, tgt_out,
                     torch.tensor([e.digits for e in examples]))

    def batches(self, split: str = "train", batch_size: int = 128, *, shuffle: bool = True,
                seed: int = 0, device: torch.device | str = "cpu") -> Iterator[Batch]:
        """One pass over a split in padded batches (shuffled from ``seed`` if asked).

        Padding is trimmed per batch, so a batch of short numbers stays cheap.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"expected a positive int batch_size, got {batch_size!r}")
        if split not in self._tensors:
            full = self.encode(self.split(split))
            self._tensors[split] = (full.src, full.src_len, full.tgt_in, full.tgt_out, full.digits)
        src, src_len, tgt_in, tgt_out, digits = self._tensors[split]
        n = src.shape[0]
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if shuffle else torch.arange(n)
        for idx in order.split(batch_size):
            s_max = int(src_len[idx].max())
            t_max = int(digits[idx].max()) + 1
            yield Batch(src[idx, :s_max], src_len[idx], tgt_in[idx, :t_max], tgt_out[idx, :t_max],
                        digits[idx]).to(device)


def _distinct(rng: np.random.Generator, lo: int, hi: int, k: int) -> list[int]:
    """``k`` distinct integers from ``[lo, hi)``, in random order."""
    if hi - lo <= 10**6:
        return [int(x) for x in rng.choice(np.arange(lo, hi), size=k, replace=False)]
    seen: dict[int, None] = {}
    while len(seen) < k:
        seen.setdefault(int(rng.integers(lo, hi)), None)
    return list(seen)
