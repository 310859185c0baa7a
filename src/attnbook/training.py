"""One seeded, device-agnostic training loop for every chapter; it returns its history.

:func:`train` runs Adam or AdamW with a learning-rate schedule (constant, cosine, linear or
one-cycle, after an optional linear warm-up), an optional gradient clip, evaluation
callbacks every N steps and a tqdm progress bar. It never reads a value from the device
on every step: the losses stay on the device and are read together every ``log_every``
steps, so a GPU runs ahead of Python.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from attnbook import _validate

__all__ = ["set_seed", "History", "train", "seq2seq_loss", "cycle", "train_seq2seq", "make_scheduler",
           "SCHEDULES", "OPTIMIZERS"]

SCHEDULES = ("constant", "cosine", "linear", "one_cycle")
OPTIMIZERS = ("adam", "adamw", "muon")


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and every GPU).

    The environment variable ``ATTNBOOK_SEED`` (an int, default 0) is added to
    ``seed``: ``benchmarks/seed_runs.py`` re-runs a chapter with other seeds this way
    (see the margin rule in :mod:`attnbook.course.check`).
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"expected an int seed, got {type(seed).__name__}")
    offset = os.environ.get("ATTNBOOK_SEED", "0")
    try:
        seed += int(offset)
    except ValueError:
        raise ValueError(f"expected the environment variable ATTNBOOK_SEED to be an int, got {offset!r}") from None
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class History:
    """What happened during training.

    ``step``/``loss``: one entry per logged step (the mean loss since the previous one);
    ``step_loss`` and ``lr``: one entry per step; ``eval_step``/``eval_metric``: one entry
    per evaluation (``evals`` holds every named evaluation callback's results).
    """

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    eval_step: list[int] = field(default_factory=list)
    eval_metric: list[float] = field(default_factory=list)
    seconds: float = 0.0
    steps_done: int = 0
    step_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    evals: dict[str, list[float]] = field(default_factory=dict)

    @property
    def final_loss(self) -> float:
        """Mean training loss over the last tenth of the logged steps."""
        if not self.loss:
            raise ValueError("the history is empty: no step was trained")
        tail = self.loss[-max(1, len(self.loss) // 10):]
        return float(np.mean(tail))

    @property
    def last_loss(self) -> float:
        """The training loss of the very last step."""
        if not self.step_loss:
            raise ValueError("the history is empty: no step was trained")
        return self.step_loss[-1]

    @property
    def steps_per_second(self) -> float:
        return self.steps_done / self.seconds if self.seconds else float("nan")


def cycle(make_epoch: Callable[[int], Iterable]) -> Iterator:
    """Endless batches: ``make_epoch(epoch)`` gives one epoch's batches."""
    if not callable(make_epoch):
        raise TypeError(f"expected make_epoch to be callable, got {type(make_epoch).__name__}")
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


def _number(x: object, name: str, *, low: float, high: float = math.inf, low_open: bool = False) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"expected {name} to be a number, got {type(x).__name__}")
    if not (math.isfinite(x) and (x > low if low_open else x >= low) and x <= high):
        where = f"{'(' if low_open else '['}{low}, {high}{']' if math.isfinite(high) else ')'}"
        raise ValueError(f"expected {name} in {where}, got {x!r}")
    return float(x)


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: str, steps: int, *, warmup: int = 0,
                   min_lr_ratio: float = 0.1, pct_start: float = 0.3):
    """A learning-rate scheduler (stepped once per training step) for ``optimizer``.

    ``constant``, ``cosine`` (from the peak down to ``min_lr_ratio`` of it) and ``linear``
    (likewise, on a straight line) start with ``warmup`` steps rising linearly to the
    peak. ``one_cycle`` is PyTorch's :class:`~torch.optim.lr_scheduler.OneCycleLR` (which
    also cycles Adam's first beta); it warms up by itself over ``pct_start`` of the steps,
    so it takes no ``warmup``.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"expected schedule to be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    _validate.positive_int(steps, "steps")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or not 0 <= warmup <= steps:
        raise ValueError(f"expected warmup to be an int in [0, steps={steps}], got {warmup!r}")
    min_lr_ratio = _number(min_lr_ratio, "min_lr_ratio", low=0.0, high=1.0)
    if schedule == "one_cycle":
        pct_start = _number(pct_start, "pct_start", low=0.0, high=1.0, low_open=True)
        if warmup:
            raise ValueError(f"expected warmup=0 with the one_cycle schedule (it warms up over pct_start "
                             f"of the steps), got warmup={warmup}")
        peak = [group["lr"] for group in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peak, total_steps=steps,
                                                   pct_start=pct_start)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        frac = (step - warmup) / max(1, steps - warmup)
        shape = 0.5 * (1 + np.cos(np.pi * frac)) if schedule == "cosine" else 1 - frac
        return min_lr_ratio + (1 - min_lr_ratio) * shape

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _to(batch, device: torch.device):
    """Move a batch to ``device``: anything with ``.to``, or a tuple, list or dict of those."""
    if hasattr(batch, "to"):
        return batch.to(device)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a named tuple
        return type(batch)(*(_to(b, device) for b in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch


def _check_evals(eval_every: object, eval_fn: object) -> dict[str, Callable]:
    if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 0:
        raise ValueError(f"expected eval_every to be an int >= 0, got {eval_every!r}")
    if eval_fn is None:
        if eval_every:
            raise ValueError("eval_every is set but no eval_fn was given")
        return {}
    fns = dict(eval_fn) if isinstance(eval_fn, Mapping) else {"metric": eval_fn}
    if not fns:
        raise ValueError("expected eval_fn to be a callable or a non-empty mapping of name -> callable, "
                         "got {}")
    for name, fn in fns.items():
        if not isinstance(name, str) or not callable(fn):
            raise TypeError(f"expected eval_fn to be a callable or a mapping of str -> callable, got "
                            f"{name!r} -> {type(fn).__name__}")
    if not eval_every:
        raise ValueError("eval_fn is given but eval_every is 0: say how often to evaluate")
    return fns


def train(model: nn.Module, batches: Iterable, *, steps: int,
          loss_fn: Callable[[nn.Module, object], torch.Tensor],
          lr: float = 3e-3, seed: int | None = 0, device: torch.device | str | None = None,
          clip: float | None = 1.0, log_every: int = 10, eval_every: int = 0,
          eval_fn: Callable[[nn.Module], float] | Mapping[str, Callable[[nn.Module], float]] | None = None,
          warmup: int = 0, progress: bool = True, optimizer: str = "adam", weight_decay: float = 0.0,
          schedule: str = "cosine", min_lr_ratio: float = 0.1, pct_start: float = 0.3,
          betas: tuple[float, float] = (0.9, 0.999), muon_lr: float = 0.02) -> History:
    """Train ``model`` for ``steps`` optimizer steps and return the :class:`History`.

    Args:
        batches: an iterable of batches, each moved to ``device`` (``.to`` is called on it,
            or on each item of a tuple, list or dict); it must yield at least ``steps``
            batches (wrap epochs with :func:`cycle`). Batches are drawn lazily, one per step.
        loss_fn: ``loss_fn(model, batch)`` -> scalar loss tensor.
        lr: peak learning rate.
        seed: seeds everything before the first step (the model's initialisation is the
            caller's: seed before building it with :func:`set_seed`); ``None`` seeds nothing.
        clip: largest gradient norm (``None``: no clipping).
        log_every: the losses are read from the device (one sync) every ``log_every``
            steps and at the end; ``History.loss`` gets their mean, ``History.step_loss``
            each of them.
        eval_every, eval_fn: every ``eval_every`` steps, ``eval_fn(model)`` (in eval mode,
            a number) is recorded in ``History.eval_metric``; a mapping of name -> callable
            records each into ``History.evals[name]`` (a single callable is ``"metric"``).
        warmup: steps of linear warm-up to ``lr`` before the schedule.
        progress: show a tqdm bar (silenced when ``TQDM_DISABLE=1``).
        optimizer: ``"adam"`` or ``"adamw"``, with ``weight_decay`` and Adam's ``betas``
            (PyTorch's default ``(0.9, 0.999)``; nanoGPT uses ``(0.9, 0.95)``), or ``"muon"``:
            :class:`~attnbook.optim.Muon` at peak ``muon_lr`` for the hidden matrices and AdamW
            at ``lr`` for the rest (:func:`~attnbook.optim.muon_param_groups`), one schedule.
        schedule: ``"cosine"`` (default: down to ``min_lr_ratio * lr``), ``"linear"``
            (likewise), ``"constant"`` or ``"one_cycle"`` (PyTorch's, warming up over
            ``pct_start`` of the steps); see :func:`make_scheduler`.
    """
    _validate.positive_int(steps, "steps")
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(model).__name__}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("expected a model with trainable parameters, got none")
    if not callable(loss_fn):
        raise TypeError(f"expected loss_fn to be callable, got {type(loss_fn).__name__}")
    if isinstance(batches, (str, bytes)) or not isinstance(batches, Iterable):
        raise TypeError(f"expected batches to be an iterable of batches, got {type(batches).__name__}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)):
        raise TypeError(f"expected a positive learning rate (a number), got {type(lr).__name__}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"expected a positive learning rate, got {lr!r}")
    _validate.positive_int(log_every, "log_every")
    if clip is not None:
        clip = _number(clip, "clip (None for no clipping)", low=0.0, low_open=True)
    if not isinstance(progress, bool):
        raise TypeError(f"expected progress to be a bool, got {type(progress).__name__}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"expected optimizer to be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    weight_decay = _number(weight_decay, "weight_decay", low=0.0)
    muon_lr = _number(muon_lr, "muon_lr", low=0.0, low_open=True)
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
        raise TypeError(f"expected betas to be a pair of numbers, got {betas!r}")
    betas = tuple(_number(b, "each of betas", low=0.0, high=1.0) for b in betas)
    if betas[1] >= 1.0 or betas[0] >= 1.0:
        raise ValueError(f"expected betas below 1, got {betas!r}")
    evals = _check_evals(eval_every, eval_fn)
    if seed is not None:
        set_seed(seed)
    device = torch.device(device) if device is not None else params[0].device
    model.to(device)
    if optimizer == "muon":
        from attnbook.optim import Muon, muon_param_groups

        hidden, rest = muon_param_groups(model)
        opts = [Muon(hidden, lr=muon_lr, weight_decay=weight_decay)]
        opts += [torch.optim.AdamW(rest, lr=lr, betas=betas, weight_decay=weight_decay)]
    else:
        opts = [(torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam)(params, lr=lr, betas=betas,
                                                                                  weight_decay=weight_decay)]
    scheds = [make_scheduler(opt, schedule, steps, warmup=warmup, min_lr_ratio=min_lr_ratio,
                             pct_start=pct_start) for opt in opts]
    history = History(evals={name: [] for name in evals})
    bar = None
    if progress:
        from tqdm import tqdm  # plain text bar: no widget library needed

        bar = tqdm(total=steps, desc="training", disable=os.environ.get("TQDM_DISABLE", "") not in ("", "0"))
    it = iter(batches)
    start = time.perf_counter()
    model.train()
    window: list[torch.Tensor] = []  # this window's losses, still on the device
    for step in range(steps):
        try:
            batch = next(it)
        except StopIteration:
            raise ValueError(f"batches ran out after {step} of {steps} steps; wrap them with cycle()") from None
        loss = loss_fn(model, _to(batch, device))
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            got = f"shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ValueError(f"expected loss_fn to return a scalar tensor, got {got}")
        history.lr.append(opts[-1].param_groups[0]["lr"])  # Adam's (Muon's follows the same schedule)
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(params, clip)
        for opt, sched in zip(opts, scheds):
            opt.step()
            sched.step()
        window.append(loss.detach())
        if (step + 1) % log_every == 0 or step == steps - 1:
            values = torch.stack(window).tolist()  # the one read from the device in this window
            window = []
            history.step_loss.extend(values)
            history.step.append(step + 1)
            history.loss.append(float(np.mean(values)))
            if bar is not None:
                bar.set_postfix(loss=f"{history.loss[-1]:.3f}")
        if eval_every and (step + 1) % eval_every == 0:
            model.eval()
            history.eval_step.append(step + 1)
            for name, fn in evals.items():
                history.evals[name].append(float(fn(model)))
            history.eval_metric.append(history.evals[next(iter(evals))][-1])
            model.train()
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    model.eval()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
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
