"""Measuring what a computation costs: wall-clock time, peak tensor memory, a scaling exponent.

Time is the median (:func:`measure_time`) or the fastest (:func:`best_time`) of a few runs
after a warm-up (and, on a GPU, with synchronisation); :func:`count_flops` counts the
floating-point operations instead, a figure that does not depend on the machine.

Peak memory: on a CUDA GPU, ``torch.cuda.max_memory_allocated`` during the call, minus
what was allocated before. PyTorch has no such counter on the CPU, so there
:class:`TensorMemoryTracker` watches every operation PyTorch dispatches (a
``TorchDispatchMode``): it adds the bytes of every *new* storage an operation returns
(views and in-place results share an existing storage and add nothing) and subtracts
them when Python frees that storage. The peak of that running sum is the most tensor
memory the call held at once. It sees what the operations return, not the scratch
buffers a fused kernel uses internally (small per-thread tiles for PyTorch's CPU
kernels); it does not count the process's other memory (Python objects, the allocator's
caches).
"""

from __future__ import annotations

import statistics
import time
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = ["measure_time", "best_time", "count_flops", "TensorMemoryTracker", "peak_memory", "fit_power_law"]


def _sync(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device is not None and device.type == "mps":
        torch.mps.synchronize()


def _times(fn: Callable[[], Any], repeats: int, warmup: int,
           device: torch.device | str | None) -> list[float]:
    """Seconds of each of ``repeats`` runs of ``fn()`` after ``warmup`` runs, synchronising a GPU."""
    if not callable(fn):
        raise TypeError(f"expected a callable, got {type(fn).__name__}")
    for name, value, least in (("repeats", repeats, 1), ("warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"expected {name} to be an int >= {least}, got {value!r}")
    device = torch.device(device) if device is not None else None
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def measure_time(fn: Callable[[], Any], *, repeats: int = 3, warmup: int = 1,
                 device: torch.device | str | None = None) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` runs, after ``warmup`` runs."""
    return statistics.median(_times(fn, repeats, warmup, device))


def best_time(fn: Callable[[], Any], *, repeats: int = 5, warmup: int = 1,
              device: torch.device | str | None = None) -> float:
    """Fastest wall-clock seconds of ``fn()`` over ``repeats`` runs, after ``warmup`` runs.

    The minimum is the run least disturbed by the rest of the machine: the best estimate
    of what the computation itself costs when comparing two of them.
    """
    return min(_times(fn, repeats, warmup, device))


def count_flops(fn: Callable[[], Any]) -> int:
    """Floating-point operations of ``fn()``, as PyTorch's ``FlopCounterMode`` counts them.

    It counts the matrix products and convolutions (2 per multiply-add), not element-wise
    operations such as the softmax.
    """
    if not callable(fn):
        raise TypeError(f"expected a callable, got {type(fn).__name__}")
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


class TensorMemoryTracker(TorchDispatchMode):
    """Counts the bytes of tensor storage created inside the ``with`` block, and their peak.

    ``current`` is what is alive now (of what was created inside), ``peak`` the most
    that was alive at once. Storage that existed before the block (the inputs) is not
    counted; views of it are not new storage either.
    """

    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.peak = 0
        self._live: dict[int, int] = {}

    def _release(self, key: int) -> None:
        self.current -= self._live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                  if isinstance(t, torch.Tensor)}
        result = func(*args, **kwargs)
        for t in tree_flatten(result)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key in inputs or key in self._live or storage.nbytes() == 0:
                continue  # a view, an in-place result or an output we already count
            self._live[key] = storage.nbytes()
            self.current += storage.nbytes()
            self.peak = max(self.peak, self.current)
            weakref.finalize(storage, self._release, key)
        return result


def peak_memory(fn: Callable[[], Any], *, device: torch.device | str | None = None) -> tuple[Any, int]:
    """Run ``fn()`` and return ``(its result, peak bytes of tensor memory it allocated)``.

    CUDA: ``torch.cuda.max_memory_allocated`` above the memory in use before the call.
    CPU (and other devices): :class:`TensorMemoryTracker`. Either way, the inputs that
    existed before the call are not counted; the result, while it was alive, is.
    """
    if not callable(fn):
        raise TypeError(f"expected a callable, got {type(fn).__name__}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        result = fn()
        torch.cuda.synchronize(device)
        return result, int(torch.cuda.max_memory_allocated(device) - before)
    with TensorMemoryTracker() as tracker:
        result = fn()
    return result, int(tracker.peak)


def fit_power_law(x: Any, y: Any) -> tuple[float, float]:
    """Least-squares fit of ``y = c * x**p`` on a log-log scale; returns ``(p, c)``.

    Shape:
        x, y: (N,) positive numbers, N >= 2 -> (exponent, coefficient)
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.ndim != 1 or x.shape != y.shape or x.size < 2:
        raise ValueError(f"expected two 1-D sequences of the same length >= 2, got shapes {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("expected finite x and y for a log-log fit, got a NaN or an infinity")
    if (x <= 0).any() or (y <= 0).any():
        raise ValueError("expected positive x and y for a log-log fit, got a value <= 0")
    p, log_c = np.polyfit(np.log(x), np.log(y), 1)
    return float(p), float(np.exp(log_c))
