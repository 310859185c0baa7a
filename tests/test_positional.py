import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnbook.positional import (LearnedPositionalEmbedding, SinusoidalPositionalEncoding, apply_rotary,
                                 rotary_angles, sinusoidal_encoding)


def test_sinusoidal_matches_the_formula():
    pe = sinusoidal_encoding(6, 4)
    for p in range(6):
        for i in range(2):
            angle = p / 10000 ** (2 * i / 4)
            assert math.isclose(float(pe[p, 2 * i]), math.sin(angle), abs_tol=1e-6)
            assert math.isclose(float(pe[p, 2 * i + 1]), math.cos(angle), abs_tol=1e-6)


def test_encoding_modules_add_to_the_input():
    x = torch.zeros(2, 5, 8)
    torch.testing.assert_close(SinusoidalPositionalEncoding(10, 8)(x), sinusoidal_encoding(5, 8).expand(2, 5, 8))
    learned = LearnedPositionalEmbedding(10, 8)
    torch.testing.assert_close(learned(x), learned.embedding[:5].expand(2, 5, 8))
    assert learned.embedding.requires_grad
    assert not list(SinusoidalPositionalEncoding(10, 8).parameters())


@settings(max_examples=40, deadline=None)
@given(m=st.integers(0, 200), n=st.integers(0, 200), shift=st.integers(-50, 300), seed=st.integers(0, 10_000),
       half=st.integers(1, 16))
def test_rope_score_depends_only_on_the_offset(m, n, shift, seed, half):
    g = torch.Generator().manual_seed(seed)
    d = 2 * half
    q, k = torch.randn(1, d, generator=g, dtype=torch.float64), torch.randn(1, d, generator=g, dtype=torch.float64)
    def score(pm, pn):
        rq = apply_rotary(q, torch.tensor([pm]))
        rk = apply_rotary(k, torch.tensor([pn]))
        return float((rq * rk).sum())
    assert math.isclose(score(m, n), score(m + shift, n + shift), rel_tol=1e-9, abs_tol=1e-9)


def test_rope_is_a_rotation():
    x = torch.randn(3, 7, 16)
    r = apply_rotary(x)
    torch.testing.assert_close(r.norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(r[:, 0], x[:, 0])  # position 0: angle 0
    # one pair by hand: (1, 0) at position 2 with frequency 1 becomes (cos 2, sin 2)
    e = torch.zeros(3, 2)
    e[:, 0] = 1
    torch.testing.assert_close(apply_rotary(e)[2], torch.tensor([math.cos(2), math.sin(2)]))
    assert rotary_angles(torch.arange(3), 4).shape == (3, 2)


def test_bad_inputs():
    with pytest.raises(ValueError, match="even d_model for sinusoidal encodings.*got 7"):
        sinusoidal_encoding(4, 7)
    with pytest.raises(ValueError, match="even d_model for sinusoidal encodings.*got 5"):
        SinusoidalPositionalEncoding(4, 5)
    with pytest.raises(ValueError, match="even width d for rotary embeddings.*got 3"):
        apply_rotary(torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"positions of shape \(4,\), got \(3,\)"):
        apply_rotary(torch.randn(4, 6), torch.arange(3))
    with pytest.raises(ValueError, match="at most max_len=4 positions, got 6"):
        LearnedPositionalEmbedding(4, 8)(torch.randn(1, 6, 8))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., T, 8\), got \(1, 3, 6\)"):
        SinusoidalPositionalEncoding(4, 8)(torch.randn(1, 3, 6))
    with pytest.raises(TypeError, match="floating-point tensor"):
        apply_rotary(torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="base greater than 1"):
        sinusoidal_encoding(4, 8, base=1)


def test_added_positions_break_permutation_equivariance():
    # chapter 4: without positions self-attention only permutes its output; with them it does not
    from attnbook.attention import SelfAttention

    torch.manual_seed(1)
    layer = SelfAttention(16)
    x, perm = torch.randn(1, 7, 16), torch.tensor([2, 6, 1, 3, 0, 5, 4])
    pe = sinusoidal_encoding(7, 16)
    with torch.no_grad():
        plain = (layer(x[:, perm]) - layer(x)[:, perm]).abs().max().item()
        with_positions = (layer(x[:, perm] + pe) - layer(x + pe)[:, perm]).abs().max().item()
    assert plain < 1e-5
    assert with_positions > 1e-2
