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

# --- chapter 12: RoPE scaling and ALiBi ---

from attnbook.positional import (RopeScaling, alibi_bias, alibi_slopes, rope_frequencies, rotary_cos_sin,  # noqa: E402
                                 rotate_pairs)


@pytest.mark.parametrize("kind", ["none", "pi", "ntk", "yarn"])
def test_every_scaling_at_factor_one_is_plain_rope(kind):
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    scaling = RopeScaling(kind, 1.0, original_length=8)
    torch.testing.assert_close(apply_rotary(x, scaling=scaling), apply_rotary(x))


def test_position_interpolation_maps_position_s_p_to_p():
    x = torch.randn(1, 4, 8, dtype=torch.float64)
    stretched = apply_rotary(x, torch.tensor([0, 4, 8, 12]), scaling=RopeScaling("pi", 4.0))
    torch.testing.assert_close(stretched, apply_rotary(x, torch.tensor([0, 1, 2, 3])))


def test_ntk_keeps_the_fastest_pair_and_slows_the_slowest_by_the_factor():
    plain, ntk = rope_frequencies(16), rope_frequencies(16, scaling=RopeScaling("ntk", 8.0))
    assert math.isclose(float(ntk[0]), float(plain[0]), rel_tol=1e-6)
    assert math.isclose(float(plain[-1] / ntk[-1]), 8.0, rel_tol=1e-4)
    assert bool((ntk <= plain + 1e-12).all())


def test_yarn_keeps_fast_pairs_interpolates_slow_ones_and_sharpens():
    d, L, s = 64, 64, 4.0
    plain = rope_frequencies(d)
    yarn = rope_frequencies(d, scaling=RopeScaling("yarn", s, original_length=L))
    turns = L * plain / (2 * math.pi)
    torch.testing.assert_close(yarn[turns > 32], plain[turns > 32])  # more than beta_fast turns: kept
    torch.testing.assert_close(yarn[turns < 1], plain[turns < 1] / s)  # fewer than beta_slow: interpolated
    middle = (turns > 1) & (turns < 32)
    assert bool(((yarn[middle] < plain[middle]) & (yarn[middle] > plain[middle] / s)).all())
    cos, sin = rotary_cos_sin(torch.arange(3), d, scaling=RopeScaling("yarn", s, original_length=L))
    torch.testing.assert_close(cos[0], torch.full((d // 2,), 0.1 * math.log(s) + 1))  # the attention factor
    assert RopeScaling("pi", s).attention_factor == 1.0


@settings(max_examples=25, deadline=None)
@given(m=st.integers(0, 300), n=st.integers(0, 300), shift=st.integers(0, 300), seed=st.integers(0, 1000),
       kind=st.sampled_from(["pi", "ntk", "yarn"]), factor=st.floats(1.0, 16.0))
def test_scaled_rope_still_depends_only_on_the_offset(m, n, shift, seed, kind, factor):
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(1, 8, generator=g, dtype=torch.float64), torch.randn(1, 8, generator=g, dtype=torch.float64)
    scaling = RopeScaling(kind, factor, original_length=32)

    def score(pm, pn):
        return float((apply_rotary(q, torch.tensor([pm]), scaling=scaling)
                      * apply_rotary(k, torch.tensor([pn]), scaling=scaling)).sum())
    assert math.isclose(score(m, n), score(m + shift, n + shift), rel_tol=1e-8, abs_tol=1e-8)


def test_rotate_pairs_is_apply_rotary():
    x = torch.randn(2, 3, 5, 8)
    cos, sin = rotary_cos_sin(torch.arange(5), 8)
    torch.testing.assert_close(rotate_pairs(x, cos, sin), apply_rotary(x))
    with pytest.raises(ValueError, match=r"cos of shape \(5, 4\), got \(4, 4\)"):
        rotate_pairs(x, cos[:4], sin)


def test_alibi_slopes_follow_the_paper():
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -k for k in range(1, 9)]))
    torch.testing.assert_close(alibi_slopes(4), torch.tensor([2.0 ** -2, 2.0 ** -4, 2.0 ** -6, 2.0 ** -8]))
    six = alibi_slopes(6)  # 4 of the 4-head slopes, then every other slope of 8 heads
    torch.testing.assert_close(six, torch.tensor([2.0 ** -2, 2.0 ** -4, 2.0 ** -6, 2.0 ** -8, 2.0 ** -1, 2.0 ** -3]))


def test_alibi_bias_is_minus_slope_times_distance_and_shift_invariant():
    bias = alibi_bias(4, 5)
    slopes = alibi_slopes(4)
    assert bias.shape == (4, 5, 5)
    assert float(bias[1, 4, 1]) == pytest.approx(-3 * float(slopes[1]))
    assert bool((bias.diagonal(dim1=1, dim2=2) == 0).all())
    cached = alibi_bias(4, 2, 7)  # two queries at positions 5 and 6 after 5 cached keys
    torch.testing.assert_close(cached, alibi_bias(4, 7)[:, 5:])
    # the same offset gives the same bias wherever it is
    torch.testing.assert_close(bias[:, 3, 1], bias[:, 4, 2])


def test_scaling_and_alibi_bad_inputs():
    with pytest.raises(ValueError, match="RoPE scaling kind to be one of"):
        RopeScaling("linear", 2.0)
    with pytest.raises(ValueError, match="factor >= 1"):
        RopeScaling("pi", 0.5)
    with pytest.raises(ValueError, match="original_length"):
        RopeScaling("yarn", 2.0)
    with pytest.raises(ValueError, match="beta_slow < beta_fast"):
        RopeScaling("yarn", 2.0, original_length=8, beta_fast=1.0, beta_slow=2.0)
    with pytest.raises(TypeError, match="RopeScaling or None"):
        rope_frequencies(8, scaling="pi")
    with pytest.raises(ValueError, match="num_keys >= num_queries"):
        alibi_bias(4, 5, 3)
    with pytest.raises(ValueError, match="num_heads"):
        alibi_slopes(0)
