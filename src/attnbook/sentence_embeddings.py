"""Sentence embeddings from a pretrained encoder: mean pooling, normalisation, cosine similarity.

all-MiniLM-L6-v2 was trained (sentence-transformers, Reimers and Gurevych, 2019) to
make the *mean* of its last hidden states over the real tokens, normalised to length
one, a sentence embedding; two sentences are compared by the cosine of their
embeddings. This module reproduces that pooling for the offline MiniLM of
:mod:`attnbook.pretrained`, so the chapters can measure how the similarity scores
change when heads are removed or tokens are ablated.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from attnbook import _validate
from attnbook.pretrained import MiniLM

__all__ = ["mean_pool", "last_segment_mask", "encode", "cosine_matrix", "paraphrase_loss"]


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor, *, normalize: bool = True) -> torch.Tensor:
    """Average the hidden states of the real tokens (mask 1), then scale each row to length one.

    Padding positions (mask 0) are left out of the average, as sentence-transformers does.

    Shape:
        hidden (B, T, d), attention_mask (B, T) of 0/1 -> (B, d)
    """
    _validate.tensor(hidden, "hidden", ndim=3, floating=True)
    _validate.tensor(attention_mask, "attention_mask", ndim=2)
    if attention_mask.shape != hidden.shape[:2]:
        raise ValueError(f"expected attention_mask of shape {tuple(hidden.shape[:2])}, "
                         f"got {tuple(attention_mask.shape)}")
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    counts = weights.sum(dim=1).clamp(min=1e-9)  # (B, 1)
    pooled = (hidden * weights).sum(dim=1) / counts  # (B, d)
    return torch.nn.functional.normalize(pooled, dim=-1) if normalize else pooled


def last_segment_mask(input_ids: torch.Tensor, token_type_ids: torch.Tensor, attention_mask: torch.Tensor,
                      special_ids: Sequence[int]) -> torch.Tensor:
    """1 on the word tokens of each row's last segment; 0 on earlier segments, special tokens, padding.

    For a pair ``[CLS] A [SEP] B [SEP]`` that is B's tokens; for a single sentence, all
    its tokens. Chapter 8 pools a question's vectors over this mask, so that what they
    know about a context sentence A can only have come through attention.

    Shape:
        input_ids, token_type_ids, attention_mask (B, T) -> (B, T) long of 0/1
    """
    for name, t in (("input_ids", input_ids), ("token_type_ids", token_type_ids),
                    ("attention_mask", attention_mask)):
        _validate.tensor(t, name, ndim=2)
        if t.shape != input_ids.shape:
            raise ValueError(f"expected {name} of shape {tuple(input_ids.shape)}, got {tuple(t.shape)}")
    if isinstance(special_ids, (str, bytes)) or not isinstance(special_ids, Sequence):
        raise TypeError(f"expected a sequence of special token ids, got {type(special_ids).__name__}")
    real = attention_mask == 1
    last = (token_type_ids * real).amax(dim=1, keepdim=True)  # (B, 1): the last segment's type
    special = torch.isin(input_ids, torch.tensor(list(special_ids), dtype=input_ids.dtype, device=input_ids.device))
    return (real & (token_type_ids == last) & ~special).long()


def encode(minilm: MiniLM, texts: Sequence[str], *, batch_size: int = 64, grad: bool = False) -> torch.Tensor:
    """Embed ``texts`` with the model as it is now (hooks such as head gates included).

    Returns unit-length rows on the model's device; with ``grad=True`` the graph is
    kept, so a loss on the embeddings can be differentiated (e.g. w.r.t. head gates).

    Shape:
        N strings -> (N, d)
    """
    if not isinstance(minilm, MiniLM):
        raise TypeError(f"expected a MiniLM from load_minilm(), got {type(minilm).__name__}")
    if isinstance(texts, str) or not isinstance(texts, Sequence) or not texts:
        raise TypeError(f"expected a non-empty sequence of strings, got {type(texts).__name__}")
    if not all(isinstance(t, str) and t.strip() for t in texts):
        raise ValueError("expected every text to be a non-empty string, got an empty or non-string item")
    _validate.positive_int(batch_size, "batch_size")
    device = next(minilm.model.parameters()).device
    out = []
    with torch.set_grad_enabled(grad):
        for start in range(0, len(texts), batch_size):
            enc = minilm.tokenizer(list(texts[start:start + batch_size]), padding=True, return_tensors="pt").to(device)
            hidden = minilm.model(**enc, output_attentions=False).last_hidden_state  # (B, T, d)
            out.append(mean_pool(hidden, enc["attention_mask"]))  # (B, d)
    return torch.cat(out)


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every row of ``a`` with every row of ``b``.

    Shape:
        a (N, d), b (M, d) -> (N, M)
    """
    _validate.tensor(a, "a", ndim=2, floating=True)
    _validate.tensor(b, "b", ndim=2, floating=True)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"expected a and b of the same width, got {a.shape[1]} and {b.shape[1]}")
    return torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(b, dim=-1).T  # (N, M)


def paraphrase_loss(a: torch.Tensor, b: torch.Tensor, *, scale: float = 20.0) -> torch.Tensor:
    """In-batch contrastive loss: row ``i`` of ``a`` should be closest to row ``i`` of ``b``.

    Cross-entropy over the scaled cosine similarities, with the other rows of ``b`` as
    negatives (the "multiple negatives ranking" loss that sentence-transformers uses).

    Shape:
        a (N, d), b (N, d) -> () scalar
    """
    _validate.tensor(a, "a", ndim=2, floating=True)
    _validate.tensor(b, "b", ndim=2, floating=True)
    if a.shape != b.shape:
        raise ValueError(f"expected a and b of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    logits = scale * cosine_matrix(a, b)  # (N, N)
    return torch.nn.functional.cross_entropy(logits, torch.arange(a.shape[0], device=a.device))
