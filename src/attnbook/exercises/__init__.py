"""Automatic checks for the chapters' exercises, one module per chapter.

Each check calls the learner's function on several cases and reports the first
that fails (its arguments, what was expected and what was got), or a pass line.
A function that still raises ``NotImplementedError`` is reported as not done.

Every module named ``chNN`` in this package is imported here, so a new chapter's
checks are available as ``attnbook.exercises.chNN`` as soon as its file exists.
"""

import importlib as _importlib
import pkgutil as _pkgutil

__all__ = sorted(m.name for m in _pkgutil.iter_modules(__path__)
                 if len(m.name) == 4 and m.name.startswith("ch") and m.name[2:].isdigit())
for _name in __all__:
    globals()[_name] = _importlib.import_module(f"{__name__}.{_name}")
del _name
