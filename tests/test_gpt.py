import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnbook.gpt import GPT, GPTConfig


def _model(num_kv_heads=None, seed=0, **kw):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=11, block_size=16, d_model=16, num_heads=4, num_layers=2,
                         num_kv_heads=num_kv_heads, **kw)).eval()


@settings(max_examples=25, deadline=None)
@given(T=st.integers(2, 16), cut=st.integers(1, 15), seed=st.integers(0, 1000))
def test_gpt_does_not_leak_the_future(T, cut, seed):
    cut = min(cut, T - 1)
    model = _model()
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 11, (2, T), generator=g)
    changed = ids.clone()
    changed[:, cut:] = torch.randint(0, 11, (2, T - cut), generator=g)
    with torch.no_grad():
        torch.testing.assert_close(model(ids)[:, :cut], model(changed)[:, :cut], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attention", ["scratch", "fused"])
@pytest.mark.parametrize("num_kv_heads", [None, 2, 1])
def test_cached_logits_equal_uncached(num_kv_heads, attention):
    model = _model(num_kv_heads, attention=attention)
    ids = torch.randint(0, 11, (3, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(ids)
        logits, past = model(ids[:, :4], use_cache=True)
        steps = [logits]
        for t in range(4, 10):
            logits, past = model(ids[:, t:t + 1], past=past, use_cache=True)
            steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    assert past[0][0].shape == (3, num_kv_heads or 4, 10, 4)


@pytest.mark.parametrize("attention", ["scratch", "fused"])
def test_cached_generation_gives_the_same_tokens(attention):
    model = _model(attention=attention)
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])
    greedy = [model.generate(prompt, 10, temperature=0, use_cache=c) for c in (True, False)]
    assert torch.equal(greedy[0], greedy[1])
    sampled = [model.generate(prompt, 10, temperature=1.0, use_cache=c, generator=torch.Generator().manual_seed(3))
               for c in (True, False)]
    assert torch.equal(sampled[0], sampled[1])
    assert sampled[0].shape == (2, 13) and torch.equal(sampled[0][:, :3], prompt)


def test_a_few_training_steps_lower_the_loss():
    model = _model().train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    data = torch.arange(16).remainder(11).repeat(8, 1)  # a repeating pattern
    losses = []
    for _ in range(40):
        loss = model.loss(data[:, :-1], data[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_bad_input_is_reported_clearly():
    with pytest.raises(ValueError, match="d_model divisible by num_heads"):
        GPTConfig(vocab_size=5, block_size=8, d_model=10, num_heads=4)
    with pytest.raises(ValueError, match="num_heads divisible by num_kv_heads"):
        GPTConfig(vocab_size=5, block_size=8, d_model=12, num_heads=4, num_kv_heads=3)
    with pytest.raises(TypeError, match="GPTConfig"):
        GPT({"vocab_size": 5})
    model = _model()
    with pytest.raises(ValueError, match="block_size=16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="block_size=16"):
        model.generate(torch.zeros(1, 10, dtype=torch.long), 7)
    with pytest.raises(ValueError, match=r"token ids in \[0, 11\)"):
        model(torch.full((1, 3), 11))
    with pytest.raises(TypeError, match="integer tensor"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="temperature"):
        model.generate(torch.zeros(1, 3, dtype=torch.long), 2, temperature=-1.0)
    ids = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match=r"targets of the same shape as ids \(2, 3\).*got \(2, 2\)"):
        model.loss(ids, ids[:, :2])
    with pytest.raises(TypeError, match="expected targets to be an integer tensor, got dtype torch.float32"):
        model.loss(ids, ids.float())
    with pytest.raises(ValueError, match=r"expected targets in \[0, 11\), got values from -1 to 12"):
        model.loss(ids, torch.tensor([[0, -1, 2], [0, 12, 0]]))
    _, past = model(ids, use_cache=True)
    with pytest.raises(ValueError, match=r"cache with one \(keys, values\) entry per block \(2\), got 1"):
        model(ids, past=past[:1])
    with pytest.raises(ValueError, match="each cache entry to be a \\(keys, values\\) pair"):
        model(ids, past=[torch.zeros(3), torch.zeros(3)])
    with pytest.raises(ValueError, match=r"past keys of shape .* got \(2, 4, 3, 2\)"):
        model(ids, past=[(k[..., :2], v[..., :2]) for k, v in past])
    with pytest.raises(ValueError, match="attention to be one of"):
        GPTConfig(vocab_size=5, block_size=8, attention="flash")
    with pytest.raises(TypeError, match="tie_weights to be a bool"):
        GPTConfig(vocab_size=5, block_size=8, tie_weights=1)


def test_scratch_and_fused_give_the_same_logits_and_gradients():
    ids = torch.randint(0, 11, (3, 12), generator=torch.Generator().manual_seed(0))
    grads = []
    for attention in ("scratch", "fused"):
        model = _model(num_kv_heads=2, attention=attention).train()
        loss = model.loss(ids[:, :-1], ids[:, 1:])
        loss.backward()
        grads.append([loss.detach()] + [p.grad for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_forward_needs_no_host_device_sync():
    """On the meta device every value read (int(t), .item(), bool(t)) raises: the forward never reads one."""
    for attention in ("scratch", "fused"):
        model = _model(attention=attention).to("meta")
        ids = torch.zeros(2, 8, dtype=torch.long, device="meta")
        loss = model.loss(ids, ids)
        assert loss.shape == () and loss.device.type == "meta"
        logits, past = model(ids, use_cache=True)
        logits, past = model(ids[:, :1], past=past, use_cache=True)
        assert logits.shape == (2, 1, 11) and past[0][0].shape == (2, 4, 9, 4)
    with pytest.raises(Exception):
        int(ids.sum())  # the check above is meaningful: reading a meta value fails


def test_tied_weights_share_one_matrix_and_defaults_keep_the_old_initialisation():
    tied = _model(tie_weights=True)
    assert tied.head.weight is tied.token_embedding.weight
    untied = _model()
    assert sum(p.numel() for p in tied.parameters()) == sum(p.numel() for p in untied.parameters()) - 11 * 16
    big = GPT(GPTConfig(vocab_size=100, block_size=64, d_model=64, num_heads=4, num_layers=2))
    for name, p in big.named_parameters():  # every Linear and Embedding from N(0, 0.02), biases zero
        if name.endswith("weight") and p.dim() == 2:
            assert abs(p.std().item() - 0.02) < 0.002, name
        elif "norm" not in name:
            assert p.abs().sum() == 0, name


@pytest.mark.parametrize("position", ["rope", "alibi"])
def test_positions_compose_with_windows_and_shared_kv(position):
    """Chapter 12's positions and chapter 11's window layers and cross-layer sharing in one model."""
    from attnbook.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    config = GPTConfig(vocab_size=11, block_size=16, d_model=16, num_heads=2, num_layers=4, position=position,
                       windows=(4, 4, None, None), kv_share=2)
    model = GPT(config).eval()
    ids = torch.randint(0, 11, (2, 12))
    with torch.no_grad():
        full = model(ids)
        logits, past = model(ids[:, :8], use_cache=True)
        steps = [logits]
        for t in range(8, 12):
            logits, past = model(ids[:, t:t + 1], past=past, use_cache=True)
            steps.append(logits)
        with_weights, weights = model(ids, need_weights=True)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(with_weights, full, atol=1e-5, rtol=1e-5)
    assert len(weights) == 4 and weights[0].shape == (2, 2, 12, 12)
    assert (weights[1][:, :, 11, :8] == 0).all()  # a window layer: the last query sees its last 4 keys only
    assert (weights[3][:, :, 11, :8] > 0).all()  # a global layer sees them all
