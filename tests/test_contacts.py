"""Tests for attnbook.contacts: APC, mutual information, attention contacts, factored attention (fast)."""

import math

import pytest
import torch

from attnbook.contacts import FactoredAttention, apc, mutual_information, symmetric_attention_contacts, \
    top_l_precision


def test_apc_on_a_matrix_worked_by_hand():
    F = torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, 3.0], [2.0, 3.0, 0.0]])
    # row means over j != i: 1.5, 2, 2.5; mean of all off-diagonal entries: 2
    expected = torch.tensor([[0.0, 1 - 1.5 * 2 / 2, 2 - 1.5 * 2.5 / 2],
                             [1 - 1.5 * 2 / 2, 0.0, 3 - 2 * 2.5 / 2],
                             [2 - 1.5 * 2.5 / 2, 3 - 2 * 2.5 / 2, 0.0]])
    torch.testing.assert_close(apc(F), expected)
    torch.testing.assert_close(apc(F + 10 * torch.eye(3)), expected)  # the diagonal is ignored


def test_apc_removes_a_per_position_effect_and_keeps_a_contact():
    g = torch.Generator().manual_seed(0)
    L = 12
    a = 1 + 3 * torch.rand(L, generator=g)
    F = a[:, None] * a[None, :]  # pairs of "busy" positions score high with everything
    F[2, 7] = F[7, 2] = F[2, 7] + 2.0  # one true contact
    F.fill_diagonal_(0)
    raw_best = divmod(int(torch.triu(F, 1).argmax()), L)
    fixed_best = divmod(int(torch.triu(apc(F), 1).argmax()), L)
    busiest = tuple(sorted(torch.topk(a, 2).indices.tolist()))
    assert raw_best == busiest and busiest != (2, 7)
    assert fixed_best == (2, 7)


def test_mutual_information_of_copies_and_independent_columns():
    q = 4
    n = torch.arange(16 * 25)
    x = torch.stack([n % q, n % q, (n // q) % q, (3 - n) % q], 1)  # col 1 = col 0; col 2 independent of col 0
    mi = mutual_information(x, q, pseudocount=0.0)
    torch.testing.assert_close(mi[0, 1], torch.tensor(math.log(q)))
    torch.testing.assert_close(mi[0, 3], torch.tensor(math.log(q)))  # a relabelled copy: same information
    torch.testing.assert_close(mi[0, 2], torch.tensor(0.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(mi, mi.T)
    assert float(mi.diagonal().abs().max()) == 0.0
    smoothed = mutual_information(x, q, pseudocount=1.0)
    assert 0 < smoothed[0, 1] < mi[0, 1]  # pseudocounts pull towards independence


def test_top_l_precision_counts_the_best_pairs():
    L = 6
    scores = torch.zeros(L, L)
    contacts = torch.zeros(L, L, dtype=torch.bool)
    for (i, j), s in {(0, 5): 5.0, (1, 4): 4.0, (0, 1): 3.0, (2, 5): 2.0}.items():
        scores[i, j] = scores[j, i] = s
    contacts[0, 5] = contacts[5, 0] = contacts[2, 5] = contacts[5, 2] = True
    assert top_l_precision(scores, contacts, top=2) == 0.5  # (0, 5) right, (1, 4) wrong
    assert top_l_precision(scores, contacts, top=4) == 0.5
    assert top_l_precision(scores, contacts, min_separation=2, top=3) == pytest.approx(2 / 3)  # (0, 1) is not one


def test_symmetric_attention_contacts():
    g = torch.Generator().manual_seed(0)
    w = torch.softmax(torch.randn(5, 3, 8, 8, generator=g), -1)
    s = symmetric_attention_contacts(w)
    a = w.mean((0, 1))
    torch.testing.assert_close(s, apc(a + a.T))
    torch.testing.assert_close(s, s.T)


def test_factored_attention_shapes_and_no_self_information():
    torch.manual_seed(0)
    model = FactoredAttention(7, 5, num_heads=3, d_k=4)
    x = torch.randint(0, 5, (4, 7))
    logits = model(x)
    assert logits.shape == (4, 7, 5)
    w = model.weights()
    assert w.shape == (3, 7, 7)
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 7))
    assert float(w.detach().diagonal(dim1=1, dim2=2).abs().max()) == 0.0
    changed = x.clone()
    changed[:, 3] = (changed[:, 3] + 1) % 5
    with torch.no_grad():
        after = model(changed)
    torch.testing.assert_close(after[:, 3], logits[:, 3].detach())  # position 3 never sees its own letter
    assert not torch.allclose(after, logits.detach())  # but the others do
    # the logits are field + sum_h sum_j A_ij W^h[x_j]
    one_hot = torch.nn.functional.one_hot(x, 5).float()
    by_hand = model.field + torch.einsum("hij,bjc,hca->bia", w, one_hot, model.values)
    torch.testing.assert_close(logits, by_hand)


def test_bad_input():
    with pytest.raises(ValueError, match="square"):
        apc(torch.zeros(3, 4))
    with pytest.raises(TypeError, match="floating"):
        apc(torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"letters in \[0, 3\)"):
        mutual_information(torch.tensor([[0, 3]]), 3)
    with pytest.raises(TypeError, match="bool"):
        top_l_precision(torch.zeros(4, 4), torch.zeros(4, 4))
    with pytest.raises(ValueError, match="candidate"):
        top_l_precision(torch.zeros(4, 4), torch.zeros(4, 4, dtype=torch.bool), top=7)
    with pytest.raises(ValueError, match=r"\(\.\.\., L, L\)"):
        symmetric_attention_contacts(torch.zeros(2, 3, 4))
    model = FactoredAttention(6, 4)
    with pytest.raises(ValueError, match="length 6"):
        model(torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(TypeError, match="int"):
        FactoredAttention(6, 4.0)
