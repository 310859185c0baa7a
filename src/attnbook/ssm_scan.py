"""The selective scan of a state-space model, three ways (the recurrence of :mod:`attnbook.ssm`).

For every channel ``d`` and state index ``n``:

    A_bar_t = exp(Delta_t * A)          B_bar_t = Delta_t * B_t
    h_t     = A_bar_t * h_{t-1} + B_bar_t * x_t
    y_t     = sum_n C_t[n] * h_t[n]  +  D * x_t

* :func:`discretize`: Mamba's discretisation (zero-order hold for ``A``, Euler for ``B``);
* :func:`selective_scan_reference`: the loop above, one step at a time (the definition);
* :func:`selective_scan`: chunked, with a parallel prefix scan inside each chunk.

The names are re-exported by :mod:`attnbook.ssm`, where chapter 10 imports them.
"""

from __future__ import annotations

import torch

from attnbook import _validate

__all__ = ["discretize", "selective_scan_reference", "selective_scan"]


def _check_scan_inputs(x: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                       D: torch.Tensor | None, h0: torch.Tensor | None) -> None:
    _validate.tensor(x, "x", ndim=3, floating=True)
    Bt, L, Dm = x.shape
    _validate.tensor(delta, "delta", ndim=3, floating=True)
    if delta.shape != x.shape:
        raise ValueError(f"expected delta of the shape of x {tuple(x.shape)}, got {tuple(delta.shape)}")
    _validate.tensor(A, "A", ndim=2, floating=True)
    if A.shape[0] != Dm:
        raise ValueError(f"expected A of shape ({Dm}, N) (one row per channel), got {tuple(A.shape)}")
    N = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        _validate.tensor(t, name, ndim=3, floating=True)
        if t.shape != (Bt, L, N):
            raise ValueError(f"expected {name} of shape (batch, length, N) = ({Bt}, {L}, {N}), got {tuple(t.shape)}")
    if D is not None:
        _validate.tensor(D, "D", ndim=1, floating=True)
        if D.shape != (Dm,):
            raise ValueError(f"expected D of shape ({Dm},), got {tuple(D.shape)}")
    if h0 is not None:
        _validate.tensor(h0, "h0", ndim=3, floating=True)
        if h0.shape != (Bt, Dm, N):
            raise ValueError(f"expected h0 of shape (batch, channels, N) = ({Bt}, {Dm}, {N}), got {tuple(h0.shape)}")


def discretize(delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mamba's discretisation: ``A_bar = exp(Delta A)`` (zero-order hold), ``B_bar = Delta B`` (Euler).

    Shape:
        delta: (batch, L, D); A: (D, N); B: (batch, L, N)
        -> A_bar, B_bar: (batch, L, D, N) each
    """
    _validate.tensor(delta, "delta", ndim=3, floating=True)
    _validate.tensor(A, "A", ndim=2, floating=True)
    _validate.tensor(B, "B", ndim=3, floating=True)
    if A.shape[0] != delta.shape[-1]:
        raise ValueError(f"expected A of shape ({delta.shape[-1]}, N) to match delta's channels, got {tuple(A.shape)}")
    if B.shape != (*delta.shape[:2], A.shape[1]):
        raise ValueError(f"expected B of shape {(*delta.shape[:2], A.shape[1])}, got {tuple(B.shape)}")
    A_bar = torch.exp(delta[..., None] * A)  # (batch, L, D, N)
    B_bar = delta[..., None] * B[:, :, None, :]  # (batch, L, D, N)
    return A_bar, B_bar


def selective_scan_reference(x: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                             C: torch.Tensor, D: torch.Tensor | None = None, *, h0: torch.Tensor | None = None,
                             return_state: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The selective scan as its definition: a loop over time, one state update per step.

    ``h_t = exp(Delta_t A) * h_{t-1} + Delta_t B_t x_t``, ``y_t = C_t . h_t + D x_t``.

    Shape:
        x, delta: (batch, L, D); A: (D, N); B, C: (batch, L, N); D: (D,); h0: (batch, D, N)
        -> y: (batch, L, D) (and the last state (batch, D, N) with ``return_state=True``)
    """
    _check_scan_inputs(x, delta, A, B, C, D, h0)
    Bt, L, Dm = x.shape
    A_bar, B_bar = discretize(delta, A, B)  # (batch, L, D, N) each
    h = x.new_zeros(Bt, Dm, A.shape[1]) if h0 is None else h0  # (batch, D, N)
    ys = []
    for t in range(L):
        h = A_bar[:, t] * h + B_bar[:, t] * x[:, t, :, None]  # (batch, D, N)
        ys.append((h * C[:, t, None, :]).sum(-1))  # (batch, D)
    y = torch.stack(ys, dim=1)  # (batch, L, D)
    if D is not None:
        y = y + D * x
    return (y, h) if return_state else y


def _prefix_scan(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hillis-Steele inclusive scan of the affine maps ``h -> a_t h + b_t`` along dimension 1.

    Returns, for every position ``t``, the product ``a_t ... a_0`` and the state reached from
    ``h = 0`` after steps ``0..t``: ``log2(length)`` vectorised steps instead of ``length``.

    Shape:
        a, b: (batch, c, D, N) -> (batch, c, D, N) each
    """
    step, c = 1, a.shape[1]
    while step < c:  # compose each map with the one `step` positions earlier (identity before the start)
        a_prev = torch.cat([a.new_ones(a.shape[0], step, *a.shape[2:]), a[:, :-step]], dim=1)  # (batch, c, D, N)
        b_prev = torch.cat([b.new_zeros(b.shape[0], step, *b.shape[2:]), b[:, :-step]], dim=1)  # (batch, c, D, N)
        b = a * b_prev + b
        a = a * a_prev
        step *= 2
    return a, b


def selective_scan(x: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: torch.Tensor | None = None, *, h0: torch.Tensor | None = None, chunk_size: int = 64,
                   return_state: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The same recurrence as :func:`selective_scan_reference`, in chunks, vectorised inside each chunk.

    Each step is an affine map ``h -> a_t h + b_t`` with ``a_t = exp(Delta_t A)`` and
    ``b_t = Delta_t B_t x_t``; two steps compose into ``h -> (a_2 a_1) h + (a_2 b_1 + b_2)``,
    which is associative. The sequence is walked in chunks of ``chunk_size`` steps. Inside a
    chunk, a Hillis-Steele prefix scan applies that rule at distances 1, 2, 4, ...
    (``log2(chunk_size)`` vectorised steps), giving every position's product of ``a`` and
    its state from a zero start; the state entering the chunk is then added in,
    ``h_t = (a_t ... a_1) h_in + b_scan_t``, and the chunk's last state enters the next chunk.
    The loop runs ``L / chunk_size`` times, each on a chunk-sized piece: time grows
    linearly with ``L`` and, without gradients, the memory in use does not grow with ``L``.

    Shape:
        x, delta: (batch, L, D); A: (D, N); B, C: (batch, L, N); D: (D,); h0: (batch, D, N)
        -> y: (batch, L, D) (and the last state (batch, D, N) with ``return_state=True``)
    """
    _check_scan_inputs(x, delta, A, B, C, D, h0)
    _validate.positive_int(chunk_size, "chunk_size")
    Bt, L, Dm = x.shape
    h = x.new_zeros(Bt, Dm, A.shape[1]) if h0 is None else h0  # (batch, D, N): the state entering the chunk
    ys = []
    for start in range(0, L, chunk_size):
        part = slice(start, start + chunk_size)
        a, b = discretize(delta[:, part], A, B[:, part])  # (batch, c, D, N) each
        b = b * x[:, part, :, None]  # (batch, c, D, N): what each step writes into the state
        a, b = _prefix_scan(a, b)  # products of a since the chunk start; states from a zero start
        states = a * h[:, None] + b  # (batch, c, D, N): the true states
        ys.append((states * C[:, part, None, :]).sum(-1))  # (batch, c, D)
        h = states[:, -1]  # (batch, D, N)
    y = torch.cat(ys, dim=1)  # (batch, L, D)
    if D is not None:
        y = y + D * x
    return (y, h) if return_state else y
