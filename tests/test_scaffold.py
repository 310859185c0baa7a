"""``python -m attnbook.course new-chapter``: a new chapter's skeleton passes the tests as it is.

In a copy of the repository, the scaffold writes the next chapter (one after the last); then, with no other file
edited, the hygiene tests and the exercise suite pass for it (run in the copy, with the
copy's package first on the path), and the notebook runs from top to bottom.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from attnbook.course.scaffold import new_chapter, slug_of

ROOT = Path(__file__).resolve().parent.parent
NEW = 1 + max(int(p.name[:2]) for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))  # the next chapter
SLUG = f"{NEW:02d}_attention_on_graphs"


def _copy_repository(target: Path) -> None:
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout of the repository")
    copy = tmp_path_factory.mktemp("repo")
    _copy_repository(copy)
    env = {**os.environ, "PYTHONPATH": str(copy / "src")}
    done = subprocess.run([sys.executable, "-m", "attnbook.course", "new-chapter", str(NEW), "Attention on graphs",
                           "--root", str(copy)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return copy


def test_the_scaffold_writes_the_notebook_the_module_and_the_toc_entry_only(repository: Path):
    changed = {str(p.relative_to(repository)) for p in repository.rglob("*") if p.is_file()
               and (not (ROOT / p.relative_to(repository)).is_file()
                    or (ROOT / p.relative_to(repository)).read_bytes() != p.read_bytes())}
    assert changed == {f"notebooks/{SLUG}.ipynb", f"src/attnbook/course/exercises/ch{NEW:02d}.py", "_toc.yml"}
    nb = nbformat.read(repository / "notebooks" / f"{SLUG}.ipynb", as_version=4)
    first = nbformat.read(sorted((ROOT / "notebooks").glob("*.ipynb"))[-1], as_version=4).cells[0]
    assert nb.cells[0].source == first.source and "REPO_URL" in nb.cells[0].source
    assert nb.metadata["accelerator"] == "GPU"
    headings = [c.source.split("\n")[0] for c in nb.cells if c.cell_type == "markdown"]
    for section in ("## Learning goals", "## The math", "## Checking the results", "## Common pitfalls",
                    "## Exercises", f"### Exercise {NEW}.3: largest"):
        assert any(h.startswith(section) or section in c.source for h, c in
                   zip(headings, [c for c in nb.cells if c.cell_type == "markdown"])), section


def test_the_new_chapter_passes_the_hygiene_tests_and_the_exercise_suite(repository: Path):
    env = {**os.environ, "PYTHONPATH": str(repository / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/test_notebooks_clean.py", "tests/test_exercises.py",
                           "-k", f"{NEW} or toc or every_chapter_with"], cwd=repository, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout and SLUG in subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "tests/test_notebooks_clean.py"], cwd=repository, env=env, capture_output=True, text=True).stdout


def test_the_new_chapter_runs(repository: Path):
    from nbclient import NotebookClient

    path = repository / "notebooks" / f"{SLUG}.ipynb"
    nb = nbformat.read(path, as_version=4)
    os.environ["PYTHONPATH"], old = str(repository / "src"), os.environ.get("PYTHONPATH")
    try:
        NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        os.environ["PYTHONPATH"] = old if old is not None else ""
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert text.count("PASS") == 4, text


def test_the_scaffold_refuses_bad_input_and_existing_chapters(tmp_path: Path, repository: Path):
    assert slug_of("Attention on graphs!") == "attention_on_graphs"
    with pytest.raises(ValueError, match=f"expected chapter {NEW} to be new"):
        new_chapter(repository, NEW, "Again")
    with pytest.raises(ValueError, match="int from 1 to 99"):
        new_chapter(repository, 0, "Zero")
    with pytest.raises(ValueError, match="non-empty title"):
        new_chapter(repository, 12, " ")
    with pytest.raises(ValueError, match="expected a repository"):
        new_chapter(tmp_path, 12, "Somewhere else")
