"""Exercises that forbid a library call: run the learner's function and watch what it calls.

:func:`call_forbidding` runs ``function(*args)`` under a profiler hook that notes every
call of a forbidden function (a Python function by its code object, a built-in such as
``torch.nn.functional.scaled_dot_product_attention`` by identity), however the learner
imported it. When one was called it raises :class:`ForbiddenCall` naming it.

In a graded submission the learner's function lives in another kernel, so the check
runs this there (``function.in_kernel("attnbook.course.exercises._guard:call_forbidding")``)
and only the result, or the error, comes back; :func:`guarded` picks the right way.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["ForbiddenCall", "call_forbidding", "guarded"]


class ForbiddenCall(RuntimeError):
    """The learner's function called a function the exercise forbids."""


def _resolve(name: str) -> Any:
    """``"package.module:attr.attr"`` -> the object."""
    if not isinstance(name, str) or name.count(":") != 1:
        raise ValueError(f"expected a name like 'torch.nn.functional:softmax', got {name!r}")
    module, _, path = name.partition(":")
    obj: Any = importlib.import_module(module)
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def call_forbidding(function: Callable[..., Any], forbidden: Sequence[str], *args: Any) -> Any:
    """``function(*args)``, raising :class:`ForbiddenCall` if it called any of ``forbidden``.

    ``forbidden`` names functions as ``"module:attribute.path"``, e.g.
    ``"torch.nn:GRU.forward"``. Returns what ``function`` returned.
    """
    if not callable(function):
        raise TypeError(f"expected a function, got {type(function).__name__}")
    if isinstance(forbidden, str) or not isinstance(forbidden, Sequence):
        raise TypeError(f"expected a list of names, got {type(forbidden).__name__}")
    watched = {}
    for name in forbidden:
        obj = _resolve(name)
        key = getattr(obj, "__code__", obj)  # Python functions by their code, built-ins as they are
        watched[id(key)] = (key, name)  # the key is kept alive, so its id stays its own
    seen: list[str] = []

    def hook(frame, event, arg):  # noqa: ANN001 - the profiler's signature
        key = frame.f_code if event == "call" else arg if event == "c_call" else None
        hit = watched.get(id(key)) if key is not None else None
        if hit is not None and hit[0] is key and hit[1] not in seen:
            seen.append(hit[1])

    previous = sys.getprofile()
    sys.setprofile(hook)
    try:
        result = function(*args)
    finally:
        sys.setprofile(previous)
    if seen:
        names = ", ".join(n.replace(":", ".") for n in seen)
        raise ForbiddenCall(f"it called {names}, which this exercise asks you not to use: "
                            "write the computation with tensor operations")
    return result


def guarded(function: Callable[..., Any], forbidden: Sequence[str]) -> Callable[..., Any]:
    """A stand-in for ``function`` that fails on a forbidden call, in a graded kernel too."""
    in_kernel = getattr(function, "in_kernel", None)  # a graded submission's function
    if in_kernel is not None:
        remote = in_kernel(f"{__name__}:call_forbidding")
        return lambda *args: remote(list(forbidden), *args)
    return lambda *args: call_forbidding(function, list(forbidden), *args)
