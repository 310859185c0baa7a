"""tools/nbval_cache.py: nbval's run of a notebook fills the book's jupyter-cache.

`make test` runs the chapters once, under nbval; the book build then renders the outputs
from the cache instead of executing the chapters again. These tests run the plugin on
tiny notebooks in a temporary folder and check that

- a notebook that passes is cached, a jupyter-cache lookup (what the book build does)
  finds it, and its cached outputs equal those of a direct nbclient execution;
- a failing cell still fails the pytest run, and that notebook is not cached;
- a notebook whose code changed after nbval ran is not served from the cache;
- a Sphinx + myst-nb build with ``nb_execution_mode = "cache"`` (what Jupyter Book runs)
  renders the cached outputs without executing, executes the changed notebook, and fills
  the execution table with the run time nbval measured.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}

# A random number: if the book build executed the notebook again, it would show another.
GOOD = [
    "import random\nvalue = random.random()\nprint('value =', repr(value))\nprint('second line')",
    "from IPython.display import HTML, clear_output, display\n"
    "display(HTML('<b>first</b>'))\nclear_output(wait=True)\ndisplay(HTML('<b>shown</b>'))\n"
    "handle = display(HTML('<i>old</i>'), display_id=True)\nhandle.update(HTML('<i>updated</i>'))\n"
    "value > -1",
]
DETERMINISTIC = [
    "print('a')\nprint('b')",
    "from IPython.display import HTML, clear_output, display\n"
    "display(HTML('<i>x</i>'))\nclear_output(wait=True)\ndisplay(HTML('<i>y</i>'))\n"
    "h = display(HTML('old'), display_id=True)\nh.update(HTML('new'))\nprint('c')\n6 * 7",
]
STALE = ["print('stale run:', 1 + 1)"]
BAD = ["x = 1", "raise AssertionError('FAILED CHECK: expected 2, got 1')", "print('never')"]


def _write(path: Path, sources: list[str], title: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = KERNELSPEC
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}")]
    nb.cells += [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, path)
    return path


def _run_nbval(folder: Path, cache: Path, *notebooks: Path, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    (folder / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "pytest", "-c", str(folder / "pytest.ini"), "-p", "no:cacheprovider",
               "-p", "tools.nbval_cache", "--nbval-cache", str(cache), "--nbval-lax", "--nbval-current-env",
               *extra, *map(str, notebooks)]
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=300)


def _cache(path: Path):
    from jupyter_cache import get_cache

    return get_cache(str(path))


def _code_outputs(nb: nbformat.NotebookNode) -> list[list[dict]]:
    """Each code cell's outputs, consecutive stream chunks joined (the kernel may split a
    stream into chunks differently from run to run; the page shows the same text)."""
    cells = []
    for cell in (c for c in nb.cells if c.cell_type == "code"):
        outputs: list[dict] = []
        for output in cell.outputs:
            output = {k: v for k, v in output.items() if k != "metadata" or v}
            if (output["output_type"] == "stream" and outputs and outputs[-1]["output_type"] == "stream"
                    and outputs[-1]["name"] == output["name"]):
                outputs[-1] = dict(outputs[-1], text=outputs[-1]["text"] + output["text"])
            else:
                outputs.append(output)
        cells.append(outputs)
    return cells


@pytest.fixture(scope="module")
def nbval_run(tmp_path_factory: pytest.TempPathFactory):
    """One nbval session over a passing, a deterministic, a later-changed and a failing notebook."""
    folder = tmp_path_factory.mktemp("nbval_cache")
    notebooks = {
        "good": _write(folder / "good.ipynb", GOOD, "Good"),
        "deterministic": _write(folder / "deterministic.ipynb", DETERMINISTIC, "Deterministic"),
        "stale": _write(folder / "stale.ipynb", STALE, "Stale"),
        "bad": _write(folder / "bad.ipynb", BAD, "Bad"),
    }
    cache = folder / "_build" / ".jupyter_cache"
    left_over = _write(folder / "left_over.ipynb", ["print('from an earlier run')"], "Left over")
    _cache(cache).cache_notebook_file(str(left_over), check_validity=False)
    result = _run_nbval(folder, cache, *notebooks.values())
    return folder, notebooks, cache, result


def test_under_xdist_each_worker_caches_what_it_ran(tmp_path: Path) -> None:
    """`-n 2 --dist loadfile`: the controller empties the cache, both workers write to it."""
    pytest.importorskip("xdist")
    notebooks = [_write(tmp_path / f"nb{i}.ipynb", [f"print({i})", "print('done')"], f"N{i}") for i in range(3)]
    bad = _write(tmp_path / "bad.ipynb", BAD, "Bad")
    cache = tmp_path / "_build" / ".jupyter_cache"
    left_over = _write(tmp_path / "left_over.ipynb", ["print('from an earlier run')"], "Left over")
    _cache(cache).cache_notebook_file(str(left_over), check_validity=False)
    result = _run_nbval(tmp_path, cache, *notebooks, bad, extra=("-n", "2", "--dist", "loadfile"))
    assert result.returncode == 1 and "FAILED CHECK: expected 2, got 1" in result.stdout, result.stdout
    records = {Path(r.uri).name for r in _cache(cache).list_cache_records()}
    assert records == {"nb0.ipynb", "nb1.ipynb", "nb2.ipynb"}, (records, result.stdout)
    assert result.stdout.count(": cached") == 3, result.stdout


def test_a_failing_cell_still_fails_the_run(nbval_run) -> None:
    _, _, _, result = nbval_run
    assert result.returncode == 1, f"expected pytest to fail (exit 1), got {result.returncode}:\n{result.stdout}"
    assert "FAILED CHECK: expected 2, got 1" in result.stdout, result.stdout
    assert re.search(r"\b1 failed, 7 passed\b", result.stdout), result.stdout


def test_only_passing_notebooks_are_cached(nbval_run) -> None:
    _, notebooks, cache, result = nbval_run
    records = {Path(r.uri).name for r in _cache(cache).list_cache_records()}
    # left_over.ipynb was in the cache before the run: the plugin empties it first.
    assert records == {"good.ipynb", "deterministic.ipynb", "stale.ipynb"}, (records, result.stdout)
    with pytest.raises(KeyError):
        _cache(cache).match_cache_notebook(nbformat.read(notebooks["bad"], 4))


def test_lookup_hits_and_outputs_equal_a_direct_execution(nbval_run) -> None:
    from nbclient import NotebookClient

    folder, notebooks, cache, _ = nbval_run
    source = nbformat.read(notebooks["deterministic"], 4)
    record = _cache(cache).match_cache_notebook(source)  # KeyError if the book build would miss
    assert record.data["execution_seconds"] > 0
    _, cached = _cache(cache).merge_match_into_notebook(source)
    direct = NotebookClient(copy.deepcopy(source), kernel_name="python3", resources={"metadata": {"path": folder}},
                            record_timing=False).execute()
    assert _code_outputs(cached) == _code_outputs(direct)
    assert [c.execution_count for c in cached.cells if c.cell_type == "code"] == [1, 2]
    assert any(o.get("output_type") == "execute_result" and o["data"]["text/plain"] == "42"
               for o in cached.cells[-1].outputs)


def test_book_build_renders_the_cache_and_executes_what_changed(nbval_run) -> None:
    folder, notebooks, cache, _ = nbval_run
    cached_value = re.search(r"value = ([0-9.e-]+)", str(_cache(cache).merge_match_into_notebook(
        nbformat.read(notebooks["good"], 4))[1].cells[1].outputs))
    assert cached_value, "expected the cached 'good' notebook to hold its printed value"
    stale = nbformat.read(notebooks["stale"], 4)
    stale.cells[1].source = "print('fresh run:', 2 + 2)"  # changed after nbval ran it
    nbformat.write(stale, notebooks["stale"])
    notebooks["bad"].unlink()
    (folder / "conf.py").write_text(
        'extensions = ["myst_nb"]\nnb_execution_mode = "cache"\n'
        'exclude_patterns = ["_build", "deterministic.ipynb", "left_over.ipynb", "pytest.ini"]\n', encoding="utf-8")
    (folder / "index.md").write_text("# Book\n\n```{toctree}\ngood\nstale\n```\n\n```{nb-exec-table}\n```\n",
                                     encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-v", ".", "_build/html"], cwd=folder,
                            capture_output=True, text=True, timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert re.search(r"good\.ipynb: Using cached notebook", log), log
    assert re.search(r"stale\.ipynb: Executing notebook", log), log
    good_html = (folder / "_build" / "html" / "good.html").read_text(encoding="utf-8")
    assert f"value = {cached_value.group(1)}" in good_html, "expected the book page to show the cached output"
    # Raw HTML appears only in outputs (the source on the page is escaped).
    assert "<b>shown</b>" in good_html and "<i>updated</i>" in good_html, good_html
    assert "<b>first</b>" not in good_html and "<i>old</i>" not in good_html, good_html
    stale_html = (folder / "_build" / "html" / "stale.html").read_text(encoding="utf-8")
    assert "fresh run: 4" in stale_html and "stale run" not in stale_html
    index = re.sub(r"\s+", " ", (folder / "_build" / "html" / "index.html").read_text(encoding="utf-8"))
    runtime = re.search(r'href="good.html".*?<td><p>cache</p></td> <td><p>([0-9.]+)</p></td>', index)
    assert runtime and float(runtime.group(1)) > 0, "expected the execution table to list good with its run time"


def test_a_folder_that_is_not_a_cache_is_not_emptied(tmp_path: Path) -> None:
    notebook = _write(tmp_path / "nb.ipynb", ["print(1)"], "Nb")
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "work.txt").write_text("keep me", encoding="utf-8")
    result = _run_nbval(tmp_path, tmp_path / "precious", notebook)
    assert result.returncode == 4 and "expected a jupyter-cache folder" in result.stderr, result
    assert (tmp_path / "precious" / "work.txt").read_text(encoding="utf-8") == "keep me"


def test_plugin_needs_nbval(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", "pytest", "-c", str(tmp_path / "pytest.ini"), "-p",
                             "no:cacheprovider", "-p", "tools.nbval_cache", "--nbval-cache", str(tmp_path / "c"),
                             str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 4 and "--nbval-cache needs --nbval or --nbval-lax" in result.stderr, result
