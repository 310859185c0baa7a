import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnbook.gpt import GPT, GPTConfig


def _model(num_kv_heads=None, seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=11, block_size=16, d_model=16, num_heads=4, num_layers=2,
                         num_kv_heads=num_kv_heads)).eval()


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


@pytest.mark.parametrize("num_kv_heads", [None, 2, 1])
def test_cached_logits_equal_uncached(num_kv_heads):
    model = _model(num_kv_heads)
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


def test_cached_generation_gives_the_same_tokens():
    model = _model()
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
