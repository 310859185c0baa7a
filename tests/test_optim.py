import pytest
import torch
from torch import nn

from attnbook.gpt import GPT, GPTConfig
from attnbook.optim import Muon, muon_param_groups, orthogonalize
from attnbook.training import train


@pytest.mark.parametrize("shape", [(48, 48), (64, 24), (24, 64)])
def test_orthogonalize_keeps_the_singular_vectors_and_flattens_the_singular_values(shape):
    torch.manual_seed(0)
    # an ill-conditioned matrix: singular values from 1e-3 to 10
    u, _ = torch.linalg.qr(torch.randn(shape[0], shape[0]))
    v, _ = torch.linalg.qr(torch.randn(shape[1], shape[1]))
    k = min(shape)
    s = torch.logspace(-3, 1, k)
    g = u[:, :k] @ torch.diag(s) @ v[:, :k].T
    o = orthogonalize(g)
    assert o.shape == g.shape
    sv = torch.linalg.svdvals(o)
    assert sv[: k // 2].min() > 0.6 and sv.max() < 1.25  # the larger half: near 1, not 10 or 1e-3
    inner = u[:, :k].T @ o @ v[:, :k]  # diagonal if o has g's singular vectors
    off = inner - torch.diag(torch.diagonal(inner))
    assert off.norm() < 1e-3 * inner.norm()
    assert torch.diagonal(inner).min() > 0  # each direction kept with its sign
    assert torch.linalg.svdvals(g).max() / torch.linalg.svdvals(g)[k // 2] > 10  # g itself was far from it


def test_orthogonalize_rejects_bad_input():
    with pytest.raises(ValueError, match="2-D floating-point"):
        orthogonalize(torch.randn(4))
    with pytest.raises(ValueError, match="2-D floating-point"):
        orthogonalize(torch.ones(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="2-D floating-point"):
        orthogonalize([[1.0]])
    with pytest.raises(ValueError, match="positive int"):
        orthogonalize(torch.randn(3, 3), steps=0)


def test_muon_steps_by_the_orthogonalised_momentum():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(32, 16))
    before = w.detach().clone()
    w.grad = torch.randn(32, 16) @ torch.diag(torch.logspace(-1, 1, 16))  # very unequal directions
    opt = Muon([w], lr=0.1, momentum=0.9, nesterov=False)
    opt.step()
    update = (before - w.detach()) / (0.1 * (32 / 16) ** 0.5)  # the scaling for a tall matrix
    # first step, no Nesterov: momentum = (1 - beta) g, orthogonalised: scale-free
    assert torch.allclose(update, orthogonalize(w.grad), atol=1e-5)
    sv = torch.linalg.svdvals(update)
    assert sv.min() > 0.6 and sv.max() < 1.25
    assert torch.linalg.svdvals(w.grad).max() / torch.linalg.svdvals(w.grad).min() > 20


def test_muon_rejects_bad_input():
    w = nn.Parameter(torch.randn(4, 4))
    with pytest.raises(ValueError, match="lr"):
        Muon([w], lr=0.0)
    with pytest.raises(ValueError, match="momentum"):
        Muon([w], momentum=1.0)
    with pytest.raises(TypeError, match="weight_decay"):
        Muon([w], weight_decay="0.1")
    with pytest.raises(ValueError, match="ns_steps"):
        Muon([w], ns_steps=0)
    with pytest.raises(ValueError, match="2-D weight matrices"):
        Muon([nn.Parameter(torch.zeros(4))])


def test_muon_param_groups_keep_embeddings_read_out_and_norms_for_adam():
    for tie in (False, True):
        model = GPT(GPTConfig(20, 8, d_model=16, num_heads=2, num_layers=2, tie_weights=tie))
        hidden, rest = muon_param_groups(model)
        ids = {id(p) for p in hidden}
        assert len(hidden) == 2 * 6  # per block: w_q, w_k, w_v, w_o, up, down
        assert all(p.dim() == 2 for p in hidden)
        assert id(model.head.weight) not in ids and id(model.token_embedding.weight) not in ids
        assert len(hidden) + len(rest) == len(list(model.parameters()))
    with pytest.raises(ValueError, match="at least two nn.Linear"):
        muon_param_groups(nn.Sequential(nn.Linear(3, 3)))
    with pytest.raises(TypeError, match="nn.Module"):
        muon_param_groups("model")


def _tiny_problem(optimizer, steps=150, **kwargs):
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 4))
    model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 4))
    x = torch.randn(256, 8)
    with torch.no_grad():
        y = teacher(x)

    def loss_fn(m, batch):
        return nn.functional.mse_loss(m(batch[0]), batch[1])
    start = loss_fn(model, (x, y)).item()
    history = train(model, iter([(x, y)] * steps), steps=steps, loss_fn=loss_fn, optimizer=optimizer,
                    progress=False, **kwargs)
    return start, history


def test_train_with_muon_fits_a_tiny_problem_and_moves_only_the_hidden_matrices_by_muon():
    start, history = _tiny_problem("muon", lr=3e-3, muon_lr=0.02)
    assert history.loss[-1] < 0.1 * start
    assert len(history.lr) == 150


def test_train_refuses_a_bad_muon_lr():
    with pytest.raises(ValueError, match="muon_lr"):
        _tiny_problem("muon", muon_lr=0.0)
    with pytest.raises(ValueError, match="optimizer"):
        _tiny_problem("sgd")
