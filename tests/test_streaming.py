import math

import pytest
import torch

from attnbook.gpt import GPT, GPTConfig
from attnbook.stability import diverged, max_attention_logit
from attnbook.streaming import (attention_maps, recompute_nll, roll_cache, sink_share, streaming_nll,
                                without_positions)


def _gpt(**options):
    torch.manual_seed(0)
    return GPT(GPTConfig(25, 16, d_model=32, num_heads=4, num_layers=2, **options)).eval()


def _full_nll(model, ids):
    with torch.no_grad():
        logits = model(ids)
    return torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")


def test_rolling_cache_equals_full_attention_inside_the_window():
    model = _gpt()
    ids = torch.randint(0, 25, (3, 12), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(streaming_nll(model, ids, window=8, sinks=2), _full_nll(model, ids),
                               atol=1e-5, rtol=1e-5)


def test_recompute_equals_full_attention_when_the_text_fits_and_slides_after():
    model = _gpt()
    ids = torch.randint(0, 25, (2, 30), generator=torch.Generator().manual_seed(1))
    nll = recompute_nll(model, ids, context=10, chunk=7)
    assert nll.shape == (2, 29)
    torch.testing.assert_close(nll[:, :9], _full_nll(model, ids[:, :10]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(nll[:, 20], _full_nll(model, ids[:, 11:22])[:, -1], atol=1e-5, rtol=1e-5)


def test_roll_cache_keeps_sinks_and_the_last_window():
    k = torch.arange(10.0).view(1, 1, 10, 1)
    (rk, rv), = roll_cache([(k, k + 100)], window=3, sinks=2)
    assert rk.flatten().tolist() == [0, 1, 7, 8, 9] and rv.flatten().tolist() == [100, 101, 107, 108, 109]
    (same, _), = roll_cache([(k, k)], window=8, sinks=2)
    assert same is k
    shared = (k, k)
    rolled = roll_cache([shared, shared], window=2)
    assert rolled[0] is rolled[1]
    with pytest.raises(ValueError, match="sinks"):
        roll_cache([(k, k)], window=2, sinks=-1)
    with pytest.raises(TypeError, match="pair"):
        roll_cache([k], window=2)


def test_streaming_without_sinks_differs_and_window_checks():
    model = _gpt()
    ids = torch.randint(0, 25, (1, 30), generator=torch.Generator().manual_seed(2))
    a, b = streaming_nll(model, ids, window=6, sinks=0), streaming_nll(model, ids, window=4, sinks=2)
    assert a.shape == b.shape == (1, 29)
    torch.testing.assert_close(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 8:], b[:, 8:])
    with pytest.raises(ValueError, match="block_size"):
        streaming_nll(model, ids, window=16)
    with pytest.raises(ValueError, match="longer than the cache"):
        streaming_nll(model, ids[:, :8], window=7)
    with pytest.raises(TypeError, match="GPT"):
        streaming_nll(torch.nn.Linear(2, 2), ids, window=4)


def test_attention_maps_and_sink_share():
    model = _gpt(attention="fused")
    ids = torch.randint(0, 25, (2, 12))
    maps = attention_maps(model, ids)
    assert len(maps) == 2 and maps[0].shape == (2, 4, 12, 12)
    torch.testing.assert_close(maps[1].sum(-1), torch.ones(2, 4, 12))
    assert torch.equal(model(ids), model(ids))  # the hooks are gone
    share = sink_share(maps, skip=0)
    assert share.shape == (2, 4)
    torch.testing.assert_close(share, torch.stack([m[..., 0].mean(dim=(0, 2)) for m in maps]))
    uniform = [torch.ones(1, 1, 4, 4).tril() / torch.arange(1, 5.0).view(1, 1, 4, 1)]
    assert sink_share(uniform, skip=0).item() == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
    with pytest.raises(ValueError, match="skip"):
        sink_share(maps, skip=12)


def test_without_positions_zeroes_and_freezes():
    model = without_positions(_gpt())
    assert model.position_embedding.weight.abs().sum() == 0 and not model.position_embedding.weight.requires_grad


def test_max_attention_logit_grows_with_the_weights_and_qk_norm_bounds_it():
    ids = torch.randint(0, 25, (2, 10))
    plain, normed = _gpt(), _gpt(qk_norm=True)
    small = max_attention_logit(plain, ids)
    for model in (plain, normed):
        with torch.no_grad():
            for block in model.blocks:
                block.self_attention.w_q.weight.mul_(30)
                block.self_attention.w_k.weight.mul_(30)
    assert max_attention_logit(plain, ids) > 100 * small
    assert max_attention_logit(normed, ids) <= math.sqrt(8) + 1e-4
    assert diverged(float("nan"), limit=3.0) and diverged(3.5, limit=3.0) and not diverged(2.0, limit=3.0)
    with pytest.raises(TypeError, match="GPT"):
        max_attention_logit(torch.nn.Linear(2, 2), ids)
