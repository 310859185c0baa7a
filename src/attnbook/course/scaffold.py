"""``python -m attnbook.course new-chapter NN "Title"``: the skeleton of a new chapter.

Writes, in the repository at ``root``:

* ``notebooks/NN_slug.ipynb``: the first cell of the newest chapter (the Colab set-up
  with ``REPO_URL``, as every chapter has it), its notebook metadata (Colab asks for a
  GPU), and the chapter template's sections, with three placeholder exercises (a
  solution cell tagged ``hide-input`` with nbgrader's markers, and a check cell each);
* ``src/attnbook/course/exercises/chNN.py``: their checks and ``WRONG_ANSWERS``;
* an entry for the notebook in ``_toc.yml``, after the last chapter.

The skeleton passes the hygiene tests and the exercise suite as it is, so a
contributor can replace one placeholder at a time and keep the tests green (see
CONTRIBUTING.md). Nothing is overwritten: an existing chapter NN is an error.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

from attnbook.course.markers import BEGIN_SOLUTION, END_SOLUTION, nbformat

__all__ = ["new_chapter", "slug_of"]

_REPO_URL = re.compile(r'^(?P<indent>[ \t]*)REPO_URL\s*=\s*(["\']).*?\2[ \t]*$', re.M)

_SECTIONS = [
    ("## Learning goals", "After this chapter you can\n\n* TODO: three to five things a reader can do afterwards."),
    ("## The idea in plain words", "TODO: the idea without formulas, with an everyday analogy."),
    ("## The math", "TODO: the definitions, with shapes, e.g. $\\mathrm{softmax}(QK^\\top/\\sqrt{d_k})\\,V$."),
    ("## From scratch", "TODO: build it in a few lines of PyTorch (or import it from `attnbook` once it is "
                        "in the package)."),
    ("## Checking against a reference", "TODO: compare with PyTorch's (or a library's) implementation."),
    ("## An experiment", "TODO: one experiment that a CPU runs within the chapter's time budget."),
]

_PREAMBLE = """import torch

import attnbook
from attnbook import check, exercises
from attnbook.training import set_seed

device = attnbook.pick_device()
set_seed(0)"""

_CHECKING = """x = torch.randn(4, 8)
check.close(x @ torch.eye(8), x, "a placeholder result: x times the identity is x")"""

# (name, signature, solution body, exercise text, check body, wrong answer)
_EXERCISES = [
    ("scale", "x, factor", "return x * factor", "Write `scale(x, factor)`: every element of `x` times `factor`.",
     "cases = [((torch.ones(2), 3.0), torch.full((2,), 3.0)), ((torch.arange(4.0), -1.0), -torch.arange(4.0))]",
     ('"added instead of multiplied"', "lambda x, factor: x + factor")),
    ("row_sums", "x", "return x.sum(dim=-1)", "Write `row_sums(x)`: the sum of each row of a `(N, d)` tensor.",
     "cases = [((torch.eye(3),), torch.ones(3)), ((torch.arange(6.0).reshape(2, 3),), torch.tensor([3.0, 12.0]))]",
     ('"column sums"', "lambda x: x.sum(dim=0)")),
    ("largest", "values", "return max(values)", "Write `largest(values)`: the largest number of a list.",
     "cases = [(([1, 5, 2],), 5), (([-3, -1],), -1)]",
     ('"the first number"', "lambda values: values[0]")),
]


def slug_of(title: str) -> str:
    """``"Attention on graphs"`` -> ``"attention_on_graphs"``."""
    slug = re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")
    return slug[:40].rstrip("_") or "chapter"


def _module_source(number: int, title: str) -> str:
    checks = []
    for i, (name, signature, _, _, cases, _) in enumerate(_EXERCISES, start=1):
        checks.append(f'''


def check_{name}({name}: Callable[..., Any]) -> None:
    """TODO: what ``{name}({signature})`` must return, with shapes. A placeholder: replace it."""
    {cases}
    check.cases({name}, cases, "Exercise {number}.{i} ({name.replace("_", " ")})")''')
    wrong = "\n".join(f'    "check_{name}": [({why}, {fn})],' for name, *_, (why, fn) in _EXERCISES)
    names = ", ".join(f'"check_{e[0]}"' for e in _EXERCISES)
    return f'''"""Chapter {number} exercises: {title} (placeholders written by ``new-chapter``: replace them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from attnbook.course import check

__all__ = [{names}]
{"".join(checks)}


# Plausible mistakes each check must reject: (what is wrong, function[, pattern the failure must match]).
WRONG_ANSWERS = {{
{wrong}
}}
'''


def _notebook(template: object, number: int, title: str, url: str | None) -> object:
    nbf = nbformat()
    v4 = nbf.v4
    setup = copy.deepcopy(template.cells[0])
    if url:
        setup.source = _REPO_URL.sub(lambda m: f'{m.group("indent")}REPO_URL = "{url}"', setup.source)
    cells = [setup, v4.new_markdown_cell(f"# {number}. {title}\n\nTODO: two or three sentences: what this chapter "
                                         f"builds, and why, after chapter {number - 1}.")]
    cells += [v4.new_markdown_cell(f"{heading}\n\n{text}") for heading, text in _SECTIONS[:2]]
    cells.append(v4.new_code_cell(_PREAMBLE))
    cells += [v4.new_markdown_cell(f"{heading}\n\n{text}") for heading, text in _SECTIONS[2:]]
    cells.append(v4.new_markdown_cell("## Checking the results\n\nEvery figure the prose quotes, checked (a failing "
                                      "check raises, so the chapter's test fails)."))
    cells.append(v4.new_code_cell(_CHECKING))
    cells.append(v4.new_markdown_cell("## Common pitfalls\n\n* TODO: the mistakes readers make, and how to see them."))
    for i, (name, signature, body, text, _, _) in enumerate(_EXERCISES, start=1):
        heading = "## Exercises\n\n" if i == 1 else ""
        cells.append(v4.new_markdown_cell(f"{heading}### Exercise {number}.{i}: {name.replace('_', ' ')}\n\n{text} "
                                          f"(A placeholder: replace it.)"))
        cells.append(v4.new_code_cell(f"def {name}({signature}):\n    {BEGIN_SOLUTION}\n    {body}\n    {END_SOLUTION}",
                                      metadata={"tags": ["hide-input"]}))
        cells.append(v4.new_code_cell(f"exercises.ch{number:02d}.check_{name}({name})"))
    cells.append(v4.new_markdown_cell("## Summary\n\n* TODO: one line per result, each with its number from the "
                                      "cells above.\n\n## References\n\n* TODO: cite with {cite:t}`key` (keys from "
                                      "book/references.bib).\n\nThe full list is on the [references page]"
                                      "(../book/references.md)."))
    nb = v4.new_notebook(cells=cells, metadata=copy.deepcopy(template.metadata))
    nb.metadata.pop("attnbook", None)
    return nb


def _add_to_toc(toc: Path, entry: str) -> None:
    lines = toc.read_text(encoding="utf-8").split("\n")
    chapters = [i for i, line in enumerate(lines) if re.match(r"^\s*- file: notebooks/", line)]
    if not chapters:
        raise ValueError(f"expected chapter entries ('- file: notebooks/...') in {toc}, found none")
    last = chapters[-1]
    indent = lines[last][: len(lines[last]) - len(lines[last].lstrip())]
    lines.insert(last + 1, f"{indent}- file: {entry}")
    toc.write_text("\n".join(lines), encoding="utf-8")


def new_chapter(root: str | Path, number: int, title: str, *, slug: str | None = None) -> list[Path]:
    """Write chapter ``number``'s skeleton into the repository at ``root``; return the paths written."""
    if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 99:
        raise ValueError(f"expected the chapter number as an int from 1 to 99, got {number!r}")
    if not isinstance(title, str) or not title.strip():
        raise ValueError(f"expected a non-empty title, got {title!r}")
    root = Path(root)
    notebooks, toc = root / "notebooks", root / "_toc.yml"
    module = root / "src" / "attnbook" / "course" / "exercises" / f"ch{number:02d}.py"
    existing = sorted(notebooks.glob("[0-9][0-9]_*.ipynb"))
    if not existing or not toc.is_file() or not module.parent.is_dir():
        raise ValueError(f"expected a repository with notebooks/NN_*.ipynb, _toc.yml and {module.parent} at "
                         f"{str(root)!r}")
    taken = [p for p in existing if p.name.startswith(f"{number:02d}_")]
    if taken or module.exists():
        raise ValueError(f"expected chapter {number} to be new, but {(taken or [module])[0]} exists")
    nbf = nbformat()
    url = None
    config = root / "_config.yml"
    if config.is_file():
        match = re.search(r"^repository:\s*\n(?:[ \t]+.*\n)*?[ \t]+url:\s*(\S+)", config.read_text(encoding="utf-8"),
                          re.M)
        url = match.group(1).strip("'\"").rstrip("/") if match else None
    path = notebooks / f"{number:02d}_{slug or slug_of(title)}.ipynb"
    nbf.write(_notebook(nbf.read(existing[-1], as_version=4), number, title.strip(), url), path)
    module.write_text(_module_source(number, title.strip()), encoding="utf-8")
    _add_to_toc(toc, f"notebooks/{path.stem}")
    return [path, module, toc]
