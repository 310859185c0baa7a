"""Vocabularies: tokens to ids and back, with padding, start, end and unknown tokens."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["Vocab", "PAD", "SOS", "EOS", "UNK"]

PAD, SOS, EOS, UNK = "<pad>", "<sos>", "<eos>", "<unk>"


class Vocab:
    """A fixed mapping between tokens and integer ids.

    Ids 0-3 are always ``<pad>``, ``<sos>``, ``<eos>`` and ``<unk>``; the other
    tokens follow in the order given (duplicates dropped), so a vocabulary built
    from the same tokens is always the same.
    """

    def __init__(self, tokens: Iterable[str]):
        self.itos: list[str] = [PAD, SOS, EOS, UNK]
        for token in tokens:
            if not isinstance(token, str) or not token:
                raise TypeError(f"expected non-empty string tokens, got {token!r}")
            if token not in self.itos:
                self.itos.append(token)
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}

    pad_id, sos_id, eos_id, unk_id = 0, 1, 2, 3

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: object) -> bool:
        return token in self.stoi

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens: {self.itos[4:12]}{'...' if len(self) > 12 else ''})"

    def encode(self, tokens: Sequence[str], *, sos: bool = False, eos: bool = True) -> list[int]:
        """Token strings to ids, optionally framed by ``<sos>``/``<eos>``; unknown tokens map to ``<unk>``."""
        if isinstance(tokens, str):
            raise TypeError("expected a sequence of tokens, got a single string (split it into tokens first)")
        ids = [self.stoi.get(t, self.unk_id) for t in tokens]
        return ([self.sos_id] if sos else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids: Iterable[int], *, strip: bool = True) -> list[str]:
        """Ids to tokens; with ``strip``, stop at ``<eos>`` and drop ``<pad>``/``<sos>``."""
        out: list[str] = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self):
                raise ValueError(f"expected ids in [0, {len(self)}), got {i}")
            if strip and i == self.eos_id:
                break
            if strip and i in (self.pad_id, self.sos_id):
                continue
            out.append(self.itos[i])
        return out
