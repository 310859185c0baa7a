"""The version promises agree with each other (static, fast).

* requirements.txt (readers, the book build) and pyproject.toml (the package Colab
  installs) give every shared dependency the same range;
* the Python version in pyproject.toml is the one README.md and the getting-started page
  name;
* the weekly workflow runs the chapters at the lower bounds (tools/lower_bounds.py pins
  each requirement to its lower bound) on that Python, and never swaps Colab's PyTorch
  for another build: torch is a range, never a pin, and no requirement carries an index.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from lower_bounds import lower_bounds  # noqa: E402

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
REQUIREMENTS = (ROOT / "requirements.txt").read_text(encoding="utf-8")


def _specs(lines: list[str]) -> dict[str, str]:
    """name -> its version range without spaces, e.g. {"torch": ">=2.5"}."""
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._\-]*)(\[[^\]]*\])?\s*(.*)$", line)
        assert match, f"cannot read the requirement {line!r}"
        out[match.group(1).lower().replace("_", "-")] = match.group(3).replace(" ", "")
    return out


def test_requirements_and_pyproject_give_the_same_ranges() -> None:
    readers = _specs(REQUIREMENTS.splitlines())
    package = _specs(PYPROJECT["project"]["dependencies"])
    assert package, "expected [project] dependencies in pyproject.toml"
    different = {name: (readers[name], package[name]) for name in package.keys() & readers.keys()
                 if readers[name] != package[name]}
    assert not different, f"requirements.txt and pyproject.toml differ (requirements, pyproject): {different}"
    missing = sorted(package.keys() - readers.keys())
    assert not missing, f"pyproject.toml dependencies missing from requirements.txt: {missing}"


def test_torch_is_a_range_so_colab_keeps_its_own() -> None:
    for where, specs in (("requirements.txt", _specs(REQUIREMENTS.splitlines())),
                         ("pyproject.toml", _specs(PYPROJECT["project"]["dependencies"]))):
        assert specs.get("torch", "").startswith(">="), f"{where}: expected torch>=X (a lower bound only), " \
                                                        f"got torch{specs.get('torch')!r}"
    assert "--index-url" not in REQUIREMENTS and "--extra-index-url" not in REQUIREMENTS, \
        "requirements.txt must not name a package index (Colab would fetch another torch build)"


def _min_python() -> str:
    spec = PYPROJECT["project"]["requires-python"]
    match = re.fullmatch(r">=\s*(3\.\d+)", spec)
    assert match, f"expected requires-python = '>=3.N' in pyproject.toml, got {spec!r}"
    return match.group(1)


@pytest.mark.parametrize("page", ["README.md", "book/getting_started.md"])
def test_pages_name_the_python_of_pyproject(page: str) -> None:
    text = (ROOT / page).read_text(encoding="utf-8")
    named = set(re.findall(r"Python (3\.\d+) or newer", text))
    assert named == {_min_python()}, (f"{page}: expected 'Python {_min_python()} or newer' (requires-python in "
                                      f"pyproject.toml), found {sorted(named) or 'none'}")


def test_lower_bounds_pins_every_bounded_requirement() -> None:
    pins = lower_bounds("torch>=2.5\nnumpy>=1.24  # comment\njupyter-book==1.0.4.post1\n"
                        "transformers>=4.40,<6\nfoo\n-r other.txt\n# torch>=9\nbar[extra]>=2\n")
    assert pins == ["torch==2.5", "numpy==1.24", "jupyter-book==1.0.4.post1", "transformers==4.40", "bar==2"], pins
    real = {p.split("==")[0] for p in lower_bounds(REQUIREMENTS)}
    bounded = {name for name, spec in _specs(REQUIREMENTS.splitlines()).items() if re.match(r"(>=|==)", spec)}
    assert real == bounded, f"expected a pin for every bounded requirement, missing {sorted(bounded - real)}"
    with pytest.raises(TypeError, match="expected the text of a requirements file"):
        lower_bounds(None)  # type: ignore[arg-type]


def test_weekly_workflow_runs_the_chapters_at_the_lower_bounds() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "weekly.yml").read_text(encoding="utf-8"))
    jobs = workflow.get("jobs", {})
    assert "test-lowest" in jobs, f"expected a job test-lowest in weekly.yml, got {sorted(jobs)}"
    steps = jobs["test-lowest"]["steps"]
    python = [s["with"]["python-version"] for s in steps if "setup-python" in s.get("uses", "")]
    assert python == [_min_python()], f"test-lowest: expected Python {_min_python()}, got {python}"
    script = "\n".join(s.get("run", "") for s in steps)
    for needed in ("tools/lower_bounds.py", "-c lower-bounds.txt", "--nbval-lax", "notebooks"):
        assert needed in script, f"test-lowest: expected {needed!r} in its steps"
