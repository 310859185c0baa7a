import math

import pytest
import torch

from attnbook.evaluation import attention_maps, exact_match_by_length, predict
from attnbook.rnn import Seq2Seq, Seq2SeqConfig
from attnbook.training import History, cycle, seq2seq_loss, set_seed, train


def run(task, seed, steps=60):
    set_seed(seed)
    model = Seq2Seq(Seq2SeqConfig(len(task.src_vocab), len(task.tgt_vocab), embed_dim=8, hidden_dim=16,
                                  attention_dim=16))
    hist = train(model, cycle(lambda e: task.batches("train", 32, seed=e)), steps=steps, loss_fn=seq2seq_loss,
                 lr=1e-2, seed=seed, log_every=5, progress=False)
    return model, hist


def test_training_lowers_the_loss(small_task):
    _, hist = run(small_task, 0)
    assert isinstance(hist, History) and hist.steps_done == 60
    assert hist.step[-1] == 60 and len(hist.loss) == 12
    assert hist.loss[-1] < 0.8 * hist.loss[0]
    assert hist.seconds > 0 and hist.steps_per_second > 0


def test_training_is_deterministic_from_the_seed(small_task):
    _, a = run(small_task, 1, steps=10)
    _, b = run(small_task, 1, steps=10)
    _, c = run(small_task, 2, steps=10)
    assert a.loss == b.loss
    assert a.loss != c.loss


def test_eval_hook_and_progress_bar(small_task, capsys):
    set_seed(0)
    model = Seq2Seq(Seq2SeqConfig(len(small_task.src_vocab), len(small_task.tgt_vocab), embed_dim=8,
                                  hidden_dim=8, attention_dim=8))
    calls = []
    hist = train(model, cycle(lambda e: small_task.batches("train", 16, seed=e)), steps=6,
                 loss_fn=seq2seq_loss, eval_every=3, eval_fn=lambda m: calls.append(m.training) or 0.5)
    assert hist.eval_step == [3, 6] and hist.eval_metric == [0.5, 0.5]
    assert calls == [False, False] and not model.training


def test_exact_match_table(small_task):
    model, _ = run(small_task, 0, steps=5)
    table = exact_match_by_length(model, small_task, "valid")
    assert list(table.columns) == ["digits", "n", "exact_match"]
    assert table.digits.tolist() == list(range(1, 7))
    assert table.n.sum() == len(small_task.valid)
    assert ((table.exact_match >= 0) & (table.exact_match <= 1)).all()
    answers = predict(model, small_task, small_task.valid[:10])
    assert len(answers) == 10 and all(a == "" or a.isdigit() for a in answers)
    by_lang = exact_match_by_length(model, small_task, "valid", by_language=True)
    assert set(by_lang.language) == {"en", "de", "fr"}


def test_bad_arguments(small_task):
    model, _ = run(small_task, 0, steps=1)
    batches = cycle(lambda e: small_task.batches("train", 8, seed=e))
    with pytest.raises(ValueError, match="steps to be positive"):
        train(model, batches, steps=0, loss_fn=seq2seq_loss)
    with pytest.raises(ValueError, match="positive learning rate"):
        train(model, batches, steps=1, loss_fn=seq2seq_loss, lr=-1)
    with pytest.raises(ValueError, match="no eval_fn"):
        train(model, batches, steps=1, loss_fn=seq2seq_loss, eval_every=1)
    with pytest.raises(ValueError, match="ran out after 1 of 3"):
        train(model, list(small_task.batches("train", 8))[:1], steps=3, loss_fn=seq2seq_loss, progress=False)
    with pytest.raises(TypeError, match="nn.Module"):
        train("model", batches, steps=1, loss_fn=seq2seq_loss)
    with pytest.raises(TypeError, match="int seed"):
        set_seed("0")
    with pytest.raises(TypeError, match="Seq2Seq model"):
        predict(torch.nn.Linear(2, 2), small_task, small_task.valid)


def test_attention_maps_are_trimmed_and_labelled(small_task):
    model, _ = run(small_task, 0, steps=5)
    examples = small_task.test[:3]
    maps = attention_maps(model, small_task, examples)
    assert len(maps) == 3
    for m, ex in zip(maps, examples):
        assert m["weights"].shape == (len(m["outputs"]), len(ex.source) + 1)
        assert m["sources"][:-1] == list(ex.source) and m["outputs"][-1] == "<eos>"
        assert abs(m["weights"].sum(-1) - 1).max() < 1e-5
    bottleneck = Seq2Seq(Seq2SeqConfig(len(small_task.src_vocab), len(small_task.tgt_vocab), attention="none"))
    with pytest.raises(TypeError, match="with attention"):
        attention_maps(bottleneck, small_task, examples)


def test_evaluation_works_for_any_model_with_greedy_decode(small_task):
    from attnbook.transformer import EncoderDecoderTransformer, TransformerConfig

    set_seed(0)
    model = EncoderDecoderTransformer(TransformerConfig(len(small_task.src_vocab), len(small_task.tgt_vocab),
                                                        d_model=16, num_heads=2, num_encoder_layers=1,
                                                        num_decoder_layers=1, d_ff=32))
    table = exact_match_by_length(model, small_task, "valid")
    assert table.n.sum() == len(small_task.valid)
    assert len(predict(model, small_task, small_task.valid[:3])) == 3


# ---- the loop's options, on a tiny regression problem ------------------------------------------

def _regression(seed=0, n=64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return x, x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1


def _batches(seed=0):
    g = torch.Generator().manual_seed(seed)
    while True:
        x = torch.randn(16, 3, generator=g)
        yield x, x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1


def _mse(model, batch):
    x, y = batch
    return torch.nn.functional.mse_loss(model(x).squeeze(-1), y)


def _linear(seed=0):
    set_seed(seed)
    return torch.nn.Linear(3, 1)


def _train(**kwargs):
    kwargs = {"steps": 20, "loss_fn": _mse, "progress": False, **kwargs}
    model = kwargs.pop("model", None) or _linear()
    return model, train(model, kwargs.pop("batches", None) or _batches(), **kwargs)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"log_every": 0}, ValueError, "log_every to be positive"),
    ({"log_every": True}, TypeError, "log_every to be an int"),
    ({"lr": True}, TypeError, "learning rate"),
    ({"lr": float("nan")}, ValueError, "positive learning rate"),
    ({"lr": "1e-3"}, TypeError, "learning rate"),
    ({"steps": 0}, ValueError, "steps to be positive"),
    ({"steps": -3}, ValueError, "steps to be positive"),
    ({"steps": 2.5}, TypeError, "steps to be an int"),
    ({"schedule": "cosin"}, ValueError, "schedule to be one of constant, cosine, linear, one_cycle"),
    ({"optimizer": "sgd"}, ValueError, "optimizer to be one of adam, adamw"),
    ({"warmup": 21}, ValueError, r"warmup to be an int in \[0, steps=20\], got 21"),
    ({"warmup": -1}, ValueError, "warmup"),
    ({"warmup": 5, "schedule": "one_cycle"}, ValueError, "warmup=0 with the one_cycle"),
    ({"pct_start": 0.0, "schedule": "one_cycle"}, ValueError, "pct_start in"),
    ({"min_lr_ratio": 1.5}, ValueError, r"min_lr_ratio in \[0.0, 1.0\]"),
    ({"loss_fn": "mse"}, TypeError, "loss_fn to be callable"),
    ({"batches": 3}, TypeError, "batches to be an iterable"),
    ({"clip": 0}, ValueError, "clip"),
    ({"clip": True}, TypeError, "clip"),
    ({"weight_decay": -0.1}, ValueError, "weight_decay in"),
    ({"eval_every": -1}, ValueError, "eval_every to be an int >= 0"),
    ({"eval_fn": lambda m: 0.0}, ValueError, "eval_every is 0"),
    ({"eval_every": 2, "eval_fn": {"acc": 3}}, TypeError, "mapping of str -> callable"),
    ({"eval_every": 2, "eval_fn": {}}, ValueError, "non-empty mapping"),
    ({"progress": "yes"}, TypeError, "progress to be a bool"),
    ({"seed": 1.0}, TypeError, "int seed"),
])
def test_bad_input_is_reported_clearly(kwargs, error, message):
    with pytest.raises(error, match=message):
        _train(**kwargs)


def test_a_loss_that_is_not_a_scalar_and_a_model_without_parameters():
    with pytest.raises(ValueError, match=r"scalar tensor, got shape \(16,\)"):
        _train(loss_fn=lambda m, b: (m(b[0]).squeeze(-1) - b[1]) ** 2)
    with pytest.raises(ValueError, match="scalar tensor, got float"):
        _train(loss_fn=lambda m, b: 1.0)
    with pytest.raises(ValueError, match="trainable parameters"):
        _train(model=torch.nn.ReLU())


def test_the_loss_is_read_from_the_device_once_per_log_window(monkeypatch):
    """No sync per step: the loop itself reads tensors only at its log points."""
    import inspect

    import attnbook.training as training

    reads = []

    def counting(name):
        original = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            if inspect.currentframe().f_back.f_code.co_filename == training.__file__:
                reads.append(name)
            return original(self, *args, **kwargs)
        return read

    for name in ("item", "tolist", "__float__", "__int__", "__bool__", "__index__", "numpy", "cpu"):
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    _, hist = _train(steps=23, log_every=5)
    assert reads == ["tolist"] * 5  # steps 5, 10, 15, 20 and the last one, 23
    assert hist.step == [5, 10, 15, 20, 23] and len(hist.loss) == 5 and len(hist.step_loss) == 23
    assert hist.loss[-1] == pytest.approx(sum(hist.step_loss[20:]) / 3)
    assert hist.last_loss == hist.step_loss[-1]


def _lrs(**kwargs):
    return _train(lr=0.1, **kwargs)[1].lr


def test_constant_and_warm_up_shapes():
    assert _lrs(schedule="constant") == [0.1] * 20
    lrs = _lrs(schedule="constant", warmup=4)
    assert lrs[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1]) and lrs[4:] == [0.1] * 16


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_decaying_schedules_go_from_the_peak_to_the_floor(schedule):
    lrs = _lrs(schedule=schedule, warmup=5, steps=105, min_lr_ratio=0.2)
    assert lrs[0] == pytest.approx(0.02) and lrs[4] == pytest.approx(0.1)  # warm-up ends at the peak
    assert max(lrs) == pytest.approx(0.1) and lrs.index(max(lrs)) == 4
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))  # then only down
    assert lrs[-1] == pytest.approx(0.02, abs=1e-3)  # to min_lr_ratio of the peak (a step short)
    middle = lrs[5 + 50]  # half way through the decay: cosine and line agree there
    assert middle == pytest.approx(0.02 + 0.08 * 0.5)
    quarter = lrs[5 + 25]
    expected = 0.5 * (1 + math.cos(math.pi / 4)) if schedule == "cosine" else 0.75
    assert quarter == pytest.approx(0.02 + 0.08 * expected)


def test_the_default_schedule_is_the_books_cosine_to_a_tenth():
    lrs = _lrs(steps=100)
    assert lrs[0] == pytest.approx(0.1) and lrs[-1] == pytest.approx(0.01, abs=1e-4)


def test_one_cycle_rises_to_the_peak_then_falls_far_below_the_start():
    lrs = _lrs(schedule="one_cycle", steps=100, pct_start=0.25)
    assert lrs[0] == pytest.approx(0.1 / 25)  # PyTorch's div_factor
    assert max(lrs) == pytest.approx(0.1) and 20 <= lrs.index(max(lrs)) <= 25
    assert lrs[-1] == pytest.approx(0.1 / 25 / 1e4, rel=1e-3)  # final_div_factor


def test_make_scheduler_rejects_bad_input():
    from attnbook.training import make_scheduler

    opt = torch.optim.Adam(torch.nn.Linear(2, 2).parameters(), lr=1.0)
    with pytest.raises(ValueError, match="schedule to be one of"):
        make_scheduler(opt, "step", 10)
    with pytest.raises(ValueError, match="steps to be positive"):
        make_scheduler(opt, "cosine", 0)


def test_clip_limits_the_gradient_norm_the_optimizer_sees(monkeypatch):
    seen = []
    original = torch.optim.Adam.step

    def step(self, *args, **kwargs):
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        seen.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    big_loss = lambda m, b: 1000 * _mse(m, b)  # noqa: E731
    _train(loss_fn=big_loss, steps=5, clip=None)
    raw, seen[:] = list(seen), []
    assert min(raw) > 10
    _train(loss_fn=big_loss, steps=5, clip=0.5)
    assert max(seen) == pytest.approx(0.5, rel=1e-5)


def test_adamw_decays_the_weights_apart_from_the_gradient():
    model = _linear()
    before = model.weight.detach().clone()
    no_gradient = lambda m, b: 0 * m(b[0]).sum()  # noqa: E731
    train(model, _batches(), steps=1, loss_fn=no_gradient, lr=0.1, optimizer="adamw", weight_decay=0.5,
          schedule="constant", progress=False)
    torch.testing.assert_close(model.weight.detach(), before * (1 - 0.1 * 0.5))
    model = _linear()
    train(model, _batches(), steps=1, loss_fn=no_gradient, lr=0.1, optimizer="adam", weight_decay=0.5,
          schedule="constant", progress=False)
    assert (model.weight.detach() - before * (1 - 0.05)).abs().max() > 1e-3  # Adam's L2 is not decoupled


def test_evaluation_callbacks_run_at_the_right_steps_in_eval_mode():
    done = []  # optimizer steps done when each callback ran
    counting_loss = lambda m, b: done.append(None) or _mse(m, b)  # noqa: E731
    seen = []

    def probe(model):
        seen.append((len(done), model.training))
        return len(done) / 10

    _, hist = _train(loss_fn=counting_loss, steps=10, eval_every=4,
                     eval_fn={"progress": probe, "zero": lambda m: torch.tensor(0.0)})
    assert hist.eval_step == [4, 8] and seen == [(4, False), (8, False)]
    assert hist.evals == {"progress": [0.4, 0.8], "zero": [0.0, 0.0]}
    assert hist.eval_metric == [0.4, 0.8]  # the first callback's results


def test_tuple_and_dict_batches_and_seed_none():
    x, y = _regression()
    dict_batches = ({"x": x[i:i + 16], "y": y[i:i + 16]} for i in range(0, 64, 16))
    _, hist = _train(batches=dict_batches, steps=4, loss_fn=lambda m, b: _mse(m, (b["x"], b["y"])))
    assert hist.steps_done == 4
    from collections import namedtuple

    Pair = namedtuple("Pair", "x y")
    seen = []
    pairs = (Pair(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16))
    _train(batches=pairs, steps=4, loss_fn=lambda m, b: seen.append(type(b)) or _mse(m, b))
    assert seen == [Pair] * 4  # moved to the device, still a Pair
    model = _linear()
    set_seed(7)
    state = torch.get_rng_state()
    _train(model=model, seed=None, steps=3)
    assert torch.equal(torch.get_rng_state(), state)  # seed=None leaves the global RNG alone
    _train(model=model, seed=0, steps=3)
    assert not torch.equal(torch.get_rng_state(), state)


def test_train_equals_the_hand_written_loops_it_replaces():
    # chapter 4/5/9's loop: constant-rate Adam, no clip; chapter 7's: AdamW, one-cycle, per-epoch test
    for options in ({"optimizer": "adam", "schedule": "constant"},
                    {"optimizer": "adamw", "weight_decay": 0.05, "schedule": "one_cycle", "pct_start": 0.15}):
        by_hand = _linear()
        adamw = options["optimizer"] == "adamw"
        opt = (torch.optim.AdamW(by_hand.parameters(), lr=3e-3, weight_decay=0.05) if adamw
               else torch.optim.Adam(by_hand.parameters(), lr=3e-3))
        sched = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=30, pct_start=0.15)
                 if options["schedule"] == "one_cycle" else None)
        losses, data = [], _batches()
        for _ in range(30):
            loss = _mse(by_hand, next(data))
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            losses.append(loss.item())
        model, hist = _train(steps=30, lr=3e-3, clip=None, log_every=10, **options)
        assert hist.step_loss == losses
        assert torch.equal(model.weight, by_hand.weight) and torch.equal(model.bias, by_hand.bias)


def test_progress_bar_shows_unless_tqdm_is_disabled(monkeypatch, capsys):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    _train(progress=True, steps=3)
    assert "training" in capsys.readouterr().err
    monkeypatch.setenv("TQDM_DISABLE", "1")
    _train(progress=True, steps=3)
    assert "training" not in capsys.readouterr().err


def test_set_seed_adds_the_attnbook_seed_offset(monkeypatch):
    set_seed(5)
    base = torch.rand(3)
    monkeypatch.setenv("ATTNBOOK_SEED", "2")
    set_seed(3)
    assert torch.equal(torch.rand(3), base)  # 3 + 2 is seed 5
    set_seed(0)
    shifted = torch.rand(3)
    monkeypatch.delenv("ATTNBOOK_SEED")
    set_seed(0)
    assert not torch.equal(torch.rand(3), shifted)
    monkeypatch.setenv("ATTNBOOK_SEED", "one")
    with pytest.raises(ValueError, match="ATTNBOOK_SEED to be an int, got 'one'"):
        set_seed(0)


def test_adam_betas_reach_the_optimizer_and_bad_betas_are_refused():
    def weights_after(**kwargs):
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        batches = ((torch.randn(8, 3), torch.randn(8, 1)) for _ in range(5))
        train(model, batches, steps=5, loss_fn=lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(), lr=0.1,
              progress=False, **kwargs)
        return model.weight.detach().clone()

    default = weights_after()
    assert torch.equal(default, weights_after(betas=(0.9, 0.999)))
    assert not torch.allclose(default, weights_after(betas=(0.9, 0.5)))
    for bad in [(0.9,), "0.9", (0.9, 1.0), (-0.1, 0.9)]:
        with pytest.raises((TypeError, ValueError), match="betas"):
            weights_after(betas=bad)
