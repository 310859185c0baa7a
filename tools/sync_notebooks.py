"""Copy the repository URL from _config.yml into every chapter notebook.

The URL is set in ONE place, ``repository.url`` in _config.yml. Each notebook's first
code cell holds a line ``REPO_URL = "..."`` (used on Colab to ``pip install`` the
companion package from the repository); this script rewrites that line and nothing
else, and writes the notebook back as clean nbformat JSON (1-space indent).

Usage:
    python tools/sync_notebooks.py          # rewrite the notebooks that differ
    python tools/sync_notebooks.py --check  # only report them; exit 1 if any differ
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
REPO_URL_LINE = re.compile(r'^(?P<indent>[ \t]*)REPO_URL\s*=\s*(?P<quote>["\'])(?P<url>.*?)(?P=quote)[ \t]*$', re.M)


def repository_url(config: Path = ROOT / "_config.yml") -> str:
    """The repository URL from _config.yml (``repository.url``), without a trailing slash."""
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    try:
        url = data["repository"]["url"]
    except (KeyError, TypeError):
        raise ValueError(f"expected repository.url in {config.name}, found none") from None
    if not isinstance(url, str) or not url.startswith("https://"):
        raise ValueError(f"expected repository.url in {config.name} to be an https:// URL, got {url!r}")
    return url.rstrip("/")


def first_code_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    for cell in nb.cells:
        if cell.cell_type == "code":
            return cell
    raise ValueError("expected at least one code cell, found none")


def notebook_url(path: Path) -> str | None:
    """The REPO_URL value in the first code cell of the notebook at ``path`` (None if absent)."""
    nb = nbformat.read(path, as_version=4)
    match = REPO_URL_LINE.search(first_code_cell(nb).source)
    return match.group("url") if match else None


def sync(path: Path, url: str, *, write: bool = True) -> bool:
    """Set the REPO_URL line of one notebook to ``url``; return True if it changed."""
    nb = nbformat.read(path, as_version=4)
    cell = first_code_cell(nb)
    matches = list(REPO_URL_LINE.finditer(cell.source))
    if len(matches) != 1:
        raise ValueError(f"{path.name}: expected one line `REPO_URL = \"...\"` in the first code cell, "
                         f"found {len(matches)}")
    match = matches[0]
    line = f'{match.group("indent")}REPO_URL = "{url}"'
    if match.group(0) == line:
        return False
    if write:
        cell.source = cell.source[: match.start()] + line + cell.source[match.end():]
        nbformat.write(nb, path)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report notebooks that differ; change nothing")
    args = parser.parse_args(argv)
    url = repository_url()
    changed = [p for p in sorted(NOTEBOOKS.glob("*.ipynb")) if sync(p, url, write=not args.check)]
    for path in changed:
        verb = "differs from" if args.check else "updated to"
        print(f"{path.relative_to(ROOT)}: REPO_URL {verb} {url}")
    if args.check and changed:
        print("Run `make sync` to copy repository.url from _config.yml into the notebooks.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
