"""The map from each chapter to the package modules it uses (in attnbook's docstring and README) is true."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

import attnbook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# Course tooling and the device picker are used by every chapter; the map lists the concepts.
COMMON = {"check", "exercises", "course", "course.check", "course.exercises", "device"}
IMPORT = re.compile(r"^\s*(?:from|import)\s+attnbook\.([\w.]+)", re.M)


def used_modules(path: Path) -> set[str]:
    nb = nbformat.read(path, as_version=4)
    found: set[str] = set()
    for cell in nb.cells:
        if cell.cell_type == "code":
            found.update(IMPORT.findall(cell.source))
    return {m for m in found if m not in COMMON and not m.startswith(("exercises.", "course."))}


def parse_map(text: str) -> dict[int, set[str]]:
    """Rows ``NN  module, module, ...`` of the block that follows a line ending in 'modules it uses:'."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.rstrip().endswith("modules it uses:")), None)
    if start is None:
        raise ValueError("expected a line ending in 'modules it uses:' followed by the chapter rows, got none")
    rows: dict[int, set[str]] = {}
    for line in lines[start + 1:]:
        m = re.match(r"^\s*\|?\s*(\d{1,2})\b[^|]*?\|?\s*([a-z_][\w., `]*)\|?\s*$", line)
        if not line.strip():
            if rows:
                break
            continue
        if m is None:
            if rows:
                break
            continue
        rows[int(m.group(1))] = {x.strip(" `") for x in m.group(2).split(",") if x.strip(" `")}
    return rows


def test_parse_map_reads_rows_and_fails_without_a_header() -> None:
    rows = parse_map("Chapters and the modules it uses:\n\n  1  rnn, tasks\n  2  scoring\n\nrest")
    assert rows == {1: {"rnn", "tasks"}, 2: {"scoring"}}
    with pytest.raises(ValueError, match="modules it uses"):
        parse_map("no map here")


@pytest.mark.parametrize("source", ["docstring", "README"])
def test_the_chapter_map_matches_the_notebooks(source: str) -> None:
    text = attnbook.__doc__ if source == "docstring" else (ROOT / "README.md").read_text()
    rows = parse_map(text)
    for path in NOTEBOOKS:
        number = int(path.name[:2])
        used = used_modules(path)
        assert number in rows, f"{source}: chapter {number} is missing from the chapter map (it uses {sorted(used)})"
        assert rows[number] == used, (f"{source}: chapter {number} uses {sorted(used)}, the map says "
                                      f"{sorted(rows[number])}")
    assert set(rows) == {int(p.name[:2]) for p in NOTEBOOKS}, f"{source}: the map lists chapters with no notebook"
