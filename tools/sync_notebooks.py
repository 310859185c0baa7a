"""Copy the repository URL and the pinned release from _config.yml into every chapter notebook.

Both are set in ONE place, _config.yml: ``repository.url`` (where the package lives) and
``repository.ref`` (the git tag or commit of the release the book was written for). Each
notebook's first code cell installs the companion package on Colab from exactly that
release::

    REPO_URL = "https://github.com/ORG/REPO"
    REPO_REF = "v0.1.0"
    if "google.colab" in sys.modules:
        package = f"attnbook @ git+{REPO_URL}@{REPO_REF}"
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", package], check=True)

so a notebook opened months later still installs the package it was written for. This
script rewrites the ``REPO_URL`` and ``REPO_REF`` lines (adding ``REPO_REF`` after
``REPO_URL`` where it is missing, and pinning an unpinned install line) and nothing else,
and writes the notebook back as clean nbformat JSON (1-space indent).

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


def _assignment(name: str) -> re.Pattern[str]:
    return re.compile(rf'^(?P<indent>[ \t]*){name}\s*=\s*(?P<quote>["\'])(?P<value>.*?)(?P=quote)[ \t]*$', re.M)


REPO_URL_LINE = _assignment("REPO_URL")
REPO_REF_LINE = _assignment("REPO_REF")
PINNED_SPEC = "git+{REPO_URL}@{REPO_REF}"
# The install line written before the pin existed; sync() replaces it with the pinned one.
UNPINNED_INSTALL = re.compile(
    r'^(?P<indent>[ \t]*)subprocess\.run\(\[sys\.executable, "-m", "pip", "install", "-q", '
    r'f"attnbook @ git\+\{REPO_URL\}"\], check=True\)[ \t]*$', re.M)
PINNED_INSTALL = ('package = f"attnbook @ ' + PINNED_SPEC + '"',
                  'subprocess.run([sys.executable, "-m", "pip", "install", "-q", package], check=True)')
# A tag, branch or commit as git and pip accept it after "@" (no spaces, quotes or "@").
REF_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/+-]*")


def _repository(config: Path) -> dict:
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    repository = data.get("repository") if isinstance(data, dict) else None
    if not isinstance(repository, dict):
        raise ValueError(f"expected a `repository:` section in {config.name}, found {repository!r}")
    return repository


def repository_url(config: Path = ROOT / "_config.yml") -> str:
    """The repository URL from _config.yml (``repository.url``), without a trailing slash."""
    url = _repository(config).get("url")
    if url is None:
        raise ValueError(f"expected repository.url in {config.name}, found none")
    if not isinstance(url, str) or not url.startswith("https://"):
        raise ValueError(f"expected repository.url in {config.name} to be an https:// URL, got {url!r}")
    return url.rstrip("/")


def repository_ref(config: Path = ROOT / "_config.yml") -> str:
    """The pinned release from _config.yml (``repository.ref``): a git tag or commit."""
    ref = _repository(config).get("ref")
    if ref is None:
        raise ValueError(f"expected repository.ref (the git tag or commit the notebooks install) in "
                         f"{config.name}, found none")
    if not isinstance(ref, str) or not REF_PATTERN.fullmatch(ref):
        raise ValueError(f"expected repository.ref in {config.name} to be a git tag or commit such as "
                         f"'v0.1.0' (letters, digits and . _ / + -), got {ref!r}")
    return ref


def first_code_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    for cell in nb.cells:
        if cell.cell_type == "code":
            return cell
    raise ValueError("expected at least one code cell, found none")


def _value(pattern: re.Pattern[str], path: Path) -> str | None:
    match = pattern.search(first_code_cell(nbformat.read(path, as_version=4)).source)
    return match.group("value") if match else None


def notebook_url(path: Path) -> str | None:
    """The REPO_URL value in the first code cell of the notebook at ``path`` (None if absent)."""
    return _value(REPO_URL_LINE, path)


def notebook_ref(path: Path) -> str | None:
    """The REPO_REF value in the first code cell of the notebook at ``path`` (None if absent)."""
    return _value(REPO_REF_LINE, path)


def installs_pinned(path: Path) -> bool:
    """Whether the first code cell installs ``git+{REPO_URL}@{REPO_REF}`` (not an unpinned URL)."""
    return PINNED_SPEC in first_code_cell(nbformat.read(path, as_version=4)).source


def _one(pattern: re.Pattern[str], source: str, name: str, path: Path) -> re.Match[str] | None:
    matches = list(pattern.finditer(source))
    if len(matches) > 1:
        raise ValueError(f'{path.name}: expected at most one line `{name} = "..."` in the first code cell, '
                         f"found {len(matches)}")
    return matches[0] if matches else None


def synced_source(source: str, url: str, ref: str, path: Path = Path("notebook")) -> str:
    """The first cell's ``source`` with REPO_URL = ``url`` and the install pinned to REPO_REF = ``ref``."""
    url_match = _one(REPO_URL_LINE, source, "REPO_URL", path)
    if url_match is None:
        raise ValueError(f'{path.name}: expected one line `REPO_URL = "..."` in the first code cell, found none')
    indent = url_match.group("indent")
    source = source[: url_match.start()] + f'{indent}REPO_URL = "{url}"' + source[url_match.end():]
    ref_match = _one(REPO_REF_LINE, source, "REPO_REF", path)
    if ref_match is None:  # a notebook from before the pin: REPO_REF goes right below REPO_URL
        end = REPO_URL_LINE.search(source).end()
        source = source[:end] + f'\n{indent}REPO_REF = "{ref}"' + source[end:]
    else:
        line = f'{ref_match.group("indent")}REPO_REF = "{ref}"'
        source = source[: ref_match.start()] + line + source[ref_match.end():]
    source = UNPINNED_INSTALL.sub(lambda m: "\n".join(m.group("indent") + line for line in PINNED_INSTALL), source)
    if PINNED_SPEC not in source:
        raise ValueError(f"{path.name}: expected the first code cell to install "
                         f'f"attnbook @ {PINNED_SPEC}", found no such line')
    return source


def sync(path: Path, url: str, ref: str | None = None, *, write: bool = True) -> bool:
    """Pin one notebook's first cell to ``url`` and ``ref``; return True if it changed.

    ``ref`` defaults to ``repository.ref`` from _config.yml.
    """
    ref = repository_ref() if ref is None else ref
    nb = nbformat.read(path, as_version=4)
    cell = first_code_cell(nb)
    new = synced_source(cell.source, url, ref, path)
    if new == cell.source:
        return False
    if write:
        cell.source = new
        nbformat.write(nb, path)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report notebooks that differ; change nothing")
    parser.add_argument("--config", type=Path, default=ROOT / "_config.yml", help=argparse.SUPPRESS)
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebooks/*.ipynb")
    args = parser.parse_args(argv)
    url, ref = repository_url(args.config), repository_ref(args.config)
    paths = args.notebooks or sorted(NOTEBOOKS.glob("*.ipynb"))
    changed = [p for p in paths if sync(p, url, ref, write=not args.check)]
    for path in changed:
        verb = "differs from" if args.check else "updated to"
        print(f"{path}: set-up cell {verb} REPO_URL {url} at REPO_REF {ref}")
    if args.check and changed:
        print("Run `make sync` to copy repository.url and repository.ref from _config.yml into the notebooks.",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
