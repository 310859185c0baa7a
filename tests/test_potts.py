"""Tests for attnbook.potts: the Potts model and its Gibbs sampler (fast)."""

import itertools

import pytest
import torch

from attnbook.potts import PottsModel, _colour_classes, gibbs_sample, random_potts


def _tiny(seed=0):
    # 4 positions, 3 letters, a path 0-1-2 plus the edge 0-3: small enough to enumerate (81 sequences)
    g = torch.Generator().manual_seed(seed)
    L, q = 4, 3
    edges = torch.tensor([[0, 1], [0, 3], [1, 2]])
    J = torch.zeros(L, L, q, q)
    for i, j in edges.tolist():
        w = 1.5 * torch.randn(q, q, generator=g)
        J[i, j], J[j, i] = w, w.T
    return PottsModel(0.7 * torch.randn(L, q, generator=g), J, edges)


def test_energy_is_fields_plus_couplings():
    m = _tiny()
    x = torch.tensor([[0, 2, 1, 1]])
    by_hand = m.h[0, 0] + m.h[1, 2] + m.h[2, 1] + m.h[3, 1] + m.J[0, 1, 0, 2] + m.J[0, 3, 0, 1] + m.J[1, 2, 2, 1]
    torch.testing.assert_close(m.energy(x), by_hand.reshape(1))


def test_gibbs_sampler_matches_the_exact_distribution():
    m = _tiny()
    every = torch.tensor(list(itertools.product(range(3), repeat=4)))  # (81, 4)
    exact = torch.softmax(m.energy(every), 0)  # (81,)
    x = gibbs_sample(m, 20000, sweeps=15, generator=torch.Generator().manual_seed(1))
    code = (x * torch.tensor([27, 9, 3, 1])).sum(1)
    empirical = torch.bincount(code, minlength=81).float() / len(x)
    total_variation = 0.5 * (empirical - exact).abs().sum().item()
    assert total_variation < 0.03, total_variation
    # and the coupled pair's joint frequencies, the statistic contacts are read from
    joint = torch.zeros(3, 3)
    for a, b in itertools.product(range(3), repeat=2):
        joint[a, b] = exact[(every[:, 0] == a) & (every[:, 1] == b)].sum()
    seen = torch.zeros(3, 3).index_put_((x[:, 0], x[:, 1]), torch.ones(len(x)), accumulate=True) / len(x)
    torch.testing.assert_close(seen, joint, atol=0.015, rtol=0)


def test_uncoupled_model_gives_independent_columns_with_softmax_marginals():
    L, q = 3, 4
    h = torch.tensor([[2.0, 0.0, -1.0, 0.5], [0.0, 0.0, 0.0, 0.0], [-2.0, 1.0, 1.0, 0.0]])
    m = PottsModel(h, torch.zeros(L, L, q, q), torch.zeros(0, 2, dtype=torch.long))
    x = gibbs_sample(m, 20000, sweeps=2, generator=torch.Generator().manual_seed(0))
    for i in range(L):
        freq = torch.bincount(x[:, i], minlength=q).float() / len(x)
        torch.testing.assert_close(freq, torch.softmax(h[i], 0), atol=0.015, rtol=0)


def test_random_potts_graph_and_symmetry():
    m = random_potts(20, 5, 15, min_separation=3, generator=torch.Generator().manual_seed(0))
    assert m.edges.shape == (15, 2) and bool((m.edges[:, 1] - m.edges[:, 0] >= 3).all())
    assert len({tuple(e) for e in m.edges.tolist()}) == 15
    c = m.contact_map()
    assert c.sum() == 30 and torch.equal(c, c.T) and not c.diagonal().any()
    torch.testing.assert_close(m.J, m.J.permute(1, 0, 3, 2))
    off = ~c
    assert float(m.J[off].abs().max()) == 0.0
    e = m.edges[0]
    torch.testing.assert_close(m.J[e[0], e[1]].sum(0), torch.zeros(5), atol=1e-5, rtol=0)  # centred couplings


def test_colour_classes_have_no_edge_inside():
    m = random_potts(30, 3, 40, generator=torch.Generator().manual_seed(2))
    c = m.contact_map()
    classes = _colour_classes(c)
    assert sorted(torch.cat(classes).tolist()) == list(range(30))
    for cls in classes:
        assert not c[cls[:, None], cls[None, :]].any()


def test_sampler_is_reproducible_and_shaped():
    m = random_potts(10, 4, 8, generator=torch.Generator().manual_seed(0))
    a = gibbs_sample(m, 7, sweeps=3, generator=torch.Generator().manual_seed(5))
    b = gibbs_sample(m, 7, sweeps=3, generator=torch.Generator().manual_seed(5))
    assert a.shape == (7, 10) and a.dtype == torch.long and torch.equal(a, b)
    assert int(a.min()) >= 0 and int(a.max()) < 4


def test_bad_input():
    m = _tiny()
    with pytest.raises(ValueError, match="symmetric"):
        J = m.J.clone()
        J[0, 1, 0, 1] += 1.0
        PottsModel(m.h, J, m.edges)
    with pytest.raises(ValueError, match=r"\(L, L, q, q\)"):
        PottsModel(m.h, m.J[:3], m.edges)
    with pytest.raises(ValueError, match="i < j"):
        PottsModel(m.h, m.J, m.edges.flip(1))
    with pytest.raises(ValueError, match="at most"):
        random_potts(5, 2, 20, min_separation=2)
    with pytest.raises(ValueError, match="coupling"):
        random_potts(5, 2, 2, coupling=-1.0)
    with pytest.raises(TypeError, match="PottsModel"):
        gibbs_sample("model", 5)
    with pytest.raises(ValueError, match="positive"):
        gibbs_sample(m, 0)
    with pytest.raises(ValueError, match=r"letters in \[0, 3\)"):
        m.energy(torch.tensor([[0, 1, 2, 3]]))
    with pytest.raises(ValueError, match="length 4"):
        m.energy(torch.tensor([[0, 1, 2]]))


def test_edges_must_lie_inside_the_sequence():
    m = _tiny()
    with pytest.raises(ValueError, match=r"edge positions in \[0, 4\)"):
        PottsModel(m.h, m.J, torch.tensor([[0, 4]]))
