"""Tests for attnbook.ssm: the chunked scan equals its step-by-step recurrence, shapes, causality, errors."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnbook.ssm import (MambaBlock, MambaConfig, MambaLM, MambaLMConfig, discretize, selective_scan,
                          selective_scan_reference)


def _inputs(Bt=2, L=11, D=3, N=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(Bt, L, D, generator=g)
    delta = 0.05 + torch.rand(Bt, L, D, generator=g)
    A = -(0.2 + 2 * torch.rand(D, N, generator=g))
    B, C = torch.randn(Bt, L, N, generator=g), torch.randn(Bt, L, N, generator=g)
    return x, delta, A, B, C, torch.randn(D, generator=g)


def test_reference_is_the_recurrence_written_out():
    x, delta, A, B, C, D = _inputs(Bt=1, L=3, D=1, N=1)
    a, b = torch.exp(delta[0, :, 0] * A[0, 0]), delta[0, :, 0] * B[0, :, 0] * x[0, :, 0]
    h1 = b[0]
    h2 = a[1] * h1 + b[1]
    h3 = a[2] * h2 + b[2]
    expected = torch.stack([h1 * C[0, 0, 0], h2 * C[0, 1, 0], h3 * C[0, 2, 0]]) + D[0] * x[0, :, 0]
    torch.testing.assert_close(selective_scan_reference(x, delta, A, B, C, D)[0, :, 0], expected)


@settings(max_examples=25, deadline=None)
@given(L=st.integers(1, 40), chunk=st.integers(1, 20), N=st.integers(1, 5), seed=st.integers(0, 1000),
       with_h0=st.booleans())
def test_chunked_scan_equals_step_by_step(L, chunk, N, seed, with_h0):
    x, delta, A, B, C, D = _inputs(L=L, N=N, seed=seed)
    h0 = torch.randn(2, 3, N) if with_h0 else None
    y_ref, h_ref = selective_scan_reference(x, delta, A, B, C, D, h0=h0, return_state=True)
    y, h = selective_scan(x, delta, A, B, C, D, h0=h0, chunk_size=chunk, return_state=True)
    assert y.shape == (2, L, 3) and h.shape == (2, 3, N)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(h, h_ref, atol=1e-5, rtol=1e-4)


def test_scan_gradients_match():
    x, delta, A, B, C, D = _inputs(L=20)
    grads = []
    for f in (selective_scan_reference, lambda *a: selective_scan(*a, chunk_size=8)):
        leaves = [t.clone().requires_grad_() for t in (x, delta, A, B, C, D)]
        f(*leaves).pow(2).sum().backward()
        grads.append([t.grad for t in leaves])
    for g_ref, g in zip(*grads):
        torch.testing.assert_close(g, g_ref, atol=1e-4, rtol=1e-4)


def test_discretize_shapes_and_values():
    delta, A, B = torch.rand(2, 5, 3), -torch.rand(3, 4), torch.randn(2, 5, 4)
    A_bar, B_bar = discretize(delta, A, B)
    assert A_bar.shape == B_bar.shape == (2, 5, 3, 4)
    torch.testing.assert_close(A_bar[1, 2, 0, 3], torch.exp(delta[1, 2, 0] * A[0, 3]))
    torch.testing.assert_close(B_bar[1, 2, 0, 3], delta[1, 2, 0] * B[1, 2, 3])
    assert bool((A_bar > 0).all() and (A_bar <= 1).all())  # negative A: the state decays


def test_block_chunked_reference_and_step_agree():
    torch.manual_seed(0)
    block = MambaBlock(d_model=16, d_state=4, d_conv=3, chunk_size=5)
    u = torch.randn(2, 13, 16)
    with torch.no_grad():
        out, delta = block(u, need_delta=True)
        out_ref = block(u, scan="reference")
        state, steps = None, []
        for t in range(13):
            o, state = block.step(u[:, t], state)
            steps.append(o)
    assert out.shape == (2, 13, 16) and delta.shape == (2, 13, 32) and bool((delta > 0).all())
    torch.testing.assert_close(out, out_ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out, torch.stack(steps, 1), atol=1e-5, rtol=1e-4)
    assert state[0].shape == (2, 32, 2) and state[1].shape == (2, 32, 4)  # fixed size, whatever the length


def test_block_is_causal():
    torch.manual_seed(0)
    block = MambaBlock(d_model=8, d_state=4)
    u = torch.randn(1, 20, 8)
    changed = u.clone()
    changed[:, 12:] = 5 * torch.randn(1, 8, 8)
    with torch.no_grad():
        a, b = block(u), block(changed)
    assert torch.equal(a[:, :12], b[:, :12])
    assert (a[:, 12:] - b[:, 12:]).abs().max() > 1e-3


def test_lm_shapes_any_length_and_backward():
    torch.manual_seed(0)
    model = MambaLM(MambaLMConfig(vocab_size=7, d_model=16, num_layers=2, d_state=4, chunk_size=4))
    for T in (1, 9, 50):
        ids = torch.randint(0, 7, (3, T))
        logits, deltas = model(ids, need_delta=True)
        assert logits.shape == (3, T, 7) and len(deltas) == 2 and deltas[0].shape == (3, T, 32)
    logits.sum().backward()
    assert model.blocks[0].mixer.A_log.grad is not None and model.blocks[1].mixer.dt_proj.bias.grad is not None


def test_initial_delta_is_in_the_configured_range():
    torch.manual_seed(0)
    block = MambaBlock(d_model=16, dt_min=0.01, dt_max=0.2)
    dt = torch.nn.functional.softplus(block.dt_proj.bias.detach())
    assert float(dt.min()) >= 0.01 - 1e-6 and float(dt.max()) <= 0.2 + 1e-6


def test_bad_inputs_raise_clear_errors():
    x, delta, A, B, C, D = _inputs()
    with pytest.raises(ValueError, match="expected delta of the shape of x"):
        selective_scan(x, delta[:, :-1], A, B, C)
    with pytest.raises(ValueError, match=r"expected A of shape \(3, N\)"):
        selective_scan(x, delta, A[:2], B, C)
    with pytest.raises(ValueError, match="expected C of shape"):
        selective_scan_reference(x, delta, A, B, C[..., :2])
    with pytest.raises(ValueError, match="expected D of shape"):
        selective_scan(x, delta, A, B, C, D[:2])
    with pytest.raises(TypeError, match="expected x to be a floating-point tensor"):
        selective_scan(x.long(), delta, A, B, C)
    with pytest.raises(ValueError, match="expected chunk_size to be positive"):
        selective_scan(x, delta, A, B, C, chunk_size=0)
    with pytest.raises(ValueError, match="expected h0 of shape"):
        selective_scan(x, delta, A, B, C, h0=torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match="expected dt_min <= dt_max"):
        MambaConfig(d_model=8, dt_min=0.5, dt_max=0.1)
    with pytest.raises(TypeError, match="expected d_state to be an int"):
        MambaConfig(d_model=8, d_state=2.0)
    block = MambaBlock(d_model=8)
    with pytest.raises(ValueError, match="expected u of width d_model=8"):
        block(torch.randn(1, 4, 6))
    with pytest.raises(ValueError, match="expected scan 'chunked' or 'reference'"):
        block(torch.randn(1, 4, 8), scan="fast")
    with pytest.raises(TypeError, match="expected a MambaLMConfig"):
        MambaLM(MambaConfig(d_model=8))
    with pytest.raises(ValueError, match=r"expected token ids in \[0, 5\)"):
        MambaLM(MambaLMConfig(vocab_size=5, d_model=8))(torch.tensor([[1, 5]]))


def test_mamba_lm_layers_are_the_one_block_with_the_mamba_mixer():
    from attnbook.layers import Block

    torch.manual_seed(0)
    model = MambaLM(MambaLMConfig(vocab_size=7, d_model=16, num_layers=2, d_state=4, chunk_size=4))
    assert all(type(b) is Block and isinstance(b.mixer, MambaBlock) and b.feed_forward is None
               for b in model.blocks)
    ids = torch.randint(0, 7, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        x, deltas = model.token_embedding(ids), []
        for b in model.blocks:  # the residual loop written out: x = x + Mamba(LN(x))
            out, delta = b.mixer(b.norm1(x), need_delta=True)
            x, deltas = x + out, deltas + [delta]
        expected = model.head(model.final_norm(x))
        logits, got_deltas = model(ids, need_delta=True)
    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(model(ids), expected)
    torch.testing.assert_close(model(ids, scan="reference"), expected, atol=1e-5, rtol=1e-5)
    assert len(got_deltas) == 2 and all(torch.equal(a, b) for a, b in zip(got_deltas, deltas))
    with pytest.raises(TypeError, match="need_delta to be a bool"):
        model(ids, need_delta=1)
    with pytest.raises(ValueError, match="expected scan 'chunked' or 'reference'"):
        model(ids, scan="fast")
