"""tools/schedule.py: the longest test files run first; each file's tests stay together.

`make test` runs the unit tests and the notebooks in one pytest-xdist session; the
plugin orders the files by their recorded cost (a notebook's seconds in
benchmarks/results.json, a module marked ``kernels``), so that no worker is left with a
long file at the end while the other waits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tools import schedule  # noqa: E402


def test_recorded_seconds_take_the_largest_over_devices(tmp_path: Path):
    results = tmp_path / "results.json"
    results.write_text(json.dumps({
        "CPU": {"notebooks": {"01_a.ipynb": {"seconds": 70.0}, "02_b.ipynb": {"seconds": 5.0}}},
        "GPU": {"notebooks": {"01_a.ipynb": {"seconds": 20.0}, "03_c.ipynb": {"seconds": None}}},
    }))
    assert schedule.recorded_notebook_seconds(results) == {"01_a.ipynb": 70.0, "02_b.ipynb": 5.0}
    assert schedule.recorded_notebook_seconds(tmp_path / "missing.json") == {}


def test_the_marked_module_runs_first_and_files_stay_whole(tmp_path: Path):
    (tmp_path / "test_a_quick.py").write_text("def test_one():\n    pass\n\ndef test_two():\n    pass\n")
    (tmp_path / "test_b_slow.py").write_text(
        "import pytest\npytestmark = pytest.mark.kernels\n\n"
        "def test_first():\n    pass\n\ndef test_second():\n    pass\n")
    (tmp_path / "conftest.py").write_text(
        "def pytest_configure(config):\n"
        "    config.addinivalue_line('markers', 'kernels: starts kernels')\n")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tools.schedule", "--collect-only", "-q",
         "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stdout + run.stderr
    order = [line.split("::")[-1] for line in run.stdout.splitlines() if "::" in line]
    assert order == ["test_first", "test_second", "test_one", "test_two"], run.stdout


@pytest.mark.parametrize("seconds, expected", [({"12_x.ipynb": 300.0}, 300.0), ({}, schedule.DEFAULT_NOTEBOOK_SECONDS)])
def test_a_notebook_costs_its_recorded_time(seconds, expected):
    class Item:
        path = ROOT / "notebooks" / "12_x.ipynb"

        def get_closest_marker(self, name):
            return None

    assert schedule.file_cost(Item(), seconds) == expected
