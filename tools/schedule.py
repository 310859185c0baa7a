"""A pytest plugin: run the longest test files first, so that parallel workers end together.

``make test`` runs the unit tests and every chapter notebook in ONE pytest-xdist session
(``--dist loadfile --no-loadscope-reorder``: each file, and each notebook, whole on one
worker, in the order of collection). A worker that picks a five-minute notebook last
keeps the others idle; longest first (the classic greedy schedule) avoids that.

The cost of a file is an estimate from what is on record:

- a notebook: its seconds in ``benchmarks/results.json`` (written by
  ``benchmarks/run_notebooks.py``; the largest over the devices recorded), or
  ``DEFAULT_NOTEBOOK_SECONDS`` for a chapter not recorded yet;
- a test module marked ``pytestmark = pytest.mark.kernels`` (it starts Jupyter kernels,
  e.g. the grading tests): ``KERNEL_MODULE_SECONDS``;
- any other test module: 0 (they take seconds; they fill the gaps at the end).

Only the order changes: which tests run, and their results, do not depend on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results.json"
DEFAULT_NOTEBOOK_SECONDS = 120.0  # the default chapter budget
KERNEL_MODULE_SECONDS = 200.0


def recorded_notebook_seconds(path: Path = RESULTS) -> dict[str, float]:
    """Notebook file name -> the largest recorded run time over the devices in ``path``."""
    if not path.exists():
        return {}
    seconds: dict[str, float] = {}
    for entry in json.loads(path.read_text(encoding="utf-8")).values():
        for name, run in entry.get("notebooks", {}).items():
            value = run.get("seconds")
            if isinstance(value, (int, float)):
                seconds[Path(name).name] = max(seconds.get(Path(name).name, 0.0), float(value))
    return seconds


def file_cost(item: pytest.Item, notebooks: dict[str, float]) -> float:
    path = Path(str(item.path))
    if path.suffix == ".ipynb":
        return notebooks.get(path.name, DEFAULT_NOTEBOOK_SECONDS)
    if item.get_closest_marker("kernels") is not None:
        return KERNEL_MODULE_SECONDS
    return 0.0


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    notebooks = recorded_notebook_seconds()
    costs: dict[Path, float] = {}
    for item in items:
        path = Path(str(item.path))
        costs[path] = max(costs.get(path, 0.0), file_cost(item, notebooks))
    # Stable sort on the file's cost: a file's items stay together and in their order.
    items.sort(key=lambda item: -costs[Path(str(item.path))])
