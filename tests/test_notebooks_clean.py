"""Notebook hygiene: what every chapter notebook in notebooks/ must look like in git.

Clean (no outputs, no execution counts), valid nbformat v4, in the table of contents,
set up for Colab (a GPU runtime; REPO_URL and the pinned release REPO_REF from
_config.yml), and with at least three exercises whose solutions are marked for nbgrader
and collapsed in the book.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
MIN_SOLUTIONS = 3


def _load_sync_tool():
    spec = importlib.util.spec_from_file_location("sync_notebooks", ROOT / "tools" / "sync_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sync_notebooks = _load_sync_tool()


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=nbformat.NO_CONVERT)


def _toc_files(node: object) -> list[str]:
    """Every `file:` entry of _toc.yml (root included), without suffix."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"file", "root"} and isinstance(value, str):
                found.append(str(Path(value).with_suffix("")) if Path(value).suffix in {".ipynb", ".md"} else value)
            else:
                found += _toc_files(value)
    elif isinstance(node, list):
        for item in node:
            found += _toc_files(item)
    return found


def _solution_cells(nb: nbformat.NotebookNode) -> list[tuple[int, nbformat.NotebookNode]]:
    return [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code" and BEGIN in c.source]


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "expected chapter notebooks in notebooks/, found none"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_valid_nbformat_v4(path: Path) -> None:
    nb = _read(path)
    assert nb.nbformat == 4, f"{path.name}: expected nbformat 4, got {nb.nbformat}"
    nbformat.validate(nb)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_no_outputs_or_execution_counts(path: Path) -> None:
    nb = _read(path)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, (f"{path.name}: expected clean cells, but code cells {dirty} have outputs or execution "
                       f"counts; clear them (Jupyter: Edit > Clear Outputs of All Cells, or "
                       f"`jupyter nbconvert --clear-output --inplace {path.relative_to(ROOT)}`)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_repo_url_matches_config(path: Path) -> None:
    expected = sync_notebooks.repository_url()
    got = sync_notebooks.notebook_url(path)
    assert got is not None, f'{path.name}: expected a line `REPO_URL = "{expected}"` in the first code cell, found none'
    assert got == expected, (f"{path.name}: REPO_URL is {got!r} but _config.yml's repository.url is {expected!r}; "
                             f"run `make sync`")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_install_pinned_to_config_ref(path: Path) -> None:
    expected = sync_notebooks.repository_ref()
    got = sync_notebooks.notebook_ref(path)
    assert got == expected, (f'{path.name}: expected a line `REPO_REF = "{expected}"` (repository.ref in '
                             f"_config.yml) in the first code cell, got {got!r}; run `make sync`")
    assert sync_notebooks.installs_pinned(path), (
        f"{path.name}: expected the first code cell to install "
        f'f"attnbook @ {sync_notebooks.PINNED_SPEC}" (the pinned release), found an unpinned install; '
        f"run `make sync`")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_colab_asks_for_a_gpu(path: Path) -> None:
    metadata = _read(path).metadata
    assert metadata.get("accelerator") == "GPU", (
        f"{path.name}: expected notebook metadata \"accelerator\": \"GPU\" (Colab then offers a GPU runtime), "
        f"got {metadata.get('accelerator')!r}")


def test_toc_lists_every_notebook_and_nothing_else() -> None:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    listed = {f for f in _toc_files(toc) if f.startswith("notebooks/")}
    present = {f"notebooks/{p.stem}" for p in NOTEBOOKS}
    assert not present - listed, f"notebooks missing from _toc.yml: {sorted(present - listed)}"
    assert not listed - present, f"_toc.yml lists notebooks that do not exist: {sorted(listed - present)}"
    for entry in _toc_files(toc):
        if not entry.startswith("notebooks/"):
            assert any((ROOT / f"{entry}{s}").exists() for s in (".md", ".ipynb")), \
                f"_toc.yml lists {entry}, which does not exist"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_solution_cells_are_marked_and_collapsed(path: Path) -> None:
    nb = _read(path)
    problems = []
    for i, cell in enumerate(nb.cells):
        has_begin, has_end = BEGIN in cell.source, END in cell.source
        if cell.cell_type != "code" and (has_begin or has_end):
            problems.append(f"cell {i}: solution markers belong in code cells, found in a {cell.cell_type} cell")
        if has_begin != has_end or cell.source.count(BEGIN) != cell.source.count(END):
            problems.append(f"cell {i}: expected every {BEGIN!r} to be closed by {END!r} in the same cell")
        elif has_begin and cell.source.index(BEGIN) > cell.source.rindex(END):
            problems.append(f"cell {i}: {END!r} comes before {BEGIN!r}")
    for i, cell in _solution_cells(nb):
        if "hide-input" not in cell.metadata.get("tags", []):
            problems.append(f"cell {i}: a solution cell needs the tag 'hide-input' so the book collapses it "
                            f"(has tags {cell.metadata.get('tags', [])})")
    assert not problems, f"{path.name}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_at_least_three_exercises(path: Path) -> None:
    count = len(_solution_cells(_read(path)))
    assert count >= MIN_SOLUTIONS, (
        f"{path.name}: expected at least {MIN_SOLUTIONS} exercise solution cells (code cells with "
        f"{BEGIN!r} ... {END!r}, tagged 'hide-input'), found {count}")
