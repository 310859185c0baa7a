"""Automatic checks for the chapters' exercises, one module per chapter.

Each check calls the learner's function on several cases and reports the first
that fails (its arguments, what was expected and what was got), or a pass line.
A function that still raises ``NotImplementedError`` is reported as not done.

Every module named ``chNN`` in this package is imported here, so a new chapter's
checks are available as ``attnbook.exercises.chNN`` as soon as its file exists.

The contract of a chapter module (``tests/test_exercises.py`` checks it for every
chapter): it lists its checks in ``__all__`` (each named ``check_*`` and called by a
check cell of the chapter notebook), and declares ``WRONG_ANSWERS``: for each check,
a list of ``(why it is wrong, function)`` pairs, each a plausible mistake that the
check must reject. The right answers are the notebook's solution cells, so no
solution ships in the package.
"""

import importlib as _importlib
import pkgutil as _pkgutil

__all__ = sorted(m.name for m in _pkgutil.iter_modules(__path__)
                 if len(m.name) == 4 and m.name.startswith("ch") and m.name[2:].isdigit())
for _name in __all__:
    globals()[_name] = _importlib.import_module(f"{__name__}.{_name}")
del _name
