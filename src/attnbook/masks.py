"""Attention masks: the one place that builds and checks them.

Convention (the same as :func:`torch.nn.functional.scaled_dot_product_attention`):

* a **boolean** mask says where a query *may attend*: ``True`` = may attend,
  ``False`` = this key gets exactly zero weight;
* a **floating-point** mask is *added* to the scores (``0`` keeps a key, ``-inf``
  removes it, anything else biases it).

**Causal alignment: bottom-right.** With ``L`` queries and ``S`` keys, query ``i``
(``0 <= i < L``) may see keys ``0 .. i + (S - L)``. The queries are taken to be the
*last* ``L`` positions of the ``S`` keys, which is what a KV cache needs: ``S - L``
cached tokens followed by ``L`` new ones, each new query seeing the cache and itself,
exactly what it would see without the cache. When ``L == S`` this is the ordinary
lower triangle (and equals PyTorch's top-left ``is_causal``); when ``L > S`` the first
``L - S`` queries see no key at all (and get a zero output). PyTorch's
``is_causal=True`` is aligned at the top left instead (query ``i`` sees keys ``0..i``),
so for ``L != S`` the package always passes an explicit bottom-right mask.
"""

from __future__ import annotations

import torch

from attnbook import _validate

__all__ = ["causal_mask", "padding_mask", "combine_masks", "check_mask"]


def causal_mask(num_queries: int, num_keys: int | None = None, *,
                device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean causal mask, bottom-right aligned: query ``i`` may see keys ``0 .. i + (S - L)``.

    ``L = num_queries``, ``S = num_keys`` (default ``L``, the plain lower triangle).
    ``True`` = may attend.

    Shape:
        -> mask: (num_queries, num_keys)
    """
    _validate.positive_int(num_queries, "num_queries")
    num_keys = num_queries if num_keys is None else _validate.positive_int(num_keys, "num_keys")
    return torch.ones(num_queries, num_keys, dtype=torch.bool, device=device).tril(num_keys - num_queries)


def padding_mask(lengths: torch.Tensor, num_keys: int | None = None) -> torch.Tensor:
    """Boolean key-padding mask, True on each sequence's real keys and False on its padding.

    It has a singleton query axis, so it broadcasts against scores of shape (B, L, S)
    and (B, heads, L, S). ``num_keys`` defaults to the longest length.

    Shape:
        lengths: (B,) integers in [1, num_keys] -> mask: (B, 1, num_keys)
    """
    _validate.tensor(lengths, "lengths", ndim=1, integer=True)
    num_keys = int(lengths.max()) if num_keys is None else _validate.positive_int(num_keys, "num_keys")
    _validate.lengths(lengths, lengths.shape[0], num_keys)
    return (torch.arange(num_keys, device=lengths.device)[None, :] < lengths[:, None]).unsqueeze(1)


def combine_masks(*masks: torch.Tensor | None) -> torch.Tensor | None:
    """One mask that allows a key only where every given mask allows it (``None`` entries are skipped).

    Bool masks are combined with ``&``; a float mask keeps its values where the bool
    masks allow and gets ``-inf`` elsewhere; two float masks are added. The result
    broadcasts like the inputs together; ``None`` if no mask is given.
    """
    result = None
    for m in masks:
        if m is None:
            continue
        _check_dtype(m)
        if result is None:
            result = m
        elif result.dtype == torch.bool and m.dtype == torch.bool:
            result = result & m
        elif result.dtype == torch.bool:
            result = m.masked_fill(~result, float("-inf"))
        elif m.dtype == torch.bool:
            result = result.masked_fill(~m, float("-inf"))
        else:
            result = result + m
    return result


def _check_dtype(mask: object) -> None:
    _validate.tensor(mask, "mask")
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise TypeError(f"expected a bool mask (True = may attend) or a floating-point mask (added to the "
                        f"scores), got dtype {mask.dtype}")


def check_mask(mask: torch.Tensor, scores_shape: tuple[int, ...], *, heads: bool = False) -> torch.Tensor:
    """Check that ``mask`` fits scores of shape (..., L, S); return it ready to broadcast.

    With ``heads=True`` the scores are (B, heads, L, S) and the mask may be (L, S),
    (B, L, S) (shared by all heads: returned as (B, 1, L, S)) or (B or 1, heads or 1, L, S).

    Raises:
        TypeError: not a tensor, or neither bool nor floating point.
        ValueError: a shape that does not broadcast to the scores' shape.
    """
    _check_dtype(mask)
    target, given = tuple(scores_shape), tuple(mask.shape)
    if heads:
        if mask.dim() == 3:
            mask = mask.unsqueeze(1)  # (B, 1, L, S): the same mask for every head
        if mask.dim() not in (2, 4):
            B, H, L, S = target
            raise ValueError(f"expected a mask of shape (L, S), (B, L, S) or (B, heads, L, S) = "
                             f"({B}, {H}, {L}, {S}), got shape {given}")
    should = target[-len(given):] if 0 < len(given) <= len(target) else target
    if heads and len(given) == 3:
        should = (target[0], *target[2:])
    try:
        ok = tuple(torch.broadcast_shapes(mask.shape, target)) == target
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"The shape of the mask is {given}, but should be {should} "
                         f"(it must broadcast to the scores' shape {target}: (..., queries, keys)).")
    return mask
