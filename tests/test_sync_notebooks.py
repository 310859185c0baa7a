"""tools/sync_notebooks.py (`make sync`): the notebooks' Colab install pinned to _config.yml.

Run on copies in a temporary folder; the notebooks in notebooks/ are checked by
tests/test_notebooks_clean.py.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
URL = "https://github.com/example/course"

# The set-up cell as the chapters had it before the pin existed.
UNPINNED = '''# Set-up: on Colab this installs the book's package `attnbook`; locally it does nothing.
import subprocess, sys
REPO_URL = "https://github.com/attnbook/attention-book"
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"attnbook @ git+{REPO_URL}"], check=True)'''

PINNED = f'''# Set-up: on Colab this installs the book's package `attnbook`; locally it does nothing.
import subprocess, sys
REPO_URL = "{URL}"
REPO_REF = "v2.3.0"
if "google.colab" in sys.modules:
    package = f"attnbook @ git+{{REPO_URL}}@{{REPO_REF}}"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", package], check=True)'''


def _tool():
    spec = importlib.util.spec_from_file_location("sync_notebooks", ROOT / "tools" / "sync_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sync_notebooks = _tool()


def _notebook(path: Path, first: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), nbformat.v4.new_code_cell(first),
                nbformat.v4.new_code_cell('REPO_REF = "not the set-up cell"')]
    nbformat.write(nb, path)
    return path


def _config(tmp_path: Path, ref: object = "v2.3.0", url: str = URL) -> Path:
    text = (ROOT / "_config.yml").read_text(encoding="utf-8")
    text = re.sub(r"(?m)^  url: .*$", f"  url: {url}", text, count=1)
    text = re.sub(r"(?m)^  ref: .*$", f"  ref: {ref}", text, count=1)
    path = tmp_path / "_config.yml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_config_has_a_pinned_ref() -> None:
    ref = sync_notebooks.repository_ref()
    assert ref and ref not in {"main", "master", "HEAD"}, (
        f"expected repository.ref in _config.yml to pin a release (a tag or commit), got {ref!r}")


def test_a_version_tag_is_the_package_version() -> None:
    """A `vX.Y.Z` pin names the version in pyproject.toml: bump both together."""
    import tomllib

    ref = sync_notebooks.repository_ref()
    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    if re.fullmatch(r"v\d+(\.\d+)*\S*", ref):
        assert ref == f"v{version}", (f"repository.ref in _config.yml is {ref!r} but pyproject.toml's version is "
                                      f"{version!r}; bump them together (README, Publishing)")


def test_sync_pins_an_unpinned_notebook_and_is_idempotent(tmp_path: Path) -> None:
    config = _config(tmp_path)
    path = _notebook(tmp_path / "01_x.ipynb", UNPINNED)
    assert sync_notebooks.main(["--check", "--config", str(config), str(path)]) == 1
    assert nbformat.read(path, 4).cells[1].source == UNPINNED, "expected --check to change nothing"
    assert sync_notebooks.main(["--config", str(config), str(path)]) == 0
    nb = nbformat.read(path, 4)
    assert nb.cells[1].source == PINNED
    assert nb.cells[2].source == 'REPO_REF = "not the set-up cell"', "expected only the first code cell changed"
    assert sync_notebooks.notebook_ref(path) == "v2.3.0" and sync_notebooks.installs_pinned(path)
    assert max(len(line) for line in PINNED.splitlines()) <= 91
    assert sync_notebooks.main(["--check", "--config", str(config), str(path)]) == 0
    before = path.read_bytes()
    assert sync_notebooks.main(["--config", str(config), str(path)]) == 0
    assert path.read_bytes() == before, "expected a second sync to change nothing"


def test_a_new_ref_is_copied_and_a_stale_one_reported(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = _notebook(tmp_path / "01_x.ipynb", PINNED)
    assert sync_notebooks.main(["--check", "--config", str(_config(tmp_path, "v2.3.0")), str(path)]) == 0
    newer = _config(tmp_path, "v2.4.0")
    assert sync_notebooks.main(["--check", "--config", str(newer), str(path)]) == 1
    assert "make sync" in capsys.readouterr().err
    assert sync_notebooks.main(["--config", str(newer), str(path)]) == 0
    assert nbformat.read(path, 4).cells[1].source == PINNED.replace("v2.3.0", "v2.4.0")
    commit = "0123456789abcdef0123456789abcdef01234567"
    assert sync_notebooks.sync(path, URL, commit) is True
    assert sync_notebooks.notebook_ref(path) == commit


def test_the_real_notebooks_sync_on_a_copy(tmp_path: Path) -> None:
    """`make sync` on copies of the chapters: afterwards the hygiene checks hold."""
    copies = []
    for source in sorted((ROOT / "notebooks").glob("*.ipynb")):
        copies.append(tmp_path / source.name)
        shutil.copy(source, copies[-1])
    assert copies, "expected chapter notebooks in notebooks/"
    url, ref = sync_notebooks.repository_url(), sync_notebooks.repository_ref()
    assert sync_notebooks.main([*map(str, copies)]) == 0
    for path in copies:
        assert sync_notebooks.notebook_url(path) == url and sync_notebooks.notebook_ref(path) == ref
        assert sync_notebooks.installs_pinned(path)
        nbformat.validate(nbformat.read(path, nbformat.NO_CONVERT))
    assert sync_notebooks.main(["--check", *map(str, copies)]) == 0


@pytest.mark.parametrize("ref, message", [
    (None, "expected repository.ref"),
    ("'v1 .0'", "expected repository.ref in _config.yml to be a git tag or commit"),
    ("'@v1'", "expected repository.ref in _config.yml to be a git tag or commit"),
    ("3", "got 3"),
])
def test_a_bad_ref_in_the_config_is_refused(tmp_path: Path, ref: str | None, message: str) -> None:
    config = _config(tmp_path, "DROP" if ref is None else ref)
    if ref is None:
        config.write_text(re.sub(r"(?m)^  ref: DROP\n", "", config.read_text(encoding="utf-8")), encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(message)):
        sync_notebooks.repository_ref(config)


def test_a_cell_without_an_install_line_is_refused(tmp_path: Path) -> None:
    path = _notebook(tmp_path / "01_x.ipynb", 'REPO_URL = "https://github.com/a/b"\nprint("no install")')
    with pytest.raises(ValueError, match="expected the first code cell to install"):
        sync_notebooks.sync(path, URL, "v1.0.0")
    path = _notebook(tmp_path / "02_x.ipynb", 'print("no REPO_URL")')
    with pytest.raises(ValueError, match="expected one line `REPO_URL"):
        sync_notebooks.sync(path, URL, "v1.0.0")
