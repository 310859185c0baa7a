"""Code in the chapters fits the book's text column: no code line over 88 characters.

The rendered book shows code cells in a column about 88 characters wide; a longer line is
cut off behind a horizontal scroll bar (tests/test_site.py checks the rendered pages
themselves). This static test reads the stored notebooks, so it runs in a fraction of a
second and names every line to wrap: notebook, cell (index and id), line number, length
and the line's start. Cells the book does not show (tagged ``remove-cell`` or
``remove-input``, such as the Colab set-up cell every chapter starts with) are not
measured.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MAX_CHARS = 88
NOT_IN_THE_BOOK = {"remove-cell", "remove-input"}  # Jupyter Book tags that hide a cell's code


def long_lines(notebook: dict, max_chars: int = MAX_CHARS) -> list[str]:
    """One message per code line longer than ``max_chars``, in cell order."""
    problems = []
    for index, cell in enumerate(notebook.get("cells", [])):
        if cell.get("cell_type") != "code" or NOT_IN_THE_BOOK & set(cell.get("metadata", {}).get("tags", [])):
            continue
        source = cell.get("source", "")
        text = "".join(source) if isinstance(source, list) else source
        for number, line in enumerate(text.splitlines(), start=1):
            if len(line) > max_chars:
                problems.append(f"cell {index} (id {cell.get('id', '?')}), line {number}: {len(line)} characters: "
                                f"{line.strip()[:70]!r}")
    return problems


def _cell(source: str, cell_type: str = "code", cell_id: str = "c", tags: tuple[str, ...] = ()) -> dict:
    return {"cell_type": cell_type, "id": cell_id, "source": source.splitlines(keepends=True),
            "metadata": {"tags": list(tags)}}


def test_long_lines_finds_exactly_the_long_code_lines() -> None:
    notebook = {"cells": [
        _cell("x = 1\n" + "y = " + "1" * 85 + "\n", cell_id="a"),   # line 2: 89 characters
        _cell("z" * 200, cell_type="markdown", cell_id="b"),          # prose may be long
        _cell("w = " + "2" * 84, cell_id="c"),                        # exactly 88: fine
        _cell("v" * 120, cell_id="d", tags=("remove-cell",)),         # not shown in the book
        _cell("u" * 120, cell_id="e", tags=("hide-input",)),          # collapsed, but shown: long
    ]}
    problems = long_lines(notebook)
    assert len(problems) == 2, f"expected two long lines, got {problems}"
    assert problems[0].startswith("cell 0 (id a), line 2: 89 characters"), problems[0]
    assert problems[1].startswith("cell 4 (id e), line 1: 120 characters"), problems[1]
    assert long_lines({"cells": [_cell("a" * 88)]}) == []


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "expected chapter notebooks in notebooks/, found none"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_code_lines_fit_the_column(notebook: Path) -> None:
    problems = long_lines(json.loads(notebook.read_text(encoding="utf-8")))
    assert not problems, (f"notebooks/{notebook.name}: {len(problems)} code line(s) over {MAX_CHARS} characters "
                          f"(wrap them to fit the book's column):\n  " + "\n  ".join(problems))
