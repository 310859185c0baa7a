"""Code in the chapters fits the book's text column: no code line over 88 characters.

The rendered book shows code cells in a column about 88 characters wide; a longer line is
cut off behind a horizontal scroll bar (tests/test_site.py checks the rendered pages
themselves). This static test reads the stored notebooks, so it runs in a fraction of a
second and names every line to wrap: notebook, cell (index and id), line number, length
and the line's start.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MAX_CHARS = 88


def long_lines(notebook: dict, max_chars: int = MAX_CHARS) -> list[str]:
    """One message per code line longer than ``max_chars``, in cell order."""
    problems = []
    for index, cell in enumerate(notebook.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        text = "".join(source) if isinstance(source, list) else source
        for number, line in enumerate(text.splitlines(), start=1):
            if len(line) > max_chars:
                problems.append(f"cell {index} (id {cell.get('id', '?')}), line {number}: {len(line)} characters: "
                                f"{line.strip()[:70]!r}")
    return problems


def _cell(source: str, cell_type: str = "code", cell_id: str = "c") -> dict:
    return {"cell_type": cell_type, "id": cell_id, "source": source.splitlines(keepends=True)}


def test_long_lines_finds_exactly_the_long_code_lines() -> None:
    notebook = {"cells": [
        _cell("x = 1\n" + "y = " + "1" * 85 + "\n", cell_id="a"),   # line 2: 89 characters
        _cell("z" * 200, cell_type="markdown", cell_id="b"),          # prose may be long
        _cell("w = " + "2" * 84, cell_id="c"),                        # exactly 88: fine
    ]}
    problems = long_lines(notebook)
    assert len(problems) == 1, f"expected one long line, got {problems}"
    assert problems[0].startswith("cell 0 (id a), line 2: 89 characters"), problems[0]
    assert long_lines({"cells": [_cell("a" * 88)]}) == []


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "expected chapter notebooks in notebooks/, found none"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_code_lines_fit_the_column(notebook: Path) -> None:
    problems = long_lines(json.loads(notebook.read_text(encoding="utf-8")))
    assert not problems, (f"notebooks/{notebook.name}: {len(problems)} code line(s) over {MAX_CHARS} characters "
                          f"(wrap them to fit the book's column):\n  " + "\n  ".join(problems))
