"""A Potts model over sequences and its Gibbs sampler: a synthetic multiple sequence alignment.

A protein family's sequences vary, but residues in contact vary *together*: a change
at one is compensated at the other. The **Potts model** writes that as a probability
over sequences ``x = (x_1 .. x_L)`` of ``q`` letters,

    P(x) ∝ exp( sum_i h_i(x_i) + sum_{(i, j) in E} J_ij(x_i, x_j) ),

with couplings only on the edges ``E`` of a contact graph. :func:`random_potts` draws a
random sparse graph and random fields and couplings; :func:`gibbs_sample` draws
sequences from it (many chains at once). :mod:`attnbook.contacts` reads the graph back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from attnbook import _validate

__all__ = ["PottsModel", "random_potts", "gibbs_sample", "check_sequences"]


@dataclass
class PottsModel:
    """Fields ``h`` (L, q), couplings ``J`` (L, L, q, q) with ``J[i, j] = J[j, i].T``, zero off the graph.

    ``edges`` (E, 2) lists the contact graph's pairs ``i < j``.
    """

    h: torch.Tensor
    J: torch.Tensor
    edges: torch.Tensor

    def __post_init__(self) -> None:
        _validate.tensor(self.h, "h", ndim=2, floating=True)
        _validate.tensor(self.J, "J", ndim=4, floating=True)
        _validate.tensor(self.edges, "edges", ndim=2, integer=True)
        L, q = self.h.shape
        if tuple(self.J.shape) != (L, L, q, q):
            raise ValueError(f"expected J of shape (L, L, q, q) = ({L}, {L}, {q}, {q}), got "
                             f"{tuple(self.J.shape)}")
        ordered = bool((self.edges[:, 0] < self.edges[:, 1]).all()) if self.edges.shape[1:] == (2,) else False
        if not ordered:
            raise ValueError(f"expected edges of shape (E, 2) with i < j in every row, got shape "
                             f"{tuple(self.edges.shape)}")
        if self.edges.numel() and (int(self.edges.min()) < 0 or int(self.edges.max()) >= L):
            raise ValueError(f"expected edge positions in [0, {L}), got values from {int(self.edges.min())} to "
                             f"{int(self.edges.max())}")
        if not torch.allclose(self.J, self.J.permute(1, 0, 3, 2)):
            raise ValueError("expected symmetric couplings, J[i, j, a, b] == J[j, i, b, a]")

    @property
    def length(self) -> int:
        return self.h.shape[0]

    @property
    def num_states(self) -> int:
        return self.h.shape[1]

    def contact_map(self) -> torch.Tensor:
        """(L, L) bool, True on the graph's pairs (both orders)."""
        m = torch.zeros(self.length, self.length, dtype=torch.bool)
        m[self.edges[:, 0], self.edges[:, 1]] = True
        return m | m.T

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """``sum_i h_i(x_i) + sum_{i<j} J_ij(x_i, x_j)`` (the log-probability up to a constant).

        Shape:
            x: (N, L) letters in [0, q) -> (N,)
        """
        check_sequences(x, self.length, self.num_states)
        pos = torch.arange(self.length)
        e = self.h[pos, x].sum(-1)  # (N,)
        i, j = self.edges[:, 0], self.edges[:, 1]
        return e + self.J[i, j, x[:, i], x[:, j]].sum(-1)


def check_sequences(x: torch.Tensor, L: int, q: int) -> None:
    _validate.tensor(x, "sequences", ndim=2, integer=True)
    if x.shape[1] != L:
        raise ValueError(f"expected sequences of length {L}, got shape {tuple(x.shape)}")
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= q):
        raise ValueError(f"expected letters in [0, {q}), got values from {int(x.min())} to {int(x.max())}")


def random_potts(length: int, num_states: int, num_edges: int, *, coupling: float = 1.0, field: float = 0.5,
                 min_separation: int = 1, generator: torch.Generator | None = None) -> PottsModel:
    """A random Potts model: ``num_edges`` pairs with ``|i - j| >= min_separation``, drawn uniformly.

    Fields are N(0, field^2); each edge's ``q x q`` coupling matrix is N(0, coupling^2),
    centred so that its rows and columns sum to zero (a pure pair effect, no hidden field).
    """
    L, q, E = (_validate.positive_int(v, n) for v, n in ((length, "length"), (num_states, "num_states"),
                                                          (num_edges, "num_edges")))
    _validate.positive_int(min_separation, "min_separation")
    for name, v in (("coupling", coupling), ("field", field)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ValueError(f"expected a non-negative {name}, got {v!r}")
    i, j = torch.triu_indices(L, L, offset=min_separation)
    if E > i.numel():
        raise ValueError(f"expected at most {i.numel()} edges (pairs with |i - j| >= {min_separation}), "
                         f"got {E}")
    pick = torch.randperm(i.numel(), generator=generator)[:E]
    edges = torch.stack([i[pick], j[pick]], 1)  # (E, 2)
    edges = edges[torch.argsort(edges[:, 0] * L + edges[:, 1])]
    h = field * torch.randn(L, q, generator=generator)
    W = coupling * torch.randn(E, q, q, generator=generator)
    W = W - W.mean(1, keepdim=True) - W.mean(2, keepdim=True) + W.mean((1, 2), keepdim=True)
    J = torch.zeros(L, L, q, q)
    J[edges[:, 0], edges[:, 1]] = W
    J[edges[:, 1], edges[:, 0]] = W.transpose(1, 2)
    return PottsModel(h, J, edges)


def _colour_classes(contacts: torch.Tensor) -> list[torch.Tensor]:
    """Greedy graph colouring: positions of one class share no edge, so they can be redrawn at once."""
    L = contacts.shape[0]
    colour = [-1] * L
    for i in range(L):
        taken = {colour[j] for j in torch.nonzero(contacts[i]).flatten().tolist()}
        colour[i] = next(c for c in range(L) if c not in taken)
    return [torch.tensor([i for i in range(L) if colour[i] == c]) for c in range(max(colour) + 1)]


def gibbs_sample(model: PottsModel, num_sequences: int, *, sweeps: int = 100,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw sequences by Gibbs sampling: one independent chain per sequence, ``sweeps`` passes each.

    A pass redraws every ``x_i`` from ``P(x_i = a | rest) ∝ exp(h_i(a) + sum_{j ~ i} J_ij(a, x_j))``.
    Positions that share no edge are conditionally independent given the rest, so each
    colour class of a greedy colouring of the graph is redrawn in one vectorised step
    (a chromatic Gibbs sampler: the same chain as visiting them one by one). Chains
    start uniform.

    Shape:
        -> (num_sequences, L) long
    """
    if not isinstance(model, PottsModel):
        raise TypeError(f"expected a PottsModel, got {type(model).__name__}")
    N, S = _validate.positive_int(num_sequences, "num_sequences"), _validate.positive_int(sweeps, "sweeps")
    L, q = model.length, model.num_states
    contacts = model.contact_map()
    degree = int(contacts.sum(1).max())
    # neighbours padded with L (a dummy position whose couplings are zero): (L, max degree)
    nbr = torch.full((L, max(degree, 1)), L, dtype=torch.long)
    for i in range(L):
        nb = torch.nonzero(contacts[i]).flatten()
        nbr[i, :nb.numel()] = nb
    J = torch.cat([model.J, model.J.new_zeros(L, 1, q, q)], 1)  # (L, L + 1, q, q)
    deg = nbr.shape[1]
    # one table row per (position i, neighbour slot, letter x_j): J_ij(., x_j), (L * deg * q, q)
    table = J[torch.arange(L)[:, None], nbr].transpose(-1, -2).reshape(L * deg * q, q)
    classes = [(cls, nbr[cls], (cls[:, None] * deg + torch.arange(deg)) * q)  # offsets into the table
               for cls in _colour_classes(contacts)]
    x = torch.cat([torch.randint(0, q, (N, L), generator=generator), torch.zeros(N, 1, dtype=torch.long)], 1)
    for _ in range(S):
        for cls, cls_nbr, offset in classes:
            rows = offset + x[:, cls_nbr]  # (N, |cls|, deg): the table row of each neighbour's letter
            pair = nn.functional.embedding(rows, table)  # (N, |cls|, deg, q)
            logits = model.h[cls] + pair.sum(2)  # (N, |cls|, q)
            u = torch.rand(N, cls.numel(), q, generator=generator).clamp_min(1e-12)
            x[:, cls] = (logits - torch.log(-torch.log(u))).argmax(-1)  # categorical draws (Gumbel-max)
    return x[:, :L]
