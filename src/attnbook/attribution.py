"""Which tokens matter? Attention-based scores against ablation and gradient x input.

The quantity explained is the cosine similarity $s$ between a sentence's embedding
(mean-pooled MiniLM, :mod:`attnbook.sentence_embeddings`) and a fixed target embedding.

* **Ablation**: remove token $i$ (mask it out of every attention and of the pooling)
  and measure how much $s$ drops: $\\Delta_i = s - s_{\\setminus i}$.
* **Gradient x input**: $\\sum_k e_{ik}\\, \\partial s / \\partial e_{ik}$ over the
  token's input embedding $e_i$, a first-order estimate of the same effect.
* **Attention**: how much weight a token *receives*, averaged over heads and
  queries, from the last layer or from all layers (attention rollout, Abnar and
  Zuidema, 2020).

:func:`spearman` compares two rankings of the same tokens.
"""

from __future__ import annotations

import torch

from attnbook import _validate
from attnbook.pretrained import MiniLM
from attnbook.sentence_embeddings import mean_pool

__all__ = ["ablation_effects", "gradient_x_input", "attention_received", "attention_rollout", "spearman"]


def _check(minilm: MiniLM, text: str, target: torch.Tensor) -> None:
    if not isinstance(minilm, MiniLM):
        raise TypeError(f"expected a MiniLM from load_minilm(), got {type(minilm).__name__}")
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"expected a non-empty string, got {text!r}")
    _validate.tensor(target, "target", ndim=1, floating=True)


def ablation_effects(minilm: MiniLM, text: str, target: torch.Tensor) -> tuple[list[str], torch.Tensor]:
    """Drop in cosine similarity to ``target`` when each token is removed, all in one batch.

    Token ``i`` is removed by setting its attention mask to 0: no other token can read
    it and it leaves the mean. ``[CLS]`` and ``[SEP]`` are never removed (effect 0).

    Shape:
        target (d,) -> tokens: T strings; effects (T,) on the CPU
    """
    _check(minilm, text, target)
    device = next(minilm.model.parameters()).device
    enc = minilm.tokenizer(text, return_tensors="pt").to(device)
    ids = enc["input_ids"]  # (1, T)
    T = ids.shape[1]
    masks = torch.ones(T, T, dtype=torch.long, device=device)  # row 0: nothing removed; row i: token i removed
    masks[torch.arange(1, T - 1), torch.arange(1, T - 1)] = 0
    masks = masks[: T - 1]  # rows 0 .. T-2 (the last token, [SEP], is never removed)
    with torch.no_grad():
        hidden = minilm.model(input_ids=ids.expand(T - 1, T), attention_mask=masks,
                              token_type_ids=torch.zeros(T - 1, T, dtype=torch.long, device=device),
                              output_attentions=False).last_hidden_state  # (T-1, T, d)
        sims = mean_pool(hidden, masks) @ torch.nn.functional.normalize(target.to(device), dim=0)  # (T-1,)
    effects = torch.zeros(T)
    effects[1: T - 1] = (sims[0] - sims[1:]).cpu()
    return minilm.tokenizer.convert_ids_to_tokens(ids[0].tolist()), effects


def gradient_x_input(minilm: MiniLM, text: str, target: torch.Tensor) -> tuple[list[str], torch.Tensor]:
    """Gradient x input of the cosine similarity to ``target``, per token (summed over the embedding).

    The input is the word-embedding vector of each token (before positions are added).

    Shape:
        target (d,) -> tokens: T strings; scores (T,) on the CPU
    """
    _check(minilm, text, target)
    device = next(minilm.model.parameters()).device
    enc = minilm.tokenizer(text, return_tensors="pt").to(device)
    embeds = minilm.model.get_input_embeddings()(enc["input_ids"]).detach().requires_grad_(True)  # (1, T, d)
    hidden = minilm.model(inputs_embeds=embeds, attention_mask=enc["attention_mask"],
                          token_type_ids=enc["token_type_ids"], output_attentions=False).last_hidden_state
    sim = mean_pool(hidden, enc["attention_mask"])[0] @ torch.nn.functional.normalize(target.to(device), dim=0)
    (grad,) = torch.autograd.grad(sim, embeds)  # (1, T, d)
    scores = (grad * embeds).sum(-1)[0].detach().cpu()  # (T,)
    return minilm.tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist()), scores


def attention_received(attentions: torch.Tensor, layer: int = -1) -> torch.Tensor:
    """Weight each token receives in one layer, averaged over heads and over the queries.

    Shape:
        attentions (layers, heads, T, T) -> (T,), sums to 1
    """
    _validate.tensor(attentions, "attentions", ndim=4, floating=True)
    if isinstance(layer, bool) or not isinstance(layer, int) or not -attentions.shape[0] <= layer < attentions.shape[0]:
        raise ValueError(f"expected a layer index in [{-attentions.shape[0]}, {attentions.shape[0]}), got {layer!r}")
    return attentions[layer].mean(dim=0).mean(dim=0)  # heads, then queries -> (T,)


def attention_rollout(weights: torch.Tensor | list[torch.Tensor] | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Attention rollout (Abnar and Zuidema, 2020): how much each output position draws on each input token.

    Per layer, average the heads, add the residual path (the identity: ``A + I``, which
    after renormalising is the paper's ``0.5 A + 0.5 I``), renormalise the rows to sum to
    one; then multiply the layers' matrices, first layer rightmost.

    Args:
        weights: one attention tensor per layer, first layer first: a list or tuple of
            (..., heads, T, T) tensors (as :class:`~attnbook.vit.ViT` returns), or one
            tensor with the layers stacked on its first axis, (layers, ..., heads, T, T)
            (as a Hugging Face model's ``torch.stack(outputs.attentions)``, batch removed).

    Shape:
        list of (..., heads, T, T) or (layers, ..., heads, T, T) -> (..., T, T), every row summing to one;
        e.g. a list of (B, heads, T, T) -> (B, T, T), and (layers, heads, T, T) -> (T, T)
    """
    if isinstance(weights, torch.Tensor):
        _validate.tensor(weights, "weights", floating=True)
        if weights.dim() < 4:
            raise ValueError(f"expected stacked attention of shape (layers, ..., heads, T, T) with at least 4 "
                             f"dimensions, got shape {tuple(weights.shape)}")
        layers = list(weights.unbind(0))
    elif isinstance(weights, (list, tuple)):
        if not weights:
            raise ValueError("expected a non-empty list of attention tensors, one per layer, got one of length 0")
        layers = list(weights)
    else:
        raise TypeError(f"expected a list of attention tensors or one stacked tensor, got {type(weights).__name__}")
    result = None
    for i, w in enumerate(layers):
        _validate.tensor(w, f"the attention of layer {i}", floating=True)
        if w.dim() < 3 or w.shape[-1] != w.shape[-2]:
            raise ValueError(f"expected square (..., heads, T, T) attention in layer {i}, got shape {tuple(w.shape)}")
        a = w.mean(dim=-3)  # (..., T, T): heads averaged
        a = a + torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)  # the residual path
        a = a / a.sum(dim=-1, keepdim=True)
        if result is not None and result.shape != a.shape:
            raise ValueError(f"expected every layer's attention of shape {tuple(layers[0].shape)}, got "
                             f"{tuple(w.shape)} in layer {i}")
        result = a if result is None else a @ result  # later layers on the left
    return result


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n, ties given their average rank."""
    order = torch.argsort(x, stable=True)
    ranks = torch.empty_like(x, dtype=torch.float64)
    ranks[order] = torch.arange(1, x.numel() + 1, dtype=torch.float64)
    values = x.to(torch.float64)
    for v in torch.unique(values):
        tied = values == v
        if int(tied.sum()) > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two score vectors (Pearson correlation of their ranks; ties averaged).

    Shape:
        a (n,), b (n,) with n >= 2 -> float in [-1, 1]
    """
    _validate.tensor(a, "a", ndim=1)
    _validate.tensor(b, "b", ndim=1)
    if a.shape != b.shape or a.numel() < 2:
        raise ValueError(f"expected two vectors of the same length >= 2, got {tuple(a.shape)} and {tuple(b.shape)}")
    ra, rb = _ranks(a.detach().cpu()), _ranks(b.detach().cpu())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(ra.norm() * rb.norm())
    if denom == 0.0:
        raise ValueError("expected vectors that are not constant (a rank correlation needs variation)")
    return float((ra @ rb) / denom)
