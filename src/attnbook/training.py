"""A small, seeded, device-agnostic training loop that returns its history."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from attnbook import _validate

__all__ = ["set_seed", "History", "train", "seq2seq_loss", "cycle", "train_seq2seq"]


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and every GPU)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"expected an int seed, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class History:
    """What happened during training: one entry per logged step."""

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    eval_step: list[int] = field(default_factory=list)
    eval_metric: list[float] = field(default_factory=list)
    seconds: float = 0.0
    steps_done: int = 0

    @property
    def final_loss(self) -> float:
        """Mean training loss over the last tenth of the logged steps."""
        if not self.loss:
            raise ValueError("the history is empty: no step was trained")
        tail = self.loss[-max(1, len(self.loss) // 10):]
        return float(np.mean(tail))

    @property
    def steps_per_second(self) -> float:
        return self.steps_done / self.seconds if self.seconds else float("nan")


def cycle(make_epoch: Callable[[int], Iterable]) -> Iterator:
    """Endless batches: ``make_epoch(epoch)`` gives one epoch's batches."""
    epoch = 0
    while True:
        empty = True
        for batch in make_epoch(epoch):
            empty = False
            yield batch
        if empty:
            raise ValueError("an epoch produced no batches")
        epoch += 1


def seq2seq_loss(model: nn.Module, batch) -> torch.Tensor:
    """Mean cross-entropy per target token of a :class:`~attnbook.tasks.Batch`, padding ignored."""
    logits = model(batch.src, batch.src_len, batch.tgt_in)  # (B, T, V)
    return nn.functional.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=0)


def train(model: nn.Module, batches: Iterable, *, steps: int, loss_fn: Callable[[nn.Module, object], torch.Tensor],
          lr: float = 3e-3, seed: int = 0, device: torch.device | str | None = None,
          clip: float | None = 1.0, log_every: int = 10, eval_every: int = 0,
          eval_fn: Callable[[nn.Module], float] | None = None, warmup: int = 0,
          progress: bool = True) -> History:
    """Train ``model`` for ``steps`` Adam steps and return the :class:`History`.

    Args:
        batches: an iterable of batches (``.to(device)`` is called when they have it);
            it must yield at least ``steps`` batches (wrap epochs with :func:`cycle`).
        loss_fn: ``loss_fn(model, batch)`` -> scalar loss.
        lr: peak learning rate; after ``warmup`` steps it decays to a tenth on a cosine.
        seed: seeds everything before the first step (the model's initialisation is
            the caller's: seed before building it with :func:`set_seed`).
        eval_every, eval_fn: every ``eval_every`` steps, ``eval_fn(model)`` is recorded.
        progress: show a tqdm bar (silenced when ``TQDM_DISABLE=1``).
    """
    _validate.positive_int(steps, "steps")
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"expected loss_fn to be callable, got {type(loss_fn).__name__}")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"expected a positive learning rate, got {lr!r}")
    if eval_every and eval_fn is None:
        raise ValueError("eval_every is set but no eval_fn was given")
    set_seed(seed)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        frac = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * frac))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    history = History()
    bar = None
    if progress:
        from tqdm import tqdm  # plain text bar: no widget library needed

        bar = tqdm(total=steps, desc="training", disable=os.environ.get("TQDM_DISABLE", "") not in ("", "0"))
    it = iter(batches)
    start = time.perf_counter()
    model.train()
    running = []
    for step in range(steps):
        try:
            batch = next(it)
        except StopIteration:
            raise ValueError(f"batches ran out after {step} of {steps} steps; wrap them with cycle()") from None
        if hasattr(batch, "to"):
            batch = batch.to(device)
        loss = loss_fn(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        sched.step()
        running.append(loss.item())
        if (step + 1) % log_every == 0 or step == steps - 1:
            history.step.append(step + 1)
            history.loss.append(float(np.mean(running)))
            running = []
            if bar is not None:
                bar.set_postfix(loss=f"{history.loss[-1]:.3f}")
        if eval_every and (step + 1) % eval_every == 0:
            model.eval()
            history.eval_step.append(step + 1)
            history.eval_metric.append(float(eval_fn(model)))
            model.train()
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    model.eval()
    history.seconds = time.perf_counter() - start
    history.steps_done = steps
    return history


def train_seq2seq(task, config, *, steps: int = 700, batch_size: int = 128, lr: float = 5e-3, seed: int = 0,
                  device: torch.device | str | None = None, progress: bool = True):
    """Build a :class:`~attnbook.rnn.Seq2Seq` from ``config`` and train it on ``task``.

    Part I's shared budget: every model in chapters 1 and 2 gets the same steps,
    batch size, learning rate and seed, so their curves can be compared. The
    model is initialised from ``seed`` too. Returns ``(model, history)``.
    """
    from attnbook.rnn import Seq2Seq, Seq2SeqConfig
    from attnbook.tasks import NumberTask

    if not isinstance(task, NumberTask):
        raise TypeError(f"expected a NumberTask, got {type(task).__name__}")
    if not isinstance(config, Seq2SeqConfig):
        raise TypeError(f"expected a Seq2SeqConfig, got {type(config).__name__}")
    if config.src_vocab != len(task.src_vocab) or config.tgt_vocab != len(task.tgt_vocab):
        raise ValueError(f"expected vocabulary sizes ({len(task.src_vocab)}, {len(task.tgt_vocab)}) from the task, "
                         f"got ({config.src_vocab}, {config.tgt_vocab}) in the config")
    set_seed(seed)
    device = torch.device(device) if device is not None else torch.device("cpu")
    model = Seq2Seq(config).to(device)
    history = train(model, cycle(lambda epoch: task.batches("train", batch_size, seed=seed + epoch)), steps=steps,
                    loss_fn=seq2seq_loss, lr=lr, seed=seed, device=device, progress=progress)
    return model, history
