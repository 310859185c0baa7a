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
    """Rows ``NN  module, module, ...`` (or Markdown ``| NN | `module`, ... |``) after a line ending
    in 'modules it uses:'; a row may go on over indented lines that start with a module name."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.rstrip().rstrip("|").rstrip().endswith("modules it uses:")
                  or line.rstrip().endswith("modules it uses |")), None)
    if start is None:
        raise ValueError("expected a line ending in 'modules it uses:' followed by the chapter rows, got none")
    rows: dict[int, set[str]] = {}
    last = None
    for line in lines[start + 1:]:
        cleaned = line.replace("`", "").strip().strip("|").strip()
        if not cleaned or set(cleaned) <= set("-| "):
            if rows:
                break
            continue
        m = re.match(r"^(\d{1,2})\s*\|?\s+([a-z_][\w., |]*)$", cleaned)
        if m:
            last = int(m.group(1))
            rows[last] = set()
            names = m.group(2)
        elif last is not None and re.match(r"^[a-z_][\w., ]*$", cleaned):
            names = cleaned
        else:
            break
        rows[last] |= {x.strip(" |") for x in names.split(",") if x.strip(" |")}
    return rows


def test_parse_map_reads_rows_and_fails_without_a_header() -> None:
    rows = parse_map("Chapters and the modules it uses:\n\n  1  rnn, tasks,\n     cost\n  2  scoring\n\nrest")
    assert rows == {1: {"rnn", "tasks", "cost"}, 2: {"scoring"}}
    table = "| chapter | modules it uses |\n| --- | --- |\n| 1 | `rnn`, `tasks` |\n| 10 | `ssm` |\n"
    assert parse_map(table) == {1: {"rnn", "tasks"}, 10: {"ssm"}}
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
