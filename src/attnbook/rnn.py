"""Recurrent encoder-decoder models, with and without attention.

* :class:`Encoder`: a bidirectional GRU reads the source; its per-position
  states are what attention looks at, its two final states are the summary.
* ``attention="none"``: the decoder is handed that one fixed-size summary
  (at its start and at every step, as in Cho et al., 2014): the *bottleneck*.
* ``attention="additive"`` / ``"multiplicative"``: at each step the decoder
  scores every encoder state against its own state, and reads a fresh context
  vector, their weighted average (Bahdanau et al., 2015; Luong et al., 2015).
  ``"multiplicative"`` is Luong's *general* (bilinear) score ``s^T W h``, with
  ``W h`` computed once per source. ``"dot"`` is the same bilinear family with the
  matrix applied to the decoder state at every step instead (``(W s)^T h``): not
  Luong's plain dot ``s^T h``, which needs a decoder state as wide as the encoder
  states (here H vs 2H). It is kept for old configurations.

Both decoders have the same inputs and widths, so the two models differ only in
where the context comes from.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from attnbook import _validate
from attnbook.layers import count_parameters  # re-exported: it used to live here
from attnbook.scoring import AdditiveScore, MultiplicativeScore, attend, masked_softmax, padding_mask

__all__ = ["Seq2SeqConfig", "Encoder", "Seq2Seq", "count_parameters"]

ATTENTION_KINDS = ("none", "additive", "multiplicative", "dot")


@dataclass(frozen=True)
class Seq2SeqConfig:
    """Sizes of an encoder-decoder GRU.

    ``attention`` is ``"none"`` (fixed context), ``"additive"`` (Bahdanau),
    ``"multiplicative"`` (Luong's general ``q^T W k``) or ``"dot"`` (also bilinear,
    ``(W q)^T k`` with the query lifted each step; see the module docstring).
    """

    src_vocab: int
    tgt_vocab: int
    embed_dim: int = 64
    hidden_dim: int = 128
    attention: str = "additive"
    attention_dim: int = 128

    def __post_init__(self) -> None:
        for name in ("src_vocab", "tgt_vocab", "embed_dim", "hidden_dim", "attention_dim"):
            _validate.positive_int(getattr(self, name), name)
        if self.attention not in ATTENTION_KINDS:
            raise ValueError(f"expected attention in {ATTENTION_KINDS}, got {self.attention!r}")


class Encoder(nn.Module):
    """Embedding + bidirectional GRU over padded sources.

    Shape:
        src: (B, S) ids; src_len: (B,) -> states: (B, S, 2H), summary: (B, 2H)
    """

    def __init__(self, vocab: int, embed_dim: int, hidden_dim: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed_dim, padding_idx=0)
        self.gru = nn.GRU(embed_dim, hidden_dim, batch_first=True, bidirectional=True)

    def forward(self, src: torch.Tensor, src_len: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        packed = pack_padded_sequence(self.embed(src), src_len.cpu(), batch_first=True, enforce_sorted=False)
        out, h_n = self.gru(packed)
        states, _ = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])  # (B, S, 2H)
        summary = torch.cat([h_n[0], h_n[1]], dim=-1)  # (B, 2H): forward's last, backward's first
        return states, summary


class Seq2Seq(nn.Module):
    """GRU encoder-decoder; ``config.attention`` says whether the decoder attends.

    ``forward`` trains with teacher forcing; :meth:`greedy_decode` generates.
    Attention weights are returned when asked (``need_weights=True``), never kept
    in the module.

    Shape:
        src: (B, S) source ids, 0-padded; src_len: (B,) lengths
        tgt_in: (B, T) decoder inputs (``<sos>`` + target)
        -> logits: (B, T, tgt_vocab); weights (if asked): (B, T, S), zero on padding
    """

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        if not isinstance(config, Seq2SeqConfig):
            raise TypeError(f"expected a Seq2SeqConfig, got {type(config).__name__}")
        self.config = c = config
        ctx = 2 * c.hidden_dim
        self.encoder = Encoder(c.src_vocab, c.embed_dim, c.hidden_dim)
        self.embed = nn.Embedding(c.tgt_vocab, c.embed_dim, padding_idx=0)
        self.init = nn.Linear(ctx, c.hidden_dim)
        self.out = nn.Linear(c.hidden_dim + ctx, c.tgt_vocab)
        if c.attention == "none":
            self.rnn = nn.GRU(c.embed_dim + ctx, c.hidden_dim, batch_first=True)
            self.score = None
        else:
            self.cell = nn.GRUCell(c.embed_dim + ctx, c.hidden_dim)
            if c.attention == "additive":
                self.score = AdditiveScore(c.hidden_dim, ctx, c.attention_dim)
            elif c.attention == "multiplicative":
                self.score = MultiplicativeScore(c.hidden_dim, ctx, learned=True)
            else:  # "dot": widths differ (H vs 2H), so the query is lifted: still bilinear
                self.query = nn.Linear(c.hidden_dim, ctx, bias=False)
                self.score = MultiplicativeScore(ctx, ctx, learned=False)

    def _check(self, src: torch.Tensor, src_len: torch.Tensor) -> None:
        _validate.tensor(src, "src", ndim=2, integer=True)
        _validate.lengths(src_len, src.shape[0], src.shape[1], "src_len")
        _validate.token_ids(src, self.config.src_vocab, "source ids")  # checked on the CPU only: no device sync

    def encode(self, src: torch.Tensor, src_len: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the encoder once; what every decoder step needs."""
        self._check(src, src_len)
        states, summary = self.encoder(src, src_len)
        memory = {"states": states, "summary": summary, "mask": padding_mask(src_len, src.shape[1]),
                  "h0": torch.tanh(self.init(summary))}
        if self.score is not None:
            memory["keys"] = self.score.project_keys(states)
        return memory

    def _attend(self, h: torch.Tensor, memory: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Score every encoder state against the decoder state ``h``; return (context, weights)."""
        query = self.query(h) if self.config.attention == "dot" else h
        scores = self.score(query, memory["states"], memory["keys"])  # (B, S)
        weights = masked_softmax(scores, memory["mask"])  # (B, S), zero on padding
        return attend(weights, memory["states"]), weights  # (B, 2H), (B, S)

    def forward(self, src: torch.Tensor, src_len: torch.Tensor, tgt_in: torch.Tensor, *,
                need_weights: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        self._check(src, src_len)
        _validate.tensor(tgt_in, "tgt_in", ndim=2, integer=True)
        if tgt_in.shape[0] != src.shape[0]:
            raise ValueError(f"expected tgt_in with batch size {src.shape[0]}, got {tgt_in.shape[0]}")
        memory = self.encode(src, src_len)
        B, T = tgt_in.shape
        emb = self.embed(tgt_in)  # (B, T, E)
        if self.score is None:  # the bottleneck: the same summary at every step
            ctx = memory["summary"].unsqueeze(1).expand(B, T, -1)  # (B, T, 2H)
            states, _ = self.rnn(torch.cat([emb, ctx], dim=-1), memory["h0"].unsqueeze(0))  # (B, T, H)
            weights = None
        else:  # Bahdanau: attend with s_{t-1}, then update the state with the context c_t
            h, hs, contexts, all_w = memory["h0"], [], [], []
            for emb_t in emb.unbind(1):  # one (B, E) view per step (its backward: one stack, not T slices)
                context, w = self._attend(h, memory)
                h = self.cell(torch.cat([emb_t, context], dim=-1), h)
                hs.append(h)
                contexts.append(context)
                all_w.append(w)
            states, ctx, weights = torch.stack(hs, 1), torch.stack(contexts, 1), torch.stack(all_w, 1)
        logits = self.out(torch.cat([states, ctx], dim=-1))  # (B, T, V), all steps in one product
        if need_weights:
            if weights is None:
                raise ValueError("this model has no attention (config.attention='none'), so no weights")
            return logits, weights
        return logits

    @torch.no_grad()
    def greedy_decode(self, src: torch.Tensor, src_len: torch.Tensor, max_len: int, *,
                      sos_id: int = 1, eos_id: int = 2) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Generate up to ``max_len`` tokens, each the most likely given the ones before.

        Shape:
            -> ids: (B, max_len) (after ``<eos>`` the rest is padding 0);
               weights: (B, max_len, S), or ``None`` without attention
        """
        _validate.positive_int(max_len, "max_len")
        for name, value in (("sos_id", sos_id), ("eos_id", eos_id)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < self.config.tgt_vocab:
                raise ValueError(f"expected {name} in [0, {self.config.tgt_vocab}), got {value!r}")
        memory = self.encode(src, src_len)
        B = src.shape[0]
        y = torch.full((B,), sos_id, dtype=torch.long, device=src.device)
        h, ids, all_w = memory["h0"], [], []
        done = torch.zeros(B, dtype=torch.bool, device=src.device)
        for _ in range(max_len):
            if self.score is None:
                inp = torch.cat([self.embed(y), memory["summary"]], dim=-1).unsqueeze(1)
                out, h1 = self.rnn(inp, h.unsqueeze(0))
                h = h1[0]
                logits = self.out(torch.cat([out[:, 0], memory["summary"]], dim=-1))
            else:
                context, w = self._attend(h, memory)
                h = self.cell(torch.cat([self.embed(y), context], dim=-1), h)
                logits = self.out(torch.cat([h, context], dim=-1))
                all_w.append(w)
            y = logits.argmax(-1).masked_fill(done, 0)
            ids.append(y)
            done |= y == eos_id
            if bool(done.all()):
                break
        ids_t = torch.stack(ids, 1)
        pad = max_len - ids_t.shape[1]
        if pad:
            ids_t = torch.cat([ids_t, ids_t.new_zeros(B, pad)], 1)
        weights = torch.stack(all_w, 1) if all_w else None
        if weights is not None and pad:
            weights = torch.cat([weights, weights.new_zeros(B, pad, weights.shape[2])], 1)
        return ids_t, weights
