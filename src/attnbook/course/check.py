"""Result checks used by the chapters and their exercises.

Each check prints one clear line when it passes and raises :class:`CheckFailed`
(an ``AssertionError`` that survives ``python -O``) with what was expected and what
was got when it does not. Every passing check is also recorded, so that the
benchmark script can read each notebook's headline results: set the environment
variable ``ATTNBOOK_RESULTS`` to a file path and each check appends one JSON line.

**Thresholds come from recorded runs** (the margin rule, the one place it is written):
each ``at_least``/``at_most`` target in a chapter is set from at least three seeds
(``python benchmarks/seed_runs.py notebooks/NN_x.ipynb``, which runs the notebook with
``ATTNBOOK_SEED=0,1,2`` so that ``training.set_seed`` shifts every seed) on the CPU,
and on a GPU when one is lent. :func:`margin_target` turns the recorded values into
the target: the worst seed, moved outward by the larger of the seeds' spread (max -
min) and 2% of the worst value's magnitude. A target tighter than that fails on an
unlucky seed; a much looser one checks nothing.

With ``ATTNBOOK_CHECKS=record`` (set by that script) a failing ``at_least``/``at_most``
is recorded with ``"passed": false`` and printed instead of raised, so one run records
every figure; never set it in a test.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["CheckFailed", "at_least", "at_most", "close", "equal", "true", "cases", "results", "margin_target"]

_RESULTS: list[dict[str, Any]] = []


class CheckFailed(AssertionError):
    """A result check did not pass. The message says what was expected and got."""


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "item"):
        raise TypeError(f"{what} must be a real number, got {type(value).__name__}: {value!r}")
    number = float(value.item() if hasattr(value, "item") else value)
    if math.isnan(number):
        raise CheckFailed(f"{what} is NaN: something upstream produced an invalid number")
    return number


def _name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"name must be a non-empty string, got {name!r}")
    return name


def _record(name: str, kind: str, value: Any, target: Any, passed: bool = True) -> None:
    entry = {"name": name, "kind": kind, "value": value, "target": target, "passed": passed}
    _RESULTS.append(entry)
    path = os.environ.get("ATTNBOOK_RESULTS")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")


def _fail_threshold(name: str, kind: str, value: float, target: float, message: str) -> None:
    if os.environ.get("ATTNBOOK_CHECKS") != "record":
        raise CheckFailed(message)
    print(f"FAIL (recorded, not raised: ATTNBOOK_CHECKS=record)  {message}")
    _record(name, kind, value, target, passed=False)


def margin_target(values: Sequence[float], kind: str) -> float:
    """The threshold the margin rule (module docstring) gives for recorded ``values``.

    ``kind`` is ``"at_least"`` (the worst seed is the smallest) or ``"at_most"``.
    Example: ``margin_target([0.95, 0.97, 0.96], "at_least")`` is 0.95 - 0.02 = 0.93.
    """
    if kind not in ("at_least", "at_most"):
        raise ValueError(f"expected kind 'at_least' or 'at_most', got {kind!r}")
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"expected a sequence of numbers, got {type(values).__name__}")
    numbers = [_number(v, "recorded value") for v in values]
    if len(numbers) < 3:
        raise ValueError(f"expected values from at least 3 seeds, got {len(numbers)}")
    worst = min(numbers) if kind == "at_least" else max(numbers)
    margin = max(max(numbers) - min(numbers), 0.02 * abs(worst))
    return worst - margin if kind == "at_least" else worst + margin


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def at_least(value: float, target: float, name: str) -> None:
    """Pass when ``value >= target`` and print a pass line; raise :class:`CheckFailed` if not.

    Example: ``check.at_least(acc, 0.95, "held-out exact match")``.
    """
    name = _name(name)
    v, t = _number(value, name), _number(target, "target")
    if v < t:
        _fail_threshold(name, "at_least", v, t, f"{name}: expected at least {_fmt(t)}, got {_fmt(v)}")
        return
    print(f"PASS  {name} = {_fmt(v)} (at least {_fmt(t)})")
    _record(name, "at_least", v, t)


def at_most(value: float, target: float, name: str) -> None:
    """Pass when ``value <= target`` and print a pass line; raise :class:`CheckFailed` if not."""
    name = _name(name)
    v, t = _number(value, name), _number(target, "target")
    if v > t:
        _fail_threshold(name, "at_most", v, t, f"{name}: expected at most {_fmt(t)}, got {_fmt(v)}")
        return
    print(f"PASS  {name} = {_fmt(v)} (at most {_fmt(t)})")
    _record(name, "at_most", v, t)


def _close_error(value: Any, expected: Any, atol: float, rtol: float) -> str | None:
    """Why ``value`` is not ``expected`` within tolerance, or ``None`` if it is."""
    import numpy as np

    got = _as_array(value, "the value")
    want = _as_array(expected, "expected")
    if got.shape != want.shape:
        return f"expected shape {tuple(want.shape)}, got {tuple(got.shape)}"
    if not got.size:
        return None
    g, w = got.astype(np.float64), want.astype(np.float64)
    same_nan = np.isnan(g) == np.isnan(w)
    diff = np.where(np.isnan(g) & np.isnan(w), 0.0, np.abs(g - w))
    diff = np.where(same_nan, diff, np.inf)
    bad = ~(diff <= atol + rtol * np.abs(np.nan_to_num(w)))
    if not bad.any():
        return None
    where = np.unravel_index(int(np.argmax(np.where(bad, diff, -1.0))), diff.shape)
    index = tuple(int(i) for i in where)
    return (f"expected values within atol={atol:g}, rtol={rtol:g}; the largest difference is "
            f"{float(diff[where]):.3g} at index {index} (expected {w[where]:.6g}, got {g[where]:.6g})")


def close(value: Any, expected: Any, name: str, *, atol: float = 1e-6, rtol: float = 1e-5) -> None:
    """Pass when ``value`` equals ``expected`` element-wise within tolerance.

    Works on numbers, NumPy arrays and PyTorch tensors. On failure the message
    names the shapes, or the largest difference and where it is.
    """
    name = _name(name)
    error = _close_error(value, expected, atol, rtol)
    if error:
        raise CheckFailed(f"{name}: {error}")
    print(f"PASS  {name} matches the reference (shape {tuple(_as_array(value, name).shape)})")
    _record(name, "close", None, None)


def equal(value: Any, expected: Any, name: str) -> None:
    """Pass when ``value == expected`` (plain Python equality)."""
    name = _name(name)
    if value != expected:
        raise CheckFailed(f"{name}: expected {expected!r}, got {value!r}")
    print(f"PASS  {name} = {_short(value)}")
    _record(name, "equal", value if isinstance(value, (int, float, str, bool)) else repr(value), None)


def true(condition: bool, name: str, detail: str = "") -> None:
    """Pass when ``condition`` is true; ``detail`` explains a failure."""
    name = _name(name)
    if not isinstance(condition, bool) and not hasattr(condition, "item"):
        raise TypeError(f"condition must be a bool, got {type(condition).__name__}")
    if not bool(condition):
        raise CheckFailed(f"{name}: expected it to hold, but it does not" + (f" ({detail})" if detail else ""))
    print(f"PASS  {name}")
    _record(name, "true", True, None)


def call(func: Callable[..., Any], args: tuple[Any, ...], name: str, case: int | None = None) -> Any:
    """``func(*args)`` for a check: a stub's ``NotImplementedError`` says the exercise is not
    done yet, any other exception fails the check with what was called and what it raised."""
    try:
        return func(*args)
    except NotImplementedError:
        raise CheckFailed(f"{name}: not implemented yet (replace the `raise NotImplementedError`)") from None
    except Exception as err:
        where = name if case is None else f"{name}, case {case}"
        raise CheckFailed(f"{where}: calling it with {_short(args)} raised {type(err).__name__}: {err}") from err


def cases(func: Callable[..., Any], examples: Sequence[tuple[tuple[Any, ...], Any]], name: str,
          *, atol: float = 1e-6, rtol: float = 1e-5) -> None:
    """Call ``func(*args)`` for each ``(args, expected)`` pair and compare.

    Expected strings, ints and tuples are compared exactly, everything else
    within tolerance. The first failing case is reported with its arguments,
    the expected and the returned value; ``NotImplementedError`` says the
    exercise is not done yet.
    """
    name = _name(name)
    if not callable(func):
        raise TypeError(f"{name}: expected a function, got {type(func).__name__}")
    for i, (args, expected) in enumerate(examples, start=1):
        got = call(func, args, name, i)
        if isinstance(expected, (str, int, tuple, list)) and not isinstance(expected, bool):
            error = None if got == expected else f"expected {_short(expected)}, got {_short(got)}"
        else:
            try:
                error = _close_error(got, expected, atol, rtol)
            except TypeError:
                error = f"expected {_short(expected)}, got {_short(got)}"
        if error:
            raise CheckFailed(f"{name}, case {i} (arguments {_short(args)}): {error}")
    print(f"PASS  {name}: all {len(examples)} cases")
    _record(name, "cases", len(examples), None)


def _short(x: Any, limit: int = 120) -> str:
    text = repr(x)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _as_array(x: Any, what: str):
    import numpy as np

    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x, dtype=np.float64) if not hasattr(x, "dtype") else np.asarray(x)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a number, array or tensor, got {type(x).__name__}") from None


def results() -> list[dict[str, Any]]:
    """Every check that passed in this process, oldest first."""
    return list(_RESULTS)
