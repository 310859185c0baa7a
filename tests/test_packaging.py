"""What `pip install attnbook @ git+REPO_URL` (the first cell of every chapter on Colab) gets.

The wheel built from this repository must hold every module, the shipped checkpoints and the
views' templates (attnbook/viz/templates/*.html, *.js),
and every third-party package the modules import must be declared in pyproject.toml:
at module level in `dependencies` (Colab installs those), inside functions in
`dependencies` or an optional extra (those imports say what to install when missing).
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "attnbook"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _name(requirement: str) -> str:
    for stop in "<>=!~[;@ ":
        requirement = requirement.split(stop, 1)[0]
    return requirement.strip().lower().replace("_", "-")


DEPENDENCIES = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
EXTRAS = {_name(r) for group in PYPROJECT["project"].get("optional-dependencies", {}).values() for r in group}
# Imports whose distribution is installed by another declared one (IPython comes with ipykernel / matplotlib-inline).
PROVIDED_BY = {"ipython": {"ipykernel"}}


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """Top-level package names imported at module level, and inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module_level, nested = set(), set()

    def visit(node: ast.AST, inside: bool) -> None:
        for child in ast.iter_child_nodes(node):
            names = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names = [child.module]
            for name in names:
                (nested if inside else module_level).add(name.split(".")[0])
            visit(child, inside or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(tree, False)
    return module_level, nested


@cache
def _distributions() -> dict[str, list[str]]:
    """Import name -> installed distributions; read once (it scans every installed package's metadata)."""
    return packages_distributions()


def _third_party(names: set[str]) -> dict[str, set[str]]:
    stdlib = set(sys.stdlib_module_names)
    dists = _distributions()
    found = {}
    for name in names - stdlib - {"attnbook", "__future__"}:
        found[name] = {d.lower().replace("_", "-") for d in dists.get(name, [name])}
    return found


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_are_declared(path: Path) -> None:
    module_level, nested = _imports(path)
    problems = []
    for name, dists in _third_party(module_level).items():
        if not dists & DEPENDENCIES and not any(DEPENDENCIES & PROVIDED_BY.get(d, set()) for d in dists):
            problems.append(f"imports {name} at module level, but none of {sorted(dists)} is in "
                            f"[project] dependencies of pyproject.toml (Colab would not install it)")
    for name, dists in _third_party(nested - module_level).items():
        declared = DEPENDENCIES | EXTRAS
        if not dists & declared and not any(declared & PROVIDED_BY.get(d, set()) for d in dists):
            problems.append(f"imports {name} in a function, but none of {sorted(dists)} is declared in "
                            f"pyproject.toml (dependencies or an optional extra)")
    assert not problems, f"{path.relative_to(ROOT)}:\n  " + "\n  ".join(problems)


def test_wheel_holds_every_module_checkpoint_and_template(tmp_path: Path) -> None:
    # from a clean copy: setuptools reuses a build/ folder left in the tree, which may hold files the
    # configuration no longer ships
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, tree / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(tree)], check=True, capture_output=True, text=True)
    (wheel,) = tmp_path.glob("attnbook-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {".py", ".safetensors", ".json", ".js", ".html"}
    wanted = {f"attnbook/{p.relative_to(PACKAGE).as_posix()}" for p in PACKAGE.rglob("*")
              if p.is_file() and "__pycache__" not in p.parts and p.suffix in shipped}
    missing = sorted(wanted - names)
    assert not missing, f"the wheel {wheel.name} lacks {missing}: add them to [tool.setuptools.package-data]"
    assert any(n.startswith("attnbook/checkpoints/") and n.endswith(".safetensors") for n in names)
    from attnbook.viz.templating import TEMPLATES

    templates = {f"attnbook/viz/templates/{t}" for t in TEMPLATES}
    assert templates <= names, f"the wheel {wheel.name} lacks the templates {sorted(templates - names)}"
